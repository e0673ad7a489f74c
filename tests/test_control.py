"""Control tasks: labels per word type, their distribution, determinism, the real task's order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import registry
from mlm_dynamics.probing.control import CONTROLLED, control_labels
from mlm_dynamics.stats import stable_seed
from mlm_dynamics.treebanks import Sentence, read_conllu

EWT = Path(__file__).resolve().parents[1] / "resources" / "ud" / "UD_English-EWT"


def sentence(words, upos, head, deprel, id="s"):
    return Sentence(
        id=id, words=tuple(words), upos=tuple(upos), head=tuple(head), deprel=tuple(deprel)
    )


def chain(words, upos, deprel, id="s"):
    """A sentence whose word i + 1 heads word i; the last word is the root."""
    n = len(words)
    heads = [i + 2 for i in range(n - 1)] + [0]
    return sentence(words, upos, heads, list(deprel[: n - 1]) + ["root"], id)


# reference, 20 words: NOUN 50%, VERB 20%, DET 20%, ADJ 10%; of its 18 non-root words, nsubj 10
# and obj 8 (the 2 roots are left out of the deprel distribution)
REFERENCE = [
    chain(
        ["a"] * 10,
        ["NOUN"] * 5 + ["VERB"] * 2 + ["DET"] * 2 + ["ADJ"],
        ["nsubj"] * 5 + ["obj"] * 4,
        id=f"ref{k}",
    )
    for k in range(2)
]
POS_P = {"NOUN": 0.5, "VERB": 0.2, "DET": 0.2, "ADJ": 0.1}
DEPREL_P = {"nsubj": 5 / 9, "obj": 4 / 9}


def reference_cdf(task, reference):
    inventory = registry.LABELS[task]
    if task == "pos":
        counts = Counter(tag for s in reference for tag in s.upos)
    else:
        counts = Counter(
            rel for s in reference for rel, head in zip(s.deprel, s.head, strict=True) if head
        )
    return np.cumsum([counts[label] for label in inventory]) / sum(counts.values())


def expected_labels(task, word_types, reference, language, seed):
    """The module docstring's definition, written out independently: inverse CDF at u."""
    cdf = reference_cdf(task, reference)
    keys = (f"{seed}:{language}:{task}:{word_type}" for word_type in word_types)
    return [int(np.argmax(cdf > stable_seed(key) / 2**64)) for key in keys]


def type_map(words, labels):
    """word type -> its one label; fails if a type got two."""
    mapping = {}
    for word, label in zip(words, labels, strict=True):
        assert mapping.setdefault(word.lower(), label) == label, word
    return mapping


def many_types(n_types, per_sentence=10):
    words = [f"w{i}" for i in range(n_types)]
    return [
        chain(chunk, ["X"] * len(chunk), ["dep"] * len(chunk), id=f"t{k}")
        for k, chunk in enumerate(
            words[i : i + per_sentence] for i in range(0, n_types, per_sentence)
        )
    ]


def test_reference_distribution_is_the_documented_one():
    counts = Counter(tag for s in REFERENCE for tag in s.upos)
    assert {tag: c / 20 for tag, c in counts.items()} == POS_P


@pytest.mark.parametrize("task", CONTROLLED)
def test_labels_are_constant_per_type_across_sentences_splits_and_case(task):
    train = [
        chain(["The", "dog", "saw", "the", "cat"], ["DET"] * 5, ["det"] * 5, id="a"),
        chain(["the", "cat", "THE", "Dog", "ran"], ["DET"] * 5, ["det"] * 5, id="b"),
    ]
    test = [chain(["dog", "The", "cat", "unseen", "the", "x"], ["X"] * 6, ["dep"] * 6, id="c")]
    words = {}
    for split in (train, test):
        labels = control_labels(task, split, REFERENCE, "en", 7)
        heads = [(w, h) for s in split for w, h in zip(s.words, s.head, strict=True)]
        items = [w for w, h in heads if task == "pos" or h != 0]
        for word, label in type_map(items, labels).items():
            assert words.setdefault(word, label) == label, word
    assert {"the", "dog", "cat", "unseen"} <= set(words)
    assert list(words.values()) == expected_labels(task, words, REFERENCE, "en", 7)


def test_marginal_distribution_matches_the_reference():
    n_types = 5000
    labels = control_labels("pos", many_types(n_types), REFERENCE, "en", 0)
    assert len(labels) == n_types
    observed = np.bincount(labels, minlength=len(registry.UPOS))
    p = np.zeros(len(registry.UPOS))
    for tag, prob in POS_P.items():
        p[registry.UPOS.index(tag)] = prob
    # labels absent from the reference never occur
    assert observed[p == 0].sum() == 0
    expected = p[p > 0] * n_types
    chi2 = (((observed[p > 0] - expected) ** 2) / expected).sum()
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001


def test_deprel_distribution_excludes_the_root():
    n_types = 2000
    labels = control_labels("deprel", many_types(n_types), REFERENCE, "en", 0)
    # 10 words a sentence, the last is the root: 9 items per sentence
    assert len(labels) == n_types * 9 // 10
    nsubj, obj = registry.DEPRELS.index("nsubj"), registry.DEPRELS.index("obj")
    assert set(labels.tolist()) == {nsubj, obj}  # "root" (2 of 20 words) is never drawn
    share = np.mean(labels == nsubj)
    assert abs(share - DEPREL_P["nsubj"]) < 3 * np.sqrt(5 / 9 * 4 / 9 / len(labels))


def test_deterministic_and_seed_and_language_change_the_assignment():
    sentences = many_types(3000)
    base = control_labels("pos", sentences, REFERENCE, "en", 0)
    np.testing.assert_array_equal(base, control_labels("pos", sentences, REFERENCE, "en", 0))
    # two independent draws agree with probability sum p^2 = 0.34 per type
    agreement = sum(p * p for p in POS_P.values())
    for other in (
        control_labels("pos", sentences, REFERENCE, "en", 1),
        control_labels("pos", sentences, REFERENCE, "de", 0),
    ):
        assert abs(np.mean(base == other) - agreement) < 0.03


def test_errors():
    with pytest.raises(InputError, match="no control task for 'arc'"):
        control_labels("arc", REFERENCE, REFERENCE, "en", 0)
    with pytest.raises(InputError, match="no deprel labels"):
        control_labels("deprel", REFERENCE, [chain(["a"], ["X"], [])], "en", 0)
    with pytest.raises(InputError, match="no pos labels"):
        control_labels("pos", REFERENCE, [], "en", 0)
    bad = [chain(["a", "b"], ["NOUN", "FOO"], ["nsubj"], id="bad1")]
    with pytest.raises(InputError, match="sentence bad1: UPOS tag 'FOO'"):
        control_labels("pos", REFERENCE, bad, "en", 0)


@pytest.fixture(scope="module")
def ewt():
    return (
        read_conllu(next(EWT.glob("*-ud-train.conllu.gz")), "train"),
        read_conllu(next(EWT.glob("*-ud-test.conllu.gz")), "test"),
    )


def test_pos_items_follow_the_real_task(ewt):
    train, test = ewt
    labels = control_labels("pos", test, train, "en", 3)
    words = [w for s in test for w in s.words]
    assert labels.dtype == np.int64
    assert len(labels) == len(words) == sum(len(s.upos) for s in test)
    expected = expected_labels("pos", [w.lower() for w in words], train, "en", 3)
    np.testing.assert_array_equal(labels, expected)


def test_deprel_items_follow_deprel_pairs(ewt):
    train, test = ewt
    offsets = np.cumsum([0] + [len(s.words) for s in test])[:-1]
    dependents, _, real = registry.deprel_pairs(test, offsets, "test")
    labels = control_labels("deprel", test, train, "en", 3)
    assert labels.dtype == np.int64
    assert len(labels) == len(real)
    words = [w for s in test for w in s.words]
    expected = expected_labels("deprel", [words[d].lower() for d in dependents], train, "en", 3)
    np.testing.assert_array_equal(labels, expected)
    # a control task, not the real one: far from the gold relations
    assert np.mean(labels == real) < 0.3


def test_the_tasks_with_a_control_task_come_from_the_registry():
    assert CONTROLLED == ("pos", "deprel")
    assert CONTROLLED == tuple(n for n, t in registry.TASKS.items() if t.has_control)
    with pytest.raises(InputError, match=r"no control task for 'morph-Number' \(one of pos, "):
        control_labels("morph-Number", REFERENCE, REFERENCE, "en", 0)


def test_any_task_given_a_control_task_draws_it_over_its_own_items():
    """A control task is one field of a task's registration: the items, their order and the
    reference distribution are the task's own (here morph-Number's words that carry Number)."""
    import dataclasses

    task = dataclasses.replace(registry.TASKS["morph-Number"], has_control=True)
    feats = ("Number=Sing", "_", "Number=Plur", "Number=Sing,Plur", "Number=Plur")
    reference = [sentence(["The", "a", "b", "c", "the"], ["X"] * 5, [2, 0, 2, 2, 2],
                          ["dep", "root", "dep", "dep", "dep"])]  # fmt: skip
    reference = [dataclasses.replace(reference[0], feats=feats)]
    labels = control_labels(task, reference, reference, "en", 0)
    assert len(labels) == 3  # The, b, the: "_" and the ambiguous word are no items
    assert labels[0] == labels[2]  # one type, one label
    assert set(labels.tolist()) <= {0, 1}  # Sing and Plur: the reference's values only
