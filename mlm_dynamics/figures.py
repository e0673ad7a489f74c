"""The paper's figures, drawn from the tidy table and the ``analyse`` tables.

``python -m mlm_dynamics plot --table T --findings F... --model M --figure NAME --png P --pdf Q``
writes one figure as PNG and PDF. The names (registered in ``figure_registry.FIGURES``, drawn by
:data:`DRAW`):

- ``in-language-curves``: test accuracy over steps, a row per layer view (``last`` first), a panel
  per task (titled with task and view), a line per language with its 95% bootstrap band, the
  majority-class baseline dashed.
- ``layer-heatmaps``: test accuracy per layer x step, mean over languages, a panel per task.
- ``final-layer-gap``: dev-chosen best layer minus last layer over steps, with bands.
- ``onset``: gain onsets (with intervals) of in-language curves and transfer pairs, per view;
  curves without a measurable gain are counted, not drawn at step 0; a panel without any onset
  (a run of one step) says why.
- ``selectivity``: accuracy minus control-task accuracy over steps, laid out as
  ``in-language-curves``.
- ``transfer-matrices-<task>``: train x test accuracy at selected steps, a row per view.
- ``transfer-over-time-<task>``: every pair's accuracy over steps (first view), with bands.
- ``bpc``: bits per character over steps per language, and against the pretraining share.
- ``alignment-f1``: word-alignment F1 per layer x step, mean over target languages.

Every figure function takes data frames and returns a matplotlib Figure, so a notebook can redraw
any of them; ``save_figure`` writes the PNG and the PDF without timestamps (same bytes every run).
A legend or title outside the panels grows the figure rather than squeezing them
(:func:`figure_legend`, :func:`figure_title`); tests/test_figure_layout.py measures every figure.
Scores are read at the layer views of :func:`mlm_dynamics.analysis.views.view_layers` (the
same cells as the CSVs), test split, seed 0; bands and whiskers are 95% bootstrap intervals
(a curve of one step gets a whisker). Steps go on a symmetric-log axis, linear below the first
non-zero step, so step 0 (the randomly initialised model) is shown where the run has it.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullLocator

from mlm_dynamics import figure_registry
from mlm_dynamics.analysis import findings
from mlm_dynamics.analysis.tables import read_table
from mlm_dynamics.analysis.views import probe_rows, view_name, view_scores
from mlm_dynamics.atomic import atomic_path
from mlm_dynamics.bpc import METRIC_LABELS, reported_metric
from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import registry

# Panel order and titles: the registered probing tasks, then XNLI.
TASK_ORDER = [*registry.TASKS, "xnli"]
TASK_LABELS = {**{name: task.title for name, task in registry.TASKS.items()}, "xnli": "XNLI"}
MAX_TRANSFER_PANELS = 6
STABLE = findings.STABLE_SHARE
PANEL_WIDTH = 2.6  # inches; a row of three fits a two-column page (7 in)
PANEL_HEIGHT = 2.3
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
# Colour-blind-safe categorical colours (Wong / seaborn "colorblind") and perceptually uniform maps.
STYLE = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper", font_scale=1.1),
    "font.family": "DejaVu Sans",
    "pdf.fonttype": 42,
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "savefig.bbox": "tight",
}
HEATMAP = "viridis"
PNG_DPI = 200
MIN_MATRIX = 1.3  # inches: the narrowest transfer matrix (three languages)
LEGEND_PAD = 0.1  # inches between the panels and a legend (or the title) outside them


# ---------------------------------------------------------------- helpers


def styled(draw):
    """Draw under the module's style without changing the caller's matplotlib settings."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def ordered(values, preferred: Sequence[str] = ()) -> list[str]:
    """``values`` in the preferred order first, then the rest sorted: nothing is dropped."""
    present = set(values)
    first = [value for value in preferred if value in present]
    return first + sorted(present - set(first))


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def language_colours(languages: Sequence[str]) -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", max(len(languages), 1))
    return {lang: palette[i % len(palette)] for i, lang in enumerate(languages)}


def language_markers(languages: Sequence[str]) -> dict[str, str]:
    return {lang: MARKERS[i % len(MARKERS)] for i, lang in enumerate(languages)}


def step_label(step: float, _position=None) -> str:
    step = int(round(step))
    if step < 1000:
        return str(step)
    if step < 1_000_000:
        return f"{step / 1000:g}k"
    return f"{step / 1_000_000:g}M"


def step_axis(ax, steps: Sequence[int], axis: str = "x") -> None:
    """A symmetric-log step axis: linear up to the first non-zero step, so step 0 shows as 0
    (a single step sits in the middle)."""
    steps = sorted({int(step) for step in steps})
    positive = [step for step in steps if step > 0] or [1]
    linthresh = positive[0]
    if len(steps) <= 8:
        ticks = steps
    else:
        decades = range(int(np.ceil(np.log10(linthresh))), int(np.floor(np.log10(steps[-1]))) + 1)
        ticks = [0] + [10**k for k in decades]
    lower, upper = -0.15 * linthresh, max(steps[-1], linthresh) * 1.15
    if len(steps) == 1:  # one checkpoint: in the middle, not at the right end of an empty axis
        lower, upper = steps[0] - 0.5 * linthresh, steps[0] + 0.5 * linthresh
    target = ax.xaxis if axis == "x" else ax.yaxis
    if axis == "x":
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
        ax.set_xlim(lower, upper)
    else:
        ax.set_yscale("symlog", linthresh=linthresh, linscale=0.6)
        ax.set_ylim(lower, upper)
    target.set_ticks(ticks)
    target.set_major_formatter(FuncFormatter(step_label))
    target.set_minor_locator(NullLocator())


def panel_grid(count: int, columns: int = 3, sharey: bool = True, width: float = PANEL_WIDTH):
    """A figure with ``count`` panels in rows of at most ``columns``; unused axes are hidden."""
    columns = max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(width * columns, PANEL_HEIGHT * rows),
        sharey=sharey,
        squeeze=False,
        layout="constrained",
    )
    flat = axes.ravel()
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def outer_ylabels(axes) -> None:
    """Keep the y label of the first column only (the panels of a row share their quantity)."""
    for ax in axes:
        if not ax.get_subplotspec().is_first_col():
            ax.set_ylabel("")


def figure_legend(fig: Figure, handles, labels, title: str | None = None, below: bool = False):
    """A legend outside the panels, right of them (or ``below``), with the figure grown by its
    size: constrained layout would otherwise take its room from the panels, down to nothing in a
    one-column figure (and then not lay out the figure at all)."""
    if below:
        legend = fig.legend(handles, labels, title=title, loc="outside lower center",
                            ncols=len(labels))  # fmt: skip
    else:
        legend = fig.legend(
            handles, labels, title=title, loc="outside right center", alignment="left"
        )
    box = legend.get_window_extent(fig.canvas.get_renderer())
    if below:
        fig.set_figheight(fig.get_figheight() + box.height / fig.dpi + LEGEND_PAD)
    else:
        fig.set_figwidth(fig.get_figwidth() + box.width / fig.dpi + LEGEND_PAD)
    return legend


def figure_title(fig: Figure, text: str) -> None:
    """The figure's title, the figure widened where the title is wider than the panels."""
    title = fig.suptitle(text)
    width = title.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + 2 * LEGEND_PAD
    fig.set_figwidth(max(fig.get_figwidth(), width))


def empty_note(ax, text: str) -> None:
    """Say inside an empty panel why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            color="0.3")  # fmt: skip


def language_handles(languages, colours, markers):
    return [
        Line2D([], [], color=colours[lang], marker=markers[lang], markersize=4)
        for lang in languages
    ]


def hide_crowded_step_labels(fig: Figure, gap_points: float = 2.0) -> None:
    """On every step axis, hide a tick label that would touch the last one kept (checkpoints
    at 250 and 500 sit close on a log axis); the first label, step 0, is always kept."""
    fig.canvas.draw()  # the laid-out label extents
    renderer = fig.canvas.get_renderer()
    gap = gap_points * fig.dpi / 72
    for ax in fig.axes:
        for axis, low, high in ((ax.xaxis, "x0", "x1"), (ax.yaxis, "y0", "y1")):
            formatter = axis.get_major_formatter()
            if getattr(formatter, "func", None) is not step_label:
                continue
            kept = None
            for label in axis.get_ticklabels():
                if not label.get_visible() or not label.get_text():
                    continue
                extent = label.get_window_extent(renderer)
                if kept is not None and getattr(extent, low) < getattr(kept, high) + gap:
                    label.set_visible(False)
                else:
                    kept = extent


def save_figure(fig: Figure, png: str | Path, pdf: str | Path) -> list[Path]:
    """Write the PNG and the PDF atomically, without timestamps or software versions."""
    hide_crowded_step_labels(fig)
    paths = []
    for path, metadata in ((Path(png), {"Software": None}), (Path(pdf), {"CreationDate": None})):
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=PNG_DPI, metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def select_steps(steps: Sequence[int], requested: Sequence[int] = ()) -> list[int]:
    """The transfer-matrix panels' steps: those requested, else all (at most 6, evenly spaced)."""
    steps = sorted({int(step) for step in steps})
    if requested:
        missing = [step for step in requested if step not in steps]
        if missing:
            raise InputError(
                f"analysis.transfer_steps: step(s) {missing} not in the table (steps: {steps})"
            )
        return sorted({int(step) for step in requested})
    if len(steps) <= MAX_TRANSFER_PANELS:
        return steps
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, MAX_TRANSFER_PANELS)).astype(int))
    return [steps[i] for i in picks]


def line_with_band(ax, x, y, low, high, colour, marker, **kwargs) -> None:
    """A curve with its interval as a band (none where the interval is missing; a whisker
    where the curve is one point)."""
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    ax.plot(x, y, color=colour, marker=marker, markersize=3.5, linewidth=1.4, **kwargs)
    if low is not None:
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        if x.size == 1:  # one step: a band would have no width
            ax.vlines(x, low, high, color=colour, alpha=0.6, linewidth=1.2)
        elif np.isfinite(low).any():
            ax.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)


def view_label(view: str) -> str:
    return {"last": "last layer", "best": "best layer (dev)"}.get(view, view.replace("-", " "))


# ---------------------------------------------------------------- figures


@styled
def in_language_curves(
    scores: pd.DataFrame,
    baselines: pd.DataFrame,
    views: Sequence[str] = (),
    languages: Sequence[str] = (),
    tasks: Sequence[str] = (),
    metric_label: str = "test accuracy",
) -> Figure:
    """In-language test scores over steps: a row per view, a panel per task (titled with its task
    and view), a line per language with its interval band.

    ``scores`` has ``views.view_scores``'s columns; ``baselines`` has task, train_lang,
    test_lang, majority_accuracy (may be empty).
    """
    scores = scores[scores["train_lang"] == scores["test_lang"]]
    tasks = ordered(scores["task"], tasks or TASK_ORDER)
    views = ordered(scores["view"], views or ["last", "best"])
    languages = ordered(scores["train_lang"], languages)
    colours, markers = language_colours(languages), language_markers(languages)
    fig, axes = panel_grid(len(tasks) * len(views), columns=len(tasks), sharey=False)
    for ax, (view, task) in zip(axes, [(v, t) for v in views for t in tasks], strict=True):
        rows = scores[(scores["task"] == task) & (scores["view"] == view)]
        for lang in languages:
            curve = rows[rows["train_lang"] == lang].sort_values("step")
            if curve.empty:
                continue
            line_with_band(
                ax, curve["step"], curve["value"], curve["ci_low"], curve["ci_high"],
                colours[lang], markers[lang],
            )  # fmt: skip
            if baselines.empty:
                continue
            baseline = baselines[
                (baselines["task"] == task)
                & (baselines["train_lang"] == lang)
                & (baselines["test_lang"] == lang)
            ]
            if not baseline.empty:
                ax.axhline(
                    baseline["majority_accuracy"].iloc[0],
                    color=colours[lang],
                    linestyle="--",
                    linewidth=0.9,
                    alpha=0.8,
                )
        step_axis(ax, rows["step"] if not rows.empty else [0])
        if rows.empty:
            empty_note(ax, f"no {task} scores\nat the {view_label(view)}")
        ax.set_title(f"{task_label(task)}\n{view_label(view)}")
        ax.set_xlabel("pretraining step")
        ax.set_ylabel(metric_label)
    outer_ylabels(axes)
    handles = language_handles(languages, colours, markers)
    labels = list(languages)
    if not baselines.empty:
        handles.append(Line2D([], [], color="0.4", linestyle="--", linewidth=0.9))
        labels.append("majority class")
    figure_legend(fig, handles, labels, title="language (band: 95% CI)")
    return fig


@styled
def layer_heatmaps(scores: pd.DataFrame, tasks: Sequence[str] = ()) -> Figure:
    """In-language test accuracy per layer x step, mean over languages, a panel per task.

    ``scores`` has ``findings.layer_scores``'s columns (task, lang, step, layer, value).
    """
    rows = scores
    tasks = ordered(rows["task"], tasks or TASK_ORDER)
    fig, axes = panel_grid(len(tasks), sharey=False, width=PANEL_WIDTH + 0.6)
    for ax, task in zip(axes, tasks, strict=True):
        grid = rows[rows["task"] == task].pivot_table(
            index="layer", columns="step", values="value", aggfunc="mean"
        )
        grid = grid.sort_index(ascending=False)  # layer 0 (embeddings) at the bottom
        draw_heatmap(ax, grid, fmt=".2f", cbar_kws={"label": "test accuracy"})
        ax.set_title(task_label(task))
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("layer (0 = embeddings)")
    return fig


def draw_heatmap(
    ax,
    grid: pd.DataFrame,
    fmt: str,
    scale: float = 1.0,
    labels=None,
    vmin: float | None = None,
    vmax: float | None = None,
    square: bool = False,
    cbar: bool = True,
    cbar_kws: dict | None = None,
) -> None:
    """A heatmap of ``grid`` (its first row on top, NaN cells left blank), annotated with its
    values (or with ``labels``, same shape) when small enough to read, with a colour bar.

    Drawn with pcolormesh: seaborn's heatmap redraws the whole figure once per panel.
    """
    values = np.ma.masked_invalid(grid.to_numpy(dtype=float) * scale)
    mesh = ax.pcolormesh(
        values, cmap=HEATMAP, vmin=vmin, vmax=vmax, edgecolors="white", linewidth=0.3
    )
    rows, columns = values.shape
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    steps = grid.columns.name == "step"
    ax.set_xticks(
        np.arange(columns) + 0.5, [step_label(c) if steps else str(c) for c in grid.columns]
    )
    ax.set_yticks(np.arange(rows) + 0.5, [str(i) for i in grid.index])
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(grid.columns.name or "")
    ax.set_ylabel(grid.index.name or "")
    if grid.size <= 80:
        texts = labels if labels is not None else [[format(v, fmt) for v in row] for row in values]
        for (r, c), value in np.ndenumerate(values.filled(np.nan)):
            if np.isnan(value):
                continue
            ax.text(
                c + 0.5, r + 0.5, texts[r][c], ha="center", va="center",
                fontsize=6 if labels is None else 5, color=annotation_colour(mesh, value),
            )  # fmt: skip
    if square:
        ax.set_aspect("equal")
    if cbar:
        bar = ax.figure.colorbar(mesh, ax=ax, **(cbar_kws or {}))
        bar.outline.set_linewidth(0)


def annotation_colour(mesh, value: float) -> str:
    """Dark text on a light cell, white on a dark one (by relative luminance, as seaborn)."""
    rgb = np.asarray(mesh.cmap(mesh.norm(value))[:3])
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return ".15" if linear @ [0.2126, 0.7152, 0.0722] > 0.408 else "w"


@styled
def final_layer_gap(
    gaps: pd.DataFrame, languages: Sequence[str] = (), tasks: Sequence[str] = ()
) -> Figure:
    """Best transformer layer (chosen on dev) minus last layer over steps, a panel per task and a
    line per language with its paired-bootstrap band; a hollow marker is a step whose layer
    choice is unstable (made again by fewer than ``findings.STABLE_SHARE`` of the dev
    resamples). ``gaps`` has final_layer_gap.csv's columns."""
    tasks = ordered(gaps["task"], tasks or TASK_ORDER)
    languages = ordered(gaps["lang"], languages)
    colours, markers = language_colours(languages), language_markers(languages)
    fig, axes = panel_grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        rows = gaps[gaps["task"] == task]
        for lang in languages:
            curve = rows[rows["lang"] == lang].sort_values("step")
            if not curve.empty:
                line_with_band(
                    ax, curve["step"], curve["gap"], curve["ci_low"], curve["ci_high"],
                    colours[lang], markers[lang],
                )  # fmt: skip
                mark_unstable(ax, curve, "best_layer_stability", "gap", colours[lang],
                              markers[lang])  # fmt: skip
        ax.axhline(0, color="0.3", linewidth=0.8)
        step_axis(ax, rows["step"])
        ax.set_title(task_label(task))
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("best transformer layer\n− last layer")
    outer_ylabels(axes)
    handles = language_handles(languages, colours, markers)
    labels = list(languages)
    if "best_layer_stability" in gaps and (gaps["best_layer_stability"] < STABLE).any():
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white",
                              linestyle=""))  # fmt: skip
        labels.append(f"layer chosen by < {STABLE:.0%}\nof dev resamples")
    figure_legend(fig, handles, labels, "language (band: 95% CI)")
    return fig


def mark_unstable(ax, curve: pd.DataFrame, stability: str, value: str, colour, marker) -> None:
    """Hollow markers over the points whose dev choice is unstable (``stability`` below
    ``findings.STABLE_SHARE``; a table without the column marks none)."""
    if stability not in curve:
        return
    unstable = curve[curve[stability] < STABLE]
    ax.scatter(unstable["step"], unstable[value], marker=marker, s=14, facecolors="white",
               edgecolors=[colour], linewidths=0.9, zorder=5)  # fmt: skip


@styled
def onset(
    onsets: pd.DataFrame,
    tasks: Sequence[str] = (),
    fraction: float | None = None,
    views: Sequence[str] = (),
    steps: Sequence[int] = (),
) -> Figure:
    """Gain onsets per task, in-language curves vs transfer pairs, a panel per view.

    Every curve with an onset is a dot with its interval as a whisker; equal steps are spread
    sideways (no random jitter) and a bar marks the median. Curves without an onset (no
    ``onset_gain_step``: no measurable gain over the first step, or a run of one step) are not
    drawn: their count is written under each group, and a panel without any dot says why.
    ``steps``: the run's checkpoints, the step axis (else the onsets' range).
    """
    tasks = ordered(onsets["task"], tasks or TASK_ORDER)
    kinds = ordered(onsets["kind"], ["in-language", "transfer"])
    views = ordered(onsets["view"], views or ["last", "best"])
    steps = sorted({int(step) for step in steps})
    palette = sns.color_palette("colorblind", 2)
    colours = {"in-language": palette[0], "transfer": palette[1]}
    fig, axes = panel_grid(
        len(views), columns=1, sharey=True, width=min(7.0, 1.5 * len(tasks) + 1.5)
    )
    share = f"{fraction:.0%} of " if fraction else ""
    start = f"step {step_label(steps[0])}" if steps else "the first step"
    if len(steps) == 1:
        why = f"one checkpoint (step {step_label(steps[0])}):\nno gain over time to place an onset"
    else:
        why = f"no curve gained measurably over {start}"
    for ax, view in zip(axes, views, strict=True):
        centres, counts = [], []
        for t, task in enumerate(tasks):
            for k, kind in enumerate(kinds):
                centre = t + (k - (len(kinds) - 1) / 2) * 0.38
                group = onsets[
                    (onsets["task"] == task) & (onsets["kind"] == kind) & (onsets["view"] == view)
                ]
                learned = group.dropna(subset=["onset_gain_step"]).sort_values("onset_gain_step")
                censored = learned.get("onset_gain_censored", pd.Series(False, learned.index))
                missing = len(group) - len(learned)
                centres.append(centre)
                counts.append(f"{missing}× none" if missing else "")
                if learned.empty:
                    continue
                values = learned["onset_gain_step"].to_numpy(dtype=float)
                x, y = dot_positions(values, centre, width=0.3)
                ax.vlines(
                    x, learned["onset_gain_ci_low"], learned["onset_gain_ci_high"],
                    color=colours.get(kind, "0.5"), linewidth=0.6, alpha=0.6, zorder=2,
                )  # fmt: skip
                colour = colours.get(kind, "0.5")
                # reached by the first measured step ("by step s"): hollow, as nothing was
                # measured before it
                by_first = censored.astype(bool).to_numpy()
                ax.scatter(x[~by_first], y[~by_first], s=9, color=colour, linewidths=0, zorder=3)
                ax.scatter(x[by_first], y[by_first], s=11, facecolors="white", edgecolors=[colour],
                           linewidths=0.8, zorder=3)  # fmt: skip
                ax.hlines(np.median(values), centre - 0.17, centre + 0.17, color="0.15", zorder=4)
        if not has_onset(onsets, view):
            empty_note(ax, why)
        ax.set_xticks(range(len(tasks)), [task_label(task) for task in tasks])
        # the counts: a line of small labels under the task names, one per group
        ax.set_xticks(centres, counts, minor=True)
        major = ax.xaxis.get_major_ticks()[0]
        pad = major.get_pad() + major.get_tick_padding() + 1.25 * major.label1.get_fontsize()
        ax.tick_params(axis="x", which="minor", length=0, labelsize=6.5, pad=pad)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        reaching = f": reaching {share}the gain over {start}" if len(steps) != 1 else ""
        ax.set_title(view_label(view) + reaching)
        ax.set_ylabel("onset step")
        ax.grid(axis="x", visible=False)
    if not steps:
        onset_steps = pd.concat([onsets["onset_gain_ci_high"], onsets["onset_gain_step"]]).dropna()
        steps = [0, 1, *onset_steps.astype(float).round().astype(int)]
    step_axis(axes[0], steps, axis="y")
    handles = [Line2D([], [], color=colours[k], marker="o", linestyle="") for k in kinds]
    handles.append(Line2D([], [], color="0.15"))
    labels = [*kinds, "median"]
    if "onset_gain_censored" in onsets and onsets["onset_gain_censored"].astype(bool).any():
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white",
                              linestyle=""))  # fmt: skip
        labels.append("reached by the first\nmeasured step")
    # below the panels: on the right it would sit on the second panel's title
    figure_legend(fig, handles, labels, below=True)
    return fig


def has_onset(onsets: pd.DataFrame, view: str) -> bool:
    return bool(onsets.loc[onsets["view"] == view, "onset_gain_step"].notna().any())


def dot_positions(values: np.ndarray, centre: float, width: float):
    """x positions that spread equal values evenly around ``centre`` (a deterministic dot plot)."""
    values = np.sort(values)
    x = np.full(values.size, centre, dtype=float)
    for value in np.unique(values):
        same = np.flatnonzero(values == value)
        if same.size > 1:
            x[same] = centre + np.linspace(-width / 2, width / 2, same.size)
    return x, values


@styled
def transfer_matrices(
    cells: pd.DataFrame,
    task: str,
    steps: Sequence[int],
    views: Sequence[str] = (),
    languages: Sequence[str] = (),
) -> Figure:
    """Train x test test accuracy at each of ``steps``: a row per view, one shared colour scale,
    each cell annotated with its value and half its 95% interval (in points).

    ``cells`` are ``tables.transfer_cells`` rows (the cells of the transfer CSVs).
    """
    rows = cells[cells["task"] == task]
    rows = rows.assign(half_width=(rows["ci_high"] - rows["ci_low"]) / 2)
    views = ordered(rows["view"], views or ["last", "best"])
    languages = ordered(pd.concat([rows["train_lang"], rows["test_lang"]]), languages)
    side = max(0.45 * len(languages), MIN_MATRIX)  # inches: a matrix and its two-line title
    fig, axes = plt.subplots(
        len(views),
        len(steps),
        figsize=(side * len(steps) + 1.4, (side + 1.0) * len(views)),
        squeeze=False,
        layout="constrained",
    )
    scores = rows[rows["step"].isin(steps)]["value"] * 100
    vmin, vmax = float(scores.min()), float(scores.max())
    for r, view in enumerate(views):
        for i, step in enumerate(steps):
            ax = axes[r, i]
            cells = rows[(rows["step"] == step) & (rows["view"] == view)]
            grid, half = (
                cells.pivot(index="train_lang", columns="test_lang", values=values).reindex(
                    index=languages, columns=languages
                )
                for values in ("value", "half_width")
            )
            labels = [
                [cell_label(v, h) for v, h in zip(row_v, row_h, strict=True)]
                for row_v, row_h in zip(grid.to_numpy(), half.to_numpy(), strict=True)
            ]
            draw_heatmap(
                ax, grid, fmt=".0f", scale=100, labels=labels, vmin=vmin, vmax=vmax, square=True,
                cbar=i == len(steps) - 1,
                cbar_kws={"label": "accuracy (%)", "shrink": 0.8},
            )  # fmt: skip
            ax.set_title(f"step {step_label(step)}\n{view_label(view)}", fontsize=8)
            ax.set_xlabel("test language")
            ax.set_ylabel("train language" if i == 0 else "")
            if i:
                ax.set_yticklabels([])
    figure_title(
        fig,
        f"{task_label(task)}: cross-lingual transfer\n(test accuracy, % ± half the 95% interval)",
    )
    return fig


def cell_label(value: float, half_width: float) -> str:
    if np.isnan(value):
        return ""
    if not np.isfinite(half_width):
        return f"{100 * value:.0f}"
    return f"{100 * value:.0f}\n±{100 * half_width:.0f}"


@styled
def transfer_over_time(
    cells: pd.DataFrame, task: str, view: str = "last", languages: Sequence[str] = ()
) -> Figure:
    """Every pair's test accuracy over steps at one view: a panel per training language, a line
    per test language with its interval band."""
    rows = cells[(cells["task"] == task) & (cells["view"] == view)]
    languages = ordered(pd.concat([rows["train_lang"], rows["test_lang"]]), languages)
    train_languages = [lang for lang in languages if lang in set(rows["train_lang"])]
    colours, markers = language_colours(languages), language_markers(languages)
    fig, axes = panel_grid(len(train_languages))
    for ax, train in zip(axes, train_languages, strict=True):
        for test in languages:
            curve = rows[(rows["train_lang"] == train) & (rows["test_lang"] == test)]
            if curve.empty:
                continue
            curve = curve.sort_values("step")
            own = test == train
            line_with_band(
                ax, curve["step"], curve["value"], curve["ci_low"], curve["ci_high"],
                colours[test], markers[test], zorder=3 if own else 2,
                linestyle="-" if own else (0, (3, 1)),
            )  # fmt: skip
        step_axis(ax, rows["step"])
        ax.set_title(f"trained on {train}")
        ax.set_xlabel("pretraining step")
        ax.set_ylabel(f"test accuracy\n({view_label(view)})")
    outer_ylabels(axes)
    figure_title(fig, f"{task_label(task)}: transfer over pretraining (solid: in-language)")
    figure_legend(
        fig, language_handles(languages, colours, markers), languages, "test language (95% CI)"
    )
    return fig


@styled
def bpc(
    table: pd.DataFrame, languages: Sequence[str] = (), shares: dict[str, float] | None = None
) -> Figure:
    """Bits per character over steps per language; with ``shares``, the first and final step's
    BPC against each language's share of the pretraining data. One estimate, named on the axis:
    the model's own (pseudo-log-likelihood for a masked LM, autoregressive for a causal one),
    the masked-LM estimate where it is the only one."""
    metric = reported_metric(table)
    rows = table[(table["task"] == "bpc") & (table["metric"] == metric)]
    curves = rows[["test_lang", "step", "value", "ci_low", "ci_high"]]
    languages = ordered(curves["test_lang"], languages)
    colours, markers = language_colours(languages), language_markers(languages)
    shares = {lang: share for lang, share in (shares or {}).items() if lang in languages}
    fig, axes = panel_grid(2 if shares else 1, columns=2, sharey=True, width=PANEL_WIDTH + 0.4)
    for lang in languages:
        curve = curves[curves["test_lang"] == lang].sort_values("step")
        line_with_band(
            axes[0], curve["step"], curve["value"], curve["ci_low"], curve["ci_high"],
            colours[lang], markers[lang],
        )  # fmt: skip
    step_axis(axes[0], curves["step"])
    axes[0].set_xlabel("pretraining step")
    axes[0].set_ylabel(f"bits per character\n({METRIC_LABELS[metric]})")
    axes[0].set_title("held-out BPC")
    if shares:
        ax = axes[1]
        first, final = curves["step"].min(), curves["step"].max()
        seen: list[float] = []
        for lang, share in shares.items():
            left = seen.count(share) % 2  # same share as another: its name on the other side
            seen.append(share)
            curve = curves[curves["test_lang"] == lang].set_index("step")["value"]
            start, end = curve.get(first, np.nan), curve.get(final, np.nan)
            if first != final:
                ax.plot([share, share], [start, end], color=colours[lang], linewidth=1, alpha=0.6)
                ax.scatter([share], [start], facecolors="none", edgecolors=[colours[lang]], s=18)
            ax.scatter([share], [end], color=colours[lang], marker=markers[lang], s=18)
            ax.annotate(
                lang, (share, end), xytext=(-4 if left else 4, -3), textcoords="offset points",
                ha="right" if left else "left", fontsize=7,
            )  # fmt: skip
        ax.set_xlabel("share of pretraining data")
        ax.set_title(
            f"step {step_label(first)} (open) → {step_label(final)} (filled)"
            if first != final
            else f"step {step_label(final)}"
        )
    figure_legend(
        fig, language_handles(languages, colours, markers), languages, "language (band: 95% CI)"
    )
    return fig


@styled
def alignment_f1(table: pd.DataFrame) -> Figure:
    """Word-alignment F1 per layer x step, mean over target languages, a panel per method."""
    rows = table[table["task"].str.startswith("simalign") & (table["metric"] == "f1")]
    methods = sorted(rows["task"].unique())
    fig, axes = panel_grid(len(methods), columns=2, sharey=False, width=PANEL_WIDTH + 0.8)
    for ax, method in zip(axes, methods, strict=True):
        grid = rows[rows["task"] == method].pivot_table(
            index="layer", columns="step", values="value", aggfunc="mean"
        )
        draw_heatmap(ax, grid.sort_index(ascending=False), fmt=".2f", cbar_kws={"label": "F1"})
        ax.set_title(method.removeprefix("simalign-"))
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("layer (0 = embeddings)")
    figure_title(fig, "word alignment F1 (mean over target languages)")
    return fig


# ---------------------------------------------------------------- figures by name


@dataclass
class PlotInputs:
    """Everything the figures of one model are drawn from."""

    table: pd.DataFrame
    findings: Sequence[str | Path] = ()
    languages: Sequence[str] = ()
    tasks: Sequence[str] = ()
    transfer_steps: Sequence[int] = ()
    shares: dict[str, float] = field(default_factory=dict)
    onset_fraction: float | None = None
    views: Sequence[str] = field(kw_only=True)  # analysis.views, as view names

    def analysis_table(self, stem: str) -> pd.DataFrame:
        """One of ``analyse``'s tables (given with --findings), this model's rows."""
        path = next((Path(p) for p in self.findings if Path(p).stem == stem), None)
        if path is None:
            raise InputError(f"--findings: needs {stem}.csv (written by `analyse`)")
        if not path.exists():
            raise InputError(f"{path}: missing (run `python -m mlm_dynamics analyse` first)")
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        return frame[frame["model"].astype(str) == self.model]

    @property
    def model(self) -> str:
        return str(self.table["model"].iloc[0])

    @functools.cached_property
    def cells(self) -> pd.DataFrame:
        """Test scores at every view: the cells of the CSVs (views.view_scores)."""
        return view_scores(self.table, self.views)


# ---------------------------------------------------------------- drawing each registered figure
# One function per entry of figure_registry.FIGURES (by stem): the inputs, and the task of a
# per-task figure.


def _transfer_steps(inputs: PlotInputs, task: str) -> list[int]:
    steps = inputs.cells.loc[inputs.cells["task"] == task, "step"]
    return select_steps(steps, inputs.transfer_steps)


DRAW: dict[str, Callable[[PlotInputs, str | None], Figure]] = {
    "in-language-curves": lambda i, _: in_language_curves(
        i.cells, findings.majority_baselines(i.table), i.views, i.languages, i.tasks
    ),
    "layer-heatmaps": lambda i, _: layer_heatmaps(findings.layer_scores(i.table), i.tasks),
    "final-layer-gap": lambda i, _: final_layer_gap(
        i.analysis_table("final_layer_gap"), i.languages, i.tasks
    ),
    "onset": lambda i, _: onset(
        i.analysis_table("onset"), i.tasks, i.onset_fraction, i.views, probe_rows(i.table)["step"]
    ),
    "selectivity": lambda i, _: in_language_curves(
        view_scores(i.table, i.views, findings.SELECTIVITY_METRIC), pd.DataFrame(),
        i.views, i.languages, i.tasks, metric_label="selectivity\n(accuracy − control)",
    ),
    "transfer-matrices": lambda i, task: transfer_matrices(
        i.cells, task, _transfer_steps(i, task), i.views, i.languages
    ),
    "transfer-over-time": lambda i, task: transfer_over_time(
        i.cells, task, i.views[0], i.languages
    ),
    "bpc": lambda i, _: bpc(i.table, i.languages, i.shares),
    "alignment-f1": lambda i, _: alignment_f1(i.table),
}  # fmt: skip


def transfer_tasks(table: pd.DataFrame) -> list[str]:
    """Probe tasks with at least one cross-lingual pair."""
    rows = probe_rows(table)
    pairs = rows[rows["train_lang"] != rows["test_lang"]]
    return ordered(pairs["task"], TASK_ORDER)


def table_contents(table: pd.DataFrame) -> dict[str, bool]:
    """What one model's rows of the table hold, in the terms of figure_registry.NEEDS."""
    probes = probe_rows(table)
    return {
        "scores": bool((probes["train_lang"] == probes["test_lang"]).any()),
        "controls": not probe_rows(table, findings.SELECTIVITY_METRIC).empty,
        "bpc": reported_metric(table) is not None,
        "alignment": bool(
            (table["task"].str.startswith("simalign") & (table["metric"] == "f1")).any()
        ),
    }


def available_figures(table: pd.DataFrame) -> list[str]:
    """The figures one model's rows of the table can draw."""
    return figure_registry.figure_names(table_contents(table), transfer_tasks(table))


def draw(name: str, inputs: PlotInputs) -> Figure:
    """Draw the figure called ``name`` (one of ``available_figures``)."""
    if name not in available_figures(inputs.table):
        raise InputError(
            f"figure {name!r}: the table has no rows for it (model {inputs.model}; it can draw "
            f"{', '.join(available_figures(inputs.table)) or 'nothing'})"
        )
    spec, task = figure_registry.registered(name)
    return DRAW[spec.stem](inputs, task)


# ---------------------------------------------------------------- command


def parse_share(text: str) -> tuple[str, float]:
    lang, _, share = text.partition("=")
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not lang or not 0 <= value <= 1:
        raise InputError(f"--pretrain-share: {text!r} is not LANG=SHARE with 0 <= SHARE <= 1")
    return lang, value


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--table", required=True, help="the tidy table (.parquet or .csv)")
    parser.add_argument(
        "--findings",
        nargs="*",
        default=[],
        help="the `analyse` tables the figure reads (final_layer_gap.csv, onset.csv)",
    )
    parser.add_argument("--figure", required=True, help="the figure (see figure_registry.FIGURES)")
    parser.add_argument("--png", required=True, help="where the PNG goes")
    parser.add_argument("--pdf", required=True, help="where the PDF goes")
    parser.add_argument("--model", help="the model to draw (needed when the table has several)")
    parser.add_argument("--languages", nargs="*", default=[], help="language order in legends")
    parser.add_argument("--tasks", nargs="*", default=[], help="task order of the panels")
    parser.add_argument(
        "--transfer-steps",
        nargs="*",
        type=int,
        default=[],
        help="steps of the transfer matrices (default: all, at most 6 evenly spaced)",
    )
    parser.add_argument(
        "--pretrain-share",
        action="extend",
        nargs="+",
        default=[],
        metavar="LANG=SHARE",
        help="a language's share of the pretraining data, for the BPC figure (repeatable)",
    )
    parser.add_argument(
        "--onset-fraction", type=float, help="the onset fraction, for the onset figure's titles"
    )
    parser.add_argument(
        "--views", nargs="+", required=True, help="analysis.views: last, best, layer-N"
    )
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only; a notebook keeps its own backend
    table = read_table(args.table)
    models = sorted(table["model"].unique())
    if args.model is None and len(models) != 1:
        raise InputError(f"{args.table}: models {models}: choose one with --model")
    model = args.model or models[0]
    if model not in models:
        raise InputError(f"{args.table}: no rows for model {model!r} (models: {models})")
    inputs = PlotInputs(
        table=table[table["model"] == model].reset_index(drop=True),
        findings=args.findings,
        languages=args.languages,
        tasks=args.tasks,
        transfer_steps=args.transfer_steps,
        shares=dict(parse_share(text) for text in args.pretrain_share),
        onset_fraction=args.onset_fraction,
        views=[view_name(view) for view in args.views],
    )
    paths = save_figure(draw(args.figure, inputs), args.png, args.pdf)
    print(" ".join(str(path) for path in paths))
