"""The real Snakemake DAG, end to end, on a reduced copy of the embedded default.

One run from nothing is the reference; a second run is killed with SIGKILL while activations are
being written, resumed, and must end in byte-identical results (checkpoints, activations, tables,
figures). Dry runs then check what a new checkpoint or a new language schedules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_run import (
    LANGUAGES,
    REPO,
    STEPS,
    reduced_config,
    result_files,
    run_to_completion,
    scheduled_jobs,
    snakemake,
)


@pytest.mark.e2e
def test_every_activation_matches_its_treebank(reference):
    import gzip
    import json

    for lang in LANGUAGES:
        with gzip.open(reference / f"results/treebanks/{lang}.json.gz", "rt") as f:
            splits = json.load(f)["splits"]
        for step in STEPS:
            for split in ("train", "test"):
                words = [len(sentence["words"]) for sentence in splits[split]]
                directory = reference / f"results/activations/tiny-xlmr/{step}/{lang}/{split}"
                index = np.load(directory / "index.npz")
                assert index["word_counts"].tolist() == words
                layers = sorted(directory.glob("layer*.npy"))
                assert [p.name for p in layers] == ["layer00.npy", "layer01.npy", "layer02.npy"]
                for path in layers:
                    array = np.load(path)
                    assert array.dtype == np.float16 and array.shape == (sum(words), 32)
                    assert np.isfinite(array).all()


@pytest.mark.e2e
def test_second_run_has_nothing_to_do(reference):
    done = snakemake(reference, "-n")
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr


@pytest.mark.e2e
def test_tables_figures_and_bpc(reference):
    table = pd.read_parquet(reference / "results/tables/probing.parquet")
    probes = table[table.task.isin(["pos", "arc", "deprel"]) & (table.metric == "accuracy")]
    test = probes[probes.split == "test"]
    # every step x task x layer x (train, test) pair of the transfer set; dev in-language only
    assert len(test) == len(STEPS) * 3 * 3 * len(LANGUAGES) ** 2
    assert len(probes[probes.split == "dev"]) == len(STEPS) * 3 * 3 * len(LANGUAGES)
    assert (test.ci_low < test.value).all() and (test.value < test.ci_high).all()
    selectivity = table[table.metric == "selectivity"]
    assert set(selectivity.task) == {"pos", "deprel"}
    bpc = table[table.metric == "bpc_pll"].pivot(index="test_lang", columns="step", values="value")
    for lang in LANGUAGES:  # the model learns something about every language
        assert bpc.loc[lang, STEPS[-1]] < bpc.loc[lang, 0], bpc
    transfer = reference / "results/tables/transfer/tiny-xlmr/pos"
    for step in STEPS:
        matrix = pd.read_csv(transfer / f"{step}_last.csv", index_col=0)
        assert list(matrix.index) == LANGUAGES and list(matrix.columns) == LANGUAGES
    for name in ("onset", "final_layer_gap", "degradation"):
        frame = pd.read_csv(reference / f"results/analysis/{name}.csv")
        interval = frame["ci_low" if "ci_low" in frame else "gain_ci_low"]
        assert len(frame) > 0 and interval.notna().all(), name
    figures = sorted(p.stem for p in (reference / "results/figures/tiny-xlmr").glob("*.png"))
    tasks = ["pos", "arc", "deprel"]
    assert figures == sorted(
        ["in-language-curves", "layer-heatmaps", "final-layer-gap", "onset", "selectivity", "bpc"]
        + [
            f"{kind}-{task}"
            for kind in ("transfer-matrices", "transfer-over-time")
            for task in tasks
        ]
    )


@pytest.mark.e2e
def test_killed_run_resumes_to_identical_results(reference, tmp_path):
    """SIGKILL the whole run while activations are being written; the rerun ends identical."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(reduced_config()))
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")]
    process = subprocess.Popen(
        [*argv, "--cores", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the jobs with it
    )
    activations = tmp_path / "results/activations"
    deadline = time.monotonic() + 600
    try:
        while not list(activations.rglob(".tmp-*")):  # an extraction job is writing
            assert process.poll() is None, "the run ended before any activation was written"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    partial = [p for p in activations.rglob("*.npy") if ".tmp-" not in str(p)]
    written = {str(p.relative_to(tmp_path)) for p in partial}
    # Nothing half-written carries a final name: every .npy under a final name is complete.
    for path in partial:
        np.load(path)

    assert snakemake(tmp_path, "--unlock").returncode == 0
    run_to_completion(tmp_path, "--rerun-incomplete")
    assert not list(activations.rglob(".tmp-*"))
    resumed, expected = result_files(tmp_path), result_files(reference)
    assert resumed.keys() == expected.keys()
    differing = [name for name in expected if resumed[name] != expected[name]]
    assert not differing, f"differ from the uninterrupted run: {differing[:10]}"
    assert written <= {f"results/{name}" for name in expected}


def aggregate_jobs(bpc: bool = True) -> Counter:
    """The jobs that summarise all steps and languages (table, findings, figures), written out
    for one model, the three UD tasks (pos, arc, deprel), the POS control task and no XNLI or
    SimAlign, as the reduced and the default config have: any change to a step or a language
    reruns every one of them."""
    ud_tasks = 3
    return Counter(
        {
            "collect_table": 1,
            "environment": 1,  # re-made with the table
            "findings": 1,
            "transfer_matrices": ud_tasks,  # per UD task: its matrices and their two figures
            "figure_transfer_matrices": ud_tasks,
            "figure_transfer_over_time": ud_tasks,
            "figure_in_language_curves": 1,
            "figure_layer_heatmaps": 1,
            "figure_final_layer_gap": 1,
            "figure_onset": 1,
            "figure_selectivity": 1,  # the POS control task
            "figure_bpc": 1 if bpc else 0,
            "explorer": 1,  # every table in one page
        }
    )


@pytest.mark.e2e
def test_a_new_checkpoint_schedules_only_its_jobs_and_the_aggregates(reference):
    config = reduced_config(steps=[*STEPS, 60])
    n = len(LANGUAGES)
    expected = (
        Counter({"pretrain": 1, "extract_activations": n, "bpc": n, "train_probe": n})
        + Counter({"score_probe": n, "all": 1})
        + aggregate_jobs()
    )
    assert scheduled_jobs(reference, config) == expected


@pytest.mark.e2e
def test_a_new_language_schedules_only_what_it_touches(reference):
    """ko joins the probed languages and the transfer set as config.yaml's comment says to add it;
    the model is unchanged."""
    config = reduced_config()
    config["languages"]["ko"] = {
        "treebank": str(REPO / "resources/ud/UD_Korean-GSD"),
        "heldout_text": str(REPO / "resources/heldout/ko.txt.gz"),
    }
    config["transfer_languages"].append("ko")
    steps = len(STEPS)
    expected = Counter(
        {
            "prepare_treebank": 1,
            "extract_activations": steps,
            "bpc": steps,
            "train_probe": steps,
            # ko's test split, and every other test split re-scored with ko's new probe
            "score_probe": steps * (len(LANGUAGES) + 1),
            "all": 1,
        }
    )
    assert scheduled_jobs(reference, config) == expected + aggregate_jobs()


@pytest.mark.parametrize("configfile", ["config.yaml", "configs/demo-findings.yaml"])
def test_default_config_dag_shape(tmp_path, configfile):
    """The embedded default's DAG (and the findings preset's) from a dry run: jobs per rule for
    the config as shipped."""
    config = yaml.safe_load((REPO / configfile).read_text())
    for spec in config["languages"].values():
        for key in spec:
            spec[key] = str(REPO / spec[key])
    config["pretrain"]["texts"] = [str(REPO / path) for path in config["pretrain"]["texts"]]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    model = config["models"]["tiny-xlmr"]
    runs = len(model.get("seeds", [0]))  # one pretraining run (3 seeds in the preset)
    steps = runs * len(model["steps"])  # checkpoints: 4 (3 x 5 in the preset)
    languages = len(config["languages"])  # 5 languages (4)
    bpc = config.get("bpc", {}).get("enabled", True)  # on in the default, off in the preset
    expected = Counter(
        {
            "train_tokenizer": 1,
            "pretrain": steps,  # no check_checkpoint: the pretrain job checks its own checkpoint
            "prepare_treebank": languages,
            "extract_activations": steps * languages,
            "train_probe": steps * languages,
            "score_probe": steps * languages,
            "bpc": steps * languages if bpc else 0,
            "all": 1,
        }
    ) + aggregate_jobs(bpc=bpc)
    # and no XNLI, SimAlign or fetched checkpoints: not in the default
    assert dict(scheduled_jobs(tmp_path, config)) == dict(+expected)


@pytest.mark.parametrize(("device", "gpus"), [("cpu", "0"), ("cuda", "1")])
def test_probes_on_cuda_ask_the_scheduler_for_a_gpu(tmp_path, device, gpus):
    config = reduced_config()
    config["probing"]["device"] = device
    done = snakemake(tmp_path, "-n", "-p", "--forceall", config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = (done.stdout + done.stderr).split("\nrule ")
    probes = [job for job in jobs if job.startswith("train_probe:")]
    assert len(probes) == len(LANGUAGES) * len(STEPS)
    assert all(f"gpu={gpus}" in job and f"--device {device} " in job for job in probes)
