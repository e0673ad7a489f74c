"""The paper's three findings, read off a finished run's analysis tables (nothing typed by hand).

    snakemake --cores 2 --configfile configs/demo-findings.yaml
    python benchmarks/findings_summary.py --results results

(a) in-language POS and deprel are learned: the gain from the first to the last step is a
    discovery (its Benjamini-Hochberg adjusted one-sided p-value at most statistics.fdr) for
    every language, and in-language onsets come before cross-lingual ones for most transfer
    pairs (the onset intervals disjoint, or no transfer onset);
(b) cross-lingual transfer is learned, at different times for different pairs: transfer pairs
    whose gain is a discovery, and their onsets with intervals;
(c) the last layer falls behind the best *transformer* layer as training goes on: how many
    (task, language) curves have the dev-chosen best transformer layer measurably ahead of the
    last layer (a discovery), per step, and the gaps at the last step, with the embedding layer
    beside (never the only "best").

Every score is the dev-chosen best layer's ("best" view) test accuracy unless said otherwise;
every choice (layer, L2, the reference step of an onset) was made on dev by the workflow, and
how often the dev resamples make the same choice is said beside it. An onset reached by the
first measured step is "by step s" (nothing was measured before it). A language whose test
words hold the tokenizer's unknown token too often is "not interpretable" and left out of every
count. Intervals cover the test sentences, and the pretraining seeds of a model with several (then
every score is the mean over the seeds, and every verdict reads both levels). Each finding ends
in "shown" or "not shown" with the numbers it was read from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mlm_dynamics.analysis import findings, tables
from mlm_dynamics.layout import ENVIRONMENT

TASKS_A = ("pos", "deprel")
VIEW = "best"
BEHIND = findings.GAP_VERDICTS[2]  # "last layer behind": the gap is a discovery
STABLE = findings.STABLE_SHARE  # a dev choice made again by fewer resamples is unstable


def points(value: float, low: float, high: float) -> str:
    return f"{100 * value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def onset_text(row) -> str:
    if row.status != "onset":
        return "no onset"
    interval = f"[{row.onset_gain_ci_low:.0f}, {row.onset_gain_ci_high:.0f}]"
    if row.onset_gain_censored:  # reached by the first measured step: nothing before it
        return f"by step {row.onset_gain_step:.0f} {interval}"
    return f"step {row.onset_gain_step:.0f} {interval}"


def interpretable(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows with a verdict: not those of a language the tokenizer cannot read."""
    return frame[~frame[column].astype(str).str.startswith(findings.UNREADABLE)]


def left_out(frame: pd.DataFrame, column: str) -> str:
    """Which rows were not interpretable, as a clause (empty when none)."""
    unreadable = frame[frame[column].astype(str).str.startswith(findings.UNREADABLE)]
    if unreadable.empty:
        return ""
    return f" ({len(unreadable)} not interpretable: the tokenizer's unknown token)"


def onset_order(own, transfer) -> str:
    """Which onset comes first, by their intervals; a transfer curve without an onset (its gain
    interval holds 0) comes after an in-language curve that has one."""
    if transfer.status != "onset" or transfer.onset_gain_ci_low > own.onset_gain_ci_high:
        return "in-language first"
    if transfer.onset_gain_ci_high < own.onset_gain_ci_low:
        return "transfer first"
    return "not resolved"


def in_language(onset: pd.DataFrame) -> tuple[list[str], bool]:
    """(a): gains per language and task, and in-language against cross-lingual onsets."""
    lines, shown = [], True
    own = interpretable(onset[onset.kind == "in-language"], "status")
    for task in TASKS_A:
        rows = own[own.task == task].sort_values("train_lang")
        learned = int((rows.status == "onset").sum())
        shown &= learned == len(rows) > 0
        cells = ", ".join(
            f"{r.train_lang} {points(r.gain, r.gain_ci_low, r.gain_ci_high)}"
            for r in rows.itertuples()
        )
        lines.append(
            f"- {task} gain (points): {cells}; a discovery: {learned} of {len(rows)}"
            + left_out(onset[(onset.kind == "in-language") & (onset.task == task)], "status")
        )
    order = {"in-language first": 0, "transfer first": 0, "not resolved": 0}
    onset_of = own.set_index(["task", "train_lang"])
    for r in interpretable(onset[onset.kind == "transfer"], "status").itertuples():
        mine = onset_of.loc[(r.task, r.train_lang)]
        if mine.status != "onset":
            continue  # nothing in-language to compare with
        order[onset_order(mine, r)] += 1
    total = sum(order.values())
    shown &= order["in-language first"] > total / 2
    lines.append(
        f"- onsets (all tasks, {total} transfer curves whose training language learned "
        f"in-language): the in-language onset first for {order['in-language first']} (the transfer "
        f"curve's onset interval after the in-language one's, or no onset), the transfer onset "
        f"first for {order['transfer first']}, the intervals overlap for {order['not resolved']}"
    )
    return lines, shown


def transfer(onset: pd.DataFrame, final: pd.DataFrame) -> tuple[list[str], bool]:
    """(b): transfer pairs that rise above their step-0 score, and whether their onsets differ.

    ``final``: per (task, train, test) the last step's score, interval and majority baseline."""
    pairs = interpretable(onset[(onset.kind == "transfer")], "status")
    learned = pairs[pairs.status == "onset"].sort_values("onset_gain_step")
    learned = learned.merge(final, on=["task", "train_lang", "test_lang"], how="left")
    above = int((learned.final_ci_low > learned.majority_accuracy).sum())
    lines = [
        f"- transfer curves whose gain is a discovery: {len(learned)} of {len(pairs)} "
        f"({above} of them end with an interval above the majority-label baseline)"
        + left_out(onset[onset.kind == "transfer"], "status")
    ]
    for r in learned.itertuples():
        lines.append(
            f"  - {r.task} {r.train_lang}->{r.test_lang}: gain "
            f"{points(r.gain, r.gain_ci_low, r.gain_ci_high)}, onset {onset_text(r)}; "
            f"final {100 * r.final_score:.1f} [{100 * r.final_ci_low:.1f}, "
            f"{100 * r.final_ci_high:.1f}], majority {100 * r.majority_accuracy:.1f}"
        )
    # Different onsets: two learned curves whose onset intervals do not overlap.
    distinct = bool(learned.onset_gain_ci_high.min() < learned.onset_gain_ci_low.max())
    lines.append(f"- two onsets with disjoint intervals: {'yes' if distinct else 'no'}")
    return lines, len(learned) >= 2 and distinct


def last_layer(gap: pd.DataFrame) -> tuple[list[str], bool]:
    """(c): best-transformer-layer-minus-last-layer gap over steps, its verdicts at the first and
    last step, and the embedding layer beside."""
    steps = sorted(gap.step.unique())
    by_step = interpretable(gap, "verdict").groupby("step")
    behind = {s: int((by_step.get_group(s).verdict == BEHIND).sum()) for s in steps}
    curves = len(by_step.get_group(steps[-1]))
    counts = ", ".join(f"{s}: {behind[s]}" for s in steps)
    final = gap[gap.step == steps[-1]].sort_values(["task", "lang"])
    cells = ", ".join(
        f"{r.task} {r.lang} {points(r.gap, r.ci_low, r.ci_high)} (best transformer layer "
        f"{r.best_layer}, chosen by {100 * r.best_layer_stability:.0f}% of dev resamples; last "
        f"layer {100 * r.last_score:.1f}, embedding layer {100 * r.embedding_score:.1f})"
        for r in final.itertuples()
        if r.verdict == BEHIND
    )
    embedding_ahead = int((final.embedding_score > final.last_ci_high).sum())
    unstable = int((final.best_layer_stability < STABLE).sum())
    lines = [
        f"- curves with the last layer behind the best transformer layer (a discovery), of "
        f"{curves}, by step: {counts}" + left_out(gap[gap.step == steps[-1]], "verdict"),
        f"- behind at step {steps[-1]}: {cells or 'none'}",
        f"- beside: at step {steps[-1]} the embedding layer's score is above the last layer's "
        f"interval for {embedding_ahead} of {len(final)}; the dev-chosen transformer layer is "
        f"unstable (made again by fewer than {100 * STABLE:.0f}% of dev resamples) for "
        f"{unstable} of {len(final)}",
    ]
    return lines, behind[steps[-1]] > behind[steps[0]] and behind[steps[-1]] > 0


def final_scores(results: Path) -> pd.DataFrame:
    """Each pair's last-step score at the view's layer, with its majority-label baseline."""
    degradation = pd.read_csv(results / "analysis/degradation.csv")
    final = degradation[degradation.view == VIEW][
        ["task", "train_lang", "test_lang", "final_score", "final_ci_low", "final_ci_high"]
    ]
    table = tables.read_table(results / "tables/probing.parquet")
    baselines = findings.majority_baselines(table).drop(columns="model")
    return final.merge(baselines, on=["task", "train_lang", "test_lang"], how="left")


def method_line(results: Path, covers: list[str]) -> str:
    """How the verdicts were reached and what the intervals cover (the run's own settings and
    the analysis tables' ``interval_covers``)."""
    path = results / Path(ENVIRONMENT).relative_to("results")
    settings = json.loads(path.read_text()).get("statistics", {}) if path.is_file() else {}
    fdr = settings.get("fdr")
    rate = f"{fdr:g}" if fdr is not None else "statistics.fdr"
    level = f"{100 * settings.get('confidence', 0.95):g}%"
    resampled = " / ".join(covers) if covers else "nothing"
    one_run = "" if any("pretraining seeds" in text for text in covers) else ", one pretraining run"
    return (
        f"Verdicts: one-sided paired bootstrap p-values, Benjamini-Hochberg adjusted per table "
        f"and model, a discovery at false discovery rate {rate}; intervals: {level} bootstrap "
        f"over {resampled}{one_run} (not probe refits or control draws)."
    )


def choices_and_coverage(table: pd.DataFrame) -> list[str]:
    """What the verdicts stand on: how stable the dev-chosen L2 values are and how many sit on
    an edge of the grid, and how often each language's test words hold the unknown token."""
    lines = []
    seeded = table[table.pretrain_seed != tables.WHOLE_MODEL]
    runs = table[~table.model.isin(seeded.model)]  # a model without seeds: its one run's rows
    runs = pd.concat([runs, seeded])  # a model with seeds: each seed's (choices are per run)
    l2 = runs[(runs.split == "dev") & (runs.seed == 0)]
    edge, stability = l2[l2.metric == "l2_on_grid_edge"], l2[l2.metric == "l2_stability"]
    if not edge.empty:
        stable = int((stability.value >= STABLE).sum())
        lines.append(
            f"- L2 choices (every run, task, language, step and layer): {int(edge.value.sum())} of "
            f"{len(edge)} on an edge of the grid; made again by at least {100 * STABLE:.0f}% of "
            f"the dev resamples: {stable} of {len(stability)}"
        )
    unknown = runs[(runs.task == "tokenizer") & (runs.metric == findings.UNKNOWN_METRIC)
                   & (runs.split == "test")]  # fmt: skip
    if not unknown.empty:
        shares = unknown.groupby("test_lang").value.max().sort_index()
        cells = ", ".join(f"{lang} {100 * share:.1f}%" for lang, share in shares.items())
        lines.append(f"- test words holding the tokenizer's unknown token: {cells}")
    return lines


def summary(results: Path) -> str:
    onset = pd.read_csv(results / "analysis/onset.csv")
    onset = onset[onset.view == VIEW]
    gap = pd.read_csv(results / "analysis/final_layer_gap.csv")
    covers = sorted(set(onset.interval_covers) | set(gap.interval_covers) - {"none"})
    out = [method_line(results, covers), ""]
    for title, (lines, shown) in (
        ("(a) in-language gains, in-language before cross-lingual", in_language(onset)),
        ("(b) transfer learned, at different times", transfer(onset, final_scores(results))),
        ("(c) the last layer falls behind the best transformer layer", last_layer(gap)),
    ):
        out += [f"**{title}: {'shown' if shown else 'not shown'}**", *lines, ""]
    beside = choices_and_coverage(tables.read_table(results / "tables/probing.parquet", runs=True))
    if beside:
        out += ["**What the verdicts stand on**", *beside, ""]
    return "\n".join(out).rstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", type=Path)
    print(summary(parser.parse_args().results))


if __name__ == "__main__":
    main()
