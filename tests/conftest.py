"""Shared fixtures: a tiny real Hugging Face checkpoint (tokenizer + random XLM-R)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory: SentencePiece tokenizer trained on the bundled text and a seeded,
    randomly initialised ``XLMRobertaForMaskedLM`` (2 layers, hidden 32, 32 positions usable)
    saved as safetensors; short positions make long UD sentences need windows."""
    from mlm_dynamics.config_check import schema_default
    from mlm_dynamics.pretrain import initial_model, settings_from, train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [
        line
        for path in sorted((REPO / "resources" / "text").glob("*.txt.gz"))
        for line in read_lines(path, limit=100)
    ]
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    shape = settings_from(
        {**schema_default("pretrain"), "hidden_size": 32, "layers": 2, "attention_heads": 2,
         "intermediate_size": 64, "max_length": 32}
    )  # fmt: skip
    model = initial_model(tokenizer, shape)  # seeded
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def reference(request, tmp_path_factory) -> Path:
    """The reduced default (tests/workflow_run.py), run from nothing once for every end-to-end
    test of the session (minutes: the tests using it are marked e2e). Tests that change it work
    on a copy. Under pytest-xdist the first worker that needs it runs it and the others wait for
    it, in the directory the workers share."""
    if not hasattr(request.config, "workerinput"):  # one process: no other test session to share
        return run_reference(tmp_path_factory.mktemp("reference"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this session's, above each worker's own
    workdir, done = shared / "reference", shared / "reference.done"
    with FileLock(shared / "reference.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            run_reference(workdir)
            done.touch()
    return workdir


def run_reference(workdir: Path) -> Path:
    import yaml
    from workflow_run import reduced_config, run_to_completion

    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_config()))
    run_to_completion(workdir)
    return workdir


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """A test that uses the reference run is end to end whatever its file says, so the fast
    command (``pytest -m "not e2e"``) never starts the workflow (before the mark plugin
    deselects)."""
    for item in items:
        if "reference" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
