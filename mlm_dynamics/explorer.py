"""``results/explorer.html``: one self-contained HTML page to explore a run, offline.

``python -m mlm_dynamics explorer --table T --analysis-dir D --views last best 8 --out HTML``
writes one file that opens from disk with no server and no network: plotly.js is embedded in
it, and the data goes in once, as JSON (``<script type="application/json" id="explorer-data">``),
from which the page's plain JavaScript builds every plot. Per model (a selector where the table
has several):

1. the transfer matrix (train x test language) of a task and layer view at a step (selectors and
   a step slider), test accuracy in %, the hover giving the cell's 95% interval and the layer it
   was read at: the cells of :func:`mlm_dynamics.analysis.tables.transfer_cells`, the same as the
   ``transfer-matrices`` CSVs;
2. clicking a cell draws that pair's curve over steps with its band, beside the in-language
   curves of both languages at the same view;
3. in-language test accuracy of every layer over steps (task and language selectors), and
   selectivity (accuracy - control accuracy) where the table has it;
4. bits per character (the estimate :func:`mlm_dynamics.bpc.reported_metric` picks, named on
   the axis), XNLI and SimAlign F1 over steps where the table has them;
5. the ``analyse`` tables (onset, final-layer gap, degradation) with a text filter.

Scores are stored in % rounded to 2 decimals (the page shows 1), BPC to 4 decimals, each array
per matrix or curve rather than per row: the XLM-R preset's shape projects to
:func:`projected_size`. Element ids are stable (``explorer-matrix`` etc.); the matrix's plotly
div holds the displayed step's numbers (``data[0].z``, ``customdata`` = low, high, layer) and
says what it shows in ``data-model``, ``data-task``, ``data-view`` and ``data-step``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlm_dynamics.analysis.findings import (
    ANALYSIS_TABLES,
    DEGRADATION_COLUMNS,
    GAP_COLUMNS,
    ONSET_COLUMNS,
    SELECTIVITY_METRIC,
)
from mlm_dynamics.analysis.tables import (
    WHOLE_MODEL,
    read_table,
    tidy_frame,
    tidy_table,
    transfer_cells,
)
from mlm_dynamics.analysis.views import probe_rows, view_name
from mlm_dynamics.atomic import atomic_path
from mlm_dynamics.bpc import METRIC_LABELS, reported_metric
from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import registry

TASK_ORDER = [*registry.TASKS, "xnli"]
TASK_LABELS = {**{name: task.title for name, task in registry.TASKS.items()}, "xnli": "XNLI"}
VIEW_ORDER = ["last", "best"]
PERCENT_DIGITS = 2  # scores in % with 2 decimals: the page shows 1
BPC_DIGITS = 4
# The XLM-R preset (configs/xlmr-replica.yaml): 39 steps, 12 layers + embeddings, 18 transfer
# languages of 44, three tasks (controls for pos and deprel), three views, BPC for all 44.
XLMR_SHAPE = dict(steps=39, layers=13, transfer=18, in_language=44,
                  tasks=("pos", "arc", "deprel"), controls=("pos", "deprel"),
                  views=("last", "best", "layer-8"), bpc=44)  # fmt: skip


# ---------------------------------------------------------------- data


def ordered(values, preferred: Sequence[str] = ()) -> list[str]:
    """``values`` in the preferred order first, then the rest sorted."""
    present = set(values)
    first = [value for value in preferred if value in present]
    return first + sorted(present - set(first))


def rounded(array: np.ndarray, scale: float = 1.0, digits: int = PERCENT_DIGITS) -> list:
    """A float array as nested lists, scaled and rounded, NaN as null."""
    values = np.round(np.asarray(array, dtype=float) * scale, digits)
    return np.where(np.isnan(values), None, values).tolist()


def integers(array: np.ndarray) -> list:
    """An integer array (-1 missing) as nested lists, missing as null."""
    array = np.asarray(array, dtype=np.int64)
    return np.where(array < 0, None, array).tolist()


def dense(frame: pd.DataFrame, axes: Sequence[tuple[str, Sequence]], columns: Sequence[str]):
    """The values of ``columns`` of ``frame`` as arrays indexed by ``axes`` ((column, its values
    in order), ...), NaN (or -1 for ``layer``) where the frame has no row."""
    shape = tuple(len(values) for _, values in axes)
    index = tuple(
        frame[column].map({value: i for i, value in enumerate(values)}).to_numpy()
        for column, values in axes
    )
    out = {}
    for column in columns:
        if column == "layer":
            array = np.full(shape, -1, dtype=np.int64)
        else:
            array = np.full(shape, np.nan)
        array[index] = frame[column].to_numpy()
        out[column] = array
    return out


def transfer_data(cells: pd.DataFrame, views: Sequence[str]) -> dict | None:
    """One task's matrices: the languages of its cross-lingual cells, and per view arrays
    [step][train][test] of value, low, high (in %) and [step][train] of the layer read."""
    pairs = cells[cells["train_lang"] != cells["test_lang"]]
    if pairs.empty:
        return None
    langs = sorted(set(pairs["train_lang"]) | set(pairs["test_lang"]))
    cells = cells[cells["train_lang"].isin(langs) & cells["test_lang"].isin(langs)]
    steps = sorted(int(step) for step in cells["step"].unique())
    out = {"langs": langs, "steps": steps, "views": {}}
    for view in views:
        rows = cells[cells["view"] == view]
        if rows.empty:
            continue
        axes = [("step", steps), ("train_lang", langs), ("test_lang", langs)]
        arrays = dense(rows, axes, ["value", "ci_low", "ci_high"])
        probes = rows.drop_duplicates(["step", "train_lang"])
        layers = dense(probes, axes[:2], ["layer"])["layer"]
        out["views"][view] = {
            "value": rounded(arrays["value"], 100),
            "low": rounded(arrays["ci_low"], 100),
            "high": rounded(arrays["ci_high"], 100),
            "layer": integers(layers),
        }
    return out


def curve_data(cells: pd.DataFrame, views: Sequence[str]) -> dict:
    """One task's in-language curves at each view: [lang][step] of value, low, high, layer."""
    own = cells[cells["train_lang"] == cells["test_lang"]]
    langs = sorted(own["train_lang"].unique())
    steps = sorted(int(step) for step in own["step"].unique())
    out = {"langs": langs, "steps": steps, "views": {}}
    for view in views:
        rows = own[own["view"] == view]
        if rows.empty:
            continue
        arrays = dense(rows, [("train_lang", langs), ("step", steps)],
                       ["value", "ci_low", "ci_high", "layer"])  # fmt: skip
        out["views"][view] = {
            "value": rounded(arrays["value"], 100),
            "low": rounded(arrays["ci_low"], 100),
            "high": rounded(arrays["ci_high"], 100),
            "layer": integers(arrays["layer"]),
        }
    return out


def layer_arrays(rows: pd.DataFrame, langs, layers, steps) -> dict:
    axes = [("train_lang", langs), ("layer", layers), ("step", steps)]
    arrays = dense(rows, axes, ["value", "ci_low", "ci_high"])
    return {
        "value": rounded(arrays["value"], 100),
        "low": rounded(arrays["ci_low"], 100),
        "high": rounded(arrays["ci_high"], 100),
    }


def in_language_data(table: pd.DataFrame) -> dict:
    """Per task: in-language test accuracy (and selectivity) [lang][layer][step], in %."""
    accuracy = probe_rows(table)
    accuracy = accuracy[accuracy["train_lang"] == accuracy["test_lang"]]
    selectivity = probe_rows(table, SELECTIVITY_METRIC)
    selectivity = selectivity[selectivity["train_lang"] == selectivity["test_lang"]]
    out = {}
    for task in ordered(accuracy["task"], TASK_ORDER):
        rows = accuracy[accuracy["task"] == task]
        control = selectivity[selectivity["task"] == task]
        langs = sorted(set(rows["train_lang"]) | set(control["train_lang"]))
        layers = sorted(int(layer) for layer in set(rows["layer"]) | set(control["layer"]))
        steps = sorted(int(step) for step in set(rows["step"]) | set(control["step"]))
        out[task] = {
            "title": TASK_LABELS.get(task, task),
            "langs": langs,
            "layers": layers,
            "steps": steps,
            "accuracy": layer_arrays(rows, langs, layers, steps),
            "selectivity": layer_arrays(control, langs, layers, steps)
            if not control.empty
            else None,
        }
    return out


def bpc_data(table: pd.DataFrame) -> dict | None:
    metric = reported_metric(table)
    if metric is None:
        return None
    rows = table[(table["task"] == "bpc") & (table["metric"] == metric)]
    rows = rows[rows["seed"] == 0] if (rows["seed"] == 0).any() else rows
    rows = rows.drop_duplicates(["test_lang", "step"])
    langs = sorted(rows["test_lang"].unique())
    steps = sorted(int(step) for step in rows["step"].unique())
    arrays = dense(rows, [("test_lang", langs), ("step", steps)], ["value", "ci_low", "ci_high"])
    return {
        "metric": metric,
        "label": METRIC_LABELS[metric],
        "langs": langs,
        "steps": steps,
        **{key: rounded(arrays[column], 1, BPC_DIGITS)
           for key, column in (("value", "value"), ("low", "ci_low"), ("high", "ci_high"))},
    }  # fmt: skip


def simalign_data(table: pd.DataFrame) -> dict:
    """Per SimAlign method: F1 (in %) [pair][layer][step], a pair per source and target."""
    rows = table[table["task"].str.startswith("simalign") & (table["metric"] == "f1")]
    if "test" in set(rows["split"]):
        rows = rows[rows["split"] == "test"]
    out = {}
    for method in sorted(rows["task"].unique()):
        own = rows[rows["task"] == method].drop_duplicates(
            ["train_lang", "test_lang", "layer", "step"]
        )
        own = own.assign(pair=own["train_lang"] + "→" + own["test_lang"])
        pairs = sorted(own["pair"].unique())
        layers = sorted(int(layer) for layer in own["layer"].unique())
        steps = sorted(int(step) for step in own["step"].unique())
        arrays = dense(own, [("pair", pairs), ("layer", layers), ("step", steps)],
                       ["value", "ci_low", "ci_high"])  # fmt: skip
        out[method] = {
            "title": method.removeprefix("simalign-"),
            "pairs": pairs,
            "layers": layers,
            "steps": steps,
            "value": rounded(arrays["value"], 100),
            "low": rounded(arrays["ci_low"], 100),
            "high": rounded(arrays["ci_high"], 100),
        }
    return out


def cell_text(value) -> str:
    """An analysis table's cell as the page shows it (as the CSV writes it: %.6g)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def analysis_data(analyses: Mapping[str, pd.DataFrame], model: str) -> dict:
    out = {}
    for stem, frame in analyses.items():
        rows = frame[frame["model"].astype(str) == model] if "model" in frame else frame
        out[stem] = {
            "columns": [str(column) for column in rows.columns],
            "rows": [[cell_text(value) for value in row] for row in rows.itertuples(index=False)],
        }
    return out


def model_data(
    model: str,
    table: pd.DataFrame,
    cells: pd.DataFrame,
    analyses: Mapping[str, pd.DataFrame],
    views: Sequence[str],
) -> dict:
    rows = table[table["model"] == model]
    cells = cells[cells["model"] == model] if not cells.empty else cells
    tasks = ordered(cells["task"], TASK_ORDER) if not cells.empty else []
    transfer, curves = {}, {}
    for task in tasks:
        own = cells[cells["task"] == task]
        curves[task] = {"title": TASK_LABELS.get(task, task), **curve_data(own, views)}
        matrix = transfer_data(own, views)
        if matrix is not None:
            transfer[task] = {"title": TASK_LABELS.get(task, task), **matrix}
    return {
        "name": model,
        "steps": sorted(int(step) for step in rows["step"].unique()),
        "views": [view for view in views if not cells.empty and (cells["view"] == view).any()],
        "transfer": transfer,
        "curves": curves,
        "inlang": in_language_data(rows),
        "bpc": bpc_data(rows),
        "simalign": simalign_data(rows),
        "analyses": analysis_data(analyses, model),
    }


def explorer_data(
    table: pd.DataFrame,
    cells_by_task: Mapping[str, pd.DataFrame],
    analyses: Mapping[str, pd.DataFrame],
    views: Sequence[str] = (),
) -> dict:
    """What the page embeds: per model, its matrices, curves and analysis rows."""
    if "pretrain_seed" in table:  # the model as a whole, not its runs (read_table's rows)
        table = table[table["pretrain_seed"] == WHOLE_MODEL]
    frames = [frame for frame in cells_by_task.values() if frame is not None and not frame.empty]
    cells = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model"])
    present = list(dict.fromkeys(cells["view"])) if "view" in cells else []
    views = [view for view in views if view in present] + ordered(
        set(present) - set(views), VIEW_ORDER
    )
    models = ordered(set(table["model"]) | set(cells["model"]))
    return {
        "views": {view: view_label(view) for view in views},
        "models": [model_data(model, table, cells, analyses, views) for model in models],
    }


def view_label(view: str) -> str:
    if view == "last":
        return "last layer"
    if view == "best":
        return "best layer (dev)"
    return view.replace("-", " ")


# ---------------------------------------------------------------- page


def page_json(data: dict) -> str:
    """The data as JSON safe inside a <script> element (no '<', '>' or '&' in it)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(data: dict) -> str:
    from plotly.offline import get_plotlyjs

    parts = {"PLOTLYJS": get_plotlyjs(), "DATA": page_json(data), "SCRIPT": SCRIPT}
    # one pass: what is put in is not searched for markers again
    return re.sub(r"/\*(PLOTLYJS|DATA|SCRIPT)\*/", lambda match: parts[match.group(1)], PAGE)


def build_explorer(
    table: pd.DataFrame,
    cells_by_task: Mapping[str, pd.DataFrame],
    analyses: Mapping[str, pd.DataFrame],
    out_path: str | Path,
    views: Sequence[str] = (),
) -> Path:
    """Write the explorer page to ``out_path`` (atomically).

    ``table``: the tidy table (:func:`read_table`); ``cells_by_task``: {task: cells} as
    :func:`transfer_cells` gives them, of one model or several (each frame's ``model`` and
    ``task`` columns are read); ``analyses``: {stem: frame} of ``analyse``'s tables (any of
    onset, final_layer_gap, degradation; read as text, see :func:`read_analyses`); ``views``: the
    configured order of the layer views (``last`` first by default).
    """
    out_path = Path(out_path)
    html = render(explorer_data(table, cells_by_task, analyses, views))
    with atomic_path(out_path, suffix=".html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out_path


def read_analyses(directory: str | Path) -> dict[str, pd.DataFrame]:
    """``analyse``'s tables in ``directory``, every cell as its CSV text."""
    directory = Path(directory)
    out = {}
    for stem in ANALYSIS_TABLES:
        path = directory / f"{stem}.csv"
        if not path.is_file():
            raise InputError(f"{path}: missing (run `python -m mlm_dynamics analyse` first)")
        try:
            out[stem] = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the table ({exc})") from exc
    return out


def all_cells(table: pd.DataFrame, views: Sequence[str]) -> dict[str, pd.DataFrame]:
    """{task: cells of every model} for every probe task with test accuracy rows."""
    rows = probe_rows(table)
    out: dict[str, list[pd.DataFrame]] = {}
    for model in ordered(rows["model"]):
        own = rows[rows["model"] == model]
        for task in ordered(own["task"], TASK_ORDER):
            out.setdefault(task, []).append(transfer_cells(table, model, task, views))
    return {task: pd.concat(frames, ignore_index=True) for task, frames in out.items()}


# ---------------------------------------------------------------- size of the XLM-R preset


def shape_table(
    steps: int,
    layers: int,
    transfer: int,
    in_language: int,
    tasks: Sequence[str],
    controls: Sequence[str] = (),
    bpc: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """A tidy table of a given shape with random scores (for :func:`projected_size`): test
    accuracy of every layer for every train x test pair of the ``transfer`` languages and
    in-language for all ``in_language`` languages, in-language dev accuracy, selectivity of the
    ``controls`` tasks, and BPC of ``bpc`` languages."""
    rng = np.random.default_rng(seed)
    langs = [f"l{i:02d}" for i in range(in_language)]
    step_values = [5000 * (i + 1) for i in range(steps)]
    pairs = [(a, b) for a in langs[:transfer] for b in langs[:transfer] if a != b]
    pairs += [(lang, lang) for lang in langs]
    frames = []

    def block(task, pair_list, split, metric, layer_values):
        grid = pd.MultiIndex.from_product(
            [range(len(pair_list)), step_values, layer_values], names=["pair", "step", "layer"]
        ).to_frame(index=False)
        value = rng.uniform(0.2, 0.95, len(grid))
        half = rng.uniform(0.005, 0.03, len(grid))
        frames.append(pd.DataFrame({
            "model": "xlmr", "step": grid["step"], "task": task, "layer": grid["layer"],
            "train_lang": [pair_list[i][0] for i in grid["pair"]],
            "test_lang": [pair_list[i][1] for i in grid["pair"]],
            "split": split, "seed": 0, "metric": metric, "value": value,
            "ci_low": value - half, "ci_high": value + half, "n": 1000, "pooling": "mean",
        }))  # fmt: skip

    own = [(lang, lang) for lang in langs]
    for task in tasks:
        block(task, pairs, "test", "accuracy", range(layers))
        block(task, own, "dev", "accuracy", range(layers))
        if task in controls:
            block(task, own, "test", SELECTIVITY_METRIC, range(layers))
    if bpc:
        block("bpc", [("", lang) for lang in langs[:bpc]], "test", "bpc_pll", [-1])
    return tidy_table(tidy_frame(pd.concat(frames, ignore_index=True)))


def shape_analyses(table: pd.DataFrame, views: Sequence[str], seed: int = 0):
    """``analyse``'s tables with the row count and columns of a table of this shape (random
    numbers as the CSV writes them)."""
    rng = np.random.default_rng(seed)
    accuracy = probe_rows(table)
    pairs = accuracy[["task", "train_lang", "test_lang"]].drop_duplicates()
    per_step = accuracy.loc[
        accuracy["train_lang"] == accuracy["test_lang"], ["task", "train_lang", "step"]
    ].drop_duplicates()

    def frame(keys: pd.DataFrame, columns):
        out = {}
        for column in columns:
            if column in keys:
                out[column] = keys[column].astype(str).to_numpy()
            elif column == "model":
                out[column] = "xlmr"
            elif column == "kind":
                own = keys["train_lang"] == keys["test_lang"]
                out[column] = np.where(own, "in-language", "transfer")
            elif column in ("status", "verdict"):
                out[column] = rng.choice(["within noise", "last layer is best", "onset"], len(keys))
            elif column == "interval_covers":
                out[column] = "test sentences"
            else:
                out[column] = [f"{v:.6g}" for v in rng.uniform(0, 1, len(keys))]
        return pd.DataFrame(out)[list(columns)]

    by_view = pd.concat([pairs.assign(view=view) for view in views], ignore_index=True)
    return {
        "onset": frame(by_view, ONSET_COLUMNS),
        "final_layer_gap": frame(per_step.rename(columns={"train_lang": "lang"}), GAP_COLUMNS),
        "degradation": frame(by_view, DEGRADATION_COLUMNS),
    }


def projected_size(**shape) -> int:
    """Bytes of the page of a table of ``shape`` (default :data:`XLMR_SHAPE`)."""
    shape = {**XLMR_SHAPE, **shape}
    views = list(shape.pop("views"))
    table = shape_table(**shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_explorer(
            table, all_cells(table, views), shape_analyses(table, views), Path(tmp) / "e.html",
            views,
        )  # fmt: skip
        return path.stat().st_size


# ---------------------------------------------------------------- command


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.description = "One self-contained HTML page to explore a run's results offline."
    parser.add_argument("--table", required=True, help="the tidy table, .parquet")
    parser.add_argument(
        "--analysis-dir", help="where analyse wrote onset.csv, final_layer_gap.csv, degradation.csv"
    )
    parser.add_argument("--views", nargs="+", required=True, help="last, best, N (analysis.views)")
    parser.add_argument("--out", required=True, help="the page, .html")
    args = parser.parse_args(argv)
    table = read_table(args.table)
    views = list(dict.fromkeys(view_name(view) for view in args.views))
    analyses = read_analyses(args.analysis_dir) if args.analysis_dir else {}
    build_explorer(table, all_cells(table, views), analyses, args.out, views)
    print(f"explorer -> {args.out}")


# ---------------------------------------------------------------- the page's HTML and JavaScript

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlm-dynamics explorer</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.controls { display: flex; flex-wrap: wrap; gap: 0.5em 1.2em; align-items: center; }
.controls label { white-space: nowrap; }
.row { display: flex; flex-wrap: wrap; gap: 1em; }
.plot { flex: 1 1 520px; min-width: 420px; height: 460px; }
.note { color: #555; font-size: 0.9em; max-width: 70em; }
#explorer-step { width: 22em; vertical-align: middle; }
.table-wrap { max-height: 32em; overflow: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 2px 6px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { position: sticky; top: 0; background: #f4f4f4; }
[hidden] { display: none !important; }
</style>
<script>/*PLOTLYJS*/</script>
</head>
<body>
<h1>mlm-dynamics explorer</h1>
<div class="controls">
<label id="explorer-model-box">model <select id="explorer-model"></select></label>
<label><input type="checkbox" id="explorer-logsteps"> log step axis (hides step 0)</label>
</div>
<p class="note">Test split, probe seed 0; accuracy in %; bands and brackets are 95% bootstrap
intervals over the test sentences (held-out sentences for BPC; for a model with pretraining
seeds, over the seeds, then the sentences). Layer views: <em>last</em> is the output layer,
<em>best</em> the layer of highest dev accuracy of the training language at that step, or a fixed
layer; layer 0 is the embeddings.</p>

<section id="section-transfer">
<h2>Transfer matrix</h2>
<div class="controls">
<label>task <select id="explorer-task"></select></label>
<label>view <select id="explorer-view"></select></label>
<label>step <input type="range" id="explorer-step" min="0" max="0" step="1" value="0">
<output id="explorer-step-label"></output></label>
</div>
<div class="row">
<div id="explorer-matrix" class="plot"></div>
<div id="explorer-pair" class="plot"></div>
</div>
<p class="note">Rows: the probe's training language; columns: the test language. Click a cell
for that pair's curve over steps, beside the in-language curves of both languages.</p>
</section>

<section id="section-inlang">
<h2>In-language, every layer</h2>
<div class="controls">
<label>task <select id="explorer-inlang-task"></select></label>
<label>language <select id="explorer-inlang-lang"></select></label>
</div>
<div class="row">
<div id="explorer-inlang-accuracy" class="plot"></div>
<div id="explorer-inlang-selectivity" class="plot"></div>
</div>
</section>

<section id="section-bpc">
<h2>Bits per character</h2>
<div id="explorer-bpc" class="plot"></div>
</section>

<section id="section-xnli">
<h2>XNLI</h2>
<div id="explorer-xnli" class="plot"></div>
</section>

<section id="section-simalign">
<h2>Word alignment (SimAlign)</h2>
<div class="controls">
<label>method <select id="explorer-simalign-method"></select></label>
<label>layer <select id="explorer-simalign-layer"></select></label>
</div>
<div id="explorer-simalign" class="plot"></div>
</section>

<section id="section-analyses">
<h2>Analysis verdicts</h2>
<div class="controls">
<label>table <select id="explorer-analysis"></select></label>
<label>filter <input type="search" id="explorer-filter" size="40"
placeholder="words, all must match (e.g. pos transfer degraded)"></label>
<span id="explorer-analysis-count"></span>
</div>
<div class="table-wrap"><table id="explorer-analysis-table"><thead></thead><tbody></tbody>
</table></div>
</section>

<script type="application/json" id="explorer-data">/*DATA*/</script>
<script>/*SCRIPT*/</script>
</body>
</html>
"""

SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var CONFIG = {responsive: true, displaylogo: false};
  var COLOURS = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
                 "#949494", "#ece133", "#56b4e9"];
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var MAX_ROWS = 500;
  var state = {model: 0, task: null, view: null, step: null, pair: null};
  var clickBound = false;

  function model() { return DATA.models[state.model]; }
  function colour(i) { return COLOURS[i % COLOURS.length]; }
  function rgba(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  function viridis(t) {
    var x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    var c = VIRIDIS[i].map(function (v, k) { return Math.round(v + f * (VIRIDIS[i + 1][k] - v)); });
    return "rgb(" + c.join(",") + ")";
  }
  function fill(select, values, labels, keep) {
    select.innerHTML = "";
    values.forEach(function (value, i) {
      var option = document.createElement("option");
      option.value = String(value);
      option.textContent = labels ? labels[i] : String(value);
      select.appendChild(option);
    });
    var wanted = values.map(String).indexOf(String(keep));
    select.selectedIndex = wanted >= 0 ? wanted : 0;
    return values.length ? select.value : null;
  }
  function stepAxis() {
    var log = $("explorer-logsteps").checked;
    return {title: {text: "pretraining step"}, type: log ? "log" : "linear"};
  }
  function show(id, visible) { $(id).hidden = !visible; }
  function clear(id) { if ($(id).data) { Plotly.purge($(id)); } }
  function viewLabel(view) { return DATA.views[view] || view; }

  // a curve with its interval band: [band, line]
  function curve(name, hex, steps, value, low, high, layer, group, dash) {
    var bx = [], lo = [], hi = [];
    steps.forEach(function (step, i) {
      if (low[i] !== null && high[i] !== null) { bx.push(step); lo.push(low[i]); hi.push(high[i]); }
    });
    var band = {type: "scatter", mode: "lines", x: bx.concat(bx.slice().reverse()),
      y: lo.concat(hi.slice().reverse()), fill: "toself", fillcolor: rgba(hex, 0.18),
      line: {width: 0}, hoverinfo: "skip", showlegend: false, legendgroup: group};
    var custom = steps.map(function (_, i) { return [low[i], high[i], layer ? layer[i] : null]; });
    var line = {type: "scatter", mode: "lines+markers", name: name, x: steps, y: value,
      customdata: custom, line: {color: hex, dash: dash || "solid"}, marker: {size: 5},
      legendgroup: group, hovertemplate: "%{fullData.name}, step %{x}: %{y:.1f} " +
      "[%{customdata[0]:.1f}, %{customdata[1]:.1f}]" + (layer ? ", layer %{customdata[2]}" : "") +
      "<extra></extra>"};
    return [band, line];
  }

  // ------------------------------------------------------------ transfer matrix
  function setupTransfer() {
    var m = model(), tasks = Object.keys(m.transfer);
    show("section-transfer", tasks.length > 0);
    if (!tasks.length) { clear("explorer-matrix"); clear("explorer-pair"); return; }
    state.task = fill($("explorer-task"), tasks,
      tasks.map(function (t) { return m.transfer[t].title; }), state.task);
    setupViews();
  }
  function setupViews() {
    var t = model().transfer[state.task], views = Object.keys(t.views);
    state.view = fill($("explorer-view"), views, views.map(viewLabel), state.view);
    var slider = $("explorer-step"), old = state.step, index = 0;
    t.steps.forEach(function (step, i) {
      if (old !== null && Math.abs(step - old) < Math.abs(t.steps[index] - old)) { index = i; }
    });
    slider.max = String(t.steps.length - 1);
    slider.value = String(old === null ? t.steps.length - 1 : index);
    if (!state.pair || t.langs.indexOf(state.pair[0]) < 0 || t.langs.indexOf(state.pair[1]) < 0) {
      state.pair = [t.langs[0], t.langs[t.langs.length > 1 ? 1 : 0]];
    }
    drawMatrix();
    drawPair();
  }
  function drawMatrix() {
    var m = model(), t = m.transfer[state.task], v = t.views[state.view];
    var s = Number($("explorer-step").value), step = t.steps[s];
    state.step = step;
    $("explorer-step-label").textContent = String(step);
    var zmin = Infinity, zmax = -Infinity;
    v.value.forEach(function (matrix) { matrix.forEach(function (row) { row.forEach(function (z) {
      if (z !== null) { zmin = Math.min(zmin, z); zmax = Math.max(zmax, z); } }); }); });
    var custom = v.value[s].map(function (row, i) {
      return row.map(function (_, j) { return [v.low[s][i][j], v.high[s][i][j], v.layer[s][i]]; });
    });
    var trace = {type: "heatmap", x: t.langs, y: t.langs, z: v.value[s], customdata: custom,
      colorscale: "Viridis", zmin: zmin, zmax: zmax, hoverongaps: false, xgap: 1, ygap: 1,
      colorbar: {title: {text: "accuracy (%)"}},
      hovertemplate: "train %{y} → test %{x}<br>accuracy %{z:.1f}%<br>" +
        "95% CI [%{customdata[0]:.1f}, %{customdata[1]:.1f}]<br>layer %{customdata[2]}" +
        "<extra></extra>"};
    if (t.langs.length <= 20) { trace.texttemplate = "%{z:.0f}"; trace.textfont = {size: 10}; }
    var layout = {title: {text: t.title + ", " + viewLabel(state.view) + ", step " + step},
      xaxis: {title: {text: "test language"}, type: "category"},
      yaxis: {title: {text: "train language"}, type: "category", autorange: "reversed"},
      margin: {t: 60, l: 70, r: 20, b: 60}};
    var div = $("explorer-matrix");
    Plotly.react(div, [trace], layout, CONFIG);
    div.setAttribute("data-model", m.name);
    div.setAttribute("data-task", state.task);
    div.setAttribute("data-view", state.view);
    div.setAttribute("data-step", String(step));
    if (!clickBound) {
      clickBound = true;
      div.on("plotly_click", function (event) {
        var point = event.points[0];
        state.pair = [String(point.y), String(point.x)];
        drawPair();
      });
    }
  }
  function drawPair() {
    var m = model(), t = m.transfer[state.task], v = t.views[state.view];
    var i = t.langs.indexOf(state.pair[0]), j = t.langs.indexOf(state.pair[1]);
    var pick = function (a, row, col) { return a.map(function (mat) { return mat[row][col]; }); };
    var traces = curve(state.pair[0] + " → " + state.pair[1], colour(0), t.steps,
      pick(v.value, i, j), pick(v.low, i, j), pick(v.high, i, j),
      v.layer.map(function (mat) { return mat[i]; }), "pair");
    var c = m.curves[state.task], cv = c && c.views[state.view];
    [state.pair[0], state.pair[1]].forEach(function (lang, k) {
      var at = c ? c.langs.indexOf(lang) : -1;
      if (!cv || at < 0 || (k === 1 && state.pair[0] === state.pair[1])) { return; }
      traces = traces.concat(curve(lang + " (in-language)", colour(k + 1), c.steps, cv.value[at],
        cv.low[at], cv.high[at], cv.layer[at], "own" + k, "dot"));
    });
    var layout = {title: {text: state.pair[0] + " → " + state.pair[1] + " over steps, " +
      viewLabel(state.view)}, xaxis: stepAxis(), yaxis: {title: {text: "test accuracy (%)"}},
      legend: {orientation: "h", y: -0.2}, margin: {t: 60, l: 60, r: 20, b: 60},
      shapes: [{type: "line", x0: state.step, x1: state.step, yref: "paper", y0: 0, y1: 1,
        line: {color: "#888", dash: "dot", width: 1}}]};
    Plotly.react($("explorer-pair"), traces, layout, CONFIG);
    $("explorer-pair").setAttribute("data-pair", state.pair[0] + "," + state.pair[1]);
  }

  // ------------------------------------------------------------ in-language layers
  function setupInlang() {
    var m = model(), tasks = Object.keys(m.inlang);
    show("section-inlang", tasks.length > 0);
    if (!tasks.length) { return; }
    fill($("explorer-inlang-task"), tasks, tasks.map(function (t) { return m.inlang[t].title; }),
      $("explorer-inlang-task").value);
    setupInlangLang();
  }
  function setupInlangLang() {
    var d = model().inlang[$("explorer-inlang-task").value];
    fill($("explorer-inlang-lang"), d.langs, null, $("explorer-inlang-lang").value);
    drawInlang();
  }
  function layerTraces(d, block, at) {
    var n = d.layers.length;
    return d.layers.map(function (layer, k) {
      var custom = d.steps.map(function (_, s) {
        return [block.low[at][k][s], block.high[at][k][s]];
      });
      return {type: "scatter", mode: "lines+markers", name: "layer " + layer, x: d.steps,
        y: block.value[at][k], customdata: custom, marker: {size: 4},
        line: {color: viridis(n > 1 ? 0.85 * k / (n - 1) : 0)},  // no pale yellow
        hovertemplate: "layer " + layer + ", step %{x}: %{y:.1f} " +
          "[%{customdata[0]:.1f}, %{customdata[1]:.1f}]<extra></extra>"};
    });
  }
  function drawInlang() {
    var task = $("explorer-inlang-task").value, d = model().inlang[task];
    var lang = $("explorer-inlang-lang").value, at = d.langs.indexOf(lang);
    Plotly.react($("explorer-inlang-accuracy"), layerTraces(d, d.accuracy, at),
      {title: {text: d.title + ", " + lang + ": test accuracy per layer"}, xaxis: stepAxis(),
       yaxis: {title: {text: "test accuracy (%)"}}, margin: {t: 60, l: 60, r: 20, b: 50}}, CONFIG);
    var sel = $("explorer-inlang-selectivity");
    show("explorer-inlang-selectivity", d.selectivity !== null);
    if (d.selectivity === null) { clear("explorer-inlang-selectivity"); return; }
    Plotly.react(sel, layerTraces(d, d.selectivity, at),
      {title: {text: d.title + ", " + lang + ": selectivity per layer"}, xaxis: stepAxis(),
       yaxis: {title: {text: "selectivity (accuracy − control, points)"}},
       margin: {t: 60, l: 60, r: 20, b: 50}}, CONFIG);
  }

  // ------------------------------------------------------------ BPC, XNLI, SimAlign
  function drawBpc() {
    var b = model().bpc;
    show("section-bpc", b !== null);
    if (b === null) { clear("explorer-bpc"); return; }
    var traces = [];
    b.langs.forEach(function (lang, i) {
      traces = traces.concat(curve(lang, colour(i), b.steps, b.value[i], b.low[i], b.high[i],
        null, lang));
    });
    Plotly.react($("explorer-bpc"), traces, {title: {text: "held-out bits per character"},
      xaxis: stepAxis(), yaxis: {title: {text: "bits per character (" + b.label + ")"}},
      margin: {t: 60, l: 70, r: 20, b: 50}}, CONFIG);
  }
  function drawXnli() {
    var c = model().curves.xnli;
    var view = c && (c.views[state.view] ? state.view : Object.keys(c.views)[0]);
    show("section-xnli", Boolean(c && view));
    if (!c || !view) { clear("explorer-xnli"); return; }
    var v = c.views[view], traces = [];
    c.langs.forEach(function (lang, i) {
      traces = traces.concat(curve(lang, colour(i), c.steps, v.value[i], v.low[i], v.high[i],
        v.layer[i], lang));
    });
    Plotly.react($("explorer-xnli"), traces, {
      title: {text: "XNLI, in-language, " + viewLabel(view)}, xaxis: stepAxis(),
      yaxis: {title: {text: "test accuracy (%)"}}, margin: {t: 60, l: 60, r: 20, b: 50}}, CONFIG);
  }
  function setupSimalign() {
    var s = model().simalign, methods = Object.keys(s);
    show("section-simalign", methods.length > 0);
    if (!methods.length) { clear("explorer-simalign"); return; }
    var method = fill($("explorer-simalign-method"), methods,
      methods.map(function (k) { return s[k].title; }), $("explorer-simalign-method").value);
    var layers = s[method].layers;
    fill($("explorer-simalign-layer"), layers, null,
      $("explorer-simalign-layer").value || layers[layers.length - 1]);
    drawSimalign();
  }
  function drawSimalign() {
    var d = model().simalign[$("explorer-simalign-method").value];
    var layer = Number($("explorer-simalign-layer").value), k = d.layers.indexOf(layer);
    var traces = [];
    d.pairs.forEach(function (pair, i) {
      traces = traces.concat(curve(pair, colour(i), d.steps, d.value[i][k], d.low[i][k],
        d.high[i][k], null, pair));
    });
    Plotly.react($("explorer-simalign"), traces, {title: {text: "SimAlign " + d.title +
      ", layer " + layer}, xaxis: stepAxis(), yaxis: {title: {text: "alignment F1 (%)"}},
      margin: {t: 60, l: 60, r: 20, b: 50}}, CONFIG);
  }

  // ------------------------------------------------------------ analysis tables
  function setupAnalyses() {
    var a = model().analyses, stems = Object.keys(a);
    show("section-analyses", stems.length > 0);
    if (!stems.length) { return; }
    fill($("explorer-analysis"), stems, stems.map(function (s) { return s.replace(/_/g, " "); }),
      $("explorer-analysis").value);
    drawAnalysis();
  }
  function drawAnalysis() {
    var a = model().analyses[$("explorer-analysis").value];
    var words = $("explorer-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = a.rows.filter(function (row) {
      var text = row.join("\t").toLowerCase();
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    var table = $("explorer-analysis-table");
    var head = document.createElement("tr");
    a.columns.forEach(function (c) {
      var th = document.createElement("th"); th.textContent = c; head.appendChild(th);
    });
    table.tHead.replaceChildren(head);
    var body = document.createDocumentFragment();
    rows.slice(0, MAX_ROWS).forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var td = document.createElement("td"); td.textContent = cell; tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.tBodies[0].replaceChildren(body);
    $("explorer-analysis-count").textContent = rows.length + " of " + a.rows.length + " rows" +
      (rows.length > MAX_ROWS ? " (first " + MAX_ROWS + " shown)" : "");
    table.setAttribute("data-rows", String(rows.length));
  }

  // ------------------------------------------------------------ wiring
  function drawModel() {
    var steps = model().steps;  // a log axis where the steps span decades from a step > 0
    $("explorer-logsteps").checked = steps.length > 1 && steps[0] > 0 &&
      steps[steps.length - 1] / steps[0] >= 100;
    setupTransfer();
    setupInlang();
    drawBpc();
    drawXnli();
    setupSimalign();
    setupAnalyses();
  }
  function redrawSteps() {
    if (Object.keys(model().transfer).length) { drawPair(); }
    if (Object.keys(model().inlang).length) { drawInlang(); }
    drawBpc(); drawXnli();
    if (Object.keys(model().simalign).length) { drawSimalign(); }
  }
  fill($("explorer-model"), DATA.models.map(function (_, i) { return i; }),
    DATA.models.map(function (m) { return m.name; }), 0);
  show("explorer-model-box", DATA.models.length > 1);
  $("explorer-model").addEventListener("change", function () {
    state.model = Number(this.value); drawModel();
  });
  $("explorer-task").addEventListener("change", function () {
    state.task = this.value; setupViews();
  });
  $("explorer-view").addEventListener("change", function () {
    state.view = this.value; drawMatrix(); drawPair(); drawXnli();
  });
  $("explorer-step").addEventListener("input", function () { drawMatrix(); drawPair(); });
  $("explorer-inlang-task").addEventListener("change", setupInlangLang);
  $("explorer-inlang-lang").addEventListener("change", drawInlang);
  $("explorer-simalign-method").addEventListener("change", setupSimalign);
  $("explorer-simalign-layer").addEventListener("change", drawSimalign);
  $("explorer-analysis").addEventListener("change", drawAnalysis);
  $("explorer-filter").addEventListener("input", drawAnalysis);
  $("explorer-logsteps").addEventListener("change", redrawSteps);
  if (DATA.models.length) { drawModel(); }
  window.explorer = {data: DATA, state: state};
  document.body.setAttribute("data-ready", "true");
})();
"""
