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

A model with pretraining seeds (``models.<name>.seeds``) is read as a whole: every score is the
mean over its seeds, every choice is made on the seeds' mean dev scores, and every interval,
onset and p-value resamples the seeds and then the sentences (:mod:`mlm_dynamics.analysis.items`,
the Multi-Bootstrap), so it is for the training procedure, not for one run.

``analyse`` writes three CSV tables. A verdict is a test (:class:`Verdicts`): its one-sided
paired bootstrap p-value, Benjamini-Hochberg adjusted over its table's rows of one model, is a
discovery at the false discovery rate; every row carries ``p_value`` and ``p_adjusted``, and
``interval_covers`` (what its interval resamples: the test sentences, and the pretraining seeds
of a model with several).

- ``final_layer_gap.csv``: per model, task, language (in-language) and step, the dev-chosen best
  *transformer* layer (layer 1 and up) and the last layer, their test scores, the embedding
  layer's beside, ``gap`` = best - last with its interval and a verdict: ``last layer is best``
  (the same layer), ``last layer behind`` (a discovery), else ``within noise``; and how often
  the dev resamples choose the same layer (``best_layer_stability``).
- ``degradation.csv``: per model, task, (train, test) pair and view, the best step (chosen on the
  training language's dev at the view's layer; ties go to the later step, so a plateau is not
  "degraded") against the final step: ``difference`` = best - final with its interval and a
  verdict: ``final is best`` (the same step), ``degraded`` (a discovery), else ``within
  noise``; and ``best_step_stability``.
- ``onset.csv``: per model, task, pair and view, when the curve is learned. Beside the raw onset
  (the first step whose score reaches ``fraction`` of the final and of the highest score, as
  before), the onset of the normalised gain ``g(s) = (s - s_0) / (s_ref - s_0)`` with the final
  step (``onset_gain_step``) and the dev-chosen best step (``onset_best_gain_step``) as
  references: the point where ``g`` first reaches ``fraction``, linearly interpolated in
  ``log(1 + step)`` between the two checkpoints around it (:func:`gain_onset`), recomputed on every
  resample for its interval. A curve that has reached ``fraction`` by the first measured step
  after the start is censored there ("by step s", ``onset_gain_censored``): nothing before it
  was measured. A curve whose total gain ``s_final - s_0`` is not a discovery has ``status`` "no
  onset" and no onset step: it did not measurably learn, which is not the same as learning at
  step 0. A language whose test words hold the tokenizer's unknown token too often gets "not
  interpretable" in place of every verdict and status.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlm_dynamics import stats
from mlm_dynamics.analysis.items import ItemBank
from mlm_dynamics.analysis.seeds import seeds_covers
from mlm_dynamics.analysis.tables import (
    BASELINE_LAYER,
    BASELINE_METRIC,
    interval_covers,
    read_table,
)
from mlm_dynamics.analysis.views import (
    PAIR,
    PROBE,
    dev_best_layers,
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


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdicts:
    """How verdicts are reached: a one-sided paired bootstrap p-value per test (``resamples``
    resamples), Benjamini-Hochberg adjusted over its family (one analysis table of one model),
    a discovery at false discovery rate ``fdr``; languages whose test words are too often
    unknown to the tokenizer (``unreadable``: language -> share) get no verdict."""

    fdr: float
    resamples: int
    unreadable: dict = field(default_factory=dict)

    def readable(self, *languages: str) -> str | None:
        """None, or why a verdict on these languages would not be interpretable."""
        for lang in languages:
            if lang in self.unreadable:
                return (
                    f"not interpretable ({100 * self.unreadable[lang]:.0f}% of {lang} test "
                    "words hold the unknown token)"
                )
        return None

    def reasons(self, frame: pd.DataFrame, *columns: str) -> list[str | None]:
        """Per row, why its verdict would not be interpretable (None: it is), from the
        languages in ``columns``."""
        return [self.readable(*languages) for languages in frame[list(columns)].itertuples(False)]

    def decide(self, frame: pd.DataFrame, bank: ItemBank, tests, testable, decide):
        """Adds ``p_value``, ``p_adjusted`` (per model) and ``verdict`` to ``frame``: rows not
        ``testable`` get ``decide(row, None)``; the others ``decide(row, adjusted p)``."""
        frame = frame.copy()
        frame["p_value"] = np.nan
        rows = np.flatnonzero(np.asarray(testable, dtype=bool))
        if rows.size:
            frame.loc[frame.index[rows], "p_value"] = bank.p_values(
                [tests[i] for i in rows], self.resamples
            )
        self.adjust(frame)
        # A p-value near the decision is estimated again from REFINE times the resamples, so
        # that the Monte Carlo error of the estimate, not the data, seldom decides a verdict.
        near = np.flatnonzero(np.abs(np.log(frame["p_adjusted"] / self.fdr)) < np.log(2))
        if near.size:
            frame.loc[frame.index[near], "p_value"] = bank.p_values(
                [tests[i] for i in near], REFINE * self.resamples
            )
            self.adjust(frame)
        frame["verdict"] = [
            decide(row, None if np.isnan(row.p_adjusted) else row.p_adjusted)
            for row in frame.itertuples()
        ]
        return frame

    def differences(self, frame, bank, tests, same, labels, *languages) -> pd.DataFrame:
        """The verdicts of a table of paired differences (best minus last layer, best minus
        final step): ``labels[0]`` where ``same`` (no difference by construction), "not
        interpretable" for an unreadable language in ``languages``, else tested (``label``)."""
        why = self.reasons(frame, *languages)
        testable = ~same & np.array([reason is None for reason in why], dtype=bool)

        def decide(row, p_adjusted):
            return why[row.Index] or self.label(p_adjusted, same[row.Index], labels)

        return self.decide(frame, bank, tests, testable, decide)

    @staticmethod
    def adjust(frame: pd.DataFrame) -> None:
        """``p_adjusted``: Benjamini-Hochberg over each model's rows (one family)."""
        frame["p_adjusted"] = np.nan
        for _, family in frame.groupby("model", sort=False):
            adjusted = stats.benjamini_hochberg(family["p_value"].to_numpy())
            frame.loc[family.index, "p_adjusted"] = adjusted

    def label(self, p_adjusted: float | None, same: bool, labels) -> str:
        """(the same, within noise, worse): worse when the adjusted p-value is at most the false
        discovery rate; the same by construction (the same layer or step); else within noise
        (a difference in the other direction is not a claim this table makes)."""
        if p_adjusted is not None and p_adjusted <= self.fdr:
            return labels[2]
        return labels[0] if same else labels[1]


UNREADABLE = "not interpretable"
# How many times statistics.verdict_resamples a p-value within a factor 2 of its decision gets.
REFINE = 20


def unreadable_languages(table: pd.DataFrame, max_share: float) -> dict[str, float]:
    """Languages whose test words hold the unknown token more often than ``max_share`` (the
    tokenizer rows of score-probe), language -> share."""
    rows = table[
        (table["task"] == "tokenizer") & (table["metric"] == UNKNOWN_METRIC)
        & (table["split"] == "test")
    ]  # fmt: skip
    shares = rows.groupby("test_lang")["value"].max()
    return {lang: float(share) for lang, share in shares.items() if share > max_share}


UNKNOWN_METRIC = "unk_word_share"


# ---------------------------------------------------------------- final-layer gap


GAP_VERDICTS = ("last layer is best", "within noise", "last layer behind")
# The gap compares the last layer with the best *transformer* layer (layer 1 and up): a model
# whose output layer falls behind its input embeddings is not the paper's finding (knowledge
# moving from the last transformer layer to lower ones). The embedding layer is reported beside.
LOWEST_TRANSFORMER_LAYER = 1


def final_layer_gap(table: pd.DataFrame, bank: ItemBank, verdicts: Verdicts) -> pd.DataFrame:
    """Per model, task, language (in-language) and step: the dev-chosen best transformer layer
    vs the last layer, the embedding layer beside them."""
    scores = probe_rows(table)
    own = scores[scores["train_lang"] == scores["test_lang"]]
    keys = [*PAIR, "step"]
    best = views_at(own, dev_best_layers(table, LOWEST_TRANSFORMER_LAYER))
    last = views_at(own, own.groupby("model")["layer"].max().rename("layer").reset_index())
    embedding = own[own["layer"] == 0][[*keys, "value", "ci_low", "ci_high"]].rename(
        columns={"value": "embedding_value", "ci_low": "embedding_ci_low",
                 "ci_high": "embedding_ci_high"}
    )  # fmt: skip
    pairs = best.merge(last.drop(columns="n"), on=keys, suffixes=("_best", "_last"))
    pairs = pairs.merge(embedding, on=keys, how="left").sort_values(keys, kind="stable")
    rows, tests = [], []
    for row in pairs.itertuples(index=False):
        columns = [(row.step, row.layer_best), (row.step, row.layer_last)]
        _, resampled = bank.resampled(row.model, row.task, row.train_lang, row.test_lang, columns)
        low, high = bank.bootstrap.interval(resampled[:, 0] - resampled[:, 1])
        transformer = [(row.step, layer) for layer in range(LOWEST_TRANSFORMER_LAYER,
                                                            row.layer_last + 1)]  # fmt: skip
        stability = bank.dev_stability(
            row.model, row.task, row.train_lang, transformer,
            row.layer_best - LOWEST_TRANSFORMER_LAYER, prefer_last=False,
        )  # fmt: skip
        tests.append((row.model, row.task, row.train_lang, row.test_lang, *columns))
        rows.append(
            {
                "model": row.model, "task": row.task, "lang": row.train_lang, "step": row.step,
                "best_layer": row.layer_best, "best_layer_stability": stability,
                "best_score": row.value_best, "best_ci_low": row.ci_low_best,
                "best_ci_high": row.ci_high_best,
                "last_layer": row.layer_last, "last_score": row.value_last,
                "last_ci_low": row.ci_low_last, "last_ci_high": row.ci_high_last,
                "embedding_score": row.embedding_value,
                "embedding_ci_low": row.embedding_ci_low,
                "embedding_ci_high": row.embedding_ci_high,
                "gap": row.value_best - row.value_last, "ci_low": low, "ci_high": high,
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=GAP_COLUMNS[:-4])
    same = (frame["best_layer"] == frame["last_layer"]).to_numpy()
    frame = verdicts.differences(frame, bank, tests, same, GAP_VERDICTS, "lang")
    return with_coverage(frame, bank)[GAP_COLUMNS]


def views_at(scores: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """The test scores of ``scores`` at the layer ``layers`` gives each probe (or model)."""
    return layers.merge(scores, on=[c for c in layers.columns if c != "layer"] + ["layer"])


GAP_COLUMNS = [
    "model", "task", "lang", "step", "best_layer", "best_layer_stability", "best_score",
    "best_ci_low", "best_ci_high", "last_layer", "last_score", "last_ci_low", "last_ci_high",
    "embedding_score", "embedding_ci_low", "embedding_ci_high", "gap", "ci_low", "ci_high",
    "p_value", "p_adjusted", "verdict", "interval_covers",
]  # fmt: skip


def with_coverage(frame: pd.DataFrame, bank: ItemBank, covered=None) -> pd.DataFrame:
    """What each row's interval covers (tables.interval_covers: the resampled test sentences,
    sentence pairs for XNLI; ``covered`` the rows to read it from, if not ``frame``), and the
    pretraining seeds of a model with several."""
    covers = interval_covers(frame.assign(split="test") if covered is None else covered)
    seeds = frame["model"].map(bank.seed_count)
    covers = [
        seeds_covers(text, count) if count > 1 and text != "none" else text
        for text, count in zip(covers, seeds, strict=True)
    ]
    return frame.assign(interval_covers=covers)


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


def best_step_stability(bank: ItemBank, curve: pd.DataFrame, best: int) -> float:
    """How often the dev resamples choose the same best step (each step at its view's layer)."""
    row = curve.iloc[0]
    columns = list(zip(curve["step"], curve["layer"], strict=True))
    chosen = int(np.flatnonzero(curve["step"].to_numpy() == best)[0])
    return bank.dev_stability(row.model, row.task, row.train_lang, columns, chosen, True)


def curves(table: pd.DataFrame, views: Sequence[str]):
    """Every (model, task, view, train, test) curve over steps, with each step's layer, test
    score and interval, and the training language's dev score at that layer."""
    scores = view_scores(table, views)
    dev = dev_scores_at(table, view_layers(table, views))
    scores = scores.merge(dev[[*PROBE, "view", "dev_value"]], on=[*PROBE, "view"], how="left")
    return scores.groupby(["model", "task", "view", "train_lang", "test_lang"], sort=True)


def degradation(
    table: pd.DataFrame, bank: ItemBank, views: Sequence[str], verdicts: Verdicts
) -> pd.DataFrame:
    """Best (chosen on dev) minus final step, per model, task, pair and view, with a verdict."""
    rows, tests = [], []
    for (model, task, view, train, test), curve in curves(table, views):
        curve = curve.sort_values("step")
        best = dev_best_step(curve)
        final = int(curve["step"].iloc[-1])
        by_step = curve.set_index("step")
        columns = [(best, by_step.loc[best, "layer"]), (final, by_step.loc[final, "layer"])]
        point, resampled = bank.resampled(model, task, train, test, columns)
        low, high = bank.bootstrap.interval(resampled[:, 0] - resampled[:, 1])
        tests.append((model, task, train, test, *columns))
        rows.append(
            {
                "model": model, "task": task, "view": view, "train_lang": train,
                "test_lang": test, "kind": kind(train, test), "best_step": best,
                "best_step_stability": best_step_stability(bank, curve, best),
                "best_layer": columns[0][1], "best_score": point[0],
                "best_ci_low": by_step.loc[best, "ci_low"],
                "best_ci_high": by_step.loc[best, "ci_high"], "final_step": final,
                "final_layer": columns[1][1], "final_score": point[1],
                "final_ci_low": by_step.loc[final, "ci_low"],
                "final_ci_high": by_step.loc[final, "ci_high"],
                "difference": point[0] - point[1], "ci_low": low, "ci_high": high,
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=DEGRADATION_COLUMNS[:-4])
    same = (frame["best_step"] == frame["final_step"]).to_numpy()
    frame = verdicts.differences(
        frame, bank, tests, same, DEGRADATION_VERDICTS, "train_lang", "test_lang"
    )
    return with_coverage(frame, bank)[DEGRADATION_COLUMNS]


DEGRADATION_COLUMNS = [
    "model", "task", "view", "train_lang", "test_lang", "kind", "best_step",
    "best_step_stability", "best_layer", "best_score", "best_ci_low", "best_ci_high",
    "final_step", "final_layer", "final_score", "final_ci_low", "final_ci_high", "difference",
    "ci_low", "ci_high", "p_value", "p_adjusted", "verdict", "interval_covers",
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
    between the checkpoint before and the one that reaches it. Nothing was measured between the
    first two steps, so a curve that has reached ``fraction`` by ``steps[1]`` gets ``steps[1]``
    itself (reached *by* that step, censored: :func:`by_first_step`), never a step between them.
    NaN where the gain to the reference is not positive (nothing learned, so no onset).
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
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        position = x[first - 1] + (fraction - g0) / (g1 - g0) * (x[first] - x[first - 1])
        onset = np.where(first == 1, steps[1], np.expm1(position))
    return np.where(valid, onset, np.nan)


def by_first_step(steps: Sequence[int], onset: float) -> bool:
    """Whether an onset is censored: the curve had reached its fraction by the first measured
    step after the start (the onset is that step, read "by step s")."""
    return bool(len(steps) > 1 and onset == steps[1])


# A choice made from dev scores (a layer, a step) is called unstable when fewer dev resamples than
# this make it again (the findings summary counts them; the figures mark them).
STABLE_SHARE = 0.9
# An onset's interval needs an onset and nearly every resample to have one: otherwise it would be
# built from the few resamples that have one.
MIN_FINITE_SHARE = 0.95


def onset_columns(name, steps, point, resampled, fraction, reference, bootstrap) -> dict:
    """The gain onset of one curve to one reference step: its value, whether it is censored
    ("by step s"), its interval and the share of resamples with an onset."""
    if len(steps) < 2 or reference in (0, -len(steps)):
        value = low = high = share = np.nan
    else:
        value = float(gain_onset(steps, point, fraction, reference))
        samples = gain_onset(steps, resampled, fraction, reference)
        share = float(np.isfinite(samples).mean())
        low = high = np.nan  # no interval around a missing onset, nor from a few resamples
        if np.isfinite(value) and share >= MIN_FINITE_SHARE:
            low, high = bootstrap.interval(samples)
    return {
        f"{name}_step": value, f"{name}_censored": by_first_step(steps, value),
        f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_finite_share": share,
    }  # fmt: skip


ONSETS = (("onset_gain", "final"), ("onset_best_gain", "best"))


def onsets(
    table: pd.DataFrame, bank: ItemBank, views: Sequence[str], fraction: float, verdicts: Verdicts
) -> pd.DataFrame:
    """Raw and gain onsets of every curve (in-language and transfer), per view; a curve has a
    gain onset when its gain from the first to the last step is a discovery (``verdicts``)."""
    rows, tests = [], []
    for (model, task, view, train, test), curve in curves(table, views):
        curve = curve.sort_values("step")
        steps = curve["step"].to_numpy()
        scores = curve["value"].to_numpy(dtype=float)
        best = dev_best_step(curve)
        columns = list(zip(steps, curve["layer"], strict=True))
        point, resampled = bank.resampled(model, task, train, test, columns)
        gain_low, gain_high = bank.bootstrap.interval(resampled[:, -1] - resampled[:, 0])
        row = {
            "model": model, "task": task, "view": view, "train_lang": train, "test_lang": test,
            "kind": kind(train, test),
            "onset_final_step": onset_step(steps, scores, fraction, "final"),
            "onset_best_step": onset_step(steps, scores, fraction, "best"),
            "best_step": best, "best_step_stability": best_step_stability(bank, curve, best),
            "gain": point[-1] - point[0], "gain_ci_low": gain_low, "gain_ci_high": gain_high,
        }  # fmt: skip
        references = {"final": -1, "best": int(np.flatnonzero(steps == best)[0])}
        for name, reference in ONSETS:
            row.update(onset_columns(name, steps, point, resampled, fraction,
                                     references[reference], bank.bootstrap))  # fmt: skip
        tests.append((model, task, train, test, columns[-1], columns[0]))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in ONSET_COLUMNS if c not in ONSET_DECIDED])
    why = verdicts.reasons(frame, "train_lang", "test_lang")
    several_steps = np.array([last[0] != first[0] for *_, last, first in tests], dtype=bool)
    testable = np.array([reason is None for reason in why], dtype=bool) & several_steps

    def decide(row, p_adjusted):
        learned = p_adjusted is not None and p_adjusted <= verdicts.fdr
        return why[row.Index] or ("onset" if learned else "no onset")

    frame = verdicts.decide(frame, bank, tests, testable, decide)
    frame = frame.rename(columns={"verdict": "status"})
    without = frame["status"] != "onset"
    for name, _ in ONSETS:  # no onset where nothing was measurably learned
        frame.loc[without, [f"{name}_step", f"{name}_ci_low", f"{name}_ci_high"]] = np.nan
        frame.loc[without, f"{name}_censored"] = False
    for column in ("onset_final_step", "onset_best_step"):
        frame[column] = frame[column].astype("Int64")
    covered = frame.assign(split="test", ci_low=frame["gain_ci_low"],
                           ci_high=frame["gain_ci_high"])  # fmt: skip
    return with_coverage(frame, bank, covered)[ONSET_COLUMNS]


ONSET_DECIDED = ("p_value", "p_adjusted", "status", "interval_covers")
ONSET_COLUMNS = [
    "model", "task", "view", "train_lang", "test_lang", "kind", "onset_final_step",
    "onset_best_step", "best_step", "best_step_stability", "gain", "gain_ci_low",
    "gain_ci_high", "p_value", "p_adjusted", "status",
    *[f"{name}_{part}" for name, _ in ONSETS
      for part in ("step", "censored", "ci_low", "ci_high", "finite_share")],
    "interval_covers",
]  # fmt: skip


# ---------------------------------------------------------------- command

ANALYSIS_TABLES = ("onset", "final_layer_gap", "degradation")


def analyse(
    table: pd.DataFrame, bank: ItemBank, views: Sequence[str], fraction: float, verdicts: Verdicts
) -> dict[str, pd.DataFrame]:
    """The analysis tables, by file stem (:data:`ANALYSIS_TABLES`)."""
    return {
        "onset": onsets(table, bank, views, fraction, verdicts),
        "final_layer_gap": final_layer_gap(table, bank, verdicts),
        "degradation": degradation(table, bank, views, verdicts),
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
    parser.add_argument(
        "--fdr", type=float, required=True, help="false discovery rate of every verdict family"
    )
    parser.add_argument(
        "--verdict-resamples", type=int, required=True, help="bootstrap resamples of a p-value"
    )
    parser.add_argument(
        "--max-unknown-share",
        type=float,
        required=True,
        help="a language whose test words hold the unknown token more often gets no verdict",
    )
    stats.add_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 < args.onset_fraction <= 1:
        raise InputError(f"--onset-fraction: {args.onset_fraction} is not in (0, 1]")
    if not 0 < args.fdr < 1:
        raise InputError(f"--fdr: {args.fdr} is not in (0, 1)")
    if args.verdict_resamples < args.resamples:
        raise InputError(
            f"--verdict-resamples: {args.verdict_resamples} is fewer than --resamples "
            f"{args.resamples} (a verdict's p-value reads at least the intervals' resamples)"
        )
    outputs = {Path(path).stem: Path(path) for path in args.out}
    if sorted(outputs) != sorted(ANALYSIS_TABLES):
        raise InputError(f"--out: one .csv per table, named {', '.join(ANALYSIS_TABLES)}")
    views = [view_name(view) for view in args.views]
    bank = ItemBank(
        [stats.load_item_scores(path) for path in args.items], stats.from_arguments(args)
    )
    table = read_table(args.table)
    verdicts = Verdicts(
        args.fdr, args.verdict_resamples, unreadable_languages(table, args.max_unknown_share)
    )
    tables = analyse(table, bank, views, args.onset_fraction, verdicts)
    for stem, frame in tables.items():
        save_table(outputs[stem], frame)
        print(f"{outputs[stem]}: {len(frame)} rows")
