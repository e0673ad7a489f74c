"""The exploration notebook runs top to bottom on a table named by MLM_DYNAMICS_TABLE."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from synthetic_tables import synthetic_table

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_results.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_the_notebook_redraws_figures_from_a_table(tmp_path, monkeypatch):
    table = tmp_path / "probing.parquet"
    synthetic_table(simalign=False).to_parquet(table, index=False)
    monkeypatch.setenv("MLM_DYNAMICS_TABLE", str(table))  # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    text = "".join(output.get("text", "") for output in outputs)
    assert f"{table}: " in text  # the environment variable chose the table
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 2
