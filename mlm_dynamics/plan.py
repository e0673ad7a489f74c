"""The plan: what the rules need from a validated config, as plain Python.

``Plan(config)`` turns a config (already validated by the schema and ``config_check``) into the
run's targets, each job's inputs and command-line arguments, the transfer sets and the scheduler
resources. The rule files only ask it; nothing here imports Snakemake's workflow object, so every
answer is tested with plain pytest (tests/test_plan.py). Methods that take ``wildcards`` are the
rules' input, params and resource functions: anything with the attributes ``model``, ``step`` and
``lang`` works.

File names are owned here (results and logs of every rule) and by ``activations.store`` (the
cache); a rule names its output with these patterns and its inputs with ``rules.X.output``.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import zipfile
from pathlib import Path

from mlm_dynamics import config_check, figures
from mlm_dynamics.activations.store import CACHE_DIR, load_index
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.errors import InputError

SPLITS = ["train", "dev", "test"]

# Results of each rule, one pattern each (wildcards: model, step, lang, task, figure).
CHECKPOINT = "results/checkpoints/{model}/{step}"
TOKENIZER = "results/checkpoints/{model}/tokenizer"
CHECK_RECORD = "results/checks/{model}/{step}.json"
TREEBANK = "results/treebanks/{lang}.json.gz"
TREEBANK_LABELS = "results/treebanks/{lang}.labels.json"
PROBE = "results/probes/{model}/{step}/{task}/{lang}.npz"
SCORES = "results/scores/{model}/{step}/{lang}.parquet"
BPC = "results/bpc/{model}/{step}/{lang}.parquet"
XNLI_FEATURES = "results/xnli/features/{model}/{step}/{lang}"
XNLI_SCORES = "results/xnli/scores/{model}/{step}/{lang}.parquet"
SIMALIGN = "results/simalign/{model}/{step}/{lang}.parquet"
TABLE = "results/tables/probing.parquet"
TABLE_CSV = "results/tables/probing.csv"
# What the numbers depend on (mlm_dynamics/fingerprint.py), re-made with the table.
ENVIRONMENT = "results/environment.json"
TRANSFER_MATRICES = "results/tables/transfer/{model}/{task}"
FINDINGS = "results/analysis/{table}.csv"
FIGURE = "results/figures/{model}/{figure}.{suffix}"
FIGURE_SUFFIXES = ("png", "pdf")
# Snakemake's measurement of a job (wall time, peak memory), what the resource requests are
# checked against (tests/test_plan.py).
BENCHMARK = "logs/benchmarks/{rule}/{job}.tsv"

# Words per UD sentence, generously: sentence caps times this bound a language's word count.
WORDS_PER_SENTENCE = 25
# A probe task's training problem, per training word: (items, features in units of the hidden
# size, classes): one word for pos and the morphological features; for arc two pairs (the head
# and a non-head) scored yes/no; for deprel the head pair, one of UD's 37 relations.
PROBE_SHAPES = {"pos": (1, 1, 17), "arc": (2, 3, 1), "deprel": (1, 3, 37), "morph": (1, 1, 12)}
# Floating-point operations per second that a probe fit sustains, conservatively: one CPU thread
# (train_probe's), or a GPU in float32 (probing.device: cuda).
PROBE_FLOPS = {"cpu": 2e10, "cuda": 1e12}
# A probe job's memory beyond PROBE_BASE_MB (Python, torch, the package), per MB of its float16
# cache of each split: the train split's pair features and their copies, the dev split's.
PROBE_BASE_MB = 1500
PROBE_MEMORY = {"train": 24, "dev": 12}


def item_scores(scores_path: str) -> str:
    """The per-item correctness file written beside a score table (what the analysis resamples)."""
    return scores_path.replace(".parquet", ".items.npz")


def options(**values) -> str:
    """``--key value`` for each value (lists spaced, strings shell-quoted; None and [] left out)."""
    parts = []
    for key, value in values.items():
        if value is None or value == []:
            continue
        if isinstance(value, bool):
            parts += [f"--{key.replace('_', '-')}"] if value else []
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        parts.append(
            f"--{key.replace('_', '-')} " + " ".join(shlex.quote(str(item)) for item in items)
        )
    return " ".join(parts)


def discover_steps(spec: dict) -> tuple[list[int], list[int]]:
    """(complete, incomplete) steps on disk of a model with ``steps: discover``, ascending: what
    its ``glob`` matches, the single '*' being the step number. A ``local`` model's steps are
    directories, complete when they appeared by rename or hold ``config_check.CHECKPOINT_DONE``
    (see ``models.<name>.complete``); a half-written one is never listed as complete."""
    pattern = spec["glob"]
    regex = re.compile(re.escape(pattern).replace(r"\*", r"(\d+)") + "$")
    complete, incomplete = [], []
    for path in glob.glob(pattern):
        match = regex.match(path)
        if not match:
            continue
        step = int(match.group(1))
        if spec["source"] != "local":
            complete.append(step)
        elif not os.path.isdir(path):
            continue  # a file beside the step directories (an archive, a log) is no step
        elif spec.get("complete") == "marker" and not os.path.isfile(
            os.path.join(path, config_check.CHECKPOINT_DONE)
        ):
            incomplete.append(step)
        else:
            complete.append(step)
    return sorted(complete), sorted(incomplete)


class Plan:
    """Everything the rules of one config need; see the module docstring."""

    def __init__(self, config: dict, in_job: bool = False):
        """``in_job``: this process runs jobs inside a scheduler job (a SLURM group job's own
        Snakemake), where a failed member is retried in place (``retries_in_job``)."""
        self.config = config
        self.in_job = in_job
        self.models = config["models"]
        self._steps = {model: self._configured_steps(model) for model in self.models}
        self._check_transfer_steps()

    # ------------------------------------------------------------ models and steps

    def _configured_steps(self, model: str) -> list[int]:
        steps = self.models[model]["steps"]
        if steps != "discover":
            return sorted(steps)
        pattern = self.models[model]["glob"]
        found, incomplete = discover_steps(self.models[model])
        if not found:
            waiting = (
                f" ({len(incomplete)} step directories have no {config_check.CHECKPOINT_DONE} yet)"
                if incomplete
                else ""
            )
            raise InputError(
                f"config: models.{model}.glob: no checkpoint matches {pattern!r}{waiting}"
            )
        return found

    def _check_transfer_steps(self) -> None:
        for model, steps in self._steps.items():
            for i, step in enumerate(self.config["analysis"]["transfer_steps"]):
                if step not in steps:
                    raise InputError(
                        f"config: analysis.transfer_steps[{i}]: step {step} is not a step of "
                        f"models.{model}"
                    )

    def notices(self) -> list[str]:
        """Why a task that is enabled produces nothing (said once, before any job)."""
        xnli, simalign = self.config["xnli"], self.config["simalign"]
        said = []
        if xnli["enabled"] and not xnli["data"]:
            said.append("XNLI: task off: no data configured (xnli.data)")
        elif xnli["enabled"] and not xnli["languages"]:
            said.append("XNLI: task off: no languages configured (xnli.languages)")
        if simalign["enabled"] and not simalign["pairs"]:
            said.append("SimAlign: task off: no sentence pairs configured (simalign.pairs)")
        return said

    def steps(self, model: str) -> list[int]:
        """The configured (or discovered) steps of a model, ascending."""
        return self._steps[model]

    def earlier_steps(self, wildcards) -> list[int]:
        return [step for step in self.steps(wildcards.model) if step < int(wildcards.step)]

    def model_pattern(self, *sources: str) -> str:
        """A wildcard constraint matching exactly the models of these sources (never if none)."""
        names = [name for name, spec in self.models.items() if spec["source"] in sources]
        return "|".join(re.escape(name) for name in names) if names else "(?!)"

    def checkpoint_dir(self, model: str, step: int) -> str:
        """The Hugging Face-format directory of one model x step, whatever its source."""
        spec = self.models[model]
        if spec["source"] == "local":
            return config_check.local_checkpoint_dir(spec, step)
        return CHECKPOINT.format(model=model, step=step)

    def checkpoint(self, wildcards) -> str:
        return self.checkpoint_dir(wildcards.model, int(wildcards.step))

    def earlier_checks(self, wildcards) -> list[str]:
        """The check records of the model's steps before this one (ancient: a record rewritten
        with the same content re-runs no later check)."""
        from snakemake.io import ancient

        return ancient(
            [
                CHECK_RECORD.format(model=wildcards.model, step=step)
                for step in self.earlier_steps(wildcards)
            ]
        )

    def layers(self, wildcards) -> int:
        return self.models[wildcards.model]["layers"]

    def tokenizer_option(self, wildcards) -> str:
        """--tokenizer of the commands that load a checkpoint (with a trailing space): the
        models.<name>.tokenizer when the checkpoints come without one (fairseq checkpoints carry
        the converted tokenizer)."""
        spec = self.models[wildcards.model]
        if spec["source"] in ("local", "hub") and spec.get("tokenizer"):
            return options(tokenizer=spec["tokenizer"]) + " "
        return ""

    def check_arguments(self, wildcards) -> str:
        return self.tokenizer_option(wildcards) + options(layers=self.layers(wildcards))

    # ------------------------------------------------------------ checkpoint sources, UD release

    def fetch_checkpoint_arguments(self, wildcards) -> str:
        """fetch-checkpoint's options of one model x step ({step} filled into the templates);
        adding steps to a model never changes the command of a step already fetched."""
        spec = self.models[wildcards.model]
        step = int(wildcards.step)
        if spec["source"] == "hub":
            located = {"repo": spec["repo"], "revision": spec["revision"]}
        else:
            located = {"url": spec["url"], "tokenizer": spec["tokenizer"]}
        located = {key: value.format(step=step) for key, value in located.items()}
        pins = spec.get("sha256", {})
        sha256 = pins.get(step, pins.get(str(step))) or None
        return options(**located, source=spec["source"], layers=spec["layers"], sha256=sha256)

    def fetch_checkpoint_inputs(self, wildcards) -> list[str]:
        """A fairseq file given as a local path is an input (a replaced file re-runs the step)."""
        spec = self.models[wildcards.model]
        if spec["source"] != "fairseq" or "://" in spec["url"]:
            return []
        return [spec["url"].format(step=int(wildcards.step))]

    def ud_release_dirs(self) -> list[str]:
        release = self.config["ud_release"]
        return [str(Path(release["directory"]) / folder) for folder in release["treebanks"]]

    def fetch_ud_arguments(self) -> str:
        release = self.config["ud_release"]
        return options(
            url=release["url"], sha256=release["sha256"], directory=release["directory"]
        ) + "".join(f" {shlex.quote(folder)}" for folder in release["treebanks"])

    # ------------------------------------------------------------ embedded pretraining

    def pretrain_inputs(self, wildcards) -> dict[str, str]:
        """The tokenizer, the texts, and the checkpoint of the previous configured step."""
        inputs = {
            "tokenizer": TOKENIZER.format(model=wildcards.model),
            "texts": self.config["pretrain"]["texts"],
        }
        earlier = self.earlier_steps(wildcards)
        if earlier:
            inputs["resume"] = self.checkpoint_dir(wildcards.model, earlier[-1])
        return inputs

    def pretrain_arguments(self, wildcards) -> str:
        """pretrain's options: the model's settings, the previous checkpoint to resume from."""
        settings = dict(self.config["pretrain"])
        for key in ("texts", "vocab_size", "threads"):  # inputs and job settings, not the model's
            settings.pop(key)
        settings["layers"] = self.models[wildcards.model]["layers"]
        earlier = self.earlier_steps(wildcards)
        resume = self.checkpoint_dir(wildcards.model, earlier[-1]) if earlier else None
        return options(resume=resume, **dict(sorted(settings.items())))

    # ------------------------------------------------------------ treebanks and the cache

    def ud_languages(self) -> list[str]:
        """Languages with a treebank, in config order."""
        return [lang for lang, spec in self.config["languages"].items() if "treebank" in spec]

    def treebank_dir(self, wildcards) -> str:
        """A language's treebank (a folder of the UD release is fetch_ud_release's output)."""
        path = self.config["languages"][wildcards.lang]["treebank"]
        release = self.config["ud_release"]
        folder = config_check.ud_release_folder(self.config, path)
        made = os.path.join(os.path.normpath(release["directory"]), folder or "")
        if folder in release["treebanks"] and os.path.normpath(path) == made:
            return made
        return path

    def prepare_treebank_arguments(self) -> str:
        treebanks = self.config["treebanks"]
        caps = treebanks["max_sentences"]
        return options(
            max_train=caps["train"], max_dev=caps["dev"], max_test=caps["test"],
            dev_fraction=treebanks["dev_fraction"],
            min_sentences=self.config["statistics"]["min_sentences"], seed=treebanks["seed"],
            on_bad_sentence=treebanks["on_bad_sentence"],
        )  # fmt: skip

    def extract_arguments(self, wildcards) -> str:
        cache = self.config["activations"]
        return self.tokenizer_option(wildcards) + options(
            pooling=cache["pooling"], batch_tokens=cache["batch_tokens"]
        )

    def caches(self) -> list[str]:
        return [
            CACHE_DIR.format(model=model, step=step, lang=lang)
            for model in self.models
            for step in self.steps(model)
            for lang in self.ud_languages()
        ]

    # ------------------------------------------------------------ UD probes

    def probe_tasks(self) -> list[str]:
        return self.config["probing"]["tasks"] if self.ud_languages() else []

    def probe_outputs(self) -> list[str]:
        """train_probe's outputs: one probe file per configured task."""
        return [
            PROBE.format(model="{model}", step="{step}", task=task, lang="{lang}")
            for task in self.config["probing"]["tasks"]
        ]

    def train_probe_arguments(self) -> str:
        probing = self.config["probing"]
        return options(
            tasks=probing["tasks"], seeds=probing["seeds"], l2=probing["l2"],
            max_iter=probing["max_iter"], backend=probing["backend"], device=probing["device"],
            controls=[task for task in probing["controls"] if task in probing["tasks"]],
            mdl=probing["mdl"],
        )  # fmt: skip

    def probe_gpus(self) -> int:
        """GPUs a train_probe job asks the scheduler for: one when probes fit on CUDA."""
        return 1 if self.config["probing"]["device"] == "cuda" else 0

    def probe_env(self) -> str:
        """train_probe's software environment: the CUDA build of torch when probes fit on CUDA."""
        return "gpu" if self.config["probing"]["device"] == "cuda" else "core"

    def transfer_languages(self) -> list[str]:
        return self.config["transfer_languages"]

    def probe_train_languages(self, lang: str) -> list[str]:
        """Languages whose probes are scored on lang's test split: lang itself and, when lang is
        in the transfer set, every language of the set."""
        transfer = self.transfer_languages()
        return list(dict.fromkeys([lang, *transfer])) if lang in transfer else [lang]

    def scored_probes(self, wildcards) -> list[str]:
        return [
            PROBE.format(model=wildcards.model, step=wildcards.step, task=task, lang=lang)
            for task in self.config["probing"]["tasks"]
            for lang in self.probe_train_languages(wildcards.lang)
        ]

    def probe_score_tables(self) -> list[str]:
        if not self.config["probing"]["tasks"]:
            return []
        return [
            SCORES.format(model=model, step=step, lang=lang)
            for model in self.models
            for step in self.steps(model)
            for lang in self.ud_languages()
        ]

    def statistics_arguments(self) -> str:
        """The bootstrap options of every scoring command (mlm_dynamics.stats.add_arguments)."""
        settings = self.config["statistics"]
        return options(
            resamples=settings["resamples"], confidence=settings["confidence"],
            bootstrap_seed=settings["seed"], min_sentences=settings["min_sentences"],
        )  # fmt: skip

    # ------------------------------------------------------------ BPC, XNLI, SimAlign

    def _per_checkpoint(self, pattern: str, languages: list[str]) -> list[str]:
        return [
            pattern.format(model=model, step=step, lang=lang)
            for model in self.models
            for step in self.steps(model)
            for lang in languages
        ]

    def bpc_languages(self) -> list[str]:
        """Languages with held-out text when BPC is on."""
        if not self.config["bpc"]["enabled"]:
            return []
        return [lang for lang, spec in self.config["languages"].items() if "heldout_text" in spec]

    def heldout_text(self, wildcards) -> str:
        return self.config["languages"][wildcards.lang]["heldout_text"]

    def bpc_arguments(self, wildcards) -> str:
        bpc = self.config["bpc"]
        return self.tokenizer_option(wildcards) + options(
            max_sentences=bpc["max_sentences"], estimate=bpc["estimate"],
            maskings=bpc["maskings"], mask_probability=bpc["mask_probability"],
            batch_tokens=bpc["batch_tokens"],
        )  # fmt: skip

    def xnli_languages(self) -> list[str]:
        """The XNLI languages when the task is on and has data (config_check says when not)."""
        xnli = self.config["xnli"]
        return xnli["languages"] if xnli["enabled"] and xnli["data"] else []

    def xnli_data_files(self, wildcards) -> list[str]:
        """One language's train, dev and test files (.tsv or .jsonl, each split the one that
        exists, else the .tsv name so that the error names it); none from the hub."""
        data = self.config["xnli"]["data"]
        if data == "hub":
            return []
        files = []
        for split in SPLITS:
            candidates = [f"{data}/{wildcards.lang}.{split}.{ext}" for ext in ("tsv", "jsonl")]
            files.append(next((p for p in candidates if Path(p).is_file()), candidates[0]))
        return files

    def xnli_features_arguments(self, wildcards) -> str:
        xnli = self.config["xnli"]
        return self.tokenizer_option(wildcards) + options(
            data=xnli["data"], max_train=xnli["max_train"], max_dev=xnli["max_dev"],
            max_test=xnli["max_test"], batch_tokens=xnli["batch_tokens"],
        ) + f" --hub-revision={shlex.quote(xnli['hub_revision'])}"  # fmt: skip

    def xnli_features(self, wildcards) -> list[str]:
        return [
            XNLI_FEATURES.format(model=wildcards.model, step=wildcards.step, lang=lang)
            for lang in self.xnli_languages()
        ]

    def xnli_probe_arguments(self) -> str:
        probing = self.config["probing"]
        return options(
            backend=probing["backend"], l2=probing["l2"], max_iter=probing["max_iter"],
            seeds=probing["seeds"],
        )  # fmt: skip

    def simalign_languages(self) -> list[str]:
        """Target languages of the alignment pairs when the task is on, else none."""
        simalign = self.config["simalign"]
        return list(simalign["pairs"]) if simalign["enabled"] else []

    def simalign_files(self, wildcards) -> dict[str, str]:
        return self.config["simalign"]["pairs"][wildcards.lang]

    def simalign_arguments(self, wildcards) -> str:
        simalign = self.config["simalign"]
        return self.tokenizer_option(wildcards) + options(
            methods=simalign["methods"], granularity=simalign["granularity"],
            source_language=simalign["source_language"], batch_tokens=simalign["batch_tokens"],
        )  # fmt: skip

    # ------------------------------------------------------------ the tidy table and findings

    def score_tables(self) -> list[str]:
        """Every per-job score file of the tidy table."""
        return (
            self.probe_score_tables()
            + self._per_checkpoint(BPC, self.bpc_languages())
            + self._per_checkpoint(XNLI_SCORES, self.xnli_languages())
            + self._per_checkpoint(SIMALIGN, self.simalign_languages())
        )

    def item_score_files(self) -> list[str]:
        """Every per-item correctness file the findings bootstrap: UD probes' and XNLI's."""
        return [
            item_scores(path)
            for path in self.probe_score_tables()
            + self._per_checkpoint(XNLI_SCORES, self.xnli_languages())
        ]

    def probe_transfer_tasks(self) -> list[str]:
        """UD tasks with cross-lingual pairs (two transfer languages or more)."""
        return self.probe_tasks() if len(self.transfer_languages()) > 1 else []

    def transfer_tasks(self) -> list[str]:
        """Probe tasks with cross-lingual pairs: the UD tasks over transfer_languages, and XNLI."""
        return self.probe_transfer_tasks() + (["xnli"] if len(self.xnli_languages()) > 1 else [])

    def transfer_task_pattern(self) -> str:
        """A wildcard constraint matching exactly the UD tasks with transfer matrices."""
        tasks = self.probe_transfer_tasks()
        return "|".join(re.escape(task) for task in tasks) if tasks else "(?!)"

    def transfer_matrix_dirs(self) -> list[str]:
        return [
            TRANSFER_MATRICES.format(model=model, task=task)
            for model in self.models
            for task in self.probe_transfer_tasks()
        ]

    def transfer_matrices_arguments(self, wildcards) -> str:
        return options(
            steps=self.steps(wildcards.model),
            languages=self.transfer_languages(),
            views=self.config["analysis"]["views"],
        )

    def findings_arguments(self) -> str:
        analysis = self.config["analysis"]
        return options(views=analysis["views"], onset_fraction=analysis["onset_fraction"])

    # ------------------------------------------------------------ figures

    def contents(self) -> dict[str, bool]:
        """What this config's table holds, in the terms of figures.FIGURES' ``needs``."""
        probing = self.config["probing"]
        probes = bool(self.probe_tasks())
        return {
            "scores": probes or bool(self.xnli_languages()),
            "controls": probes and bool(set(probing["tasks"]) & set(probing["controls"])),
            "bpc": bool(self.bpc_languages()) and self.config["bpc"]["estimate"] != "mlm",
            "alignment": bool(self.simalign_languages()),
        }

    def figure_names(self) -> list[str]:
        """The figures `plot` draws for every model of this config."""
        return figures.figure_names(self.contents(), self.transfer_tasks())

    def plot_arguments(self, wildcards) -> str:
        """Options every figure of a model shares: language and task order, the transfer steps."""
        config = self.config
        shares = [
            f"{lang}={spec['pretrain_share']}"
            for lang, spec in config["languages"].items()
            if "pretrain_share" in spec
        ]
        return options(
            model=wildcards.model,
            languages=list(dict.fromkeys([*self.ud_languages(), *config["xnli"]["languages"]])),
            tasks=config["probing"]["tasks"],
            transfer_steps=config["analysis"]["transfer_steps"],
            onset_fraction=config["analysis"]["onset_fraction"],
            views=config["analysis"]["views"],
            pretrain_share=shares,
        )

    # ------------------------------------------------------------ targets

    def findings_tables(self) -> list[str]:
        return [FINDINGS.format(table=table) for table in ANALYSIS_TABLES]

    def figure_files(self) -> list[str]:
        return [
            FIGURE.format(model=model, figure=name, suffix=suffix)
            for model in self.models
            for name in self.figure_names()
            for suffix in FIGURE_SUFFIXES
        ]

    def final_output(self) -> list[str]:
        """Every target: the cache, the tidy table, transfer matrices, findings, figures."""
        return (
            self.caches()
            + [TABLE, TABLE_CSV, ENVIRONMENT]
            + self.transfer_matrix_dirs()
            + self.findings_tables()
            + self.figure_files()
        )

    def embedded_checkpoints(self) -> list[str]:
        """Every checkpoint pretrained here: each records the environment that trained it."""
        return [
            CHECKPOINT.format(model=model, step=step)
            for model, spec in self.models.items()
            if spec["source"] == "embedded"
            for step in self.steps(model)
        ]

    def fingerprint_arguments(self, wildcards) -> str:
        """The validated config itself (its digest, seeds and threads go into the record); a
        function, as Snakemake would read the JSON's braces in a params string as wildcards."""
        return options(config=json.dumps(self.config, sort_keys=True, separators=(",", ":")))

    # ------------------------------------------------------------ scheduler resources
    # Memory (MB) and runtime (minutes), for SLURM's --mem and -t and local --resources. They
    # scale with the model's shape and the language's data, and grow with each retry (attempt 1,
    # 2, ...), so a job killed for memory or time asks for more when resubmitted.

    @property
    def gpu_threads(self) -> int:
        """CPU threads of a GPU job (on a machine without a GPU they do the forward passes)."""
        return self.config["gpu_resources"]["threads"]

    @property
    def gpu_resources(self) -> dict:
        """The scheduler resources of every GPU rule: one GPU, memory and time for the job."""
        return {"gpu": 1, "mem_mb": self.gpu_mem_mb, "runtime": self.gpu_runtime}

    @property
    def retries_in_job(self) -> int:
        """How often a failed job is retried by the Snakemake that runs a group job's members.

        Snakemake retries a failed group job as a whole, after removing the outputs of every
        member (snakemake/snakemake#2508): a member that crashed once would redo a checkpoint's
        whole GPU work. Inside the group job (``in_job``) the member is retried in place
        instead; elsewhere this is 0, so the profile's ``retries`` apply (none locally)."""
        return self.config["scheduler"]["retries_in_job"] if self.in_job else 0

    def model_shape(self, model: str, step: int) -> tuple[int, int, int, int]:
        """(vocabulary, hidden size, layers, feed-forward size) of a checkpoint: from its
        config.json once it exists, else the embedded model's settings, else the shape the
        config states for the model (models.<name>.shape, default gpu_resources.assumed_shape).
        """
        path = Path(self.checkpoint_dir(model, step)) / "config.json"
        try:
            spec = json.loads(path.read_text())
            hidden = int(spec["hidden_size"])
            return (
                int(spec["vocab_size"]),
                hidden,
                int(spec["num_hidden_layers"]),
                int(spec.get("intermediate_size", 4 * hidden)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet, or broken: check_checkpoint names what is wrong with it
        layers = self.models[model]["layers"]
        if self.models[model]["source"] == "embedded":
            pretrain = self.config["pretrain"]
            return (
                pretrain["vocab_size"],
                pretrain["hidden_size"],
                layers,
                pretrain["intermediate_size"],
            )
        shape = self.models[model].get("shape") or self.config["gpu_resources"]["assumed_shape"]
        return shape["vocab_size"], shape["hidden_size"], layers, shape["intermediate_size"]

    def million_parameters(self, model: str, step: int) -> float:
        """A checkpoint's size in millions of parameters (embeddings plus transformer layers)."""
        vocab, hidden, layers, ffn = self.model_shape(model, step)
        return (vocab * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn)) / 1e6

    def treebank_words(self, splits: tuple[str, ...] = tuple(SPLITS)) -> int:
        """Upper estimate of one language's prepared words in ``splits`` (all three are
        cached), from the sentence caps: what a request uses before the cache exists."""
        caps = self.config["treebanks"]["max_sentences"]
        return WORDS_PER_SENTENCE * sum(caps[split] for split in splits)

    def split_words(self, model: str, step: int, lang: str) -> dict[str, int]:
        """One language's words per split: counted in its activation cache once that exists
        (Snakemake evaluates a job's resources again when its inputs are there), else the
        estimate from the caps (a dry run, the scheduler check before anything ran)."""
        cache = Path(CACHE_DIR.format(model=model, step=step, lang=lang))
        try:
            return {split: load_index(cache / split).n_words for split in SPLITS}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return {split: self.treebank_words((split,)) for split in SPLITS}

    def cache_mb(self, model: str, step: int, splits: tuple[str, ...] = tuple(SPLITS)) -> float:
        """One language's activation cache of one checkpoint (``splits`` of it), estimated from
        the caps: words x hidden x states, float16."""
        return self.cache_mb_of(model, step, self.treebank_words(splits))

    def cache_mb_of(self, model: str, step: int, words: int) -> float:
        """The float16 cache of ``words`` words of one checkpoint: words x hidden x states."""
        _, hidden, layers, _ = self.model_shape(model, step)
        return words * hidden * (layers + 1) * 2 / 2**20

    def gpu_mem_mb(self, wildcards, attempt: int) -> int:
        """Host memory of a GPU job (weights and one language's states), times the attempt."""
        resources = self.config["gpu_resources"]
        step = int(wildcards.step)
        per_attempt = (
            resources["base_mem_mb"]
            + resources["mem_mb_per_million_parameters"]
            * self.million_parameters(wildcards.model, step)
            + 2 * self.cache_mb(wildcards.model, step)
        )
        return int(per_attempt * attempt)

    def gpu_runtime(self, wildcards, attempt: int) -> int:
        """Minutes of a GPU job, doubling with each retry."""
        return self.config["gpu_resources"]["runtime_minutes"] * 2 ** (attempt - 1)

    def pretrain_mem_mb(self, wildcards, attempt: int) -> int:
        """An embedded pretraining job: weights, gradients and AdamW's two moments (float32), plus
        activations of one batch, on top of a Python with torch loaded; times the attempt."""
        params = self.million_parameters(wildcards.model, int(wildcards.step))
        settings = self.config["pretrain"]
        per_token = self.models[wildcards.model]["layers"] * 16 + settings["vocab_size"] // 64
        batch_mb = (
            settings["batch_size"] * settings["max_length"] * settings["hidden_size"]
            * per_token * 4 / 2**20
        )  # fmt: skip
        return int((1500 + 16 * params + batch_mb) * attempt)

    def pretrain_runtime(self, wildcards, attempt: int) -> int:
        """Minutes for the updates since the previous configured step, at a conservative 2
        updates per second per million parameters-per-sequence-token; doubling with each retry."""
        step = int(wildcards.step)
        previous = max(self.earlier_steps(wildcards), default=0)
        settings = self.config["pretrain"]
        work = (
            self.million_parameters(wildcards.model, step)
            * settings["batch_size"]
            * settings["max_length"]
        )
        minutes = 10 + (step - previous) * work / (2 * 60 * 1000)
        return int(minutes * 2 ** (attempt - 1))

    def probe_mem_mb(self, wildcards, attempt: int) -> int:
        """A probe job's memory (``probe_memory_mb`` of its language's words), times the
        attempt."""
        model, step = wildcards.model, int(wildcards.step)
        words = self.split_words(model, step, wildcards.lang)
        return int(self.probe_memory_mb(model, step, words) * attempt)

    def probe_memory_mb(self, model: str, step: int, words: dict[str, int]) -> float:
        """A probe job with ``words`` per split: float32 features of every layer, and for pair
        tasks (arc, deprel) the pair features (head, dependent, product: 3 x hidden) of two
        pairs per training word, 12 times the train split's float16 cache, with the
        transients of building and standardising them and a resampled seed's copy
        (PROBE_MEMORY, per MB of cache, measured by benchmarks/paper_scale.py at paper size),
        plus the cache itself."""
        cache = {split: self.cache_mb_of(model, step, n) for split, n in words.items()}
        scaled = sum(PROBE_MEMORY[split] * cache[split] for split in PROBE_MEMORY)
        return PROBE_BASE_MB + scaled + 2 * sum(cache.values())

    def probe_runtime(self, wildcards, attempt: int) -> int:
        """Minutes of a probe job (``probe_minutes`` of its language's train words), doubling
        with each retry."""
        model, step = wildcards.model, int(wildcards.step)
        train_words = self.split_words(model, step, wildcards.lang)["train"]
        return self.probe_minutes(model, step, train_words) * 2 ** (attempt - 1)

    def probe_minutes(self, model: str, step: int, train_words: int) -> int:
        """Minutes of a probe job, from the floating-point work of its fits at a conservative
        single-thread rate (PROBE_FLOPS): per task, seeds (plus its control fit, plus MDL's
        portions for pos) x the l2 grid x layers x L-BFGS iterations x items x features x
        classes, and one preconditioner factorisation (features^3) per l2 value and layer. At
        paper size on the CPU this is hours per language: set probing.device: cuda there."""
        _, hidden, layers, _ = self.model_shape(model, step)
        probing = self.config["probing"]
        per_fit = len(probing["l2"]) * (layers + 1)
        work = 0.0
        for task in probing["tasks"]:
            items, features, classes = PROBE_SHAPES.get(task, PROBE_SHAPES["morph"])
            fits = probing["seeds"] + (task in probing["controls"])
            fits += 1 if (task == "pos" and probing["mdl"]) else 0  # the portions sum to ~1 fit
            iterations = probing["max_iter"] * items * train_words * features * hidden * classes
            work += fits * per_fit * (6 * iterations + (features * hidden) ** 3)
        return 5 + math.ceil(work / PROBE_FLOPS[probing["device"]] / 60)
