"""train-probe, score-probe, collect-table and transfer-matrices on a small two-language cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_tables import bootstrap_arguments
from test_probing_tasks import make_sentences, write_cache, write_treebank

from mlm_dynamics.analysis import collect, findings, tables
from mlm_dynamics.analysis.views import view_layers
from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import cli as probe_cli

REPO = Path(__file__).resolve().parents[1]
LANGS = ("aa", "bb")


BOOTSTRAP = ["--resamples", "200", "--confidence", "0.95", "--bootstrap-seed", "0"]
BOOTSTRAP += ["--min-sentences", "30"]
FIT = ["--l2", "0.0001", "0.01", "--max-iter", "50", "--backend", "torch", "--device", "cpu"]
FIT += BOOTSTRAP  # the dev resamples of the L2 choice's stability
SIZES = {"train": 40, "dev": 32, "test": 32}


def make_workspace(root, test_sentences=None):
    """Caches and treebanks of two languages (train, dev, test), probes of pos and arc with 2
    seeds and pos control probes, and their scores. ``test_sentences`` replaces the test split
    of every language (a test split that no training step may read)."""
    for i, lang in enumerate(LANGS):
        splits = {
            split: make_sentences(n, seed=10 * k + i) for k, (split, n) in enumerate(SIZES.items())
        }
        if test_sentences is not None:
            splits["test"] = test_sentences(splits["test"])
        write_treebank(root / f"treebanks/{lang}.json.gz", splits, lang)
        for split, sentences in splits.items():
            write_cache(root / f"act/{lang}/{split}", sentences, seed=2 * i + len(split))
    for lang in LANGS:  # both tasks in one job, as the workflow runs them
        probe_cli.main(
            "train-probe",
            ["--tasks", "pos", "arc", "--activations", str(root / f"act/{lang}")]
            + ["--treebank", str(root / f"treebanks/{lang}.json.gz"), "--seeds", "2", *FIT]
            + ["--controls", "pos", "--out"]
            + [str(root / f"probes/{task}/{lang}.npz") for task in ("pos", "arc")],
        )
    for task in ("pos", "arc"):
        for lang in LANGS:
            probe_cli.main("score-probe", score_arguments(root, task, lang))
    return root


def score_arguments(root, task, lang, probes=None, out=None):
    probes = probes or [str(root / f"probes/{task}/{train}.npz") for train in LANGS]
    out = out or root / f"scores/{task}/{lang}.parquet"
    return (
        ["--probes", *probes, "--activations", str(root / f"act/{lang}")]
        + ["--treebank", str(root / f"treebanks/{lang}.json.gz"), "--model", "m", "--step", "7"]
        + [*BOOTSTRAP, "--out", str(out), "--items", str(out).replace(".parquet", ".items.npz")]
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = make_workspace(tmp_path_factory.mktemp("probing"))
    torch.set_num_threads(threads)
    return root


def score_files(root):
    return sorted(str(p) for p in (root / "scores").glob("*/*.parquet"))


def test_score_rows_are_tidy_with_intervals(workspace):
    frame = pd.read_parquet(workspace / "scores/pos/aa.parquet")
    assert list(frame.columns) == list(tables.COLUMNS)
    accuracy = frame[frame.metric == "accuracy"]
    test, dev = accuracy[accuracy.split == "test"], accuracy[accuracy.split == "dev"]
    assert len(test) == 2 * 2 * 3  # 2 train languages x 2 seeds x 3 layers
    assert len(dev) == 2 * 3 and set(dev.train_lang) == {"aa"}  # dev: the own probes only
    assert set(test.layer) == {0, 1, 2} and set(test.seed) == {0, 1}
    assert set(test.train_lang) == set(LANGS) and set(frame.test_lang) == {"aa"}
    assert (frame.step == 7).all() and (frame.model == "m").all()
    assert (test.n == SIZES["test"] * 5).all()  # words of the test split
    # the L2 choice's dev rows have no interval (the stability is itself a bootstrap summary)
    choice = frame[frame.metric.isin(["l2", "l2_stability", "l2_on_grid_edge"])]
    assert len(choice) == 3 * 3 and set(choice.split) == {"dev"} and set(choice.seed) == {0}
    assert choice.ci_low.isna().all() and choice.ci_high.isna().all()
    scored = frame.drop(choice.index)
    assert (scored.ci_low <= scored.value).all() and (scored.value <= scored.ci_high).all()
    assert (test.ci_high - test.ci_low > 0.01).all()  # 32 sentences: intervals of some width
    own = test[(test.train_lang == "aa") & (test.layer == 0)]
    assert (own.value > 0.9).all()  # each word form has its own vector and a fixed tag


def test_selectivity_is_accuracy_minus_control_accuracy(workspace):
    frame = pd.read_parquet(workspace / "scores/pos/aa.parquet")
    key = ["split", "layer"]
    rows = {
        metric: frame[(frame.metric == metric) & (frame.train_lang == "aa") & (frame.seed == 0)]
        .set_index(key)
        .value.sort_index()
        for metric in ("accuracy", "control_accuracy", "selectivity")
    }
    assert len(rows["selectivity"]) == 2 * 3  # dev and test, every layer, seed 0
    np.testing.assert_allclose(
        rows["selectivity"], rows["accuracy"] - rows["control_accuracy"], atol=1e-12
    )
    # words have one vector each, so the probe memorises control labels too: low selectivity
    assert (rows["control_accuracy"].loc["test"] > 0.3).all()
    transfer = frame[(frame.train_lang == "bb")]
    assert not transfer.metric.isin(["control_accuracy", "selectivity"]).any()
    arc = pd.read_parquet(workspace / "scores/arc/aa.parquet")
    assert not arc.metric.isin(["control_accuracy", "selectivity"]).any()


def test_majority_accuracy_is_the_train_majority_on_this_test(workspace):
    frame = pd.read_parquet(workspace / "scores/pos/bb.parquet")
    majority = frame[(frame.metric == tables.BASELINE_METRIC) & (frame.split == "test")]
    assert (majority.layer == tables.BASELINE_LAYER).all() and len(majority) == 4
    # the sentences are det noun verb det noun: DET and NOUN tie at 2/5; the lower id (DET) wins
    assert np.allclose(majority.value, 0.4)
    arc = pd.read_parquet(workspace / "scores/arc/bb.parquet")
    assert np.allclose(arc[arc.metric == "majority_accuracy"].value, 0.5)  # balanced classes


def test_probe_file_contents(workspace):
    with np.load(workspace / "probes/arc/aa.npz") as z:
        assert str(z["task"]) == "arc" and str(z["language"]) == "aa"
        assert z["coef"].shape == (2, 3, 24, 1)  # seeds, layers, 3 x hidden, one logit
        assert z["mean"].shape == (2, 3, 24)
        assert z["classes"].tolist() == [0, 1]
        assert z["labels"].tolist() == ["no-arc", "arc"]
        assert z["seeds"].tolist() == [0, 1]
        assert z["l2_grid"].tolist() == [0.0001, 0.01]
        assert z["l2"].shape == (2, 3) and set(z["l2"].ravel()) <= {0.0001, 0.01}
        assert z["dev_accuracy"].shape == (2, 2, 3)  # seeds, grid values, layers
        assert "control_coef" not in z.files  # arc has no control task
    with np.load(workspace / "probes/pos/aa.npz") as z:
        assert z["control_coef"].shape == (1, 3, 8, len(z["control_classes"]))
        # seed 1 refits on a resample of the training sentences: a different probe (a convex
        # problem: seeds that only moved the initial weights gave the same probe)
        assert np.abs(z["coef"][0] - z["coef"][1]).max() > 1e-2


def test_no_choice_reads_the_test_split(workspace, tmp_path):
    """Permuting the test labels changes no probe, no dev score and no layer chosen on dev."""

    def permuted(sentences):
        rng = np.random.default_rng(0)
        upos = rng.permutation([tag for s in sentences for tag in s.upos]).tolist()
        out = []
        for s in sentences:
            out.append(type(s)(s.id, s.words, tuple(upos[: len(s.words)]), s.head, s.deprel))
            upos = upos[len(s.words) :]
        return out

    import torch

    torch.set_num_threads(1)
    other = make_workspace(tmp_path, test_sentences=permuted)
    for task in ("pos", "arc"):
        for lang in LANGS:
            before = np.load(workspace / f"probes/{task}/{lang}.npz")
            after = np.load(other / f"probes/{task}/{lang}.npz")
            assert before.files == after.files
            for key in before.files:
                np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    first = tables.collect(score_files(workspace))
    second = tables.collect(score_files(other))
    dev = first.split == "dev"
    pd.testing.assert_frame_equal(first[dev], second[second.split == "dev"])
    pos_test = (first.split == "test") & (first.task == "pos") & (first.metric == "accuracy")
    assert not np.allclose(first[pos_test].value, second[pos_test].value)  # test did change
    views = ["best", "last"]
    pd.testing.assert_frame_equal(view_layers(first, views), view_layers(second, views))


def collect_table(*arguments: str) -> None:
    collect.main("collect-table", [*arguments, *bootstrap_arguments()])


def test_collect_table_is_byte_for_byte_reproducible(workspace, tmp_path):
    inputs = score_files(workspace)
    outputs = []
    for run, order in (("a", inputs), ("b", inputs[::-1])):
        out = tmp_path / run
        collect_table(
            "--inputs", *order, "--out", str(out / "t.parquet"), "--csv", str(out / "t.csv")
        )
        outputs.append(((out / "t.parquet").read_bytes(), (out / "t.csv").read_bytes()))
    assert outputs[0] == outputs[1]
    table = pd.read_parquet(tmp_path / "a/t.parquet")
    assert len(table) == sum(len(pd.read_parquet(p)) for p in inputs)
    csv = pd.read_csv(tmp_path / "a/t.csv", keep_default_na=False)
    np.testing.assert_array_equal(csv.value.to_numpy(), table.value.to_numpy())  # exact floats


def test_collect_table_refuses_a_row_twice(workspace, tmp_path):
    one = score_files(workspace)[0]
    with pytest.raises(InputError, match="the same row"):
        tables.collect([one, one])


def test_transfer_matrices_read_each_cell_at_its_training_languages_dev_layer(workspace, tmp_path):
    collect_table("--inputs", *score_files(workspace), "--out", str(tmp_path / "t.parquet"))
    out = tmp_path / "transfer"
    tables.main(
        "transfer-matrices",
        ["--table", str(tmp_path / "t.parquet"), "--model", "m", "--task", "arc", "--steps", "7"]
        + ["--languages", "bb", "aa", "--views", "last", "best", "1", "--out-dir", str(out)],
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "7_best.csv", "7_last.csv", "7_layer-1.csv", "cells.csv",
    ]  # fmt: skip
    table = pd.read_parquet(tmp_path / "t.parquet")
    cells = pd.read_csv(out / "cells.csv", keep_default_na=False)
    rows = table[(table.task == "arc") & (table.metric == "accuracy") & (table.seed == 0)]
    for view in ("best", "last", "layer-1"):
        matrix = pd.read_csv(out / f"7_{view}.csv", index_col="train_lang")
        assert list(matrix.index) == ["bb", "aa"] and list(matrix.columns) == ["bb", "aa"]
        for train in LANGS:
            dev = rows[(rows.split == "dev") & (rows.train_lang == train)]
            best = int(dev.sort_values(["value", "layer"], ascending=[False, True]).layer.iloc[0])
            layer = {"best": best, "last": 2, "layer-1": 1}[view]
            for test in LANGS:
                cell = cells[(cells.view == view) & (cells.train_lang == train)
                             & (cells.test_lang == test)]  # fmt: skip
                assert cell.layer.tolist() == [layer]
                score = rows[(rows.split == "test") & (rows.layer == layer)
                             & (rows.train_lang == train) & (rows.test_lang == test)]  # fmt: skip
                assert matrix.loc[train, test] == pytest.approx(score.value.item(), abs=1e-6)
                assert cell.ci_low.item() <= cell.value.item() <= cell.ci_high.item()


def test_transfer_matrices_refuse_a_missing_step(workspace, tmp_path):
    collect_table("--inputs", *score_files(workspace), "--out", str(tmp_path / "t.parquet"))
    with pytest.raises(InputError, match="at step 8"):
        tables.main(
            "transfer-matrices",
            ["--table", str(tmp_path / "t.parquet"), "--model", "m", "--task", "pos"]
            + ["--steps", "8", "--views", "last", "--out-dir", str(tmp_path / "x")],
        )


def test_one_score_job_scores_every_task_of_its_probes(workspace, tmp_path):
    out = tmp_path / "both.parquet"
    probes = [str(workspace / "probes/arc/aa.npz"), str(workspace / "probes/pos/aa.npz")]
    probe_cli.main("score-probe", score_arguments(workspace, None, "bb", probes, out))
    both = pd.read_parquet(out)
    assert set(both.task) == {"pos", "arc"}
    for task in ("pos", "arc"):
        alone = pd.read_parquet(workspace / f"scores/{task}/bb.parquet")
        alone = alone[alone.train_lang == "aa"].reset_index(drop=True)
        pd.testing.assert_frame_equal(both[both.task == task].reset_index(drop=True), alone)


def test_score_probe_never_imports_torch(workspace, tmp_path):
    out = tmp_path / "s.parquet"
    code = (
        "import sys; from mlm_dynamics.__main__ import main; "
        "rc = main(sys.argv[1:]); assert 'torch' not in sys.modules, 'torch'; sys.exit(rc)"
    )
    probes = [str(workspace / "probes/pos/aa.npz")]
    argv = ["score-probe", *score_arguments(workspace, None, "bb", probes, out)]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(out)) == 2 * 3 + 2  # test only: aa's probes, 2 seeds


def test_too_small_a_test_split_is_refused_in_one_line(workspace, tmp_path):
    small = {"train": make_sentences(40), "dev": make_sentences(32), "test": make_sentences(12)}
    write_treebank(tmp_path / "treebanks/cc.json.gz", small, "cc")
    for split, sentences in small.items():
        write_cache(tmp_path / f"act/cc/{split}", sentences)
    probes = [str(workspace / "probes/pos/aa.npz")]
    out = tmp_path / "s.parquet"
    with pytest.raises(InputError) as caught:
        probe_cli.main("score-probe", score_arguments(tmp_path, None, "cc", probes, out))
    assert str(caught.value) == (
        f"{tmp_path / 'treebanks/cc.json.gz'} (test split): 12 sentences, fewer than the 30 a "
        "bootstrap interval needs (statistics.min_sentences)"
    )
    assert not out.exists()


def test_empty_train_split_names_the_file(tmp_path):
    splits = {"train": [], "dev": make_sentences(2), "test": make_sentences(2)}
    write_treebank(tmp_path / "cc.json.gz", splits, "cc")
    with pytest.raises(InputError, match=r"cc\.json\.gz: the train split has no sentences"):
        probe_cli.main(
            "train-probe",
            ["--tasks", "pos", "--activations", str(tmp_path), "--treebank"]
            + [
                str(tmp_path / "cc.json.gz"),
                "--seeds",
                "1",
                *FIT,
                "--out",
                str(tmp_path / "p.npz"),
            ],
        )


def test_cuda_device_fits_where_cuda_is_and_falls_back_to_the_cpu_elsewhere(
    workspace, tmp_path, capsys
):
    import torch

    argv = ["--tasks", "pos", "--activations", str(workspace / "act/aa"), "--treebank"]
    argv += [str(workspace / "treebanks/aa.json.gz"), "--seeds", "2", *FIT, "--controls", "pos"]
    probe_cli.main("train-probe", argv + ["--device", "cuda", "--out", str(tmp_path / "c.npz")])
    log = capsys.readouterr().err
    if torch.cuda.is_available():
        assert "device: cuda" in log and "(torch on cuda)" in log
    else:
        assert "device: CUDA is not available, running on CPU" in log and "(torch on cpu)" in log
    fitted = np.load(tmp_path / "c.npz")
    reference = np.load(workspace / "probes/pos/aa.npz")  # fitted on the CPU
    np.testing.assert_array_equal(fitted["classes"], reference["classes"])
    if torch.cuda.is_available():  # other kernels: the same optimum within tolerance
        np.testing.assert_allclose(fitted["coef"], reference["coef"], atol=0.05)
    else:  # the fallback is the CPU fit itself
        np.testing.assert_array_equal(fitted["coef"], reference["coef"])


def test_sklearn_backend_on_cuda_is_refused(workspace, tmp_path):
    argv = ["--tasks", "pos", "--activations", str(workspace / "act/aa"), "--treebank"]
    argv += [str(workspace / "treebanks/aa.json.gz"), "--seeds", "1", *FIT]
    argv += ["--backend", "sklearn", "--device", "cuda"]
    with pytest.raises(InputError, match="--device cuda: the sklearn backend runs on the CPU"):
        probe_cli.main("train-probe", argv + ["--out", str(tmp_path / "p.npz")])
    assert not (tmp_path / "p.npz").exists()


def test_mdl_rows_have_codelength_compression_and_intervals(workspace, tmp_path):
    argv = ["--tasks", "pos", "--activations", str(workspace / "act/aa"), "--treebank"]
    argv += [str(workspace / "treebanks/aa.json.gz"), "--seeds", "1", *FIT, "--mdl"]
    probe_cli.main("train-probe", argv + ["--out", str(tmp_path / "pos.npz")])
    out = tmp_path / "s.parquet"
    probe_cli.main(
        "score-probe", score_arguments(workspace, None, "aa", [str(tmp_path / "pos.npz")], out)
    )
    frame = pd.read_parquet(out)
    mdl = frame[frame.metric.str.startswith("mdl_")].set_index(["metric", "layer"]).sort_index()
    assert set(mdl.split) == {"train"} and len(mdl) == 2 * 3
    with np.load(tmp_path / "pos.npz") as z:
        uniform = float(z["mdl_uniform"])
        assert uniform == pytest.approx(SIZES["train"] * 5 * np.log2(17))
        np.testing.assert_allclose(z["mdl_item_bits"].sum(axis=1), z["mdl_codelength"], rtol=1e-5)
    codelength = mdl.loc["mdl_codelength"]
    np.testing.assert_allclose(mdl.loc["mdl_compression"].value, uniform / codelength.value)
    # each word form has its own vector and a fixed tag: far below the uniform code
    assert (mdl.loc["mdl_compression"].value > 2).all()
    assert (mdl.ci_low < mdl.value).all() and (mdl.value < mdl.ci_high).all()


# ---------------------------------------------------------------- one layer view, one baseline

# dev accuracy per layer of the in-language probes, and test accuracy of aa's probe on bb: for the
# cell aa -> bb at view best, aa's dev chooses layer 1, bb's dev would choose 2 and test 0.
DEV = {"aa": [0.5, 0.9, 0.6], "bb": [0.4, 0.5, 0.8]}
TEST = {("aa", "aa"): [0.3, 0.6, 0.9], ("aa", "bb"): [0.8, 0.6, 0.7],
        ("bb", "aa"): [0.2, 0.7, 0.4], ("bb", "bb"): [0.9, 0.3, 0.5]}  # fmt: skip


def disagreeing_table():
    """A tidy table whose best layer on dev, best on test and best of the test language differ."""
    rows = []

    def row(train, test, split, layer, metric, value):
        rows.append(dict(model="m", step=10, task="pos", layer=layer, train_lang=train,
                         test_lang=test, split=split, seed=0, metric=metric, value=value,
                         ci_low=value - 0.1, ci_high=value + 0.1, n=50))  # fmt: skip

    for lang, values in DEV.items():
        for layer, value in enumerate(values):
            row(lang, lang, "dev", layer, "accuracy", value)
    for (train, test), values in TEST.items():
        for layer, value in enumerate(values):
            row(train, test, "test", layer, "accuracy", value)
        # the baseline row, and a stray per-layer one that no reader may take for it
        row(train, test, "test", tables.BASELINE_LAYER, tables.BASELINE_METRIC, 0.25)
        row(train, test, "test", 0, tables.BASELINE_METRIC, 0.99)
    return tables.tidy_table(tables.tidy_frame(rows))


def test_the_figures_and_the_transfer_csvs_read_the_same_dev_chosen_layer(tmp_path):
    from mlm_dynamics import figures

    table = disagreeing_table()
    out = tmp_path / "transfer"
    tables.transfer_matrices(table, "m", "pos", [], ["aa", "bb"], ["last", "best"], out, "t")
    csv = pd.read_csv(out / "cells.csv", keep_default_na=False)
    cells = figures.PlotInputs(table=table, views=["last", "best"]).cells
    key = ["view", "train_lang", "test_lang", "step"]
    merged = csv.merge(cells, on=key, suffixes=("_csv", "_figure"))
    assert len(merged) == len(csv) == 2 * 4
    assert (merged["layer_csv"] == merged["layer_figure"]).all()
    best = merged[merged.view == "best"].set_index(["train_lang", "test_lang"])
    # the training language's dev choice: not the test split's, not the test language's
    assert best.loc[("aa", "bb"), "layer_csv"] == 1 == int(np.argmax(DEV["aa"]))
    assert int(np.argmax(TEST["aa", "bb"])) == 0 and int(np.argmax(DEV["bb"])) == 2
    assert best.loc[("bb", "aa"), "layer_csv"] == 2
    assert (merged[merged.view == "last"]["layer_csv"] == 2).all()
    matrix = pd.read_csv(out / "10_best.csv", index_col="train_lang")
    assert matrix.loc["aa", "bb"] == pytest.approx(TEST["aa", "bb"][1])
    assert best.loc[("aa", "bb"), "value_figure"] == pytest.approx(TEST["aa", "bb"][1])


def test_the_majority_baseline_is_the_row_at_the_baseline_layer():
    baselines = findings.majority_baselines(disagreeing_table())
    assert len(baselines) == len(TEST)
    assert np.allclose(baselines["majority_accuracy"], 0.25)
