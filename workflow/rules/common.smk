# Helpers and input functions shared by the rules. Everything the rules need to know about the
# config goes through here, so that rule bodies stay one sentence long.

import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mlm_dynamics import config_check
from mlm_dynamics.config_check import check_config
from mlm_dynamics.errors import InputError

# Rule commands run `python -m mlm_dynamics ...` from this checkout, in whatever software
# environment (local, conda, SLURM node) the job lands in.
# (Braces are doubled twice: once for this f-string, once for Snakemake's formatting.)
shell.prefix(
    f"export PYTHONPATH={Path(workflow.basedir).resolve()}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


CONFIG_SCHEMA = "../schemas/config.schema.yaml"


# Validated once, here, before any job: the schema (types and defaults), then what a schema
# cannot say (mlm_dynamics/config_check.py); either stops with one line naming the key.
try:
    validate(config, CONFIG_SCHEMA, set_default=True)
except WorkflowError:
    schema = Path(workflow.current_basedir) / CONFIG_SCHEMA
    sys.exit(f"error: {config_check.schema_error(config, schema)}")
try:
    check_config(config)
except InputError as error:
    sys.exit(f"error: {error}")


SPLITS = ["train", "dev", "test"]


def statistics_arguments():
    """The bootstrap options of every scoring command (mlm_dynamics.stats.add_arguments)."""
    settings = config["statistics"]
    return (
        f"--resamples {settings['resamples']} --confidence {settings['confidence']}"
        f" --bootstrap-seed {settings['seed']} --min-sentences {settings['min_sentences']}"
    )


# Functions returning per-job tidy score files (parquet) that collect-table concatenates into the
# tidy table, besides the UD probes' own; each area appends its function in its section.
SCORE_TABLES = []


wildcard_constraints:
    model=r"[^/]+",
    step=r"\d+",
    lang=r"[^/.]+",
    split="|".join(SPLITS),
    layer=r"\d\d",


def config_error(message):
    """Stop with one line naming the config key; nothing already computed is touched."""
    sys.exit(f"error: config: {message}")


# ---------------------------------------------------------------- models and steps


def model_steps(model):
    """The configured steps of a model, ascending."""
    steps = config["models"][model]["steps"]
    if steps == "discover":
        return discovered_steps(model)
    return sorted(steps)


def discovered_steps(model):
    import glob as globlib
    import re

    pattern = config["models"][model]["glob"]
    regex = re.compile(re.escape(pattern).replace(r"\*", r"(\d+)") + "$")
    steps = []
    for path in globlib.glob(pattern):
        match = regex.match(path)
        if match:
            steps.append(int(match.group(1)))
    if not steps:
        config_error(f"models.{model}.glob: no checkpoint matches {pattern!r}")
    return sorted(steps)


def model_layers(model):
    """Hidden-state files per checkpoint: the embeddings plus every transformer layer."""
    return 1 + config["models"][model]["layers"]


def checkpoint_dir(model, step):
    """The Hugging Face-format directory of one model x step, whatever its source."""
    spec = config["models"][model]
    if spec["source"] == "local":
        return config_check.local_checkpoint_dir(spec, step)
    return f"results/checkpoints/{model}/{step}"


def checkpoint_input(wildcards):
    return checkpoint_dir(wildcards.model, int(wildcards.step))


CHECK_RECORD = "results/checks/{model}/{step}.json"


def earlier_checks(wildcards):
    """The check records of the model's configured steps before this one (ancient: a record
    rewritten with the same content re-runs no later check)."""
    steps = [s for s in model_steps(wildcards.model) if s < int(wildcards.step)]
    return ancient(
        [CHECK_RECORD.format(model=wildcards.model, step=step) for step in steps]
    )


def tokenizer_option(wildcards):
    """--tokenizer of the commands that load a checkpoint: models.<name>.tokenizer when the
    checkpoints come without one (fairseq checkpoints carry the converted tokenizer)."""
    spec = config["models"][wildcards.model]
    if spec["source"] in ("local", "hub") and spec.get("tokenizer"):
        return f"--tokenizer {shlex.quote(spec['tokenizer'])}"
    return ""


def models_with_source(*sources):
    return [
        name for name, spec in config["models"].items() if spec["source"] in sources
    ]


def model_name_pattern(*sources):
    """A wildcard constraint matching exactly the models of these sources (never-matching if none)."""
    names = models_with_source(*sources)
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


# ---------------------------------------------------------------- embedded pretraining


def pretrain_texts(wildcards):
    return config["pretrain"]["texts"]


def pretrain_inputs(wildcards):
    """The tokenizer, the text, and the checkpoint of the previous configured step (if any)."""
    inputs = {
        "tokenizer": f"results/checkpoints/{wildcards.model}/tokenizer",
        "texts": pretrain_texts(wildcards),
    }
    earlier = [s for s in model_steps(wildcards.model) if s < int(wildcards.step)]
    if earlier:
        inputs["resume"] = checkpoint_dir(wildcards.model, earlier[-1])
    return inputs


def pretrain_arguments(wildcards):
    settings = dict(config["pretrain"])
    settings["layers"] = config["models"][wildcards.model]["layers"]
    for key in (
        "texts",
        "vocab_size",
        "threads",
    ):  # inputs and job settings, not the model's
        settings.pop(key)
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items())
    )


# ---------------------------------------------------------------- languages


def ud_languages():
    """Languages with a treebank, in config order."""
    return [lang for lang, spec in config["languages"].items() if "treebank" in spec]


def treebank_dir(wildcards):
    """A language's treebank; one inside the UD release directory is fetch_ud_release's output."""
    path = config["languages"][wildcards.lang]["treebank"]
    return ud_release_treebank(path) or path


# ---------------------------------------------------------------- checkpoint sources and UD release
# Everything a fetch job needs comes from its own model x step: adding steps to a model never
# changes the command (or the params) of a step already fetched.


def ud_release_folder(path):
    return config_check.ud_release_folder(config, path)


def ud_release_treebank(path):
    """``path`` spelled as fetch_ud_release's output, when that rule makes it."""
    folder = ud_release_folder(path)
    if folder not in config["ud_release"]["treebanks"]:
        return None
    if os.path.normpath(path) != ud_release_dir(folder):
        return None
    return ud_release_dir(folder)


def ud_release_dir(folder):
    return os.path.join(os.path.normpath(config["ud_release"]["directory"]), folder)


def ud_release_outputs():
    return [ud_release_dir(folder) for folder in config["ud_release"]["treebanks"]]


def pinned_sha256(model, step):
    pins = config["models"][model].get("sha256", {})
    return pins.get(step, pins.get(str(step), ""))


def fetch_checkpoint_arguments(wildcards):
    """The fetch-checkpoint options of one model x step, with {step} filled into the templates."""
    import shlex

    spec = config["models"][wildcards.model]
    step = int(wildcards.step)
    if spec["source"] == "hub":
        options = {"repo": spec["repo"], "revision": spec["revision"]}
    else:
        options = {"url": spec["url"], "tokenizer": spec["tokenizer"]}
    options = {key: value.format(step=step) for key, value in options.items()}
    options.update(source=spec["source"], layers=spec["layers"])
    if pinned_sha256(wildcards.model, step):
        options["sha256"] = pinned_sha256(wildcards.model, step)
    return " ".join(
        f"--{key} {shlex.quote(str(value))}" for key, value in options.items()
    )


def fetch_checkpoint_inputs(wildcards):
    """A fairseq file given as a local path is an input (so a replaced file re-runs the step)."""
    spec = config["models"][wildcards.model]
    if spec["source"] != "fairseq" or "://" in spec["url"]:
        return []
    return [spec["url"].format(step=int(wildcards.step))]


# ---------------------------------------------------------------- activation cache


def activation_dir(model, step, lang):
    """One model x step x language of the cache: {split}/layerNN.npy and {split}/index.npz."""
    return f"results/activations/{model}/{step}/{lang}"


def activation_input(wildcards):
    return activation_dir(wildcards.model, wildcards.step, wildcards.lang)


# ---------------------------------------------------------------- UD probes and the tidy table

PROBING_TASK_PATTERN = "pos|arc|deprel"
PROBING_TABLE_CSV = "results/tables/probing.csv"


def probe_file(model, step, task, lang):
    return f"results/probes/{model}/{step}/{task}/{lang}.npz"


def probe_train_languages(lang):
    """Languages whose probes are scored on lang's test split: lang itself and, when lang is in
    the transfer set, every language of the set."""
    transfer = config["transfer_languages"]
    return list(dict.fromkeys([lang, *transfer])) if lang in transfer else [lang]


def probe_outputs():
    """train_probe's outputs: one probe file per configured task."""
    return [
        probe_file("{model}", "{step}", task, "{lang}")
        for task in config["probing"]["tasks"]
    ]


def probe_options():
    """train-probe's options: the tasks with control probes, MDL."""
    probing = config["probing"]
    controls = [task for task in probing["controls"] if task in probing["tasks"]]
    options = [f"--controls {' '.join(controls)}"] if controls else []
    return " ".join(options + (["--mdl"] if probing["mdl"] else []))


def score_probe_inputs(wildcards):
    return [
        probe_file(wildcards.model, wildcards.step, task, lang)
        for task in config["probing"]["tasks"]
        for lang in probe_train_languages(wildcards.lang)
    ]


def probing_scores():
    return [
        f"results/scores/{model}/{step}/{lang}.parquet"
        for model in config["models"]
        for step in model_steps(model)
        for lang in ud_languages()
        if config["probing"]["tasks"]
    ]


def score_tables():
    """Every per-job score file of the tidy table: the UD probes' and each area's SCORE_TABLES."""
    return probing_scores() + [path for tables in SCORE_TABLES for path in tables()]


def score_table_inputs(wildcards):
    return score_tables()


def transfer_steps_argument(wildcards):
    return " ".join(str(step) for step in model_steps(wildcards.model))


def transfer_matrix_dirs():
    """Per model and UD task: {step}_best.csv, {step}_last.csv and layers.csv, when the transfer
    set has two languages or more."""
    if len(config["transfer_languages"]) < 2:
        return []
    return [
        f"results/tables/transfer/{model}/{task}"
        for model in config["models"]
        for task in config["probing"]["tasks"]
    ]


def probing_targets():
    return [PROBING_TABLE, PROBING_TABLE_CSV] + transfer_matrix_dirs()


# ---------------------------------------------------------------- other tasks: BPC, XNLI, SimAlign

_TASKS_OFF_SAID = set()


def task_off(message):
    """Say once, on stderr, why a task that is enabled produces nothing."""
    if message not in _TASKS_OFF_SAID:
        _TASKS_OFF_SAID.add(message)
        print(message, file=sys.stderr)


def heldout_text(wildcards):
    return config["languages"][wildcards.lang]["heldout_text"]


def bpc_tables():
    return [
        f"results/bpc/{model}/{step}/{lang}.parquet"
        for model in config["models"]
        for step in model_steps(model)
        for lang in bpc_languages()
    ]


def xnli_languages():
    """The XNLI languages when the task is on and has data, else none."""
    xnli = config["xnli"]
    if not xnli["enabled"]:
        return []
    if not xnli["data"]:
        task_off("XNLI: task off: no data configured (xnli.data)")
        return []
    if not xnli["languages"]:
        task_off("XNLI: task off: no languages configured (xnli.languages)")
        return []
    if xnli["data"] == "hub" and not xnli["hub_revision"]:
        config_error(
            "xnli.hub_revision: 'hub' data needs a pinned revision of facebook/xnli"
        )
    return xnli["languages"]


def xnli_data_files(wildcards):
    """One language's train, dev and test files (.tsv or .jsonl, each split the one that
    exists, else the .tsv name so that the error names it); none for the hub."""
    data = config["xnli"]["data"]
    if data == "hub":
        return []
    files = []
    for split in SPLITS:
        candidates = [
            f"{data}/{wildcards.lang}.{split}.{ext}" for ext in ("tsv", "jsonl")
        ]
        files.append(
            next((path for path in candidates if os.path.isfile(path)), candidates[0])
        )
    return files


def xnli_features_dirs(wildcards):
    return [
        f"results/xnli/features/{wildcards.model}/{wildcards.step}/{lang}"
        for lang in xnli_languages()
    ]


def xnli_tables():
    return [
        f"results/xnli/scores/{model}/{step}/{lang}.parquet"
        for model in config["models"]
        for step in model_steps(model)
        for lang in xnli_languages()
    ]


def simalign_languages():
    """Target languages of the alignment pairs when the task is on, else none."""
    if not config["simalign"]["enabled"]:
        return []
    if not config["simalign"]["pairs"]:
        task_off("SimAlign: task off: no sentence pairs configured (simalign.pairs)")
    return list(config["simalign"]["pairs"])


def simalign_files(wildcards):
    return config["simalign"]["pairs"][wildcards.lang]


def simalign_tables():
    return [
        f"results/simalign/{model}/{step}/{lang}.parquet"
        for model in config["models"]
        for step in model_steps(model)
        for lang in simalign_languages()
    ]


SCORE_TABLES += [bpc_tables, xnli_tables, simalign_tables]


def item_score_files():
    """Every per-item correctness file the analysis bootstraps: UD probes' and XNLI's."""
    return [
        path.replace(".parquet", ".items.npz")
        for path in probing_scores() + xnli_tables()
    ]


# ---------------------------------------------------------------- analysis and figures

PROBING_TABLE = "results/tables/probing.parquet"
ANALYSIS_DIR = "results/analysis"
ANALYSIS_TABLES = ["onset", "final_layer_gap", "degradation"]


def views_argument():
    """The layer views (analysis.views) as the commands take them (they name them)."""
    return " ".join(str(view) for view in config["analysis"]["views"])


def check_analysis_config():
    for name in config["models"]:
        steps = model_steps(name)
        for i, step in enumerate(config["analysis"]["transfer_steps"]):
            if step not in steps:
                config_error(
                    f"analysis.transfer_steps[{i}]: step {step} is not a step of models.{name}"
                )


check_analysis_config()


def bpc_languages():
    """Languages with held-out text when BPC is on."""
    if not config["bpc"]["enabled"]:
        return []
    languages = config["languages"]
    return [lang for lang, spec in languages.items() if "heldout_text" in spec]


def transfer_tasks():
    """Probe tasks with cross-lingual pairs: the UD tasks over transfer_languages, and XNLI."""
    tasks = []
    if len(config["transfer_languages"]) > 1:
        tasks += config["probing"]["tasks"]
    if len(xnli_languages()) > 1:
        tasks.append("xnli")
    return tasks


def analysis_figures():
    """The figure names `plot` draws for every model of this config (results/figures/{model}/)."""
    names = []
    if (ud_languages() and config["probing"]["tasks"]) or xnli_languages():
        names += ["in-language-curves", "layer-heatmaps", "final-layer-gap", "onset"]
    if ud_languages() and set(config["probing"]["tasks"]) & set(
        config["probing"]["controls"]
    ):
        names.append("selectivity")
    for task in transfer_tasks():
        names += [f"transfer-matrices-{task}", f"transfer-over-time-{task}"]
    if (
        bpc_languages() and config["bpc"]["estimate"] != "mlm"
    ):  # the figure draws metric bpc
        names.append("bpc")
    if simalign_languages():
        names.append("alignment-f1")
    return names


def plot_arguments(wildcards):
    """Options every figure of a model shares: language and task order, the transfer steps."""
    languages = list(dict.fromkeys([*ud_languages(), *config["xnli"]["languages"]]))
    shares = [
        f"--pretrain-share {lang}={spec['pretrain_share']}"
        for lang, spec in config["languages"].items()
        if "pretrain_share" in spec
    ]
    steps = config["analysis"]["transfer_steps"]
    return " ".join(
        [
            f"--model {wildcards.model}",
            f"--languages {' '.join(languages)}",
            f"--tasks {' '.join(config['probing']['tasks'])}",
            *([f"--transfer-steps {' '.join(map(str, steps))}"] if steps else []),
            f"--onset-fraction {config['analysis']['onset_fraction']}",
            f"--views {views_argument()}",
            *shares,
        ]
    )


def analysis_targets():
    tables = [f"{ANALYSIS_DIR}/{stem}.csv" for stem in ANALYSIS_TABLES]
    figures = [
        f"results/figures/{model}/{name}.{suffix}"
        for model in config["models"]
        for name in analysis_figures()
        for suffix in ("png", "pdf")
    ]
    return tables + figures


# ---------------------------------------------------------------- scheduler resources
# Memory (MB) and runtime (minutes) of the jobs, for SLURM's --mem and -t (and local
# --resources): they scale with the model's size and the language's data, and grow with each
# retry (attempt 1, 2, ...), so a job killed for memory or time asks for more when resubmitted.

# Words per UD sentence, generously: sentence caps times this bound a language's word count.
WORDS_PER_SENTENCE = 25


def model_shape(model, step):
    """(vocabulary, hidden size, layers, feed-forward size) of a checkpoint: from its config.json
    once it exists, else from the config (embedded models) or XLM-R base's shape with the
    configured layers.
    """
    import json

    path = Path(checkpoint_dir(model, step)) / "config.json"
    try:
        spec = json.loads(path.read_text())
        hidden = spec["hidden_size"]
        return (
            int(spec["vocab_size"]),
            int(hidden),
            int(spec["num_hidden_layers"]),
            int(spec.get("intermediate_size", 4 * hidden)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not there yet, or broken: check_checkpoint names what is wrong with it
    if config["models"][model]["source"] == "embedded":
        pretrain = config["pretrain"]
        return (
            pretrain["vocab_size"],
            pretrain["hidden_size"],
            config["models"][model]["layers"],
            pretrain["intermediate_size"],
        )
    return 250002, 768, config["models"][model]["layers"], 3072


def million_parameters(model, step):
    """A checkpoint's size in millions of parameters (embeddings plus transformer layers)."""
    vocab, hidden, layers, ffn = model_shape(model, step)
    return (vocab * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn)) / 1e6


def treebank_words():
    """Upper estimate of one language's prepared words (train + test), from the sentence caps."""
    caps = config["treebanks"]["max_sentences"]
    return WORDS_PER_SENTENCE * (caps["train"] + caps["test"])


def activation_cache_mb(model, step):
    """One language's activation cache of one checkpoint: words x hidden x states, float16."""
    _, hidden, layers, _ = model_shape(model, step)
    return treebank_words() * hidden * (layers + 1) * 2 / 2**20


def gpu_mem_mb(wildcards, attempt):
    """Host memory of a GPU job (model weights and one language's states), times the attempt."""
    resources = config["gpu_resources"]
    step = int(wildcards.step)
    per_attempt = (
        resources["base_mem_mb"]
        + resources["mem_mb_per_million_parameters"]
        * million_parameters(wildcards.model, step)
        + 2 * activation_cache_mb(wildcards.model, step)
    )
    return int(per_attempt * attempt)


def gpu_runtime(wildcards, attempt):
    """Minutes of a GPU job, doubling with each retry."""
    return config["gpu_resources"]["runtime_minutes"] * 2 ** (attempt - 1)


def pretrain_mem_mb(wildcards, attempt):
    """An embedded pretraining job: weights, gradients and AdamW's two moments (float32), plus
    activations of one batch, on top of a Python with torch loaded; times the attempt.
    """
    params = million_parameters(wildcards.model, int(wildcards.step))
    settings = config["pretrain"]
    batch_mb = (
        settings["batch_size"]
        * settings["max_length"]
        * settings["hidden_size"]
        * (
            config["models"][wildcards.model]["layers"] * 16
            + settings["vocab_size"] // 64
        )
        * 4
        / 2**20
    )
    return int((1500 + 16 * params + batch_mb) * attempt)


def pretrain_runtime(wildcards, attempt):
    """Minutes for the updates since the previous configured step, at a conservative 2 updates
    per second per million parameters-per-sequence-token; doubling with each retry."""
    step = int(wildcards.step)
    previous = max([s for s in model_steps(wildcards.model) if s < step], default=0)
    settings = config["pretrain"]
    work = (
        million_parameters(wildcards.model, step)
        * settings["batch_size"]
        * settings["max_length"]
    )
    minutes = 10 + (step - previous) * work / (2 * 60 * 1000)
    return int(minutes * 2 ** (attempt - 1))


def probe_mem_mb(wildcards, attempt):
    """A probe job holds train and test activations of every layer as float32 (twice the
    float16 cache) and its work arrays; times the attempt."""
    return int(
        (1000 + 4 * activation_cache_mb(wildcards.model, int(wildcards.step))) * attempt
    )


def probe_gpus():
    """GPUs a train_probe job asks the scheduler for: one when probes fit on CUDA."""
    return 1 if config["probing"]["device"] == "cuda" else 0


def probe_conda_env():
    """train_probe's environment: the CUDA build of torch when probes fit on CUDA."""
    env = "gpu" if config["probing"]["device"] == "cuda" else "core"
    return f"../../envs/{env}.yaml"


def probe_runtime(wildcards, attempt):
    """Minutes of a probe job: a few, plus one per 200 MB of cache; doubling with each retry."""
    minutes = 5 + activation_cache_mb(wildcards.model, int(wildcards.step)) / 200
    return int(minutes * 2 ** (attempt - 1))


# ---------------------------------------------------------------- targets


def all_activations():
    return [
        activation_dir(model, step, lang)
        for model in config["models"]
        for step in model_steps(model)
        for lang in ud_languages()
    ]


def all_targets():
    return all_activations() + probing_targets() + analysis_targets()
