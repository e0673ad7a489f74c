"""SimAlign: unsupervised word alignment from the similarity of contextual vectors.

Jalili Sabet et al. (2020), "SimAlign: High Quality Word Alignments without Parallel Training Data
using Static and Contextualized Embeddings". Source and target sentences are encoded separately;
for every hidden state (0 = embeddings up to the last layer, so layer 8, SimAlign's recommended
layer for mBERT and XLM-R, is reported whenever the model has it: nothing is dropped), the
similarity of two vectors is their cosine similarity mapped to [0, 1] as in SimAlign. Two
granularities (config ``simalign.granularity``):

- ``word`` (task ``simalign-{method}``): each word's vector is its subword vectors pooled
  (special tokens excluded; ``--pooling``, ``activations.pooling``: ``auto`` is their mean for a
  masked LM and the last subword, the only one that has read the whole word, for a causal LM;
  recorded in the rows' ``pooling``), and the words are aligned.
- ``subword`` (task ``simalign-{method}-subword``, SimAlign's own default): the subword vectors
  are aligned with each other, and source word ``i`` is linked to target word ``j`` when any
  subword of ``i`` is linked to any subword of ``j``.

Methods (config ``simalign.methods``), on a similarity matrix of (source, target) units:

- ``argmax`` keeps ``i-j`` iff ``j`` is the most similar target unit of ``i`` and ``i`` the most
  similar source unit of ``j`` (mutual argmax; ties go to the lower index, as numpy's argmax).
- ``itermax`` (the paper's Algorithm 1, as in the reference implementation) repeats the mutual
  argmax on a modified matrix: a pair whose units are both aligned already is excluded (zeroed),
  a pair with exactly one aligned unit has its similarity multiplied by alpha = 0.9, a pair of
  two unaligned units keeps it; the mutual-argmax pairs found are added. It stops after
  ``max_iterations`` rounds in all (SimAlign's default: 2, i.e. one extra round), when a round
  adds nothing, or when every source or every target unit is aligned. Sentences with at most two
  units on either side keep their argmax links, as in SimAlign.
- ``mwmf`` (maximum-weight maximal matching): the one-to-one set of pairs with the largest
  summed similarity, ``min(n, m)`` pairs (SimAlign's networkx ``max_weight_matching`` with
  ``maxcardinality``; with positive similarities a maximum-weight matching of a complete
  bipartite graph is a maximum-cardinality one, so ``scipy.optimize.linear_sum_assignment`` on
  the similarity, maximised, gives the same).

Gold alignments are Pharaoh lines of 0-based ``i-j`` (sure) links; ``i?j`` and ``i-j-p`` mark
possible links (``i-j-s`` is sure too). Scores are corpus-level ratios of link counts summed over
sentence pairs, with A the predicted links, S the sure links and P the possible links together
with the sure ones (Och & Ney 2003): precision = |A & P| / |A|, recall = |A & S| / |S|, F1 their
harmonic mean, and AER = 1 - (|A & S| + |A & P|) / (|A| + |S|).

Intervals: the sentence pairs are resampled (``stats.Bootstrap.weights``, keyed by
``{source}-{target}`` and split ``test``, so every model, step, layer, method and granularity
scored on one gold set sees the same resamples); each resample's precision, recall and AER are
the same ratios of its summed counts, its F1 their harmonic mean, and ``ci_low`` / ``ci_high`` are
the percentiles of those. Rows carry split ``test``: the gold alignments are only ever reported.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.errors import InputError

METHODS = ("argmax", "itermax", "mwmf")
GRANULARITIES = ("word", "subword")
METRICS = ("precision", "recall", "f1", "aer")
ITERMAX_ALPHA = 0.9
ITERMAX_ITERATIONS = 2
SPLIT = "test"
LINK = re.compile(r"^(\d+)(?:-(\d+)(?:-([pPsS]))?|\?(\d+))$")

Links = set[tuple[int, int]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- alignment


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cosine similarity of every source and target vector, mapped to [0, 1]: (source, target)."""
    source = source / np.maximum(np.linalg.norm(source, axis=1, keepdims=True), 1e-12)
    target = target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
    return (source @ target.T + 1.0) / 2.0


def argmax_alignment(sim: np.ndarray) -> np.ndarray:
    """Mutual argmax links as a boolean (source, target) matrix."""
    n, m = sim.shape
    forward = np.zeros((n, m), dtype=bool)
    forward[np.arange(n), sim.argmax(axis=1)] = True
    backward = np.zeros((n, m), dtype=bool)
    backward[sim.argmax(axis=0), np.arange(m)] = True
    return forward & backward


def itermax_alignment(
    sim: np.ndarray, max_iterations: int = ITERMAX_ITERATIONS, alpha: float = ITERMAX_ALPHA
) -> np.ndarray:
    """Iterative mutual argmax (see the module docstring); ``sim`` must be non-negative."""
    links = argmax_alignment(sim)
    if min(sim.shape) <= 2:
        return links
    for _ in range(max_iterations - 1):
        source_free = ~links.any(axis=1)
        target_free = ~links.any(axis=0)
        if not source_free.any() or not target_free.any():
            break
        weight = np.clip(alpha * source_free[:, None] + alpha * target_free[None, :], 0.0, 1.0)
        allowed = source_free[:, None] | target_free[None, :]
        new = argmax_alignment(sim * weight) & allowed
        if not new.any():
            break
        links |= new
    return links


def mwmf_alignment(sim: np.ndarray) -> np.ndarray:
    """Maximum-weight maximal matching (see the module docstring) as a boolean matrix."""
    from scipy.optimize import linear_sum_assignment

    rows, columns = linear_sum_assignment(sim, maximize=True)
    links = np.zeros(sim.shape, dtype=bool)
    links[rows, columns] = True
    return links


ALIGNERS = {"argmax": argmax_alignment, "itermax": itermax_alignment, "mwmf": mwmf_alignment}


def word_links(matrix: np.ndarray, source_words, target_words) -> Links:
    """Word links from unit links: ``i-j`` when any unit of word ``i`` is linked to any unit of
    word ``j`` (``source_words[u]``: the word of source unit ``u``; identity for words)."""
    source_words, target_words = np.asarray(source_words), np.asarray(target_words)
    rows, columns = np.nonzero(matrix)
    return set(zip(source_words[rows].tolist(), target_words[columns].tolist(), strict=True))


@dataclass(frozen=True)
class Units:
    """The aligned units of one side of a corpus: words, or subwords.

    ``vectors`` (hidden states, units, hidden); ``offsets`` (sentences + 1,) each sentence's unit
    range; ``words`` (units,) the word of each unit, numbered within its sentence.
    """

    vectors: np.ndarray
    offsets: np.ndarray
    words: np.ndarray

    def sentence(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))


def word_units(vectors: np.ndarray, offsets: np.ndarray) -> Units:
    offsets = np.asarray(offsets, dtype=np.int64)
    sentence = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return Units(vectors, offsets, np.arange(offsets[-1]) - offsets[sentence])


def predict_links(source: Units, target: Units, methods) -> dict[str, list[list[Links]]]:
    """Word links per method, hidden state and sentence pair: ``links[method][layer][pair]``."""
    pairs = len(source.offsets) - 1
    links = {method: [] for method in methods}
    for layer in range(source.vectors.shape[0]):
        per_method = {method: [] for method in methods}
        for k in range(pairs):
            a, b = source.sentence(k), target.sentence(k)
            sim = similarity(source.vectors[layer, a], target.vectors[layer, b])
            for method in methods:
                matrix = ALIGNERS[method](sim)
                per_method[method].append(word_links(matrix, source.words[a], target.words[b]))
        for method in methods:
            links[method].append(per_method[method])
    return links


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Gold:
    sure: Links
    possible: Links  # sure links included


COUNTS = ("a", "a_and_s", "a_and_p", "s")


def link_counts(predicted: list[Links], gold: list[Gold]) -> np.ndarray:
    """(pairs, 4) per sentence pair: |A|, |A & S|, |A & P|, |S| (the columns of ``COUNTS``)."""
    return np.array(
        [
            (len(links), len(links & ref.sure), len(links & ref.possible), len(ref.sure))
            for links, ref in zip(predicted, gold, strict=True)
        ],
        dtype=np.float64,
    ).reshape(-1, len(COUNTS))


def resampled_scores(weights: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and AER per resample (rows of ``weights``; a row of ones gives the
    corpus-level scores) from per-pair link counts (pairs, 4)."""
    from mlm_dynamics.stats import resampled_ratios

    a, a_and_s, a_and_p, s = counts.T
    precision = resampled_ratios(weights, a_and_p, a)
    recall = resampled_ratios(weights, a_and_s, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1[np.isnan(precision) | np.isnan(recall)] = np.nan
    aer = 1.0 - resampled_ratios(weights, a_and_s + a_and_p, a + s)
    return {"precision": precision, "recall": recall, "f1": f1, "aer": aer}


def score_intervals(counts: np.ndarray, weights: np.ndarray, bootstrap) -> dict[str, tuple]:
    """Per metric: (value, ci_low, ci_high) of one method's counts (pairs, 4)."""
    point = resampled_scores(np.ones((1, len(counts))), counts)
    samples = resampled_scores(weights, counts)
    result = {}
    for metric in METRICS:
        low, high = bootstrap.interval(samples[metric])
        result[metric] = (float(point[metric][0]), float(low), float(high))
    return result


# ---------------------------------------------------------------- reading


def read_sentences(path: str | Path) -> list[list[str]]:
    """Space-tokenised sentences, one a line; no line may be empty."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    sentences = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            words = line.split()
            if not words:
                raise InputError(f"{path}:{number}: empty sentence")
            sentences.append(words)
    return sentences


def read_gold(path: str | Path, source_lengths: list[int], target_lengths: list[int]) -> list[Gold]:
    """Pharaoh alignments, one line per sentence pair (an empty line: no links)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    gold = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) != len(source_lengths):
        raise InputError(f"{path}: {len(lines)} lines, but {len(source_lengths)} sentence pairs")
    for number, line in enumerate(lines, start=1):
        sure, possible = set(), set()
        for token in line.split():
            match = LINK.match(token)
            if not match:
                raise InputError(f"{path}:{number}: {token!r} is not i-j, i?j or i-j-p")
            i = int(match.group(1))
            j = int(match.group(2) if match.group(2) is not None else match.group(4))
            n, m = source_lengths[number - 1], target_lengths[number - 1]
            if i >= n or j >= m:
                raise InputError(
                    f"{path}:{number}: link {token} outside the sentences ({n} x {m} words)"
                )
            is_possible = match.group(4) is not None or (match.group(3) or "s") in "pP"
            (possible if is_possible else sure).add((i, j))
        gold.append(Gold(sure, possible | sure))
    if not any(reference.sure for reference in gold):
        raise InputError(f"{path}: no sure links (recall and AER need some)")
    return gold


# ---------------------------------------------------------------- command


def subword_units(encoder, sentences: list[list[str]], *, batch_tokens: int) -> Units:
    """Every subword's vector (specials excluded), with the word it belongs to.

    The encoder's own window plan (the same tokenisation and windows as word vectors) with each
    subword as its own row, so that its "mean pooling" is the subword's vector itself.
    """
    from mlm_dynamics.activations.extract import Window, WindowPlan

    plan = encoder.plan(sentences)
    windows, start = [], 0
    for window in plan.windows:
        n = len(window.token_ids)
        windows.append(Window(window.token_ids, np.arange(start, start + n, dtype=np.int64)))
        start += n
    word_rows = np.concatenate([w.word_rows for w in plan.windows] or [np.zeros(0, np.int64)])
    sentence = np.searchsorted(plan.offsets, word_rows, side="right") - 1
    counts = np.bincount(sentence, minlength=len(sentences)).astype(np.int64)
    subword_plan = WindowPlan(windows, counts, np.zeros_like(counts), 0, plan.windowed_sentences)
    vectors = np.zeros((encoder.n_hidden_states, start, encoder.hidden_size), dtype=np.float32)
    encoder.encode(subword_plan, vectors, pooling="mean", batch_tokens=batch_tokens)
    return Units(vectors, subword_plan.offsets, word_rows - plan.offsets[sentence])


def encode_units(encoder, sentences, granularity: str, *, pooling: str, batch_tokens: int) -> Units:
    if granularity == "subword":
        return subword_units(encoder, sentences, batch_tokens=batch_tokens)
    vectors, plan = encoder.extract(sentences, pooling=pooling, batch_tokens=batch_tokens)
    return word_units(vectors, plan.offsets)


def task_name(method: str, granularity: str) -> str:
    return f"simalign-{method}" + ("-subword" if granularity == "subword" else "")


def score_layers(
    source: Units, target: Units, gold: list[Gold], methods, weights, bootstrap, granularity="word"
) -> list[dict]:
    """Rows (task, layer, metric, value, ci_low, ci_high) of every method and hidden state."""
    rows = []
    for method, per_layer in predict_links(source, target, methods).items():
        for layer, predicted in enumerate(per_layer):
            counts = link_counts(predicted, gold)
            for metric, (value, low, high) in score_intervals(counts, weights, bootstrap).items():
                rows.append(
                    {"task": task_name(method, granularity), "layer": layer, "metric": metric,
                     "value": value, "ci_low": low, "ci_high": high}
                )  # fmt: skip
    return rows


def main(command: str, argv: list[str]) -> None:
    from mlm_dynamics import stats
    from mlm_dynamics.activations.extract import AUTO_POOLING, POOLINGS

    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--source", required=True, help="source sentences, space-tokenised")
    parser.add_argument("--target", required=True, help="target sentences, space-tokenised")
    parser.add_argument("--gold", required=True, help="Pharaoh gold alignments")
    parser.add_argument("--methods", nargs="+", choices=METHODS, required=True)
    parser.add_argument(
        "--granularity", nargs="+", choices=GRANULARITIES, required=True,
        help="align words (pooled subwords) and/or subwords (SimAlign's default)",
    )  # fmt: skip
    parser.add_argument(
        "--pooling", choices=[AUTO_POOLING, *POOLINGS], required=True,
        help="activations.pooling: a word's vector at granularity word",
    )  # fmt: skip
    parser.add_argument("--source-language", required=True, help="simalign.source_language")
    parser.add_argument("--language", required=True, help="target language")
    parser.add_argument("--batch-tokens", type=int, required=True, help="simalign.batch_tokens")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--model", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--out", required=True, help="tidy score table (.parquet)")
    stats.add_arguments(parser)
    args = parser.parse_args(argv)
    bootstrap = stats.from_arguments(args)
    methods = list(dict.fromkeys(args.methods))
    granularities = list(dict.fromkeys(args.granularity))

    from mlm_dynamics.activations.extract import Encoder
    from mlm_dynamics.analysis.tables import tidy_frame
    from mlm_dynamics.atomic import save_table

    source = read_sentences(args.source)
    target = read_sentences(args.target)
    if len(source) != len(target):
        raise InputError(f"{args.target}: {len(target)} lines, {args.source} has {len(source)}")
    gold = read_gold(args.gold, [len(s) for s in source], [len(t) for t in target])
    pair = f"{args.source_language}-{args.language}"
    weights = bootstrap.weights(len(gold), pair, SPLIT, f"{args.gold} (SimAlign {pair})")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = Encoder.from_checkpoint(args.checkpoint, args.tokenizer)
    pooling = encoder.pooling(args.pooling)
    rows = []
    for granularity in granularities:
        sides = [
            encode_units(
                encoder, text, granularity, pooling=pooling, batch_tokens=args.batch_tokens
            )
            for text in (source, target)
        ]
        # Subwords are aligned as they are: no pooling to record.
        unit_pooling = pooling if granularity == "word" else ""
        rows += [
            {**row, "pooling": unit_pooling}
            for row in score_layers(*sides, gold, methods, weights, bootstrap, granularity)
        ]
    aer = {}
    for row in rows:
        if row["metric"] == "aer":
            aer.setdefault(row["task"], []).append(row["value"])
    log(
        f"{pair}: {len(gold)} sentence pairs, {sum(len(g.sure) for g in gold)} sure links, "
        f"{encoder.n_hidden_states} hidden states; AER over layers "
        + ", ".join(f"{task} {min(v):.3f}-{max(v):.3f}" for task, v in aer.items())
    )
    key = dict(model=args.model, step=args.step, train_lang=args.source_language)
    key.update(test_lang=args.language, split=SPLIT, seed=0, n=len(gold))
    save_table(args.out, tidy_frame([{**key, **row} for row in rows]))
