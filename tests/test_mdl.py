"""MDL online code: block schedule, hand-checked costs, planted signal against noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlm_dynamics.probing.mdl import BLOCKS, EPS, block_ends, online_codelength
from mlm_dynamics.probing.probe import make_probe


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small fits on a shared machine: one thread avoids OpenMP contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(X, y):
    return make_probe("torch", 1e-3, 50, 0).fit(X, y)


def test_block_ends():
    assert block_ends(3000) == (3, 6, 12, 24, 48, 96, 188, 375, 750, 1500, 3000)
    # 0.1..0.8 round to 0 or 1 (all become 1), 12.5 rounds half to even
    assert block_ends(100) == (1, 2, 3, 6, 12, 25, 50, 100)
    assert block_ends(10, (0.1, 0.5, 1.0)) == (1, 5, 10)
    with pytest.raises(ValueError, match="last block fraction must be 1.0"):
        block_ends(10, (0.1, 0.5))
    with pytest.raises(ValueError, match="increasing"):
        block_ends(10, (0.5, 0.1, 1.0))


def test_single_class_prefixes_need_no_fit():
    def no_fit(X, y):
        raise AssertionError("a single-class prefix must not be fitted")

    X = np.zeros((2, 10, 3), dtype=np.float32)
    code = online_codelength(X, np.full(10, 2), 4, no_fit, blocks=(0.1, 0.5, 1.0))
    assert code.block_ends == (1, 5, 10)
    # first item: 2 bits; the other 9 at p = (1 - eps) + eps / 4
    bits = 1 * 2.0 + 9 * -math.log2(1 - EPS + EPS / 4)
    np.testing.assert_allclose(code.codelength, [bits, bits], rtol=1e-12)
    assert code.uniform_codelength == 20.0
    np.testing.assert_allclose(code.compression, 20.0 / bits, rtol=1e-12)


class UniformOverSeen:
    """A stub probe: equal logits over the classes of its prefix; records what it was fitted on."""

    calls = []

    def __init__(self, X, y):
        self.classes_ = np.unique(y)
        UniformOverSeen.calls.append((X.copy(), y.copy()))

    def decision_function(self, X):
        return np.zeros((X.shape[0], X.shape[1], len(self.classes_)), dtype=np.float32)


def test_hand_checked_costs_with_a_stub_probe():
    n, K, seed = 10, 5, 4
    y = np.array([0, 1, 1, 2, 0, 3, 1, 2, 0, 1])
    X = np.arange(n, dtype=np.float32)[None, :, None].repeat(2, axis=0)  # X = item index
    UniformOverSeen.calls = []
    code = online_codelength(X, y, K, UniformOverSeen, blocks=(0.1, 0.5, 1.0), seed=seed)
    order = np.random.default_rng(seed).permutation(n)
    # prefixes [0, 1) and [0, 5) of the permuted items; the first holds one class: not fitted
    assert [len(yp) for _, yp in UniformOverSeen.calls] == [5]
    X5, y5 = UniformOverSeen.calls[-1]
    np.testing.assert_array_equal(X5[0, :, 0], order[:5])  # the permuted prefix, every layer
    np.testing.assert_array_equal(X5[1, :, 0], order[:5])
    np.testing.assert_array_equal(y5, y[order[:5]])
    bits = math.log2(K)  # the first item, uniform code
    for start, stop in ((1, 5), (5, 10)):
        seen = set(y[order[:start]].tolist())
        for label in y[order[start:stop]]:
            p = (1 - EPS) / len(seen) * (label in seen) + EPS / K
            bits -= math.log2(p)
    np.testing.assert_allclose(code.codelength, [bits, bits], rtol=1e-12)


def test_unseen_class_costs_the_smoothing_floor():
    """A confident probe on a class it never saw: log2(K / eps) bits for that item."""

    class Confident:
        classes_ = np.array([0, 1])

        def decision_function(self, X):
            scores = np.zeros((X.shape[0], X.shape[1], 2), dtype=np.float32)
            scores[..., 0] = 1000.0  # float64 log-softmax must not overflow
            return scores

    X = np.zeros((1, 4, 1), dtype=np.float32)
    y = np.array([0, 1, 0, 2])
    # put the items so that after the permutation they read y = [0, 1, 0, 2]: prefix [0, 1],
    # block [0, 2]
    placed = np.empty_like(y)
    placed[np.random.default_rng(0).permutation(4)] = y
    code = online_codelength(X, placed, 3, lambda X, y: Confident(), (0.5, 1.0))
    bits = 2 * math.log2(3) - math.log2(1 - EPS + EPS / 3) - math.log2(EPS / 3)
    np.testing.assert_allclose(code.codelength, [bits], rtol=1e-9)


def planted(n=3000, d=16, classes=5, seed=0):
    """Layer 0: y = argmax(X W), a linear function of Gaussian features; layer 1: pure noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2, n, d)).astype(np.float32)
    y = np.argmax(X[0] @ rng.normal(size=(d, classes)), axis=1)
    return X, y


@pytest.fixture(scope="module")
def codes():
    X, y = planted()
    shuffled = np.random.default_rng(1).permutation(y)
    return online_codelength(X, y, 5, fit), online_codelength(X, shuffled, 5, fit)


def test_planted_signal_compresses_and_noise_does_not(codes):
    real, shuffled = codes
    assert real.block_ends == block_ends(3000, BLOCKS)
    assert real.uniform_codelength == pytest.approx(3000 * math.log2(5), rel=1e-12)
    assert real.codelength[0] < 0.3 * shuffled.codelength[0]
    assert real.compression[0] > 2
    assert 0.8 < real.compression[1] < 1.2  # layer 1 carries no signal
    # labels unrelated to X cost about the uniform code or more (overfitted small prefixes), on
    # both layers; the smoothing bounds how much more
    ratio = shuffled.codelength / shuffled.uniform_codelength
    assert np.all((ratio > 0.9) & (ratio < 1.25))
    np.testing.assert_allclose(real.compression, real.uniform_codelength / real.codelength)


def test_deterministic_for_a_seed(codes):
    real, _ = codes
    X, y = planted()
    again = online_codelength(X, y, 5, fit)
    np.testing.assert_array_equal(again.codelength, real.codelength)
    other = online_codelength(X, y, 5, fit, seed=1)
    assert not np.any(other.codelength == real.codelength)  # another order, other prefixes


def test_bad_labels():
    X = np.zeros((1, 3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="ids in 0..2"):
        online_codelength(X, np.array([0, 1, 3]), 3, fit)
