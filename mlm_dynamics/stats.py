"""Uncertainty of every reported score: a paired bootstrap over test sentences.

A score here is a ratio of sums over the sentences of one evaluation set (accuracy: correct items
over items; BPC: bits over characters; F1 from link counts). Its 95% interval comes from ``B``
resamples of that set's *sentences* with replacement (items of one sentence are not independent,
so sentences are the unit). The resamples are a deterministic function of a key naming the set
(``"{seed}:{language}:{split}"``) and of the number of sentences, drawn the same way by every job
that scores that set: every probe, layer and step scored on one test set sees the same resamples,
so a difference of two scores (best minus final, best minus last layer, a score minus its step-0
value) is bootstrapped *paired*, row by row of the same resample matrix.

:func:`resample_counts` draws the matrix (resamples x sentences: how often each sentence is
drawn); :func:`resampled_ratios` turns per-sentence sums into one score per resample; and
:func:`percentile_interval` reads off the interval. :func:`ratio_interval` does all three.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mlm_dynamics.errors import InputError


def stable_seed(key: str) -> int:
    """A 64-bit seed from a string, the same on every machine and Python (``hash`` is salted)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")


def resample_key(seed: int, language: str, split: str) -> str:
    """The key of one evaluation set's resamples (see the module docstring)."""
    return f"{seed}:{language}:{split}"


def check_units(n_units: int, min_units: int, where: str) -> None:
    """Refuse a set too small for a bootstrap interval to mean anything, naming it."""
    if n_units < min_units:
        raise InputError(
            f"{where}: {n_units} sentences, fewer than the {min_units} a bootstrap interval needs "
            "(statistics.min_sentences)"
        )


def resample_counts(n_units: int, resamples: int, key: str) -> np.ndarray:
    """(resamples, n_units) float64: how often each unit is drawn in each resample."""
    return np.concatenate(list(resample_count_chunks(n_units, resamples, key, resamples)))


# Resamples drawn at once where many are read (a verdict's p-value): bounded memory.
RESAMPLE_CHUNK = 10_000


def resample_count_chunks(n_units: int, resamples: int, key: str, chunk: int = RESAMPLE_CHUNK):
    """``resample_counts`` in blocks of at most ``chunk`` resamples, drawn from the same stream
    (the blocks, stacked, are ``resample_counts(n_units, resamples, key)``): many resamples in
    bounded memory."""
    if n_units < 1 or resamples < 1:
        raise ValueError("a bootstrap needs at least one unit and one resample")
    rng = np.random.default_rng(stable_seed(key))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.integers(n_units, size=(size, n_units))
        flat = draws + n_units * np.arange(size)[:, None]
        counts = np.bincount(flat.ravel(), minlength=size * n_units)
        yield counts.reshape(size, n_units).astype(np.float64)


def resampled_ratios(weights: np.ndarray, numerators: np.ndarray, denominators: np.ndarray):
    """Scores per resample, (resamples, K), from per-unit sums (units, K) and (units, K) or
    (units,): ``sum_u w_u num_u / sum_u w_u den_u``. A resample with a zero denominator is NaN."""
    numerators = np.asarray(numerators, dtype=np.float64)
    denominators = np.asarray(denominators, dtype=np.float64)
    total = weights @ denominators
    if total.ndim == 1 and numerators.ndim == 2:
        total = total[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ numerators) / total


def percentile_interval(samples: np.ndarray, confidence: float):
    """(low, high), each of shape samples.shape[1:]: percentile bootstrap interval over axis 0.
    NaN resamples are left out; a column with none left is NaN."""
    alpha = (1 - confidence) / 2
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if samples.ndim == 1:
            samples = samples[:, None]
            squeeze = True
        else:
            squeeze = False
        low = np.full(samples.shape[1:], np.nan)
        high = np.full(samples.shape[1:], np.nan)
        finite = np.isfinite(samples).any(axis=0)
        if finite.any():
            quantiles = np.nanquantile(samples[:, finite], [alpha, 1 - alpha], axis=0)
            low[finite], high[finite] = quantiles[0], quantiles[1]
    return (low[0], high[0]) if squeeze else (low, high)


def ratio_interval(
    numerators, denominators, key: str, resamples: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of ``sum(num) / sum(den)`` per column, resampling units (rows) by ``key``."""
    numerators = np.asarray(numerators, dtype=np.float64)
    weights = resample_counts(numerators.shape[0], resamples, key)
    return percentile_interval(resampled_ratios(weights, numerators, denominators), confidence)


def one_sided_p(differences: np.ndarray) -> float:
    """The bootstrap p-value of "the difference is above 0": the share of resampled differences
    at or below 0, with the +1 of a permutation-style estimate (never 0). NaN resamples are left
    out; with none left the p-value is NaN."""
    finite = np.asarray(differences, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan")
    return float((1 + np.count_nonzero(finite <= 0)) / (1 + finite.size))


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of one family (NaN entries are not tests: they stay
    NaN and do not count in the family's size). A test is a discovery at false discovery rate
    q when its adjusted p-value is at most q."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    if tested.size == 0:
        return adjusted
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


def choice_stability(resampled: np.ndarray, chosen: int, prefer_last: bool) -> float:
    """How often a choice made from scores is made again on resampled data: the share of rows of
    ``resampled`` (resamples, options) whose best option is ``chosen``, ties broken as the choice
    was (``prefer_last``: the last of the tied options, else the first). Rows that are all NaN
    are left out."""
    resampled = np.asarray(resampled, dtype=np.float64)
    rows = resampled[~np.isnan(resampled).all(axis=1)]
    if rows.size == 0:
        return float("nan")
    filled = np.where(np.isnan(rows), -np.inf, rows)
    top = filled == filled.max(axis=1, keepdims=True)
    if prefer_last:
        winners = top.shape[1] - 1 - np.argmax(top[:, ::-1], axis=1)
    else:
        winners = np.argmax(top, axis=1)
    return float(np.mean(winners == chosen))


def unit_sums(values: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Per-unit sums of item values: (n_units, ...) from values (items, ...) and units (items,)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros((n_units, *values.shape[1:]))
    np.add.at(out, np.asarray(units), values)
    return out


# ---------------------------------------------------------------- settings and per-item scores


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap settings of one command (config key ``statistics``)."""

    resamples: int
    confidence: float
    seed: int
    min_sentences: int

    def key(self, language: str, split: str) -> str:
        return resample_key(self.seed, language, split)

    def weights(self, n_units: int, language: str, split: str, where: str) -> np.ndarray:
        """The resample matrix of one evaluation set, after checking it is large enough."""
        check_units(n_units, self.min_sentences, where)
        return resample_counts(n_units, self.resamples, self.key(language, split))

    def interval(self, samples: np.ndarray):
        return percentile_interval(samples, self.confidence)


def add_arguments(parser) -> None:
    """The bootstrap options every scoring command takes (their defaults are the schema's)."""
    group = parser.add_argument_group("bootstrap (config key statistics)")
    group.add_argument("--resamples", type=int, required=True, help="bootstrap resamples")
    group.add_argument("--confidence", type=float, required=True, help="interval level")
    group.add_argument("--bootstrap-seed", type=int, required=True, help="resampling seed")
    group.add_argument("--min-sentences", type=int, required=True, help="smallest test set")


def from_arguments(args) -> Bootstrap:
    if args.resamples < 1:
        raise InputError("--resamples: must be >= 1")
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence: {args.confidence} is not in (0, 1)")
    return Bootstrap(args.resamples, args.confidence, args.bootstrap_seed, args.min_sentences)


@dataclass(frozen=True)
class ItemScores:
    """Per-item correctness of one probe on one evaluation set, every layer.

    ``correct`` (layers, items) uint8; ``units`` (items,) the sentence (or sentence pair) each item
    belongs to, 0..n_units-1: what the bootstrap resamples. Enough to recompute any statistic of
    the score without refitting or rescoring.
    """

    task: str
    train_lang: str
    test_lang: str
    split: str
    seed: int
    layers: np.ndarray
    correct: np.ndarray
    units: np.ndarray
    n_units: int

    def unit_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_units, layers) correct items and (n_units,) items per unit."""
        correct = unit_sums(self.correct.T, self.units, self.n_units)
        items = np.bincount(self.units, minlength=self.n_units).astype(np.float64)
        return correct, items


ITEM_FIELDS = ("task", "train_lang", "test_lang", "split", "seed", "n_units")


@dataclass(frozen=True)
class ItemFile:
    """The ItemScores of one scoring job and the checkpoint they were scored with."""

    model: str
    step: int
    scores: list[ItemScores]


def save_item_scores(path, scores: list[ItemScores], *, model: str, step: int) -> None:
    """One ``.npz`` holding the ItemScores of one model x step (written atomically, compressed)."""
    import json

    from mlm_dynamics.atomic import save_npz

    arrays = {}
    header = []
    for i, score in enumerate(scores):
        header.append({name: getattr(score, name) for name in ITEM_FIELDS})
        arrays[f"{i}_layers"] = np.asarray(score.layers, dtype=np.int64)
        arrays[f"{i}_correct"] = np.asarray(score.correct, dtype=np.uint8)
        arrays[f"{i}_units"] = np.asarray(score.units, dtype=np.int32)
    meta = {"model": model, "step": int(step), "scores": header}
    save_npz(path, compressed=True, header=np.array(json.dumps(meta)), **arrays)


def load_item_scores(path) -> ItemFile:
    import json
    from pathlib import Path

    if not Path(path).is_file():
        raise InputError(f"{path}: no such item-score file")
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["header"]))
            scores = [
                ItemScores(
                    **entry,
                    layers=z[f"{i}_layers"],
                    correct=z[f"{i}_correct"],
                    units=z[f"{i}_units"],
                )
                for i, entry in enumerate(meta["scores"])
            ]
            return ItemFile(meta["model"], int(meta["step"]), scores)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not an item-score file ({exc})") from None
