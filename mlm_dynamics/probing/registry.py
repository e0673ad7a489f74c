"""The UD probing tasks: one registered definition each (:class:`ProbingTask`, :data:`TASKS`).

A task says how its items and labels are built from a prepared sentence, which features a probe
reads (the cached word vectors, nothing pair-shaped is cached: pairs are drawn here, at probe
time), its fixed label inventory, and what the workflow does with it: a control task, MDL,
transfer across languages, whether a language may lack it. ``train-probe``, ``score-probe``, the
control tasks, the config check and the plan read these fields; nothing else names a task.

- ``pos``: the UPOS tag of each word; features are the word's vector.
- ``arc`` (Liu et al. 2019, arc prediction): every gold (dependent, head) pair except the root is
  a positive; for each such dependent one non-arc pair (the dependent and a word of the same
  sentence that is neither itself nor its gold head) is a negative, drawn by a numpy Generator
  seeded with (seed, sentence index), so each sentence's draw is deterministic and independent of
  the others. A dependent with no such word (a two-word sentence) is left out, positive included,
  so the classes stay exactly balanced. Features ``[h_dep; h_head; h_dep * h_head]``; label 1/0.
- ``deprel``: the universal relation of each gold arc except the root, same features.
- ``morph-<Feature>`` (one task per UD universal feature of :data:`FEATURES`, e.g.
  ``morph-Number``, ``morph-Case``): the value of that feature on each word whose FEATS carry it;
  features are the word's vector. A word whose value is several (``Case=Acc,Dat``: ambiguous) or a
  language-specific value outside the universal inventory is left out, and counted
  (``Items.excluded``: ``ambiguous``, ``other_value``). Layered features (``Number[psor]``) are
  other features, not this one. A language *has* the feature when its train split has at least
  ``min_train_items`` such words with two values or more and its dev split at least
  ``min_eval_items``; one that lacks it still gets its probe file (marked absent, no probe), and
  nothing is scored for it. Its test split is scored only when it has the feature and at least
  ``min_eval_items`` such words there, so a probe of language A is scored on language B only when
  both have the feature.

Label ids index fixed universal inventories (17 UPOS and 37 relations, both owned by
:mod:`mlm_dynamics.treebanks`; each feature's UD values), so they agree across languages: a probe
trained on one language is scored on another with the same ids.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlm_dynamics.activations import store
from mlm_dynamics.errors import InputError
from mlm_dynamics.treebanks import DEPRELS, UPOS

ARC_LABELS = ("no-arc", "arc")
# The UD v2 universal features with two values or more, each with its universal values (the UD
# guidelines, universaldependencies.org/u/feat/), in the guidelines' order: lexical, nominal,
# verbal. Features with the single value Yes (Poss, Reflex, Foreign, ...) cannot be probed.
FEATURES = {
    "PronType": ("Art", "Dem", "Emp", "Exc", "Ind", "Int", "Neg", "Prs", "Rcp", "Rel", "Tot"),
    "NumType": ("Card", "Dist", "Frac", "Mult", "Ord", "Range", "Sets"),
    "Gender": ("Com", "Fem", "Masc", "Neut"),
    "Animacy": ("Anim", "Hum", "Inan", "Nhum"),
    "Number": ("Sing", "Plur", "Dual", "Ptan", "Coll", "Count", "Grpa", "Grpl", "Inv", "Pauc",
               "Tri"),
    "Case": ("Nom", "Acc", "Gen", "Dat", "Loc", "Ins", "Abl", "Voc", "Par", "Ess", "Tra", "Com",
             "Abe", "Ine", "Ill", "Ela", "Add", "Ade", "All", "Abs", "Erg", "Ben", "Cau", "Cmp",
             "Cns", "Del", "Dis", "Equ", "Lat", "Per", "Sbe", "Sbl", "Spl", "Sub", "Sup", "Tem",
             "Ter"),
    "Definite": ("Com", "Cons", "Def", "Ind", "Spec"),
    "Degree": ("Abs", "Aug", "Cmp", "Dim", "Equ", "Pos", "Sup"),
    "VerbForm": ("Conv", "Fin", "Gdv", "Ger", "Inf", "Part", "Sup", "Vnoun"),
    "Mood": ("Adm", "Cnd", "Des", "Imp", "Ind", "Irr", "Jus", "Nec", "Opt", "Pot", "Prp", "Qot",
             "Sub"),
    "Tense": ("Fut", "Imp", "Past", "Pqp", "Pres"),
    "Aspect": ("Hab", "Imp", "Iter", "Perf", "Prog", "Prosp"),
    "Voice": ("Act", "Antip", "Bfoc", "Cau", "Dir", "Inv", "Lfoc", "Mid", "Pass", "Rcp"),
    "Evident": ("Fh", "Nfh"),
    "Polarity": ("Neg", "Pos"),
    "Person": ("0", "1", "2", "3", "4"),
    "Polite": ("Elev", "Form", "Humb", "Infm"),
}  # fmt: skip
MORPH_PREFIX = "morph-"
# A language has a morphological feature with at least this many words carrying it in train (and
# two values or more there), and is scored on a split with at least MIN_EVAL_ITEMS of them.
MIN_TRAIN_ITEMS = 100
MIN_EVAL_ITEMS = 20


@dataclass(frozen=True, eq=False)
class Items:
    """The items of one task on one split. Rows index the split's words (its cache rows)."""

    words: np.ndarray  # (items,) int64: each item's word (the dependent, for a pair)
    heads: np.ndarray | None  # (items,) int64: each pair's head word; None for word tasks
    labels: np.ndarray  # (items,) int64 ids into the task's labels
    excluded: dict[str, int] = field(default_factory=dict)  # words left out, by reason


@dataclass(frozen=True)
class ProbingTask:
    """One probing task: everything the commands, the config check and the plan need of it.

    ``items(sentences, offsets, seed, where)`` builds the :class:`Items` of one split
    (``offsets[s]``: the row of sentence ``s``'s first word; ``where`` names the treebank in
    errors). ``features`` is ``"word"`` (the word's vector, ``hidden`` features) or ``"pair"``
    (``[h_dep; h_head; h_dep * h_head]``, ``3 * hidden``). ``labels`` is the fixed inventory the
    label ids index. ``item_noun`` says what an item is in messages. ``has_control``: a control
    task (:mod:`mlm_dynamics.probing.control`) may be configured; ``mdl``: ``--mdl`` adds its
    online codelength; ``transferable``: its probes are scored on the other languages of the
    transfer set (same inventory everywhere); ``seeded``: its items depend on the probe's seed
    (``arc``'s negatives). ``min_train_items`` > 0 makes the task *optional* per language (see
    :func:`absent_reason`); ``min_eval_items`` is then the fewest items of a dev or test split.
    ``items_per_word``: the most items a training word gives (``arc``: its gold pair and a
    negative); :attr:`shape` is the training problem per word, what the plan's estimates read.
    """

    name: str
    title: str
    labels: tuple[str, ...]
    items: Callable[..., Items]
    features: str
    item_noun: str
    has_control: bool = False
    mdl: bool = False
    transferable: bool = True
    seeded: bool = False
    min_train_items: int = 0
    min_eval_items: int = 0
    items_per_word: int = 1

    def __post_init__(self) -> None:
        if self.features not in ("word", "pair"):
            raise ValueError(f"{self.name}: features must be 'word' or 'pair', not {self.features}")
        if self.has_control and self.seeded:  # control items are drawn once, not per seed
            raise ValueError(f"{self.name}: a seeded task cannot have a control task")

    @property
    def optional(self) -> bool:
        """Whether a language may lack the task (its probe file is then marked absent)."""
        return self.min_train_items > 0

    def n_features(self, hidden: int) -> int:
        return hidden if self.features == "word" else 3 * hidden

    @property
    def n_outputs(self) -> int:
        """A probe's output columns: one per label, or one logit for a two-label task."""
        return 1 if len(self.labels) == 2 else len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(items per training word at most, features in units of the hidden size, outputs)."""
        return self.items_per_word, self.n_features(1), self.n_outputs


@dataclass(frozen=True)
class TaskData:
    X: np.ndarray  # (layers, items, features) float32
    y: np.ndarray  # (items,) ids into the task's labels
    units: np.ndarray  # (items,) the sentence of each item (of its dependent, for pairs)
    n_units: int  # sentences of the split: what the bootstrap resamples

    def subset(self, rows: np.ndarray) -> TaskData:
        """The items at ``rows`` (repeats allowed), e.g. those of a resample of the sentences."""
        return TaskData(self.X[:, rows], self.y[rows], self.units[rows], self.n_units)


def sentence_of_rows(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The sentence owning each word row of a split (``offsets`` from its cache index)."""
    return np.searchsorted(offsets, rows, side="right") - 1


def word_offsets(sentences) -> np.ndarray:
    """(sentences + 1,) the row of each sentence's first word, as the cache index has them."""
    return np.concatenate([[0], np.cumsum([len(s.words) for s in sentences])]).astype(np.int64)


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


# ---------------------------------------------------------------- items of each task


def pos_items(sentences, offsets: np.ndarray, seed: int = 0, treebank_path="treebank") -> Items:
    """Every word, in order; its UPOS tag."""
    labels = [
        i
        for sentence in sentences
        for i in label_ids(sentence.upos, UPOS, "UPOS tag", sentence, treebank_path)
    ]
    words = [int(offsets[s]) + i for s, sentence in enumerate(sentences)
             for i in range(len(sentence.words))]  # fmt: skip
    return Items(np.array(words, dtype=np.int64), None, np.array(labels, dtype=np.int64))


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


def arc_items(sentences, offsets, seed: int = 0, treebank_path="treebank") -> Items:
    dependents, heads, labels = arc_pairs(sentences, offsets, seed, treebank_path)
    return Items(dependents, heads, labels.astype(np.int64))


def deprel_items(sentences, offsets, seed: int = 0, treebank_path="treebank") -> Items:
    dependents, heads, labels = deprel_pairs(sentences, offsets, treebank_path)
    return Items(dependents, heads, labels.astype(np.int64))


@functools.lru_cache(maxsize=65536)
def parse_feats(feats: str) -> dict[str, str] | str:
    """A FEATS string as {feature: value}; "_" is {}. A malformed one gives the reason (a str)."""
    if feats == "_":
        return {}
    parsed = {}
    for pair in feats.split("|"):
        name, equals, value = pair.partition("=")
        if not (name and equals and value):
            return f"{pair!r} is not Feature=Value"
        if name in parsed:
            return f"feature {name} is given twice"
        parsed[name] = value
    return parsed


def feature_items(feature: str, sentences, offsets, treebank_path="treebank") -> Items:
    """The words whose FEATS carry ``feature`` with one universal value; that value's id."""
    inventory = {value: i for i, value in enumerate(FEATURES[feature])}
    words, labels = [], []
    excluded = {"ambiguous": 0, "other_value": 0}
    for s, sentence in enumerate(sentences):
        if len(sentence.feats) != len(sentence.words):
            raise InputError(
                f"{treebank_path}: sentence {sentence.id} has no FEATS (a treebank prepared "
                "before FEATS were kept: prepare it again)"
            )
        base = int(offsets[s])
        for i, feats in enumerate(sentence.feats):
            parsed = parse_feats(feats)
            if isinstance(parsed, str):
                raise InputError(
                    f"{treebank_path}: sentence {sentence.id}: word {i + 1}: FEATS {feats!r}: "
                    f"{parsed}"
                )
            value = parsed.get(feature)
            if value is None:
                continue
            if "," in value:
                excluded["ambiguous"] += 1
            elif value not in inventory:
                excluded["other_value"] += 1
            else:
                words.append(base + i)
                labels.append(inventory[value])
    return Items(np.array(words, dtype=np.int64), None, np.array(labels, dtype=np.int64), excluded)


# ---------------------------------------------------------------- the registry


def morph_task(feature: str) -> ProbingTask:
    def items(sentences, offsets, seed: int = 0, treebank_path="treebank") -> Items:
        return feature_items(feature, sentences, offsets, treebank_path)

    return ProbingTask(
        name=f"{MORPH_PREFIX}{feature}",
        title=f"{feature} (UD feature)",
        labels=FEATURES[feature],
        items=items,
        features="word",
        item_noun=f"words with {feature}",
        min_train_items=MIN_TRAIN_ITEMS,
        min_eval_items=MIN_EVAL_ITEMS,
    )


TASKS: dict[str, ProbingTask] = {
    task.name: task
    for task in (
        ProbingTask("pos", "POS tagging", UPOS, pos_items, "word", "words",
                    has_control=True, mdl=True),
        ProbingTask("arc", "arc prediction", ARC_LABELS, arc_items, "pair", "dependency arcs",
                    seeded=True, items_per_word=2),
        ProbingTask("deprel", "arc classification", DEPRELS, deprel_items, "pair",
                    "dependency arcs", has_control=True),
        *(morph_task(feature) for feature in FEATURES),
    )
}  # fmt: skip
LABELS = {name: task.labels for name, task in TASKS.items()}


def get(task: str | ProbingTask) -> ProbingTask:
    """The registered task of that name (a ProbingTask is returned as it is)."""
    if isinstance(task, ProbingTask):
        return task
    try:
        return TASKS[task]
    except KeyError:
        raise InputError(f"unknown probing task {task!r} (one of {', '.join(TASKS)})") from None


def shape(task: str | ProbingTask) -> tuple[int, int, int]:
    """The training problem of a task per training word: (items at most, features in units of
    the hidden size, probe outputs); e.g. ``pos`` (1, 1, 17), ``arc`` (2, 3, 1)."""
    return get(task).shape


def split_items(task, sentences, seed: int = 0, treebank_path="treebank") -> Items:
    """The items of one split from the treebank alone (no activation cache)."""
    return get(task).items(sentences, word_offsets(sentences), seed, treebank_path)


def absent_reason(task, splits: dict, treebank_path, names=("train", "dev")) -> str | None:
    """Why a language lacks an optional task on the named splits of its prepared treebank
    (``{split: sentences}``), or None when it has it (always, for a task that is not optional).

    train needs ``min_train_items`` items with two labels or more, dev and test
    ``min_eval_items`` items each."""
    task = get(task)
    if not task.optional:
        return None
    for split in names:
        items = split_items(task, splits.get(split) or [], 0, treebank_path)
        n = len(items.labels)
        least = task.min_train_items if split == "train" else task.min_eval_items
        if n < least:
            return f"{n} {task.item_noun} in {split}, fewer than {least}"
        values = np.unique(items.labels)
        if split == "train" and len(values) < 2:
            return f"a single value in train ({task.labels[values[0]]})"
    return None


# ---------------------------------------------------------------- features


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


def word_features(H: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The vectors of ``words`` per layer: (layers, items, hidden); ``H`` itself (no copy) when
    the items are every word in order."""
    if len(words) == H.shape[1] and np.array_equal(words, np.arange(H.shape[1])):
        return H
    return H[:, words]


def build(task: str | ProbingTask, sentences, split_dir, treebank_path, seed: int = 0) -> TaskData:
    """Features of every cached layer and labels of one task on one split.

    ``sentences`` is the split of the prepared treebank at ``treebank_path`` (named in errors) and
    ``split_dir`` its directory in the activation cache; ``seed`` only matters for a seeded task
    (``arc``).
    """
    task = get(task)
    if not sentences:
        raise InputError(f"{treebank_path}: the split has no sentences")
    index = store.load_index(split_dir)
    check_alignment(index, sentences, split_dir, treebank_path)
    H = store.load_layers(split_dir, store.cached_layers(split_dir))
    items = task.items(sentences, index.offsets, seed, treebank_path)
    if len(items.labels) == 0:
        raise InputError(
            f"{treebank_path}: the split has no {task.item_noun} for the {task.name} task"
        )
    units = sentence_of_rows(index.offsets, items.words)
    if task.features == "pair":
        X = pair_features(H, items.words, items.heads)
    else:
        X = word_features(H, items.words)
    return TaskData(X, items.labels, units, len(sentences))
