# Helpers and input functions shared by the rules. Everything the rules need to know about the
# config goes through here, so that rule bodies stay one sentence long.

import os
import re
import sys
from pathlib import Path

# Rule commands run `python -m mlm_dynamics ...` from this checkout, in whatever software
# environment (local, conda, SLURM node) the job lands in.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(Path(workflow.basedir).resolve())]
    + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)

SPLITS = ["train", "test"]


wildcard_constraints:
    model=r"[^/]+",
    step=r"\d+",
    lang=r"[^/.]+",
    split="|".join(SPLITS),
    layer=r"\d\d",


def config_error(message):
    """Stop with one line naming the config key; nothing already computed is touched."""
    sys.exit(f"error: config: {message}")


def check_config():
    languages = config["languages"]
    for i, lang in enumerate(config["transfer_languages"]):
        if lang not in languages:
            config_error(
                f"transfer_languages[{i}]: unknown language {lang!r} (not under 'languages')"
            )
        if "treebank" not in languages[lang]:
            config_error(
                f"transfer_languages[{i}]: language {lang!r} has no 'treebank' under languages.{lang}"
            )
    for name, model in config["models"].items():
        if model["source"] == "embedded":
            for lang in languages:
                if "pretrain_text" not in languages[lang]:
                    config_error(
                        f"models.{name}: embedded pretraining needs languages.{lang}.pretrain_text"
                    )
        if model["steps"] == "discover" and not model.get("glob"):
            config_error(f"models.{name}.steps: 'discover' needs models.{name}.glob")


check_config()


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
        template = spec.get("path") or spec["glob"].replace("*", "{step}")
        return template.format(step=step)
    return f"results/checkpoints/{model}/{step}"


def checkpoint_input(wildcards):
    return checkpoint_dir(wildcards.model, int(wildcards.step))


def models_with_source(*sources):
    return [name for name, spec in config["models"].items() if spec["source"] in sources]


def model_name_pattern(*sources):
    """A wildcard constraint matching exactly the models of these sources (never-matching if none)."""
    names = models_with_source(*sources)
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


# ---------------------------------------------------------------- embedded pretraining


def pretrain_texts(wildcards):
    return [spec["pretrain_text"] for spec in config["languages"].values()]


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
    settings.pop("vocab_size")
    settings.pop("threads")
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items()))


# ---------------------------------------------------------------- languages


def ud_languages():
    """Languages with a treebank, in config order."""
    return [lang for lang, spec in config["languages"].items() if "treebank" in spec]


def treebank_dir(wildcards):
    return config["languages"][wildcards.lang]["treebank"]


# ---------------------------------------------------------------- activation cache


def activation_dir(model, step, lang):
    """One model x step x language of the cache: {split}/layerNN.npy and {split}/index.npz."""
    return f"results/activations/{model}/{step}/{lang}"


def million_parameters(model, step):
    """A checkpoint's size in millions of parameters: from its config.json once it exists, else
    from the config (embedded models) or XLM-R base's shape with the configured layers.
    """
    import json

    path = Path(checkpoint_dir(model, step)) / "config.json"
    if path.is_file():
        spec = json.loads(path.read_text())
        vocab, hidden = spec["vocab_size"], spec["hidden_size"]
        layers = spec["num_hidden_layers"]
        ffn = spec.get("intermediate_size", 4 * hidden)
    elif config["models"][model]["source"] == "embedded":
        pretrain = config["pretrain"]
        vocab, hidden = pretrain["vocab_size"], pretrain["hidden_size"]
        layers, ffn = config["models"][model]["layers"], pretrain["intermediate_size"]
    else:
        vocab, hidden, ffn = 250002, 768, 3072
        layers = config["models"][model]["layers"]
    return (vocab * hidden + layers * (4 * hidden * hidden + 2 * hidden * ffn)) / 1e6


def gpu_mem_mb(wildcards, attempt):
    """Host memory of a GPU job, growing with each retry."""
    resources = config["gpu_resources"]
    size = million_parameters(wildcards.model, int(wildcards.step))
    per_attempt = (
        resources["base_mem_mb"] + resources["mem_mb_per_million_parameters"] * size
    )
    return int(per_attempt * attempt)


def gpu_runtime(wildcards, attempt):
    """Minutes of a GPU job, doubling with each retry."""
    return config["gpu_resources"]["runtime_minutes"] * 2 ** (attempt - 1)


# ---------------------------------------------------------------- targets


def all_activations():
    return [
        activation_dir(model, step, lang)
        for model in config["models"]
        for step in model_steps(model)
        for lang in ud_languages()
    ]


def all_targets():
    return all_activations()
