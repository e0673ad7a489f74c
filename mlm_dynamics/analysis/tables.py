"""The tidy results table and the cross-lingual transfer matrices drawn from it.

Every scoring job writes a parquet file with exactly the columns of :data:`COLUMNS` (one row per
model, step, task, layer, train_lang, test_lang, split, seed and metric; ``value`` with its
bootstrap interval ``ci_low``/``ci_high``); ``collect-table`` concatenates them into
``results/tables/probing.parquet`` (+ ``.csv``), sorted by the key columns so that the same inputs
always give the same bytes (:func:`read_table` reads it back, checked and in that order).
``transfer-matrices`` reads that table and writes, per model and task, the train x test language
matrices of every step at every configured layer view
(:func:`mlm_dynamics.analysis.views.view_layers`: ``last``, ``best`` chosen on the training
language's dev split, ``layer-N``), test split, seed 0:

- ``{step}_{view}.csv``: the matrix of test accuracies;
- ``cells.csv``: every cell in long form, with the layer it was read at and its interval; the
  transfer figures draw exactly these cells.

The output directory is written as a whole (one Snakemake output per model and task).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlm_dynamics.errors import InputError

COLUMNS = {
    "model": "str",
    "step": "int64",
    "task": "str",
    "layer": "int64",
    "train_lang": "str",
    "test_lang": "str",
    "split": "str",
    "seed": "int64",
    "metric": "str",
    "value": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "n": "int64",
    "pooling": "str",
}
# How a row's vectors were pooled from subwords (the cache index's pooling: mean, first, last);
# "" for rows read from no word vectors (BPC). Score files written before it lack the column.
POOLING = "pooling"
# The tidy table splits a score file's model (a run's name, sources.runs.run_name) into the model
# and the pretraining seed of the run (``pretrain_seed``), and adds what each row's interval
# resamples (:func:`interval_covers`): a score file does not repeat it on every row.
TABLE_COLUMNS = {
    "model": "str", "pretrain_seed": "int64", **{c: t for c, t in COLUMNS.items() if c != "model"},
    "interval_covers": "str",
}  # fmt: skip
# The pretrain_seed of the rows of a model as a whole: its one run's scores (a model without
# seeds), or the mean over its seeds (analysis.seeds), whose intervals resample seeds too. The
# analyses, transfer matrices and figures read these rows (read_table); a model with seeds also
# has one row per seed (pretrain_seed >= 0), each the score of one run.
WHOLE_MODEL = -1
KEY = [
    "model", "pretrain_seed", "step", "task", "layer", "train_lang", "test_lang", "split",
    "seed", "metric",
]  # fmt: skip
# sort order of the table: readable blocks, then the key
SORT = [
    "model", "pretrain_seed", "task", "metric", "split", "step", "train_lang", "test_lang",
    "layer", "seed",
]  # fmt: skip
# The majority-class baseline of a probe (the accuracy of always answering its training split's
# majority label): one row per probe, seed and evaluation set, at this layer, as it reads none.
BASELINE_METRIC = "majority_accuracy"
BASELINE_LAYER = -1


def interval_covers(table):
    """What the interval of each row of one pretraining run covers: the sentences (sentence
    pairs for XNLI and SimAlign, held-out sentences for BPC) of its evaluation set, resampled;
    "none" where a row has no interval. Nothing else: a probe's row is one fit (its seeds >= 1
    are rows of their own), a selectivity row one control-label draw. The rows of a model with
    seeds say more (analysis.seeds)."""
    task = table["task"].astype(str)
    pairs = task.eq("xnli") | task.str.startswith("simalign")
    split = table["split"].astype(str).where(~task.eq("bpc"), "held-out")
    covers = split + pairs.map({True: " sentence pairs", False: " sentences"})
    return covers.where(table["ci_low"].notna() | table["ci_high"].notna(), "none")


def tidy_frame(records):
    """A DataFrame with exactly the table's columns and types, from dicts or a DataFrame."""
    import pandas as pd

    frame = pd.DataFrame(records, columns=list(COLUMNS))
    frame[POOLING] = frame[POOLING].astype(object).fillna("")
    return frame.astype(COLUMNS)


def check_columns(frame, path) -> None:
    names = list(frame.columns) + ([POOLING] if POOLING not in frame.columns else [])
    if sorted(names) != sorted(COLUMNS):
        missing = sorted(set(COLUMNS) - set(names))
        extra = sorted(set(names) - set(COLUMNS))
        raise InputError(f"{path}: not a score table (missing columns {missing}, extra {extra})")


def read_scores(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such score table")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{path}: not a parquet table ({exc})") from None
    check_columns(frame, path)
    if POOLING not in frame.columns:
        frame[POOLING] = ""
    try:
        return frame[list(COLUMNS)].astype(COLUMNS)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: a column has the wrong type ({exc})") from None


def read_table(path, runs: bool = False):
    """The tidy table (.parquet, or the .csv beside it), checked for its columns and sorted so
    that every result is reproducible: the rows of each model as a whole (``WHOLE_MODEL``), and
    with ``runs`` also the rows of each seed of a model with seeds."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:  # "" is the only missing value: a language code like "nan" stays a string
            na = {column: [""] for column in ("value", "ci_low", "ci_high")}
            table = pd.read_csv(path, keep_default_na=False, na_values=na)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the table ({exc})") from exc
    table = tidy_table(table, source=str(path))
    if runs:
        return table
    return table[table["pretrain_seed"] == WHOLE_MODEL].reset_index(drop=True)


def tidy_table(table, source: str = "table"):
    """A data frame with the tidy columns and types, sorted; ``source`` names it in errors."""
    if POOLING not in table.columns:
        table = table.assign(**{POOLING: ""})
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    table = table[[column for column in TABLE_COLUMNS if column in table.columns]].copy()
    for column in ("train_lang", "test_lang", POOLING):
        table[column] = table[column].fillna("")
    if "pretrain_seed" not in table:  # a table of runs without seeds
        table.insert(1, "pretrain_seed", WHOLE_MODEL)
    if "interval_covers" not in table:
        table["interval_covers"] = interval_covers(table)
    try:
        table = table.astype({column: TABLE_COLUMNS[column] for column in TABLE_COLUMNS})
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: a column has the wrong type ({exc})") from exc
    return table.sort_values(SORT, kind="stable").reset_index(drop=True)


def collect(paths):
    """The rows of every score file, concatenated and sorted, each run's model split into model
    and ``pretrain_seed`` (the rows of a model with seeds as a whole are ``analysis.seeds``'). A
    key twice is an error."""
    import pandas as pd

    from mlm_dynamics.sources.runs import split_run

    frames = []
    for path in paths:
        frame = read_scores(path)
        frame["source"] = str(path)
        frames.append(frame)
    if not frames:
        raise InputError("collect-table: no --inputs")
    table = pd.concat(frames, ignore_index=True)
    models, seeds = zip(*(split_run(name) for name in table["model"]), strict=True)
    table["model"] = list(models)
    table.insert(1, "pretrain_seed", [WHOLE_MODEL if seed is None else seed for seed in seeds])
    duplicated = table.duplicated(KEY, keep=False)
    if duplicated.any():
        clash = table[duplicated].sort_values(KEY).head(2)
        row = ", ".join(f"{k}={clash.iloc[0][k]}" for k in KEY)
        files = " and ".join(dict.fromkeys(clash["source"]))
        raise InputError(f"{files}: the same row ({row}) is in more than one input")
    table = table.drop(columns="source")
    table["interval_covers"] = interval_covers(table)
    return sorted_table(table)


def sorted_table(table):
    """The table's columns, types and row order."""
    return table.astype(TABLE_COLUMNS).sort_values(SORT, kind="mergesort", ignore_index=True)


def save_outputs(table, parquet, csv) -> None:
    from mlm_dynamics.atomic import atomic_path, save_table

    save_table(parquet, table)  # pandas + pyarrow parquet carries no timestamp
    if csv:
        # repr-exact floats (%.17g would print 0.1 as 0.10000000000000001): shortest round trip
        with atomic_path(csv, suffix=".csv") as tmp:
            out = table.copy()
            out["value"] = [np.format_float_positional(v, unique=True, trim="-") for v in out.value]
            out.to_csv(tmp, index=False, lineterminator="\n")


# ---------------------------------------------------------------- transfer matrices


def transfer_cells(table, model: str, task: str, views, source: str = "table"):
    """Every train x test cell of one model and task at every view (views.view_scores rows)."""
    from mlm_dynamics.analysis.views import view_scores

    rows = table[(table.model == model) & (table.task == task)]
    cells = view_scores(rows, views)
    if cells.empty:
        raise InputError(f"{source}: no {task} test accuracy rows for model {model!r}")
    return cells


def transfer_matrix(cells, step: int, view: str, languages):
    """Train x test matrix at one step and view (NaN where not scored)."""
    chosen = cells[(cells.step == step) & (cells.view == view)]
    matrix = chosen.pivot(index="train_lang", columns="test_lang", values="value")
    matrix = matrix.reindex(index=languages, columns=languages)
    matrix.index.name = "train_lang"
    matrix.columns.name = None
    return matrix


def transfer_matrices(table, model, task, steps, languages, views, out_dir, source) -> None:
    """Write ``{step}_{view}.csv`` per step and view and ``cells.csv`` into a fresh ``out_dir``
    (replaced as a whole, atomically)."""
    from mlm_dynamics.atomic import atomic_dir

    cells = transfer_cells(table, model, task, views, source)
    steps = steps or sorted(int(step) for step in cells.step.unique())
    languages = languages or sorted(set(cells.train_lang) | set(cells.test_lang))
    for step in steps:
        if step not in set(cells.step):
            raise InputError(f"{source}: no {task} accuracy of model {model!r} at step {step}")
    cells = cells[cells.step.isin(steps)]
    with atomic_dir(out_dir) as tmp:
        for step in steps:
            for view in views:
                matrix = transfer_matrix(cells, step, view, languages)
                matrix.to_csv(tmp / f"{step}_{view}.csv", float_format="%.6f", lineterminator="\n")
        cells.to_csv(tmp / "cells.csv", index=False, float_format="%.6f", lineterminator="\n")


# ---------------------------------------------------------------- commands


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.description = "Train x test language matrices of one model and task, per step."
    parser.add_argument("--table", required=True, help="the tidy table, .parquet")
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--steps", nargs="*", type=int, help="steps to write (default: all)")
    parser.add_argument("--languages", nargs="*", help="rows and columns, in order (default: all)")
    parser.add_argument("--views", nargs="+", required=True, help="last, best, layer-N")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    from mlm_dynamics.analysis.views import view_name

    table = read_table(args.table)
    views = [view_name(view) for view in args.views]
    transfer_matrices(
        table, args.model, args.task, args.steps, args.languages, views, args.out_dir, args.table
    )
    print(f"transfer matrices of {args.model} {args.task} -> {args.out_dir}")
