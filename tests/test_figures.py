"""The figures: every one draws from a synthetic table, as PNG and PDF, the same bytes every run."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from synthetic_tables import LANGUAGES, analyse_arguments, synthetic_table, write_run

from mlm_dynamics import __main__ as cli
from mlm_dynamics import figure_registry, figures
from mlm_dynamics.analysis import findings, tables, views
from mlm_dynamics.config_check import schema_default

ALL_FIGURES = [
    "in-language-curves",
    "layer-heatmaps",
    "final-layer-gap",
    "onset",
    "selectivity",
    *[f"transfer-matrices-{task}" for task in ["pos", "arc", "deprel", "xnli"]],
    *[f"transfer-over-time-{task}" for task in ["pos", "arc", "deprel", "xnli"]],
    "bpc",
    "alignment-f1",
]


SHARES = [
    f"--pretrain-share={lang}={share}"
    for lang, share in zip(LANGUAGES, [0.4, 0.2, 0.2, 0.1, 0.05, 0.05], strict=True)
]


def plot_arguments(table, name, out_dir, findings_dir=None) -> list[str]:
    """The plot command of one figure, reading the findings tables its registry entry names."""
    spec, _ = figure_registry.registered(name)
    reads = [str(findings_dir / f"{stem}.csv") for stem in spec.reads] if findings_dir else []
    return ["plot", "--table", str(table), "--findings", *reads, "--figure", name,
            "--png", str(out_dir / f"{name}.png"), "--pdf", str(out_dir / f"{name}.pdf"),
            "--languages", *LANGUAGES, *SHARES,
            "--views", *map(str, schema_default("analysis.views"))]  # fmt: skip


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The synthetic table, its analysis and every figure, drawn once by the plot command."""
    root = tmp_path_factory.mktemp("plots")
    table, items = write_run(root)
    assert cli.main(analyse_arguments(table, items, root / "analysis")) == 0
    for name in figures.available_figures(tables.read_table(table)):
        assert cli.main(plot_arguments(table, name, root / "figures", root / "analysis")) == 0
    return root


@pytest.mark.parametrize("name", ALL_FIGURES)
def test_every_figure_is_written_as_png_and_pdf(drawn, name):
    png = (drawn / "figures" / f"{name}.png").read_bytes()
    pdf = (drawn / "figures" / f"{name}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert b"CreationDate" not in pdf


def test_the_table_can_draw_exactly_the_registered_figures(drawn):
    assert figures.available_figures(tables.read_table(drawn / "probing.parquet")) == ALL_FIGURES
    written = sorted(path.stem for path in (drawn / "figures").glob("*.png"))
    assert written == sorted(ALL_FIGURES)
    assert not list((drawn / "figures").glob(".tmp-*"))


def test_figures_are_the_same_bytes_every_run(drawn, tmp_path):
    for name in ["bpc", "alignment-f1"]:
        assert cli.main(plot_arguments(drawn / "probing.parquet", name, tmp_path)) == 0
    for name in ["bpc.png", "bpc.pdf", "alignment-f1.png", "alignment-f1.pdf"]:
        assert (tmp_path / name).read_bytes() == (drawn / "figures" / name).read_bytes(), name


def test_only_figures_with_rows_are_available():
    table = tables.tidy_table(synthetic_table(bpc=False, xnli=False, simalign=False))
    ud_transfer = [
        *[f"transfer-matrices-{task}" for task in ["pos", "arc", "deprel"]],
        *[f"transfer-over-time-{task}" for task in ["pos", "arc", "deprel"]],
    ]
    # no BPC, no alignment, no XNLI rows: neither their figures nor XNLI's transfer figures
    assert figures.available_figures(table) == [
        "in-language-curves",
        "layer-heatmaps",
        "final-layer-gap",
        "onset",
        "selectivity",
        *ud_transfer,
    ]
    in_language_only = table[table["train_lang"] == table["test_lang"]]
    assert figures.available_figures(in_language_only) == [
        "in-language-curves",
        "layer-heatmaps",
        "final-layer-gap",
        "onset",
        "selectivity",
    ]
    no_controls = tables.tidy_table(synthetic_table(bpc=False, simalign=False, controls=False))
    assert figures.available_figures(no_controls) == [
        "in-language-curves",
        "layer-heatmaps",
        "final-layer-gap",
        "onset",
        *[f"transfer-matrices-{task}" for task in ["pos", "arc", "deprel", "xnli"]],
        *[f"transfer-over-time-{task}" for task in ["pos", "arc", "deprel", "xnli"]],
    ]


def test_a_figure_without_rows_is_refused_in_one_line(drawn, tmp_path, capsys):
    table = tmp_path / "probing.parquet"
    synthetic_table(bpc=False).to_parquet(table, index=False)
    assert cli.main(plot_arguments(table, "bpc", tmp_path)) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: figure 'bpc': the table has no rows for it") and err.count("\n") == 1
    )
    assert not list(tmp_path.glob("bpc.*"))


def test_transfer_steps_are_checked_against_the_table(drawn, tmp_path, capsys):
    argv = plot_arguments(drawn / "probing.parquet", "transfer-matrices-pos", tmp_path)
    argv += ["--transfer-steps", "0", "300"]
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


def test_crowded_step_labels_are_hidden_not_overlapped(tmp_path):
    """The findings preset's checkpoints (0, 250, 500, 1k, 2k, 4k) and a step 300 in a four-panel
    transfer figure: 250 and 300 would touch; the saved figure shows no two labels touching."""
    steps = [0, 250, 300, 500, 1000, 2000, 4000]
    languages = ["en", "de", "fr", "es"]
    cells = pd.DataFrame(
        {"task": "pos", "view": "last", "train_lang": train, "test_lang": test, "step": step,
         "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        for train in languages for test in languages for step in steps
    )  # fmt: skip
    fig = figures.transfer_over_time(cells, "pos")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = fig.axes[0].get_xticklabels()
    extents = [label.get_window_extent(renderer) for label in labels]
    gap = 2 * fig.dpi / 72  # two points: closer, "250" and "300" read as "250300"
    assert any(b.x0 - a.x1 < gap for a, b in itertools.pairwise(extents))  # crowded as drawn
    figures.save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    for ax in (ax for ax in fig.axes if ax.get_visible()):  # the four panels
        shown = [label for label in ax.get_xticklabels() if label.get_visible()]
        boxes = [label.get_window_extent(renderer) for label in shown]
        assert all(b.x0 - a.x1 >= gap for a, b in itertools.pairwise(boxes))
        assert shown[0].get_text() == "0" and len(shown) >= 4


def test_dot_positions_spread_equal_values_deterministically():
    x, y = figures.dot_positions(pd.Series([200, 100, 200, 200]).to_numpy(), centre=1.0, width=0.3)
    assert y.tolist() == [100, 200, 200, 200]
    assert x.tolist() == pytest.approx([1.0, 0.85, 1.0, 1.15])


def test_figure_functions_return_figures_for_a_notebook():
    table = tables.tidy_table(synthetic_table(xnli=False, simalign=False))
    scores = views.view_scores(table, ["last", "best"])
    fig = figures.in_language_curves(scores, findings.majority_baselines(table))
    # a row per view: each panel's title names its task and view, the row's y axis its score
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "POS tagging\nlast layer",
        "arc prediction\nlast layer",
        "arc classification\nlast layer",
        "POS tagging\nbest layer (dev)",
    ]
    assert [fig.axes[i].get_ylabel() for i in (0, 1, 3)] == ["test accuracy", "", "test accuracy"]
    # the bands are the rows' intervals: one PolyCollection per language and panel
    bands = [c for c in fig.axes[0].collections if type(c).__name__ == "FillBetweenPolyCollection"]
    assert len(bands) == len(LANGUAGES)
    figures.plt.close(fig)


def test_the_transfer_figure_draws_the_cells_of_the_transfer_csv(drawn, tmp_path):
    """The CSV and the figure read one function: the same layer and value for every cell."""
    table = tables.read_table(drawn / "probing.parquet")
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
