"""UD treebank preparation: validated CoNLL-U in, a compact subsampled JSON per language out.

``prepare-treebank`` reads the train, dev and test splits of one UD treebank directory (a bundled
one or a full release's ``UD_<Name>`` folder), keeps the syntactic words (no multiword-token ranges,
no empty nodes) with their form, UPOS, head and universal relation, draws a seeded subsample per
split that keeps treebank order, and writes::

    results/treebanks/{lang}.json.gz      {"language", "source", "splits": {"train": [..], ...}}
    results/treebanks/{lang}.labels.json  {"upos": [...], "deprel": [...]}  (labels seen in train)

The dev split is what every choice made from scores reads (a layer, the L2 strength); test is only
reported. A treebank without a dev file gets one carved from its train file: a seeded
``dev_fraction`` of its sentences, before the caps. Dev and test must each keep at least
``min_sentences`` sentences (the bootstrap's smallest set), else the preparation stops naming the
split.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import conllu

from mlm_dynamics.atomic import atomic_path, save_json
from mlm_dynamics.errors import InputError

SPLITS = ("train", "dev", "test")
N_COLUMNS = 10


@dataclass(frozen=True)
class Sentence:
    id: str
    words: tuple[str, ...]
    upos: tuple[str, ...]
    head: tuple[int, ...]  # CoNLL-U heads: 0 = root, else the 1-based index of the head word
    deprel: tuple[str, ...]  # universal relation, subtype stripped

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "words": list(self.words),
            "upos": list(self.upos),
            "head": list(self.head),
            "deprel": list(self.deprel),
        }

    @classmethod
    def from_json(cls, obj: dict) -> Sentence:
        return cls(
            id=str(obj["id"]),
            words=tuple(obj["words"]),
            upos=tuple(obj["upos"]),
            head=tuple(int(h) for h in obj["head"]),
            deprel=tuple(obj["deprel"]),
        )


# ---------------------------------------------------------------- reading CoNLL-U


def split_file(treebank_dir: str | Path, split: str) -> Path | None:
    """The ``*-ud-{split}.conllu`` (or ``.conllu.gz``) file of a treebank directory, if any."""
    treebank_dir = Path(treebank_dir)
    found = sorted(
        path
        for pattern in (f"*-ud-{split}.conllu", f"*-ud-{split}.conllu.gz")
        for path in treebank_dir.glob(pattern)
    )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise InputError(f"{treebank_dir}: more than one {split} split ({names})")
    return found[0] if found else None


def read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def validate_conllu(text: str, path: Path) -> None:
    """Refuse malformed lines with ``path:LINE: ...`` (the conllu parser itself is lenient)."""
    # (line number, head column) of each syntactic word of the current sentence
    heads: list[tuple[int, str]] = []

    def close_sentence() -> None:
        n_words = len(heads)
        for number, head in heads:
            try:
                value = int(head)
            except ValueError:
                raise InputError(f"{path}:{number}: head {head!r} is not an integer") from None
            if not 0 <= value <= n_words:
                raise InputError(
                    f"{path}:{number}: head {value} is out of range (sentence has {n_words} words)"
                )
        heads.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            close_sentence()
            continue
        if line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != N_COLUMNS:
            raise InputError(
                f"{path}:{number}: {len(columns)} tab-separated columns, CoNLL-U has {N_COLUMNS}"
            )
        token_id = columns[0]
        if "-" in token_id or "." in token_id:
            continue  # multiword-token range or empty node: not a syntactic word
        if not token_id.isdigit():
            raise InputError(f"{path}:{number}: word id {token_id!r} is not an integer")
        if int(token_id) != len(heads) + 1:
            raise InputError(
                f"{path}:{number}: word id {token_id} out of sequence (expected {len(heads) + 1})"
            )
        heads.append((number, columns[6]))
    close_sentence()


def read_conllu(path: str | Path, split: str) -> list[Sentence]:
    """Validated sentences of one CoNLL-U file, syntactic words only, in file order."""
    path = Path(path)
    text = read_text(path)
    validate_conllu(text, path)
    sentences = []
    for number, tokenlist in enumerate(conllu.parse_incr(io.StringIO(text)), start=1):
        words = [token for token in tokenlist if isinstance(token["id"], int)]
        if not words:
            continue
        sentences.append(
            Sentence(
                id=str(tokenlist.metadata.get("sent_id") or f"{split}-{number}"),
                words=tuple(token["form"] for token in words),
                upos=tuple(token["upos"] for token in words),
                head=tuple(int(token["head"]) for token in words),
                deprel=tuple(token["deprel"].split(":")[0] for token in words),
            )
        )
    return sentences


def subsample(sentences: list[Sentence], cap: int, seed: int, split: str) -> list[Sentence]:
    """At most ``cap`` sentences, a seeded random choice kept in treebank order."""
    if len(sentences) <= cap:
        return list(sentences)
    rng = random.Random(f"{seed}:{split}")  # string seeds are hashed deterministically
    keep = sorted(rng.sample(range(len(sentences)), cap))
    return [sentences[i] for i in keep]


def carve_dev(
    train: list[Sentence], fraction: float, seed: int, min_sentences: int, path: Path
) -> tuple[list[Sentence], list[Sentence]]:
    """(train, dev): a seeded ``fraction`` of the train sentences becomes dev, both in order."""
    n_dev = round(fraction * len(train))
    if min(n_dev, len(train) - n_dev) < min_sentences:
        raise InputError(
            f"{path}: no dev split in the treebank, and its {len(train)} train sentences are too "
            f"few to carve one ({n_dev} dev / {len(train) - n_dev} train at dev_fraction "
            f"{fraction}; each needs >= {min_sentences})"
        )
    rng = random.Random(f"{seed}:carve-dev")
    dev_rows = set(rng.sample(range(len(train)), n_dev))
    return (
        [s for i, s in enumerate(train) if i not in dev_rows],
        [s for i, s in enumerate(train) if i in dev_rows],
    )


def prepare(
    treebank_dir: str | Path,
    caps: dict[str, int],
    seed: int,
    dev_fraction: float = 0.2,
    min_sentences: int = 1,
) -> dict[str, list[Sentence]]:
    """The subsampled splits of one treebank directory; ``caps["train"] == 0`` drops train."""
    treebank_dir = Path(treebank_dir)
    if not treebank_dir.is_dir():
        raise InputError(f"{treebank_dir}: no such treebank directory")
    files = {split: split_file(treebank_dir, split) for split in SPLITS}
    missing = [split for split in ("train", "test") if files[split] is None]
    if missing:
        wanted = " and ".join(f"*-ud-{split}.conllu[.gz]" for split in missing)
        raise InputError(f"{treebank_dir}: no {wanted} in the treebank directory")
    read = {split: read_conllu(path, split) for split, path in files.items() if path is not None}
    for split, sentences in read.items():
        if not sentences:
            raise InputError(f"{files[split]}: no sentences with words")
    if files["dev"] is None:
        read["train"], read["dev"] = carve_dev(
            read["train"], dev_fraction, seed, min_sentences, files["train"]
        )
    splits = {split: subsample(read[split], caps[split], seed, split) for split in SPLITS}
    for split in ("dev", "test"):
        if len(splits[split]) < min_sentences:
            where = files[split] or f"{files['train']} (carved dev)"
            raise InputError(
                f"{where}: {len(splits[split])} {split} sentences after the cap of {caps[split]}, "
                f"fewer than the {min_sentences} a bootstrap interval needs "
                "(statistics.min_sentences)"
            )
    return splits


def label_inventory(splits: dict[str, list[Sentence]]) -> dict[str, list[str]]:
    """Sorted UPOS and relation labels of the train split (of test if train was dropped)."""
    source = splits.get("train") or splits.get("test") or []
    return {
        "upos": sorted({tag for sentence in source for tag in sentence.upos}),
        "deprel": sorted({rel for sentence in source for rel in sentence.deprel}),
    }


# ---------------------------------------------------------------- the prepared file


def save_prepared(
    path: str | Path, splits: dict[str, list[Sentence]], language: str, source: str
) -> None:
    obj = {
        "language": language,
        "source": source,
        "splits": {split: [s.to_json() for s in sentences] for split, sentences in splits.items()},
    }
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with atomic_path(path, suffix=".gz") as tmp:
        # no name, mtime 0: the file is byte-identical across reruns
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f,
        ):
            f.write(data)


def load_prepared(path: str | Path) -> dict[str, list[Sentence]]:
    """The splits of a prepared treebank file, ``{split: [Sentence, ...]}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such prepared treebank")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            obj = json.load(f)
        return {
            split: [Sentence.from_json(s) for s in sentences]
            for split, sentences in obj["splits"].items()
        }
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a prepared treebank ({exc})") from None


# ---------------------------------------------------------------- command


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Validate and subsample one UD treebank into a compact JSON.",
    )
    parser.add_argument("--treebank", required=True, help="UD treebank directory")
    parser.add_argument("--language", required=True, help="language code recorded in the output")
    parser.add_argument("--max-train", type=int, required=True, help="train sentences")
    parser.add_argument("--max-dev", type=int, required=True, help="dev sentences")
    parser.add_argument("--max-test", type=int, required=True, help="test sentences")
    parser.add_argument(
        "--dev-fraction", type=float, required=True, help="share of train carved as dev if none"
    )
    parser.add_argument(
        "--min-sentences", type=int, required=True, help="fewest dev and test sentences"
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the subsample")
    parser.add_argument("--out", required=True, help="output .json.gz")
    parser.add_argument("--labels", required=True, help="output label inventory .json")
    args = parser.parse_args(argv)
    for name in ("max_train", "max_dev", "max_test"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be >= 1")
    if not 0 < args.dev_fraction <= 0.5:
        raise InputError(f"--dev-fraction: {args.dev_fraction} is not in (0, 0.5]")

    caps = {"train": args.max_train, "dev": args.max_dev, "test": args.max_test}
    splits = prepare(args.treebank, caps, args.seed, args.dev_fraction, args.min_sentences)
    save_prepared(args.out, splits, args.language, str(args.treebank))
    save_json(args.labels, label_inventory(splits))
    for split, sentences in splits.items():
        n_words = sum(len(s.words) for s in sentences)
        print(f"{args.language} {split}: {len(sentences)} sentences, {n_words} words")
