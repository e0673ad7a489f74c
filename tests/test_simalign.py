"""SimAlign: argmax, itermax and mwmf on hand-made similarities, subword against word alignment,
scores and their bootstrap intervals against hand-computed values, and the command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlm_dynamics import simalign, stats
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis.tables import COLUMNS
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "simalign"


def link_set(matrix: np.ndarray) -> set[tuple[int, int]]:
    """The links of a boolean (source, target) matrix."""
    return simalign.word_links(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]))


def corpus_scores(predicted, gold) -> dict[str, float]:
    """Corpus-level scores as the command computes them (one resample, every pair once)."""
    counts = simalign.link_counts(predicted, gold)
    scores = simalign.resampled_scores(np.ones((1, len(counts))), counts)
    return {metric: float(values[0]) for metric, values in scores.items()}


# Row argmax: 0->0, 1->2, 2->1; column argmax: 0->0, 1->0, 2->2. Only 0-0 is mutual.
SIM = np.array(
    [
        [0.9, 0.8, 0.1],
        [0.2, 0.3, 0.4],
        [0.1, 0.7, 0.6],
    ]
)


def test_argmax_keeps_mutual_best_pairs_only():
    assert link_set(simalign.argmax_alignment(SIM)) == {(0, 0)}


def test_itermax_adds_pairs_with_an_unaligned_word():
    # Round 2: pairs with one aligned word are weighted 0.9, both-aligned pairs excluded:
    #   [[0, .72, .09], [.18, .3, .4], [.09, .7, .6]] -> mutual argmax 0-1 (source 0 already
    # aligned, target 1 not: allowed). 1-2 is not mutual (target 2 prefers source 2: .6 > .4).
    assert link_set(simalign.itermax_alignment(SIM)) == {(0, 0), (0, 1)}
    # Round 3: [[0, 0, .09], [.18, .27, .4], [.09, .63, .6]] -> 2-1 is mutual; 1-2 is not
    # (target 2 still prefers source 2: .6 > .4).
    three = simalign.itermax_alignment(SIM, max_iterations=3)
    assert link_set(three) == {(0, 0), (0, 1), (2, 1)}
    # Round 4: [[0, 0, .09], [.18, .27, .4], [0, 0, .54]] -> 2-2; then every target is aligned.
    assert link_set(simalign.itermax_alignment(SIM, max_iterations=10)) == {
        (0, 0), (0, 1), (2, 1), (2, 2),
    }  # fmt: skip


def test_itermax_leaves_short_sentences_and_full_alignments_alone():
    short = np.array([[0.9, 0.8, 0.7], [0.95, 0.1, 0.2]])  # two source words
    assert (simalign.itermax_alignment(short) == simalign.argmax_alignment(short)).all()
    diagonal = np.eye(4) * 0.5 + 0.25  # argmax aligns everything already
    links = simalign.itermax_alignment(diagonal)
    assert link_set(links) == {(i, i) for i in range(4)}


def test_mwmf_is_the_maximum_weight_matching():
    # Perfect matchings of SIM: 0-0 1-1 2-2 = 1.8, 0-0 1-2 2-1 = 2.0, 0-1 1-0 2-2 = 1.6,
    # 0-1 1-2 2-0 = 1.3, 0-2 1-0 2-1 = 1.0, 0-2 1-1 2-0 = 0.5.
    assert link_set(simalign.mwmf_alignment(SIM)) == {(0, 0), (1, 2), (2, 1)}
    # Two source words: the best two-pair matching (0-1 1-0 = 1.65; 0-0 1-2 = 1.2, 0-0 1-1 = 1.1,
    # 0-1 1-2 = 1.1, 0-2 1-0 = 0.95, 0-2 1-1 = 0.3), where mutual argmax keeps only 0-0.
    wide = np.array([[0.9, 0.8, 0.1], [0.85, 0.2, 0.3]])
    assert link_set(simalign.mwmf_alignment(wide)) == {(0, 1), (1, 0)}
    assert link_set(simalign.argmax_alignment(wide)) == {(0, 0)}
    assert link_set(simalign.mwmf_alignment(wide.T)) == {(1, 0), (0, 1)}


def test_subword_alignment_links_words_through_any_subword():
    # Source words: w0 = subwords (e1, e2), w1 = (e3); target words: t0 = (e1), t1 = (e2, e3).
    e = np.eye(3)
    source = simalign.Units(e[None, [0, 1, 2]], np.array([0, 3]), np.array([0, 0, 1]))
    target = simalign.Units(e[None, [0, 1, 2]], np.array([0, 3]), np.array([0, 1, 1]))
    # Subwords: mutual argmax e1-e1, e2-e2, e3-e3 -> words 0-0, 0-1, 1-1.
    subword = simalign.predict_links(source, target, ["argmax"])["argmax"][0][0]
    assert subword == {(0, 0), (0, 1), (1, 1)}
    # Words (mean-pooled): w0 = (e1 + e2) / 2, w1 = e3, t0 = e1, t1 = (e2 + e3) / 2. Cosines:
    # w0.t0 = 1/sqrt 2, w0.t1 = 1/2, w1.t0 = 0, w1.t1 = 1/sqrt 2 -> mutual argmax 0-0 and 1-1.
    words = simalign.word_units(
        np.stack([(e[0] + e[1]) / 2, e[2], e[0], (e[1] + e[2]) / 2])[None], np.array([0, 2])
    )
    source_words = simalign.Units(words.vectors[:, :2], np.array([0, 2]), words.words[:2])
    target_words = simalign.Units(words.vectors[:, 2:], np.array([0, 2]), np.array([0, 1]))
    assert simalign.predict_links(source_words, target_words, ["argmax"])["argmax"][0][0] == {
        (0, 0), (1, 1),
    }  # fmt: skip
    # Against a gold 0-0 0-1 1-1 the subword links are perfect, the word links miss one.
    gold = [simalign.Gold({(0, 0), (0, 1), (1, 1)}, {(0, 0), (0, 1), (1, 1)})]
    assert corpus_scores([subword], gold)["recall"] == 1
    assert corpus_scores([{(0, 0), (1, 1)}], gold)["recall"] == pytest.approx(2 / 3)


def test_word_units_number_words_within_each_sentence():
    units = simalign.word_units(np.zeros((1, 5, 2)), np.array([0, 3, 5]))
    assert units.words.tolist() == [0, 1, 2, 0, 1]
    assert units.sentence(1) == slice(3, 5)


def test_subword_vectors_are_the_encoder_states(tiny_checkpoint):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mlm_dynamics.activations.extract import Encoder

    sentences = [["Ein", "Mädchen", "liest", "unverständliche", "Bücher", "."], ["Kids", "play"]]
    encoder = Encoder.from_checkpoint(tiny_checkpoint)
    units = simalign.subword_units(encoder, sentences, batch_tokens=64)
    words = simalign.encode_units(encoder, sentences, "word", pooling="mean", batch_tokens=64)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModel.from_pretrained(tiny_checkpoint).eval()
    for k, sentence in enumerate(sentences):
        encoding = tokenizer([sentence], is_split_into_words=True, return_tensors="pt")
        word_ids = encoding.word_ids(0)[1:-1]
        span = units.sentence(k)
        assert units.words[span].tolist() == word_ids
        with torch.no_grad():
            states = model(**encoding, output_hidden_states=True).hidden_states
        for layer, state in enumerate(states):
            expected = state[0, 1:-1].numpy()
            np.testing.assert_allclose(units.vectors[layer, span], expected, rtol=1e-4, atol=1e-5)
            # Word vectors are the means of their subwords.
            means = [expected[np.array(word_ids) == w].mean(0) for w in range(len(sentence))]
            np.testing.assert_allclose(
                words.vectors[layer, words.sentence(k)], means, rtol=1e-4, atol=1e-5
            )
    assert len(set(units.words[units.sentence(0)].tolist())) == 6  # every word has a subword
    assert len(units.words[units.sentence(0)]) > 6  # and some have more than one


def test_similarity_is_cosine_mapped_to_unit_interval():
    source = np.array([[1.0, 0.0], [0.0, 2.0]])
    target = np.array([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    expected = (np.array([[1, -1, 2**-0.5], [0, 0, 2**-0.5]]) + 1) / 2
    np.testing.assert_allclose(simalign.similarity(source, target), expected)


def test_scores_match_hand_computation():
    gold = [simalign.Gold(sure={(0, 0), (1, 1)}, possible={(0, 0), (1, 1), (2, 2)})]
    predicted = [{(0, 0), (2, 2), (1, 2)}]
    # |A| = 3, |S| = 2, |A & S| = 1, |A & P| = 2
    scores = corpus_scores(predicted, gold)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["aer"] == pytest.approx(1 - 3 / 5)
    # Corpus-level: counts add up over sentences before dividing.
    two = corpus_scores(predicted + [{(0, 0)}], gold + [simalign.Gold({(0, 0)}, {(0, 0)})])
    assert two["precision"] == pytest.approx(3 / 4)
    assert two["aer"] == pytest.approx(1 - (2 + 3) / (4 + 3))


BOOTSTRAP = stats.Bootstrap(resamples=500, confidence=0.95, seed=1, min_sentences=2)
# Per sentence pair |A|, |A & S|, |A & P|, |S|.
COUNTS = np.array(
    [[3, 2, 3, 3], [4, 1, 2, 4], [2, 2, 2, 2], [5, 3, 4, 4], [3, 0, 1, 3],
     [4, 4, 4, 5], [2, 1, 1, 3], [6, 3, 5, 6], [3, 2, 2, 2], [4, 2, 3, 5]],
    dtype=float,
)  # fmt: skip


def test_intervals_are_ratios_of_resampled_counts():
    weights = BOOTSTRAP.weights(len(COUNTS), "en-de", "test", "gold")
    result = simalign.score_intervals(COUNTS, weights, BOOTSTRAP)
    a, a_s, a_p, s = COUNTS.sum(axis=0)  # 36, 20, 27, 37
    assert result["precision"][0] == pytest.approx(a_p / a)
    assert result["recall"][0] == pytest.approx(a_s / s)
    assert result["f1"][0] == pytest.approx(2 * (a_p / a) * (a_s / s) / (a_p / a + a_s / s))
    assert result["aer"][0] == pytest.approx(1 - (a_s + a_p) / (a + s))
    sums = weights @ COUNTS
    precision = sums[:, 2] / sums[:, 0]
    recall = sums[:, 1] / sums[:, 3]
    expected = {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        "aer": 1 - (sums[:, 1] + sums[:, 2]) / (sums[:, 0] + sums[:, 3]),
    }
    for metric, samples in expected.items():
        value, low, high = result[metric]
        assert (low, high) == pytest.approx(tuple(np.quantile(samples, [0.025, 0.975])))
        assert low < value < high


def test_intervals_shrink_with_more_pairs():
    small = simalign.score_intervals(
        COUNTS, BOOTSTRAP.weights(10, "en-de", "test", "gold"), BOOTSTRAP
    )
    many = np.tile(COUNTS, (4, 1))  # the same pairs four times: same scores, 4x the pairs
    large = simalign.score_intervals(
        many, BOOTSTRAP.weights(40, "en-de", "test", "gold"), BOOTSTRAP
    )
    for metric in simalign.METRICS:
        assert large[metric][0] == pytest.approx(small[metric][0])
        assert large[metric][1] <= large[metric][0] <= large[metric][2]
        # The standard error falls as 1 / sqrt(pairs): the width about halves.
        width = large[metric][2] - large[metric][1]
        assert width < 0.7 * (small[metric][2] - small[metric][1])


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


STATS = ["--resamples", "200", "--confidence", "0.95", "--bootstrap-seed", "2"]


def run_simalign(checkpoint, source, target, gold, out, *extra, min_sentences=10):
    """The command with the schema's simalign settings; ``extra`` options override them."""
    argv = ["simalign", "--checkpoint", str(checkpoint), "--source", str(source)]
    argv += ["--target", str(target), "--gold", str(gold), *STATS]
    argv += ["--methods", *schema_default("simalign.methods")]
    argv += ["--granularity", *schema_default("simalign.granularity")]
    argv += ["--source-language", schema_default("simalign.source_language")]
    argv += ["--batch-tokens", str(schema_default("simalign.batch_tokens"))]
    argv += ["--pooling", schema_default("activations.pooling")]
    argv += ["--min-sentences", str(min_sentences), *extra]
    argv += ["--language", "de", "--model", "tiny", "--step", "3", "--out", str(out)]
    return cli(argv)


TASKS = {
    f"simalign-{method}{suffix}"
    for method in ("argmax", "itermax", "mwmf")
    for suffix in ("", "-subword")
}


def test_identical_sentences_align_perfectly(tiny_checkpoint, tmp_path):
    # The same sentence on both sides: every word's (and subword's) vector, any layer, is most
    # similar to itself, so every method recovers the diagonal and AER is 0 at every layer.
    source = FIXTURES / "en.txt"
    lengths = [len(s) for s in simalign.read_sentences(source)]
    gold = tmp_path / "en-en.gold"
    gold.write_text("".join(" ".join(f"{i}-{i}" for i in range(n)) + "\n" for n in lengths))
    assert run_simalign(tiny_checkpoint, source, source, gold, tmp_path / "out.parquet") == 0
    table = pd.read_parquet(tmp_path / "out.parquet")
    aer = table[table.metric == "aer"]
    assert set(aer.task) == TASKS
    assert len(aer) == 6 * 3  # three methods x two granularities x three hidden states
    assert (aer.value == 0).all() and (aer.ci_low == 0).all() and (aer.ci_high == 0).all()


def test_command_on_fixture(tiny_checkpoint, tmp_path):
    out = tmp_path / "de.parquet"
    gold = FIXTURES / "en-de.gold"
    assert run_simalign(tiny_checkpoint, FIXTURES / "en.txt", FIXTURES / "de.txt", gold, out) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    assert set(table.task) == TASKS
    assert set(table.layer) == {0, 1, 2}  # every hidden state: none dropped
    assert set(table.metric) == {"precision", "recall", "f1", "aer"}
    assert len(table) == 6 * 3 * 4
    assert (table.train_lang == "en").all() and (table.test_lang == "de").all()
    assert (table.split == "test").all() and (table.seed == 0).all()
    assert (table.n == 12).all() and (table.step == 3).all()
    assert np.isfinite(table[["value", "ci_low", "ci_high"]].to_numpy()).all()
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    scores = table.pivot_table(index=["task", "layer"], columns="metric", values="value")
    p, r = scores.precision, scores.recall
    np.testing.assert_allclose(scores.f1, 2 * p * r / (p + r))
    # AER = 1 - (|A & S| + |A & P|) / (|A| + |S|) = 1 - (p |A| + r |S|) / (|A| + |S|), with |S|
    # the fixture's sure links and, for word-level mwmf (a one-to-one matching of the words),
    # |A| = the sum over sentence pairs of min(n, m)
    links = [link for line in gold.read_text().splitlines() for link in line.split()]
    sure = sum("?" not in link and not link.lower().endswith("-p") for link in links)
    en, de = ((FIXTURES / f"{lang}.txt").read_text().splitlines() for lang in ("en", "de"))
    matched = sum(min(len(e.split()), len(d.split())) for e, d in zip(en, de, strict=True))
    mwmf = scores.loc["simalign-mwmf"]
    expected = 1 - (mwmf.precision * matched + mwmf.recall * sure) / (matched + sure)
    np.testing.assert_allclose(mwmf.aer, expected, rtol=1e-12)
    # every method: 1 - AER is a weighted mean of precision and recall, so lies between them
    assert (1 - scores.aer >= np.minimum(p, r) - 1e-12).all()
    assert (1 - scores.aer <= np.maximum(p, r) + 1e-12).all()
    # itermax only adds links: its recall is never below argmax's, at either granularity.
    recall = scores.recall.unstack("task")
    for suffix in ("", "-subword"):
        assert (recall[f"simalign-itermax{suffix}"] >= recall[f"simalign-argmax{suffix}"]).all()

    # Only the requested methods and granularity; the same resamples, so the same intervals.
    one = tmp_path / "one.parquet"
    extra = ["--methods", "mwmf", "--granularity", "subword"]
    assert run_simalign(
        tiny_checkpoint, FIXTURES / "en.txt", FIXTURES / "de.txt", gold, one, *extra
    ) == 0  # fmt: skip
    subset = pd.read_parquet(one)
    assert set(subset.task) == {"simalign-mwmf-subword"}
    merged = subset.merge(table, on=["task", "layer", "metric"], suffixes=("", "_all"))
    assert len(merged) == len(subset) == 3 * 4
    for column in ("value", "ci_low", "ci_high"):
        np.testing.assert_array_equal(merged[column], merged[f"{column}_all"])


def test_too_few_pairs_is_one_line_error(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    gold = FIXTURES / "en-de.gold"
    assert (
        run_simalign(
            tiny_checkpoint, FIXTURES / "en.txt", FIXTURES / "de.txt", gold, out, min_sentences=13
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "en-de.gold (SimAlign en-de): 12 sentences, fewer than the 13" in err
    assert not out.exists()


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
