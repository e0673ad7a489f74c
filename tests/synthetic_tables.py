"""A realistic synthetic tidy table for the analysis, plot and notebook tests.

Accuracy rises with the step towards a language- and layer-dependent ceiling; middle layers are
best, the last layer falls behind late in training (a final-layer gap), transfer pairs are lower
and learn later than in-language probes, and a little seeded noise separates the probe seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STEPS = [0, 100, 200, 400]
LANGUAGES = ["en", "fr", "de", "ru", "zh", "ko"]
TASKS = ["pos", "arc", "deprel"]
LAYERS = 5  # embeddings + 4 transformer layers
SEEDS = [0, 1]
COLUMNS = ["model", "step", "task", "layer", "train_lang", "test_lang", "seed", "metric", "value"]


def synthetic_table(
    model: str = "tiny-xlmr",
    steps=STEPS,
    languages=LANGUAGES,
    tasks=TASKS,
    seeds=SEEDS,
    bpc: bool = True,
    xnli: bool = True,
    simalign: bool = True,
) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    ceiling = {"pos": 0.92, "arc": 0.75, "deprel": 0.8, "xnli": 0.6}
    floor = {"pos": 0.3, "arc": 0.2, "deprel": 0.25, "xnli": 0.34}
    majority = {"pos": 0.18, "arc": 0.3, "deprel": 0.15, "xnli": 0.33}

    def add(step, task, layer, train, test, seed, metric, value, n=500):
        rows.append((model, step, task, layer, train, test, seed, metric, float(value), n))

    def probe_rows(task, langs):
        for i, train in enumerate(langs):
            for j, test in enumerate(langs):
                transfer = train != test
                delay = 110.0 if transfer else 30.0
                drop = 0.12 + 0.03 * abs(i - j) if transfer else 0.0
                for step in steps:
                    progress = 1 - np.exp(-step / (delay + 10 * i))
                    for layer in range(LAYERS):
                        middle = 1 - 0.04 * abs(layer - 2)
                        late_drop = 0.05 * progress if layer == LAYERS - 1 else 0.0
                        mean = floor[task] + (ceiling[task] - drop - floor[task]) * progress
                        for seed in seeds:
                            value = mean * middle - late_drop + rng.normal(0, 0.005)
                            add(step, task, layer, train, test, seed, "accuracy", value)
                    add(step, task, -1, train, test, 0, "majority_accuracy", majority[task])

    for task in tasks:
        probe_rows(task, languages)
    if xnli:
        probe_rows("xnli", languages[:3])
    for step in steps if bpc else []:
        for i, lang in enumerate(languages):
            value = 8.0 - 3.0 * (1 - np.exp(-step / 150)) * (1 - 0.08 * i)
            add(step, "bpc", -1, "", lang, 0, "bpc", value, n=20000)
    for method in ["simalign-argmax", "simalign-itermax"] if simalign else []:
        for step in steps:
            for lang in languages[1:]:
                for layer in range(LAYERS):
                    f1 = 0.2 + 0.5 * (1 - np.exp(-step / 120)) * (1 - 0.1 * abs(layer - 2))
                    for metric, value in [("precision", f1 + 0.02), ("recall", f1 - 0.02),
                                          ("f1", f1), ("aer", 1 - f1)]:  # fmt: skip
                        add(step, method, layer, languages[0], lang, 0, metric, value, n=100)
    return pd.DataFrame(rows, columns=[*COLUMNS, "n"])
