"""The paper's analyses: onset, best layer and final-layer gap, final vs best checkpoint."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from synthetic_tables import LANGUAGES, STEPS, TASKS, synthetic_table

from mlm_dynamics import __main__ as cli
from mlm_dynamics import analysis
from mlm_dynamics.analysis import best_step, onset_step
from mlm_dynamics.errors import InputError

STEP_GRID = [0, 100, 200, 400]


# ---------------------------------------------------------------- onset on hand-made curves


@pytest.mark.parametrize(
    ("scores", "fraction", "final", "best"),
    [
        # Monotone: 0.85 * 0.9 = 0.765 is first reached at step 200.
        ([0.1, 0.5, 0.8, 0.9], 0.85, 200, 200),
        # 0.95 * 0.9 = 0.855: only the final step gets there.
        ([0.1, 0.5, 0.8, 0.9], 0.95, 400, 400),
        # Non-monotone, peak at 200: final target 0.95 * 0.72 = 0.684 (step 100),
        # best target 0.95 * 0.9 = 0.855 (step 200).
        ([0.2, 0.7, 0.9, 0.72], 0.95, 100, 200),
        # Non-monotone with an early spike: 0.9 at step 100 already passes both targets.
        ([0.1, 0.9, 0.5, 0.8], 0.95, 100, 100),
        # Already there at initialisation (a high floor): 0.95 * 0.5 = 0.475 <= 0.48.
        ([0.48, 0.45, 0.49, 0.5], 0.95, 0, 0),
    ],
)
def test_onset_step_matches_hand_computed_steps(scores, fraction, final, best):
    assert onset_step(STEP_GRID, scores, fraction, "final") == final
    assert onset_step(STEP_GRID, scores, fraction, "best") == best


def test_onset_step_sorts_the_steps_first():
    steps, scores = [400, 0, 200, 100], [0.72, 0.2, 0.9, 0.7]
    assert onset_step(steps, scores, 0.95, "final") == 100
    assert onset_step(steps, scores, 0.95, "best") == 200
    assert best_step(steps, scores) == 200


def test_onset_step_without_an_answer_is_none():
    assert onset_step([], [], 0.95) is None
    assert onset_step([0, 100], [math.nan, math.nan], 0.95, "best") is None
    # A missing final score has no final onset, but the best score still gives one.
    assert onset_step([0, 100, 200], [0.2, 0.8, math.nan], 0.95, "final") is None
    assert onset_step([0, 100, 200], [0.2, 0.8, math.nan], 0.95, "best") == 100
    # A negative reference puts the threshold above the reference itself: never reached.
    assert onset_step([0, 100], [-2.0, -1.0], 0.95, "final") is None


def test_onset_step_refuses_an_unknown_reference():
    with pytest.raises(ValueError, match="reference"):
        onset_step([0], [0.5], 0.95, "first")


def test_best_step_is_the_earliest_maximum():
    assert best_step([0, 100, 200], [0.5, 0.9, 0.9]) == 100
    assert best_step([], []) is None


# ---------------------------------------------------------------- best layer on a hand-made table


def tidy(rows) -> pd.DataFrame:
    """Tidy rows from (step, layer, train, test, seed, value) tuples of one model and task."""
    records = [
        dict(
            model="m",
            step=step,
            task="pos",
            layer=layer,
            train_lang=train,
            test_lang=test,
            seed=seed,
            metric="accuracy",
            value=value,
            n=10,
        )
        for step, layer, train, test, seed, value in rows
    ]
    return pd.DataFrame(records)


HAND_TABLE = tidy(
    [
        # step 0: layer 1 is best (mean 0.35); the last layer (2) scores 0.2 -> gap 0.15
        (0, 0, "en", "en", 0, 0.3),
        (0, 0, "en", "en", 1, 0.3),
        (0, 1, "en", "en", 0, 0.3),
        (0, 1, "en", "en", 1, 0.4),
        (0, 2, "en", "en", 0, 0.2),
        (0, 2, "en", "en", 1, 0.2),
        # step 100: layers 1 and 2 tie at 0.8 -> the lower layer (1) wins, gap 0
        (100, 0, "en", "en", 0, 0.5),
        (100, 0, "en", "en", 1, 0.5),
        (100, 1, "en", "en", 0, 0.8),
        (100, 1, "en", "en", 1, 0.8),
        (100, 2, "en", "en", 0, 0.7),
        (100, 2, "en", "en", 1, 0.9),
        # step 200: the last layer is best but lower than step 100's best -> final is not best
        (200, 0, "en", "en", 0, 0.6),
        (200, 0, "en", "en", 1, 0.6),
        (200, 1, "en", "en", 0, 0.7),
        (200, 1, "en", "en", 1, 0.7),
        (200, 2, "en", "en", 0, 0.75),
        (200, 2, "en", "en", 1, 0.75),
        # a transfer pair, one seed, only layer 0: its last layer (2) is missing
        (0, 0, "en", "fr", 0, 0.1),
        (200, 0, "en", "fr", 0, 0.4),
    ]
)


def test_best_layers_on_a_hand_made_table():
    best = analysis.best_layers(analysis.probe_scores(HAND_TABLE))
    own = best[best["test_lang"] == "en"].set_index("step")
    assert own["best_layer"].tolist() == [1, 1, 2]
    assert own["best_score"].tolist() == pytest.approx([0.35, 0.8, 0.75])
    assert own["last_layer"].tolist() == [2, 2, 2]
    assert own["last_layer_score"].tolist() == pytest.approx([0.2, 0.8, 0.75])
    assert own["gap"].tolist() == pytest.approx([0.15, 0.0, 0.0])
    assert own["n_seeds"].tolist() == [2, 2, 2]
    assert own.loc[0, "best_score_sd"] == pytest.approx(pd.Series([0.3, 0.4]).std())
    transfer = best[best["test_lang"] == "fr"]
    assert transfer["best_layer"].tolist() == [0, 0]
    assert transfer["last_layer_score"].isna().all() and transfer["gap"].isna().all()


def test_final_is_best_and_onset_on_a_hand_made_table():
    tables = analysis.analyse(analysis.tidy_table(HAND_TABLE), fraction=0.9)
    final = tables["final_is_best"].iloc[0]
    assert (final["lang"], final["final_step"], final["best_step"]) == ("en", 200, 100)
    assert not final["final_is_best"]
    assert (final["final_score"], final["best_score"]) == pytest.approx((0.75, 0.8))
    onset = tables["onset"].set_index("test_lang")
    # en: curve 0.35, 0.8, 0.75 -> 0.9 * 0.75 = 0.675 and 0.9 * 0.8 = 0.72 both at step 100
    assert onset.loc["en", ["onset_final_step", "onset_best_step"]].tolist() == [100, 100]
    assert onset.loc["en", "kind"] == "in-language"
    # fr: 0.1, 0.4 -> 0.36 at step 200
    assert onset.loc["fr", ["onset_final_step", "best_step"]].tolist() == [200, 200]
    assert onset.loc["fr", "kind"] == "transfer"
    layers = tables["best_layer"]
    assert layers.columns[:4].tolist() == ["model", "task", "lang", "step"]
    assert len(layers) == 3  # in-language only


def test_a_final_score_tying_an_earlier_best_is_best():
    table = tidy([(0, 0, "de", "de", 0, 0.2), (100, 0, "de", "de", 0, 0.6)])
    table = pd.concat([table, tidy([(200, 0, "de", "de", 0, 0.6)])])
    result = analysis.final_is_best(analysis.best_layers(analysis.probe_scores(table)))
    assert result["final_is_best"].tolist() == [True]
    assert result["best_step"].tolist() == [100]


# ---------------------------------------------------------------- the synthetic table, the command


def test_analyse_covers_every_curve_of_a_synthetic_table(tmp_path):
    table = synthetic_table(xnli=False)
    path = tmp_path / "probing.parquet"
    table.to_parquet(path, index=False)
    out = tmp_path / "analysis"
    assert cli.main(["analyse", "--table", str(path), "--out-dir", str(out)]) == 0
    onset = pd.read_csv(out / "onset.csv", keep_default_na=False, na_values=[""])
    assert len(onset) == len(TASKS) * len(LANGUAGES) ** 2
    assert (onset["kind"] == "in-language").sum() == len(TASKS) * len(LANGUAGES)
    assert set(onset["onset_final_step"]) <= set(STEPS)
    # The synthetic transfer pairs learn later than the in-language probes.
    medians = onset.groupby("kind")["onset_final_step"].median()
    assert medians["in-language"] < medians["transfer"]
    best_layer = pd.read_csv(out / "best_layer.csv")
    assert len(best_layer) == len(TASKS) * len(LANGUAGES) * len(STEPS)
    # The synthetic middle layer (2) is best and the last layer lags behind late in training.
    assert (best_layer["best_layer"] == 2).all()
    late = best_layer[best_layer["step"] == STEPS[-1]]
    assert (late["gap"] > 0.05).all()
    final = pd.read_csv(out / "final_is_best.csv")
    assert len(final) == len(TASKS) * len(LANGUAGES)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(["analyse", "--table", str(path), "--out-dir", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # bit-identical reruns


def test_analyse_reports_a_bad_table_in_one_line(tmp_path, capsys):
    path = tmp_path / "probing.csv"
    synthetic_table().drop(columns="seed").to_csv(path, index=False)
    code = cli.main(["analyse", "--table", str(path), "--out-dir", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: missing column(s) seed"
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="onset-fraction"):
        analysis.main("analyse", ["--table", str(path), "--out-dir", "x", "--onset-fraction", "2"])
