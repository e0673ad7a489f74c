"""What a probe's verdict rests on: the tokenizer's coverage of the language (recorded with the
activation cache, reported by score-probe) and how stable the L2 strength chosen on dev is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlm_dynamics import stats
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.activations import store
from mlm_dynamics.analysis import tables
from mlm_dynamics.probing.cli import interval_rows, l2_stability
from mlm_dynamics.probing.pipeline import Units
from mlm_dynamics.probing.probe import L2Search
from mlm_dynamics.treebanks import load_prepared, prepare, save_prepared

REPO = Path(__file__).resolve().parents[1]
SHARED_UD = REPO.parent / "shared" / "ud"  # real UD treebanks (dev and test): see its README
KOREAN = next(ud / "UD_Korean-GSD" for ud in (SHARED_UD, REPO / "resources/ud") if ud.is_dir())
CAPS = {"train": 40, "dev": 40, "test": 40}
STATS = ["--resamples", "200", "--confidence", "0.95", "--bootstrap-seed", "0"]
STATS += ["--min-sentences", "30"]
BOOTSTRAP = stats.Bootstrap(resamples=200, confidence=0.95, seed=0, min_sentences=30)
GRID = ["0.0001", "0.01"]
CHOICE = ["l2", "l2_stability", "l2_on_grid_edge"]
HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def latin_tokenizer(tmp_path_factory, tiny_checkpoint) -> Path:
    """A tokenizer of the tiny model's vocabulary size trained on its Latin-script text only: it
    never saw Hangul."""
    from mlm_dynamics.pretrain import train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [
        line
        for lang in ("en", "fr", "de", "es")
        for line in read_lines(REPO / f"resources/text/{lang}.txt.gz", limit=100)
    ]
    vocab_size = json.loads((tiny_checkpoint / "config.json").read_text())["vocab_size"]
    directory = tmp_path_factory.mktemp("latin_tokenizer")
    train_tokenizer(texts, vocab_size=vocab_size).save_pretrained(directory)
    return directory


def score(root: Path, lang: str, tasks, out: Path) -> pd.DataFrame:
    probes = [str(root / f"probes/{task}/{lang}.npz") for task in tasks]
    argv = ["score-probe", "--probes", *probes, "--activations", str(root / f"act/{lang}")]
    argv += ["--treebank", str(root / f"treebanks/{lang}.json.gz"), "--model", "m", "--step", "5"]
    argv += [*STATS, "--out", str(out), "--items", str(out.with_suffix(".items.npz"))]
    assert cli(argv) == 0
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_checkpoint, latin_tokenizer) -> Path:
    """English read by the tiny model's own tokenizer, Korean by one that never saw Hangul:
    caches, pos and arc probes (one train-probe job) and their scores (one score-probe job)."""
    import torch

    root = tmp_path_factory.mktemp("coverage")
    sources = {
        "en": (REPO / "resources/ud/UD_English-EWT", []),
        "ko": (KOREAN, ["--tokenizer", str(latin_tokenizer)]),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for lang, (treebank, tokenizer) in sources.items():
        path = root / f"treebanks/{lang}.json.gz"
        path.parent.mkdir(exist_ok=True)
        save_prepared(path, prepare(treebank, CAPS, seed=13), lang, str(treebank))
        cache = root / f"act/{lang}"
        argv = ["extract-activations", "--checkpoint", str(tiny_checkpoint), *tokenizer]
        argv += ["--treebank", str(path), "--pooling", "mean", "--batch-tokens", "1024"]
        assert cli([*argv, "--out", str(cache)]) == 0
        argv = ["train-probe", "--tasks", "pos", "arc", "--activations", str(cache)]
        argv += ["--treebank", str(path), "--seeds", "1", "--l2", *GRID, "--max-iter", "30"]
        argv += ["--backend", "torch", "--device", "cpu", *STATS, "--out"]
        assert cli(argv + [str(root / f"probes/{task}/{lang}.npz") for task in ("pos", "arc")]) == 0
        (root / "scores").mkdir(exist_ok=True)
        score(root, lang, ["pos", "arc"], root / f"scores/{lang}.parquet")
    torch.set_num_threads(threads)
    return root


# ---------------------------------------------------------------- the tokenizer's coverage


def test_a_script_the_tokenizer_never_saw_is_unknown_and_the_bundled_languages_are_known(
    workspace, latin_tokenizer
):
    from transformers import AutoTokenizer

    latin = AutoTokenizer.from_pretrained(latin_tokenizer)
    shares = {}
    for lang in ("en", "ko"):
        splits = load_prepared(workspace / f"treebanks/{lang}.json.gz")
        for split in ("train", "dev", "test"):
            index = store.load_index(workspace / f"act/{lang}/{split}")
            assert index.has_coverage
            shares[lang, split] = index.unk_shares()
            if lang != "ko":
                continue
            sentences = [s.words for s in splits[split]]
            words = [word for sentence in sentences for word in sentence]
            # word by word: every word of the script is unknown (share 1), the rest are digits,
            # punctuation, Latin
            pieces = latin([[w] for w in words], is_split_into_words=True, add_special_tokens=False)
            unknown = np.array([latin.unk_token_id in ids for ids in pieces["input_ids"]])
            hangul = np.array([bool(HANGUL.search(word)) for word in words])
            assert unknown[hangul].all() and hangul.mean() > 0.8
            sentence_of = np.repeat(np.arange(len(sentences)), index.word_counts)
            np.testing.assert_array_equal(
                index.unk_word_counts, np.bincount(sentence_of, unknown, len(sentences))
            )
            # the subwords are the tokenizer's own
            ids = latin(sentences, is_split_into_words=True, add_special_tokens=False)["input_ids"]
            assert index.subword_counts.tolist() == [len(sentence) for sentence in ids]
            assert (index.unk_subword_counts >= index.unk_word_counts).all()
    for split in ("train", "dev", "test"):
        assert shares["ko", split][0] > 0.8 and shares["ko", split][1] > 0.35  # "▁" + <unk>
        assert max(shares["en", split]) < 0.01


def test_score_probe_reports_the_coverage_once_per_job_with_its_interval(workspace, tmp_path):
    frames = {lang: pd.read_parquet(workspace / f"scores/{lang}.parquet") for lang in ("en", "ko")}
    for lang, frame in frames.items():
        assert list(frame.columns) == list(tables.COLUMNS)
        rows = frame[frame.task == "tokenizer"].set_index(["split", "metric"]).sort_index()
        assert len(rows) == 3 * 2  # train, dev, test x words, subwords: once, with pos and arc
        assert (rows.layer == tables.BASELINE_LAYER).all() and (rows.seed == 0).all()
        assert (rows.train_lang == lang).all() and (rows.test_lang == lang).all()
        assert (rows.ci_low <= rows.value).all() and (rows.value <= rows.ci_high).all()
        for split in ("train", "dev", "test"):
            index = store.load_index(workspace / f"act/{lang}/{split}")
            words, subwords = (
                rows.loc[(split, "unk_word_share")],
                rows.loc[(split, "unk_subword_share")],
            )
            assert (words.value, subwords.value) == index.unk_shares()
            assert (words.n, subwords.n) == (index.n_words, index.subword_counts.sum())
            # the interval: a bootstrap of the split's sentences (the split's own resamples), as
            # the interval of a (1, words) matrix of 0/1 per word
            pairs = zip(index.word_counts, index.unk_word_counts, strict=True)
            flags = np.concatenate([np.arange(n) < k for n, k in pairs])
            sentences = len(index.word_counts)
            units = Units(np.repeat(np.arange(sentences), index.word_counts), sentences)
            weights = BOOTSTRAP.weights(units.n_units, lang, split, "here")
            [row] = interval_rows({}, [-1], flags[None], units, weights, BOOTSTRAP, "x")
            assert (words.ci_low, words.ci_high) == pytest.approx((row["ci_low"], row["ci_high"]))
        if lang == "ko":
            test = rows.loc[("test", "unk_word_share")]
            assert test.value > 0.85 and test.ci_high - test.ci_low > 0.01
    # one row per key across languages
    table = tables.collect([str(workspace / f"scores/{lang}.parquet") for lang in frames])
    assert len(table) == sum(len(frame) for frame in frames.values())
    # the pos probes' job carries them, the arc probes' alone does not
    assert not (score(workspace, "ko", ["arc"], tmp_path / "arc.parquet").task == "tokenizer").any()
    pos = score(workspace, "ko", ["pos"], tmp_path / "pos.parquet")
    pd.testing.assert_frame_equal(
        pos[pos.task == "tokenizer"].reset_index(drop=True),
        frames["ko"][frames["ko"].task == "tokenizer"].reset_index(drop=True),
    )


def test_an_index_without_the_coverage_reads_as_unknown_not_zero(tmp_path):
    counts = np.array([2, 3], dtype=np.int64)
    old = {"offsets": np.array([0, 2, 5]), "word_counts": counts, "truncated": np.zeros(2)}
    np.savez(store.index_file(tmp_path), **old)
    index = store.load_index(tmp_path)
    assert not index.has_coverage and index.unk_shares() is None
    assert index.subword_counts is index.unk_word_counts is index.unk_subword_counts is None
    store.SplitIndex(*old.values(), counts + 1, np.array([0, 3]), np.array([0, 4])).save(tmp_path)
    index = store.load_index(tmp_path)
    assert index.has_coverage and index.unk_shares() == (3 / 5, 4 / 7)


# ---------------------------------------------------------------- the L2 choice's stability


def test_score_probe_reports_the_l2_choice_of_each_layer_on_dev(workspace, tmp_path):
    frame = pd.read_parquet(workspace / "scores/en.parquet")
    dev_items = frame[(frame.metric == "accuracy") & (frame.split == "dev")].groupby("task").n.max()
    for task in ("pos", "arc"):
        rows = frame[(frame.task == task) & frame.metric.isin(CHOICE)]
        assert set(rows.split) == {"dev"} and set(rows.seed) == {0}
        assert set(rows.train_lang) == set(rows.test_lang) == {"en"}
        assert rows.ci_low.isna().all() and rows.ci_high.isna().all()
        assert (rows.n == dev_items[task]).all()
        values = rows.pivot(index="layer", columns="metric", values="value")
        with np.load(workspace / f"probes/{task}/en.npz") as z:
            assert values.index.tolist() == z["layers"].tolist()
            np.testing.assert_array_equal(values["l2"], z["l2"][0])
            np.testing.assert_array_equal(values["l2_stability"], z["l2_stability"])
            old = {key: z[key] for key in z.files if key != "l2_stability"}
        assert ((values.l2_stability > 0) & (values.l2_stability <= 1)).all()
        assert (values.l2_on_grid_edge == 1.0).all()  # a grid of two: both values are edges
        (tmp_path / f"probes/{task}").mkdir(parents=True)
        np.savez(tmp_path / f"probes/{task}/en.npz", **old)
    # probe files from before the stability was stored score as before, without those rows
    for name in ("act", "treebanks"):
        (tmp_path / name).symlink_to(workspace / name)
    scored = score(tmp_path, "en", ["pos", "arc"], tmp_path / "old.parquet")
    pd.testing.assert_frame_equal(scored, frame[~frame.metric.isin(CHOICE)].reset_index(drop=True))


def by_hand(correct, units, grid, weights) -> np.ndarray:
    """(resamples, layers): the grid index fit_l2_grid's rule chooses on each resample, from
    dev accuracies (highest first, ties to the larger value)."""
    n_units = weights.shape[1]
    items = weights @ np.bincount(units, minlength=n_units)
    choices = []
    for w, total in zip(weights, items, strict=True):
        accuracy = np.stack([w @ stats.unit_sums(c.T, units, n_units) / total for c in correct])
        by_l2 = np.argsort(grid, kind="stable")[::-1]
        choices.append(by_l2[np.argmax(accuracy[by_l2], axis=0)])
    return np.array(choices)


def test_a_clear_winner_is_stable_and_a_near_tie_is_not():
    n, per = 60, 5  # dev sentences, items each
    units = np.repeat(np.arange(n), per)
    grid = (0.01, 0.0001)  # not sorted: the rule reads values, not positions
    rng = np.random.default_rng(0)
    correct = np.zeros((2, 3, n * per), dtype=bool)  # (values, layers, items)
    # layer 0: 0.0001 right everywhere, 0.01 wrong once in each of 40 sentences: a clear winner
    correct[1, 0] = True
    correct[0, 0] = True
    correct[0, 0, np.arange(40) * per] = False
    # layer 1: the same items right: a tie every time, to the larger value
    correct[:, 1] = rng.random(n * per) < 0.7
    # layer 2: 0.0001 right on one more item in 11 sentences, 0.01 in 10 others: 0.0001 wins by
    # one item on the whole dev split, and on about half the resamples
    correct[:, 2] = rng.random(n * per) < 0.7
    correct[1, 2, np.arange(0, 11) * per] = True
    correct[0, 2, np.arange(0, 11) * per] = False
    correct[0, 2, np.arange(11, 21) * per] = True
    correct[1, 2, np.arange(11, 21) * per] = False
    accuracy = correct.mean(axis=2)
    chosen = np.array([0.0001, 0.01, 0.0001])
    assert accuracy[1, 2] - accuracy[0, 2] == pytest.approx(1 / (n * per))
    search = L2Search(None, chosen, accuracy, grid, correct)
    weights = BOOTSTRAP.weights(n, "xx", "dev", "here")
    stability = l2_stability(search, Units(units, n), weights)
    assert stability[0] == stability[1] == 1.0
    assert 0.2 < stability[2] < 0.7
    expected = by_hand(correct, units, grid, weights) == [grid.index(v) for v in chosen]
    np.testing.assert_allclose(stability, expected.mean(axis=0))
    # the whole dev split as its only "resample" chooses what was chosen
    np.testing.assert_array_equal(l2_stability(search, Units(units, n), np.ones((1, n))), 1.0)
