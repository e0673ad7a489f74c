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
stopping test (scikit-learn's: largest gradient entry <= ``tol``), all layers evaluated in one
batched matrix product; a layer that has converged leaves the batch. ``SklearnProbe`` is
scikit-learn's ``LogisticRegression`` (lbfgs, float64) fitted layer by layer: the reference.

Prediction and scoring need numpy only (torch is imported inside ``LinearProbe.fit``), so scoring
jobs start fast.
"""

from __future__ import annotations

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


def standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer mean and standard deviation (layers, d); constant features get scale 1."""
    mean = np.empty((X.shape[0], X.shape[2]), dtype=np.float64)
    scale = np.empty_like(mean)
    for layer in range(X.shape[0]):
        values = X[layer].astype(np.float64)
        mean[layer] = values.mean(axis=0)
        scale[layer] = values.std(axis=0)
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


class LinearProbe(_FittedLinear):
    """All layers fitted together by batched full-batch L-BFGS in torch.

    ``seed`` draws the (tiny) initial weights; the objective is convex, so it only moves the
    result within the optimiser's tolerance. ``tol`` bounds the largest gradient entry (as
    scikit-learn's ``tol``; float32 sums make values much below 1e-5 unreachable, and then the
    line search finding no decrease stops the layer).
    """

    def __init__(self, l2: float = 1e-4, max_iter: int = 100, seed: int = 0, tol: float = 1e-4):
        self.l2 = l2
        self.max_iter = max_iter
        self.seed = seed
        self.tol = tol

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        import torch

        X, classes, y_index = check_fit_input(X, y)
        layers, n, d = X.shape
        outputs = 1 if len(classes) == 2 else len(classes)
        mean, scale = standardisation(X)

        Z = torch.from_numpy(X).float().sub(torch.from_numpy(mean)[:, None, :])  # one copy
        Z.div_(torch.from_numpy(scale)[:, None, :])
        generator = torch.Generator().manual_seed(int(self.seed))
        W0 = 1e-3 * torch.randn(layers, d * outputs, generator=generator)
        x0 = torch.cat([W0, torch.zeros(layers, outputs)], dim=1)
        objective = _Objective(Z, torch.from_numpy(y_index), outputs, float(self.l2))
        x, n_iter = batched_lbfgs(objective, x0, self.max_iter, self.tol)
        self.coef_ = x[:, : d * outputs].reshape(layers, d, outputs).numpy().astype(np.float32)
        self.intercept_ = x[:, d * outputs :].numpy().astype(np.float32)
        self.mean_ = mean
        self.scale_ = scale
        self.classes_ = classes
        self.n_iter_ = n_iter
        return self


class _Objective:
    """The objective of several layers at once, at ``x = [vec(W); b]`` (one row per layer).

    Called with ``x`` (rows, p) and ``rows`` (which layers), it returns losses (rows,), gradients
    (rows, p) and their largest entries (rows,), scikit-learn's lbfgs stopping measure.
    """

    def __init__(self, Z, y_index, outputs: int, l2: float):
        import torch

        self.Z, self.outputs, self.l2 = Z, outputs, l2
        self.n, self.d = Z.shape[1], Z.shape[2]
        self.y = y_index.long()[None, :, None]
        self.minus_one = torch.full((1, self.n, 1), -1.0)
        self.cache = {}

    def features(self, rows):
        """Z of some layers (a copy, kept for the last two sets of layers asked for)."""
        key = tuple(rows.tolist())
        if key not in self.cache:
            full = len(rows) == self.Z.shape[0]
            self.cache = dict(list(self.cache.items())[-1:])
            self.cache[key] = self.Z if full else self.Z[rows]
        return self.cache[key]

    def __call__(self, x, rows):
        import torch

        Z = self.features(rows)
        r, n, d, outputs = len(rows), self.n, self.d, self.outputs
        W = x[:, : d * outputs].reshape(r, d, outputs)
        b = x[:, d * outputs :].reshape(r, 1, outputs)
        logits = torch.baddbmm(b, Z, W)
        if outputs == 1:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=2)
        y = self.y.expand(r, n, 1)
        log_probs = torch.log_softmax(logits, dim=2)
        loss = -log_probs.gather(2, y).sum(dim=(1, 2)) / n
        loss = loss + 0.5 * self.l2 * (W * W).sum(dim=(1, 2))
        residual = log_probs.exp_()  # softmax minus one-hot, in place
        residual.scatter_add_(2, y, self.minus_one.expand(r, n, 1))
        residual = residual[:, :, 1:] if outputs == 1 else residual
        grad_W = torch.baddbmm(W, Z.transpose(1, 2), residual, beta=self.l2, alpha=1.0 / n)
        grad = torch.cat([grad_W.reshape(r, -1), residual.sum(dim=1) / n], dim=1)
        return loss, grad, grad.abs().amax(dim=1)


def batched_lbfgs(objective, x0, max_iter: int, tol: float, history: int = 10):
    """Minimise independent problems at once: row ``i`` of ``x0`` (problems, p) is problem ``i``.

    ``objective(x, rows)`` returns losses, gradients and a stopping measure of the problems
    ``rows``. Each problem has its own L-BFGS memory, its own backtracking (Armijo) step and its
    own stopping test (measure <= ``tol``, or a line search that finds no decrease); a problem
    that has stopped is dropped from the batch.
    Returns the minimisers and the iterations each problem took, (problems,).
    """
    import torch

    result = x0.clone()
    n_iter = torch.zeros(x0.shape[0], dtype=torch.long)
    rows = torch.arange(x0.shape[0])
    x = x0.clone()
    loss, grad, stop = objective(x, rows)
    memory = []  # (s, y, rho = 1 / s.y) of the latest updates, oldest first; rho 0 = inert
    scaling = torch.ones(len(rows))  # s.y / y.y of the latest update: the initial Hessian guess
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
        q *= scaling[:, None]
        for (s, y, rho), alpha in zip(memory, reversed(alphas), strict=True):
            q += (alpha - rho * (y * q).sum(dim=1))[:, None] * s
        direction = -q
        # a non-descent direction (stale memory) falls back to steepest descent
        descent = (grad * direction).sum(dim=1) < 0
        if not descent.all():
            direction = torch.where(descent[:, None], direction, -grad)
        slope = (grad * direction).sum(dim=1)

        # backtracking per problem, from the unit step; only failed problems are evaluated again
        t = torch.ones(len(rows))
        x_new = x + direction
        loss_new, grad_new, stop_new = objective(x_new, rows)
        failed = torch.nonzero(loss_new > loss + 1e-4 * t * slope)[:, 0]
        for _ in range(20):
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
        scaling = torch.where(useful, sy / (y * y).sum(dim=1).clamp_min(1e-30), scaling)
        memory = [*memory[-(history - 1) :], (s, y, rho)]
        x, loss, grad, stop = x_new, loss_new, grad_new, stop_new
    result[rows] = x
    return result, n_iter.numpy()


class SklearnProbe(_FittedLinear):
    """scikit-learn's LogisticRegression (lbfgs), one layer at a time: the reference backend."""

    def __init__(self, l2: float = 1e-4, max_iter: int = 100, seed: int = 0, tol: float = 1e-4):
        self.l2 = l2
        self.max_iter = max_iter
        self.seed = seed
        self.tol = tol

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


def make_probe(backend: str, l2: float, max_iter: int, seed: int) -> LinearProbe | SklearnProbe:
    return BACKENDS[backend](l2=l2, max_iter=max_iter, seed=seed)


class FittedProbe(_FittedLinear):
    """A probe rebuilt from saved attributes (for scoring without the fitting backend)."""

    def __init__(self, coef, intercept, mean, scale, classes):
        self.coef_ = np.asarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.scale_ = np.asarray(scale, dtype=np.float32)
        self.classes_ = np.asarray(classes)
