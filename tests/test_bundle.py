"""The bundled data: the pretraining text never contains a probe-test or held-out sentence."""

import gzip
from pathlib import Path

import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
LANGUAGES = ["en", "fr", "de", "ru", "zh", "ko"]


def lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def texts_of_treebank(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {line.split("=", 1)[1].strip() for line in f if line.startswith("# text =")}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pretraining_text_excludes_tested_sentences(lang):
    pretrain = lines(RESOURCES / "text" / f"{lang}.txt.gz")
    heldout = lines(RESOURCES / "heldout" / f"{lang}.txt.gz")
    (test_file,) = (RESOURCES / "ud").glob(f"UD_*/{lang}_*-ud-test.conllu.gz")
    probe_test = texts_of_treebank(test_file)
    assert len(probe_test) > 250 and len(heldout) > 90 and len(pretrain) > 500
    assert not pretrain & probe_test
    assert not pretrain & heldout


def test_attribution_names_every_bundled_treebank():
    readme = (RESOURCES / "README.md").read_text()
    for folder in (RESOURCES / "ud").iterdir():
        assert folder.name in readme
    assert "CC BY-SA 4.0" in readme
