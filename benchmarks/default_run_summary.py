"""Print the README's tables of the embedded default run from its results (nothing typed by hand).

    snakemake --cores 2 && python benchmarks/default_run_summary.py [--results results]

Tables: in-language POS test accuracy at the last layer with its 95% interval, first and last
step; POS selectivity at the last layer; the POS and deprel gains from the first to the last step
with their paired intervals; bits per character where BPC ran; and the verdict counts of the
final-layer gap, degradation and onset tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mlm_dynamics.analysis import findings, tables, views


def cell(row) -> str:
    return f"{100 * row.value:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"


def bpc_cell(row) -> str:
    return f"{row.value:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def markdown(rows: dict[str, dict[str, str]], languages) -> str:
    lines = ["| | " + " | ".join(languages) + " |", "|---|" + "---|" * len(languages)]
    for name, cells in rows.items():
        lines.append(f"| {name} | " + " | ".join(cells.get(lang, "") for lang in languages) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results", type=Path)
    args = parser.parse_args()
    table = tables.read_table(args.results / "tables/probing.parquet")
    steps = sorted(table["step"].unique())
    first, last = steps[0], steps[-1]
    scores = views.view_scores(table, ["last"])
    own = scores[(scores.train_lang == scores.test_lang) & (scores.task == "pos")]
    languages = sorted(own.train_lang.unique())
    selectivity = views.view_scores(table, ["last"], findings.SELECTIVITY_METRIC)
    selectivity = selectivity[selectivity.task == "pos"]
    bpc = table[(table.metric == "bpc") & (table.task == "bpc")]
    rows = {}
    for step in (first, last):
        at = own[own.step == step].set_index("train_lang")
        rows[f"POS accuracy, last layer, step {step}"] = {
            lang: cell(at.loc[lang]) for lang in at.index
        }
    for step in (first, last):
        at = selectivity[selectivity.step == step].set_index("train_lang")
        rows[f"POS selectivity, last layer, step {step}"] = {
            lang: cell(at.loc[lang]) for lang in at.index
        }
    onset = pd.read_csv(args.results / "analysis/onset.csv")
    gains = onset[(onset.view == "last") & (onset.kind == "in-language")]
    for task in ("pos", "deprel"):
        at = gains[gains.task == task].set_index("train_lang")
        rows[f"{task} gain, step {first} to {last}, last layer (paired)"] = {
            lang: f"{100 * r.gain:+.1f} [{100 * r.gain_ci_low:+.1f}, {100 * r.gain_ci_high:+.1f}]"
            for lang, r in at.iterrows()
        }
    for step in (first, last) if not bpc.empty else ():
        at = bpc[bpc.step == step].set_index("test_lang")
        rows[f"bits per character, step {step}"] = {
            lang: bpc_cell(at.loc[lang]) for lang in at.index
        }
    print(markdown(rows, languages))
    print()
    gap = pd.read_csv(args.results / "analysis/final_layer_gap.csv")
    degradation = pd.read_csv(args.results / "analysis/degradation.csv")
    counts = [
        ("final-layer gap (per task, language, step)", gap.verdict.value_counts()),
        (
            "degradation, last layer, in-language / transfer",
            degradation[degradation.view == "last"].groupby("kind").verdict.value_counts(),
        ),
        (
            "onset, last layer, in-language / transfer",
            onset[onset.view == "last"].groupby("kind").status.value_counts(),
        ),
    ]
    for title, values in counts:
        print(f"{title}: " + ", ".join(f"{' '.join(map(str, k)) if isinstance(k, tuple) else k} "
                                      f"{v}" for k, v in values.items()))  # fmt: skip


if __name__ == "__main__":
    main()
