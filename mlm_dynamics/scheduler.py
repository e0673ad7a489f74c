"""What each job asks the scheduler for: memory (MB), runtime (minutes), GPUs, threads, retries.

``Requests(config, steps)`` answers the rules' ``resources:``, ``threads:`` and ``retries:``
functions for SLURM's --mem and -t and local --resources. Requests scale with the model's shape
and the language's data, and grow with each retry (attempt 1, 2, ...), so a job killed for
memory or time asks for more when resubmitted. Plain Python: tests/test_scheduler.py checks
them, and against the peak memory of the reference run's real jobs.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

from mlm_dynamics import layout
from mlm_dynamics.probing import registry
from mlm_dynamics.sources import runs

SPLITS = ("train", "dev", "test")
# Words per UD sentence, generously: sentence caps times this bound a language's word count.
WORDS_PER_SENTENCE = 25
# Floating-point operations per second that a probe fit sustains, conservatively: one CPU thread
# (train_probe's), or a GPU in float32 (probing.device: cuda).
PROBE_FLOPS = {"cpu": 2e10, "cuda": 1e12}
# A probe job's memory beyond PROBE_BASE_MB (Python, torch, the package), per MB of its float16
# cache of each split: the train split's pair features and their copies, the dev split's.
PROBE_BASE_MB = 1500
PROBE_MEMORY = {"train": 24, "dev": 12}


class Requests:
    """The scheduler requests of one config's jobs; see the module docstring. Methods that take
    ``wildcards`` (anything with ``model``, ``step``, ``lang``) and ``attempt`` are the rules'
    resource functions."""

    def __init__(self, config: dict, steps: dict[str, list[int]], in_job: bool = False):
        """``steps``: each model's steps (the plan's); ``in_job``: this process runs jobs inside
        a scheduler job (a SLURM group job's own Snakemake), see ``retries_in_job``."""
        self.config = config
        self.models = runs.expand(config["models"])  # by run: each job is one run x step
        self.steps = steps
        self.in_job = in_job

    # ------------------------------------------------------------ GPU jobs and retries

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

    def probe_gpus(self) -> int:
        """GPUs a train_probe job asks the scheduler for: one when probes fit on CUDA."""
        return 1 if self.config["probing"]["device"] == "cuda" else 0

    # ------------------------------------------------------------ sizes

    def model_shape(self, model: str, step: int) -> tuple[int, int, int, int]:
        """(vocabulary, hidden size, layers, feed-forward size) of a checkpoint: from its
        config.json once it exists, else the embedded model's settings, else the shape the
        config states for the model (models.<name>.shape, default gpu_resources.assumed_shape).
        """
        spec = self.models[model]
        path = Path(layout.checkpoint_dir(model, spec, step)) / "config.json"
        try:
            found = json.loads(path.read_text())
            hidden = int(found["hidden_size"])
            return (
                int(found["vocab_size"]),
                hidden,
                int(found["num_hidden_layers"]),
                int(found.get("intermediate_size", 4 * hidden)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not there yet, or broken: check_checkpoint names what is wrong with it
        if spec["source"] == "embedded":
            pretrain = self.config["pretrain"]
            return (
                pretrain["vocab_size"],
                pretrain["hidden_size"],
                spec["layers"],
                pretrain["intermediate_size"],
            )
        shape = spec.get("shape") or self.config["gpu_resources"]["assumed_shape"]
        return shape["vocab_size"], shape["hidden_size"], spec["layers"], shape["intermediate_size"]

    def million_parameters(self, model: str, step: int) -> float:
        """A checkpoint's size in millions of parameters (embeddings plus transformer layers)."""
        vocab, hidden, layers, ffn = self.model_shape(model, step)
        return (vocab * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn)) / 1e6

    def treebank_words(self, splits: tuple[str, ...] = SPLITS) -> int:
        """Upper estimate of one language's prepared words in ``splits`` (all three are
        cached), from the sentence caps: what a request uses before the cache exists."""
        caps = self.config["treebanks"]["max_sentences"]
        return WORDS_PER_SENTENCE * sum(caps[split] for split in splits)

    def split_words(self, model: str, step: int, lang: str) -> dict[str, int]:
        """One language's words per split: counted in its activation cache once that exists
        (Snakemake evaluates a job's resources again when its inputs are there), else the
        estimate from the caps (a dry run, the scheduler check before anything ran)."""
        from mlm_dynamics.activations.store import load_index

        cache = Path(layout.CACHE.format(model=model, step=step, lang=lang))
        try:
            return {split: load_index(cache / split).n_words for split in SPLITS}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return {split: self.treebank_words((split,)) for split in SPLITS}

    def cache_mb(self, model: str, step: int, splits: tuple[str, ...] = SPLITS) -> float:
        """One language's activation cache of one checkpoint (``splits`` of it), estimated from
        the caps: words x hidden x states, float16."""
        return self.cache_mb_of(model, step, self.treebank_words(splits))

    def cache_mb_of(self, model: str, step: int, words: int) -> float:
        """The float16 cache of ``words`` words of one checkpoint: words x hidden x states."""
        _, hidden, layers, _ = self.model_shape(model, step)
        return words * hidden * (layers + 1) * 2 / 2**20

    # ------------------------------------------------------------ memory and time per rule

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
        previous = max((s for s in self.steps[wildcards.model] if s < step), default=0)
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
        classes (the task's ``registry.shape``), and one preconditioner factorisation
        (features^3) per l2 value and layer. At paper size on the CPU this is hours per
        language: set probing.device: cuda there."""
        _, hidden, layers, _ = self.model_shape(model, step)
        probing = self.config["probing"]
        per_fit = len(probing["l2"]) * (layers + 1)
        work = 0.0
        for task in probing["tasks"]:
            items, features, classes = registry.shape(task)
            fits = probing["seeds"] + (task in probing["controls"])
            fits += 1 if (task == "pos" and probing["mdl"]) else 0  # the portions sum to ~1 fit
            iterations = probing["max_iter"] * items * train_words * features * hidden * classes
            work += fits * per_fit * (6 * iterations + (features * hidden) ** 3)
        return 5 + math.ceil(work / PROBE_FLOPS[probing["device"]] / 60)
