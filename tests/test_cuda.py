"""CUDA against the CPU on the tiny real checkpoint: bf16 word vectors against fp32 ones and the
probes fitted on each, and BPC, SimAlign and XNLI features on both devices.

Run by ``bash benchmarks/gpu_check.sh`` (with the two CUDA probe tests in tests/test_probe.py);
every CUDA test here is marked ``cuda`` and skips where ``torch.cuda.is_available()`` is False
(the last test, unmarked, runs the script itself without CUDA). On
CUDA the activation encoder runs the model under bf16 autocast (``Encoder.encode``), on the CPU in
fp32, so the extraction tests compare the two precisions; BPC runs fp32 on both devices.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlm_dynamics import bpc, simalign, xnli
from mlm_dynamics.activations.extract import Encoder
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.probing import registry
from mlm_dynamics.probing.probe import fit_l2_grid
from mlm_dynamics.textio import read_lines
from mlm_dynamics.treebanks import prepare

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# bf16 keeps 8 significant bits (relative rounding 2^-9); on the tiny model the direction of a
# vector moves far less than this bound allows (CPU bf16 autocast: min cosine ~0.9998).
MIN_COSINE = 0.99  # per word (subword, sentence) vector and hidden state, bf16 vs fp32
MAX_ACCURACY_POINTS = 1.0  # POS probe test accuracy per layer, bf16 cache vs fp32 cache
MIN_LINK_AGREEMENT = 0.9  # SimAlign links, |bf16 & fp32| / |bf16 | fp32| per method and layer
BPC_RTOL = 1e-3  # fp32 on both devices: kernel summation order (and TF32, were it enabled)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching vectors along the last axis, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def assert_same_directions(reference: np.ndarray, other: np.ndarray) -> None:
    """Every vector (hidden state x row) within MIN_COSINE of the reference; not bit-identical
    (the other side really ran in another precision or on another device)."""
    assert reference.shape == other.shape
    cosine = cosines(reference, other)
    worst = np.unravel_index(np.argmin(cosine), cosine.shape)
    assert cosine.min() >= MIN_COSINE, f"cosine {cosine.min():.5f} at (hidden state, row) {worst}"
    assert not np.array_equal(reference, other)


def link_agreement(reference: dict, other: dict) -> dict[tuple[str, int], float]:
    """Per (method, hidden state): shared links / links of either, over all sentence pairs."""
    agreement = {}
    for method, layers in reference.items():
        for layer, pairs in enumerate(layers):
            pairs_other = other[method][layer]
            shared = sum(len(a & b) for a, b in zip(pairs, pairs_other, strict=True))
            either = sum(len(a | b) for a, b in zip(pairs, pairs_other, strict=True))
            agreement[method, layer] = shared / either if either else 1.0
    return agreement


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint) -> tuple[Encoder, Encoder]:
    """(fp32 CPU encoder, bf16 CUDA encoder) of the same weights."""
    cuda = Encoder.from_checkpoint(tiny_checkpoint)
    assert cuda.device.type == "cuda"
    cpu_model = copy.deepcopy(cuda.model).to("cpu")
    return Encoder(cuda.tokenizer, cpu_model, torch.device("cpu")), cuda


@pytest.fixture(scope="module")
def english():
    """200 train, 100 dev and 100 test sentences of the bundled English treebank."""
    treebank = REPO / "resources/ud/UD_English-EWT"
    return prepare(treebank, {"train": 200, "dev": 100, "test": 100}, seed=13)


@pytest.fixture(scope="module")
def word_vectors(encoders, english) -> dict[str, dict[str, np.ndarray]]:
    """Word vectors per split, fp32 CPU ("fp32") and bf16 CUDA ("bf16")."""
    batch_tokens = schema_default("activations.batch_tokens")
    pooling = schema_default("activations.pooling")
    vectors = {}
    for name, encoder in zip(("fp32", "bf16"), encoders, strict=True):
        vectors[name] = {
            split: encoder.extract(
                [s.words for s in sentences], pooling=pooling, batch_tokens=batch_tokens
            )[0]
            for split, sentences in english.items()
        }
    return vectors


@pytest.mark.cuda
@needs_cuda
def test_bf16_word_vectors_point_where_the_fp32_ones_do(word_vectors):
    for split in ("train", "dev", "test"):
        assert_same_directions(word_vectors["fp32"][split], word_vectors["bf16"][split])


@pytest.mark.cuda
@needs_cuda
def test_pos_probe_accuracy_on_the_bf16_cache_is_within_a_point(word_vectors, english):
    """The workflow's probe (torch backend, l2 chosen on dev from the schema's grid), fitted on
    the CPU on each cache: test accuracy per layer within MAX_ACCURACY_POINTS."""
    labels = {
        split: np.array([registry.UPOS.index(t) for s in sentences for t in s.upos])
        for split, sentences in english.items()
    }
    accuracy = {}
    for name, vectors in word_vectors.items():
        search = fit_l2_grid(
            vectors["train"], labels["train"], vectors["dev"], labels["dev"],
            schema_default("probing.l2"), backend="torch",
            max_iter=schema_default("probing.max_iter"),
        )  # fmt: skip
        accuracy[name] = search.probe.score(vectors["test"], labels["test"])
    assert accuracy["fp32"].min() > 0.3  # the probes learnt something (17 tags)
    difference = 100 * np.abs(accuracy["bf16"] - accuracy["fp32"])
    assert difference.max() <= MAX_ACCURACY_POINTS, (accuracy["fp32"], accuracy["bf16"])


@pytest.mark.cuda
@needs_cuda
def test_bpc_on_cuda_matches_the_cpu(tiny_checkpoint):
    sentences = read_lines(REPO / "resources/heldout/en.txt.gz", limit=30)
    batch_tokens = schema_default("bpc.batch_tokens")
    results = {}
    for device in ("cpu", "cuda"):
        model, tokenizer, _ = bpc.load_checkpoint(tiny_checkpoint, None)
        pll = bpc.pseudo_log_likelihood(
            model, tokenizer, sentences, batch_tokens=batch_tokens, device=torch.device(device)
        )
        masked = bpc.masked_lm_bits(
            model, tokenizer, sentences, maskings=2,
            probability=schema_default("bpc.mask_probability"), batch_tokens=batch_tokens,
            device=torch.device(device),
        )  # fmt: skip
        results[device] = (pll, masked)
    (pll_cpu, masked_cpu), (pll_cuda, masked_cuda) = results["cpu"], results["cuda"]
    np.testing.assert_allclose(pll_cuda.sentence_bits, pll_cpu.sentence_bits, rtol=BPC_RTOL)
    np.testing.assert_allclose(masked_cuda.masked_bits, masked_cpu.masked_bits, rtol=BPC_RTOL)
    assert (masked_cuda.masked_tokens == masked_cpu.masked_tokens).all()


@pytest.mark.cuda
@needs_cuda
def test_simalign_units_and_links_on_cuda_match_the_cpu(encoders):
    corpus = {
        side: simalign.read_sentences(FIXTURES / f"simalign/{side}.txt") for side in ("en", "de")
    }
    batch_tokens = schema_default("simalign.batch_tokens")
    for granularity in ("word", "subword"):
        units = [
            {
                side: simalign.encode_units(
                    encoder, s, granularity, pooling="mean", batch_tokens=batch_tokens
                )
                for side, s in corpus.items()
            }
            for encoder in encoders
        ]
        for side in corpus:
            assert_same_directions(units[0][side].vectors, units[1][side].vectors)
            assert (units[0][side].words == units[1][side].words).all()
        links = [simalign.predict_links(u["en"], u["de"], simalign.METHODS) for u in units]
        agreement = link_agreement(*links)
        assert min(agreement.values()) >= MIN_LINK_AGREEMENT, (granularity, agreement)


@pytest.mark.cuda
@needs_cuda
def test_xnli_sentence_vectors_on_cuda_match_the_cpu(encoders):
    pairs = xnli.read_tsv(FIXTURES / "xnli/en.test.tsv")
    texts = pairs.premises + pairs.hypotheses
    batch_tokens = schema_default("xnli.batch_tokens")
    cpu, cuda = (
        xnli.sentence_vectors(e, texts, pooling="mean", batch_tokens=batch_tokens) for e in encoders
    )
    assert_same_directions(cpu, cuda)


def test_gpu_check_runs_without_cuda_and_says_what_it_skips():
    """``bash benchmarks/gpu_check.sh`` with CUDA hidden: exit 0, one SKIP line per CUDA part,
    and its CPU measurements (fp32 throughput, the torch probe on the CPU against scikit-learn)
    still run."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIP: ")]
    reason = "needs a CUDA device (torch.cuda.is_available() is False)"
    assert skipped == [
        "SKIP: CUDA agreement tests (bf16 vs fp32 extraction, probes, BPC, SimAlign, XNLI)"
        f" — {reason}",
        f"SKIP: bf16 extraction throughput against the bf16 roofline — {reason}",
        f"SKIP: CUDA probe fit against scikit-learn — {reason}",
    ]
    assert "7 skipped" in result.stdout  # the CUDA tests were collected, and each skipped
    assert re.search(r"extraction \(fp32, .*tokens/s; achieved [\d.]+ TFLOP/s", result.stdout)
    assert re.search(r"probe fit ratio .* [\d.]+x \(sklearn default\)", result.stdout)
    assert result.stdout.rstrip().endswith("gpu_check: OK")
