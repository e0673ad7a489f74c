"""The linear probe estimators: planted signals, agreement with scikit-learn, conventions."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics.probing import registry
from mlm_dynamics.probing.probe import (
    FittedProbe,
    LinearProbe,
    SklearnProbe,
    fit_l2_grid,
    make_probe,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny problems on a shared machine: one thread in torch, BLAS and OpenMP avoids contention
    (the CLI does the same with --threads 1; scikit-learn's 4-value grid on pos_problem took
    5.7 s with the default pools on 2 busy cores, 0.2 s with one thread)."""
    from mlm_dynamics.probing.probe import fitting_threads

    with fitting_threads(1):
        yield


def planted(n=800, d=12, classes=4, layers=3, seed=0):
    """Layer l: X ~ N(0, 1), y = argmax(X W + noise), the noise growing with l."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, classes)) * 3
    X = rng.normal(size=(layers, n, d)).astype(np.float32)
    y = np.argmax(X[0] @ W + rng.gumbel(size=(n, classes)) * 0.05, axis=1)
    # later layers carry the same labels with weaker signal: X_l = X_0 + noise
    for layer in range(1, layers):
        X[layer] = X[0] + layer * rng.normal(size=(n, d))
    return X, y + 10, W  # label ids need not start at 0


def centred(W):
    return W - W.mean(axis=1, keepdims=True)  # softmax ignores a per-feature shift over classes


@pytest.mark.parametrize("probe_class", [LinearProbe, SklearnProbe])
def test_recovers_a_planted_multiclass_signal(probe_class):
    X, y, W = planted()
    probe = probe_class(l2=1e-3, max_iter=300).fit(X[:, :600], y[:600])
    accuracy = probe.score(X[:, 600:], y[600:])
    assert accuracy.shape == (3,)
    assert accuracy[0] > 0.9
    assert accuracy[0] > accuracy[2]  # the noisier layer is harder
    assert probe.coef_.shape == (3, 12, 4) and probe.intercept_.shape == (3, 4)
    assert probe.mean_.shape == probe.scale_.shape == (3, 12)
    assert probe.classes_.tolist() == [10, 11, 12, 13]
    learned = centred(probe.coef_[0] / probe.scale_[0][:, None])
    correlation = np.corrcoef(learned.ravel(), centred(W).ravel())[0, 1]
    assert correlation > 0.95
    assert probe.predict(X[:, 600:]).shape == (3, 200)
    assert set(np.unique(probe.predict(X))) <= set(probe.classes_)


def test_binary_probe_has_one_logit_column_like_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2, 500, 6)).astype(np.float32)
    w = np.array([2.0, -1.0, 0.0, 0.5, 0.0, 1.0])
    y = (X[0] @ w + 0.1 * rng.normal(size=500) > 0).astype(int)
    # converged (tol 1e-6): the weights, up to 7, agree to 1e-3; the objective is so flat along
    # the separating direction that float32 (torch) and float64 (scikit-learn) stop ~6e-4 apart
    # at objectives 1e-8 apart
    probe = LinearProbe(l2=1e-3, max_iter=300, tol=1e-6).fit(X, y)
    reference = SklearnProbe(l2=1e-3, max_iter=300, tol=1e-6).fit(X, y)
    assert probe.coef_.shape == (2, 6, 1)
    np.testing.assert_allclose(probe.coef_, reference.coef_, atol=1e-3)
    np.testing.assert_allclose(probe.intercept_, reference.intercept_, atol=1e-3)
    assert probe.score(X, y)[0] > 0.95


def test_objective_is_sklearns_with_l2_one_over_c_n():
    """Converged, both backends land on the same weights: the l2 convention is C = 1/(l2 n)."""
    X, y, _ = planted(n=300, layers=2, seed=4)
    for l2 in (1e-2, 1e-1):
        torch_probe = LinearProbe(l2=l2, max_iter=500, tol=1e-5).fit(X, y)
        sk_probe = SklearnProbe(l2=l2, max_iter=500, tol=1e-5).fit(X, y)
        np.testing.assert_allclose(torch_probe.coef_, sk_probe.coef_, atol=5e-3)


def test_preconditioning_keeps_the_optimum_and_saves_iterations():
    """Strongly correlated features: L-BFGS from the inverse covariance lands on the optimum that
    plain L-BFGS and scikit-learn (float64) find, in fewer iterations."""
    import torch

    from mlm_dynamics.probing.probe import (
        _Objective,
        _Preconditioner,
        batched_lbfgs,
        standardisation,
    )

    rng = np.random.default_rng(5)
    n, d, classes, l2 = 600, 10, 3, 0.1
    latent = rng.normal(size=(2, n, d))
    mixing = np.eye(d) + 0.97 * np.ones((d, d))  # condition number of the covariance ~ 1e4
    X = (latent @ mixing).astype(np.float32)
    y = np.argmax(latent[0, :, :classes] + 0.3 * rng.normal(size=(n, classes)), axis=1)
    mean, scale = standardisation(X)
    features = torch.from_numpy(X)
    objective = _Objective(features, y, classes, l2, mean, scale)
    x0 = torch.zeros(2, (d + 1) * classes)
    plain, plain_iter = batched_lbfgs(objective, x0, 500, 1e-6)
    preconditioner = _Preconditioner(features, mean, scale, l2, seed=0)
    fast, fast_iter = batched_lbfgs(objective, x0, 500, 1e-6, preconditioner)
    reference = SklearnProbe(l2=l2, max_iter=2000, tol=1e-8).fit(X, y)
    coef = fast.reshape(2, d + 1, classes)[:, :d].numpy()
    np.testing.assert_allclose(coef, plain.reshape(2, d + 1, classes)[:, :d], atol=1e-3)
    np.testing.assert_allclose(coef, reference.coef_, atol=1e-3)
    assert fast_iter.sum() < plain_iter.sum() / 2  # measured: 15 vs 44


@pytest.fixture(scope="module")
def pos_problem(tmp_path_factory):
    """A real-ish pos problem: 150/100/100 English sentences (train/dev/test), a noisy embedding
    per word form."""
    from mlm_dynamics.treebanks import prepare

    splits = prepare(
        REPO / "resources/ud/UD_English-EWT", {"train": 150, "dev": 100, "test": 100}, seed=1
    )
    data = {}
    for split, sentences in splits.items():
        words = [w.lower() for s in sentences for w in s.words]
        vectors = np.stack(
            [np.random.default_rng(zlib.crc32(w.encode())).normal(size=24) for w in words]
        )
        y = np.array([registry.UPOS.index(t) for s in sentences for t in s.upos])
        tags = np.random.default_rng(17).normal(size=(17, 24))[y]  # what a tagger layer encodes
        noise = np.random.default_rng(len(split)).normal(size=(2, len(words), 24))
        X = vectors[None] + tags[None] + noise * np.array([0.5, 1.0])[:, None, None]
        X = X.astype(np.float32)
        data[split] = (X, y)
    return data


def test_torch_and_sklearn_backends_agree_on_accuracy(pos_problem):
    X, y = pos_problem["train"]
    X_test, y_test = pos_problem["test"]
    torch_accuracy = LinearProbe(l2=1e-4, max_iter=100).fit(X, y).score(X_test, y_test)
    sk_accuracy = SklearnProbe(l2=1e-4, max_iter=100).fit(X, y).score(X_test, y_test)
    assert np.all(torch_accuracy > 0.5)  # a real signal, so agreement means something
    assert np.max(np.abs(torch_accuracy - sk_accuracy)) <= 0.005


def test_labels_never_seen_in_training_count_as_errors():
    X, y, _ = planted(n=400, layers=1)
    probe = LinearProbe(l2=1e-4, max_iter=200).fit(X, y)
    y_unseen = y.copy()
    y_unseen[:100] = 99
    seen_accuracy = probe.score(X[:, 100:], y[100:])[0]
    assert probe.score(X, y_unseen)[0] == pytest.approx(seen_accuracy * 300 / 400)


def test_fitted_probe_from_attributes_predicts_the_same():
    X, y, _ = planted(n=300)
    probe = make_probe("torch", 1e-3, 100, seed=3).fit(X, y)
    rebuilt = FittedProbe(probe.coef_, probe.intercept_, probe.mean_, probe.scale_, probe.classes_)
    np.testing.assert_array_equal(rebuilt.predict(X), probe.predict(X))


def test_seed_only_moves_the_result_within_tolerance():
    X, y, _ = planted(n=300)
    a = LinearProbe(l2=1e-4, seed=0, max_iter=300).fit(X, y)
    b = LinearProbe(l2=1e-4, seed=1, max_iter=300).fit(X, y)
    c = LinearProbe(l2=1e-4, seed=0, max_iter=300).fit(X, y)
    np.testing.assert_array_equal(a.coef_, c.coef_)  # deterministic
    assert not np.array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict(X)[0], b.predict(X)[0])


def test_single_class_is_refused():
    X = np.zeros((1, 5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe(l2=1e-4, max_iter=100).fit(X, np.zeros(5, dtype=int))


@pytest.mark.parametrize("classes", [3, 15, 16, 29])
def test_log_softmax_matches_torch_on_both_sides_of_its_fast_path(classes):
    import torch

    from mlm_dynamics.probing.probe import log_softmax

    logits = torch.randn(50, classes, generator=torch.Generator().manual_seed(classes)) * 20
    expected = torch.log_softmax(logits, dim=1)
    torch.testing.assert_close(log_softmax(logits.clone()), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_the_cpu_fit(pos_problem):
    X, y = pos_problem["train"]
    X_test, y_test = pos_problem["test"]
    cpu = LinearProbe(l2=1e-4, max_iter=100).fit(X, y)
    cuda = LinearProbe(l2=1e-4, max_iter=100, device="cuda").fit(X, y)
    assert isinstance(cuda.coef_, np.ndarray) and cuda.n_iter_.shape == (X.shape[0],)
    np.testing.assert_allclose(cuda.score(X_test, y_test), cpu.score(X_test, y_test), atol=0.005)


GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def test_batched_grid_fit_matches_a_single_fit_per_value(pos_problem):
    """Probe g of one batched fit_grid run is the single fit at grid[g]: same start, objective
    and preconditioner; only float32 rounding in the batched L-BFGS vector sums differs."""
    X, y = pos_problem["train"]
    X_test, y_test = pos_problem["test"]
    fits = LinearProbe(l2=GRID[0], max_iter=100).fit_grid(X, y, GRID)
    assert [fit.l2 for fit in fits] == list(GRID)
    for value, fit in zip(GRID, fits, strict=True):
        single = LinearProbe(l2=value, max_iter=100).fit(X, y)
        # float32 agreement relative to each value's size: the unpenalised intercepts (up to ~2)
        # drift most, 1.1e-4 (6.6e-5 relative) on an AVX512 CPU
        np.testing.assert_allclose(fit.coef_, single.coef_, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(fit.intercept_, single.intercept_, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(fit.mean_, single.mean_)
        np.testing.assert_array_equal(fit.classes_, single.classes_)
        difference = fit.score(X_test, y_test) - single.score(X_test, y_test)
        assert np.max(np.abs(difference)) <= 0.002


def test_torch_and_sklearn_grid_searches_agree(pos_problem):
    """Every (grid value, layer) fit of the batched torch search scores on dev within 0.5 points
    of scikit-learn's fit of the same value, both run to convergence."""
    X, y = pos_problem["train"]
    X_dev, y_dev = pos_problem["dev"]
    settings = dict(grid=GRID, max_iter=300, tol=1e-5)
    torch_search = fit_l2_grid(X, y, X_dev, y_dev, backend="torch", **settings)
    sk_search = fit_l2_grid(X, y, X_dev, y_dev, backend="sklearn", **settings)
    assert torch_search.dev_accuracy.shape == (len(GRID), 2)
    assert np.all(torch_search.dev_accuracy > 0.5)  # a real signal
    assert np.max(np.abs(torch_search.dev_accuracy - sk_search.dev_accuracy)) <= 0.005
    for search, probe_class in ((torch_search, LinearProbe), (sk_search, SklearnProbe)):
        assert type(search.probe) is probe_class and search.grid == GRID
        layer = np.arange(2)
        chosen = np.array([GRID.index(value) for value in search.l2])
        np.testing.assert_array_equal(
            search.probe.score(X_dev, y_dev), search.dev_accuracy[chosen, layer]
        )
        # the chosen probe is a probe with one l2 per layer: refitting it gives it back
        refit = probe_class(l2=search.l2, max_iter=300, tol=1e-5).fit(X, y)
        np.testing.assert_allclose(refit.coef_, search.probe.coef_, atol=1e-4)
        np.testing.assert_array_equal(refit.n_iter_, search.probe.n_iter_)


def overfitting(n=100, n_dev=400, n_test=400, d=80, classes=3, layers=3, seed=0):
    """Few items for many noisy features (n = 1.25 d, 5 informative): a nearly unpenalised probe
    separates train (100% accuracy) and generalises worse than a penalised one. Returns
    (X, y) of train, dev and test."""
    rng = np.random.default_rng(seed)
    total = n + n_dev + n_test
    y = np.arange(total) % classes
    rng.shuffle(y)
    X = rng.normal(size=(layers, total, d))
    X[:, :, :5] += 0.7 * rng.normal(size=(classes, 5))[y]
    X = X.astype(np.float32)
    cut = [0, n, n + n_dev, total]
    return [(X[:, a:b], y[a:b]) for a, b in zip(cut[:-1], cut[1:], strict=True)]


def test_the_choice_penalises_a_planted_overfitting_probe():
    (X, y), (X_dev, y_dev), _ = overfitting()
    grid = (1e-4, 1e-2, 1e-1, 1.0)
    search = fit_l2_grid(X, y, X_dev, y_dev, grid, backend="torch", max_iter=100)
    smallest = LinearProbe(l2=grid[0], max_iter=100).fit(X, y)
    assert np.all(smallest.score(X, y) == 1.0)  # it overfits
    assert np.all(search.l2 > grid[0])
    at_choice = search.dev_accuracy[[grid.index(value) for value in search.l2], np.arange(3)]
    assert np.all(at_choice >= search.dev_accuracy[0])
    assert np.mean(at_choice - search.dev_accuracy[0]) >= 0.02  # measured: 0.026
    np.testing.assert_array_equal(search.dev_accuracy[0], smallest.score(X_dev, y_dev))


def test_the_choice_reads_dev_only():
    """fit_l2_grid takes no test split, so shuffling the test labels leaves the search as it was
    (bit for bit); shuffling the dev labels, which it does read, moves the choice."""
    (X, y), (X_dev, y_dev), (X_test, y_test) = overfitting()
    grid = (1e-4, 1e-2, 1e-1, 1.0)
    search = fit_l2_grid(X, y, X_dev, y_dev, grid, backend="torch", max_iter=100)
    test_accuracy = search.probe.score(X_test, y_test)
    rng = np.random.default_rng(0)
    y_test[:] = rng.permutation(y_test)  # in place: the arrays the first search could have seen
    again = fit_l2_grid(X, y, X_dev, y_dev, grid, backend="torch", max_iter=100)
    np.testing.assert_array_equal(again.l2, search.l2)
    np.testing.assert_array_equal(again.dev_accuracy, search.dev_accuracy)
    np.testing.assert_array_equal(again.probe.coef_, search.probe.coef_)
    assert np.any(again.probe.score(X_test, y_test) != test_accuracy)  # the shuffle mattered
    shuffled = fit_l2_grid(X, y, X_dev, rng.permutation(y_dev), grid, backend="torch", max_iter=100)
    assert np.all(shuffled.dev_accuracy < 0.45)  # chance is 1/3
    assert not np.array_equal(shuffled.l2, search.l2)


def test_ties_go_to_the_larger_l2(monkeypatch):
    """Dev accuracy per (grid value, layer) set by hand; the grid is not sorted."""
    grid = (1e-2, 1e-4, 1.0, 1e-1)
    accuracy = {  # layer 0: 1e-2 and 1e-1 tie at the top; layer 1: all tie; layer 2: 1e-4 wins
        1e-4: [0.8, 0.5, 0.9],
        1e-2: [0.9, 0.5, 0.7],
        1e-1: [0.9, 0.5, 0.7],
        1.0: [0.6, 0.5, 0.7],
    }
    monkeypatch.setattr(LinearProbe, "score", lambda self, X, y: np.array(accuracy[self.l2]))
    X, y, _ = planted(n=100)
    search = fit_l2_grid(X, y, X, y, grid, backend="torch", max_iter=5)
    np.testing.assert_array_equal(search.l2, [1e-1, 1.0, 1e-4])
    np.testing.assert_array_equal(search.dev_accuracy, [accuracy[value] for value in grid])
    assert search.probe.l2.tolist() == [1e-1, 1.0, 1e-4]


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_the_search_keeps_what_each_fit_gets_right_on_dev(backend):
    """``dev_correct`` is what ``dev_accuracy`` averages, item by item (a bootstrap of the
    choice resamples it); without a dev split there is none."""
    X, y, _ = planted(n=300)
    X_dev, y_dev = X[:, :100], y[:100].copy()
    y_dev[:5] = 99  # a label no fit saw counts as an error
    grid = (1e-2, 1e-4, 1.0)
    search = fit_l2_grid(X, y, X_dev, y_dev, grid, backend=backend, max_iter=30)
    assert search.dev_correct.shape == (3, 3, 100) and search.dev_correct.dtype == bool
    np.testing.assert_array_equal(search.dev_correct.mean(axis=2), search.dev_accuracy)
    assert not search.dev_correct[:, :, :5].any()
    assert fit_l2_grid(X, y, None, None, [1e-3], backend=backend, max_iter=5).dev_correct is None


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_a_one_value_grid_is_the_plain_fit_bit_for_bit(backend):
    X, y, _ = planted(n=300)
    plain = make_probe(backend, 1e-3, 50, seed=2).fit(X, y)
    search = fit_l2_grid(X, y, None, None, [1e-3], backend=backend, max_iter=50, seed=2)
    assert type(search.probe) is type(plain) and search.probe.l2 == plain.l2 == 1e-3
    for name in ("coef_", "intercept_", "mean_", "scale_", "classes_", "n_iter_"):
        np.testing.assert_array_equal(getattr(search.probe, name), getattr(plain, name))
    np.testing.assert_array_equal(search.l2, [1e-3] * 3)
    assert search.dev_accuracy.shape == (1, 3) and np.all(np.isnan(search.dev_accuracy))
    scored = fit_l2_grid(X, y, X, y, [1e-3], backend=backend, max_iter=50, seed=2)
    np.testing.assert_array_equal(scored.probe.coef_, plain.coef_)
    np.testing.assert_array_equal(scored.dev_accuracy[0], plain.score(X, y))


def test_a_batched_grid_reads_the_features_in_place(monkeypatch):
    """The objective and the preconditioner get the one (layers, n, d) tensor that shares X's
    memory, whatever the grid size; each batch entry names its layer."""
    import mlm_dynamics.probing.probe as probe_module

    seen = []

    class Recording(probe_module._Objective):
        def __init__(self, features, *args, **kwargs):
            super().__init__(features, *args, **kwargs)
            seen.append(self)

    monkeypatch.setattr(probe_module, "_Objective", Recording)
    X, y, _ = planted(n=300)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    fit_l2_grid(X, y, X, y, GRID, backend="torch", max_iter=20)
    (objective,) = seen
    assert objective.features.shape == X.shape
    assert objective.features.data_ptr() == X.ctypes.data  # a view of X, not a copy
    assert objective.layer_of == [0, 1, 2] * len(GRID)
    np.testing.assert_array_equal(objective.l2.numpy(), np.repeat(GRID, 3).astype(np.float32))


@pytest.mark.parametrize("classes", [2, 3, 17])
def test_batch_entries_sharing_a_layer_score_as_single_entries(classes):
    """The objective of a batch in which entries share layers (multi-class ones then share one
    product per layer) is, entry by entry, that of the entry evaluated alone."""
    import torch

    from mlm_dynamics.probing.probe import _Objective, standardisation

    rng = np.random.default_rng(classes)
    X = (2 * rng.normal(size=(2, 500, 10)) + 1).astype(np.float32)
    y = rng.integers(0, classes, size=500)
    mean, scale = standardisation(X)
    outputs = 1 if classes == 2 else classes
    layer_of, l2 = [0, 1, 0, 0, 1], [1e-3, 1e-2, 1e-1, 1.0, 0.0]
    objective = _Objective(torch.from_numpy(X), y, outputs, l2, mean, scale, layer_of)
    w = torch.randn(5, 11 * outputs, generator=torch.Generator().manual_seed(0))
    loss, grad, stop = objective(w, torch.arange(5))
    subset = objective(w[[3, 2]], torch.tensor([3, 2]))  # a subset, out of order
    torch.testing.assert_close(subset[0], loss[[3, 2]], rtol=1e-6, atol=1e-6)
    for k in range(5):
        alone = objective(w[k : k + 1], torch.tensor([k]))
        torch.testing.assert_close(alone[0][0], loss[k], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(alone[1][0], grad[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(alone[2][0], stop[k], rtol=1e-5, atol=1e-6)


def test_grid_and_l2_are_checked():
    X, y, _ = planted(n=100)
    with pytest.raises(ValueError, match="needs a dev split"):
        fit_l2_grid(X, y, None, None, [1e-3, 1e-2], backend="torch", max_iter=50)
    for grid in ([], [1e-3, 1e-3], [-1.0], [np.nan]):
        with pytest.raises(ValueError, match="grid"):
            fit_l2_grid(X, y, X, y, grid, backend="torch", max_iter=50)
    with pytest.raises(ValueError, match="one value per layer"):
        LinearProbe(l2=[1e-3, 1e-2], max_iter=50).fit(X, y)  # 3 layers


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_grid_search_matches_the_cpu_one(pos_problem):
    X, y = pos_problem["train"]
    X_dev, y_dev = pos_problem["dev"]
    cpu = fit_l2_grid(X, y, X_dev, y_dev, GRID, backend="torch", max_iter=100)
    cuda = fit_l2_grid(X, y, X_dev, y_dev, GRID, backend="torch", max_iter=100, device="cuda")
    assert isinstance(cuda.probe.coef_, np.ndarray)
    np.testing.assert_allclose(cuda.dev_accuracy, cpu.dev_accuracy, atol=0.005)


def test_make_probe_keeps_scikit_learn_on_the_cpu():
    assert make_probe("torch", 1e-4, 10, 0, device="cuda").device == "cuda"
    with pytest.raises(ValueError, match="runs on the CPU only"):
        make_probe("sklearn", 1e-4, 10, 0, device="cuda")
