"""KeptOutputs: what a failed run deleted comes back, byte for byte and mtime for mtime; what it
re-made stays."""

from __future__ import annotations

import os
from pathlib import Path

from mlm_dynamics.kept import KeptOutputs


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_deleted_output_comes_back_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    probe = write(tmp_path / "results/probes/a.npz", "old probe")
    checkpoint = write(tmp_path / "results/checkpoints/m/20/model.safetensors", "old weights")
    os.utime(probe, ns=(1_000_000_000, 1_000_000_000))
    store = KeptOutputs(tmp_path / ".snakemake/kept")
    kept = store.keep(["results/probes/a.npz", "results/checkpoints/m/20", "results/none.csv"])
    assert kept == ["results/probes/a.npz", "results/checkpoints/m/20"]
    probe.unlink()  # as Snakemake does before the job, and the job failed
    for path in checkpoint.parent.iterdir():
        path.unlink()
    checkpoint.parent.rmdir()
    assert store.restore() == kept
    assert probe.read_text() == "old probe"
    assert probe.stat().st_mtime_ns == 1_000_000_000
    assert checkpoint.read_text() == "old weights"
    assert not store.store.exists()


def test_an_output_a_job_re_made_is_not_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = write(tmp_path / "results/table.csv", "old")
    store = KeptOutputs(tmp_path / "kept")
    store.keep([str(table)])  # an absolute path
    table.unlink()
    write(table, "new")  # the job succeeded; another failed
    assert store.restore() == []
    assert table.read_text() == "new"


def test_linking_is_not_copying(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = write(tmp_path / "results/cache/00.npy", "x" * 1000)
    store = KeptOutputs(tmp_path / "kept")
    store.keep(["results/cache"])
    assert cache.stat().st_nlink == 2
    store.discard()
    assert cache.stat().st_nlink == 1 and not store.store.exists()


def test_what_a_killed_run_left_is_put_back_before_the_next_keeps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    score = write(tmp_path / "results/scores/a.parquet", "old score")
    KeptOutputs(tmp_path / "kept").keep(["results/scores/a.parquet"])
    score.unlink()  # the run was killed before its job wrote anything
    again = KeptOutputs(tmp_path / "kept")
    assert again.keep(["results/scores/a.parquet"]) == ["results/scores/a.parquet"]
    assert score.read_text() == "old score"
