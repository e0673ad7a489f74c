"""The README's tables of the embedded default run, from its results (nothing typed by hand).

    snakemake --cores 2 && python benchmarks/default_run_summary.py [--results results]
    python benchmarks/default_run_summary.py --readme README.md          # rewrite them there
    python benchmarks/default_run_summary.py --readme README.md --check  # exit 1 if they differ

The README holds the output between the two MARKERS lines; ``--readme`` replaces what is between
them, ``--check`` only compares: where they differ (another machine's run, say) it prints how far
each table row's point values moved, then exits 1.

Tables: in-language POS test accuracy at the last layer with its 95% interval (test sentences of
one pretraining run), first and last step; POS selectivity at the last layer; the POS and deprel
gains from the first to the last step with their paired intervals; bits per character where BPC
ran; and the verdict counts of the final-layer gap, degradation and onset tables; the paper's
three findings as ``findings_summary.py`` reads them; and what the numbers depend on (the run's
``results/environment.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import findings_summary  # beside this script
import pandas as pd

from mlm_dynamics.analysis import findings, tables, views
from mlm_dynamics.bpc import METRIC_LABELS, reported_metric
from mlm_dynamics.layout import ENVIRONMENT

MARKERS = ("<!-- default-run tables: begin (benchmarks/default_run_summary.py --readme) -->",
           "<!-- default-run tables: end -->")  # fmt: skip


def cell(row) -> str:
    return f"{100 * row.value:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"


def bpc_cell(row) -> str:
    return f"{row.value:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def markdown(rows: dict[str, dict[str, str]], languages) -> str:
    lines = ["| | " + " | ".join(languages) + " |", "|---|" + "---|" * len(languages)]
    for name, cells in rows.items():
        lines.append(f"| {name} | " + " | ".join(cells.get(lang, "") for lang in languages) + " |")
    return "\n".join(lines)


def fingerprint_line(results: Path) -> str:
    """What the tables were made with, from the run's environment record."""
    record = json.loads((results / Path(ENVIRONMENT).relative_to("results")).read_text())
    env = record["environment"]
    packages = env["packages"]
    shown = ("torch", "transformers", "numpy", "scikit-learn")
    versions = ", ".join(f"{name} {packages[name]}" for name in shown)
    return (
        f"Made with: {env['cpu']['model']} ({env['torch_cpu_capability']} kernels, torch BLAS "
        f"{env['torch_blas']}), Python {env['python']}, {versions}; config sha256 "
        f"{record['config_sha256'][:12]} (`results/environment.json` has the rest)."
    )


def summary(results: Path) -> str:
    """The tables, the verdict counts and the fingerprint line, as markdown."""
    table = tables.read_table(results / "tables/probing.parquet")
    steps = sorted(table["step"].unique())
    first, last = steps[0], steps[-1]
    scores = views.view_scores(table, ["last"])
    own = scores[(scores.train_lang == scores.test_lang) & (scores.task == "pos")]
    languages = sorted(own.train_lang.unique())
    selectivity = views.view_scores(table, ["last"], findings.SELECTIVITY_METRIC)
    selectivity = selectivity[selectivity.task == "pos"]
    metric = reported_metric(table)
    bpc = table[(table.metric == metric) & (table.task == "bpc")]
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
    onset = pd.read_csv(results / "analysis/onset.csv")
    gains = onset[(onset.view == "last") & (onset.kind == "in-language")]
    for task in ("pos", "deprel"):
        at = gains[gains.task == task].set_index("train_lang")
        rows[f"{task} gain, step {first} to {last}, last layer (paired)"] = {
            lang: f"{100 * r.gain:+.1f} [{100 * r.gain_ci_low:+.1f}, {100 * r.gain_ci_high:+.1f}]"
            for lang, r in at.iterrows()
        }
    for step in (first, last) if not bpc.empty else ():
        at = bpc[bpc.step == step].set_index("test_lang")
        rows[f"bits per character ({METRIC_LABELS[metric]}), step {step}"] = {
            lang: bpc_cell(at.loc[lang]) for lang in at.index
        }
    out = [markdown(rows, languages), ""]
    gap = pd.read_csv(results / "analysis/final_layer_gap.csv")
    degradation = pd.read_csv(results / "analysis/degradation.csv")
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
    verdicts = [
        f"{title}: " + ", ".join(f"{' '.join(map(str, k)) if isinstance(k, tuple) else k} {v}"
                                 for k, v in values.items())
        for title, values in counts
    ]  # fmt: skip
    out += [
        "Verdict counts (Benjamini-Hochberg adjusted, see below): " + "; ".join(verdicts) + ".",
        "",
        findings_summary.summary(results),
    ]
    out += ["", fingerprint_line(results)]
    return "\n".join(out)


def table_points(block: str) -> dict[str, dict[str, float]]:
    """Each table row's point values by column (the number before a cell's interval)."""
    lines = [line for line in block.splitlines() if line.startswith("|")]
    header = [name.strip() for name in lines[0].strip("|").split("|")][1:]
    rows = {}
    for line in lines[2:]:
        label, *cells = [part.strip() for part in line.strip("|").split("|")]
        rows[label] = {}
        for column, text in zip(header, cells, strict=True):
            try:
                rows[label][column] = float(text.split()[0])
            except (IndexError, ValueError):  # an empty cell, or "-"
                pass
    return rows


def table_moves(readme_block: str, run_block: str) -> list[str]:
    """Per table row in both: the largest move of a point value, README's against the run's."""
    before, after = table_points(readme_block), table_points(run_block)
    lines = []
    for label in (label for label in before if label in after):
        moves = [(abs(after[label][c] - v), c, v, after[label][c]) for c, v in before[label].items()
                 if c in after[label]]  # fmt: skip
        if moves:
            size, column, old, new = max(moves)
            lines.append(f"  {label}: largest move {size:.1f} ({column} {old:g} -> {new:g})")
    return lines


def readme_block(text: str) -> str:
    begin, end = MARKERS
    return text.split(begin, 1)[1].split(end, 1)[0]


def replace_between_markers(text: str, block: str, path: Path) -> str:
    begin, end = MARKERS
    if begin not in text or end not in text:
        sys.exit(f"error: {path}: no {begin} ... {end} lines to replace between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--readme", type=Path, help="rewrite the tables between MARKERS there")
    parser.add_argument("--check", action="store_true", help="with --readme: only compare")
    args = parser.parse_args()
    block = summary(args.results)
    if args.readme is None:
        print(block)
        return
    text = args.readme.read_text()
    updated = replace_between_markers(text, block, args.readme)
    if args.check:
        if updated != text:
            print(f"{args.readme}'s table rows against {args.results}'s:")
            print("\n".join(table_moves(readme_block(text), block)))
            sys.exit(f"{args.readme}: the default-run tables differ from {args.results}'s")
        print(f"{args.readme}: the default-run tables are {args.results}'s")
    elif updated != text:
        args.readme.write_text(updated)
        print(f"{args.readme}: default-run tables rewritten from {args.results}")


if __name__ == "__main__":
    main()
