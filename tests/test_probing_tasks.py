"""Features and labels of the UD probing tasks, built from a small activation cache."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics import treebanks
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
    # one owner: the treebank validation accepts exactly the labels the ids index
    assert registry.UPOS is treebanks.UPOS and treebanks.UPOS_TAGS == set(registry.UPOS)
    assert registry.DEPRELS is treebanks.DEPRELS and treebanks.UD_RELATIONS == set(registry.DEPRELS)


def test_shapes_per_training_word():
    # (items, features in units of the hidden size, probe outputs)
    assert registry.shape("pos") == (1, 1, 17)
    assert registry.shape("arc") == (2, 3, 1)
    assert registry.shape("deprel") == (1, 3, 37)
    assert registry.shape("morph-Number") == (1, 1, 11)
    assert registry.shape("morph-Case") == (1, 1, 37)
    assert registry.shape("morph-Polarity") == (1, 1, 1)  # two values: one logit
    assert registry.shape(registry.TASKS["pos"]) == registry.TASKS["pos"].shape
    with pytest.raises(InputError, match="unknown probing task 'tree'"):
        registry.shape("tree")


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


# ---------------------------------------------------------------- the registry


def test_the_registry_lists_pos_arc_deprel_then_one_task_per_feature():
    assert list(registry.TASKS)[:3] == ["pos", "arc", "deprel"]
    morph = list(registry.TASKS)[3:]
    assert morph == [f"morph-{feature}" for feature in registry.FEATURES]
    assert {"morph-Number", "morph-Case", "morph-Gender", "morph-Tense", "morph-VerbForm"} <= set(
        morph
    )
    for feature, values in registry.FEATURES.items():
        task = registry.TASKS[f"morph-{feature}"]
        assert task.labels == values and len(set(values)) == len(values) >= 2
        assert task.features == "word" and task.optional and task.transferable
    assert registry.FEATURES["Number"] == (
        "Sing", "Plur", "Dual", "Ptan", "Coll", "Count", "Grpa", "Grpl", "Inv", "Pauc", "Tri",
    )  # fmt: skip
    assert len(registry.FEATURES["Case"]) == 37
    assert [n for n, t in registry.TASKS.items() if t.has_control] == ["pos", "deprel"]
    assert [n for n, t in registry.TASKS.items() if t.mdl] == ["pos"]
    assert [n for n, t in registry.TASKS.items() if t.seeded] == ["arc"]
    assert [n for n, t in registry.TASKS.items() if t.features == "pair"] == ["arc", "deprel"]
    assert not any(registry.TASKS[n].optional for n in ("pos", "arc", "deprel"))
    assert registry.LABELS == {name: task.labels for name, task in registry.TASKS.items()}
    with pytest.raises(InputError, match=r"unknown probing task 'morph-Nmber' \(one of pos, arc"):
        registry.get("morph-Nmber")


# Two three-word sentences: with three words each arc negative is the one word left, so every
# task's items are known exactly. "Der" has two Case values (ambiguous), "läuft" a
# language-specific Aspect value; Number[psor] is another feature than Number.
HAND = [
    Sentence("h1", ("She", "sees", "dogs"), ("PRON", "VERB", "NOUN"), (2, 0, 2),
             ("nsubj", "root", "obj"),
             ("Case=Nom|Gender=Fem|Number=Sing|Person=3|PronType=Prs",
              "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin", "Number=Plur")),
    Sentence("h2", ("Der", "Hund", "läuft"), ("DET", "NOUN", "VERB"), (2, 3, 0),
             ("det", "nsubj", "root"),
             ("Case=Gen,Nom|Definite=Def|Gender=Masc|Number=Sing|PronType=Art",
              "Case=Nom|Gender=Masc|Number=Sing|Number[psor]=Plur",
              "Aspect=Dur|Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin")),
]  # fmt: skip
# task: (item words, heads or None, labels, excluded); every other morph task has no items
EXPECTED = {
    "pos": ([0, 1, 2, 3, 4, 5], None, ["PRON", "VERB", "NOUN", "DET", "NOUN", "VERB"], {}),
    "arc": ([0, 0, 2, 2, 3, 3, 4, 4], [1, 2, 1, 0, 4, 5, 5, 3],
            ["arc", "no-arc"] * 4, {}),
    "deprel": ([0, 2, 3, 4], [1, 1, 4, 5], ["nsubj", "obj", "det", "nsubj"], {}),
    "morph-Number": ([0, 1, 2, 3, 4, 5], None, ["Sing", "Sing", "Plur", "Sing", "Sing", "Sing"],
                     {"ambiguous": 0, "other_value": 0}),
    "morph-Case": ([0, 4], None, ["Nom", "Nom"], {"ambiguous": 1, "other_value": 0}),
    "morph-Gender": ([0, 3, 4], None, ["Fem", "Masc", "Masc"], {"ambiguous": 0, "other_value": 0}),
    "morph-Person": ([0, 1, 5], None, ["3", "3", "3"], {"ambiguous": 0, "other_value": 0}),
    "morph-PronType": ([0, 3], None, ["Prs", "Art"], {"ambiguous": 0, "other_value": 0}),
    "morph-Definite": ([3], None, ["Def"], {"ambiguous": 0, "other_value": 0}),
    "morph-Mood": ([1, 5], None, ["Ind", "Ind"], {"ambiguous": 0, "other_value": 0}),
    "morph-Tense": ([1, 5], None, ["Pres", "Pres"], {"ambiguous": 0, "other_value": 0}),
    "morph-VerbForm": ([1, 5], None, ["Fin", "Fin"], {"ambiguous": 0, "other_value": 0}),
    "morph-Aspect": ([], None, [], {"ambiguous": 0, "other_value": 1}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(registry.TASKS))
def test_every_task_builds_its_items_and_features_on_hand_written_sentences(name, tmp_path):
    task = registry.TASKS[name]
    words, heads, labels, excluded = EXPECTED.get(
        name, ([], None, [], {"ambiguous": 0, "other_value": 0})
    )
    items = task.items(HAND, registry.word_offsets(HAND), 0, "tb.json.gz")
    assert items.words.tolist() == words
    assert (items.heads is None) == (heads is None)
    if heads is not None:
        assert items.heads.tolist() == heads
    assert [task.labels[i] for i in items.labels] == labels
    assert items.words.dtype == items.labels.dtype == np.int64
    assert items.excluded == excluded
    write_cache(tmp_path, HAND)
    if not words:
        with pytest.raises(InputError, match=rf"tb\.json\.gz: the split has no {task.item_noun}"):
            registry.build(task, HAND, tmp_path, "tb.json.gz")
        return
    data = registry.build(name, HAND, tmp_path, "tb.json.gz")
    H = store.load_layers(tmp_path, [0, 1, 2])
    if heads is None:
        np.testing.assert_array_equal(data.X, H[:, words])
    else:
        np.testing.assert_array_equal(data.X, registry.pair_features(H, items.words, items.heads))
    assert data.units.tolist() == [0 if w < 3 else 1 for w in words]
    assert data.n_units == 2


def test_morph_items_leave_out_ambiguous_and_language_specific_values_and_count_them():
    feats = [
        "Case=Acc,Dat", "Case=Nom", "Case=Obl", "Case=Acc", "Case=Dat,Gen|Number=Sing", "_",
        "Number=Sing", "Case=Ben", "Case=Nom|Case[psor]=Gen", "Case=Xyz",
    ]  # fmt: skip
    sentence = Sentence("m", tuple(f"w{i}" for i in range(10)), ("NOUN",) * 10,
                        (0,) + (1,) * 9, ("root",) + ("dep",) * 9, tuple(feats))  # fmt: skip
    items = registry.split_items("morph-Case", [sentence, sentence])
    assert items.words.tolist() == [1, 3, 7, 8, 11, 13, 17, 18]
    assert [registry.FEATURES["Case"][i] for i in items.labels[:4]] == ["Nom", "Acc", "Ben", "Nom"]
    assert items.excluded == {"ambiguous": 4, "other_value": 4}  # Obl and Xyz are not universal


def test_malformed_and_missing_feats_are_refused_naming_the_sentence():
    bad = Sentence("b1", ("a", "b"), ("X", "X"), (0, 1), ("root", "dep"), ("_", "Number"))
    with pytest.raises(InputError, match=r"tb: sentence b1: word 2: FEATS 'Number': 'Number' is"):
        registry.split_items("morph-Number", [bad], 0, "tb")
    twice = Sentence("b2", ("a",), ("X",), (0,), ("root",), ("Number=Sing|Number=Plur",))
    with pytest.raises(InputError, match="feature Number is given twice"):
        registry.split_items("morph-Case", [twice], 0, "tb")
    old = Sentence("b3", ("a",), ("X",), (0,), ("root",))  # a treebank prepared without FEATS
    with pytest.raises(InputError, match=r"tb: sentence b3 has no FEATS .*prepare it again"):
        registry.split_items("morph-Case", [old], 0, "tb")
    assert registry.split_items("pos", [old]).labels.tolist() == [registry.UPOS.index("X")]


def test_feats_are_kept_verbatim_from_conllu_to_the_prepared_file(tmp_path):
    from mlm_dynamics.treebanks import load_prepared, read_conllu, save_prepared

    lines = [
        "# sent_id = f1",
        "1-2\tzum\t_\t_\t_\t_\t_\t_\t_\t_",
        "1\tzu\tzu\tADP\t_\t_\t3\tcase\t_\t_",
        "2\tdem\tder\tDET\t_\tCase=Dat|Definite=Def|Gender=Masc|Number=Sing|PronType=Art\t3"
        "\tdet\t_\t_",
        "3\tHaus\tHaus\tNOUN\t_\tCase=Dat|Gender=Neut|Number=Sing\t0\troot\t_\t_",
    ]
    path = tmp_path / "xx-ud-train.conllu"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    (sentence,) = read_conllu(path, "train")
    assert sentence.feats == (
        "_", "Case=Dat|Definite=Def|Gender=Masc|Number=Sing|PronType=Art",
        "Case=Dat|Gender=Neut|Number=Sing",
    )  # fmt: skip
    save_prepared(tmp_path / "xx.json.gz", {"train": [sentence]}, "xx", "tb")
    assert load_prepared(tmp_path / "xx.json.gz")["train"] == [sentence]
    assert "feats" not in Sentence("s", ("a",), ("X",), (0,), ("root",)).to_json()
    items = registry.split_items("morph-Gender", [sentence])
    assert items.words.tolist() == [1, 2] and items.labels.tolist() == [2, 3]  # Masc, Neut


def numbered(n_sentences: int, value: str = "Sing", feature: str = "Number") -> list[Sentence]:
    """Sentences of one word each carrying ``feature``: the first one ``Plur``, the rest
    ``value``."""
    return [
        Sentence(f"n{i}", ("w",), ("NOUN",), (0,), ("root",),
                 (f"{feature}={'Plur' if i == 0 else value}",))
        for i in range(n_sentences)
    ]  # fmt: skip


def test_a_language_lacks_a_feature_with_too_few_words_or_a_single_value():
    has = {"train": numbered(100), "dev": numbered(20), "test": numbered(20)}
    assert registry.absent_reason("morph-Number", has, "tb") is None
    assert registry.absent_reason("morph-Number", has, "tb", ("test",)) is None
    cases = [
        ({**has, "train": numbered(99)}, ("train", "dev"), "99 words with Number in train, "
         "fewer than 100"),
        ({**has, "train": numbered(100, "Plur")}, ("train", "dev"), "a single value in train "
         "(Plur)"),
        ({**has, "dev": numbered(19)}, ("train", "dev"), "19 words with Number in dev, fewer "
         "than 20"),
        ({**has, "test": []}, ("test",), "0 words with Number in test, fewer than 20"),
    ]  # fmt: skip
    for splits, names, reason in cases:
        assert registry.absent_reason("morph-Number", splits, "tb", names) == reason
    assert registry.absent_reason("morph-Case", has, "tb") == (
        "0 words with Case in train, fewer than 100"
    )
    assert registry.absent_reason("pos", {"train": [], "dev": []}, "tb") is None  # not optional


def test_the_config_check_names_unknown_tasks_and_controls():
    from mlm_dynamics.config_check import check_probing_tasks

    def check(tasks, controls=()):
        check_probing_tasks({"probing": {"tasks": list(tasks), "controls": list(controls)}})

    check(["pos", "arc", "deprel", "morph-Number", "morph-Case"], ["pos", "deprel"])
    with pytest.raises(InputError) as caught:
        check(["pos", "arc", "deprel", "morph-Nmber"])
    assert str(caught.value).startswith(
        "config: probing.tasks[3]: 'morph-Nmber' is not a probing task (known: pos, arc, deprel, "
        "morph-PronType, "
    )
    with pytest.raises(InputError, match=r"probing\.tasks\[1\]: 'pos' is given twice"):
        check(["pos", "pos"])
    with pytest.raises(
        InputError,
        match=r"probing\.controls\[1\]: 'morph-Number' has no control task "
        r"\(tasks with one: pos, deprel\)",
    ):
        check(["pos"], ["pos", "morph-Number"])


# ---------------------------------------------------------------- train-probe and score-probe

FORMS = {"Sing": ("dog", "cat", "runs"), "Plur": ("dogs", "cats", "run")}


def morph_sentences(n: int, seed: int, number: bool, case: bool) -> list[Sentence]:
    """'det noun verb det noun' sentences; with ``number`` nouns and verbs carry Number (by
    form), with ``case`` the subject noun Case=Nom and the object Case=Acc."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        values = rng.choice(["Sing", "Plur"], size=3)
        words = ("the", FORMS[values[0]][rng.integers(2)], FORMS[values[1]][2], "a",
                 FORMS[values[2]][rng.integers(2)])  # fmt: skip
        feats = ["Definite=Def", "", "", "Definite=Ind", ""]
        for position, value in zip((1, 2, 4), values, strict=True):
            if number:
                feats[position] = f"Number={value}"
        if case:
            feats[1] = "|".join(filter(None, ["Case=Nom", feats[1]]))
            feats[4] = "|".join(filter(None, ["Case=Acc", feats[4]]))
        out.append(
            Sentence(f"s{i}", words, ("DET", "NOUN", "VERB", "DET", "NOUN"), (2, 3, 0, 5, 3),
                     ("det", "nsubj", "root", "det", "obj"), tuple(f or "_" for f in feats))
        )  # fmt: skip
    return out


# aa has Number and Case; bb Number only; cc Case only
MORPH_LANGS = {"aa": (True, True), "bb": (True, False), "cc": (False, True)}
MORPH_TASKS = ("pos", "morph-Number", "morph-Case", "morph-Tense")
SIZES = {"train": 60, "dev": 32, "test": 32}
STATS = ["--resamples", "200", "--confidence", "0.95", "--bootstrap-seed", "0"]
STATS += ["--min-sentences", "30"]


def morph_treebank(root: Path, lang: str, number: bool, case: bool, language=None) -> None:
    splits = {
        split: morph_sentences(n, 10 * k + len(lang), number, case)
        for k, (split, n) in enumerate(SIZES.items())
    }
    write_treebank(root / f"treebanks/{language or lang}.json.gz", splits, language or lang)
    for split, sentences in splits.items():
        write_cache(root / f"act/{language or lang}/{split}", sentences, seed=len(split))


def train_probes(root: Path, lang: str, out: Path, tasks=MORPH_TASKS) -> None:
    from mlm_dynamics.probing import cli

    cli.main(
        "train-probe",
        ["--tasks", *tasks, "--activations", str(root / f"act/{lang}"), "--treebank"]
        + [str(root / f"treebanks/{lang}.json.gz"), "--l2", "0.001", "--max-iter", "30"]
        + ["--seeds", "1", "--backend", "torch", "--device", "cpu", *STATS]
        + ["--controls", "pos", "--out"]
        + [str(out / f"{task}/{lang}.npz") for task in tasks],
    )


def score_probes(root: Path, lang: str, probes, out: Path) -> None:
    from mlm_dynamics.probing import cli

    cli.main(
        "score-probe",
        ["--probes", *map(str, probes), "--activations", str(root / f"act/{lang}")]
        + ["--treebank", str(root / f"treebanks/{lang}.json.gz"), "--model", "m", "--step", "3"]
        + [*STATS, "--out", str(out), "--items", str(out).replace(".parquet", ".items.npz")],
    )


@pytest.fixture(scope="module")
def morph_workspace(tmp_path_factory):
    from mlm_dynamics.probing.probe import fitting_threads

    root = tmp_path_factory.mktemp("morph")
    for lang, (number, case) in MORPH_LANGS.items():
        morph_treebank(root, lang, number, case)
    with fitting_threads(1, sklearn=False):
        for lang in MORPH_LANGS:
            train_probes(root, lang, root / "probes")
        every = [root / f"probes/{t}/{lang}.npz" for t in MORPH_TASKS for lang in MORPH_LANGS]
        for lang in MORPH_LANGS:
            score_probes(root, lang, every, root / f"scores/{lang}.parquet")
    return root


def test_a_language_without_the_feature_gets_a_probe_file_marked_absent(morph_workspace):
    root = morph_workspace / "probes"
    with np.load(root / "morph-Case/bb.npz") as z:
        assert str(z["task"]) == "morph-Case" and str(z["language"]) == "bb"
        assert str(z["absent"]) == "0 words with Case in train, fewer than 100"
        assert "coef" not in z.files and z["labels"].tolist() == list(registry.FEATURES["Case"])
    with np.load(root / "morph-Tense/aa.npz") as z:
        assert str(z["absent"]) == "0 words with Tense in train, fewer than 100"
    with np.load(root / "morph-Number/aa.npz") as z:
        assert "absent" not in z.files
        assert z["n_train"].tolist() == [SIZES["train"] * 3]  # nouns and verbs
        assert z["classes"].tolist() == [0, 1]  # Sing, Plur
        assert int(z["excluded_ambiguous"]) == int(z["excluded_other_value"]) == 0
        assert z["coef"].shape == (1, 3, 8, 1)  # word features: hidden 8, two classes
    with np.load(root / "pos/aa.npz") as z:  # the existing tasks' files are as they were
        assert not {"absent", "excluded_ambiguous", "excluded_other_value"} & set(z.files)


def test_transfer_is_scored_only_between_languages_that_share_the_feature(morph_workspace):
    import pandas as pd

    from mlm_dynamics.analysis import tables

    scores = sorted(str(p) for p in (morph_workspace / "scores").glob("*.parquet"))
    table = tables.collect(scores)
    accuracy = table[table.metric == "accuracy"]

    def pairs(task, split):
        rows = accuracy[(accuracy.task == task) & (accuracy.split == split)]
        return sorted(set(zip(rows.train_lang, rows.test_lang, strict=True)))

    assert pairs("morph-Number", "test") == [("aa", "aa"), ("aa", "bb"), ("bb", "aa"), ("bb", "bb")]
    assert pairs("morph-Number", "dev") == [("aa", "aa"), ("bb", "bb")]
    assert pairs("morph-Case", "test") == [("aa", "aa"), ("aa", "cc"), ("cc", "aa"), ("cc", "cc")]
    assert pairs("morph-Case", "dev") == [("aa", "aa"), ("cc", "cc")]
    assert pairs("morph-Tense", "test") == []  # no language has it: no rows at all
    assert len(pairs("pos", "test")) == 9
    morph = table[table.task.str.startswith("morph-")]
    # no control task; the L2 choice's dev rows (a one-value grid: chosen always, on its edge never)
    choice = ["l2", "l2_stability", "l2_on_grid_edge"]
    assert set(morph.metric) == {"accuracy", "majority_accuracy", *choice}
    l2 = morph[morph.metric.isin(choice)].groupby("metric").value
    expected = {"l2": 0.001, "l2_stability": 1.0, "l2_on_grid_edge": 0.0}
    assert l2.min().to_dict() == l2.max().to_dict() == expected
    own = accuracy[(accuracy.task == "morph-Number") & (accuracy.train_lang == accuracy.test_lang)]
    assert (own[own.split == "test"].n == SIZES["test"] * 3).all()
    assert (own[own.layer == 0].value > 0.9).all()  # the form gives the number away
    # the transfer matrices of a feature: languages without it are empty rows and columns
    tables.transfer_matrices(table, "m", "morph-Case", [3], ["aa", "bb", "cc"], ["last"],
                             morph_workspace / "transfer", "table")  # fmt: skip
    matrix = pd.read_csv(morph_workspace / "transfer/3_last.csv", index_col="train_lang")
    assert matrix.loc["bb"].isna().all() and matrix["bb"].isna().all()
    assert matrix.loc[["aa", "cc"], ["aa", "cc"]].notna().all().all()


def test_pos_rows_do_not_change_when_morph_probes_are_scored_beside_them(morph_workspace, tmp_path):
    import pandas as pd

    probes = [morph_workspace / f"probes/pos/{lang}.npz" for lang in MORPH_LANGS]
    score_probes(morph_workspace, "aa", probes, tmp_path / "pos.parquet")
    alone = pd.read_parquet(tmp_path / "pos.parquet")
    both = pd.read_parquet(morph_workspace / "scores/aa.parquet")
    pd.testing.assert_frame_equal(both[both.task == "pos"].reset_index(drop=True), alone)


def test_a_probe_file_out_of_step_with_its_treebank_is_refused(morph_workspace, tmp_path):
    # a Case probe file of "aa" fitted on data without Case says aa lacks it; aa's treebank has it
    morph_treebank(tmp_path, "bb", True, False, language="aa")
    train_probes(tmp_path, "aa", tmp_path / "probes", ("morph-Case",))
    with pytest.raises(InputError, match=r"says aa lacks morph-Case, .* out of step"):
        score_probes(morph_workspace, "aa", [tmp_path / "probes/morph-Case/aa.npz"],
                     tmp_path / "s.parquet")  # fmt: skip


def test_a_task_that_is_not_transferable_is_scored_on_its_own_language_only(
    morph_workspace, tmp_path, monkeypatch
):
    import dataclasses

    own = dataclasses.replace(registry.TASKS["morph-Number"], transferable=False)
    monkeypatch.setitem(registry.TASKS, "morph-Number", own)
    probes = [morph_workspace / "probes/morph-Number/bb.npz"]
    score_probes(morph_workspace, "bb", probes, tmp_path / "own.parquet")
    with pytest.raises(InputError, match=r"a bb morph-Number probe cannot be scored on aa"):
        score_probes(morph_workspace, "aa", probes, tmp_path / "other.parquet")
