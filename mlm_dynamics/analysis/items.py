"""The per-item scores of a run's probes, resampled at every level a model's score varies over.

A model's score at a step and layer is the mean over its pretraining runs (``sources.runs``: one
per seed of ``models.<name>.seeds``, else one) of each run's accuracy. Its resamples are the
Multi-Bootstrap of Sellam et al. (2022, "The MultiBERTs"), in its paired form: each resample draws
the seeds with replacement, then the evaluation set's sentences with replacement, one draw shared
by the seeds (they are scored on the same sentences, so the sentence variance does not shrink by
averaging seeds). A model with one run draws no seeds: its resamples are the scoring jobs' own
(:mod:`mlm_dynamics.stats`). Differences of two scores of one model (two layers, two steps) read
the same seed and sentence draws, so they are paired at both levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlm_dynamics import stats
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.runs import split_run


def seed_key(bootstrap_seed: int, model: str) -> str:
    """The key of a model's seed draws (every score of the model reads the same draws)."""
    return f"{bootstrap_seed}:{model}:pretraining seeds"


def seed_mean(ratios: np.ndarray, seed_counts: np.ndarray | None) -> np.ndarray:
    """The mean over drawn seeds: ratios (seeds, resamples, K) and seed_counts (resamples,
    seeds), how often each seed is drawn (None: one seed, drawn once)."""
    if seed_counts is None:
        return ratios[0]
    total = np.zeros(ratios.shape[1:])
    for seed in range(ratios.shape[0]):
        drawn = seed_counts[:, seed][:, None]
        total += np.where(drawn > 0, drawn * ratios[seed], 0.0)  # an undrawn NaN counts nothing
    return total / ratios.shape[0]


def per_seed_ratios(weights, sums, counts) -> np.ndarray:
    """(seeds, resamples, K) scores of each seed under one draw of sentences ``weights``."""
    return np.stack(
        [stats.resampled_ratios(weights, s, c) for s, c in zip(sums, counts, strict=True)]
    )


class ItemBank:
    """Per-item correctness of every probe (refit seed 0) on the test split and on its own
    language's dev split (what choices read), by model and pretraining seed, with the bootstrap
    that scored them."""

    def __init__(self, files: Sequence[stats.ItemFile], bootstrap: stats.Bootstrap):
        self.bootstrap = bootstrap
        self.items = {}
        seeds: dict[str, set] = {}
        for item_file in files:
            model, seed = split_run(item_file.model)
            seeds.setdefault(model, set()).add(seed)
            for score in item_file.scores:
                own = score.train_lang == score.test_lang
                if score.seed == 0 and (score.split == "test" or (score.split == "dev" and own)):
                    key = (score.split, model, seed, item_file.step, score.task,
                           score.train_lang, score.test_lang)  # fmt: skip
                    self.items[key] = score
        self.seeds = {
            model: sorted(found, key=lambda seed: -1 if seed is None else seed)
            for model, found in seeds.items()
        }
        self._weights = {}
        self._stability = {}

    def seed_count(self, model: str) -> int:
        """How many pretraining runs a model's scores average over."""
        return len(self.seeds.get(model, [None]))

    def weights(self, lang: str, n_units: int, split: str = "test") -> np.ndarray:
        if (split, lang, n_units) not in self._weights:
            where = f"{lang} ({split} split)"
            weights = self.bootstrap.weights(n_units, lang, split, where)
            self._weights[split, lang, n_units] = weights
        return self._weights[split, lang, n_units]

    def seed_counts(self, model: str, resamples: int) -> np.ndarray | None:
        """(resamples, seeds) draws of a model's seeds; None for a model with one run."""
        if self.seed_count(model) == 1:
            return None
        key = seed_key(self.bootstrap.seed, model)
        return stats.resample_counts(self.seed_count(model), resamples, key)

    def has(self, split, model, step, task, train_lang, test_lang) -> bool:
        return all(
            (split, model, seed, int(step), task, train_lang, test_lang) in self.items
            for seed in self.seeds.get(model, [None])
        )

    def get(self, model, step, task, train_lang, test_lang, split="test", seed=None):
        key = (split, model, seed, int(step), task, train_lang, test_lang)
        if key not in self.items:
            of_seed = "" if seed is None else f" seed {seed}"
            raise InputError(
                f"no per-item {split} scores of the {task} probe {train_lang} -> {test_lang} of "
                f"{model}{of_seed} step {step} (an --items file of score-probe is missing)"
            )
        return self.items[key]

    def unit_sums(self, model, task, train_lang, test_lang, columns, split="test"):
        """Per seed, per-unit correct items and items of ``columns`` [(step, layer), ...] of one
        pair on one split, (seeds, units, K) each, and the number of units (the same set at
        every step and seed)."""
        sums, counts = [], []
        n_units = None
        for seed in self.seeds.get(model, [None]):
            seed_sums, seed_counts = [], []
            for step, layer in columns:
                score = self.get(model, step, task, train_lang, test_lang, split, seed)
                row = int(np.flatnonzero(score.layers == layer)[0])
                seed_sums.append(stats.unit_sums(score.correct[row], score.units, score.n_units))
                seed_counts.append(
                    np.bincount(score.units, minlength=score.n_units).astype(np.float64)
                )
                if n_units not in (None, score.n_units):
                    raise InputError(
                        f"{model} {task} {train_lang} -> {test_lang}: steps or seeds scored on "
                        f"{split} sets of different sizes ({n_units} and {score.n_units} sentences)"
                    )
                n_units = score.n_units
            sums.append(np.stack(seed_sums, axis=1))
            counts.append(np.stack(seed_counts, axis=1))
        return np.stack(sums), np.stack(counts), n_units

    def resampled(self, model, task, train_lang, test_lang, columns, split="test") -> tuple:
        """Scores of ``columns`` [(step, layer), ...] of one pair: (point (K,), resampled
        (resamples, K)), each the mean over the model's seeds; all on the same evaluation set
        and seed draws, so columns are paired."""
        sums, counts, n_units = self.unit_sums(model, task, train_lang, test_lang, columns, split)
        point = (sums.sum(axis=1) / counts.sum(axis=1)).mean(axis=0)
        weights = self.weights(test_lang, n_units, split)
        ratios = per_seed_ratios(weights, sums, counts)
        return point, seed_mean(ratios, self.seed_counts(model, weights.shape[0]))

    def p_values(self, tests: list[tuple], resamples: int) -> np.ndarray:
        """The one-sided paired p-value of each test ``(model, task, train, test, a, b)``: "the
        test score at column a = (step, layer) is above the one at b". Evaluated test set by
        test set, each with one matrix of ``resamples`` resamples read once for all its tests
        (its first rows are the intervals' own draw: a verdict reads more resamples than an
        interval, so that the resampling seed does not decide it)."""
        p = np.full(len(tests), np.nan)
        by_set: dict[tuple, list] = {}
        for i, (model, task, train, test, a, b) in enumerate(tests):
            sums, counts, n_units = self.unit_sums(model, task, train, test, [a, b])
            by_set.setdefault((model, test, n_units), []).append((i, sums, counts))
        for (model, test, n_units), group in by_set.items():
            sums = np.concatenate([sums for _, sums, _ in group], axis=2)
            counts = np.concatenate([counts for _, _, counts in group], axis=2)
            at_most_zero, finite = np.zeros(len(group)), np.zeros(len(group))
            chunks = stats.resample_count_chunks(
                n_units, resamples, self.bootstrap.key(test, "test")
            )
            seed_chunks = self._seed_chunks(model, resamples)
            for weights, seed_counts in zip(chunks, seed_chunks, strict=True):
                ratios = np.stack(
                    [
                        stats.resampled_ratios(weights, s, c)
                        for s, c in zip(sums, counts, strict=True)
                    ]
                )
                ratios = seed_mean(ratios, seed_counts)  # (chunk, 2 x tests)
                differences = ratios[:, 0::2] - ratios[:, 1::2]
                at_most_zero += (differences <= 0).sum(axis=0)
                finite += np.isfinite(differences).sum(axis=0)
            for k, (i, _, _) in enumerate(group):
                p[i] = (1 + at_most_zero[k]) / (1 + finite[k]) if finite[k] else np.nan
        return p

    def _seed_chunks(self, model: str, resamples: int):
        """The seed draws of ``p_values``' chunks (None per chunk for a model with one run)."""
        if self.seed_count(model) == 1:
            yield from (None for _ in range(0, resamples, stats.RESAMPLE_CHUNK))
            return
        key = seed_key(self.bootstrap.seed, model)
        yield from stats.resample_count_chunks(self.seed_count(model), resamples, key)

    def dev_stability(self, model, task, lang, columns, chosen: int, prefer_last: bool) -> float:
        """How often the option ``chosen`` of ``columns`` [(step, layer), ...] has the highest
        dev accuracy across the dev split's resamples (ties as the choice broke them); NaN
        without per-item dev scores (a run scored before they were kept)."""
        key = (model, task, lang, tuple(columns), chosen, prefer_last)
        if key not in self._stability:  # every transfer curve of a training language shares it
            if not all(self.has("dev", model, step, task, lang, lang) for step, _ in columns):
                self._stability[key] = float("nan")
            else:
                _, resampled = self.resampled(model, task, lang, lang, columns, split="dev")
                self._stability[key] = stats.choice_stability(resampled, chosen, prefer_last)
        return self._stability[key]
