"""Control tasks for the probes of the tasks that have one (``has_control`` in the registry:
``pos`` and ``deprel``; Hewitt & Liang 2019, "Designing and Interpreting Probes with Control
Tasks").

A control task keeps a real task's items and features but replaces each label by one that depends
only on the word's identity, drawn at random once per word type. Its labels carry no linguistic
structure, so a probe can only reach a high control accuracy by memorising word types. The
*selectivity* of a probe, accuracy on the real task minus accuracy on its control task with the
same probe and features, therefore separates what the representation encodes (and the probe reads
off) from what the probe itself is expressive enough to memorise: a probe with high accuracy but
low selectivity says little about the representation.

Definition used here, per language and task:

- The items, in their order, are exactly the real task's (its ``items`` in
  :mod:`mlm_dynamics.probing.registry`): ``pos`` has one item per word of every sentence, in order;
  ``deprel`` one per non-root word, in the order of
  :func:`~mlm_dynamics.probing.registry.deprel_pairs` (keyed by the *dependent* word).
- An item's label depends only on its word type, the lower-cased form (``str.lower()``) of its
  word (the dependent, for a pair).
- The reference distribution is the empirical distribution of the task's labels over its items in
  ``reference_sentences`` (the train split): UPOS counts for ``pos``, counts of the relations of
  non-root words for ``deprel``.
- A type's label is that distribution's inverse CDF at ``u = stable_seed(key) / 2**64`` with
  ``key = f"{seed}:{language}:{task}:{type}"``: the first label ``i`` whose cumulative count
  exceeds ``u * total`` (computed exactly in integers). So the same type gets the same label in
  every split with no stored mapping, a type never seen in train still gets one, and labels with
  zero count never occur.

Label ids index the task's ``labels`` (the universal inventories), so the control labels can be
fed to the same probes as the real ones.
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np

from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import registry
from mlm_dynamics.stats import stable_seed

CONTROLLED = tuple(name for name, task in registry.TASKS.items() if task.has_control)


def check_task(task) -> registry.ProbingTask:
    """The registered task, refused unless it has a control task."""
    task = registry.get(task)
    if not task.has_control:
        raise InputError(f"no control task for {task.name!r} (one of {', '.join(CONTROLLED)})")
    return task


def task_items(task, sentences, where: str) -> tuple[registry.Items, list[str]]:
    """The real task's items on ``sentences`` and the words of the split (rows index them)."""
    items = registry.split_items(task, sentences, 0, where)
    return items, [word for sentence in sentences for word in sentence.words]


def item_words(task, sentences, where: str = "sentences") -> list[str]:
    """The word form of each item of ``task`` (the dependent, for a pair), in the real task's
    item order."""
    items, words = task_items(task, sentences, where)
    return [words[row] for row in items.words.tolist()]


def reference_counts(task, reference_sentences, where: str) -> np.ndarray:
    """Counts (len(task.labels),) int64 of the task's labels over its items in the reference
    sentences."""
    task = registry.get(task)
    items, _ = task_items(task, reference_sentences, where)
    return np.bincount(items.labels, minlength=len(task.labels)).astype(np.int64)


def type_label(cumulative: list[int], key: str) -> int:
    """The inverse CDF of the cumulative counts at ``u = stable_seed(key) / 2**64``."""
    # floor(u * total) < cum[i] iff u < cum[i] / total, exactly: no float rounding at boundaries
    target = (stable_seed(key) * cumulative[-1]) >> 64
    return int(np.searchsorted(cumulative, target, side="right"))


def control_labels(
    task,
    sentences,
    reference_sentences,
    language: str,
    seed: int,
    where: str = "reference sentences",
) -> np.ndarray:
    """Control label ids (items,) int64 of ``task`` (a name or a registered task) on
    ``sentences`` (see the module docstring).

    ``reference_sentences`` (the train split) gives the label distribution; ``where`` names it in
    errors.
    """
    task = check_task(task)
    counts = reference_counts(task, reference_sentences, where)
    if counts.sum() == 0:
        raise InputError(
            f"{where}: no {task.name} labels to draw control labels from (no {task.item_noun})"
        )
    cumulative = list(accumulate(int(c) for c in counts))
    cache: dict[str, int] = {}  # one hash per type, not per item
    labels = []
    for word in item_words(task, sentences):
        word_type = word.lower()
        if word_type not in cache:
            cache[word_type] = type_label(cumulative, f"{seed}:{language}:{task.name}:{word_type}")
        labels.append(cache[word_type])
    return np.array(labels, dtype=np.int64)
