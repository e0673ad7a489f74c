"""The rows of a model with pretraining seeds as a whole: the mean over its seeds.

Each value is the mean of the seeds' values (every seed must have the row). Its interval is for
the training procedure, not for one run:

- a probe's accuracy (refit seed 0; and its control task's accuracy and the selectivity between
  them) resamples seeds, then the evaluation set's sentences, from the per-item scores
  (``analysis.items``, Sellam et al.'s Multi-Bootstrap): "test sentences, pretraining seeds (S)";
- any other row with an interval (BPC, SimAlign, XNLI without per-item scores, MDL, a probe
  refit's seed >= 1) resamples the seeds' values only: "pretraining seeds (S)", narrower than the
  truth by the sentence variance it leaves out, and said so on the row;
- a row without intervals (an L2 strength, a tokenizer share) gets none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlm_dynamics import stats
from mlm_dynamics.analysis.items import ItemBank, seed_key
from mlm_dynamics.analysis.tables import KEY, WHOLE_MODEL
from mlm_dynamics.errors import InputError

GROUP = [column for column in KEY if column != "pretrain_seed"]
# The rows whose interval is resampled at both levels: metric -> the item sets it is read from
# (the probe's own task, its control task), and how.
CONTROL = ":control"
TWO_LEVEL = ("accuracy", "control_accuracy", "selectivity")


def seeds_covers(base: str, seeds: int) -> str:
    """What an interval resampling ``base`` (one run's units, or '' for none) and seeds covers."""
    return f"{base}, pretraining seeds ({seeds})" if base else f"pretraining seeds ({seeds})"


def model_rows(table: pd.DataFrame, bank: ItemBank) -> pd.DataFrame:
    """The WHOLE_MODEL rows of every model of ``table`` whose rows are per seed; ``bank`` holds
    their per-item scores and the bootstrap settings."""
    frames = []
    runs = table[table["pretrain_seed"] != WHOLE_MODEL]
    for model, rows in runs.groupby("model", sort=True):
        frames.append(one_model(model, rows, bank))
    return pd.concat(frames, ignore_index=True)


def one_model(model: str, rows: pd.DataFrame, bank: ItemBank) -> pd.DataFrame:
    seeds = sorted(rows["pretrain_seed"].unique())
    sizes = rows.groupby(GROUP, sort=False, dropna=False).size()
    short = sizes[sizes != len(seeds)]
    if len(short):
        key = dict(zip(GROUP, short.index[0], strict=True))
        have = rows.merge(pd.DataFrame([key]), on=GROUP)["pretrain_seed"].tolist()
        lacking = next(seed for seed in seeds if seed not in have)
        where = ", ".join(f"{k}={key[k]}" for k in ("step", "task", "layer", "metric"))
        raise InputError(
            f"model {model}: seed {lacking} has no score for {where} (every seed of a model "
            "is scored alike: its score files are incomplete)"
        )
    ordered = rows.sort_values([*GROUP, "pretrain_seed"], kind="mergesort")
    values = ordered["value"].to_numpy().reshape(-1, len(seeds))
    first = ordered.iloc[:: len(seeds)].reset_index(drop=True)
    whole = first.assign(pretrain_seed=WHOLE_MODEL, value=values.mean(axis=1))
    key = seed_key(bank.bootstrap.seed, model)
    counts = stats.resample_counts(len(seeds), bank.bootstrap.resamples, key)
    low, high = bank.bootstrap.interval(counts @ values.T / len(seeds))  # (rows,) each
    has_interval = first["ci_low"].notna() | first["ci_high"].notna()
    whole["ci_low"] = np.where(has_interval, low, np.nan)
    whole["ci_high"] = np.where(has_interval, high, np.nan)
    whole["interval_covers"] = np.where(has_interval, seeds_covers("", len(seeds)), "none")
    if model in bank.seeds:
        if bank.seed_count(model) != len(seeds):
            raise InputError(
                f"model {model}: per-item scores of {bank.seed_count(model)} seeds for scores "
                f"of {len(seeds)} (collect-table --items)"
            )
        two_level(whole, first["interval_covers"], model, bank)
    return whole


def two_level(whole: pd.DataFrame, run_covers: pd.Series, model: str, bank: ItemBank) -> None:
    """Re-estimates, in place, the intervals of the rows the per-item scores cover (probe
    accuracy of refit seed 0, its control task and selectivity) at both levels; ``run_covers``
    is what one run's interval of each row covers."""
    chosen = whole["metric"].isin(TWO_LEVEL) & (whole["seed"] == 0) & (whole["layer"] >= 0)
    keys = ["step", "task", "train_lang", "test_lang", "split"]
    for (step, task, train, test, split), group in whole[chosen].groupby(keys, sort=False):
        metrics = set(group["metric"])
        if not bank.has(split, model, step, task, train, test):
            continue
        control = f"{task}{CONTROL}"
        if metrics - {"accuracy"} and not bank.has(split, model, step, control, train, test):
            metrics = {"accuracy"}
        layers = sorted(group["layer"].unique())
        columns = [(step, layer) for layer in layers]
        _, accuracy = bank.resampled(model, task, train, test, columns, split)
        samples = {"accuracy": accuracy}
        if metrics - {"accuracy"}:
            _, control_accuracy = bank.resampled(model, control, train, test, columns, split)
            samples["control_accuracy"] = control_accuracy
            samples["selectivity"] = accuracy - control_accuracy
        for metric in metrics:
            low, high = bank.bootstrap.interval(samples[metric])
            rows = group[group["metric"] == metric]
            at = [layers.index(layer) for layer in rows["layer"]]
            whole.loc[rows.index, "ci_low"] = low[at]
            whole.loc[rows.index, "ci_high"] = high[at]
            whole.loc[rows.index, "interval_covers"] = [
                seeds_covers(covers, bank.seed_count(model)) for covers in run_covers[rows.index]
            ]
