"""The paper's analyses of the tidy probing table: learning onset, best layer, final vs best step.

``analyse`` reads ``results/tables/probing.parquet`` and writes three CSV tables:

- ``onset.csv``: one row per model, task and (train, test) language pair, in-language
  (``train_lang == test_lang``) and transfer alike: the first step whose score reaches
  ``fraction`` of the final score (``onset_final_step``) and of the best score
  (``onset_best_step``).
- ``best_layer.csv``: one row per model, task, language and step (in-language): the best layer,
  its score, the last layer's score and the gap between them (the "final-layer gap").
- ``final_is_best.csv``: one row per model, task and language (in-language): whether the final
  checkpoint is the best one.

One definition of "the score of a checkpoint" runs through all of them and through the figures:
the accuracy of the checkpoint's *best layer* at that step, each layer's accuracy being the mean
over probe seeds. Choosing the layer per step (rather than fixing the layer that is best at the
final step) keeps the curve from favouring the final step, which matters for ``final_is_best``,
and it is the curve the figures draw. Ties between layers go to the lower layer.

Onset is deliberately simple, as in the paper: the first step ``s`` with
``score(s) >= fraction * target``. It is a fraction of the score itself, not of the gain over
step 0, so a task whose random-initialisation score is already near its final score (a high
majority baseline) has an early onset by construction.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlm_dynamics.atomic import save_table
from mlm_dynamics.errors import InputError

COLUMNS = {
    "model": str,
    "step": "int64",
    "task": str,
    "layer": "int64",
    "train_lang": str,
    "test_lang": str,
    "seed": "int64",
    "metric": str,
    "value": "float64",
    "n": "int64",
}
PROBE_METRIC = "accuracy"
BASELINE_METRIC = "majority_accuracy"
PAIR = ["model", "task", "train_lang", "test_lang"]
REFERENCES = ("final", "best")


# ---------------------------------------------------------------- reading


def read_table(path: str | Path) -> pd.DataFrame:
    """The tidy table, checked for its columns and sorted so that every result is reproducible."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        else:  # "" is the only missing value: a language code like "nan" stays a string
            table = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the table ({exc})") from exc
    return tidy_table(table, source=str(path))


def tidy_table(table: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """A data frame with the tidy columns and types, sorted; ``source`` names it in errors."""
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}")
    table = table[list(COLUMNS)].copy()
    for column in ("train_lang", "test_lang"):
        table[column] = table[column].fillna("")
    try:
        table = table.astype(COLUMNS)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: a column has the wrong type ({exc})") from exc
    order = ["model", "task", "metric", "train_lang", "test_lang", "step", "layer", "seed"]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- scores per layer and step


def probe_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Probe accuracy per model, task, language pair, step and layer: mean and sd over seeds."""
    rows = table[(table["metric"] == PROBE_METRIC) & (table["train_lang"] != "")]
    grouped = rows.groupby([*PAIR, "step", "layer"], sort=True)["value"]
    scores = grouped.agg(score="mean", score_sd="std", n_seeds="count").reset_index()
    return scores


def majority_baselines(table: pd.DataFrame) -> pd.DataFrame:
    """Majority-class accuracy per model, task and language pair (it does not depend on step)."""
    rows = table[table["metric"] == BASELINE_METRIC]
    grouped = rows.groupby(PAIR, sort=True)["value"].mean()
    return grouped.rename("majority_accuracy").reset_index()


def best_layers(scores: pd.DataFrame) -> pd.DataFrame:
    """Per model, task, pair and step: the best layer and its score, and the last layer's score.

    The last layer is the highest layer any probe of the model was scored on; ``gap`` is the best
    layer's score minus the last layer's (0 when the last layer is the best, NaN when missing).
    """
    keys = [*PAIR, "step"]
    if scores.empty:
        columns = [*keys, "best_layer", "best_score", "best_score_sd", "n_seeds"]
        return pd.DataFrame(columns=[*columns, "last_layer", "last_layer_score", "gap"])
    # Highest score first, then the lower layer on ties: the first row per group is the best.
    ordered = scores.sort_values([*keys, "score", "layer"], ascending=[True] * 5 + [False, True])
    best = ordered.groupby(keys, sort=True).head(1)
    best = best.rename(
        columns={"layer": "best_layer", "score": "best_score", "score_sd": "best_score_sd"}
    )
    last_layer = scores.groupby("model")["layer"].max().rename("last_layer")
    best = best.join(last_layer, on="model")
    last = scores.rename(columns={"layer": "last_layer", "score": "last_layer_score"})
    best = best.merge(last[[*keys, "last_layer", "last_layer_score"]], how="left")
    best["gap"] = best["best_score"] - best["last_layer_score"]
    return best.sort_values(keys).reset_index(drop=True)


# ---------------------------------------------------------------- onset and final vs best


def onset_step(
    steps: Sequence[int], scores: Sequence[float], fraction: float, reference: str = "final"
) -> int | None:
    """The first step whose score reaches ``fraction`` of the reference score, or None.

    ``reference`` is "final" (the score at the last step) or "best" (the highest score). Steps need
    not be sorted; NaN scores never reach anything. None when the curve is empty, the reference is
    NaN, or no step reaches the threshold (possible only for a negative reference score).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, not {reference!r}")
    if len(steps) != len(scores):
        raise ValueError("steps and scores differ in length")
    if len(steps) == 0:
        return None
    order = np.argsort(np.asarray(steps), kind="stable")
    steps_sorted = np.asarray(steps)[order]
    scores_sorted = np.asarray(scores, dtype=float)[order]
    if reference == "final":
        target = scores_sorted[-1]
    else:
        target = np.nan if np.isnan(scores_sorted).all() else np.nanmax(scores_sorted)
    if math.isnan(target):
        return None
    reached = np.flatnonzero(scores_sorted >= fraction * target)
    return int(steps_sorted[reached[0]]) if reached.size else None


def best_step(steps: Sequence[int], scores: Sequence[float]) -> int | None:
    """The earliest step with the highest score (None for an empty or all-NaN curve)."""
    order = np.argsort(np.asarray(steps), kind="stable")
    scores_sorted = np.asarray(scores, dtype=float)[order]
    if scores_sorted.size == 0 or np.isnan(scores_sorted).all():
        return None
    return int(np.asarray(steps)[order][np.nanargmax(scores_sorted)])


def onsets(best: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Learning onset of every curve of ``best_layers`` (in-language and transfer pairs)."""
    rows = []
    for (model, task, train_lang, test_lang), curve in best.groupby(PAIR, sort=True):
        curve = curve.sort_values("step")
        steps, scores = curve["step"].to_numpy(), curve["best_score"].to_numpy()
        peak = best_step(steps, scores)
        rows.append(
            {
                "model": model,
                "task": task,
                "train_lang": train_lang,
                "test_lang": test_lang,
                "kind": "in-language" if train_lang == test_lang else "transfer",
                "onset_final_step": onset_step(steps, scores, fraction, "final"),
                "onset_best_step": onset_step(steps, scores, fraction, "best"),
                "final_step": int(steps[-1]),
                "final_score": scores[-1],
                "best_score": np.nan if peak is None else float(np.nanmax(scores)),
                "best_step": peak,
            }
        )
    columns = [
        *PAIR,
        "kind",
        "onset_final_step",
        "onset_best_step",
        "final_step",
        "final_score",
        "best_score",
        "best_step",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("onset_final_step", "onset_best_step", "final_step", "best_step"):
        frame[column] = frame[column].astype("Int64")
    return frame


def in_language(best: pd.DataFrame) -> pd.DataFrame:
    """The in-language rows of ``best_layers``, with one ``lang`` column for the pair."""
    rows = best[best["train_lang"] == best["test_lang"]]
    rows = rows.drop(columns="test_lang").rename(columns={"train_lang": "lang"})
    return rows.reset_index(drop=True)


def final_is_best(best: pd.DataFrame) -> pd.DataFrame:
    """Per model, task and language (in-language): is the final checkpoint the best one?

    ``best_step`` is the earliest step with the highest score; a final score that ties an earlier
    best still counts as best.
    """
    rows = []
    for (model, task, lang), curve in in_language(best).groupby(["model", "task", "lang"]):
        curve = curve.sort_values("step")
        steps, scores = curve["step"].to_numpy(), curve["best_score"].to_numpy()
        peak = best_step(steps, scores)
        best_score = np.nan if peak is None else float(np.nanmax(scores))
        rows.append(
            {
                "model": model,
                "task": task,
                "lang": lang,
                "final_step": int(steps[-1]),
                "best_step": peak,
                "final_is_best": bool(scores[-1] >= best_score),
                "final_score": scores[-1],
                "best_score": best_score,
            }
        )
    columns = ["model", "task", "lang", "final_step", "best_step", "final_is_best"]
    frame = pd.DataFrame(rows, columns=[*columns, "final_score", "best_score"])
    frame["best_step"] = frame["best_step"].astype("Int64")
    return frame


# ---------------------------------------------------------------- command


def analyse(table: pd.DataFrame, fraction: float) -> dict[str, pd.DataFrame]:
    """The three analysis tables, by file stem."""
    best = best_layers(probe_scores(table))
    layer_table = in_language(best)[
        [
            "model",
            "task",
            "lang",
            "step",
            "best_layer",
            "best_score",
            "best_score_sd",
            "n_seeds",
            "last_layer",
            "last_layer_score",
            "gap",
        ]
    ]
    return {
        "onset": onsets(best, fraction),
        "best_layer": layer_table,
        "final_is_best": final_is_best(best),
    }


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--table", required=True, help="the tidy table (.parquet or .csv)")
    parser.add_argument(
        "--onset-fraction",
        type=float,
        default=0.95,
        help="onset = first step reaching this fraction of the final (and of the best) score",
    )
    parser.add_argument("--out-dir", required=True, help="onset.csv, best_layer.csv, ...")
    args = parser.parse_args(argv)
    if not 0 < args.onset_fraction <= 1:
        raise InputError(f"--onset-fraction: {args.onset_fraction} is not in (0, 1]")
    tables = analyse(read_table(args.table), args.onset_fraction)
    for stem, frame in tables.items():
        save_table(Path(args.out_dir) / f"{stem}.csv", frame)
        print(f"{stem}.csv: {len(frame)} rows")
