"""Where every file of a run lives: results, logs and benchmarks, one pattern each.

A rule names its output and its ``log:``/``benchmark:`` with these patterns (its inputs with
``rules.X.output``); the plan fills them for targets and inputs; scripts and tests that read a
run import them. Wildcards: model, step, lang, task, table, figure, suffix. In the files of one
checkpoint (a run x step), ``model`` is the run's name (``sources.runs.run_name``: the model's
own name, or ``{model}/seed{seed}`` for one pretraining seed of a model with ``seeds``). What
lies inside an activation cache directory is ``activations.store``'s; the rest is strings.
"""

from __future__ import annotations

import string

from mlm_dynamics.sources.runs import locate

# ---------------------------------------------------------------- results
CHECKPOINT = "results/checkpoints/{model}/{step}"
TOKENIZER = "results/checkpoints/{model}/tokenizer"
CHECK_RECORD = "results/checks/{model}/{step}.json"
TREEBANK = "results/treebanks/{lang}.json.gz"
TREEBANK_LABELS = "results/treebanks/{lang}.labels.json"
CACHE = "results/activations/{model}/{step}/{lang}"
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
EXPLORER = "results/explorer.html"
FIGURE = "results/figures/{model}/{figure}.{suffix}"
FIGURE_SUFFIXES = ("png", "pdf")

# ---------------------------------------------------------------- logs and benchmarks
# Each rule's log. A rule with a benchmark writes it beside the logs, one file per job, named by
# the same wildcards as its log (``benchmark(rule)``).
LOGS = {
    "fetch_checkpoint": "logs/checkpoints/{model}/{step}.log",
    "fetch_ud_release": "logs/ud_release.log",
    "check_checkpoint": "logs/checks/{model}/{step}.log",
    "train_tokenizer": "logs/pretrain/{model}/tokenizer.log",
    "pretrain": "logs/pretrain/{model}/{step}.log",
    "prepare_treebank": "logs/treebanks/{lang}.log",
    "extract_activations": "logs/activations/{model}/{step}/{lang}.log",
    "train_probe": "logs/probing/train/{model}/{step}/{lang}.log",
    "score_probe": "logs/probing/score/{model}/{step}/{lang}.log",
    "bpc": "logs/bpc/{model}/{step}/{lang}.log",
    "xnli_features": "logs/xnli/features/{model}/{step}/{lang}.log",
    "xnli_probe": "logs/xnli/probe/{model}/{step}/{lang}.log",
    "simalign": "logs/simalign/{model}/{step}/{lang}.log",
    "collect_table": "logs/analysis/collect_table.log",
    "environment": "logs/analysis/environment.log",
    "transfer_matrices": "logs/analysis/transfer_matrices/{model}/{task}.log",
    "findings": "logs/analysis/findings.log",
    "explorer": "logs/analysis/explorer.log",
    "figure": "logs/figures/{model}/{figure}.log",
}
# Snakemake's measurement of a job (wall time, peak memory), what the resource requests are
# checked against (tests/test_scheduler.py).
BENCHMARK = "logs/benchmarks/{rule}/{job}.tsv"


def fields(pattern: str) -> list[str]:
    """The wildcards of a pattern, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(pattern) if name]


def fill(pattern: str, **values) -> str:
    """``pattern`` with ``values`` filled in and every other wildcard left as a wildcard."""
    return pattern.format(**{name: "{" + name + "}" for name in fields(pattern)} | values)


def log(rule: str, **values) -> str:
    """A rule's log (``values`` fill wildcards the rule fixes, e.g. a figure's name)."""
    return fill(LOGS[rule], **values)


def benchmark(rule: str) -> str:
    """A rule's benchmark file: one per job, named by its log's wildcards."""
    job = "/".join("{" + name + "}" for name in fields(LOGS[rule]))
    return BENCHMARK.format(rule=rule, job=job)


def checkpoint_dir(run: str, spec: dict, step: int) -> str:
    """The Hugging Face-format directory of one run x step (``sources.runs``: ``spec`` the run's,
    its seed filled in): a ``local`` model's own (its ``path`` template, else its ``glob`` with
    the step for '*'), else the one made here."""
    if spec["source"] == "local":
        key = f"models.{spec.get('model', run)}.{'path' if spec.get('path') else 'glob'}"
        return locate(spec.get("path") or spec["glob"].replace("*", "{step}"), step, key)
    return CHECKPOINT.format(model=run, step=step)


def item_scores(scores_path: str) -> str:
    """The per-item correctness file written beside a score table (what the analysis resamples)."""
    return scores_path.replace(".parquet", ".items.npz")


def per_checkpoint(pattern: str, steps: dict[str, list[int]], languages: list[str]) -> list[str]:
    """``pattern`` for every run x step (``steps``: run -> its steps) x language."""
    return [
        pattern.format(model=model, step=step, lang=lang)
        for model, model_steps in steps.items()
        for step in model_steps
        for lang in languages
    ]
