"""Layer views of the tidy table: the one definition of the layer a score is read at.

Every analysis table (:mod:`mlm_dynamics.analysis.findings`), transfer matrix
(:mod:`mlm_dynamics.analysis.tables`) and figure (:mod:`mlm_dynamics.figures`) reads a probe's
score at a step at the layer :func:`view_layers` gives for each view:

- ``last``: the model's output layer (the paper's primary view: "the final model layer degrades
  over time while linguistic knowledge propagates to lower layers").
- ``best``: the layer with the highest **dev** accuracy of the probe's *training* language at that
  step (ties: the lower layer; :func:`dev_best_layers`). A transfer cell (train L1, test L2) uses
  L1's dev, so no cell peeks at its test language; test is never read to choose.
- ``layer-N``: a fixed layer N (config ``analysis.views`` entry ``N``).

Only seed 0 (the probe fitted on all training sentences) is read, and scores on the **test**
split (:func:`view_scores`). This module imports neither of the analysis modules: both import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlm_dynamics.errors import InputError

PROBE_METRIC = "accuracy"
PAIR = ["model", "task", "train_lang", "test_lang"]
PROBE = ["model", "task", "train_lang", "step"]
FIXED_VIEW = "layer-"


def view_name(value) -> str:
    """A config entry of ``analysis.views`` as a view name: "last", "best" or "layer-N"."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return f"{FIXED_VIEW}{int(value)}"
    if isinstance(value, str) and value.isdigit():
        return f"{FIXED_VIEW}{int(value)}"
    if value in ("last", "best") or (
        isinstance(value, str) and value.startswith(FIXED_VIEW) and value[6:].isdigit()
    ):
        return str(value)
    raise InputError(f"analysis.views: {value!r} is not 'last', 'best' or a layer number")


def probe_rows(table: pd.DataFrame, metric: str = PROBE_METRIC, split: str = "test"):
    """Seed-0 rows of one metric and split of the probes (layers >= 0)."""
    return table[
        (table["metric"] == metric)
        & (table["split"] == split)
        & (table["seed"] == 0)
        & (table["train_lang"] != "")
        & (table["layer"] >= 0)
    ]


def dev_best_layers(table: pd.DataFrame, lowest: int = 0) -> pd.DataFrame:
    """Per probe (model, task, train_lang, step): the layer (``lowest`` or above; 1 for the
    transformer layers alone) of highest in-language dev accuracy, ties to the lower layer."""
    dev = probe_rows(table, split="dev")
    dev = dev[(dev["train_lang"] == dev["test_lang"]) & (dev["layer"] >= lowest)]
    ordered = dev.sort_values([*PROBE, "value", "layer"], ascending=[True] * 4 + [False, True])
    return ordered.groupby(PROBE, sort=True).head(1)[[*PROBE, "layer"]]


def view_layers(table: pd.DataFrame, views: Sequence[str]) -> pd.DataFrame:
    """The layer each view reads, per probe: columns model, task, train_lang, step, view, layer."""
    scored = probe_rows(table)
    probes = scored[PROBE].drop_duplicates().reset_index(drop=True)
    last = scored.groupby("model")["layer"].max()
    frames = []
    for view in views:
        if view == "last":
            layers = probes.assign(layer=probes["model"].map(last))
        elif view == "best":
            layers = probes.merge(dev_best_layers(table), on=PROBE, how="left")
            missing = layers[layers["layer"].isna()]
            if not missing.empty:
                row = missing.iloc[0]
                raise InputError(
                    f"no dev accuracy for the {row.task} probe of {row.model} step {row.step} "
                    f"trained on {row.train_lang}: the 'best' view chooses layers on dev"
                )
        else:
            layer = int(view.removeprefix(FIXED_VIEW))
            too_deep = probes[probes["model"].map(last) < layer]
            if not too_deep.empty:
                model = too_deep["model"].iloc[0]
                raise InputError(
                    f"analysis.views: {view}: model {model} has layers 0..{last[model]} only"
                )
            layers = probes.assign(layer=layer)
        frames.append(layers.assign(view=view))
    columns = [*PROBE, "view", "layer"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].astype({"layer": "int64"})


def view_scores(table: pd.DataFrame, views: Sequence[str], metric: str = PROBE_METRIC):
    """Test scores (seed 0) at each view's layer: one row per model, task, view, train and test
    language and step, with the layer read, value, ci_low, ci_high and n."""
    rows = probe_rows(table, metric)
    keep = [*PAIR, "step", "layer", "value", "ci_low", "ci_high", "n"]
    scores = view_layers(table, views).merge(rows[keep], on=[*PROBE, "layer"], how="inner")
    order = ["model", "task", "view", "train_lang", "test_lang", "step"]
    return scores.sort_values(order, kind="stable").reset_index(drop=True)[
        ["model", "task", "view", "train_lang", "test_lang", "step", "layer", "value", "ci_low",
         "ci_high", "n"]
    ]  # fmt: skip
