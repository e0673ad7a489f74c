"""The paper's analyses: layer views chosen on dev, onsets of the gain, the final-layer gap and
degradation with paired intervals, on hand-made curves and a simulated run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic_tables import (
    BOOTSTRAP,
    LANGUAGES,
    STEPS,
    TASKS,
    VERDICTS,
    analyse_arguments,
    synthetic_run,
    write_run,
)

from mlm_dynamics import __main__ as cli
from mlm_dynamics import stats
from mlm_dynamics.analysis import findings, views
from mlm_dynamics.analysis.findings import gain_onset, onset_step
from mlm_dynamics.analysis.tables import tidy_table
from mlm_dynamics.errors import InputError

STEP_GRID = [0, 100, 200, 400]


@pytest.fixture(scope="module")
def run():
    table, files = synthetic_run()
    return tidy_table(table), files


@pytest.fixture(scope="module")
def tables(run):
    table, files = run
    bank = findings.ItemBank(files, BOOTSTRAP)
    return findings.analyse(table, bank, ["last", "best"], 0.95, VERDICTS)


# ---------------------------------------------------------------- onsets on hand-made curves


@pytest.mark.parametrize(
    ("scores", "fraction", "final", "best"),
    [
        ([0.1, 0.5, 0.8, 0.9], 0.85, 200, 200),  # 0.85 * 0.9 = 0.765 first at step 200
        ([0.1, 0.5, 0.8, 0.9], 0.95, 400, 400),
        ([0.2, 0.7, 0.9, 0.72], 0.95, 100, 200),  # final target 0.684, best target 0.855
        ([0.48, 0.45, 0.49, 0.5], 0.95, 0, 0),  # a high floor: raw onset at step 0
    ],
)
def test_raw_onset_matches_hand_computed_steps(scores, fraction, final, best):
    assert onset_step(STEP_GRID, scores, fraction, "final") == final
    assert onset_step(STEP_GRID, scores, fraction, "best") == best


def test_gain_onset_is_interpolated_in_log_step():
    steps = [0, 100, 1000]
    scores = np.array([0.5, 0.7, 0.9])  # gains 0, 0.5, 1
    # reached exactly at a checkpoint
    assert gain_onset(steps, scores, 0.5) == pytest.approx(100)
    # halfway between 100 and 1000 in log(1 + step): sqrt(101 * 1001) - 1
    assert gain_onset(steps, scores, 0.75) == pytest.approx(np.sqrt(101 * 1001) - 1)
    # reached between 0 and 100, where nothing was measured: "by step 100", never a step between
    assert gain_onset(steps, scores, 0.1) == 100
    assert findings.by_first_step(steps, gain_onset(steps, scores, 0.1))
    assert not findings.by_first_step(steps, gain_onset(steps, scores, 0.75))
    # relative to a reference step (the best one): the gain to step 100 is reached by step 100
    assert gain_onset(steps, scores, 0.5, reference=1) == 100


def test_gain_onset_takes_the_first_crossing_and_refuses_a_curve_without_gain():
    steps = [0, 10, 100, 1000]
    # g = 0, 1.125, 0.5, 1: reached by step 10 already (the first crossing, censored)
    spike = gain_onset(steps, np.array([0.5, 0.95, 0.7, 0.9]), 0.95)
    assert spike == 10
    # g = 0, 0.5, 1.25, 1: first reached between 10 and 100, interpolated in log(1 + step)
    late = gain_onset(steps, np.array([0.5, 0.6, 0.75, 0.7]), 0.95)
    assert late == pytest.approx(np.expm1(np.log(11) + 0.45 / 0.75 * np.log(101 / 11)))
    flat = gain_onset(steps, np.array([[0.6, 0.62, 0.58, 0.6], [0.6, 0.5, 0.5, 0.5]]), 0.5)
    assert np.isnan(flat).all()  # no gain, or a loss: no onset rather than step 0
    with pytest.raises(ValueError, match="ascending"):
        gain_onset([0, 100, 100], np.zeros(3), 0.5)


def test_verdicts_are_three_way_on_the_adjusted_p_value():
    labels, verdicts = findings.DEGRADATION_VERDICTS, findings.Verdicts(fdr=0.05, resamples=1000)
    assert verdicts.label(None, True, labels) == "final is best"  # the same step
    assert verdicts.label(0.9, False, labels) == "within noise"  # even a difference below 0
    assert verdicts.label(0.2, False, labels) == "within noise"
    assert verdicts.label(0.04, False, labels) == "degraded"


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    adjusted = stats.benjamini_hochberg(p)
    # sorted 0.01, 0.03, 0.04, 0.2 of m = 4 tests: p * m / rank, then the running minimum from
    # the top: 0.04, 0.0533, 0.0533, 0.2
    assert adjusted == pytest.approx([0.04, 0.16 / 3, np.nan, 0.16 / 3, 0.2], nan_ok=True)
    assert np.isnan(stats.benjamini_hochberg([np.nan])).all()


def test_a_p_value_is_the_share_of_resampled_differences_at_or_below_zero():
    assert stats.one_sided_p(np.array([0.1, 0.2, -0.1, 0.0])) == pytest.approx(3 / 5)
    assert stats.one_sided_p(np.array([0.1] * 99)) == pytest.approx(1 / 100)
    assert np.isnan(stats.one_sided_p(np.array([np.nan])))


def test_choice_stability_breaks_ties_as_the_choice_did():
    resampled = np.array([[0.5, 0.5], [0.6, 0.4], [0.4, 0.6], [np.nan, np.nan]])
    assert stats.choice_stability(resampled, 0, prefer_last=False) == pytest.approx(2 / 3)
    assert stats.choice_stability(resampled, 1, prefer_last=True) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- layer views


def test_the_best_layer_is_chosen_on_dev_and_permuting_test_changes_no_choice(run):
    table, _ = run
    before = views.view_layers(table, ["best", "last", "layer-2"])
    shuffled = table.copy()
    test = shuffled["split"] == "test"
    rng = np.random.default_rng(0)
    shuffled.loc[test, "value"] = rng.permutation(shuffled.loc[test, "value"].to_numpy())
    after = views.view_layers(shuffled, ["best", "last", "layer-2"])
    pd.testing.assert_frame_equal(before, after)
    # and the choice does follow dev: making layer 1 the best on every dev set selects it
    boosted = table.copy()
    dev = (boosted["split"] == "dev") & (boosted["layer"] == 1) & (boosted["metric"] == "accuracy")
    boosted.loc[dev, "value"] = 1.0
    chosen = views.view_layers(boosted, ["best"])
    assert (chosen["layer"] == 1).all()


def test_a_transfer_cell_reads_the_layer_of_its_training_language(run):
    table, _ = run
    scores = views.view_scores(table, ["best"])
    layers = views.dev_best_layers(table).set_index(["model", "task", "train_lang", "step"])
    for row in scores.itertuples():
        assert row.layer == layers.loc[(row.model, row.task, row.train_lang, row.step), "layer"]
    cells = scores[(scores.task == "pos") & (scores.step == 400)]
    assert len(cells) == len(LANGUAGES) ** 2
    assert cells.groupby("train_lang")["layer"].nunique().eq(1).all()


def test_views_refuse_a_missing_layer_and_missing_dev(run):
    table, _ = run
    with pytest.raises(InputError, match="layer-9: model tiny-xlmr has layers 0..4 only"):
        views.view_layers(table, ["layer-9"])
    no_dev = table[table["split"] != "dev"]
    with pytest.raises(InputError, match="the 'best' view chooses layers on dev"):
        views.view_layers(no_dev, ["best"])
    assert views.view_name(8) == "layer-8" and views.view_name("best") == "best"
    with pytest.raises(InputError, match="analysis.views: 'top'"):
        views.view_name("top")


# ---------------------------------------------------------------- the analysis tables


def test_every_row_of_every_analysis_table_has_an_interval(tables):
    for stem, frame in tables.items():
        assert len(frame) > 0, stem
        assert frame["ci_low" if "ci_low" in frame else "gain_ci_low"].notna().all(), stem
    onsets = tables["onset"]
    learned = onsets["status"] == "onset"
    assert learned.any() and (~learned).any()  # late transfer pairs at 400 steps may not learn
    assert onsets.loc[learned, "onset_gain_ci_low"].notna().all()
    assert onsets.loc[~learned, "onset_gain_step"].isna().all()
    assert (onsets.loc[~learned, "gain_ci_low"] <= 0).all()
    assert (onsets.loc[learned, "gain_ci_low"] > 0).all()


def test_tables_cover_every_curve_and_view(tables):
    pairs = len(TASKS) * len(LANGUAGES) ** 2 + 3**2  # UD tasks and the 3-language XNLI
    assert len(tables["onset"]) == len(tables["degradation"]) == 2 * pairs
    gap = tables["final_layer_gap"]
    assert len(gap) == (len(TASKS) * len(LANGUAGES) + 3) * len(STEPS)
    same = gap["best_layer"] == gap["last_layer"]
    assert (gap.loc[same, "verdict"] == "last layer is best").all()
    assert (gap.loc[same, ["gap", "ci_low", "ci_high"]] == 0).all().all()
    # the synthetic last layer falls 5 points behind late in training: the gap is measurable
    late = gap[(gap["step"] == 400) & (gap["task"] == "pos")]
    assert (late["verdict"] == "last layer behind").sum() >= 4


def test_degradation_verdicts_on_curves_with_a_known_answer():
    """Three in-language curves scored on the same 60 test sentences: one keeps rising, one drops
    by 20 points at the final step, one is flat (the same items at both steps)."""
    rng = np.random.default_rng(3)
    units = np.repeat(np.arange(60), 10)
    rows, files = [], {}
    flat = rng.random(units.size) < 0.7
    for task, curve in {"pos": [0.5, 0.7, 0.9], "arc": [0.5, 0.9, 0.7], "deprel": None}.items():
        for step_index, step in enumerate([0, 10, 100]):
            for split in ("dev", "test"):
                if curve is None:
                    correct = flat[None, :]
                else:
                    correct = (rng.random(units.size) < curve[step_index])[None, :]
                common = dict(model="m", step=step, task=task, train_lang="en", test_lang="en",
                              split=split, seed=0, n=units.size)  # fmt: skip
                weights = BOOTSTRAP.weights(60, "en", split, "en")
                data = type("Data", (), {"units": units, "n_units": 60})
                from mlm_dynamics.probing.cli import interval_rows

                rows += interval_rows(common, [0], correct, data, weights, BOOTSTRAP, "accuracy")
                if split == "test":
                    files.setdefault(step, []).append(
                        stats.ItemScores(
                            task, "en", "en", "test", 0, np.array([0]), correct, units, 60
                        )  # fmt: skip
                    )
    table = tidy_table(pd.DataFrame(rows))
    bank = findings.ItemBank([stats.ItemFile("m", s, f) for s, f in files.items()], BOOTSTRAP)
    result = findings.degradation(table, bank, ["last"], VERDICTS).set_index("task")
    assert result.loc["pos", "verdict"] == "final is best"
    assert result.loc["arc", "verdict"] == "degraded"
    assert result.loc["arc", "best_step"] == 10
    # a plateau (dev ties at every step): the later step is best, so no spurious degradation
    assert result.loc["deprel", "best_step"] == 100
    assert result.loc["deprel", "verdict"] == "final is best"
    onsets = findings.onsets(table, bank, ["last"], 0.5, VERDICTS).set_index("task")
    assert onsets.loc["deprel", "status"] == "no onset"
    assert np.isnan(onsets.loc["deprel", "onset_gain_step"])
    assert onsets.loc["pos", "status"] == "onset"
    # by hand: g = (acc - acc(0)) / (acc(100) - acc(0)) on the test items, first reaching 0.5
    # between two checkpoints, linear in log(1 + step) there
    acc = np.array([files[s][0].correct.mean() for s in (0, 10, 100)])  # pos is the first task
    g, x = (acc - acc[0]) / (acc[2] - acc[0]), np.log1p([0, 10, 100])
    k = 1 if g[1] >= 0.5 else 2
    onset = np.expm1(x[k - 1] + (0.5 - g[k - 1]) / (g[k] - g[k - 1]) * (x[k] - x[k - 1]))
    onset = 10 if k == 1 else onset  # reached by the first measured step: "by step 10"
    assert onsets.loc["pos", "onset_gain_step"] == pytest.approx(onset, rel=1e-9)


def test_analyse_writes_the_tables_and_refuses_missing_items(tmp_path, capsys):
    table, items = write_run(tmp_path / "run", xnli=False, simalign=False, bpc=False)
    out = tmp_path / "analysis"
    assert cli.main(analyse_arguments(table, items, out)) == 0
    for stem in findings.ANALYSIS_TABLES:
        assert (out / f"{stem}.csv").is_file()
    first = {stem: (out / f"{stem}.csv").read_bytes() for stem in findings.ANALYSIS_TABLES}
    assert cli.main(analyse_arguments(table, items, out)) == 0
    assert first == {stem: (out / f"{stem}.csv").read_bytes() for stem in findings.ANALYSIS_TABLES}
    capsys.readouterr()
    assert cli.main(analyse_arguments(table, items[:-1], tmp_path / "other")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no per-item test scores" in error[0] and "step 400" in error[0]
    assert not (tmp_path / "other").exists()


def test_analyse_reports_a_bad_table_in_one_line(tmp_path, capsys):
    _, items = write_run(tmp_path / "run", xnli=False, simalign=False, bpc=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("model,step\nm,0\n")
    assert cli.main(analyse_arguments(bad, items, tmp_path / "out")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: {bad}: missing column(s) task, layer, train_lang, test_lang, split, "
                     "seed, metric, value, ci_low, ci_high, n"]  # fmt: skip


@pytest.mark.e2e
def test_another_bootstrap_seed_changes_no_verdict_of_the_reference_run(reference, tmp_path):
    """The analysis of the reference run (a reduced default) with statistics.seed 0 and 1, as
    the workflow's findings rule runs it: the intervals move with the draw, no verdict does."""
    import copy
    import shlex

    from workflow_run import reduced_config

    from mlm_dynamics.config_check import validated
    from mlm_dynamics.plan import Plan

    config = validated(copy.deepcopy(reduced_config()))
    results = reference / "results"
    items = sorted(str(path) for path in results.glob("scores/**/*.items.npz"))
    verdicts = {}
    for seed in (0, 1):
        config["statistics"]["seed"] = seed
        plan = Plan(config)
        out = tmp_path / f"seed{seed}"
        outputs = [str(out / f"{stem}.csv") for stem in findings.ANALYSIS_TABLES]
        argv = ["analyse", "--table", str(results / "tables/probing.parquet"), "--items", *items,
                *shlex.split(plan.findings_arguments()), *shlex.split(plan.statistics_arguments()),
                "--out", *outputs]  # fmt: skip
        assert cli.main(argv) == 0
        verdicts[seed] = {
            stem: pd.read_csv(out / f"{stem}.csv") for stem in findings.ANALYSIS_TABLES
        }
    for stem, column in (("onset", "status"), ("final_layer_gap", "verdict"),
                         ("degradation", "verdict")):  # fmt: skip
        first, second = verdicts[0][stem], verdicts[1][stem]
        assert len(first) > 10
        assert first[column].tolist() == second[column].tolist(), stem
        assert not first["ci_low" if stem != "onset" else "gain_ci_low"].equals(
            second["ci_low" if stem != "onset" else "gain_ci_low"]
        )  # the draw did change
    # onsets only where measured: nothing strictly between step 0 and the first step after it,
    # and no interval around a missing onset
    onset = verdicts[0]["onset"]
    first_step = sorted(config["models"]["tiny-xlmr"]["steps"])[1]
    for name in ("onset_gain", "onset_best_gain"):
        values = onset[[f"{name}_step", f"{name}_ci_low", f"{name}_ci_high"]].to_numpy(float)
        assert not ((values > 0) & (values < first_step)).any()
        missing = np.isnan(values[:, 0])
        assert np.isnan(values[missing, 1:]).all()
        assert (onset.loc[onset[f"{name}_censored"], f"{name}_step"] == first_step).all()
