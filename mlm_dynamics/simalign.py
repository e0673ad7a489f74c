"""SimAlign: unsupervised word alignment from the similarity of contextual word vectors.

Jalili Sabet et al. (2020), "SimAlign: High Quality Word Alignments without Parallel Training Data
using Static and Contextualized Embeddings". For every hidden state, each source and target word
gets the mean of its subword vectors (source and target sentences are encoded separately), the
similarity of a word pair is its cosine similarity mapped to [0, 1] as in SimAlign, and:

- ``argmax`` keeps ``i-j`` iff ``j`` is the most similar target word of ``i`` and ``i`` the most
  similar source word of ``j`` (mutual argmax; ties go to the lower index, as numpy's argmax).
- ``itermax`` (the paper's Algorithm 1, as in the reference implementation) repeats the mutual
  argmax on a modified matrix: a pair whose words are both aligned already is excluded (zeroed),
  a pair with exactly one aligned word has its similarity multiplied by alpha = 0.9, a pair of
  two unaligned words keeps it; the mutual-argmax pairs found are added. It stops after
  ``max_iterations`` rounds in all (SimAlign's default: 2, i.e. one extra round), when a round
  adds nothing, or when every source or every target word is aligned. Sentences with at most two
  words on either side keep their argmax links, as in SimAlign.

Gold alignments are Pharaoh lines of 0-based ``i-j`` (sure) links; ``i?j`` and ``i-j-p`` mark
possible links (``i-j-s`` is sure too). Scores are corpus-level, with A the predicted links, S the
sure links and P the possible links together with the sure ones (Och & Ney 2003):
precision = |A & P| / |A|, recall = |A & S| / |S|, F1 their harmonic mean, and
AER = 1 - (|A & S| + |A & P|) / (|A| + |S|).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.errors import InputError

METHODS = ("argmax", "itermax")
ITERMAX_ALPHA = 0.9
ITERMAX_ITERATIONS = 2
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


ALIGNERS = {"argmax": argmax_alignment, "itermax": itermax_alignment}


def link_set(matrix: np.ndarray) -> Links:
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(matrix), strict=True)}


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Gold:
    sure: Links
    possible: Links  # sure links included


def alignment_scores(predicted: list[Links], gold: list[Gold]) -> dict[str, float]:
    """Corpus-level precision, recall, F1 and AER of predicted links against gold links."""
    a = s = a_and_s = a_and_p = 0
    for links, reference in zip(predicted, gold, strict=True):
        a += len(links)
        s += len(reference.sure)
        a_and_s += len(links & reference.sure)
        a_and_p += len(links & reference.possible)
    precision = a_and_p / a if a else 0.0
    recall = a_and_s / s
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    aer = 1.0 - (a_and_s + a_and_p) / (a + s)
    return {"precision": precision, "recall": recall, "f1": f1, "aer": aer}


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


def score_layers(
    source_vectors: np.ndarray,
    target_vectors: np.ndarray,
    source_offsets: np.ndarray,
    target_offsets: np.ndarray,
    gold: list[Gold],
    methods: list[str],
) -> list[dict]:
    """Rows (method, layer, metric, value) from both sides' word vectors (layers, words, hidden)."""
    rows = []
    for layer in range(source_vectors.shape[0]):
        predicted = {method: [] for method in methods}
        for k in range(len(gold)):
            sim = similarity(
                source_vectors[layer, source_offsets[k] : source_offsets[k + 1]],
                target_vectors[layer, target_offsets[k] : target_offsets[k + 1]],
            )
            for method in methods:
                predicted[method].append(link_set(ALIGNERS[method](sim)))
        for method in methods:
            for metric, value in alignment_scores(predicted[method], gold).items():
                rows.append({"method": method, "layer": layer, "metric": metric, "value": value})
    return rows


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--source", required=True, help="source sentences, space-tokenised")
    parser.add_argument("--target", required=True, help="target sentences, space-tokenised")
    parser.add_argument("--gold", required=True, help="Pharaoh gold alignments")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--source-language", default="en")
    parser.add_argument("--language", required=True, help="target language")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--model", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--out", required=True, help="tidy score table (.parquet)")
    args = parser.parse_args(argv)

    import pandas as pd

    from mlm_dynamics.analysis import tidy_table
    from mlm_dynamics.atomic import save_table
    from mlm_dynamics.extract import Encoder

    source = read_sentences(args.source)
    target = read_sentences(args.target)
    if len(source) != len(target):
        raise InputError(f"{args.target}: {len(target)} lines, {args.source} has {len(source)}")
    gold = read_gold(args.gold, [len(s) for s in source], [len(t) for t in target])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = Encoder.from_checkpoint(args.checkpoint, args.tokenizer)
    source_vectors, source_plan = encoder.extract(source, "mean", args.batch_tokens)
    target_vectors, target_plan = encoder.extract(target, "mean", args.batch_tokens)
    rows = score_layers(
        source_vectors, target_vectors, source_plan.offsets, target_plan.offsets, gold,
        args.methods,
    )  # fmt: skip
    table = pd.DataFrame(rows)
    best = table[table.metric == "aer"].groupby("method").value.min()
    log(
        f"{args.source_language}-{args.language}: {len(gold)} sentence pairs, "
        f"{sum(len(g.sure) for g in gold)} sure links; lowest AER "
        + ", ".join(f"{method} {value:.3f}" for method, value in best.items())
    )
    table = table.assign(
        model=args.model,
        step=args.step,
        task="simalign-" + table.pop("method"),
        train_lang=args.source_language,
        test_lang=args.language,
        seed=0,
        n=len(gold),
    )
    save_table(args.out, tidy_table(table))
