"""XNLI: reading the data, sentence features against a direct computation, the probe command, and
the BPC / XNLI / SimAlign rules run by Snakemake on the fixtures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlm_dynamics import stats, xnli
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis.tables import BASELINE_LAYER, BASELINE_METRIC, COLUMNS
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "xnli"
LANGUAGES = ["en", "fr", "de"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_fixture_reads_balanced(lang):
    train, dev, test = (xnli.load_pairs(str(FIXTURES), lang, split) for split in xnli.SPLITS)
    assert (len(train), len(dev), len(test)) == (30, 15, 15)
    assert np.bincount(train.labels).tolist() == [10, 10, 10]
    assert np.bincount(dev.labels).tolist() == [5, 5, 5]
    assert np.bincount(test.labels).tolist() == [5, 5, 5]
    assert not set(dev.premises) & (set(train.premises) | set(test.premises))


@pytest.mark.parametrize("split", xnli.SPLITS)
def test_languages_are_translations_with_the_same_labels(split):
    # en and fr name the labels, de uses facebook/xnli's ids: they must agree row by row.
    labels = [xnli.load_pairs(str(FIXTURES), lang, split).labels for lang in LANGUAGES]
    assert all((labels[0] == other).all() for other in labels[1:])
    assert xnli.load_pairs(str(FIXTURES), "en", split).labels[:3].tolist() == [0, 1, 2]


def test_xnli_1_0_column_names_and_extra_columns(tmp_path):
    path = tmp_path / "sw.test.tsv"
    path.write_text(
        "language\tgold_label\tsentence1\tsentence2\n"
        'sw\tneutral\tHe said "yes".\tHe agreed.\n'
        "sw\tcontradiction\tA\tB\n"
    )
    pairs = xnli.load_pairs(str(tmp_path), "sw", "test")
    assert pairs.premises == ['He said "yes".', "A"]
    assert pairs.labels.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.test.tsv", "premise\thypothesis\tlabel\na\tb\tmaybe\n", "x.test.tsv:2: label 'maybe'"),
        ("x.test.tsv", "premise\thypothesis\tlabel\na\tb\t0\na\tb\n", "x.test.tsv:3: 2 columns"),
        ("x.test.tsv", "premise\tlabel\na\t0\n", "x.test.tsv:1: header has no hypothesis"),
        ("x.test.tsv", "premise\thypothesis\tlabel\n \tb\t0\n", "x.test.tsv:2: empty premise"),
        ("x.test.jsonl", '{"premise": "a", "hypothesis": "b", "label": 1}\n{"premise": "a"}\n',
         "x.test.jsonl:2: expected an object"),
        ("x.test.jsonl", "\n{oops\n", "x.test.jsonl:2: not JSON"),
    ],
)  # fmt: skip
def test_bad_rows_name_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        xnli.load_pairs(str(tmp_path), "x", "test")


def test_missing_data_and_unpinned_hub_are_errors(tmp_path):
    with pytest.raises(InputError, match=r"no x\.train\.tsv / x\.train\.jsonl"):
        xnli.load_pairs(str(tmp_path), "x", "train")
    with pytest.raises(InputError, match="xnli.hub_revision"):
        xnli.load_pairs("hub", "en", "train", hub_revision="")
    with pytest.raises(InputError, match="xnli.data"):
        xnli.load_pairs("", "en", "train")


# Loading from the hub (xnli.data: hub), dev as facebook/xnli's validation split: over loopback
# HTTP in tests/test_xnli_hub.py.


def test_subsample_takes_the_same_rows_for_every_language():
    pairs = [xnli.load_pairs(str(FIXTURES), lang, "train") for lang in ("en", "de")]
    small = [xnli.subsample(p, 7) for p in pairs]
    assert len(small[0]) == 7
    assert (small[0].labels == small[1].labels).all()
    assert small[0].premises != pairs[0].premises[:7]  # a spread subsample, not the head
    assert xnli.subsample(pairs[0], 100) is pairs[0]


def test_sentence_vectors_are_subword_means(tiny_checkpoint):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mlm_dynamics.activations.extract import Encoder

    texts = ["Un homme dort dans son lit.", "Kids are outside.", "Die Küche ist leer und still."]
    encoder = Encoder.from_checkpoint(tiny_checkpoint)
    vectors = xnli.sentence_vectors(encoder, texts, pooling="mean", batch_tokens=64)

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModel.from_pretrained(tiny_checkpoint).eval()
    for k, text in enumerate(texts):
        encoding = tokenizer(text, return_tensors="pt")
        assert encoding["input_ids"].shape[1] <= 32
        with torch.no_grad():
            states = model(**encoding, output_hidden_states=True).hidden_states
        for layer, state in enumerate(states):
            expected = state[0, 1:-1].mean(0).numpy()  # every subword but <s> and </s>
            np.testing.assert_allclose(vectors[layer, k], expected, rtol=1e-4, atol=1e-5)


def test_probe_features_layout(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    uv = np.array([[[1.0, 2.0], [3.0, -1.0]]], dtype=np.float16)  # one pair, hidden 2
    np.save(split / "layer00.npy", uv)
    np.save(split / "labels.npy", np.array([2]))
    X, y = xnli.load_features(split)
    assert X.tolist() == [[[1, 2, 3, -1, 2, 3, 3, -2]]]  # [u; v; |u - v|; u * v]
    assert y.tolist() == [2]


STATS = ["--resamples", "300", "--confidence", "0.9", "--bootstrap-seed", "4"]


@pytest.fixture(scope="module")
def features(tiny_checkpoint, tmp_path_factory):
    features = tmp_path_factory.mktemp("xnli") / "features"
    for lang in LANGUAGES:
        argv = ["xnli-features", "--checkpoint", str(tiny_checkpoint), "--data", str(FIXTURES)]
        argv += ["--language", lang, "--max-train", "24", "--max-dev", "12", "--hub-revision", ""]
        argv += ["--max-test", str(schema_default("xnli.max_test"))]
        argv += ["--batch-tokens", str(schema_default("xnli.batch_tokens"))]
        argv += ["--pooling", schema_default("activations.pooling")]
        assert cli([*argv, "--out", str(features / lang)]) == 0
    return features


def run_probe(features, out, min_sentences=10, l2=("1e-4",)):
    argv = ["xnli-probe", "--features", *(str(features / lang) for lang in LANGUAGES)]
    argv += ["--train-language", "en", "--model", "tiny", "--step", "5", "--seeds", "2"]
    argv += ["--l2", *l2, "--backend", schema_default("probing.backend")]
    argv += ["--max-iter", str(schema_default("probing.max_iter"))]
    argv += [*STATS, "--min-sentences", str(min_sentences)]
    argv += ["--out", str(out), "--items", str(out.with_suffix(".items.npz"))]
    return cli(argv)


def test_features_command_caches_every_split(features):
    uv = np.load(features / "en" / "train" / "layer02.npy")
    assert uv.shape == (24, 2, 32) and uv.dtype == np.float16
    assert np.load(features / "fr" / "test" / "labels.npy").shape == (15,)
    assert np.load(features / "de" / "dev" / "labels.npy").shape == (12,)
    for split in xnli.SPLITS:
        assert sorted(p.name for p in (features / "de" / split).iterdir()) == [
            "labels.npy", "layer00.npy", "layer01.npy", "layer02.npy",
        ]  # fmt: skip
    # The same subsampled rows in every language.
    dev = [np.load(features / lang / "dev" / "labels.npy") for lang in LANGUAGES]
    assert all((dev[0] == other).all() for other in dev[1:])


def test_probe_command_rows_intervals_and_items(features, tmp_path):
    out = tmp_path / "scores" / "en.parquet"
    assert run_probe(features, out) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    # (3 test languages + en dev) x 2 seeds x (3 hidden states + the majority baseline)
    assert len(table) == 4 * 2 * (3 + 1)
    assert set(table.task) == {"xnli"} and set(table.train_lang) == {"en"}
    test = table[table.split == "test"]
    assert set(test.test_lang) == set(LANGUAGES) and (test.n == 15).all()
    dev = table[table.split == "dev"]
    assert set(dev.test_lang) == {"en"} and (dev.n == 12).all()
    assert set(table.split) == {"dev", "test"}
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert np.isfinite(table[["ci_low", "ci_high"]].to_numpy()).all()
    # The dev and test sets are balanced: the training majority is right a third of the time.
    majority = table[table.metric == BASELINE_METRIC]
    assert np.allclose(majority.value, 1 / 3) and (majority.layer == BASELINE_LAYER).all()
    assert len(majority) == 4 * 2  # one row per evaluation set and seed, not one per layer

    # Every accuracy and interval follows from the per-pair correctness and the shared resamples.
    item_file = stats.load_item_scores(out.with_suffix(".items.npz"))
    assert (item_file.model, item_file.step) == ("tiny", 5)
    items = item_file.scores
    assert len(items) == 2 * 4
    indexed = table[table.metric == "accuracy"].set_index(["test_lang", "split", "seed", "layer"])
    for score in items:
        assert (score.task, score.train_lang) == ("xnli", "en")
        assert (
            score.layers.tolist() == [0, 1, 2] and (score.units == np.arange(score.n_units)).all()
        )
        weights = stats.resample_counts(
            score.n_units, 300, stats.resample_key(4, score.test_lang, score.split)
        )
        correct, count = score.unit_sums()
        samples = (weights @ correct) / (weights @ count)[:, None]
        low, high = np.quantile(samples, [0.05, 0.95], axis=0)
        for layer in score.layers:
            row = indexed.loc[(score.test_lang, score.split, score.seed, layer)]
            assert row.value == pytest.approx(score.correct[layer].mean())
            assert (row.ci_low, row.ci_high) == pytest.approx((low[layer], high[layer]))


def test_probe_l2_is_chosen_on_dev_and_seeds_resample_training_pairs(features, tmp_path):
    from mlm_dynamics.probing.probe import fit_l2_grid

    out = tmp_path / "en.parquet"
    assert run_probe(features, out, l2=("1e-4", "30")) == 0
    items = {
        (score.test_lang, score.split, score.seed): score
        for score in stats.load_item_scores(out.with_suffix(".items.npz")).scores
    }
    X, y = xnli.load_features(features / "en" / "train")
    X_dev, y_dev = xnli.load_features(features / "en" / "dev")
    X_fr, y_fr = xnli.load_features(features / "fr" / "test")
    for seed in (0, 1):
        rows = xnli.training_rows(len(y), seed, "en")
        search = fit_l2_grid(
            X[:, rows], y[rows], X_dev, y_dev, [1e-4, 30.0], seed=seed,
            backend=schema_default("probing.backend"), max_iter=schema_default("probing.max_iter"),
        )  # fmt: skip
        expected = search.probe.predict(X_fr) == y_fr[None, :]
        np.testing.assert_array_equal(items["fr", "test", seed].correct, expected)
    assert (xnli.training_rows(24, 0, "en") == np.arange(24)).all()
    resample = xnli.training_rows(24, 1, "en")
    assert len(resample) == 24 and len(set(resample.tolist())) < 24
    assert (resample == np.sort(resample)).all()


def test_probe_refuses_a_small_evaluation_set(features, tmp_path, capsys):
    out = tmp_path / "en.parquet"
    assert run_probe(features, out, min_sentences=13) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "en/dev (XNLI en dev): 12 sentences, fewer than the 13" in err
    assert not out.exists() and not out.with_suffix(".items.npz").exists()


# ---------------------------------------------------------------- the workflow


def save_checkpoint(source: Path, directory: Path, seed: int) -> None:
    """A copy of the tiny checkpoint with weights re-drawn from ``seed``."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    shutil.copytree(source, directory)
    torch.manual_seed(seed)
    XLMRobertaForMaskedLM(XLMRobertaConfig.from_pretrained(source)).save_pretrained(directory)


@pytest.mark.e2e
def test_workflow_runs_bpc_xnli_and_simalign(tiny_checkpoint, tmp_path):
    for step in (0, 1):
        save_checkpoint(tiny_checkpoint, tmp_path / f"ckpt-{step}", seed=step)
    simalign_dir = REPO / "tests" / "fixtures" / "simalign"
    config = {
        "models": {"tiny": {"source": "local", "layers": 2, "steps": [0, 1],
                            "path": str(tmp_path / "ckpt-{step}")}},
        "languages": {"en": {"heldout_text": str(REPO / "resources/heldout/en.txt.gz")}},
        "bpc": {"max_sentences": 5},
        "xnli": {"enabled": True, "languages": ["en", "de"], "data": str(FIXTURES)},
        "simalign": {"enabled": True, "pairs": {"de": {
            "source": str(simalign_dir / "en.txt"), "target": str(simalign_dir / "de.txt"),
            "gold": str(simalign_dir / "en-de.gold")}}},
        "gpu_resources": {"base_mem_mb": 256, "mem_mb_per_million_parameters": 1},
        "statistics": {"resamples": 200, "min_sentences": 5},
    }  # fmt: skip
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    targets = [
        f"results/{task}/tiny/{step}/{lang}.parquet"
        for step in (0, 1)
        for task, langs in (("bpc", ["en"]), ("xnli/scores", ["en", "de"]), ("simalign", ["de"]))
        for lang in langs
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Targets first: --configfile takes every word after it.
    command = [sys.executable, "-m", "snakemake", *targets, "--cores", "2"]
    command += ["--directory", str(tmp_path / "run"), "--snakefile", str(REPO / "Snakefile")]
    command += ["--configfile", str(config_file)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    run = tmp_path / "run"
    table = pd.concat([pd.read_parquet(run / target) for target in targets])
    assert list(table.columns) == list(COLUMNS)
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert np.isfinite(table[["ci_low", "ci_high"]].to_numpy()).all()
    bpc = table[table.metric == "bpc_pll"]
    assert len(bpc) == 2 and bpc.value.between(0.5, 20).all() and (bpc.split == "test").all()
    xnli_rows = table[(table.task == "xnli") & (table.metric == "accuracy")]
    # steps x train languages x (test languages + own dev) x hidden states
    assert len(xnli_rows) == 2 * 2 * (2 + 1) * 3
    assert (xnli_rows.split == "dev").sum() == 2 * 2 * 3
    for step in (0, 1):
        for lang in ("en", "de"):
            items = stats.load_item_scores(
                run / f"results/xnli/scores/tiny/{step}/{lang}.items.npz"
            )
            assert (items.model, items.step, len(items.scores)) == ("tiny", step, 3)
    align = table[table.task.str.startswith("simalign")]
    # steps x methods x granularities x hidden states x metrics
    assert len(align) == 2 * 3 * 2 * 3 * 4
    assert "XNLI: task off" not in result.stderr
