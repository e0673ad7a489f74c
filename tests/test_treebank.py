"""prepare-treebank: CoNLL-U validation, word filtering, subsampling and the prepared files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.errors import InputError
from mlm_dynamics.treebank import (
    Sentence,
    carve_dev,
    load_prepared,
    prepare,
    read_conllu,
    subsample,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_UD = REPO.parent / "shared" / "ud"


CAPS = {"train": 10, "dev": 10, "test": 10}


def conllu_line(*columns) -> str:
    return "\t".join(str(c) for c in columns)


def word(i, form, upos, head, deprel) -> str:
    return conllu_line(i, form, form.lower(), upos, "_", "_", head, deprel, "_", "_")


# A multiword token (1-2) and an empty node (3.1), both to be skipped.
SENTENCE_1 = "\n".join(
    [
        "# sent_id = s1",
        "# text = Du bist gut.",
        conllu_line("1-2", "Dubist", *["_"] * 8),
        word(1, "Du", "PRON", 3, "nsubj"),
        word(2, "bist", "AUX", 3, "cop"),
        word(3, "gut", "ADJ", 0, "root"),
        conllu_line("3.1", "ist", "sein", "AUX", "_", "_", "_", "_", "3:orphan", "_"),
        word(4, ".", "PUNCT", 3, "punct"),
    ]
)
SENTENCE_2 = "\n".join(
    [
        "# text = Ich lese.",
        word(1, "Ich", "PRON", 2, "nsubj:pass"),
        word(2, "lese", "VERB", 0, "root"),
        word(3, "Bücher", "NOUN", 2, "obj"),
    ]
)


def write_treebank(directory: Path, train: str, test: str, suffix: str = ".conllu") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("test", test)):
        path = directory / f"xx_toy-ud-{split}{suffix}"
        data = text.encode("utf-8")
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    return directory


def test_words_multiword_tokens_empty_nodes_and_subtypes(tmp_path):
    path = tmp_path / "toy-ud-train.conllu"
    path.write_text(SENTENCE_1 + "\n\n" + SENTENCE_2 + "\n\n", encoding="utf-8")
    first, second = read_conllu(path, "train")
    assert first == Sentence(
        id="s1",
        words=("Du", "bist", "gut", "."),
        upos=("PRON", "AUX", "ADJ", "PUNCT"),
        head=(3, 3, 0, 3),
        deprel=("nsubj", "cop", "root", "punct"),
    )
    assert second.id == "train-2"  # no sent_id: split and position in the file
    assert second.deprel == ("nsubj", "root", "obj")  # nsubj:pass -> nsubj
    assert second.words[2] == "Bücher"


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("3\tgut\tgut\tADJ\t_\t_\t0\troot\t_", "9 tab-separated columns"),
        ("3\tgut\tgut\tADJ\t_\t_\tzero\troot\t_\t_", "head 'zero' is not an integer"),
        ("3\tgut\tgut\tADJ\t_\t_\t7\troot\t_\t_", "head 7 is out of range"),
        ("3\tgut\tgut\tADJ\t_\t_\t-1\troot\t_\t_", "head -1 is out of range"),
    ],
)
def test_bad_lines_are_refused_with_file_and_line(tmp_path, bad_line, message):
    lines = SENTENCE_2.splitlines()[:-1] + [bad_line]  # the bad word is line 4 of sentence 2
    text = SENTENCE_1 + "\n\n" + "\n".join(lines) + "\n\n"
    directory = write_treebank(tmp_path / "tb", train=text, test=SENTENCE_1 + "\n\n")
    with pytest.raises(InputError) as caught:
        prepare(directory, CAPS, seed=0)
    bad_number = len(SENTENCE_1.splitlines()) + 1 + len(lines)
    assert str(caught.value).startswith(f"{directory / 'xx_toy-ud-train.conllu'}:{bad_number}: ")
    assert message in str(caught.value)


def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys):
    bad = SENTENCE_2.replace("\t2\tnsubj:pass", "\t9\tnsubj:pass")
    directory = write_treebank(tmp_path / "tb", train=bad + "\n\n", test=SENTENCE_1 + "\n\n")
    out = tmp_path / "out"
    argv = ["prepare-treebank", "--treebank", str(directory), "--language", "xx"]
    argv += ["--max-train", "10", "--max-dev", "10", "--max-test", "10", "--dev-fraction", "0.2"]
    argv += ["--min-sentences", "1"]
    argv += ["--out", str(out / "xx.json.gz"), "--labels", str(out / "xx.labels.json")]
    assert cli(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"error: {directory / 'xx_toy-ud-train.conllu'}:2: head 9 is out of range "
        "(sentence has 3 words)"
    ]
    assert not out.exists() or not any(p.name.startswith("xx") for p in out.iterdir())


def test_missing_split_and_empty_split(tmp_path):
    directory = tmp_path / "tb"
    directory.mkdir()
    (directory / "xx_toy-ud-train.conllu").write_text(SENTENCE_1 + "\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"tb: no \*-ud-test\.conllu\[\.gz\]"):
        prepare(directory, CAPS, seed=0)
    (directory / "xx_toy-ud-test.conllu").write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="xx_toy-ud-test.conllu: no sentences"):
        prepare(directory, CAPS, seed=0)


def toy_sentences(n, prefix="s"):
    return [Sentence(f"{prefix}{i}", ("w",), ("X",), (0,), ("root",)) for i in range(n)]


def test_dev_is_carved_from_train_when_the_treebank_has_none(tmp_path):
    sentences = toy_sentences(100)
    train, dev = carve_dev(sentences, 0.2, seed=13, min_sentences=5, path=Path("t.conllu"))
    assert len(dev) == 20 and len(train) == 80
    assert {s.id for s in train}.isdisjoint({s.id for s in dev})
    assert [s.id for s in dev] == sorted((s.id for s in dev), key=lambda i: int(i[1:]))
    assert carve_dev(sentences, 0.2, 13, 5, Path("t.conllu")) == (train, dev)  # seeded
    with pytest.raises(InputError) as caught:
        carve_dev(toy_sentences(40), 0.2, seed=13, min_sentences=30, path=Path("t.conllu"))
    assert str(caught.value) == (
        "t.conllu: no dev split in the treebank, and its 40 train sentences are too few to carve "
        "one (8 dev / 32 train at dev_fraction 0.2; each needs >= 30)"
    )


def test_a_treebank_dev_file_is_used_and_small_sets_are_refused(tmp_path):
    blocks = [f"# sent_id = t{i}\n" + word(1, f"w{i}", "NOUN", 0, "root") for i in range(40)]
    text = "\n\n".join(blocks) + "\n\n"
    directory = write_treebank(tmp_path / "tb", train=text, test=text)
    (directory / "xx_toy-ud-dev.conllu").write_text(text.replace("t", "d"), encoding="utf-8")
    splits = prepare(directory, {"train": 40, "dev": 35, "test": 40}, seed=0, min_sentences=30)
    assert len(splits["dev"]) == 35 and splits["dev"][0].id.startswith("d")
    assert len(splits["train"]) == 40  # nothing carved from train when dev exists
    with pytest.raises(InputError) as caught:
        prepare(directory, {"train": 40, "dev": 40, "test": 20}, seed=0, min_sentences=30)
    assert str(caught.value) == (
        f"{directory / 'xx_toy-ud-test.conllu'}: 20 test sentences after the cap of 20, fewer "
        "than the 30 a bootstrap interval needs (statistics.min_sentences)"
    )


def test_subsample_is_seeded_keeps_order_and_caps():
    sentences = [Sentence(str(i), ("w",), ("X",), (0,), ("root",)) for i in range(50)]
    picked = subsample(sentences, 10, seed=13, split="train")
    assert len(picked) == 10
    ids = [int(s.id) for s in picked]
    assert ids == sorted(ids)
    assert picked == subsample(sentences, 10, seed=13, split="train")
    assert picked != subsample(sentences, 10, seed=14, split="train")
    assert subsample(sentences, 60, seed=13, split="train") == sentences
    assert subsample(sentences, 0, seed=13, split="train") == []


def test_cli_on_bundled_treebank_writes_the_documented_files(tmp_path):
    out, labels = tmp_path / "en.json.gz", tmp_path / "en.labels.json"
    argv = ["prepare-treebank", "--treebank", str(REPO / "resources/ud/UD_English-EWT")]
    argv += ["--language", "en", "--max-train", "40", "--max-dev", "30", "--max-test", "35"]
    argv += ["--dev-fraction", "0.2", "--min-sentences", "30", "--seed", "13"]
    assert cli(argv + ["--out", str(out), "--labels", str(labels)]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        obj = json.load(f)
    assert obj["language"] == "en" and obj["source"].endswith("UD_English-EWT")
    assert [len(obj["splits"][split]) for split in ("train", "dev", "test")] == [40, 30, 35]
    first = obj["splits"]["train"][0]
    assert set(first) == {"id", "words", "upos", "head", "deprel"}
    splits = load_prepared(out)
    train = splits["train"]
    assert all(len(s.words) == len(s.upos) == len(s.head) == len(s.deprel) > 0 for s in train)
    assert all(0 <= h <= len(s.words) for s in train for h in s.head)
    assert not any(":" in rel for s in train for rel in s.deprel)
    inventory = json.loads(labels.read_text())
    assert inventory["upos"] == sorted({t for s in train for t in s.upos})
    assert inventory["deprel"] == sorted({r for s in train for r in s.deprel})
    first_bytes = out.read_bytes()
    assert cli(argv + ["--out", str(out), "--labels", str(labels)]) == 0
    assert out.read_bytes() == first_bytes  # reruns are byte-identical


@pytest.mark.skipif(not (SHARED_UD / "UD_Bulgarian-BTB").is_dir(), reason="no ../shared/ud")
def test_full_release_layout_with_plain_and_gzipped_files(tmp_path):
    """A release-like directory (train, dev, test; one gzipped, one plain) of a real treebank."""
    source = SHARED_UD / "UD_Bulgarian-BTB"
    directory = tmp_path / "UD_Bulgarian-BTB"
    directory.mkdir()
    (directory / "bg_btb-ud-train.conllu.gz").symlink_to(source / "bg_btb-ud-dev.conllu.gz")
    (directory / "bg_btb-ud-dev.conllu.gz").symlink_to(source / "bg_btb-ud-dev.conllu.gz")
    with gzip.open(source / "bg_btb-ud-test.conllu.gz", "rb") as f:
        (directory / "bg_btb-ud-test.conllu").write_bytes(f.read())
    splits = prepare(directory, {"train": 100, "dev": 50, "test": 5000}, seed=13)
    assert len(splits["train"]) == 100
    all_test = read_conllu(directory / "bg_btb-ud-test.conllu", "test")
    assert splits["test"] == all_test and len(all_test) > 1000  # under the cap: all kept
    assert {"NOUN", "VERB", "PUNCT"} <= {t for s in splits["train"] for t in s.upos}
