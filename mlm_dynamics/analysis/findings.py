"""The paper's analyses of the tidy probing table, each with a paired bootstrap interval.

The score of a probe at a step is read at the layer of each view (``last``, ``best`` chosen on the
training language's dev split, ``layer-N``): :func:`mlm_dynamics.analysis.views.view_layers`, the
one definition that every CSV here, the transfer matrices and every figure use.

Only seed 0 (the probe fitted on all training sentences) enters the analyses; further seeds refit
on resamples of the training sentences (see ``probe_cli``), and their rows in the tidy table are the
probe-training variance. Every reported score is on the **test** split, with the 95% percentile
interval of a bootstrap over test sentences (:mod:`mlm_dynamics.stats`). The resamples are those
every scoring job drew for the same test set, so a difference of two scores on it (best minus last
layer, best minus final step, final minus step 0) is bootstrapped paired, item by item, from the
per-item correctness that ``score-probe`` stores (no refit).

``analyse`` writes three CSV tables:

- ``final_layer_gap.csv``: per model, task, language (in-language) and step, the dev-chosen best
  layer and the last layer, their test scores, ``gap`` = best - last with its interval and a
  verdict: ``last layer is best`` (the same layer), ``within noise`` (the interval holds 0, or is
  below it), ``last layer behind`` (the interval is above 0).
- ``degradation.csv``: per model, task, (train, test) pair and view, the best step (chosen on the
  training language's dev at the view's layer; ties go to the later step, so a plateau is not
  "degraded") against the final step: ``difference`` = best - final with its interval and a
  verdict: ``final is best`` (the same step, or an interval below 0), ``within noise`` (holds 0),
  ``degraded`` (above 0).
- ``onset.csv``: per model, task, pair and view, when the curve is learned. Beside the raw onset
  (the first step whose score reaches ``fraction`` of the final and of the highest score, as
  before), the onset of the normalised gain ``g(s) = (s - s_0) / (s_ref - s_0)`` with the final
  step (``onset_gain_step``) and the dev-chosen best step (``onset_best_gain_step``) as
  references: the point where ``g`` first reaches ``fraction``, linearly interpolated in
  ``log(1 + step)`` between the two checkpoints around it (:func:`gain_onset`), recomputed on every
  resample for its interval. A curve whose total gain ``s_final - s_0`` has an interval that holds
  0 has ``status`` "no onset" and no onset step: it did not measurably learn, which is not the
  same as learning at step 0.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlm_dynamics import stats
from mlm_dynamics.analysis.tables import BASELINE_LAYER, BASELINE_METRIC, read_table
from mlm_dynamics.analysis.views import (
    PAIR,
    PROBE,
    probe_rows,
    view_layers,
    view_name,
    view_scores,
)
from mlm_dynamics.atomic import save_table
from mlm_dynamics.errors import InputError

SELECTIVITY_METRIC = "selectivity"
REFERENCES = ("final", "best")


# ---------------------------------------------------------------- scores


def layer_scores(table: pd.DataFrame) -> pd.DataFrame:
    """In-language test accuracy (seed 0) of every layer: model, task, lang, step, layer, value."""
    rows = probe_rows(table)
    rows = rows[rows["train_lang"] == rows["test_lang"]]
    return rows.rename(columns={"train_lang": "lang"})[
        ["model", "task", "lang", "step", "layer", "value", "ci_low", "ci_high"]
    ].reset_index(drop=True)


def majority_baselines(table: pd.DataFrame) -> pd.DataFrame:
    """Majority-class test accuracy per model, task and language pair (it does not depend on
    step): the mean over steps of the seed-0 baseline rows (:data:`tables.BASELINE_METRIC` at
    :data:`tables.BASELINE_LAYER`)."""
    rows = table[
        (table["metric"] == BASELINE_METRIC)
        & (table["layer"] == BASELINE_LAYER)
        & (table["split"] == "test")
        & (table["seed"] == 0)
    ]
    grouped = rows.groupby(PAIR, sort=True)["value"].mean()
    return grouped.rename("majority_accuracy").reset_index()


# ---------------------------------------------------------------- paired statistics


class ItemBank:
    """Per-item test correctness (seed 0) of every probe, with the bootstrap that scored it."""

    def __init__(self, files: Sequence[stats.ItemFile], bootstrap: stats.Bootstrap):
        self.bootstrap = bootstrap
        self.items = {}
        for item_file in files:
            for score in item_file.scores:
                if score.split == "test" and score.seed == 0:
                    key = (item_file.model, item_file.step, score.task, score.train_lang,
                           score.test_lang)  # fmt: skip
                    self.items[key] = score
        self._weights = {}

    def weights(self, test_lang: str, n_units: int) -> np.ndarray:
        if (test_lang, n_units) not in self._weights:
            where = f"{test_lang} (test split)"
            self._weights[test_lang, n_units] = self.bootstrap.weights(
                n_units, test_lang, "test", where
            )
        return self._weights[test_lang, n_units]

    def get(self, model, step, task, train_lang, test_lang) -> stats.ItemScores:
        key = (model, int(step), task, train_lang, test_lang)
        if key not in self.items:
            raise InputError(
                f"no per-item test scores of the {task} probe {train_lang} -> {test_lang} of "
                f"{model} step {step} (an --items file of score-probe is missing)"
            )
        return self.items[key]

    def resampled(self, model, task, train_lang, test_lang, columns) -> tuple:
        """Scores of ``columns`` [(step, layer), ...] of one pair: (point (K,), resampled
        (resamples, K)); all on the same test set, so columns are paired."""
        sums, counts = [], []
        n_units = None
        for step, layer in columns:
            score = self.get(model, step, task, train_lang, test_lang)
            row = int(np.flatnonzero(score.layers == layer)[0])
            correct = stats.unit_sums(score.correct[row], score.units, score.n_units)
            sums.append(correct)
            counts.append(np.bincount(score.units, minlength=score.n_units).astype(np.float64))
            if n_units not in (None, score.n_units):
                raise InputError(
                    f"{model} {task} {train_lang} -> {test_lang}: steps scored on test sets of "
                    f"different sizes ({n_units} and {score.n_units} sentences)"
                )
            n_units = score.n_units
        sums, counts = np.stack(sums, axis=1), np.stack(counts, axis=1)
        point = sums.sum(axis=0) / counts.sum(axis=0)
        weights = self.weights(test_lang, n_units)
        return point, stats.resampled_ratios(weights, sums, counts)


def verdict(same: bool, low: float, high: float, labels: tuple[str, str, str]) -> str:
    """(same-or-better, within noise, worse) from a difference's interval (``same``: no
    difference by construction)."""
    if same or high < 0:
        return labels[0]
    return labels[2] if low > 0 else labels[1]


# ---------------------------------------------------------------- final-layer gap


GAP_VERDICTS = ("last layer is best", "within noise", "last layer behind")


def final_layer_gap(table: pd.DataFrame, bank: ItemBank) -> pd.DataFrame:
    """Per model, task, language (in-language) and step: dev-chosen best layer vs last layer."""
    scores = view_scores(table, ["best", "last"])
    own = scores[scores["train_lang"] == scores["test_lang"]]
    best = own[own["view"] == "best"].drop(columns="view")
    last = own[own["view"] == "last"].drop(columns=["view", "n"])
    keys = [*PAIR, "step"]
    pairs = best.merge(last, on=keys, suffixes=("_best", "_last"))
    rows = []
    for row in pairs.itertuples(index=False):
        _, resampled = bank.resampled(
            row.model, row.task, row.train_lang, row.test_lang,
            [(row.step, row.layer_best), (row.step, row.layer_last)],
        )  # fmt: skip
        low, high = bank.bootstrap.interval(resampled[:, 0] - resampled[:, 1])
        gap = row.value_best - row.value_last
        rows.append(
            {
                "model": row.model, "task": row.task, "lang": row.train_lang, "step": row.step,
                "best_layer": row.layer_best, "best_score": row.value_best,
                "best_ci_low": row.ci_low_best, "best_ci_high": row.ci_high_best,
                "last_layer": row.layer_last, "last_score": row.value_last,
                "last_ci_low": row.ci_low_last, "last_ci_high": row.ci_high_last,
                "gap": gap, "ci_low": low, "ci_high": high,
                "verdict": verdict(row.layer_best == row.layer_last, low, high, GAP_VERDICTS),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


GAP_COLUMNS = [
    "model", "task", "lang", "step", "best_layer", "best_score", "best_ci_low", "best_ci_high",
    "last_layer", "last_score", "last_ci_low", "last_ci_high", "gap", "ci_low", "ci_high",
    "verdict",
]  # fmt: skip


# ---------------------------------------------------------------- degradation over checkpoints

DEGRADATION_VERDICTS = ("final is best", "within noise", "degraded")


def dev_scores_at(table: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Each probe's own-language dev accuracy at the layers of ``layers`` (view_layers rows)."""
    dev = probe_rows(table, split="dev")
    dev = dev[dev["train_lang"] == dev["test_lang"]][[*PROBE, "layer", "value"]]
    return layers.merge(dev, on=[*PROBE, "layer"], how="left").rename(
        columns={"value": "dev_value"}
    )


def dev_best_step(curve: pd.DataFrame) -> int:
    """The step of highest dev score (``dev_value``); ties go to the later step."""
    curve = curve.sort_values("step")
    values = curve["dev_value"].to_numpy(dtype=float)
    if np.isnan(values).all():
        row = curve.iloc[0]
        raise InputError(
            f"no dev accuracy for the {row.task} probes of {row.model} trained on "
            f"{row.train_lang}: the best step is chosen on dev"
        )
    best = np.flatnonzero(values == np.nanmax(values))[-1]
    return int(curve["step"].iloc[best])


def curves(table: pd.DataFrame, views: Sequence[str]):
    """Every (model, task, view, train, test) curve over steps, with each step's layer, test
    score and interval, and the training language's dev score at that layer."""
    scores = view_scores(table, views)
    dev = dev_scores_at(table, view_layers(table, views))
    scores = scores.merge(dev[[*PROBE, "view", "dev_value"]], on=[*PROBE, "view"], how="left")
    return scores.groupby(["model", "task", "view", "train_lang", "test_lang"], sort=True)


def degradation(table: pd.DataFrame, bank: ItemBank, views: Sequence[str]) -> pd.DataFrame:
    """Best (chosen on dev) minus final step, per model, task, pair and view, with a verdict."""
    rows = []
    for (model, task, view, train, test), curve in curves(table, views):
        curve = curve.sort_values("step")
        best = dev_best_step(curve)
        final = int(curve["step"].iloc[-1])
        by_step = curve.set_index("step")
        columns = [(best, by_step.loc[best, "layer"]), (final, by_step.loc[final, "layer"])]
        point, resampled = bank.resampled(model, task, train, test, columns)
        low, high = bank.bootstrap.interval(resampled[:, 0] - resampled[:, 1])
        rows.append(
            {
                "model": model, "task": task, "view": view, "train_lang": train,
                "test_lang": test, "kind": kind(train, test), "best_step": best,
                "best_layer": columns[0][1], "best_score": point[0],
                "best_ci_low": by_step.loc[best, "ci_low"],
                "best_ci_high": by_step.loc[best, "ci_high"], "final_step": final,
                "final_layer": columns[1][1], "final_score": point[1],
                "final_ci_low": by_step.loc[final, "ci_low"],
                "final_ci_high": by_step.loc[final, "ci_high"],
                "difference": point[0] - point[1], "ci_low": low, "ci_high": high,
                "verdict": verdict(best == final, low, high, DEGRADATION_VERDICTS),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=DEGRADATION_COLUMNS)


DEGRADATION_COLUMNS = [
    "model", "task", "view", "train_lang", "test_lang", "kind", "best_step", "best_layer",
    "best_score", "best_ci_low", "best_ci_high", "final_step", "final_layer", "final_score",
    "final_ci_low", "final_ci_high", "difference", "ci_low", "ci_high", "verdict",
]  # fmt: skip


def kind(train_lang: str, test_lang: str) -> str:
    return "in-language" if train_lang == test_lang else "transfer"


# ---------------------------------------------------------------- onset


def onset_step(
    steps: Sequence[int], scores: Sequence[float], fraction: float, reference: str = "final"
) -> int | None:
    """Raw onset: the first step whose score reaches ``fraction`` of the reference score.

    ``reference`` is "final" (the score at the last step) or "best" (the highest score). Steps need
    not be sorted; NaN scores never reach anything. None when the curve is empty, the reference is
    NaN, or no step reaches the threshold (possible only for a negative reference score). A
    fraction of the score itself, not of the gain over step 0: a task whose step-0 score is already
    high has an early raw onset by construction (see :func:`gain_onset`).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, not {reference!r}")
    if len(steps) != len(scores):
        raise ValueError("steps and scores differ in length")
    if len(steps) == 0:
        return None
    order = np.argsort(np.asarray(steps), kind="stable")
    steps_sorted = np.asarray(steps)[order]
    scores_sorted = np.asarray(scores, dtype=float)[order]
    if reference == "final":
        target = scores_sorted[-1]
    else:
        target = np.nan if np.isnan(scores_sorted).all() else np.nanmax(scores_sorted)
    if math.isnan(target):
        return None
    reached = np.flatnonzero(scores_sorted >= fraction * target)
    return int(steps_sorted[reached[0]]) if reached.size else None


def gain_onset(steps: Sequence[int], scores, fraction: float, reference: int = -1) -> np.ndarray:
    """Onset of the normalised gain, per curve: scores (..., steps) in ascending step order.

    ``g(s) = (score(s) - score(steps[0])) / (score(steps[reference]) - score(steps[0]))``; the
    onset is where ``g`` first reaches ``fraction``, linearly interpolated in ``log(1 + step)``
    between the checkpoint before and the one that reaches it. NaN where the gain to the reference
    is not positive (nothing learned, so no onset).
    """
    steps = np.asarray(steps, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if np.any(np.diff(steps) <= 0):
        raise ValueError("gain_onset needs strictly ascending steps")
    gain = scores[..., reference] - scores[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (scores - scores[..., :1]) / gain[..., None]
    reached = g >= fraction
    reached[..., 0] = False  # g(steps[0]) = 0 < fraction
    first = np.argmax(reached, axis=-1)
    valid = (gain > 0) & reached.any(axis=-1)
    first = np.where(valid, first, 1)
    x = np.log1p(steps)
    g0 = np.take_along_axis(g, (first - 1)[..., None], axis=-1)[..., 0]
    g1 = np.take_along_axis(g, first[..., None], axis=-1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        position = x[first - 1] + (fraction - g0) / (g1 - g0) * (x[first] - x[first - 1])
    return np.where(valid, np.expm1(position), np.nan)


def onsets(table: pd.DataFrame, bank: ItemBank, views: Sequence[str], fraction: float):
    """Raw and gain onsets of every curve (in-language and transfer), per view."""
    rows = []
    for (model, task, view, train, test), curve in curves(table, views):
        curve = curve.sort_values("step")
        steps = curve["step"].to_numpy()
        scores = curve["value"].to_numpy(dtype=float)
        best = dev_best_step(curve)
        reference = int(np.flatnonzero(steps == best)[0])
        columns = list(zip(steps, curve["layer"], strict=True))
        point, resampled = bank.resampled(model, task, train, test, columns)
        gain_low, gain_high = bank.bootstrap.interval(resampled[:, -1] - resampled[:, 0])
        learned = len(steps) > 1 and gain_low > 0
        row = {
            "model": model, "task": task, "view": view, "train_lang": train, "test_lang": test,
            "kind": kind(train, test),
            "onset_final_step": onset_step(steps, scores, fraction, "final"),
            "onset_best_step": onset_step(steps, scores, fraction, "best"),
            "gain": point[-1] - point[0], "gain_ci_low": gain_low, "gain_ci_high": gain_high,
            "status": "onset" if learned else "no onset",
        }  # fmt: skip
        for name, ref in (("onset_gain", -1), ("onset_best_gain", reference)):
            if learned and ref != 0:
                low, high = bank.bootstrap.interval(gain_onset(steps, resampled, fraction, ref))
                value = float(gain_onset(steps, point, fraction, ref))
            else:
                value = low = high = np.nan
            row.update({f"{name}_step": value, f"{name}_ci_low": low, f"{name}_ci_high": high})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=ONSET_COLUMNS)
    for column in ("onset_final_step", "onset_best_step"):
        frame[column] = frame[column].astype("Int64")
    return frame


ONSET_COLUMNS = [
    "model", "task", "view", "train_lang", "test_lang", "kind", "onset_final_step",
    "onset_best_step", "gain", "gain_ci_low", "gain_ci_high", "status", "onset_gain_step",
    "onset_gain_ci_low", "onset_gain_ci_high", "onset_best_gain_step", "onset_best_gain_ci_low",
    "onset_best_gain_ci_high",
]  # fmt: skip


# ---------------------------------------------------------------- command

ANALYSIS_TABLES = ("onset", "final_layer_gap", "degradation")


def analyse(
    table: pd.DataFrame, bank: ItemBank, views: Sequence[str], fraction: float
) -> dict[str, pd.DataFrame]:
    """The analysis tables, by file stem (:data:`ANALYSIS_TABLES`)."""
    return {
        "onset": onsets(table, bank, views, fraction),
        "final_layer_gap": final_layer_gap(table, bank),
        "degradation": degradation(table, bank, views),
    }


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--table", required=True, help="the tidy table (.parquet or .csv)")
    parser.add_argument("--items", nargs="+", required=True, help="score-probe --items files")
    parser.add_argument("--views", nargs="+", required=True, help="last, best, layer-N")
    parser.add_argument(
        "--onset-fraction",
        type=float,
        required=True,
        help="onset = first step reaching this fraction of the final (and of the best) score",
    )
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        help="where each table goes, named by its table: onset.csv, final_layer_gap.csv, ...",
    )
    stats.add_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 < args.onset_fraction <= 1:
        raise InputError(f"--onset-fraction: {args.onset_fraction} is not in (0, 1]")
    outputs = {Path(path).stem: Path(path) for path in args.out}
    if sorted(outputs) != sorted(ANALYSIS_TABLES):
        raise InputError(f"--out: one .csv per table, named {', '.join(ANALYSIS_TABLES)}")
    views = [view_name(view) for view in args.views]
    bank = ItemBank(
        [stats.load_item_scores(path) for path in args.items], stats.from_arguments(args)
    )
    tables = analyse(read_table(args.table), bank, views, args.onset_fraction)
    for stem, frame in tables.items():
        save_table(outputs[stem], frame)
        print(f"{outputs[stem]}: {len(frame)} rows")
