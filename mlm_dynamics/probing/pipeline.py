"""The probe pipeline shared by the UD probes (:mod:`mlm_dynamics.probing.cli`) and XNLI
(:mod:`mlm_dynamics.xnli`): the training items of each probe seed, and the scores of one probe
seed on one evaluation set with their bootstrap intervals.

Items belong to *units*, what a bootstrap resamples: a UD sentence (its words or arcs are the
items), an XNLI pair (its own unit, :meth:`Units.each_own`). Anything with ``units`` (items,) and
``n_units`` serves, a :class:`mlm_dynamics.probing.registry.TaskData` as well as a :class:`Units`.

Probe seed 0 fits on every training item; each further seed on the items of a bootstrap resample
of the training units, drawn with the key ``stats.resample_key(seed, language, split)``. The
split name is the caller's (UD ``train-refit``, XNLI ``train``), so that no other bootstrap of the
train split shares the draw. A score is the mean over items of a (layers, items) matrix (1 for a
correct item), with a percentile interval over the resampled units of the evaluation set
(:mod:`mlm_dynamics.stats`: the resample matrix ``weights`` of that set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlm_dynamics import stats


@dataclass(frozen=True)
class Units:
    """The unit of each item, ``0..n_units-1``."""

    units: np.ndarray  # (items,)
    n_units: int

    @classmethod
    def each_own(cls, items: int) -> Units:
        """Every item its own unit (an XNLI sentence pair)."""
        return cls(np.arange(items), items)


def training_rows(data, seed: int, language: str, split: str) -> np.ndarray:
    """The training items of probe seed ``seed``: all of them for seed 0, else those of a
    bootstrap resample of the units keyed by (seed, language, ``split``); a unit drawn ``k``
    times contributes its items ``k`` times, in item order."""
    items = np.arange(len(data.units))
    if seed == 0:
        return items
    counts = stats.resample_counts(data.n_units, 1, stats.resample_key(seed, language, split))
    return np.repeat(items, counts[0].astype(np.int64)[data.units])


def interval_rows(common, layers, correct, data, weights, bootstrap, metric) -> list[dict]:
    """One row per layer: the mean of ``correct`` (layers, items) over the items of ``data`` and
    its bootstrap interval over their units; ``n`` is the number of items."""
    sums = stats.unit_sums(np.asarray(correct, dtype=np.float64).T, data.units, data.n_units)
    items = np.bincount(data.units, minlength=data.n_units).astype(np.float64)
    low, high = bootstrap.interval(stats.resampled_ratios(weights, sums, items))
    values = sums.sum(axis=0) / items.sum()
    return [
        {**common, "layer": layer, "metric": metric, "value": value, "ci_low": lo, "ci_high": hi,
         "n": len(data.units)}
        for layer, value, lo, hi in zip(layers, values, low, high, strict=True)
    ]  # fmt: skip


def probe_rows(common, layers, correct, majority, data, weights, bootstrap) -> list[dict]:
    """The rows of one probe seed on one evaluation set: ``accuracy`` per layer from ``correct``
    (layers, items), then the train majority label's accuracy from ``majority`` (items,) at the
    table's baseline layer."""
    from mlm_dynamics.analysis.tables import BASELINE_LAYER, BASELINE_METRIC

    rows = interval_rows(common, layers, correct, data, weights, bootstrap, "accuracy")
    baseline = np.asarray(majority)[None, :]
    return rows + interval_rows(
        common, [BASELINE_LAYER], baseline, data, weights, bootstrap, BASELINE_METRIC
    )


def item_scores(common, layers, correct, data, task: str | None = None) -> stats.ItemScores:
    """The per-item ``correct`` (layers, items) of the probe that ``common`` names (its task,
    or ``task``), kept so that later statistics need no refit."""
    return stats.ItemScores(
        task or common["task"], common["train_lang"], common["test_lang"], common["split"],
        common["seed"], np.asarray(layers), correct, data.units, data.n_units,
    )  # fmt: skip
