"""``collect-table``: the tidy table from every score file, with the rows of each model as a whole.

A model without seeds has one run: its rows are the model's. A model with seeds gets, beside its
runs' rows, its rows as a whole: the mean over seeds, with intervals that resample seeds as well
(:mod:`mlm_dynamics.analysis.seeds`, from the runs' per-item scores, ``--items``).
"""

from __future__ import annotations

import argparse

import pandas as pd

from mlm_dynamics import stats
from mlm_dynamics.analysis.items import ItemBank
from mlm_dynamics.analysis.seeds import model_rows
from mlm_dynamics.analysis.tables import WHOLE_MODEL, collect, save_outputs, sorted_table


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Concatenate per-job score tables into the tidy table.",
    )
    parser.add_argument("--inputs", nargs="+", required=True, help="score .parquet files")
    parser.add_argument("--out", required=True, help="the table, .parquet")
    parser.add_argument("--csv", help="the same table as .csv")
    parser.add_argument(
        "--items", nargs="*", default=[],
        help="score-probe --items files of the runs of models with seeds",
    )  # fmt: skip
    stats.add_arguments(parser)
    args = parser.parse_args(argv)
    table = collect(args.inputs)
    if (table["pretrain_seed"] != WHOLE_MODEL).any():
        files = [stats.load_item_scores(path) for path in args.items]
        whole = model_rows(table, ItemBank(files, stats.from_arguments(args)))
        table = sorted_table(pd.concat([table, whole], ignore_index=True))
    save_outputs(table, args.out, args.csv)
    print(f"{len(table)} rows from {len(args.inputs)} files -> {args.out}")
