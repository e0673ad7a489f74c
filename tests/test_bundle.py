"""The bundled data: the pretraining text never contains a probe-dev, probe-test or held-out
sentence."""

import gzip
from pathlib import Path

import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
LANGUAGES = ["en", "fr", "de", "ru", "zh", "ko", "es"]


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
    probe = {
        split: texts_of_treebank(
            next((RESOURCES / "ud").glob(f"UD_*/{lang}_*-ud-{split}.conllu.gz"))
        )
        for split in ("train", "dev", "test")
    }
    assert len(probe["test"]) > 250 and len(probe["dev"]) > 140 and len(heldout) > 90
    assert len(pretrain) > 400
    assert not pretrain & probe["test"]
    assert not pretrain & probe["dev"]
    assert not pretrain & heldout


def test_attribution_names_every_bundled_treebank():
    readme = (RESOURCES / "README.md").read_text()
    for folder in (RESOURCES / "ud").iterdir():
        assert folder.name in readme
    assert "CC BY-SA 4.0" in readme
