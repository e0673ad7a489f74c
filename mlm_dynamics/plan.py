"""The plan: what each job of a validated config is told, as plain Python.

``Plan(config)`` turns a config (already validated by the schema and ``config_check``) into the
run's steps and targets, each job's inputs and command-line arguments and the transfer sets. The
rule files only ask it; nothing here imports Snakemake's workflow object, so every answer is
tested with plain pytest (tests/test_plan.py). Methods that take ``wildcards`` are the rules'
input and params functions: anything with the attributes ``model``, ``step`` and ``lang`` works.

Where files live is ``layout``'s (the plan chooses which models, steps and languages, layout
spells their paths); what jobs ask the scheduler for is ``scheduler``'s; which figures exist is
``figure_registry``'s.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

from mlm_dynamics import config_check, figure_registry, layout
from mlm_dynamics.activations.extract import resolve_pooling
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources import runs
from mlm_dynamics.sources.discover import model_steps

SPLITS = ("train", "dev", "test")


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


# What a job reads of a folder given on disk: a checkpoint's weights, config and tokenizer files;
# a treebank's CoNLL-U files (a README or notes beside them re-plan nothing).
CHECKPOINT_FILES = (".json", ".safetensors", ".bin", ".model", ".txt")
TREEBANK_FILES = (".conllu", ".conllu.gz")


def files_in(folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """The files directly in a folder whose names end in ``suffixes`` (sorted; none if the
    folder is not there yet)."""
    try:
        entries = os.scandir(folder)
    except OSError:
        return []
    with entries:
        return sorted(e.path for e in entries if e.is_file() and e.name.endswith(suffixes))


class Plan:
    """Everything the rules of one config need; see the module docstring."""

    def __init__(self, config: dict):
        self.config = config
        self.models = config["models"]
        # every pretraining run (sources.runs): each per-checkpoint job is one run x step
        self.runs = runs.expand(self.models)
        self._steps = {run: model_steps(spec["model"], spec) for run, spec in self.runs.items()}
        self._check_seed_steps()
        self._check_transfer_steps()
        self._check_bpc_estimate()

    # ------------------------------------------------------------ models and steps

    def _check_seed_steps(self) -> None:
        """The seeds of a model are compared step by step: each must have every step of the
        first (a discovered series that lacks one is refused, naming the seed)."""
        for model in self.models:
            first, *others = self.model_runs(model)
            for run in others:
                missing = sorted(set(self._steps[first]) ^ set(self._steps[run]))
                if missing:
                    seed = self.runs[run]["seed"]
                    raise InputError(
                        f"config: models.{model}.glob: seed {seed}: step {missing[0]} is found "
                        f"for one seed of the model but not for another (seeds are compared "
                        "step by step)"
                    )

    def _check_bpc_estimate(self) -> None:
        """An estimate of the other kind of model is refused before any job where the config
        alone says the kind (the BPC job refuses it for hub and local models)."""
        from mlm_dynamics import bpc

        estimate = self.config["bpc"]["estimate"]
        if not self.bpc_languages():
            return
        for run, spec in self.runs.items():
            causal = self.run_is_causal(run)
            if causal is not None and not bpc.fits(estimate, causal):
                kind = "a causal LM" if causal else "a masked LM"
                fitting = "auto or ar" if causal else "auto, pll, mlm or both"
                raise InputError(
                    f"config: bpc.estimate: {estimate} does not fit models.{spec['model']}, "
                    f"{kind}: use {fitting}"
                )

    def _check_transfer_steps(self) -> None:
        for run, steps in self._steps.items():
            for i, step in enumerate(self.config["analysis"]["transfer_steps"]):
                if step not in steps:
                    raise InputError(
                        f"config: analysis.transfer_steps[{i}]: step {step} is not a step of "
                        f"models.{self.runs[run]['model']}"
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

    def steps(self, run: str) -> list[int]:
        """The configured (or discovered) steps of a run (or of a model: its runs share them),
        ascending."""
        return self._steps[run] if run in self._steps else self._steps[self.model_runs(run)[0]]

    def model_runs(self, model: str) -> list[str]:
        """The runs of a model: one per seed, or the model itself."""
        return [runs.run_name(model, seed) for seed in runs.model_seeds(self.models[model])]

    @property
    def steps_by_model(self) -> dict[str, list[int]]:
        """Every run's steps (``steps``), for the scheduler's requests."""
        return dict(self._steps)

    def earlier_steps(self, wildcards) -> list[int]:
        return [step for step in self.steps(wildcards.model) if step < int(wildcards.step)]

    def model_pattern(self, *sources: str) -> str:
        """A wildcard constraint matching exactly the models of these sources (never if none)."""
        names = [name for name, spec in self.models.items() if spec["source"] in sources]
        return "|".join(re.escape(name) for name in names) if names else "(?!)"

    def run_pattern(self, *sources: str) -> str:
        """A wildcard constraint matching exactly the runs of these sources (never if none)."""
        names = [name for name, spec in self.runs.items() if spec["source"] in sources]
        return "|".join(re.escape(name) for name in names) if names else "(?!)"

    def checkpoint_dir(self, run: str, step: int) -> str:
        """The Hugging Face-format directory of one run x step, whatever its source."""
        return layout.checkpoint_dir(run, self.runs[run], step)

    def checkpoint(self, wildcards) -> str:
        return self.checkpoint_dir(wildcards.model, int(wildcards.step))

    def earlier_checks(self, wildcards) -> list[str]:
        """The check records of the model's steps before this one (ancient: a record rewritten
        with the same content re-runs no later check)."""
        from snakemake.io import ancient

        return ancient(
            [
                layout.CHECK_RECORD.format(model=wildcards.model, step=step)
                for step in self.earlier_steps(wildcards)
            ]
        )

    def checkpoint_inputs(self, wildcards) -> dict:
        """What every job that reads a checkpoint takes: its directory, its files given on disk
        (``checkpoint_files``) and its check record, a gate rather than data (ancient:
        re-checking a checkpoint never re-runs its jobs)."""
        from snakemake.io import ancient

        return {
            "checkpoint": self.checkpoint(wildcards),
            "checkpoint_files": self.checkpoint_files(wildcards),
            "checked": ancient(
                layout.CHECK_RECORD.format(model=wildcards.model, step=wildcards.step)
            ),
        }

    def checkpoint_files(self, wildcards) -> list[str]:
        """The files of a checkpoint given on disk (a ``local`` step directory, a configured
        tokenizer directory): inputs of every job that reads it, so that a file replaced in
        place (which leaves the directory's mtime alone) re-plans them. Checkpoints made here
        are outputs, re-made only by their rules."""
        spec = self.runs[wildcards.model]
        folders = [self.checkpoint(wildcards)] if spec["source"] == "local" else []
        if spec["source"] in ("local", "hub") and spec.get("tokenizer"):
            folders.append(spec["tokenizer"])
        return [path for folder in folders for path in files_in(folder, CHECKPOINT_FILES)]

    def layers(self, wildcards) -> int:
        return self.runs[wildcards.model]["layers"]

    def tokenizer_option(self, wildcards) -> str:
        """--tokenizer of the commands that load a checkpoint (with a trailing space): the
        models.<name>.tokenizer when the checkpoints come without one (fairseq checkpoints carry
        the converted tokenizer)."""
        spec = self.runs[wildcards.model]
        if spec["source"] in ("local", "hub") and spec.get("tokenizer"):
            return options(tokenizer=spec["tokenizer"]) + " "
        return ""

    def check_arguments(self, wildcards) -> str:
        return self.tokenizer_option(wildcards) + options(layers=self.layers(wildcards))

    # ------------------------------------------------------------ checkpoint sources, UD release

    def fetch_checkpoint_arguments(self, wildcards) -> str:
        """fetch-checkpoint's options of one run x step (the step filled into the templates);
        adding steps or seeds to a model never changes the command of a step already fetched."""
        spec = self.runs[wildcards.model]
        step = int(wildcards.step)
        keys = ("repo", "revision") if spec["source"] == "hub" else ("url", "tokenizer")
        located = {
            key: runs.locate(spec[key], step, f"models.{spec['model']}.{key}") for key in keys
        }
        pins = spec.get("sha256", {})
        sha256 = pins.get(step, pins.get(str(step))) or None
        return options(**located, source=spec["source"], layers=spec["layers"], sha256=sha256)

    def fetch_checkpoint_inputs(self, wildcards) -> list[str]:
        """A fairseq file given as a local path is an input (a replaced file re-runs the step)."""
        spec = self.runs[wildcards.model]
        if spec["source"] != "fairseq" or "://" in spec["url"]:
            return []
        return [runs.locate(spec["url"], int(wildcards.step), f"models.{spec['model']}.url")]

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
        inputs = {  # the seeds of a model share its tokenizer
            "tokenizer": layout.TOKENIZER.format(model=self.runs[wildcards.model]["model"]),
            "texts": self.config["pretrain"]["texts"],
        }
        earlier = self.earlier_steps(wildcards)
        if earlier:
            inputs["resume"] = self.checkpoint_dir(wildcards.model, earlier[-1])
        return inputs

    def pretrain_arguments(self, wildcards) -> str:
        """pretrain's options: the model's settings (its run's seed, when it has seeds), the
        previous checkpoint to resume from."""
        settings = dict(self.config["pretrain"])
        for key in ("texts", "vocab_size", "threads"):  # inputs and job settings, not the model's
            settings.pop(key)
        run = self.runs[wildcards.model]
        from mlm_dynamics.pretrain import MASKED_ARCHITECTURE

        settings["layers"] = run["layers"]
        # The masked LM (pretrain's default) is not named, so that its runs made before there
        # was a choice keep their recorded params and are not pretrained again.
        if run["architecture"] != MASKED_ARCHITECTURE:
            settings["architecture"] = run["architecture"]
        if run["seed"] is not None:
            settings["seed"] = run["seed"]
        earlier = self.earlier_steps(wildcards)
        resume = self.checkpoint_dir(wildcards.model, earlier[-1]) if earlier else None
        return options(resume=resume, **dict(sorted(settings.items())))

    # ------------------------------------------------------------ treebanks and the cache

    def ud_languages(self) -> list[str]:
        """Languages with a treebank, in config order."""
        return [lang for lang, spec in self.config["languages"].items() if "treebank" in spec]

    def treebank_dir(self, wildcards) -> str:
        """A language's treebank (a folder of the UD release is fetch_ud_release's output)."""
        return (
            self._release_folder(wildcards) or self.config["languages"][wildcards.lang]["treebank"]
        )

    def _release_folder(self, wildcards) -> str | None:
        """The UD release folder fetch_ud_release makes for a language's treebank, if it does."""
        path = self.config["languages"][wildcards.lang]["treebank"]
        release = self.config["ud_release"]
        folder = config_check.ud_release_folder(self.config, path)
        made = os.path.join(os.path.normpath(release["directory"]), folder or "")
        if folder in release["treebanks"] and os.path.normpath(path) == made:
            return made
        return None

    def treebank_files(self, wildcards) -> list[str]:
        """The files of a language's treebank directory given on disk (see checkpoint_files);
        none for a folder of the UD release, which fetch_ud_release makes."""
        if self._release_folder(wildcards):
            return []
        return files_in(self.config["languages"][wildcards.lang]["treebank"], TREEBANK_FILES)

    def prepare_treebank_arguments(self) -> str:
        treebanks = self.config["treebanks"]
        caps = treebanks["max_sentences"]
        return options(
            max_train=caps["train"], max_dev=caps["dev"], max_test=caps["test"],
            dev_fraction=treebanks["dev_fraction"],
            min_sentences=self.config["statistics"]["min_sentences"], seed=treebanks["seed"],
            on_bad_sentence=treebanks["on_bad_sentence"],
        )  # fmt: skip

    def treebank_refusal(self, lang: str) -> str | None:
        """What prepare_treebank would refuse of a language's treebank, read here before any job
        runs (Snakemake deletes a job's outputs before the job starts: a refusal inside it would
        cost the previous, valid ones); None when it prepares, or is not on disk yet."""
        from mlm_dynamics.treebanks import prepare_counted

        path = self.treebank_dir(SimpleNamespace(lang=lang))
        if not os.path.isdir(path):
            return None  # a UD release folder fetched by an earlier job: its job checks it
        treebanks = self.config["treebanks"]
        try:
            prepare_counted(
                path, treebanks["max_sentences"], treebanks["seed"], treebanks["dev_fraction"],
                self.config["statistics"]["min_sentences"], treebanks["on_bad_sentence"],
            )  # fmt: skip
        except InputError as error:
            return str(error)
        return None

    def run_is_causal(self, run: str) -> bool | None:
        """Whether the run's model is a causal LM, where its config says (an embedded model's
        architecture; fairseq checkpoints are RoBERTa/XLM-R); None where only its checkpoint
        will (hub, local)."""
        from mlm_dynamics.pretrain import CAUSAL_ARCHITECTURES

        spec = self.runs[run]
        if spec["source"] == "embedded":
            return spec["architecture"] in CAUSAL_ARCHITECTURES
        return False if spec["source"] == "fairseq" else None

    def pooling(self, wildcards) -> str:
        """activations.pooling, resolved here where the model's kind is known, so that a
        masked LM's jobs keep the arguments they had before the default was 'auto'."""
        return resolve_pooling(
            self.config["activations"]["pooling"], self.run_is_causal(wildcards.model)
        )

    def extract_arguments(self, wildcards) -> str:
        cache = self.config["activations"]
        return self.tokenizer_option(wildcards) + options(
            pooling=self.pooling(wildcards), batch_tokens=cache["batch_tokens"]
        )

    def caches(self) -> list[str]:
        return layout.per_checkpoint(layout.CACHE, self._steps, self.ud_languages())

    # ------------------------------------------------------------ UD probes

    def probe_tasks(self) -> list[str]:
        return self.config["probing"]["tasks"] if self.ud_languages() else []

    def probe_outputs(self) -> list[str]:
        """train_probe's outputs: one probe file per configured task."""
        return [layout.fill(layout.PROBE, task=task) for task in self.config["probing"]["tasks"]]

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
            layout.PROBE.format(model=wildcards.model, step=wildcards.step, task=task, lang=lang)
            for task in self.config["probing"]["tasks"]
            for lang in self.probe_train_languages(wildcards.lang)
        ]

    def probe_score_tables(self, steps: dict[str, list[int]] | None = None) -> list[str]:
        """score_probe's tables of every run (or of ``steps``: run -> steps)."""
        if not self.config["probing"]["tasks"]:
            return []
        steps = self._steps if steps is None else steps
        return layout.per_checkpoint(layout.SCORES, steps, self.ud_languages())

    def statistics_arguments(self) -> str:
        """The bootstrap options of every scoring command (mlm_dynamics.stats.add_arguments)."""
        settings = self.config["statistics"]
        return options(
            resamples=settings["resamples"], confidence=settings["confidence"],
            bootstrap_seed=settings["seed"], min_sentences=settings["min_sentences"],
        )  # fmt: skip

    # ------------------------------------------------------------ BPC, XNLI, SimAlign

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
            pooling=self.pooling(wildcards),
        ) + f" --hub-revision={shlex.quote(xnli['hub_revision'])}"  # fmt: skip

    def xnli_features(self, wildcards) -> list[str]:
        return [
            layout.XNLI_FEATURES.format(model=wildcards.model, step=wildcards.step, lang=lang)
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
            pooling=self.pooling(wildcards),
        )  # fmt: skip

    # ------------------------------------------------------------ the tidy table and findings

    def score_tables(self) -> list[str]:
        """Every per-job score file of the tidy table."""
        return (
            self.probe_score_tables()
            + layout.per_checkpoint(layout.BPC, self._steps, self.bpc_languages())
            + layout.per_checkpoint(layout.XNLI_SCORES, self._steps, self.xnli_languages())
            + layout.per_checkpoint(layout.SIMALIGN, self._steps, self.simalign_languages())
        )

    def item_score_files(self, seeded: bool = False) -> list[str]:
        """Every per-item correctness file the findings bootstrap: UD probes' and XNLI's (with
        ``seeded``, those of the runs of models with seeds, which the table's rows of those
        models as a whole resample)."""
        steps = {
            run: run_steps
            for run, run_steps in self._steps.items()
            if not seeded or self.runs[run]["seed"] is not None
        }
        paths = self.probe_score_tables(steps) + layout.per_checkpoint(
            layout.XNLI_SCORES, steps, self.xnli_languages()
        )
        return [layout.item_scores(path) for path in paths]

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
            layout.TRANSFER_MATRICES.format(model=model, task=task)
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
        analysis, settings = self.config["analysis"], self.config["statistics"]
        return options(
            views=analysis["views"], onset_fraction=analysis["onset_fraction"],
            fdr=settings["fdr"], verdict_resamples=settings["verdict_resamples"],
            max_unknown_share=analysis["max_unknown_share"],
        )  # fmt: skip

    def explorer_arguments(self) -> str:
        """The explorer reads the findings tables beside each other and draws every view."""
        return options(
            analysis_dir=str(Path(layout.FINDINGS).parent),
            views=self.config["analysis"]["views"],
        )

    # ------------------------------------------------------------ figures

    def contents(self) -> dict[str, bool]:
        """What this config's table will hold, in the terms of figure_registry.NEEDS (the
        table's side is figures.table_contents)."""
        probing = self.config["probing"]
        probes = bool(self.probe_tasks())
        return {
            "scores": probes or bool(self.xnli_languages()),
            "controls": probes and bool(set(probing["tasks"]) & set(probing["controls"])),
            "bpc": bool(self.bpc_languages()),
            "alignment": bool(self.simalign_languages()),
        }

    def figure_names(self) -> list[str]:
        """The figures `plot` draws for every model of this config."""
        return figure_registry.figure_names(self.contents(), self.transfer_tasks())

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

    def band_covers(self, wildcards) -> str:
        """What a figure's bands cover, for its caption: the test sentences of one run, or the
        seeds and then the sentences of a model with seeds (analysis.seeds)."""
        seeds = len(self.model_runs(wildcards.model))
        if seeds == 1:
            return "test sentences of one pretraining run"
        return (
            f"the model's {seeds} pretraining seeds and then the test sentences (the "
            "Multi-Bootstrap; each line is the mean over the seeds)"
        )

    # ------------------------------------------------------------ targets

    def findings_tables(self) -> list[str]:
        return [layout.FINDINGS.format(table=table) for table in ANALYSIS_TABLES]

    def figure_files(self) -> list[str]:
        return [
            layout.FIGURE.format(model=model, figure=name, suffix=suffix)
            for model in self.models
            for name in self.figure_names()
            for suffix in layout.FIGURE_SUFFIXES
        ]

    def final_output(self) -> list[str]:
        """Every target: the cache, the tidy table, transfer matrices, findings, figures."""
        return (
            self.caches()
            + [layout.TABLE, layout.TABLE_CSV, layout.ENVIRONMENT]
            + self.transfer_matrix_dirs()
            + self.findings_tables()
            + self.figure_files()
            + [layout.EXPLORER]
        )

    def embedded_checkpoints(self) -> list[str]:
        """Every checkpoint pretrained here: each records the environment that trained it."""
        return [
            layout.CHECKPOINT.format(model=run, step=step)
            for run, spec in self.runs.items()
            if spec["source"] == "embedded"
            for step in self.steps(run)
        ]

    def fingerprint_arguments(self, wildcards) -> str:
        """The validated config itself (its digest, seeds and threads go into the record); a
        function, as Snakemake would read the JSON's braces in a params string as wildcards."""
        return options(config=json.dumps(self.config, sort_keys=True, separators=(",", ":")))
