"""Linear probes: multinomial logistic regression with an L2 penalty, one per layer.

Both estimators minimise, for each layer separately, scikit-learn's ``LogisticRegression``
objective written per example::

    mean_i cross_entropy(x_i W + b, y_i)  +  l2 / 2 * ||W||^2        (the intercept b is free)

so ``l2`` is scikit-learn's ``1 / (C * n)`` for ``n`` training rows (``C = 1 / (l2 * n)``). Features
are standardised per layer with the training mean and standard deviation (stored in the fitted
probe), as scikit-learn's ``StandardScaler`` would. With two classes there is one logit column, as
in scikit-learn: the first class scores 0 and the second ``x w + b``.

``LinearProbe`` fits every layer at once in torch, float32: full-batch L-BFGS over a
``(layers, d, outputs)`` weight tensor, each layer with its own curvature memory, line search and
stopping test (scikit-learn's: largest gradient entry <= ``tol``); a layer that has converged
leaves the batch. The standardisation is folded into the weights (``x W / scale`` on the raw
features), so no standardised copy of the features is made, and each layer's products read its
features in place. Its L-BFGS is preconditioned by the inverse feature covariance (the objective,
so the optimum, is unchanged), which on real activations reaches in 50 iterations a lower
objective than scikit-learn in its default 100 (benchmarks/probe_speed.py). It runs where
``device`` says (a torch device: ``"cpu"``, ``"cuda"``); the fitted attributes are numpy arrays
either way. ``SklearnProbe`` is scikit-learn's ``LogisticRegression`` (lbfgs, float64) fitted
layer by layer: the reference. Both take ``l2`` as a float or as one value per layer.

``fit_l2_grid`` chooses ``l2`` per layer from a grid by accuracy on a dev split. In torch the
whole grid is one batched fit (``LinearProbe.fit_grid``): batch entry ``k`` fits layer
``layer_of[k]`` at ``l2[k]``, every entry reading its layer's features in place, and each layer's
standardisation and preconditioner covariance are computed once for all grid values.

Prediction and scoring need numpy only (torch is imported inside ``LinearProbe.fit``), so scoring
jobs start fast.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np


class _FittedLinear:
    """Prediction shared by both backends, from the fitted attributes alone.

    coef_ (layers, d, outputs), intercept_ (layers, outputs): weights in standardised units;
    mean_, scale_ (layers, d): training standardisation; classes_ (classes,): label ids;
    outputs = classes, or 1 when there are two classes.
    """

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Scores (layers, n, classes) of X (layers, n, d)."""
        X = np.asarray(X)
        layers, n, _ = X.shape
        if layers != self.coef_.shape[0]:
            raise ValueError(f"X has {layers} layers, the probe {self.coef_.shape[0]}")
        scores = np.empty((layers, n, len(self.classes_)), dtype=np.float32)
        for layer in range(layers):  # one layer at a time keeps the standardised copy small
            Z = (X[layer].astype(np.float32) - self.mean_[layer]) / self.scale_[layer]
            logits = Z @ self.coef_[layer] + self.intercept_[layer]
            if logits.shape[1] == 1:
                scores[layer, :, 0] = 0.0
                scores[layer, :, 1] = logits[:, 0]
            else:
                scores[layer] = logits
        return scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted label ids (layers, n)."""
        return self.classes_[self.decision_function(X).argmax(axis=2)]

    def score(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Accuracy per layer (layers,); labels the probe never saw count as errors."""
        return (self.predict(X) == np.asarray(y)[None, :]).mean(axis=1)


@contextlib.contextmanager
def fitting_threads(threads: int, sklearn: bool = True):
    """Bound every CPU thread pool a fit uses to ``threads``: torch's, and the BLAS and OpenMP
    pools under numpy and scikit-learn (on a 2-core machine scikit-learn's lbfgs ran 3-5x slower
    with OpenBLAS on 2 threads than on 1; Snakemake sets the same limits per job through
    OMP_NUM_THREADS and friends). The limits reach only libraries already loaded, so with
    ``sklearn`` scikit-learn's (its OpenMP, SciPy's BLAS) are loaded first; without, its ~1 s
    import is spared."""
    if sklearn:
        import sklearn.linear_model  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


# Rows per block of the standardisation's sums: float32 sums of one block, added up in float64.
STANDARDISATION_BLOCK = 1024


def standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer mean and standard deviation (layers, d); constant features get scale 1.

    One pass per layer, without a copy of X: the sums and sums of squares of blocks of rows are
    taken in float32 and added up in float64 (relative error ~1e-7 here), and the variance
    E[x^2] - mean^2 is formed in float64."""
    layers, n, d = X.shape
    mean = np.empty((layers, d), dtype=np.float64)
    scale = np.empty_like(mean)
    for layer in range(layers):
        total, squares = np.zeros(d), np.zeros(d)
        for start in range(0, n, STANDARDISATION_BLOCK):
            block = np.asarray(X[layer, start : start + STANDARDISATION_BLOCK], dtype=np.float32)
            total += block.sum(axis=0)
            squares += np.einsum("nd,nd->d", block, block)
        mean[layer] = total / n
        scale[layer] = np.sqrt(np.maximum(squares / n - mean[layer] ** 2, 0.0))
    scale[scale == 0] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def check_fit_input(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 3:
        raise ValueError(f"X must be (layers, n, d), got shape {X.shape}")
    if y.shape != (X.shape[1],):
        raise ValueError(f"y must be ({X.shape[1]},), got shape {y.shape}")
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least 2 classes in y, got {len(classes)}")
    return X, classes, y_index


def per_layer_l2(l2, layers: int) -> np.ndarray:
    """``l2`` (a float, or one value per layer) as (layers,) float64; each must be finite and
    >= 0."""
    values = np.asarray(l2, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and values.shape != (layers,)):
        raise ValueError(f"l2 must be a float or one value per layer ({layers},), got {l2!r}")
    if not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    return np.broadcast_to(values, (layers,)).copy()


class _Estimator(_FittedLinear):
    """The hyper-parameters both backends share (set in __init__, never changed by fit).

    ``l2`` is a float, or a sequence of one value per layer (layer ``l`` is fitted at ``l2[l]``).
    """

    def __init__(self, *, l2: float, max_iter: int, seed: int = 0, tol: float = 1e-4):
        self.l2 = l2
        self.max_iter = max_iter
        self.seed = seed
        self.tol = tol

    def _store_fit(self, coef, intercept, mean, scale, classes, n_iter) -> None:
        """Set the fitted attributes (the only place they are set: by a fit or a choice among
        fits)."""
        self.coef_ = np.asarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.mean_ = mean
        self.scale_ = scale
        self.classes_ = classes
        self.n_iter_ = np.asarray(n_iter)


class LinearProbe(_Estimator):
    """All layers fitted together by batched full-batch L-BFGS in torch, preconditioned.

    L-BFGS starts each update from the inverse feature covariance, ``(Sigma + (l2 + 1e-3) I)^-1``
    per layer on the weights' feature dimension (``Sigma`` of the standardised features, from a
    subsample of rows), instead of the identity: it then behaves as on decorrelated features and
    needs far fewer iterations, while the objective, and so the optimum, is unchanged.
    ``seed`` draws the (tiny) initial weights; the objective is convex, so it only moves the
    result within the optimiser's tolerance. ``tol`` bounds the largest gradient entry (as
    scikit-learn's ``tol``; float32 sums make values much below 1e-5 unreachable, and then the
    line search finding no decrease stops the layer). ``device`` is the torch device the fit runs
    on; the initial weights are drawn on the CPU, so a seed means the same start everywhere.
    ``fit_grid`` fits several values of ``l2`` in one batched run.
    """

    def __init__(
        self,
        *,
        l2: float,
        max_iter: int,
        seed: int = 0,
        tol: float = 1e-4,
        device: str = "cpu",
    ):
        super().__init__(l2=l2, max_iter=max_iter, seed=seed, tol=tol)
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        X, classes, y_index = check_fit_input(X, y)
        l2 = per_layer_l2(self.l2, X.shape[0])[None]
        coef, intercept, n_iter, mean, scale = self._batched_fit(X, classes, y_index, l2)
        self._store_fit(coef[0], intercept[0], mean, scale, classes, n_iter[0])
        return self

    def fit_grid(self, X: np.ndarray, y: np.ndarray, grid) -> list[LinearProbe]:
        """One fitted probe per value of ``grid``: probe ``g`` is what
        ``LinearProbe(l2=grid[g], <this probe's other settings>).fit(X, y)`` fits (the same start,
        objective and preconditioner), all ``len(grid) * layers`` problems in one batched L-BFGS
        run that reads the features in place (no copy per grid value). ``self`` stays unfitted;
        its ``l2`` is not used."""
        X, classes, y_index = check_fit_input(X, y)
        grid = check_grid(grid)
        l2 = np.repeat(np.asarray(grid)[:, None], X.shape[0], axis=1)
        coef, intercept, n_iter, mean, scale = self._batched_fit(X, classes, y_index, l2)
        probes = []
        for g, value in enumerate(grid):
            probe = LinearProbe(
                l2=value, max_iter=self.max_iter, seed=self.seed, tol=self.tol, device=self.device
            )
            probe._store_fit(coef[g], intercept[g], mean, scale, classes, n_iter[g])
            probes.append(probe)
        return probes

    def _batched_fit(self, X, classes, y_index, l2: np.ndarray):
        """Fit every layer at every setting of ``l2`` (settings, layers) at once: batch entry
        ``k = s * layers + l`` is layer ``l`` of ``X`` at ``l2[s, l]``, started from the weights a
        single fit draws for layer ``l``. Returns coef (settings, layers, d, outputs), intercept
        (settings, layers, outputs), n_iter (settings, layers), mean and scale (layers, d)."""
        import torch

        layers, n, d = X.shape
        settings = l2.shape[0]
        outputs = 1 if len(classes) == 2 else len(classes)
        mean, scale = standardisation(X)
        device = torch.device(self.device)
        # no copy if X is float32 and the device the CPU; the batch entries index this one tensor
        features = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(device)
        layer_of = np.tile(np.arange(layers), settings)
        l2 = l2.reshape(-1)
        objective = _Objective(features, y_index, outputs, l2, mean, scale, layer_of)
        ridge = l2 + PRECONDITIONER_FLOOR
        preconditioner = _Preconditioner(features, mean, scale, ridge, self.seed, layer_of)
        generator = torch.Generator().manual_seed(int(self.seed))
        W0 = torch.zeros(layers, d + 1, outputs)
        W0[:, :d] = 1e-3 * torch.randn(layers, d, outputs, generator=generator)
        if settings > 1:  # every setting of a layer starts where its single fit would
            W0 = W0[torch.from_numpy(layer_of)]
        W, n_iter = batched_lbfgs(
            objective,
            W0.reshape(len(layer_of), -1).to(device),
            self.max_iter,
            self.tol,
            preconditioner,
        )
        W = W.reshape(settings, layers, d + 1, outputs).cpu().numpy()
        n_iter = n_iter.reshape(settings, layers)
        return W[:, :, :d], W[:, :, d], n_iter, mean, scale


def check_grid(grid) -> tuple[float, ...]:
    """``grid`` as a tuple of floats: at least one value, each finite and >= 0, no repeats."""
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(grid, dtype=np.float64)))
    if not values:
        raise ValueError("the l2 grid is empty")
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"l2 grid values must be finite and >= 0, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"l2 grid values repeat: {values}")
    return values


# The preconditioner's covariance comes from a seeded subsample of rows: its cost grows as
# rows * d^2, and a preconditioner need only be close. Below about 5 d rows the estimate is too
# rough and L-BFGS needs more iterations again.
PRECONDITIONER_MIN_ROWS = 2048
PRECONDITIONER_ROWS_PER_FEATURE = 6
# Added to the covariance's diagonal (besides l2): directions with almost no variance carry no
# signal, and a floor keeps the subsample's estimate of them from dominating the first steps.
# On real probing data 1e-3 .. 1e-2 took fewer evaluations than l2 = 1e-4 alone.
PRECONDITIONER_FLOOR = 1e-3


def batch_layers(layer_of, layers: int) -> np.ndarray:
    """``layer_of`` (batch,): the layer of ``features`` each batch entry fits; default, entry
    ``l`` fits layer ``l``."""
    if layer_of is None:
        return np.arange(layers)
    layer_of = np.asarray(layer_of, dtype=np.int64)
    if (
        layer_of.ndim != 1
        or len(layer_of) == 0
        or not np.all((0 <= layer_of) & (layer_of < layers))
    ):
        raise ValueError(
            f"layer_of must be (batch,) layer indices in [0, {layers}), got {layer_of}"
        )
    return layer_of


class _Preconditioner:
    """``M q``: per batch entry ``k``, the inverse of ``[Sigma_l + ridge_k I, 0; 0, 1]`` applied to
    the feature dimension of ``q`` (rows, (d + 1) * outputs), where ``l = layer_of[k]``,
    ``Sigma_l`` is the covariance of layer ``l``'s standardised features and 1 the intercept's
    (the standardised features have mean 0). ``ridge`` is a float or one value per batch entry;
    ``layer_of`` defaults to one entry per layer. Each layer's covariance is computed once,
    whatever the number of entries that fit it.

    L-BFGS starting from ``M`` rather than the identity behaves as on decorrelated features; the
    objective is untouched, so is its optimum."""

    def __init__(self, features, mean, scale, ridge, seed: int, layer_of=None):
        import torch

        layers, n, d = features.shape
        layer_of = batch_layers(layer_of, layers)
        ridge = np.broadcast_to(np.asarray(ridge, dtype=np.float64), layer_of.shape)
        device = features.device
        rows = max(PRECONDITIONER_MIN_ROWS, PRECONDITIONER_ROWS_PER_FEATURE * d)
        if n > rows:  # the sample is drawn on the CPU: the same rows on every device
            generator = torch.Generator().manual_seed(int(seed))
            chosen = torch.randperm(n, generator=generator)[:rows].sort().values
            sample = features[:, chosen.to(device)]
        else:
            sample = features
        mean, scale = torch.from_numpy(mean).to(device), torch.from_numpy(scale).to(device)
        sample = (sample - mean[:, None]) / scale[:, None]
        moments = torch.bmm(sample.transpose(1, 2), sample).double() / sample.shape[1]
        del sample  # the subsample copy is not needed through the factorisations below
        eye = torch.eye(d, dtype=torch.float64, device=device)
        inverse = torch.zeros(len(layer_of), d + 1, d + 1, device=device)
        # one factorisation batch per ridge value: at most (layers, d, d) float64 at a time, as
        # for a single fit, and for a single fit the very same operations
        for value in dict.fromkeys(ridge.tolist()):
            entries = np.flatnonzero(ridge == value)
            shifted = moments[torch.from_numpy(layer_of[entries]).to(device)]
            shifted += value * eye
            factor = torch.linalg.cholesky(shifted)
            inverse[torch.from_numpy(entries).to(device), :d, :d] = torch.cholesky_inverse(
                factor
            ).float()
        inverse[:, d, d] = 1.0
        self.inverse = inverse

    def __call__(self, q, rows):
        import torch

        r = len(rows)
        inverse = self.inverse if r == self.inverse.shape[0] else self.inverse[rows]
        return torch.bmm(inverse, q.reshape(r, inverse.shape[1], -1)).reshape(r, -1)


class _Objective:
    """The objective of several problems at once, at ``W = [W; b]`` (batch, d + 1, outputs)
    flattened to one row per batch entry, in standardised units. Batch entry ``k`` fits layer
    ``layer_of[k]`` of ``features`` (layers, n, d) at strength ``l2[k]`` (``l2`` a float or one
    value per entry; ``layer_of`` defaults to one entry per layer):

        mean_i cross_entropy(z_i W_k + b_k, y_i) + l2[k] / 2 * ||W_k||^2,   z = standardised x

    Called with ``w`` (rows, p) and ``rows`` (which batch entries), it returns losses (rows,),
    gradients (rows, p) and their largest entries (rows,), scikit-learn's lbfgs stopping measure.
    The standardisation is folded into the weights: the logits of raw features ``x`` are
    ``x (W / scale) + (b - mean . W / scale)``, and the gradient in standardised units follows
    from ``X^T R`` and the column sums of the residuals ``R``. Each entry's products read its
    layer's features where they are (a view ``features[layer_of[k]]``), so neither a subset of
    entries nor several entries of one layer cost a copy; multi-class entries of one layer share
    its products.
    """

    def __init__(self, features, y_index, outputs: int, l2, mean, scale, layer_of=None):
        import torch

        layers, n, d = features.shape
        self.features, self.n, self.d, self.outputs = features, n, d, outputs
        self.layer_of = batch_layers(layer_of, layers).tolist()
        device = features.device
        l2 = np.broadcast_to(np.asarray(l2, dtype=np.float64), (len(self.layer_of),))
        self.l2 = torch.from_numpy(l2.astype(np.float32)).to(device)
        self.mean = torch.from_numpy(mean).to(device)
        self.inverse_scale = 1.0 / torch.from_numpy(scale).to(device)
        y = torch.from_numpy(np.asarray(y_index)).long().to(device)
        if outputs == 1:
            self.y = (y == 1).float()
            self.sign = 1.0 - 2.0 * self.y  # loss of one item: softplus(sign * z)
        else:
            self.target_class = y
            self.flat_target = torch.arange(n, device=device) * outputs + y  # target logits

    def __call__(self, w, rows):
        import torch

        r, n, d, outputs = len(rows), self.n, self.d, self.outputs
        W = w.reshape(r, d + 1, outputs)
        loss = torch.empty(r, device=w.device)
        grad = torch.empty(r, d + 1, outputs, device=w.device)
        by_layer: dict[int, list[int]] = {}  # layer -> positions in rows
        for i, entry in enumerate(rows.tolist()):
            by_layer.setdefault(self.layer_of[entry], []).append(i)
        for layer, positions in by_layer.items():
            # several multi-class entries of one layer share one product with its features (at
            # d = 768, 17 classes, 4 entries: 2x faster than one product each); two-class
            # entries stay apart, as torch.mv beats a product with a few columns
            if len(positions) > 1 and outputs > 1:
                self._add_layer_group(layer, positions, W, loss, grad)
            else:
                for i in positions:
                    self._add_entry(layer, i, W, loss, grad)
        grad /= n
        l2 = self.l2[rows]
        penalty = (W[:, :d] * W[:, :d]).flatten(1).sum(dim=1)
        loss = loss / n + 0.5 * l2 * penalty
        grad[:, :d] += l2[:, None, None] * W[:, :d]
        grad = grad.reshape(r, -1)
        return loss, grad, grad.abs().amax(dim=1)

    def _add_entry(self, layer: int, i: int, W, loss, grad) -> None:
        """Summed loss and gradient (before the 1 / n and the penalty) of ``W[i]`` on ``layer``,
        into ``loss[i]`` and ``grad[i]``."""
        import torch

        d, outputs = self.d, self.outputs
        X, mean = self.features[layer], self.mean[layer]
        inverse_scale = self.inverse_scale[layer]
        V = W[i, :d] * inverse_scale[:, None]  # weights of the raw features
        c = W[i, d] - mean @ V
        if outputs == 1:
            z = torch.mv(X, V[:, 0]).add_(c)
            loss[i] = torch.nn.functional.softplus(z * self.sign).sum()
            residual = z.sigmoid_().sub_(self.y)[:, None]  # (n, 1)
            raw_grad = torch.mv(X.T, residual[:, 0])[:, None]
        else:
            log_probs = log_softmax((X @ V).add_(c))
            loss[i] = -log_probs.view(-1)[self.flat_target].sum()
            residual = log_probs.exp_()
            residual.view(-1)[self.flat_target] -= 1.0  # softmax minus one-hot
            raw_grad = (residual.T @ X).T  # (d, outputs)
        column_sums = residual.sum(dim=0)
        grad[i, :d] = (raw_grad - mean[:, None] * column_sums) * inverse_scale[:, None]
        grad[i, d] = column_sums

    def _add_layer_group(self, layer: int, positions: list[int], W, loss, grad) -> None:
        """``_add_entry`` for several multi-class entries of one layer at once: their raw-feature
        weights side by side, (d, g * outputs), so the layer's features are read once per
        product."""
        import torch

        n, d, outputs, g = self.n, self.d, self.outputs, len(positions)
        X, mean = self.features[layer], self.mean[layer]
        inverse_scale = self.inverse_scale[layer]
        index = torch.tensor(positions, device=W.device)
        V = W[index, :d] * inverse_scale[None, :, None]  # (g, d, outputs)
        c = W[index, d] - torch.einsum("d,gdo->go", mean, V)  # (g, outputs)
        logits = (X @ V.permute(1, 0, 2).reshape(d, g * outputs)).add_(c.reshape(-1))
        log_probs = log_softmax(logits.view(n * g, outputs))  # row (item, entry)
        # entry j's target logit of item m, in log_probs flattened: (m g + j) outputs + y_m
        target = (
            torch.arange(n * g, device=W.device).view(n, g) * outputs + self.target_class[:, None]
        )
        loss[index] = -log_probs.view(-1)[target].sum(dim=0)
        residual = log_probs.exp_()
        residual.view(-1)[target] -= 1.0  # softmax minus one-hot
        residual = residual.view(n, g * outputs)
        raw_grad = (residual.T @ X).T  # (d, g * outputs)
        column_sums = residual.sum(dim=0)
        feature_grad = (raw_grad - mean[:, None] * column_sums) * inverse_scale[:, None]
        grad[index, :d] = feature_grad.view(d, g, outputs).permute(1, 0, 2)
        grad[index, d] = column_sums.view(g, outputs)


def log_softmax(logits):
    """Row-wise log-softmax of (n, classes) logits, in place where torch's kernel is slow: on the
    CPU below 16 classes it takes a scalar path, ~10x slower than the same sums written out."""
    import torch

    if logits.shape[1] >= 16 or logits.device.type != "cpu":
        return torch.log_softmax(logits, dim=1)
    logits -= logits.amax(dim=1, keepdim=True)
    return logits.sub_(logits.exp().sum(dim=1, keepdim=True).log_())


# Step halvings before a line search gives up: a quasi-Newton direction is nearly always taken
# at the unit step or one or two halvings; more means no decrease is left at float32 precision.
MAX_HALVINGS = 10


def batched_lbfgs(objective, x0, max_iter: int, tol: float, precondition=None, history: int = 10):
    """Minimise independent problems at once: row ``i`` of ``x0`` (problems, p) is problem ``i``.

    ``objective(x, rows)`` returns losses, gradients and a stopping measure of the problems
    ``rows``. Each problem has its own L-BFGS memory, its own backtracking (Armijo) step and its
    own stopping test (measure <= ``tol``, or a line search that finds no decrease); a problem
    that has stopped is dropped from the batch. ``precondition(q, rows)``, if given, applies a
    fixed symmetric positive definite ``M`` to ``q`` (rows, p): each update's initial inverse
    Hessian is then ``(s.y / y.M y) M`` instead of ``(s.y / y.y) I``.
    Everything stays on ``x0``'s device. Returns the minimisers and the iterations each problem
    took, (problems,) on the CPU.
    """
    import torch

    device = x0.device
    result = x0.clone()
    n_iter = torch.zeros(x0.shape[0], dtype=torch.long, device=device)
    rows = torch.arange(x0.shape[0], device=device)
    x = x0.clone()
    loss, grad, stop = objective(x, rows)
    memory = []  # (s, y, rho = 1 / s.y) of the latest updates, oldest first; rho 0 = inert
    # s.y / y.M y of the latest update: H0 = scaling * M
    scaling = torch.ones(len(rows), device=device)
    for _ in range(max_iter):
        going = stop > tol
        if not going.all():  # drop the problems that have converged
            result[rows[~going]] = x[~going]
            rows, x, loss, grad, stop, scaling = (
                v[going] for v in (rows, x, loss, grad, stop, scaling)
            )
            memory = [(s[going], y[going], rho[going]) for s, y, rho in memory]
            if len(rows) == 0:
                break
        n_iter[rows] += 1

        q = grad.clone()  # two-loop recursion
        alphas = []
        for s, y, rho in reversed(memory):
            alpha = rho * (s * q).sum(dim=1)
            q -= alpha[:, None] * y
            alphas.append(alpha)
        q = (q if precondition is None else precondition(q, rows)) * scaling[:, None]
        for (s, y, rho), alpha in zip(memory, reversed(alphas), strict=True):
            q += (alpha - rho * (y * q).sum(dim=1))[:, None] * s
        direction = -q
        # a non-descent direction (stale memory) falls back to steepest descent
        descent = (grad * direction).sum(dim=1) < 0
        if not descent.all():
            direction = torch.where(descent[:, None], direction, -grad)
        slope = (grad * direction).sum(dim=1)

        # backtracking per problem, from the unit step; only failed problems are evaluated again
        t = torch.ones(len(rows), device=device)
        x_new = x + direction
        loss_new, grad_new, stop_new = objective(x_new, rows)
        failed = torch.nonzero(loss_new > loss + 1e-4 * t * slope)[:, 0]
        for _ in range(MAX_HALVINGS):
            if len(failed) == 0:
                break
            t[failed] *= 0.5
            trial = x[failed] + t[failed, None] * direction[failed]
            trial_loss, trial_grad, trial_stop = objective(trial, rows[failed])
            x_new[failed], loss_new[failed] = trial, trial_loss
            grad_new[failed], stop_new[failed] = trial_grad, trial_stop
            failed = failed[trial_loss > loss[failed] + 1e-4 * t[failed] * slope[failed]]
        if len(failed):
            # the line search gave up (no decrease left at float32 precision): these problems
            # stay where they are and stop
            x_new[failed], loss_new[failed] = x[failed], loss[failed]
            grad_new[failed] = grad[failed]
            stop_new[failed] = 0.0

        s, y = x_new - x, grad_new - grad
        sy = (s * y).sum(dim=1)
        useful = sy > 1e-10
        rho = torch.where(useful, 1.0 / sy.clamp_min(1e-10), 0.0)
        y_M = y if precondition is None else precondition(y, rows)
        scaling = torch.where(useful, sy / (y * y_M).sum(dim=1).clamp_min(1e-30), scaling)
        memory = [*memory[-(history - 1) :], (s, y, rho)]
        x, loss, grad, stop = x_new, loss_new, grad_new, stop_new
    result[rows] = x
    return result, n_iter.cpu().numpy()


class SklearnProbe(_Estimator):
    """scikit-learn's LogisticRegression (lbfgs), one layer at a time: the reference backend."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnProbe:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        X, classes, y_index = check_fit_input(X, y)
        layers, n, d = X.shape
        mean, scale = standardisation(X)
        l2 = per_layer_l2(self.l2, layers)
        coefs, intercepts, n_iter = [], [], []
        for layer in range(layers):
            Z = (X[layer].astype(np.float32) - mean[layer]) / scale[layer]
            C = np.inf if l2[layer] == 0 else 1.0 / (l2[layer] * n)
            model = LogisticRegression(
                C=C, max_iter=self.max_iter, tol=self.tol, random_state=self.seed
            )
            with warnings.catch_warnings():
                # hitting max_iter is reported through n_iter_, as for LinearProbe
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(Z, y_index)
            coefs.append(model.coef_.T)
            intercepts.append(model.intercept_)
            n_iter.append(int(np.max(model.n_iter_)))
        self._store_fit(np.stack(coefs), np.stack(intercepts), mean, scale, classes, n_iter)
        return self


BACKENDS = {"torch": LinearProbe, "sklearn": SklearnProbe}


def make_probe(
    backend: str,
    l2: float | np.ndarray,
    max_iter: int,
    seed: int,
    device: str = "cpu",
    tol: float = 1e-4,
) -> LinearProbe | SklearnProbe:
    """A probe of ``backend``; ``device`` is the torch backend's (scikit-learn runs on the CPU)."""
    if backend == "torch":
        return LinearProbe(l2=l2, max_iter=max_iter, seed=seed, tol=tol, device=device)
    if device != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only, not on {device!r}")
    return BACKENDS[backend](l2=l2, max_iter=max_iter, seed=seed, tol=tol)


class FittedProbe(_FittedLinear):
    """A probe rebuilt from saved attributes (for scoring without the fitting backend)."""

    def __init__(self, coef, intercept, mean, scale, classes):
        self.coef_ = np.asarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.scale_ = np.asarray(scale, dtype=np.float32)
        self.classes_ = np.asarray(classes)


@dataclasses.dataclass(frozen=True, eq=False)
class L2Search:
    """The L2 strength chosen per layer by dev accuracy (what ``fit_l2_grid`` returns).

    ``probe``: a fitted estimator of the backend's class, each layer's attributes (``coef_``,
    ``intercept_``, ``n_iter_``) those of its fit at the chosen value, with ``l2`` the chosen
    values (a float when the grid has one value); ``mean_``, ``scale_``, ``classes_`` are the
    training data's, as for any fit. ``l2`` (layers,): the chosen value per layer.
    ``dev_accuracy`` (len(grid), layers): dev accuracy of every fit, rows in grid order (NaN when
    the grid has one value and no dev split was given). ``grid``: the values tried, in order.
    ``dev_correct`` (len(grid), layers, dev items) bool: which dev items each fit gets right, what
    ``dev_accuracy`` averages (None without a dev split); a bootstrap of the choice reads it.
    """

    probe: LinearProbe | SklearnProbe
    l2: np.ndarray
    dev_accuracy: np.ndarray
    grid: tuple[float, ...]
    dev_correct: np.ndarray | None = None


def fit_l2_grid(
    X: np.ndarray,
    y: np.ndarray,
    X_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    grid,
    *,
    backend: str,
    max_iter: int,
    seed: int = 0,
    device: str = "cpu",
    tol: float = 1e-4,
) -> L2Search:
    """Fit a probe per layer at every value of ``grid`` on (X, y) and keep, per layer, the value
    with the highest accuracy on the dev split (X_dev, y_dev); ties go to the larger l2 (the
    simpler model).

    Only (X, y) is fitted and only (X_dev, y_dev) is read for the choice: a test split never
    enters, so its accuracy at the chosen values is an unbiased estimate. The torch backend fits
    all ``len(grid) * layers`` problems in one batched run (``LinearProbe.fit_grid``, features
    read in place); scikit-learn fits ``SklearnProbe`` per grid value (the reference). With a
    one-value grid there is nothing to choose: the probe is the plain fit
    ``make_probe(backend, grid[0], max_iter, seed, device, tol).fit(X, y)``, bit for bit, and the
    dev split may be None (it is scored when given).
    """
    X, _, _ = check_fit_input(X, y)
    grid = check_grid(grid)
    layers = X.shape[0]
    if X_dev is None or y_dev is None:
        if len(grid) > 1:
            raise ValueError(f"choosing among {len(grid)} l2 values needs a dev split")
    elif np.shape(X_dev)[0] != layers:
        raise ValueError(f"X_dev has {np.shape(X_dev)[0]} layers, X {layers}")
    if backend == "torch":
        fits = make_probe(backend, grid[0], max_iter, seed, device, tol).fit_grid(X, y, grid)
    else:
        fits = [make_probe(backend, value, max_iter, seed, device, tol).fit(X, y) for value in grid]
    if X_dev is None or y_dev is None:
        return L2Search(fits[0], np.full(layers, grid[0]), np.full((1, layers), np.nan), grid)
    dev_accuracy = np.stack([fit.score(X_dev, y_dev) for fit in fits])
    dev_correct = np.stack([fit.predict(X_dev) == np.asarray(y_dev)[None, :] for fit in fits])
    # the first maximum in order of decreasing l2: ties go to the larger value
    by_l2 = np.argsort(grid, kind="stable")[::-1]
    choice = by_l2[np.argmax(dev_accuracy[by_l2], axis=0)]  # (layers,) grid indices
    chosen_l2 = np.asarray(grid)[choice]
    if len(grid) == 1:
        return L2Search(fits[0], chosen_l2, dev_accuracy, grid, dev_correct)
    probe = make_probe(backend, chosen_l2, max_iter, seed, device, tol)
    layer = np.arange(layers)
    attributes = {
        name: np.stack([getattr(fit, name) for fit in fits])[choice, layer]
        for name in ("coef_", "intercept_", "n_iter_")
    }
    probe._store_fit(
        attributes["coef_"],
        attributes["intercept_"],
        fits[0].mean_,
        fits[0].scale_,
        fits[0].classes_,
        attributes["n_iter_"],
    )
    return L2Search(probe, chosen_l2, dev_accuracy, grid, dev_correct)
