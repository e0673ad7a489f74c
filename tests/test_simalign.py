"""SimAlign: argmax and itermax on hand-made similarities, scores against hand-computed values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlm_dynamics import simalign
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis import COLUMNS
from mlm_dynamics.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "simalign"

# Row argmax: 0->0, 1->2, 2->1; column argmax: 0->0, 1->0, 2->2. Only 0-0 is mutual.
SIM = np.array(
    [
        [0.9, 0.8, 0.1],
        [0.2, 0.3, 0.4],
        [0.1, 0.7, 0.6],
    ]
)


def test_argmax_keeps_mutual_best_pairs_only():
    assert simalign.link_set(simalign.argmax_alignment(SIM)) == {(0, 0)}


def test_itermax_adds_pairs_with_an_unaligned_word():
    # Round 2: pairs with one aligned word are weighted 0.9, both-aligned pairs excluded:
    #   [[0, .72, .09], [.18, .3, .4], [.09, .7, .6]] -> mutual argmax 0-1 (source 0 already
    # aligned, target 1 not: allowed). 1-2 is not mutual (target 2 prefers source 2: .6 > .4).
    assert simalign.link_set(simalign.itermax_alignment(SIM)) == {(0, 0), (0, 1)}
    # Round 3: [[0, 0, .09], [.18, .27, .4], [.09, .63, .6]] -> 2-1 is mutual; 1-2 is not
    # (target 2 still prefers source 2: .6 > .4).
    three = simalign.itermax_alignment(SIM, max_iterations=3)
    assert simalign.link_set(three) == {(0, 0), (0, 1), (2, 1)}
    # Round 4: [[0, 0, .09], [.18, .27, .4], [0, 0, .54]] -> 2-2; then every target is aligned.
    assert simalign.link_set(simalign.itermax_alignment(SIM, max_iterations=10)) == {
        (0, 0), (0, 1), (2, 1), (2, 2),
    }  # fmt: skip


def test_itermax_leaves_short_sentences_and_full_alignments_alone():
    short = np.array([[0.9, 0.8, 0.7], [0.95, 0.1, 0.2]])  # two source words
    assert (simalign.itermax_alignment(short) == simalign.argmax_alignment(short)).all()
    diagonal = np.eye(4) * 0.5 + 0.25  # argmax aligns everything already
    links = simalign.itermax_alignment(diagonal)
    assert simalign.link_set(links) == {(i, i) for i in range(4)}


def test_similarity_is_cosine_mapped_to_unit_interval():
    source = np.array([[1.0, 0.0], [0.0, 2.0]])
    target = np.array([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    expected = (np.array([[1, -1, 2**-0.5], [0, 0, 2**-0.5]]) + 1) / 2
    np.testing.assert_allclose(simalign.similarity(source, target), expected)


def test_scores_match_hand_computation():
    gold = [simalign.Gold(sure={(0, 0), (1, 1)}, possible={(0, 0), (1, 1), (2, 2)})]
    predicted = [{(0, 0), (2, 2), (1, 2)}]
    # |A| = 3, |S| = 2, |A & S| = 1, |A & P| = 2
    scores = simalign.alignment_scores(predicted, gold)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["aer"] == pytest.approx(1 - 3 / 5)
    # Corpus-level: counts add up over sentences before dividing.
    two = simalign.alignment_scores(
        predicted + [{(0, 0)}], gold + [simalign.Gold({(0, 0)}, {(0, 0)})]
    )
    assert two["precision"] == pytest.approx(3 / 4)
    assert two["aer"] == pytest.approx(1 - (2 + 3) / (4 + 3))


def test_gold_formats(tmp_path):
    path = tmp_path / "gold"
    path.write_text("0-0 1?1 2-1-p 2-2-s\n\n")
    gold = simalign.read_gold(path, [3, 1], [3, 1])
    assert gold[0].sure == {(0, 0), (2, 2)}
    assert gold[0].possible == {(0, 0), (1, 1), (2, 1), (2, 2)}
    assert gold[1] == simalign.Gold(set(), set())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0-0\n0-x\n", "gold:2: '0-x' is not"),
        ("0-0\n1-0\n", "gold:2: link 1-0 outside the sentences (1 x 1 words)"),
        ("0-0\n", "gold: 1 lines, but 2 sentence pairs"),
        ("0?0\n\n", "no sure links"),
    ],
)
def test_bad_gold_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "gold"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)):
        simalign.read_gold(path, [1, 1], [1, 1])


def test_fixture_gold_is_valid():
    source = simalign.read_sentences(FIXTURES / "en.txt")
    target = simalign.read_sentences(FIXTURES / "de.txt")
    gold = simalign.read_gold(
        FIXTURES / "en-de.gold", [len(s) for s in source], [len(t) for t in target]
    )
    assert len(gold) == len(source) == len(target) == 12
    # The final punctuation marks align in every sentence pair.
    assert all(
        (len(s) - 1, len(t) - 1) in g.sure for s, t, g in zip(source, target, gold, strict=True)
    )


def run_simalign(checkpoint, source, target, gold, out):
    argv = ["simalign", "--checkpoint", str(checkpoint), "--source", str(source)]
    argv += ["--target", str(target), "--gold", str(gold), "--methods", "argmax", "itermax"]
    argv += ["--language", "de", "--model", "tiny", "--step", "3", "--out", str(out)]
    return cli(argv)


def test_identical_sentences_align_perfectly(tiny_checkpoint, tmp_path):
    # The same sentence on both sides: every word's vector (any layer) is most similar to
    # itself, so both methods recover the diagonal and AER is 0 at every layer.
    source = FIXTURES / "en.txt"
    lengths = [len(s) for s in simalign.read_sentences(source)]
    gold = tmp_path / "en-en.gold"
    gold.write_text("".join(" ".join(f"{i}-{i}" for i in range(n)) + "\n" for n in lengths))
    assert run_simalign(tiny_checkpoint, source, source, gold, tmp_path / "out.parquet") == 0
    table = pd.read_parquet(tmp_path / "out.parquet")
    aer = table[table.metric == "aer"]
    assert len(aer) == 2 * 3  # two methods x three hidden states
    assert (aer.value == 0).all()


def test_command_on_fixture(tiny_checkpoint, tmp_path):
    out = tmp_path / "de.parquet"
    assert (
        run_simalign(
            tiny_checkpoint, FIXTURES / "en.txt", FIXTURES / "de.txt", FIXTURES / "en-de.gold", out
        )
        == 0
    )
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    assert set(table.task) == {"simalign-argmax", "simalign-itermax"}
    assert set(table.layer) == {0, 1, 2}
    assert set(table.metric) == {"precision", "recall", "f1", "aer"}
    assert (table.train_lang == "en").all() and (table.test_lang == "de").all()
    assert (table.n == 12).all() and (table.step == 3).all()
    scores = table.pivot_table(index=["task", "layer"], columns="metric", values="value")
    p, r = scores.precision, scores.recall
    np.testing.assert_allclose(scores.f1, 2 * p * r / (p + r))
    assert ((scores.aer >= 0) & (scores.aer <= 1)).all()
    # itermax only adds links: its recall is never below argmax's.
    recall = scores.recall.unstack("task")
    assert (recall["simalign-itermax"] >= recall["simalign-argmax"]).all()


def test_mismatched_lines_are_an_error(tiny_checkpoint, tmp_path, capsys):
    target = tmp_path / "de.txt"
    target.write_text("".join((FIXTURES / "de.txt").read_text().splitlines(keepends=True)[:5]))
    out = tmp_path / "out.parquet"
    assert (
        run_simalign(tiny_checkpoint, FIXTURES / "en.txt", target, FIXTURES / "en-de.gold", out)
        == 2
    )
    assert "5 lines" in capsys.readouterr().err
    assert not out.exists()
