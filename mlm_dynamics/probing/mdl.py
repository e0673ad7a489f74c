"""MDL probing with the online code (Voita & Titov 2020, "Information-Theoretic Probing with
Minimum Description Length").

Instead of a probe's accuracy, report how many bits it takes to transmit the labels ``y`` given the
representations ``X``, when sender and receiver both train the probe on what was sent so far. A
representation from which the labels are easy to extract compresses them well; the measure folds
in how much data the probe needs, which accuracy alone hides.

The online code, for ``n`` items in a seeded random order (``numpy.random.default_rng(seed)
.permutation(n)``) and block fractions ``f_1 < ... < f_S = 1``:

- block ends ``t_i = max(1, round(f_i * n))`` (Python's ``round``: half to even), de-duplicated,
  so ``t_1 < ... < t_S = n``;
- the first ``t_1`` items are sent with the uniform code, ``t_1 * log2(K)`` bits for ``K`` classes;
- for each further block, a probe is fitted on items ``[0, t_i)`` and items ``[t_i, t_{i+1})`` cost
  ``-log2 p(y | x)`` bits each under it.

The codelength is the sum; ``compression = n * log2(K) / codelength`` (1 for a representation no
better than the uniform code). A fitted probe knows only the classes of its prefix, so the
probability of the full inventory is smoothed:

    p(y | x) = (1 - eps) * softmax_seen(x)[y] + eps / K,    eps = 1e-3,

with ``softmax_seen`` 0 for a class the prefix lacks. Every label thus costs at most
``log2(K / eps)`` bits. A prefix with a single class needs no fit: it predicts that class with
probability 1 before smoothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BLOCKS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
EPS = 1e-3


@dataclass(frozen=True, eq=False)
class OnlineCode:
    codelength: np.ndarray  # (layers,) bits of the online code
    uniform_codelength: float  # n * log2(n_classes) bits
    compression: np.ndarray  # (layers,) uniform_codelength / codelength
    block_ends: tuple[int, ...]  # t_1 < ... < t_S = n
    # (layers, n) bits of each item's label, in the items' own order: the first block's at the
    # uniform cost; what a bootstrap over sentences resamples for the codelength's interval
    item_bits: np.ndarray


def block_ends(n: int, blocks=BLOCKS) -> tuple[int, ...]:
    """``max(1, round(f * n))`` for each fraction ``f``, de-duplicated, increasing, ending at n."""
    fractions = np.asarray(blocks, dtype=np.float64)
    if len(fractions) == 0 or np.any(np.diff(fractions) <= 0) or fractions[0] <= 0:
        raise ValueError(f"block fractions must be increasing and positive, got {tuple(blocks)}")
    if fractions[-1] != 1.0:
        raise ValueError(f"the last block fraction must be 1.0 (every item sent), got {blocks[-1]}")
    return tuple(sorted({max(1, round(float(f) * n)) for f in fractions}))


def log2_probabilities(scores: np.ndarray, classes: np.ndarray, y: np.ndarray, n_classes: int):
    """``log2 p(y | x)`` (layers, m) under the smoothed probe of the module docstring.

    ``scores`` (layers, m, len(classes)) are the probe's logits over the label ids ``classes``.
    """
    logits = scores.astype(np.float64)
    logits -= logits.max(axis=2, keepdims=True)  # stable log-softmax
    log_softmax = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    column = np.full(n_classes, -1)
    column[np.asarray(classes)] = np.arange(len(classes))
    seen = column[y] >= 0
    log_seen = np.full((scores.shape[0], len(y)), -np.inf)
    log_seen[:, seen] = np.take_along_axis(
        log_softmax[:, seen], column[y[seen]][None, :, None], axis=2
    )[:, :, 0]
    # log((1 - eps) q + eps / K), with q = 0 for a class the probe never saw
    return np.logaddexp(np.log1p(-EPS) + log_seen, np.log(EPS / n_classes)) / np.log(2)


def block_bits(X_block, y_block, X_prefix, y_prefix, n_classes: int, fit) -> np.ndarray:
    """Bits (layers, block items) of one block's labels under a probe fitted on the prefix."""
    seen = np.unique(y_prefix)
    if len(seen) == 1:  # fit needs two classes; the prefix's model is then "always that class"
        scores = np.zeros((X_block.shape[0], len(y_block), 1))
    else:
        probe = fit(X_prefix, y_prefix)
        seen = np.asarray(probe.classes_)
        scores = probe.decision_function(X_block)
    return -log2_probabilities(scores, seen, y_block, n_classes)


def online_codelength(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    fit: Callable[[np.ndarray, np.ndarray], object],
    blocks=BLOCKS,
    seed: int = 0,
) -> OnlineCode:
    """The online codelength of labels ``y`` (n,) in ``0..n_classes-1`` given ``X`` (layers, n, d).

    ``fit(X_prefix, y_prefix)`` returns a probe fitted on all layers at once, with
    ``decision_function`` (layers, m, classes) and ``classes_``; e.g.
    ``lambda X, y: make_probe("torch", l2, max_iter, seed).fit(X, y)``.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 3 or y.shape != (X.shape[1],):
        raise ValueError(f"X must be (layers, n, d) and y (n,), got {X.shape} and {y.shape}")
    if n_classes < 2 or len(y) == 0:
        raise ValueError(f"an online code needs items and 2 classes or more, got {n_classes}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y must hold ids in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    n = len(y)
    ends = block_ends(n, blocks)
    order = np.random.default_rng(seed).permutation(n)
    X, y = X[:, order], y[order]  # one copy; every prefix and block is then a view
    item_bits = np.empty((X.shape[0], n))  # in the permuted order until the end
    item_bits[:, : ends[0]] = np.log2(n_classes)
    for start, stop in zip(ends[:-1], ends[1:], strict=True):
        item_bits[:, start:stop] = block_bits(
            X[:, start:stop], y[start:stop], X[:, :start], y[:start], n_classes, fit
        )
    bits = item_bits.sum(axis=1)
    unpermuted = np.empty_like(item_bits)
    unpermuted[:, order] = item_bits
    uniform = n * float(np.log2(n_classes))
    return OnlineCode(
        codelength=bits, uniform_codelength=uniform, compression=uniform / bits, block_ends=ends,
        item_bits=unpermuted,
    )  # fmt: skip
