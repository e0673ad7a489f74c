"""The figures: every one draws from a synthetic table, as PNG and PDF, the same bytes every run."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_tables import LANGUAGES, analyse_arguments, synthetic_table, write_run

from mlm_dynamics import __main__ as cli
from mlm_dynamics import figures
from mlm_dynamics.analysis import findings, tables

ALL_FIGURES = [
    "in-language-curves",
    "layer-heatmaps",
    "final-layer-gap",
    "onset",
    "selectivity",
    *[
        f"{kind}-{task}"
        for task in ["pos", "arc", "deprel", "xnli"]
        for kind in ["transfer-matrices", "transfer-over-time"]
    ],  # fmt: skip
    "bpc",
    "alignment-f1",
]


SHARES = [
    f"--pretrain-share={lang}={share}"
    for lang, share in zip(LANGUAGES, [0.4, 0.2, 0.2, 0.1, 0.05, 0.05], strict=True)
]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The synthetic table, its analysis and every figure, drawn once by the plot command."""
    root = tmp_path_factory.mktemp("plots")
    table, items = write_run(root)
    assert cli.main(analyse_arguments(table, items, root / "analysis")) == 0
    argv = ["plot", "--table", str(table), "--analysis-dir", str(root / "analysis")]
    argv += ["--out-dir", str(root / "figures"), "--languages", *LANGUAGES, *SHARES]
    assert cli.main(argv) == 0
    return root


@pytest.mark.parametrize("name", ALL_FIGURES)
def test_every_figure_is_written_as_png_and_pdf(drawn, name):
    png = (drawn / "figures" / f"{name}.png").read_bytes()
    pdf = (drawn / "figures" / f"{name}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert b"CreationDate" not in pdf


def test_the_command_draws_exactly_the_available_figures(drawn):
    written = sorted(path.stem for path in (drawn / "figures").glob("*.png"))
    assert written == sorted(ALL_FIGURES)
    assert not list((drawn / "figures").glob(".tmp-*"))


def test_figures_are_the_same_bytes_every_run(drawn, tmp_path):
    argv = ["plot", "--table", str(drawn / "probing.parquet"), "--out-dir", str(tmp_path)]
    argv += ["--languages", *LANGUAGES, "--figure", "bpc", "--figure", "alignment-f1", *SHARES]
    assert cli.main(argv) == 0
    for name in ["bpc.png", "bpc.pdf", "alignment-f1.png", "alignment-f1.pdf"]:
        assert (tmp_path / name).read_bytes() == (drawn / "figures" / name).read_bytes(), name


def test_only_figures_with_rows_are_available():
    table = findings.tidy_table(synthetic_table(bpc=False, xnli=False, simalign=False))
    names = figures.available_figures(table)
    assert "bpc" not in names and "alignment-f1" not in names
    assert "transfer-matrices-xnli" not in names and "transfer-matrices-pos" in names
    in_language_only = table[table["train_lang"] == table["test_lang"]]
    assert figures.available_figures(in_language_only) == [
        "in-language-curves",
        "layer-heatmaps",
        "final-layer-gap",
        "onset",
        "selectivity",
    ]
    no_controls = findings.tidy_table(synthetic_table(bpc=False, simalign=False, controls=False))
    assert "selectivity" not in figures.available_figures(no_controls)


def test_a_figure_without_rows_is_refused_in_one_line(drawn, tmp_path, capsys):
    table = tmp_path / "probing.parquet"
    synthetic_table(bpc=False).to_parquet(table, index=False)
    argv = ["plot", "--table", str(table), "--out-dir", str(tmp_path), "--figure", "bpc"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: figure 'bpc': the table has no rows for it") and err.count("\n") == 1
    )
    assert not list(tmp_path.glob("bpc.*"))


def test_transfer_steps_are_checked_against_the_table(drawn, tmp_path, capsys):
    argv = ["plot", "--table", str(drawn / "probing.parquet"), "--out-dir", str(tmp_path)]
    argv += ["--figure", "transfer-matrices-pos", "--transfer-steps", "0", "300"]
    assert cli.main(argv) == 2
    assert "analysis.transfer_steps: step(s) [300] not in the table" in capsys.readouterr().err


def test_select_steps():
    assert figures.select_steps([400, 0, 100]) == [0, 100, 400]
    steps = list(range(0, 1000, 100))
    assert figures.select_steps(steps) == [0, 200, 400, 500, 700, 900]
    assert figures.select_steps(steps, [900, 0]) == [0, 900]


def test_step_labels_and_axis():
    assert [figures.step_label(s) for s in [0, 100, 5000, 125_000, 1_500_000]] == [
        "0",
        "100",
        "5k",
        "125k",
        "1.5M",
    ]
    fig, axes = figures.panel_grid(1)
    figures.step_axis(axes[0], [0, 100, 200, 400])
    assert axes[0].get_xscale() == "symlog"
    assert list(axes[0].get_xticks()) == [0, 100, 200, 400]
    assert axes[0].get_xlim()[0] < 0  # step 0 sits inside the axis, not on its edge
    figures.step_axis(axes[0], list(range(0, 100_001, 5000)))
    assert list(axes[0].get_xticks()) == [0, 10_000, 100_000]


def test_dot_positions_spread_equal_values_deterministically():
    x, y = figures.dot_positions(pd.Series([200, 100, 200, 200]).to_numpy(), centre=1.0, width=0.3)
    assert y.tolist() == [100, 200, 200, 200]
    assert x.tolist() == pytest.approx([1.0, 0.85, 1.0, 1.15])


def test_figure_functions_return_figures_for_a_notebook():
    table = findings.tidy_table(synthetic_table(xnli=False, simalign=False))
    scores = findings.view_scores(table, ["last", "best"])
    fig = figures.in_language_curves(scores, findings.majority_baselines(table))
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "POS tagging",
        "arc prediction",
        "arc classification",
    ]
    assert [fig.axes[i].get_ylabel() for i in (0, 3)] == [
        "accuracy\nlast layer",
        "accuracy\nbest layer (dev)",
    ]
    # the bands are the rows' intervals: one PolyCollection per language and panel
    bands = [c for c in fig.axes[0].collections if type(c).__name__ == "FillBetweenPolyCollection"]
    assert len(bands) == len(LANGUAGES)
    figures.plt.close(fig)


def test_the_transfer_figure_draws_the_cells_of_the_transfer_csv(drawn, tmp_path):
    """The CSV and the figure read one function: the same layer and value for every cell."""
    table = findings.read_table(drawn / "probing.parquet")
    out = tmp_path / "transfer"
    tables.transfer_matrices(table, "tiny-xlmr", "pos", [], LANGUAGES, ["last", "best"], out, "t")
    csv = pd.read_csv(out / "cells.csv", keep_default_na=False)
    inputs = figures.PlotInputs(table=table, views=["last", "best"])
    drawn_cells = inputs.cells[inputs.cells["task"] == "pos"].reset_index(drop=True)
    key = ["view", "train_lang", "test_lang", "step"]
    merged = csv.merge(drawn_cells, on=key, suffixes=("_csv", "_figure"))
    assert len(merged) == len(csv) == 2 * len(LANGUAGES) ** 2 * 4
    assert (merged["layer_csv"] == merged["layer_figure"]).all()
    assert merged["value_csv"].to_numpy() == pytest.approx(merged["value_figure"], abs=1e-6)
    matrix = pd.read_csv(out / "400_best.csv", index_col="train_lang")
    cell = drawn_cells[(drawn_cells.view == "best") & (drawn_cells.step == 400)]
    en_fr = cell[(cell.train_lang == "en") & (cell.test_lang == "fr")]["value"].iloc[0]
    assert matrix.loc["en", "fr"] == pytest.approx(en_fr, abs=1e-6)
