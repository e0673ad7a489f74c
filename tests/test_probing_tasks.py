"""Features and labels of the UD probing tasks, built from a small activation cache."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics.activations import store
from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import registry
from mlm_dynamics.treebanks import Sentence

UPOS_OF = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sees": "VERB"}


def make_sentences(n: int, seed: int = 0) -> list[Sentence]:
    """Random 'det noun verb det noun' sentences with a gold tree: verb root, nouns on the verb."""
    rng = np.random.default_rng(seed)
    sentences = []
    for i in range(n):
        words = (
            rng.choice(["the", "a"]), rng.choice(["dog", "cat"]), rng.choice(["runs", "sees"]),
            rng.choice(["the", "a"]), rng.choice(["dog", "cat"]),
        )  # fmt: skip
        sentences.append(
            Sentence(
                id=f"s{i}",
                words=tuple(str(w) for w in words),
                upos=tuple(UPOS_OF[str(w)] for w in words),
                head=(2, 3, 0, 5, 3),
                deprel=("det", "nsubj", "root", "det", "obj"),
            )
        )
    return sentences


def write_cache(split_dir: Path, sentences, layers: int = 3, hidden: int = 8, seed: int = 0):
    """A float16 cache whose vectors are a per-word embedding plus layer-dependent noise."""
    split_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = [w for s in sentences for w in s.words]
    vectors = {
        w: np.random.default_rng(zlib.crc32(w.encode())).normal(size=hidden) for w in set(words)
    }
    base = np.stack([vectors[w] for w in words])
    for layer in range(layers):
        noisy = base + (0.2 + 0.5 * layer) * rng.normal(size=base.shape)
        np.save(store.layer_file(split_dir, layer), noisy.astype(np.float16))
    counts = np.array([len(s.words) for s in sentences])
    np.savez(
        store.index_file(split_dir),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        word_counts=counts,
        truncated=np.zeros(len(sentences), dtype=np.int64),
    )


def write_treebank(path: Path, splits: dict, language: str = "xx") -> Path:
    obj = {
        "language": language,
        "source": "test",
        "splits": {k: [s.to_json() for s in v] for k, v in splits.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(obj, f)
    return path


@pytest.fixture()
def cache(tmp_path):
    sentences = make_sentences(12)
    write_cache(tmp_path / "train", sentences)
    return sentences, tmp_path / "train"


def test_inventories_are_the_universal_ones():
    assert len(registry.UPOS) == 17 and len(set(registry.UPOS)) == 17
    assert len(registry.DEPRELS) == 37 and len(set(registry.DEPRELS)) == 37


def test_pos_rows_are_words_with_universal_ids(cache):
    sentences, split_dir = cache
    data = registry.build("pos", sentences, split_dir, "tb.json.gz")
    assert data.X.shape == (3, 60, 8)
    assert data.X.dtype == np.float32
    expected = [registry.UPOS.index(t) for s in sentences for t in s.upos]
    assert data.y.tolist() == expected


def test_arc_negatives_are_never_the_gold_head_nor_the_word_and_are_balanced():
    sentences = make_sentences(40, seed=3)
    offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sentences])])
    dependents, heads, labels = registry.arc_pairs(sentences, offsets, seed=5)
    sentence_of = np.searchsorted(offsets, dependents, side="right") - 1
    gold_head = {
        int(offsets[s]) + i: int(offsets[s]) + h - 1
        for s, sentence in enumerate(sentences)
        for i, h in enumerate(sentence.head)
        if h
    }
    assert (labels == 1).sum() == (labels == 0).sum() == 4 * len(sentences)
    for dep, head, label, s in zip(dependents, heads, labels, sentence_of, strict=True):
        assert offsets[s] <= head < offsets[s + 1]  # same sentence
        assert head != dep
        assert (head == gold_head[dep]) == (label == 1)
    # every non-gold word is drawn somewhere (the draw is not stuck on one position)
    negatives = heads[labels == 0] - offsets[sentence_of[labels == 0]]
    assert set(negatives.tolist()) == {0, 1, 2, 3, 4}


def test_arc_draw_is_seeded_per_sentence():
    sentences = make_sentences(10, seed=1)
    offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sentences])])
    first = registry.arc_pairs(sentences, offsets, seed=0)
    again = registry.arc_pairs(sentences, offsets, seed=0)
    other = registry.arc_pairs(sentences, offsets, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])
    # changing sentence 0 leaves the draw of sentence 1 alone
    changed = [sentences[0].__class__(**{**sentences[0].__dict__, "head": (3, 3, 0, 3, 3)})]
    changed += sentences[1:]
    redrawn = registry.arc_pairs(changed, offsets, seed=0)
    in_sentence_1 = (first[0] >= offsets[1]) & (first[0] < offsets[2])
    assert np.array_equal(first[1][in_sentence_1], redrawn[1][in_sentence_1])


def test_two_word_sentences_give_no_arc_pairs():
    two = Sentence("t", ("a", "dog"), ("DET", "NOUN"), (2, 0), ("det", "root"))
    dependents, _, labels = registry.arc_pairs([two], np.array([0, 2]), seed=0)
    assert len(dependents) == len(labels) == 0


def test_deprel_features_are_dep_head_and_product(cache):
    sentences, split_dir = cache
    data = registry.build("deprel", sentences, split_dir, "tb.json.gz")
    assert data.X.shape == (3, 4 * len(sentences), 3 * 8)
    H = store.load_layers(split_dir, [0, 1, 2])
    # first arc: word 0 ('the') -> its head, word 1
    np.testing.assert_array_equal(data.X[:, 0, :8], H[:, 0])
    np.testing.assert_array_equal(data.X[:, 0, 8:16], H[:, 1])
    np.testing.assert_allclose(data.X[:, 0, 16:], H[:, 0] * H[:, 1], rtol=1e-6)
    assert [registry.DEPRELS[i] for i in data.y[:4]] == ["det", "nsubj", "det", "obj"]


def test_arc_features_have_three_blocks(cache):
    sentences, split_dir = cache
    data = registry.build("arc", sentences, split_dir, "tb.json.gz", seed=2)
    assert data.X.shape == (3, 8 * len(sentences), 24)
    assert sorted(set(data.y.tolist())) == [0, 1]


def test_unknown_label_names_the_treebank(cache):
    sentences, split_dir = cache
    bad = [Sentence("odd", ("the",) * 5, ("DET", "NOUN", "VERB", "DET", "BOGUS"), (2, 3, 0, 5, 3),
                    ("det", "nsubj", "root", "det", "obj"))] + sentences[1:]  # fmt: skip
    with pytest.raises(InputError, match=r"tb\.json\.gz: sentence odd: UPOS tag 'BOGUS'"):
        registry.build("pos", bad, split_dir, "tb.json.gz")


def test_cache_out_of_step_with_treebank(cache):
    sentences, split_dir = cache
    with pytest.raises(InputError, match=r"index\.npz: 12 sentences, but tb\.json\.gz has 11"):
        registry.build("pos", sentences[:11], split_dir, "tb.json.gz")


def test_empty_split_names_the_file(cache):
    _, split_dir = cache
    with pytest.raises(InputError, match=r"tb\.json\.gz: the split has no sentences"):
        registry.build("pos", [], split_dir, "tb.json.gz")
