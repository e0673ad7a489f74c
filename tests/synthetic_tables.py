"""A realistic synthetic run for the analysis, plot and notebook tests: per-item correctness of
every probe on simulated dev and test sets, and the tidy table scored from it by the same code
as ``score-probe`` (so its intervals are the real ones).

Accuracy rises with the step towards a language- and layer-dependent ceiling; middle layers are
best, the last layer falls behind late in training (a final-layer gap), transfer pairs are lower
and learn later than in-language probes. Each item is a Bernoulli draw around those curves, so the
scores carry real sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from mlm_dynamics import stats
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES, Verdicts
from mlm_dynamics.analysis.tables import BASELINE_LAYER, BASELINE_METRIC, tidy_frame
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.probing import cli as probe_cli

STEPS = [0, 100, 200, 400]
LANGUAGES = ["en", "fr", "de", "ru", "zh", "ko"]
TASKS = ["pos", "arc", "deprel"]
LAYERS = 5  # embeddings + 4 transformer layers
SENTENCES = 60
WORDS = 8  # items per sentence
BOOTSTRAP = stats.Bootstrap(resamples=200, confidence=0.95, seed=0, min_sentences=30)
# verdicts at the schema's false discovery rate, on five times the intervals' resamples
VERDICTS = Verdicts(fdr=schema_default("statistics.fdr"), resamples=1000)
MAX_UNKNOWN_SHARE = schema_default("analysis.max_unknown_share")
CEILING = {"pos": 0.92, "arc": 0.75, "deprel": 0.8, "xnli": 0.6}
FLOOR = {"pos": 0.3, "arc": 0.2, "deprel": 0.25, "xnli": 0.34}
MAJORITY = {"pos": 0.18, "arc": 0.5, "deprel": 0.15, "xnli": 0.33}
CONTROL_TASKS = ("pos", "deprel")


def layer_accuracy(task, i, j, step, layer, transfer):
    delay = 110.0 if transfer else 30.0
    drop = 0.12 + 0.03 * abs(i - j) if transfer else 0.0
    progress = 1 - np.exp(-step / (delay + 10 * i))
    middle = 1 - 0.04 * abs(layer - 2)
    late_drop = 0.05 * progress if layer == LAYERS - 1 else 0.0
    mean = FLOOR[task] + (CEILING[task] - drop - FLOOR[task]) * progress
    return float(np.clip(mean * middle - late_drop, 0.01, 0.99))


class Run:
    """The rows and item files of one synthetic run, built probe by probe."""

    def __init__(self, model: str, seed: int = 7):
        self.model = model
        self.rng = np.random.default_rng(seed)
        self.rows: list[dict] = []
        self.items: dict[int, list[stats.ItemScores]] = {}
        self.units = np.repeat(np.arange(SENTENCES), WORDS)
        self.data = SimpleNamespace(units=self.units, n_units=SENTENCES)

    def weights(self, lang, split):
        return BOOTSTRAP.weights(SENTENCES, lang, split, f"{lang} {split}")

    def score(self, common, layers, correct, metric):
        weights = self.weights(common["test_lang"], common["split"])
        self.rows += probe_cli.interval_rows(
            common, layers, correct, self.data, weights, BOOTSTRAP, metric
        )

    def probe(self, task, i, j, train, test, step, controls):
        layers = list(range(LAYERS))
        for split in ("dev", "test") if train == test else ("test",):
            p = np.array([layer_accuracy(task, i, j, step, k, train != test) for k in layers])
            correct = self.rng.random((LAYERS, len(self.units))) < p[:, None]
            common = dict(model=self.model, step=step, task=task, train_lang=train,
                          test_lang=test, split=split, seed=0, n=len(self.units))  # fmt: skip
            self.score(common, layers, correct, "accuracy")
            majority = self.rng.random((1, len(self.units))) < MAJORITY[task]
            self.score(common, [BASELINE_LAYER], majority, BASELINE_METRIC)
            self.items.setdefault(step, []).append(
                stats.ItemScores(
                    task, train, test, split, 0, np.array(layers), correct, self.units, SENTENCES
                )  # fmt: skip
            )
            if train == test and task in controls:
                control = self.rng.random(correct.shape) < 0.5 * p[:, None] + 0.1
                self.score(common, layers, control, "control_accuracy")
                self.score(common, layers, correct.astype(float) - control, "selectivity")

    def plain(self, step, task, layer, train, test, metric, value, n):
        self.rows.append(dict(model=self.model, step=step, task=task, layer=layer,
                              train_lang=train, test_lang=test, split="test", seed=0,
                              metric=metric, value=float(value), ci_low=float(value) - 0.05,
                              ci_high=float(value) + 0.05, n=n))  # fmt: skip


def synthetic_run(
    model: str = "tiny-xlmr",
    steps=STEPS,
    languages=LANGUAGES,
    tasks=TASKS,
    bpc: bool = True,
    xnli: bool = True,
    simalign: bool = True,
    controls: bool | Sequence[str] = True,
) -> tuple[pd.DataFrame, list[stats.ItemFile]]:
    """(tidy table, item files) of a synthetic run.

    ``controls``: the tasks with control-task (selectivity) rows; True is pos and deprel.
    """
    run = Run(model)
    if isinstance(controls, bool):
        controls = CONTROL_TASKS if controls else ()
    probe_tasks = [(task, languages) for task in tasks]
    if xnli:
        probe_tasks.append(("xnli", languages[:3]))
    for task, langs in probe_tasks:
        for i, train in enumerate(langs):
            for j, test in enumerate(langs):
                for step in steps:
                    run.probe(task, i, j, train, test, step, controls)
    for step in steps if bpc else []:
        for i, lang in enumerate(languages):
            value = 8.0 - 3.0 * (1 - np.exp(-step / 150)) * (1 - 0.08 * i)
            run.plain(step, "bpc", -1, "", lang, "bpc_pll", value, n=20000)
    for method in ["simalign-argmax", "simalign-itermax"] if simalign else []:
        for step in steps:
            for lang in languages[1:]:
                for layer in range(LAYERS):
                    f1 = 0.2 + 0.5 * (1 - np.exp(-step / 120)) * (1 - 0.1 * abs(layer - 2))
                    for metric, value in [("precision", f1 + 0.02), ("recall", f1 - 0.02),
                                          ("f1", f1), ("aer", 1 - f1)]:  # fmt: skip
                        run.plain(step, method, layer, languages[0], lang, metric, value, 100)
    files = [stats.ItemFile(model, step, scores) for step, scores in sorted(run.items.items())]
    return tidy_frame(run.rows), files


def synthetic_table(**kwargs) -> pd.DataFrame:
    return synthetic_run(**kwargs)[0]


def bootstrap_arguments() -> list[str]:
    return ["--resamples", str(BOOTSTRAP.resamples), "--confidence", str(BOOTSTRAP.confidence),
            "--bootstrap-seed", str(BOOTSTRAP.seed),
            "--min-sentences", str(BOOTSTRAP.min_sentences)]  # fmt: skip


def write_run(root: Path, **kwargs) -> tuple[Path, list[Path]]:
    """The table (parquet) and one item file per step under ``root``."""
    table, files = synthetic_run(**kwargs)
    root.mkdir(parents=True, exist_ok=True)
    table_path = root / "probing.parquet"
    table.to_parquet(table_path, index=False)
    item_paths = []
    for item_file in files:
        path = root / f"items-{item_file.step}.npz"
        stats.save_item_scores(path, item_file.scores, model=item_file.model, step=item_file.step)
        item_paths.append(path)
    return table_path, item_paths


def analyse_arguments(table: Path, items: list[Path], out_dir: Path, fraction=0.95) -> list[str]:
    return ["analyse", "--table", str(table), "--items", *map(str, items), "--views", "last",
            "best", "--onset-fraction", str(fraction), *bootstrap_arguments(),
            "--fdr", str(VERDICTS.fdr), "--verdict-resamples", str(VERDICTS.resamples),
            "--max-unknown-share", str(MAX_UNKNOWN_SHARE),
            "--out", *(str(out_dir / f"{table}.csv") for table in ANALYSIS_TABLES)]  # fmt: skip
