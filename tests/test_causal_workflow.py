"""The whole DAG on a causal LM: configs/embedded-causal.yaml at test size (a tiny BLOOM
pretrained here with the next-token objective), from nothing to the table, the analyses and the
figures, with the estimate and pooling each row used, and its BPC recomputed independently."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from workflow_run import REPO, reduced_config, run_to_completion

from mlm_dynamics.activations.store import cache_pooling
from mlm_dynamics.textio import read_lines

LANGUAGES = ["en", "ru"]
STEPS = [0, 20, 40]
MODEL = "tiny-bloom"


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    """The preset's model and BPC settings on the reduced default's languages, steps and sizes."""
    preset = yaml.safe_load((REPO / "configs/embedded-causal.yaml").read_text())
    config = reduced_config(LANGUAGES, STEPS)
    model = dict(preset["models"][MODEL], layers=2, steps=STEPS)
    config["models"] = {MODEL: model}
    config["bpc"] = dict(preset["bpc"], max_sentences=10)
    config["probing"]["controls"] = ["pos"]
    workdir = tmp_path_factory.mktemp("causal")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run_to_completion(workdir)
    return workdir, config


@pytest.mark.e2e
def test_a_causal_lm_runs_the_whole_dag(causal_run):
    workdir, _ = causal_run
    table = pd.read_parquet(workdir / "results/tables/probing.parquet")
    assert set(table.model) == {MODEL}

    # BPC: the causal estimate for every language and step, falling with training
    bpc = table[table.task == "bpc"]
    assert set(bpc.metric) == {"bpc_ar", "ar_bits"} and set(bpc.pooling) == {""}
    curves = bpc[bpc.metric == "bpc_ar"].pivot(index="test_lang", columns="step", values="value")
    assert sorted(curves.index) == sorted(LANGUAGES) and list(curves.columns) == STEPS
    for lang in LANGUAGES:
        assert curves.loc[lang, STEPS[-1]] < curves.loc[lang, 0], curves
    assert (bpc.ci_low <= bpc.value).all() and (bpc.value <= bpc.ci_high).all()

    # Probes read each word's last subword, as the cache recorded
    probes = table[table.task.isin(["pos", "arc", "deprel"]) & (table.metric == "accuracy")]
    assert len(probes) and set(probes.pooling) == {"last"}
    for step in STEPS:
        for lang in LANGUAGES:
            assert cache_pooling(workdir / f"results/activations/{MODEL}/{step}/{lang}") == "last"

    # Transfer matrices, analyses and figures, as for a masked LM
    for task in ("pos", "arc", "deprel"):
        matrix = pd.read_csv(workdir / f"results/tables/transfer/{MODEL}/{task}/40_last.csv")
        assert list(matrix["train_lang"]) == LANGUAGES
    for name in ("onset", "final_layer_gap", "degradation"):
        assert len(pd.read_csv(workdir / f"results/analysis/{name}.csv")) > 0, name
    figures = {path.stem for path in (workdir / f"results/figures/{MODEL}").glob("*.png")}
    assert {"bpc", "in-language-curves", "transfer-matrices-pos", "onset"} <= figures


@pytest.mark.e2e
def test_the_causal_bpc_equals_a_plain_next_token_loop(causal_run):
    """Independent of mlm_dynamics.bpc: one unbatched forward pass per sentence over <s> and its
    tokens, -log2 p of each token given the ones before, summed over the text, per character."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, config = causal_run
    table = pd.read_parquet(workdir / "results/tables/probing.parquet")
    checkpoint = workdir / f"results/checkpoints/{MODEL}/{STEPS[-1]}"
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert model.config.model_type == "bloom"
    for lang in LANGUAGES:
        sentences = read_lines(config["languages"][lang]["heldout_text"], limit=10)
        bits = characters = 0.0
        for sentence in sentences:
            ids = [tokenizer.bos_token_id, *tokenizer(sentence, add_special_tokens=False).input_ids]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0].double()
            log_p = torch.log_softmax(logits, dim=-1)
            bits -= sum(float(log_p[t - 1, ids[t]]) for t in range(1, len(ids))) / math.log(2)
            characters += len(sentence)
        row = table[(table.metric == "bpc_ar") & (table.test_lang == lang)]
        value = row[row.step == STEPS[-1]].value.item()
        np.testing.assert_allclose(value, bits / characters, rtol=1e-6)
