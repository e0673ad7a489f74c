"""UD treebank preparation: validated CoNLL-U in, a compact subsampled JSON per language out.

``prepare-treebank`` reads the train, dev and test splits of one UD treebank directory (a bundled
one or a full release's ``UD_<Name>`` folder), keeps the syntactic words (no multiword-token ranges,
no empty nodes) with their form, UPOS, head, universal relation and FEATS (verbatim, for the
morphological-feature probes), draws a seeded subsample per split that keeps treebank order, and
writes::

    results/treebanks/{lang}.json.gz      {"language", "source", "skipped": {"train": 0, ...},
                                           "splits": {"train": [..], ...}}
    results/treebanks/{lang}.labels.json  {"upos": [...], "deprel": [...]}  (labels seen in train)

Every sentence is checked in one pass before it is kept, since the conllu parser accepts broken
trees that would only fail later, far from their line: UTF-8 (a BOM and CRLF or CR line ends are
accepted), 10 columns, word ids 1..n with well-placed multiword ranges and empty nodes, a FORM
without control characters, a UD UPOS tag and universal relation, and a tree (heads in range, one
root with relation root, no cycle). Every problem is ``FILE:LINE: what is wrong``. Encoding and
column problems mean the file is not CoNLL-U and always stop; a bad tree stops too, unless
``--on-bad-sentence skip`` drops it, with a line on stderr, and counts it per split in "skipped".

The files are then checked as a set, which always stops: no ``sent_id`` given twice, in one file
or across the split files (sentences without one are fine), and a test file that shares at most
``MAX_SHARED_SHARE`` of its sentences of ``MIN_SHARED_WORDS`` or more words with the train file or
the dev file. These compare whole files, before any carving or cap: a train split carved from the
dev file is compared through that file, and the result does not depend on the seed.

The dev split is what every choice made from scores reads (a layer, the L2 strength); test is only
reported. A treebank without a dev file gets one carved from its train file: a seeded
``dev_fraction`` of its sentences, before the caps; one without a train file (a dev and test
sample of a treebank) gets its train from its dev file the same way, the rest staying dev. Dev
and test must each keep at least ``min_sentences`` sentences (the bootstrap's smallest set), else
the preparation stops naming the split.
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import json
import random
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlm_dynamics.atomic import atomic_path, save_json
from mlm_dynamics.errors import InputError

SPLITS = ("train", "dev", "test")
N_COLUMNS = 10
# what a sentence that is not a valid tree does: stop the run naming it, or get dropped and counted
ON_BAD_SENTENCE = ("stop", "skip")
# The UD v2 universal inventories, in the guidelines' order: the probes' label ids index these
# tuples (mlm_dynamics.probing.registry), so their order is part of every probe file.
UPOS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
DEPRELS = (
    "acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp", "clf",
    "compound", "conj", "cop", "csubj", "dep", "det", "discourse", "dislocated", "expl",
    "fixed", "flat", "goeswith", "iobj", "list", "mark", "nmod", "nsubj", "nummod", "obj",
    "obl", "orphan", "parataxis", "punct", "reparandum", "root", "vocative", "xcomp",
)  # fmt: skip
UPOS_TAGS = frozenset(UPOS)  # for validating CoNLL-U
UD_RELATIONS = frozenset(DEPRELS)
WORD_ID = re.compile(r"[0-9]+")
RANGE_ID = re.compile(r"([0-9]+)-([0-9]+)")
EMPTY_NODE_ID = re.compile(r"([0-9]+)\.([0-9]+)")
HEAD = re.compile(r"-?[0-9]+")  # a negative head is an integer, refused as out of range
SUBTYPE = re.compile(r"[a-z]+")  # the UD validator's language-specific subtype, one level
NO_ROOT = "no root (no word has head 0)"
# C0 controls, DEL and C1 controls: invisible, never part of a word (a tab or line end cannot be
# inside a FORM at all: they split columns and lines), a sign of a broken conversion or encoding.
# No FORM in the eleven treebanks of ../shared/ud or in resources/ud has one.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Sentences shared between test and the train or dev file. Identity is the FORM sequence; shorter
# sentences than MIN_SHARED_WORDS are left out, since greetings, headlines and "Thank you ." recur
# in any text (English-EWT: 73 of its 2077 test sentences are in its dev file, all but one of
# them shorter than 5 words), and so are sentences whose FORMs are all "_" (withheld by their
# license; the UD overlap tool skips them too). Measured on the real treebanks (ko-GSD's test
# has a block of news sentences copied in its dev file):
#   ../shared/ud (test vs dev file):  ko-GSD 24 of 857 (2.8%), de-GSD 6 of 926 (0.6%),
#     fr, es, id-GSD 1 each (0.2%), en-EWT and fi-TDT 1 each (0.1%), the other four none;
#   resources/ud (test vs train, vs dev): ko-GSD 6 of 268 (2.2%) and 2 (0.7%), de-GSD 2 of 288
#     (0.7%) and none, the other five none.
# The limit is above all of these with margin and below a split padded by copies (27 of 300 test
# sentences appended from train: 9%). A full release's train file was not measured
# (../shared/ud has no train files); should one share more, the line names both files.
MIN_SHARED_WORDS = 5
MAX_SHARED_SHARE = 0.05


@dataclass(frozen=True)
class Sentence:
    id: str
    words: tuple[str, ...]
    upos: tuple[str, ...]
    head: tuple[int, ...]  # CoNLL-U heads: 0 = root, else the 1-based index of the head word
    deprel: tuple[str, ...]  # universal relation, subtype stripped
    # the FEATS column per word, verbatim ("_": none); () when not read (a file prepared before
    # FEATS were kept, or a sentence built by hand)
    feats: tuple[str, ...] = ()

    def to_json(self) -> dict:
        obj = {
            "id": self.id,
            "words": list(self.words),
            "upos": list(self.upos),
            "head": list(self.head),
            "deprel": list(self.deprel),
        }
        if self.feats:
            obj["feats"] = list(self.feats)
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> Sentence:
        return cls(
            id=str(obj["id"]),
            words=tuple(obj["words"]),
            upos=tuple(obj["upos"]),
            head=tuple(int(h) for h in obj["head"]),
            deprel=tuple(obj["deprel"]),
            feats=tuple(obj.get("feats", ())),
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
    """The file's text, BOM stripped and line ends made ``\\n``; bad UTF-8 names its line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    # CR and LF never occur inside a UTF-8 sequence, so the bytes can be normalised before decoding
    data = data.removeprefix(codecs.BOM_UTF8).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x})"
        ) from None


class BadSentence(Exception):
    """A sentence that is not a valid UD tree; ``on_bad_sentence`` decides if that stops the run."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(line, reason)
        self.line = line  # 1-based line of the offending word (or token) in the file
        self.reason = reason


class Tree:
    """One sentence's token lines, checked as they come; ``sentence()`` checks the whole tree."""

    def __init__(self) -> None:
        self.lines: list[int] = []  # file line of each word
        self.forms: list[str] = []
        self.upos: list[str] = []
        self.heads: list[int] = []
        self.relations: list[str] = []
        self.feats: list[str] = []
        self.roots: list[int] = []  # words with head 0
        self.first_line = 0  # of any token line, for a sentence without words
        self.last_range: tuple[int, int, int] | None = None  # (line, first word, last word)
        self.last_empty = (0, 0)  # N.M of the last empty node

    def add(self, number: int, columns: list[str]) -> None:
        """One token line, told apart by its id: a range, an empty node or a word."""
        self.first_line = self.first_line or number
        token_id = columns[0]
        if "-" in token_id:
            self.add_range(number, token_id)
        elif "." in token_id:
            self.add_empty_node(number, token_id)
        else:
            self.add_word(number, columns)

    def add_range(self, number: int, token_id: str) -> None:
        """A multiword token: covers the next words, after the previous range's."""
        match = RANGE_ID.fullmatch(token_id)
        if not match:
            raise BadSentence(number, f"multiword token id {token_id!r} is not a range N-M")
        start, end = int(match[1]), int(match[2])
        if start >= end:
            raise BadSentence(
                number, f"multiword token id {token_id!r} is not a range N-M with N < M"
            )
        if self.last_range and start <= self.last_range[2]:
            _, first, last = self.last_range
            raise BadSentence(
                number, f"multiword token {token_id} overlaps the previous one {first}-{last}"
            )
        expected = len(self.forms) + 1
        if start != expected:
            raise BadSentence(
                number,
                f"multiword token {token_id} out of sequence (expected a range from {expected})",
            )
        self.last_range = (number, start, end)

    def add_empty_node(self, number: int, token_id: str) -> None:
        """An empty node N.M follows word N (0: before the first), M counting from 1."""
        match = EMPTY_NODE_ID.fullmatch(token_id)
        if not match:
            raise BadSentence(number, f"empty node id {token_id!r} is not N.M")
        n_words = len(self.forms)
        last_word, last_node = self.last_empty
        expected = (n_words, last_node + 1 if last_word == n_words else 1)
        if (int(match[1]), int(match[2])) != expected:
            raise BadSentence(
                number,
                f"empty node id {token_id} out of sequence (expected {expected[0]}.{expected[1]})",
            )
        self.last_empty = expected

    def add_word(self, number: int, columns: list[str]) -> None:
        """A syntactic word: checks that need only its own line (and the words before it)."""
        token_id, form, _, upos, _, feats, head, deprel, _, _ = columns
        if not WORD_ID.fullmatch(token_id):
            raise BadSentence(number, f"word id {token_id!r} is not an integer")
        expected = len(self.forms) + 1
        if int(token_id) != expected:
            raise BadSentence(number, f"word id {token_id} out of sequence (expected {expected})")
        if not form:
            raise BadSentence(number, "empty FORM (expected the word form, '_' for none)")
        control = CONTROL_CHARACTER.search(form)
        if control:
            raise BadSentence(
                number, f"FORM {form!r} holds control character U+{ord(control[0]):04X}"
            )
        if upos not in UPOS_TAGS:
            raise BadSentence(number, f"UPOS {upos!r} is not a UD part-of-speech tag")
        if not HEAD.fullmatch(head):
            raise BadSentence(number, f"head {head!r} is not an integer")
        relation = universal_relation(deprel, number)
        self.check_head(number, expected, int(head), relation, deprel)
        self.lines.append(number)
        self.forms.append(form)
        self.upos.append(upos)
        self.heads.append(int(head))
        self.relations.append(relation)
        self.feats.append(feats)

    def check_head(self, number: int, word: int, head: int, relation: str, deprel: str) -> None:
        """No word heads itself; head 0 goes with relation root, and only one word has it."""
        if head == word:
            raise BadSentence(number, f"word {word} is its own head")
        if head == 0 and relation != "root":
            raise BadSentence(number, f"head 0 with DEPREL {deprel!r} (expected root)")
        if head != 0 and relation == "root":
            raise BadSentence(number, f"DEPREL {deprel!r} with head {head} (expected head 0)")
        if head == 0:
            self.roots.append(word)
        if len(self.roots) == 2:
            first, second = self.roots
            raise BadSentence(number, f"two roots (words {first} and {second} have head 0)")

    def sentence(self, sentence_id: str) -> Sentence | None:
        """The checked tree as a Sentence; None for a block of comments only."""
        if not self.first_line:
            return None
        n_words = len(self.forms)
        for number, head in zip(self.lines, self.heads, strict=True):
            if not 0 <= head <= n_words:
                raise BadSentence(
                    number, f"head {head} is out of range (sentence has {n_words} words)"
                )
        if self.last_range and self.last_range[2] > n_words:
            number, first, last = self.last_range
            raise BadSentence(
                number, f"multiword token {first}-{last} goes past the last word {n_words}"
            )
        if not self.roots:
            raise BadSentence(self.lines[0] if self.lines else self.first_line, NO_ROOT)
        cycle = find_cycle(self.heads)
        if cycle:
            words = " -> ".join(str(word) for word in cycle + [cycle[0]])
            raise BadSentence(self.lines[cycle[0] - 1], f"words {words} form a cycle")
        return Sentence(
            sentence_id,
            tuple(self.forms),
            tuple(self.upos),
            tuple(self.heads),
            tuple(self.relations),
            tuple(self.feats),
        )


def universal_relation(deprel: str, number: int) -> str:
    """The universal part of a DEPREL, refused unless it is UD's and any subtype is a-z."""
    relation, colon, subtype = deprel.partition(":")
    if relation not in UD_RELATIONS:
        where = f"DEPREL {deprel!r}" + (f": {relation!r}" if colon else "")
        raise BadSentence(number, f"{where} is not a UD universal relation")
    if colon and not SUBTYPE.fullmatch(subtype):
        raise BadSentence(
            number, f"DEPREL {deprel!r}: subtype {subtype!r} is not lowercase letters a-z"
        )
    return relation


def find_cycle(heads: list[int]) -> list[int] | None:
    """The first cycle among words 1..n (heads in range), smallest word first; None for a tree."""
    done = [False] * (len(heads) + 1)  # reaches the root
    done[0] = True
    for start in range(1, len(heads) + 1):
        walk: list[int] = []
        word = start
        while not done[word] and word not in walk:
            walk.append(word)
            word = heads[word - 1]
        if not done[word]:
            cycle = walk[walk.index(word) :]
            first = cycle.index(min(cycle))
            return cycle[first:] + cycle[:first]
        for word in walk:
            done[word] = True
    return None


def sentence_blocks(text: str) -> Iterator[list[tuple[int, str]]]:
    """The (line number, line) lists between blank lines, as the conllu parser splits them."""
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            block.append((number, line))
        elif block:
            yield block
            block = []
    if block:
        yield block


def comment_sent_id(line: str) -> str:
    """The value of a ``# sent_id = ...`` comment ('' for any other), parsed as conllu does."""
    key, equals, value = line.strip()[1:].partition("=")
    return value.strip() if equals and key.strip() == "sent_id" else ""


def block_sent_id(block: list[tuple[int, str]]) -> tuple[int, str] | None:
    """(line, value) of the sentence's ``sent_id`` comment (the last, if several); None if none."""
    found = None
    for number, line in block:
        if line.startswith("#") and comment_sent_id(line):
            found = (number, comment_sent_id(line))
    return found


def columns_of(line: str, number: int, path: Path) -> list[str]:
    """The 10 columns of a token line; any other count means the file is not CoNLL-U: stop."""
    columns = line.split("\t")
    if len(columns) != N_COLUMNS:
        raise InputError(
            f"{path}:{number}: {len(columns)} tab-separated columns, CoNLL-U has {N_COLUMNS}"
        )
    return columns


def parse_block(
    block: list[tuple[int, str]], path: Path, fallback_id: str, stop: bool
) -> Sentence | None:
    """One sentence. ``stop`` raises at its first problem (file order); when skipping, its later
    lines are still column-counted, since a broken line stops the run either way."""
    tree, problem = Tree(), None
    given = block_sent_id(block)
    sentence_id = given[1] if given else ""
    for number, line in block:
        if line.startswith("#"):
            continue
        columns = columns_of(line, number, path)
        if problem is None:
            try:
                tree.add(number, columns)
            except BadSentence as exc:
                if stop:
                    raise
                problem = exc
    if problem is not None:
        raise problem
    return tree.sentence(sentence_id or fallback_id)


def parse_conllu(
    text: str,
    path: Path,
    split: str,
    on_bad_sentence: str = "stop",
    sent_ids: dict[str, int] | None = None,
) -> tuple[list[Sentence], list[str]]:
    """(sentences, skip lines): one pass; a bad tree stops the run or is dropped with a line.

    A ``sent_id`` given twice always stops (a dropped sentence's counts too). ``sent_ids``, an
    empty dict, gets every ``sent_id`` with its line, for comparing split files."""
    if on_bad_sentence not in ON_BAD_SENTENCE:
        raise ValueError(f"on_bad_sentence: {on_bad_sentence!r} is not one of {ON_BAD_SENTENCE}")
    stop = on_bad_sentence == "stop"
    sentences, skipped = [], []
    seen = {} if sent_ids is None else sent_ids
    # blocks are numbered as before (comment-only ones too): a sentence keeps its fallback id
    for index, block in enumerate(sentence_blocks(text), start=1):
        given = block_sent_id(block)
        if given:
            number, sent_id = given
            if sent_id in seen:
                raise InputError(repeated_sent_id(text, path, sent_id, seen[sent_id], number))
            seen[sent_id] = number
        try:
            sentence = parse_block(block, path, f"{split}-{index}", stop)
        except BadSentence as exc:
            if stop:
                raise InputError(f"{path}:{exc.line}: {exc.reason}") from None
            skipped.append(f"{path}:{exc.line}: skipped sentence: {exc.reason}")
            continue
        if sentence is not None:
            sentences.append(sentence)
    return sentences, skipped


def repeated_sent_id(text: str, path: Path, sent_id: str, first: int, number: int) -> str:
    """The message for a ``sent_id`` met again at line ``number``, with how often the file has it
    (counted only now: the error is rare, the count is one more pass)."""
    given = (block_sent_id(block) for block in sentence_blocks(text))
    count = sum(1 for found in given if found and found[1] == sent_id)
    times = "twice" if count == 2 else f"{count} times"
    return f"{path}:{number}: sent_id {sent_id!r} given {times} (first at line {first})"


def read_checked(
    path: str | Path,
    split: str,
    on_bad_sentence: str = "stop",
    sent_ids: dict[str, int] | None = None,
) -> tuple[list[Sentence], list[str]]:
    """(sentences, skip lines) of one CoNLL-U file, syntactic words only, in file order;
    ``sent_ids`` as :func:`parse_conllu` fills it."""
    path = Path(path)
    return parse_conllu(read_text(path), path, split, on_bad_sentence, sent_ids)


def read_conllu(path: str | Path, split: str) -> list[Sentence]:
    """Validated sentences of one CoNLL-U file (the first bad tree stops), in file order."""
    return read_checked(path, split)[0]


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
    return carve(train, fraction, seed, min_sentences, path, missing="dev")


def carve(
    sentences: list[Sentence],
    fraction: float,
    seed: int,
    min_sentences: int,
    path: Path,
    missing: str,
) -> tuple[list[Sentence], list[Sentence]]:
    """(train, dev) from the one of the two splits a treebank has: a seeded ``fraction`` of its
    sentences becomes dev, the rest train, both in treebank order."""
    have = "train" if missing == "dev" else "dev"
    n_dev = round(fraction * len(sentences))
    if min(n_dev, len(sentences) - n_dev) < min_sentences:
        raise InputError(
            f"{path}: no {missing} split in the treebank, and its {len(sentences)} {have} "
            f"sentences are too few to carve one ({n_dev} dev / {len(sentences) - n_dev} train "
            f"at dev_fraction {fraction}; each needs >= {min_sentences})"
        )
    rng = random.Random(f"{seed}:carve-{missing}")
    dev_rows = set(rng.sample(range(len(sentences)), n_dev))
    return (
        [s for i, s in enumerate(sentences) if i not in dev_rows],
        [s for i, s in enumerate(sentences) if i in dev_rows],
    )


# ---------------------------------------------------------------- the split files as a set


def sentence_key(sentence: Sentence) -> tuple[str, ...] | None:
    """What makes two sentences the same for the overlap check: their FORMs (a tuple: a FORM may
    hold a space); None for one too short to count or with every FORM "_"."""
    if len(sentence.words) < MIN_SHARED_WORDS or all(form == "_" for form in sentence.words):
        return None
    return sentence.words


def check_shared_sentences(read: dict[str, list[Sentence]], files: dict[str, Path | None]) -> None:
    """The test file may share at most ``MAX_SHARED_SHARE`` of its sentences (those that count,
    see :func:`sentence_key`) with the train file, and with the dev file."""
    test = [key for key in map(sentence_key, read["test"]) if key is not None]
    if not test:
        return
    for split in ("train", "dev"):
        if files[split] is None:
            continue
        keys = set(map(sentence_key, read[split]))
        shared = sum(key in keys for key in test)
        if shared > MAX_SHARED_SHARE * len(test):
            raise InputError(
                f"{files['test']}: {shared} of {len(test)} test sentences of {MIN_SHARED_WORDS} "
                f"or more words ({shared / len(test):.1%}) also in {files[split]} (more than "
                f"{MAX_SHARED_SHARE:.0%}: sentences copied between splits?)"
            )


def check_split_sent_ids(
    sent_ids: dict[str, dict[str, int]], files: dict[str, Path | None]
) -> None:
    """No ``sent_id`` in two split files; the later file (train, dev, test) is the one named."""
    splits = [split for split in SPLITS if split in sent_ids]
    for i, later in enumerate(splits):
        for earlier in splits[:i]:
            shared = sent_ids[later].keys() & sent_ids[earlier].keys()
            if shared:
                first = min(shared, key=sent_ids[later].__getitem__)
                both = f"{len(shared)} sent_id{'s' if len(shared) > 1 else ''} in both files"
                raise InputError(
                    f"{files[later]}:{sent_ids[later][first]}: sent_id {first!r} also given in "
                    f"{files[earlier]}:{sent_ids[earlier][first]} ({both})"
                )


@dataclass(frozen=True)
class Skipped:
    """What skipping dropped from one split's file: its summary line and the prepared count."""

    total: int  # sentences with words in the file, the dropped ones included
    lines: tuple[str, ...]  # one "FILE:LINE: skipped sentence: reason" per dropped sentence


def prepare_counted(
    treebank_dir: str | Path,
    caps: dict[str, int],
    seed: int,
    dev_fraction: float = 0.2,
    min_sentences: int = 1,
    on_bad_sentence: str = "stop",
) -> tuple[dict[str, list[Sentence]], dict[str, Skipped]]:
    """(splits, skipped per split file read): ``prepare`` that also says what it dropped."""
    treebank_dir = Path(treebank_dir)
    if not treebank_dir.is_dir():
        raise InputError(f"{treebank_dir}: no such treebank directory")
    files = {split: split_file(treebank_dir, split) for split in SPLITS}
    missing = [split for split in ("train", "test") if files[split] is None]
    if files["train"] is None and files["dev"] is not None:
        missing.remove("train")  # carved from dev below
    if missing:
        wanted = " and ".join(f"*-ud-{split}.conllu[.gz]" for split in missing)
        raise InputError(f"{treebank_dir}: no {wanted} in the treebank directory")
    read, skipped, sent_ids = {}, {}, {}
    for split, path in files.items():
        if path is not None:
            sent_ids[split] = {}
            read[split], lines = read_checked(path, split, on_bad_sentence, sent_ids[split])
            skipped[split] = Skipped(len(read[split]) + len(lines), tuple(lines))
    for split, sentences in read.items():
        if not sentences:
            dropped = f" ({len(skipped[split].lines)} skipped)" if skipped[split].lines else ""
            raise InputError(f"{files[split]}: no sentences with words{dropped}")
    check_shared_sentences(read, files)
    check_split_sent_ids(sent_ids, files)
    if files["dev"] is None:
        read["train"], read["dev"] = carve_dev(
            read["train"], dev_fraction, seed, min_sentences, files["train"]
        )
    elif files["train"] is None:  # a dev/test sample of a treebank: train comes from dev
        read["train"], read["dev"] = carve(
            read["dev"], dev_fraction, seed, min_sentences, files["dev"], missing="train"
        )
    splits = {split: subsample(read[split], caps[split], seed, split) for split in SPLITS}
    for split in ("dev", "test"):
        if len(splits[split]) < min_sentences:
            carved = files["train"] is None or files["dev"] is None
            where = f"{files[split] or files['train']}{' (carved)' if carved else ''}"
            raise InputError(
                f"{where}: {len(splits[split])} {split} sentences after the cap of {caps[split]}, "
                f"fewer than the {min_sentences} a bootstrap interval needs "
                "(statistics.min_sentences)"
            )
    return splits, skipped


def prepare(*args, **kwargs) -> dict[str, list[Sentence]]:
    """The subsampled splits of one treebank directory (``prepare_counted``'s arguments);
    ``caps["train"] == 0`` drops train."""
    return prepare_counted(*args, **kwargs)[0]


def label_inventory(splits: dict[str, list[Sentence]]) -> dict[str, list[str]]:
    """Sorted UPOS and relation labels of the train split (of test if train was dropped)."""
    source = splits.get("train") or splits.get("test") or []
    return {
        "upos": sorted({tag for sentence in source for tag in sentence.upos}),
        "deprel": sorted({rel for sentence in source for rel in sentence.deprel}),
    }


# ---------------------------------------------------------------- the prepared file


def save_prepared(
    path: str | Path,
    splits: dict[str, list[Sentence]],
    language: str,
    source: str,
    skipped: dict[str, int] | None = None,
) -> None:
    """The prepared file; ``skipped`` (sentences dropped per split, zeros if None) is recorded."""
    skipped = skipped or {}
    obj = {
        "language": language,
        "source": source,
        "skipped": {split: skipped.get(split, 0) for split in SPLITS},
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
    """The splits of a prepared treebank file, ``{split: [Sentence, ...]}``; "skipped" unread."""
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


def report_skipped(language: str, skipped: dict[str, Skipped]) -> None:
    """On stderr, beside any error: a line per dropped sentence, then a summary per split file."""
    for split, report in skipped.items():
        for line in report.lines:
            print(line, file=sys.stderr)
        print(
            f"{language} {split}: skipped {len(report.lines)} of {report.total} sentences that "
            "are not valid trees",
            file=sys.stderr,
        )


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
    parser.add_argument(
        "--on-bad-sentence",
        choices=ON_BAD_SENTENCE,
        required=True,
        help="a sentence that is not a valid tree stops the run, or is skipped and counted",
    )
    parser.add_argument("--seed", type=int, required=True, help="seed of the subsample")
    parser.add_argument("--out", required=True, help="output .json.gz")
    parser.add_argument("--labels", required=True, help="output label inventory .json")
    args = parser.parse_args(argv)
    for name in ("max_train", "max_dev", "max_test"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be >= 1")
    if not 0 < args.dev_fraction <= 0.5:
        raise InputError(f"--dev-fraction: {args.dev_fraction} is not in (0, 0.5]")

    caps = {"train": args.max_train, "dev": args.max_dev, "test": args.max_test}
    splits, skipped = prepare_counted(
        args.treebank,
        caps,
        args.seed,
        args.dev_fraction,
        args.min_sentences,
        args.on_bad_sentence,
    )
    if args.on_bad_sentence == "skip":
        report_skipped(args.language, skipped)
    counts = {split: len(report.lines) for split, report in skipped.items()}
    save_prepared(args.out, splits, args.language, str(args.treebank), counts)
    save_json(args.labels, label_inventory(splits))
    for split, sentences in splits.items():
        n_words = sum(len(s.words) for s in sentences)
        print(f"{args.language} {split}: {len(sentences)} sentences, {n_words} words")
