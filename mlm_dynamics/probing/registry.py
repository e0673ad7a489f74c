"""The UD probing tasks: features and labels built from the word-level activation cache.

Nothing pair-shaped is cached; pairs are drawn here, at probe time, from the prepared treebank:

- ``pos``: the UPOS tag of each word; features are the word's vector.
- ``arc`` (Liu et al. 2019, arc prediction): every gold (dependent, head) pair except the root is
  a positive; for each such dependent one non-arc pair (the dependent and a word of the same
  sentence that is neither itself nor its gold head) is a negative, drawn by a numpy Generator
  seeded with (seed, sentence index), so each sentence's draw is deterministic and independent of
  the others. A dependent with no such word (a two-word sentence) is left out, positive included,
  so the classes stay exactly balanced. Features ``[h_dep; h_head; h_dep * h_head]``; label 1/0.
- ``deprel``: the universal relation of each gold arc except the root, same features.

Label ids index fixed universal inventories (17 UPOS, 37 relations), so they agree across
languages: a probe trained on one language is scored on another with the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.activations import store
from mlm_dynamics.errors import InputError

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
ARC_LABELS = ("no-arc", "arc")
LABELS = {"pos": UPOS, "arc": ARC_LABELS, "deprel": DEPRELS}
TASKS = tuple(LABELS)


@dataclass(frozen=True)
class TaskData:
    X: np.ndarray  # (layers, items, features) float32
    y: np.ndarray  # (items,) ids into LABELS[task]
    units: np.ndarray  # (items,) the sentence of each item (of its dependent, for pairs)
    n_units: int  # sentences of the split: what the bootstrap resamples

    def subset(self, rows: np.ndarray) -> TaskData:
        """The items at ``rows`` (repeats allowed), e.g. those of a resample of the sentences."""
        return TaskData(self.X[:, rows], self.y[rows], self.units[rows], self.n_units)


def sentence_of_rows(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The sentence owning each word row of a split (``offsets`` from its cache index)."""
    return np.searchsorted(offsets, rows, side="right") - 1


def cached_layers(split_dir: str | Path) -> list[int]:
    """The layer numbers present in one split of the activation cache, ascending."""
    split_dir = Path(split_dir)
    layers = sorted(int(path.stem[len("layer") :]) for path in split_dir.glob("layer[0-9]*.npy"))
    if not layers:
        raise InputError(f"{split_dir}: no layerNN.npy files in the activation cache")
    if layers != list(range(len(layers))):
        raise InputError(f"{split_dir}: layer files are not numbered 00..{len(layers) - 1:02d}")
    return layers


def check_alignment(index: store.SplitIndex, sentences, split_dir, treebank_path) -> None:
    """The cache must hold exactly the treebank split's words, sentence by sentence."""
    where = store.index_file(split_dir)
    if len(index.word_counts) != len(sentences):
        raise InputError(
            f"{where}: {len(index.word_counts)} sentences, but {treebank_path} has "
            f"{len(sentences)} in this split (cache and treebank out of step)"
        )
    counts = np.array([len(s.words) for s in sentences])
    mismatched = np.flatnonzero(counts != index.word_counts)
    if len(mismatched):
        s = int(mismatched[0])
        raise InputError(
            f"{where}: sentence {s} ({sentences[s].id}) has {index.word_counts[s]} words in the "
            f"cache, {counts[s]} in {treebank_path}"
        )


def label_ids(values, inventory: tuple[str, ...], kind: str, sentence, treebank_path) -> list[int]:
    ids = {label: i for i, label in enumerate(inventory)}
    try:
        return [ids[value] for value in values]
    except KeyError as exc:
        raise InputError(
            f"{treebank_path}: sentence {sentence.id}: {kind} {exc.args[0]!r} is not one of the "
            f"{len(inventory)} universal labels"
        ) from None


def arc_pairs(sentences, offsets: np.ndarray, seed: int, treebank_path="treebank"):
    """(dependent rows, head rows, labels) of the arc task; rows index the split's words."""
    dependents, heads, labels = [], [], []
    for s, sentence in enumerate(sentences):
        rng = np.random.default_rng([seed, s])
        n_words = len(sentence.words)
        base = int(offsets[s])
        for i, head in enumerate(sentence.head):
            if head == 0 or n_words < 3:
                continue
            gold = head - 1
            if gold == i:
                raise InputError(
                    f"{treebank_path}: sentence {sentence.id}: word {i + 1} heads itself"
                )
            # uniform over the n_words - 2 words that are neither i nor its gold head
            low, high = sorted((i, gold))
            j = int(rng.integers(n_words - 2))
            j += j >= low
            j += j >= high
            dependents += [base + i, base + i]
            heads += [base + gold, base + j]
            labels += [1, 0]
    return np.array(dependents, dtype=np.int64), np.array(heads, dtype=np.int64), np.array(labels)


def deprel_pairs(sentences, offsets: np.ndarray, treebank_path):
    """(dependent rows, head rows, relation ids) of every gold arc except the root."""
    dependents, heads, labels = [], [], []
    for s, sentence in enumerate(sentences):
        base = int(offsets[s])
        relations = label_ids(sentence.deprel, DEPRELS, "relation", sentence, treebank_path)
        for i, head in enumerate(sentence.head):
            if head == 0:
                continue
            dependents.append(base + i)
            heads.append(base + head - 1)
            labels.append(relations[i])
    return np.array(dependents, dtype=np.int64), np.array(heads, dtype=np.int64), np.array(labels)


def pair_features(H: np.ndarray, dependents: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """``[h_dep; h_head; h_dep * h_head]`` per layer: (layers, pairs, 3 * hidden) float32."""
    layers, _, hidden = H.shape
    X = np.empty((layers, len(dependents), 3 * hidden), dtype=np.float32)
    for layer in range(layers):
        dep, head = H[layer, dependents], H[layer, heads]
        X[layer, :, :hidden] = dep
        X[layer, :, hidden : 2 * hidden] = head
        np.multiply(dep, head, out=X[layer, :, 2 * hidden :])
    return X


def build(task: str, sentences, split_dir, treebank_path, seed: int = 0) -> TaskData:
    """Features of every cached layer and labels of one task on one split.

    ``sentences`` is the split of the prepared treebank at ``treebank_path`` (named in errors) and
    ``split_dir`` its directory in the activation cache; ``seed`` only matters for ``arc``.
    """
    if task not in LABELS:
        raise InputError(f"unknown probing task {task!r} (one of {', '.join(TASKS)})")
    if not sentences:
        raise InputError(f"{treebank_path}: the split has no sentences")
    index = store.load_index(split_dir)
    check_alignment(index, sentences, split_dir, treebank_path)
    H = store.load_layers(split_dir, cached_layers(split_dir))
    if task == "pos":
        y = [
            i
            for sentence in sentences
            for i in label_ids(sentence.upos, UPOS, "UPOS tag", sentence, treebank_path)
        ]
        units = sentence_of_rows(index.offsets, np.arange(index.n_words))
        return TaskData(H, np.array(y, dtype=np.int64), units, len(sentences))
    if task == "arc":
        dependents, heads, y = arc_pairs(sentences, index.offsets, seed, treebank_path)
    else:
        dependents, heads, y = deprel_pairs(sentences, index.offsets, treebank_path)
    if len(y) == 0:
        raise InputError(f"{treebank_path}: the split has no dependency arcs for the {task} task")
    units = sentence_of_rows(index.offsets, dependents)
    return TaskData(pair_features(H, dependents, heads), y.astype(np.int64), units, len(sentences))
