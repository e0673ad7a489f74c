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
layer by layer: the reference.

Prediction and scoring need numpy only (torch is imported inside ``LinearProbe.fit``), so scoring
jobs start fast.
"""

from __future__ import annotations

import contextlib

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


class _Estimator(_FittedLinear):
    """The hyper-parameters both backends share (set in __init__, never changed by fit)."""

    def __init__(self, l2: float = 1e-4, max_iter: int = 100, seed: int = 0, tol: float = 1e-4):
        self.l2 = l2
        self.max_iter = max_iter
        self.seed = seed
        self.tol = tol


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
    """

    def __init__(
        self,
        l2: float = 1e-4,
        max_iter: int = 100,
        seed: int = 0,
        tol: float = 1e-4,
        device: str = "cpu",
    ):
        super().__init__(l2=l2, max_iter=max_iter, seed=seed, tol=tol)
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        import torch

        X, classes, y_index = check_fit_input(X, y)
        layers, n, d = X.shape
        outputs = 1 if len(classes) == 2 else len(classes)
        mean, scale = standardisation(X)
        device = torch.device(self.device)
        # no copy if X is float32 and the device the CPU
        features = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(device)
        objective = _Objective(features, y_index, outputs, float(self.l2), mean, scale)
        ridge = float(self.l2) + PRECONDITIONER_FLOOR
        preconditioner = _Preconditioner(features, mean, scale, ridge, self.seed)
        generator = torch.Generator().manual_seed(int(self.seed))
        W0 = torch.zeros(layers, d + 1, outputs)
        W0[:, :d] = 1e-3 * torch.randn(layers, d, outputs, generator=generator)
        W, n_iter = batched_lbfgs(
            objective, W0.reshape(layers, -1).to(device), self.max_iter, self.tol, preconditioner
        )
        W = W.reshape(layers, d + 1, outputs).cpu()
        self.coef_ = W[:, :d].numpy().astype(np.float32)
        self.intercept_ = W[:, d].numpy().astype(np.float32)
        self.mean_ = mean
        self.scale_ = scale
        self.classes_ = classes
        self.n_iter_ = n_iter
        return self


# The preconditioner's covariance comes from a seeded subsample of rows: its cost grows as
# rows * d^2, and a preconditioner need only be close. Below about 5 d rows the estimate is too
# rough and L-BFGS needs more iterations again.
PRECONDITIONER_MIN_ROWS = 2048
PRECONDITIONER_ROWS_PER_FEATURE = 6
# Added to the covariance's diagonal (besides l2): directions with almost no variance carry no
# signal, and a floor keeps the subsample's estimate of them from dominating the first steps.
# On real probing data 1e-3 .. 1e-2 took fewer evaluations than l2 = 1e-4 alone.
PRECONDITIONER_FLOOR = 1e-3


class _Preconditioner:
    """``M q``: the inverse of ``[Sigma + ridge I, 0; 0, 1]`` applied to the feature dimension of
    ``q`` (rows, (d + 1) * outputs), per layer, where ``Sigma`` is the covariance of the
    standardised features and 1 the intercept's (the standardised features have mean 0).

    L-BFGS starting from ``M`` rather than the identity behaves as on decorrelated features; the
    objective is untouched, so is its optimum."""

    def __init__(self, features, mean, scale, ridge: float, seed: int):
        import torch

        layers, n, d = features.shape
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
        moments += ridge * torch.eye(d, dtype=torch.float64, device=device)
        inverse = torch.zeros(layers, d + 1, d + 1, device=device)
        inverse[:, :d, :d] = torch.cholesky_inverse(torch.linalg.cholesky(moments)).float()
        inverse[:, d, d] = 1.0
        self.inverse = inverse

    def __call__(self, q, rows):
        import torch

        r = len(rows)
        inverse = self.inverse if r == self.inverse.shape[0] else self.inverse[rows]
        return torch.bmm(inverse, q.reshape(r, inverse.shape[1], -1)).reshape(r, -1)


class _Objective:
    """The objective of several layers at once, at ``W = [W; b]`` (layers, d + 1, outputs)
    flattened to one row per layer, in standardised units.

    Called with ``w`` (rows, p) and ``rows`` (which layers), it returns losses (rows,), gradients
    (rows, p) and their largest entries (rows,), scikit-learn's lbfgs stopping measure.
    The standardisation is folded into the weights: the logits of raw features ``x`` are
    ``x (W / scale) + (b - mean . W / scale)``, and the gradient in standardised units follows
    from ``X^T R`` and the column sums of the residuals ``R``. Each layer's products read its
    features where they are (a view), so a subset of layers costs no copy.
    """

    def __init__(self, features, y_index, outputs: int, l2: float, mean, scale):
        import torch

        layers, n, d = features.shape
        self.features, self.n, self.d, self.outputs, self.l2 = features, n, d, outputs, l2
        device = features.device
        self.mean = torch.from_numpy(mean).to(device)
        self.inverse_scale = 1.0 / torch.from_numpy(scale).to(device)
        y = torch.from_numpy(np.asarray(y_index)).long().to(device)
        if outputs == 1:
            self.y = (y == 1).float()
            self.sign = 1.0 - 2.0 * self.y  # loss of one item: softplus(sign * z)
        else:
            self.flat_target = torch.arange(n, device=device) * outputs + y  # target logits

    def __call__(self, w, rows):
        import torch

        r, n, d, outputs = len(rows), self.n, self.d, self.outputs
        W = w.reshape(r, d + 1, outputs)
        loss = torch.empty(r, device=w.device)
        grad = torch.empty(r, d + 1, outputs, device=w.device)
        for i, layer in enumerate(rows.tolist()):
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
        grad /= n
        penalty = (W[:, :d] * W[:, :d]).flatten(1).sum(dim=1)
        loss = loss / n + 0.5 * self.l2 * penalty
        grad[:, :d] += self.l2 * W[:, :d]
        grad = grad.reshape(r, -1)
        return loss, grad, grad.abs().amax(dim=1)


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
        C = np.inf if self.l2 == 0 else 1.0 / (self.l2 * n)
        coefs, intercepts, n_iter = [], [], []
        for layer in range(layers):
            Z = (X[layer].astype(np.float32) - mean[layer]) / scale[layer]
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
        self.coef_ = np.stack(coefs).astype(np.float32)
        self.intercept_ = np.stack(intercepts).astype(np.float32)
        self.mean_ = mean
        self.scale_ = scale
        self.classes_ = classes
        self.n_iter_ = np.array(n_iter)
        return self


BACKENDS = {"torch": LinearProbe, "sklearn": SklearnProbe}


def make_probe(
    backend: str, l2: float, max_iter: int, seed: int, device: str = "cpu"
) -> LinearProbe | SklearnProbe:
    """A probe of ``backend``; ``device`` is the torch backend's (scikit-learn runs on the CPU)."""
    if backend == "torch":
        return LinearProbe(l2=l2, max_iter=max_iter, seed=seed, device=device)
    if device != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only, not on {device!r}")
    return BACKENDS[backend](l2=l2, max_iter=max_iter, seed=seed)


class FittedProbe(_FittedLinear):
    """A probe rebuilt from saved attributes (for scoring without the fitting backend)."""

    def __init__(self, coef, intercept, mean, scale, classes):
        self.coef_ = np.asarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.scale_ = np.asarray(scale, dtype=np.float32)
        self.classes_ = np.asarray(classes)
