"""Every registered figure is readable when drawn from a table shaped like a real run.

Three runs from ``synthetic_tables``: the default workflow's shape (5 languages, steps 0 to 800,
5 layers, pos/arc/deprel with transfer, controls of pos only, views last and best), that model
probed at a single trained step, and a run with XNLI, BPC and SimAlign rows. Each figure is drawn
and saved as the plot command does it (``figures.draw``, then ``figures.save_figure``), and the laid
out figure is measured: a legend over an axes or a text, two axes overlapping, two texts
overlapping or closer than a point, a text outside the figure (clipped), a warning while drawing
or saving, two panels with the same title, a panel showing nothing without a note saying why, a
row of panels or a colour bar without an axis title. Every fault of a figure is listed in its
failure.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from synthetic_tables import LANGUAGES, analyse_arguments, write_run

from mlm_dynamics import __main__ as cli
from mlm_dynamics import figures
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.analysis.tables import read_table

TASKS = ["pos", "arc", "deprel"]
VIEWS = ["last", "best"]
DEFAULT_LANGUAGES = ["en", "fr", "de", "ru", "zh"]
DEFAULT_RUN = dict(steps=[0, 200, 400, 800], languages=DEFAULT_LANGUAGES, controls=["pos"],
                   bpc=False, xnli=False, simalign=False)  # fmt: skip
RUNS = {
    "default": DEFAULT_RUN,
    "one-step": {**DEFAULT_RUN, "steps": [800]},  # a trained model probed once
    "xnli-bpc-simalign": dict(steps=[0, 100, 200, 400], languages=LANGUAGES),
}
SHARES = dict(zip(LANGUAGES, [0.4, 0.2, 0.2, 0.1, 0.05, 0.05], strict=True))
UD_FIGURES = [
    "in-language-curves",
    "layer-heatmaps",
    "final-layer-gap",
    "onset",
    "selectivity",
    *[f"transfer-matrices-{task}" for task in TASKS],
    *[f"transfer-over-time-{task}" for task in TASKS],
]
FIGURES = {
    "default": UD_FIGURES,
    "one-step": UD_FIGURES,
    "xnli-bpc-simalign": [
        *UD_FIGURES[:5],
        *[f"transfer-matrices-{task}" for task in [*TASKS, "xnli"]],
        *[f"transfer-over-time-{task}" for task in [*TASKS, "xnli"]],
        "bpc",
        "alignment-f1",
    ],
}
SLACK = 0.5  # pixels: boxes that merely touch do not overlap
TEXT_GAP = 1.0  # points: two texts closer than this (across and down) read as one


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each run's table and analysis tables, written and analysed once, when first asked for."""
    made = {}

    def run(kind):
        if kind not in made:
            root = tmp_path_factory.mktemp(kind)
            table, items = write_run(root, **RUNS[kind])
            assert cli.main(analyse_arguments(table, items, root / "analysis")) == 0
            made[kind] = root
        return made[kind]

    return run


def plot_inputs(root, kind) -> figures.PlotInputs:
    """What the workflow's plot rule gives the plot command (``Plan.plot_arguments``)."""
    return figures.PlotInputs(
        table=read_table(root / "probing.parquet"),
        findings=[root / "analysis" / f"{stem}.csv" for stem in ANALYSIS_TABLES],
        languages=RUNS[kind].get("languages", LANGUAGES),
        tasks=TASKS,
        shares=SHARES,
        onset_fraction=0.95,
        views=VIEWS,
    )


# ---------------------------------------------------------------- what is drawn where


def overlap(a, b, gap: float = -SLACK) -> bool:
    """Whether boxes ``a`` and ``b`` overlap (or, with a positive ``gap``, come closer than it
    in both directions)."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > -gap and height > -gap


def touching(boxes, gap: float) -> list[tuple[int, int]]:
    """The pairs (i < j) of ``boxes`` that overlap or come closer than ``gap`` both ways."""
    if not boxes:
        return []
    x0, y0, x1, y1 = np.array([box.extents for box in boxes]).T
    width = np.minimum.outer(x1, x1) - np.maximum.outer(x0, x0)
    height = np.minimum.outer(y1, y1) - np.maximum.outer(y0, y0)
    return [
        (int(i), int(j))
        for i, j in zip(*np.nonzero(np.triu((width > -gap) & (height > -gap), 1)), strict=True)
    ]


def colorbar_axes(fig) -> set:
    mappables = (m for ax in fig.axes for m in [*ax.collections, *ax.images])
    return {m.colorbar.ax for m in mappables if getattr(m, "colorbar", None) is not None}


def drawn_tick_labels(axis) -> list[Text]:
    """The tick labels drawn: those of the major and minor ticks inside the view interval."""
    low, high = sorted(axis.get_view_interval())
    tolerance = 1e-9 * max(1.0, abs(high - low))
    major = axis.get_majorticklocs()
    minor = axis.get_minorticklocs()
    ticks = [
        *zip(axis.get_major_ticks(len(major)), major, strict=True),
        *zip(axis.get_minor_ticks(len(minor)), minor, strict=True),
    ]
    return [
        label
        for tick, location in ticks
        if low - tolerance <= location <= high + tolerance
        for label in (tick.label1, tick.label2)
        if label.get_visible() and label.get_text().strip()
    ]


def texts(fig) -> list[tuple[str, Text]]:
    """Every text drawn, named for the failure message."""
    found = [("figure text", text) for text in fig.texts]
    for legend in legends(fig):
        found += [("legend", text) for text in [legend.get_title(), *legend.get_texts()]]
    for i, ax in enumerate(ax for ax in fig.axes if ax.get_visible()):
        name = f"axes {i} ({ax.get_title() or ax.get_ylabel() or 'untitled'!r})"
        found += [(f"{name} text", child) for child in ax.get_children() if isinstance(child, Text)]
        for axis in (ax.xaxis, ax.yaxis):
            found.append((f"{name} {axis.axis_name} label", axis.label))
            found += [(f"{name} {axis.axis_name} tick", t) for t in drawn_tick_labels(axis)]
    return [(n, t) for n, t in found if t.get_visible() and t.get_text().strip()]


def legends(fig) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


def has_data(ax) -> bool:
    """Whether the panel draws data: something with data coordinates in both x and y (a line at
    a constant y, such as a baseline across the panel, has none in x)."""
    return bool(np.isfinite(ax.dataLim.get_points()).all())


def centre(box) -> tuple[float, float]:
    return (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2


def says_why(ax, renderer) -> bool:
    """A note inside the panel."""
    return any(
        text.get_visible()
        and text.get_text().strip()
        and ax.bbox.contains(*centre(text.get_window_extent(renderer)))
        for text in ax.texts
    )


def inside(box, bounds) -> bool:
    return (
        box.x0 >= bounds.x0 - SLACK
        and box.y0 >= bounds.y0 - SLACK
        and box.x1 <= bounds.x1 + SLACK
        and box.y1 <= bounds.y1 + SLACK
    )


def layout_faults(fig, caught) -> list[str]:
    """Every readability fault of a drawn (and saved) figure; ``caught``: warnings meanwhile."""
    if not hasattr(fig.canvas, "get_renderer"):  # closed by save_figure
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bars = colorbar_axes(fig)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    panels = [ax for ax in shown if ax not in bars]
    drawn = [(name, text, text.get_window_extent(renderer)) for name, text in texts(fig)]
    return [
        *(f"warning: {w.category.__name__}: {w.message}" for w in caught),
        *legend_faults(fig, shown, drawn, renderer),
        *(f"axes {i} and {j} overlap"
          for (i, a), (j, b) in itertools.combinations(enumerate(shown), 2)
          if overlap(a.bbox, b.bbox)),
        *(f"{drawn[i][0]} {drawn[i][1].get_text()!r} touches "
          f"{drawn[j][0]} {drawn[j][1].get_text()!r}"
          for i, j in touching([box for *_, box in drawn], TEXT_GAP * fig.dpi / 72)),
        *(f"{name} {text.get_text()!r} outside the figure (clipped)"
          for name, text, box in drawn if not inside(box, fig.bbox)),
        *panel_faults(panels, renderer),
        *("a colour bar without a title" for bar in bars
          if not (bar.get_ylabel().strip() or bar.get_xlabel().strip())),
    ]  # fmt: skip


def legend_faults(fig, shown, drawn, renderer) -> list[str]:
    """A legend over an axes' area or over any text but its own, or cut off by the figure."""
    faults = []
    for legend in legends(fig):
        box = legend.get_window_extent(renderer)
        faults += [f"legend over the area of axes {i}" for i, ax in enumerate(shown)
                   if overlap(box, ax.bbox)]  # fmt: skip
        faults += [f"legend over {name} {text.get_text()!r}" for name, text, extent in drawn
                   if not name.startswith("legend") and overlap(box, extent)]  # fmt: skip
        if not inside(box, fig.bbox):
            faults.append("legend outside the figure (clipped)")
    return faults


def panel_faults(panels, renderer) -> list[str]:
    """Two panels with one title, a panel showing nothing without a note, a row of panels with
    no y-axis title."""
    titles = [ax.get_title(loc) for ax in panels for loc in ("left", "center", "right")]
    faults = [
        f"{count} panels titled {title!r}"
        for title in sorted(set(titles) - {""})
        if (count := titles.count(title)) > 1
    ]
    faults += [
        f"panel {i} ({ax.get_title()!r}) draws nothing and says not why"
        for i, ax in enumerate(panels)
        if not has_data(ax) and not says_why(ax, renderer)
    ]
    rows = {}
    for ax in panels:
        rows.setdefault(round(ax.get_position().y0, 3), []).append(ax)
    faults += [
        f"the row of panels at y={y0} has no y-axis title"
        for y0, row in sorted(rows.items(), reverse=True)
        if not any(ax.get_ylabel().strip() for ax in row)
    ]
    return faults


def draw_and_save(name, inputs, out):
    """The figure drawn and saved as ``plot`` does it, and the warnings meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = figures.draw(name, inputs)
        figures.save_figure(fig, out / f"{name}.png", out / f"{name}.pdf")
    return fig, caught


# ---------------------------------------------------------------- tests

CASES = [(kind, name) for kind, names in FIGURES.items() for name in names]


@pytest.mark.parametrize("kind", RUNS)
def test_each_run_draws_the_figures_checked_here(runs, kind):
    table = read_table(runs(kind) / "probing.parquet")
    assert figures.available_figures(table) == FIGURES[kind]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_the_figure_is_laid_out_readably(runs, kind, name, tmp_path):
    fig, caught = draw_and_save(name, plot_inputs(runs(kind), kind), tmp_path)
    faults = layout_faults(fig, caught)
    assert not faults, f"{kind} run, {name}:\n" + "\n".join(faults)


def test_the_checks_see_a_legend_over_a_panel_and_a_clipped_label(tmp_path):
    """The checks themselves: a legend inside the panel, a text running off the figure, a
    repeated title and an empty panel are each reported."""
    fig, axes = figures.panel_grid(3, columns=3)
    axes[0].plot([0, 1], [0, 1], label="a line")
    axes[0].legend(loc="center")
    axes[1].plot([0, 1], [1, 0])
    fig.text(0.99, 0.5, "pushed off")
    axes[0].set_title("twice")
    axes[1].set_title("twice")
    faults = layout_faults(fig, [])
    figures.plt.close(fig)
    assert any(fault.startswith("legend over the area of axes 0") for fault in faults)
    assert any("'pushed off' outside the figure" in fault for fault in faults)
    assert "2 panels titled 'twice'" in faults
    assert any(fault.startswith("panel 2 ('') draws nothing") for fault in faults)
