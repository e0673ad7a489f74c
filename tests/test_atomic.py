"""Atomic writes: nothing partial under a final name, and leftovers of a killed writer removed."""

import numpy as np
import pytest

from mlm_dynamics.atomic import atomic_dir, save_npy


def test_a_failed_write_leaves_neither_output_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="^killed$"), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "layer00.npy").write_bytes(b"partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_writer_are_removed_by_the_next(tmp_path):
    (tmp_path / ".tmp-out.abc123").mkdir()  # what SIGKILL leaves behind
    (tmp_path / ".tmp-out.abc123" / "layer00.npy").write_bytes(b"partial")
    (tmp_path / ".tmp-x.npy.def456.npy").write_bytes(b"partial")
    (tmp_path / ".tmp-other.zzz").mkdir()  # another output's: left alone
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "done").write_text("ok")
    save_npy(tmp_path / "x.npy", np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-other.zzz", "out", "x.npy"]
    assert (tmp_path / "out" / "done").read_text() == "ok"
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
