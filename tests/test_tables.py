"""train-probe, score-probe, collect-table and transfer-matrices on a small two-language cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_probing_tasks import make_sentences, write_cache, write_treebank

from mlm_dynamics import probe_cli, tables
from mlm_dynamics.errors import InputError

REPO = Path(__file__).resolve().parents[1]
LANGS = ("aa", "bb")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Caches and treebanks of two languages, probes of pos and arc (2 seeds), their scores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("probing")
    for i, lang in enumerate(LANGS):
        splits = {"train": make_sentences(30, seed=i), "test": make_sentences(15, seed=10 + i)}
        write_treebank(root / f"treebanks/{lang}.json.gz", splits, lang)
        for split, sentences in splits.items():
            write_cache(root / f"act/{lang}/{split}", sentences, seed=2 * i + len(split))
    for lang in LANGS:  # both tasks in one job, as the workflow runs them
        probe_cli.main(
            "train-probe",
            ["--tasks", "pos", "arc", "--activations", str(root / f"act/{lang}")]
            + ["--treebank", str(root / f"treebanks/{lang}.json.gz"), "--seeds", "2", "--out"]
            + [str(root / f"probes/{task}/{lang}.npz") for task in ("pos", "arc")],
        )
    for task in ("pos", "arc"):
        for lang in LANGS:
            probe_cli.main(
                "score-probe",
                ["--probes"]
                + [str(root / f"probes/{task}/{train}.npz") for train in LANGS]
                + ["--activations", str(root / f"act/{lang}")]
                + ["--treebank", str(root / f"treebanks/{lang}.json.gz")]
                + ["--model", "m", "--step", "7"]
                + ["--out", str(root / f"scores/{task}/{lang}.parquet")],
            )
    torch.set_num_threads(threads)
    return root


def score_files(root):
    return sorted(str(p) for p in (root / "scores").glob("*/*.parquet"))


def test_score_rows_are_tidy(workspace):
    frame = pd.read_parquet(workspace / "scores/pos/aa.parquet")
    assert list(frame.columns) == list(tables.COLUMNS)
    accuracy = frame[frame.metric == "accuracy"]
    # 2 train languages x 2 seeds x 3 layers
    assert len(accuracy) == 12
    assert set(accuracy.layer) == {0, 1, 2} and set(accuracy.seed) == {0, 1}
    assert set(accuracy.train_lang) == set(LANGS) and set(frame.test_lang) == {"aa"}
    assert (frame.step == 7).all() and (frame.model == "m").all()
    assert (accuracy.n == 15 * 5).all()  # words of the test split
    own = accuracy[(accuracy.train_lang == "aa") & (accuracy.layer == 0)]
    assert (own.value > 0.9).all()  # each word form has its own vector and a fixed tag


def test_majority_accuracy_is_the_train_majority_on_this_test(workspace):
    frame = pd.read_parquet(workspace / "scores/pos/bb.parquet")
    majority = frame[frame.metric == "majority_accuracy"]
    assert (majority.layer == -1).all() and len(majority) == 4
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
        # the seeds draw different negatives, so their standardisation differs
        assert not np.array_equal(z["mean"][0], z["mean"][1])


def test_collect_table_is_byte_for_byte_reproducible(workspace, tmp_path):
    inputs = score_files(workspace)
    outputs = []
    for run, order in (("a", inputs), ("b", inputs[::-1])):
        out = tmp_path / run
        tables.main(
            "collect-table",
            ["--inputs", *order, "--out", str(out / "t.parquet"), "--csv", str(out / "t.csv")],
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


def test_transfer_matrix_diagonal_is_the_in_language_score(workspace, tmp_path):
    tables.main(
        "collect-table", ["--inputs", *score_files(workspace), "--out", str(tmp_path / "t.parquet")]
    )
    out = tmp_path / "transfer"
    tables.main(
        "transfer-matrices",
        ["--table", str(tmp_path / "t.parquet"), "--model", "m", "--task", "arc", "--steps", "7"]
        + ["--languages", "bb", "aa", "--out-dir", str(out)],
    )
    assert sorted(p.name for p in out.iterdir()) == ["7_best.csv", "7_last.csv", "layers.csv"]
    table = pd.read_parquet(tmp_path / "t.parquet")
    layers = pd.read_csv(out / "layers.csv")
    for kind, layer in (("best", int(layers.best_layer[0])), ("last", 2)):
        matrix = pd.read_csv(out / f"7_{kind}.csv", index_col="train_lang")
        assert list(matrix.index) == ["bb", "aa"] and list(matrix.columns) == ["bb", "aa"]
        for train in LANGS:
            for test in LANGS:
                rows = table[
                    (table.task == "arc") & (table.metric == "accuracy") & (table.layer == layer)
                    & (table.train_lang == train) & (table.test_lang == test)
                ]  # fmt: skip
                assert len(rows) == 2  # seeds
                assert matrix.loc[train, test] == pytest.approx(rows.value.mean(), abs=1e-6)
    # the best layer maximises the in-language mean
    own = table[(table.task == "arc") & (table.metric == "accuracy")]
    own = own[own.train_lang == own.test_lang].groupby("layer").value.mean()
    assert int(layers.best_layer[0]) == int(own.idxmax())


def test_transfer_matrices_refuse_a_missing_step(workspace, tmp_path):
    tables.main(
        "collect-table", ["--inputs", *score_files(workspace), "--out", str(tmp_path / "t.parquet")]
    )
    with pytest.raises(InputError, match="at step 8"):
        tables.main(
            "transfer-matrices",
            ["--table", str(tmp_path / "t.parquet"), "--model", "m", "--task", "pos"]
            + ["--steps", "8", "--out-dir", str(tmp_path / "x")],
        )


def test_one_score_job_scores_every_task_of_its_probes(workspace, tmp_path):
    out = tmp_path / "both.parquet"
    probe_cli.main(
        "score-probe",
        ["--probes", str(workspace / "probes/arc/aa.npz"), str(workspace / "probes/pos/aa.npz")]
        + ["--activations", str(workspace / "act/bb")]
        + ["--treebank", str(workspace / "treebanks/bb.json.gz")]
        + ["--model", "m", "--step", "7", "--out", str(out)],
    )
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
    argv = ["score-probe", "--probes", str(workspace / "probes/pos/aa.npz")]
    argv += ["--activations", str(workspace / "act/bb"), "--treebank"]
    argv += [str(workspace / "treebanks/bb.json.gz"), "--model", "m", "--step", "7"]
    argv += ["--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(out)) == 2 * 3 + 2


def test_empty_train_split_names_the_file(tmp_path):
    write_treebank(tmp_path / "cc.json.gz", {"train": [], "test": make_sentences(2)}, "cc")
    with pytest.raises(InputError, match=r"cc\.json\.gz: the train split has no sentences"):
        probe_cli.main(
            "train-probe",
            ["--tasks", "pos", "--activations", str(tmp_path), "--treebank"]
            + [str(tmp_path / "cc.json.gz"), "--out", str(tmp_path / "p.npz")],
        )


def test_cuda_device_fits_where_cuda_is_and_falls_back_to_the_cpu_elsewhere(
    workspace, tmp_path, capsys
):
    import torch

    argv = ["--tasks", "pos", "--activations", str(workspace / "act/aa"), "--treebank"]
    argv += [str(workspace / "treebanks/aa.json.gz"), "--seeds", "2"]
    probe_cli.main("train-probe", argv + ["--device", "cuda", "--out", str(tmp_path / "c.npz")])
    log = capsys.readouterr().err
    if torch.cuda.is_available():
        assert "device: cuda" in log and "on cuda, iterations" in log
    else:
        assert "device: CUDA is not available, fitting on CPU" in log and "on cpu," in log
    fitted = np.load(tmp_path / "c.npz")
    reference = np.load(workspace / "probes/pos/aa.npz")  # fitted on the CPU
    np.testing.assert_array_equal(fitted["classes"], reference["classes"])
    if torch.cuda.is_available():  # other kernels: the same optimum within tolerance
        np.testing.assert_allclose(fitted["coef"], reference["coef"], atol=0.05)
    else:  # the fallback is the CPU fit itself
        np.testing.assert_array_equal(fitted["coef"], reference["coef"])


def test_sklearn_backend_on_cuda_is_refused(workspace, tmp_path):
    argv = ["--tasks", "pos", "--activations", str(workspace / "act/aa"), "--treebank"]
    argv += [str(workspace / "treebanks/aa.json.gz"), "--backend", "sklearn", "--device", "cuda"]
    with pytest.raises(InputError, match="--device cuda: the sklearn backend runs on the CPU"):
        probe_cli.main("train-probe", argv + ["--out", str(tmp_path / "p.npz")])
    assert not (tmp_path / "p.npz").exists()
