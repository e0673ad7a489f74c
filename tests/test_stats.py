"""The bootstrap: coverage on simulated test sets with a known accuracy, pairing, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mlm_dynamics import stats
from mlm_dynamics.errors import InputError


def simulated_test_set(rng, n_sentences=80, true_accuracy=0.7):
    """Sentences of 3-20 items whose per-sentence accuracy varies around ``true_accuracy``
    (items of one sentence are correlated, as words of one sentence are): the expected accuracy
    of an item is ``true_accuracy`` whatever the sentence length."""
    lengths = rng.integers(3, 21, size=n_sentences)
    sentence_p = np.clip(true_accuracy + rng.normal(0, 0.15, size=n_sentences), 0, 1)
    correct = [rng.random(length) < p for length, p in zip(lengths, sentence_p, strict=True)]
    units = np.repeat(np.arange(n_sentences), lengths)
    return np.concatenate(correct), units


def test_intervals_cover_the_true_accuracy_in_90_to_99_percent_of_200_test_sets():
    rng = np.random.default_rng(0)
    covered = 0
    for k in range(200):
        correct, units = simulated_test_set(rng)
        sums = stats.unit_sums(correct[:, None], units, units.max() + 1)
        items = np.bincount(units).astype(float)
        low, high = stats.ratio_interval(
            sums, items, key=f"sim-{k}", resamples=1000, confidence=0.95
        )
        covered += bool(low[0] <= 0.7 <= high[0])
    assert 180 <= covered <= 198, covered


def test_resamples_are_shared_by_key_and_differ_between_keys():
    a = stats.resample_counts(50, 100, stats.resample_key(0, "en", "test"))
    assert np.array_equal(a, stats.resample_counts(50, 100, stats.resample_key(0, "en", "test")))
    assert not np.array_equal(
        a, stats.resample_counts(50, 100, stats.resample_key(0, "fr", "test"))
    )
    assert not np.array_equal(
        a, stats.resample_counts(50, 100, stats.resample_key(1, "en", "test"))
    )
    assert (a.sum(axis=1) == 50).all()  # each resample draws as many sentences as the set has
    # the same on every machine: the seed is a hash of the key, not Python's salted hash()
    assert stats.stable_seed("0:en:test") == 7016836029980574464


def test_a_paired_difference_is_tighter_than_the_difference_of_intervals():
    rng = np.random.default_rng(1)
    correct, units = simulated_test_set(rng, n_sentences=100)
    # a second probe that agrees with the first on 95% of the items
    other = np.where(rng.random(correct.size) < 0.95, correct, ~correct)
    n = units.max() + 1
    sums = stats.unit_sums(np.stack([correct, other], axis=1), units, n)
    items = np.bincount(units).astype(float)
    weights = stats.resample_counts(n, 1000, "paired")
    resampled = stats.resampled_ratios(weights, sums, items)
    low, high = stats.percentile_interval(resampled[:, 0] - resampled[:, 1], 0.95)
    separate = stats.percentile_interval(resampled, 0.95)
    assert high - low < 0.5 * ((separate[1] - separate[0]).sum())
    same_low, same_high = stats.percentile_interval(resampled[:, 0] - resampled[:, 0], 0.95)
    assert same_low == same_high == 0


def test_too_small_a_test_set_is_refused_naming_it():
    bootstrap = stats.Bootstrap(resamples=100, confidence=0.95, seed=0, min_sentences=30)
    with pytest.raises(InputError) as caught:
        bootstrap.weights(12, "fi", "test", "results/treebanks/fi.json.gz (test split)")
    assert str(caught.value) == (
        "results/treebanks/fi.json.gz (test split): 12 sentences, fewer than the 30 a bootstrap "
        "interval needs (statistics.min_sentences)"
    )


def test_item_scores_round_trip(tmp_path):
    score = stats.ItemScores(
        "pos", "en", "fr", "test", 0, np.arange(3), np.eye(3, 6, dtype=np.uint8),
        np.array([0, 0, 1, 1, 2, 2]), 3,
    )  # fmt: skip
    path = tmp_path / "items.npz"
    stats.save_item_scores(path, [score], model="m", step=7)
    loaded = stats.load_item_scores(path)
    assert (loaded.model, loaded.step) == ("m", 7)
    (again,) = loaded.scores
    assert again.task == "pos" and again.test_lang == "fr" and again.n_units == 3
    assert np.array_equal(again.correct, score.correct)
    correct, items = again.unit_sums()
    assert correct.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert items.tolist() == [2, 2, 2]
    first = path.read_bytes()
    stats.save_item_scores(path, [score], model="m", step=7)
    assert path.read_bytes() == first  # byte-identical reruns
