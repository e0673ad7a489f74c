"""benchmarks/findings_summary.py: each finding's verdict follows from the adjusted verdicts and
intervals it prints."""

import findings_summary
import pandas as pd
import pytest


def onset_row(task, train, test, gain_low, onset=None, onset_ci=(None, None), status=None):
    learned = gain_low > 0
    return {
        "model": "m", "task": task, "view": "best", "train_lang": train, "test_lang": test,
        "kind": "in-language" if train == test else "transfer", "gain": gain_low + 0.01,
        "gain_ci_low": gain_low, "gain_ci_high": gain_low + 0.02,
        "status": status or ("onset" if learned else "no onset"),
        "onset_gain_step": onset if learned else float("nan"),
        "onset_gain_censored": learned and onset == 20,
        "onset_gain_ci_low": onset_ci[0] if learned else float("nan"),
        "onset_gain_ci_high": onset_ci[1] if learned else float("nan"),
    }  # fmt: skip


def onset_table(de_deprel_low=0.01, transfer_onsets=((300, (250, 350)), (900, (800, 990)))):
    rows = []
    for task in ("pos", "deprel"):
        for lang in ("en", "de"):
            low = de_deprel_low if (task, lang) == ("deprel", "de") else 0.01
            rows.append(onset_row(task, lang, lang, low, 50, (20, 80)))
    (first, first_ci), (second, second_ci) = transfer_onsets
    rows.append(onset_row("pos", "en", "de", 0.01, first, first_ci))
    rows.append(onset_row("pos", "de", "en", 0.01, second, second_ci))
    rows.append(onset_row("deprel", "en", "de", -0.01))
    rows.append(onset_row("deprel", "de", "en", -0.01))
    return pd.DataFrame(rows)


def test_in_language_is_shown_only_when_every_language_gains():
    lines, shown = findings_summary.in_language(onset_table())
    assert shown
    assert "a discovery: 2 of 2" in lines[1]
    # 4 transfer curves: two onsets whose intervals follow the in-language [20, 80], two none
    assert "the in-language onset first for 4" in lines[2]
    assert "the intervals overlap for 0" in lines[2]
    lines, shown = findings_summary.in_language(onset_table(de_deprel_low=-0.001))
    assert not shown
    assert "a discovery: 1 of 2" in lines[1]


def test_a_language_the_tokenizer_cannot_read_is_left_out_of_every_count():
    table = onset_table()
    unreadable = "not interpretable (99% of ko test words hold the unknown token)"
    table = pd.concat(
        [table, pd.DataFrame([onset_row("pos", "ko", "ko", 0.01, 50, (20, 80), unreadable)])]
    )
    lines, shown = findings_summary.in_language(table)
    assert shown  # ko's gain is not counted for or against
    assert "a discovery: 2 of 2 (1 not interpretable" in lines[0]


def test_an_onset_reached_by_the_first_measured_step_reads_by_that_step():
    (row,) = pd.DataFrame([onset_row("pos", "en", "de", 0.01, 20, (20, 40))]).itertuples()
    assert findings_summary.onset_text(row) == "by step 20 [20, 40]"
    (row,) = pd.DataFrame([onset_row("pos", "en", "de", 0.01, 30, (20, 40))]).itertuples()
    assert findings_summary.onset_text(row) == "step 30 [20, 40]"


def test_an_onset_order_needs_disjoint_intervals():
    # in-language onsets at 50 [20, 80]; transfer at 60 [30, 300] and 10 [5, 15]: overlap, before
    onsets = ((60, (30, 300)), (10, (5, 15)))
    lines, shown = findings_summary.in_language(onset_table(transfer_onsets=onsets))
    assert "the in-language onset first for 2" in lines[2]  # the two without an onset
    assert "the transfer onset first for 1, the intervals overlap for 1" in lines[2]
    assert not shown  # 2 of 4 is not most


@pytest.mark.parametrize(
    ("onsets", "shown"),
    [
        (((300, (250, 350)), (900, (800, 990))), True),
        (((300, (250, 850)), (900, (800, 990))), False),  # the onset intervals overlap
    ],
)
def test_transfer_needs_two_learned_pairs_with_disjoint_onsets(onsets, shown):
    final = pd.DataFrame(
        {"task": "pos", "train_lang": ["en", "de"], "test_lang": ["de", "en"],
         "final_score": [0.6, 0.4], "final_ci_low": [0.55, 0.35], "final_ci_high": [0.65, 0.45],
         "majority_accuracy": 0.5}
    )  # fmt: skip
    lines, verdict = findings_summary.transfer(onset_table(transfer_onsets=onsets), final)
    assert verdict is shown
    assert "2 of 4 (1 of them end with an interval above the majority-label baseline)" in lines[0]


def test_last_layer_behind_must_grow_from_the_first_step():
    def gap_rows(behind_first, behind_last):
        rows = []
        for step, behind in ((0, behind_first), (1000, behind_last)):
            for i, lang in enumerate(("en", "de", "fr")):
                verdict = "last layer behind" if i < behind else "within noise"
                rows.append(
                    {"task": "pos", "lang": lang, "step": step, "best_layer": 1,
                     "best_layer_stability": 0.95, "gap": 0.01, "last_score": 0.5,
                     "last_ci_high": 0.52, "embedding_score": 0.4,
                     "ci_low": 0.005 if i < behind else -0.01, "ci_high": 0.02,
                     "verdict": verdict}
                )  # fmt: skip
        return pd.DataFrame(rows)

    assert findings_summary.last_layer(gap_rows(0, 2))[1]
    assert not findings_summary.last_layer(gap_rows(2, 2))[1]
    assert not findings_summary.last_layer(gap_rows(0, 0))[1]
