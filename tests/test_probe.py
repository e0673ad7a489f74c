"""The linear probe estimators: planted signals, agreement with scikit-learn, conventions."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics import probing_tasks
from mlm_dynamics.probe import FittedProbe, LinearProbe, SklearnProbe, make_probe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny problems on a shared machine: one thread avoids OpenMP contention (the CLI does the
    same with --threads 1)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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

    from mlm_dynamics.probe import _Objective, _Preconditioner, batched_lbfgs, standardisation

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
    """A real-ish pos problem: 150/100 English sentences, a noisy embedding per word form."""
    from mlm_dynamics.treebank import prepare

    splits = prepare(REPO / "resources/ud/UD_English-EWT", {"train": 150, "test": 100}, seed=1)
    data = {}
    for split, sentences in splits.items():
        words = [w.lower() for s in sentences for w in s.words]
        vectors = np.stack(
            [np.random.default_rng(zlib.crc32(w.encode())).normal(size=24) for w in words]
        )
        y = np.array([probing_tasks.UPOS.index(t) for s in sentences for t in s.upos])
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
    probe = LinearProbe(max_iter=200).fit(X, y)
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
    a = LinearProbe(seed=0, max_iter=300).fit(X, y)
    b = LinearProbe(seed=1, max_iter=300).fit(X, y)
    c = LinearProbe(seed=0, max_iter=300).fit(X, y)
    np.testing.assert_array_equal(a.coef_, c.coef_)  # deterministic
    assert not np.array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict(X)[0], b.predict(X)[0])


def test_single_class_is_refused():
    X = np.zeros((1, 5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(X, np.zeros(5, dtype=int))


@pytest.mark.parametrize("classes", [3, 15, 16, 29])
def test_log_softmax_matches_torch_on_both_sides_of_its_fast_path(classes):
    import torch

    from mlm_dynamics.probe import log_softmax

    logits = torch.randn(50, classes, generator=torch.Generator().manual_seed(classes)) * 20
    expected = torch.log_softmax(logits, dim=1)
    torch.testing.assert_close(log_softmax(logits.clone()), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA device (the device machine)"
)
def test_cuda_fit_matches_the_cpu_fit(pos_problem):
    X, y = pos_problem["train"]
    X_test, y_test = pos_problem["test"]
    cpu = LinearProbe(l2=1e-4, max_iter=100).fit(X, y)
    cuda = LinearProbe(l2=1e-4, max_iter=100, device="cuda").fit(X, y)
    assert isinstance(cuda.coef_, np.ndarray) and cuda.n_iter_.shape == (X.shape[0],)
    np.testing.assert_allclose(cuda.score(X_test, y_test), cpu.score(X_test, y_test), atol=0.005)


def test_make_probe_keeps_scikit_learn_on_the_cpu():
    assert make_probe("torch", 1e-4, 10, 0, device="cuda").device == "cuda"
    with pytest.raises(ValueError, match="runs on the CPU only"):
        make_probe("sklearn", 1e-4, 10, 0, device="cuda")
