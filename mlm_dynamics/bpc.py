"""Bits per character on held-out text (``bpc``), with bootstrap intervals.

Three estimates, config ``bpc.estimate`` (``auto``, the default, is ``pll`` for a masked LM and
``ar`` for a causal LM, decided from the checkpoint's config), each its own metric so that the
table says which estimate a row is:

- ``pll`` (metric ``bpc_pll``): the pseudo-log-likelihood (Salazar et al., 2020). A masked LM
  has no left-to-right likelihood, so every token of a sentence is masked in turn, one masked
  copy per token, and the model's ``-log2 p`` of the true token at the masked position is summed
  over all tokens of all sentences; BPC is that sum divided by the number of characters of the
  raw text: the characters of each line as read (surrounding whitespace stripped, spaces inside
  the line counted, no newline). Metric ``pll_bits`` is the summed bits themselves.
- ``mlm`` (metric ``bpc_mlm``): the standard masked-LM estimate. Each token is chosen with
  probability ``p`` (``bpc.mask_probability``), at least one per sentence (a sentence where the
  draw chose none gets one token chosen uniformly); all chosen tokens of a window are replaced by
  the mask token at once and one forward pass scores them. The per-token cross-entropy of the
  masked positions, scaled to all tokens, over characters::

      bpc_mlm = bits_masked / masked_tokens * tokens / characters

  averaged over ``bpc.maskings`` maskings. Masking ``k`` is drawn from
  ``numpy.random.default_rng([MASK_SEED, k])``, sentence after sentence in file order, so every
  checkpoint of a model (same tokenizer, same text) sees the same masked positions. ``both``
  computes ``pll`` and ``mlm``.
- ``ar`` (metric ``bpc_ar``): a causal LM's own, autoregressive likelihood. Per sentence,
  ``-log2 p(token_t | tokens_<t)`` summed over every token, over the same characters; metric
  ``ar_bits`` is the summed bits. Each sentence is scored on its own, its first token
  conditioned on the tokenizer's BOS token (BLOOM, Pythia), or on its EOS token where it has no
  BOS (GPT-2); a tokenizer with neither is refused. A masked LM asked for ``ar``, or a causal LM
  asked for ``pll``/``mlm``/``both``, is refused too: each would score a head trained for
  something else. The two kinds' numbers are not comparable (a pseudo-log-likelihood sees both
  sides of a token), so no figure draws them on one axis.

Intervals: the held-out sentences are resampled (``stats.Bootstrap.weights``, keyed by the
language and split ``heldout``, so every model and step scored on that text draws the same
resamples and differences between steps are paired). A resample's BPC is its ratio of summed
bits to summed characters (for ``bpc_mlm``, each masking's ratio of summed masked bits to summed
masked tokens times the ratio of summed tokens to summed characters, averaged over maskings);
``ci_low`` / ``ci_high`` are the percentiles of those. Rows carry split ``test``: held-out text is
only ever reported, never used to choose anything.

For a masked LM, a sentence with more tokens than the model has positions is cut into
consecutive windows, each wrapped in ``<s> ... </s>`` and scored on its own; the log says how
many sentences were windowed. For a causal LM, ``[BOS] + tokens`` longer than the model's context
(``width`` tokens) is scored in overlapping windows (the usual sliding-window perplexity): windows
of ``width`` tokens starting every ``stride = width // 2`` tokens, each scoring only the tokens
no earlier window scored. Every token is scored exactly once, each with the most left context a
window gives it, and at least ``width - stride`` tokens of it after the first window; a stride of
half the width is the usual trade between that context and the forward passes (about twice those
of cut windows). The context is the model's positions within the tokenizer's limit
(:func:`mlm_dynamics.activations.extract.max_positions`; for a model without position embeddings,
ALiBi's BLOOM, the tokenizer's ``model_max_length``, else ``UNLIMITED_CONTEXT``).

The masked copies (``<s>`` and ``</s>`` never masked) are batched together with other sentences'
copies, length-sorted, up to ``--batch-tokens`` padded tokens a batch. Only the masked positions
go through the LM head, so a batch never materialises a (batch, length, vocabulary) logit tensor.
A causal LM's windows are batched the same way (right-padded, with an attention mask); its logits
come from the model's own forward pass (some architectures scale or cap them after the head), so
a batch holds at most ``--batch-tokens`` padded tokens and at most ``LOGIT_BUDGET`` logits (250k
vocabulary of BLOOM: about 1,000 tokens a batch); only the scored positions are normalised, and
bits are summed in float64.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.errors import InputError

AUTO = "auto"
ESTIMATES = (AUTO, "pll", "mlm", "both", "ar")
# Each estimate's metric and what a figure calls it: one owner for the names.
METRICS = {"pll": "bpc_pll", "mlm": "bpc_mlm", "ar": "bpc_ar"}
METRIC_LABELS = {
    "bpc_pll": "pseudo-log-likelihood",
    "bpc_mlm": "masked-LM estimate",
    "bpc_ar": "autoregressive",
}


def fits(estimate: str, causal: bool) -> bool:
    """Whether ``estimate`` scores a model of that kind with its own head."""
    return estimate == AUTO or (estimate == "ar") == causal


def reported_metric(table) -> str | None:
    """The BPC metric that figures, the explorer and the README report for one model's rows of
    the tidy table: the first of ``METRIC_LABELS`` it has (a model has its own estimate; the
    masked-LM estimate only where it is the only one)."""
    present = set(table.loc[table["task"] == "bpc", "metric"])
    return next((metric for metric in METRIC_LABELS if metric in present), None)


# Logits (batch x length x vocabulary, float32) a causal batch may hold: 1 GiB.
LOGIT_BUDGET = 1 << 28
MASK_SEED = 0
HELDOUT_SPLIT = "heldout"  # the bootstrap key's split; table rows say "test"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_checkpoint(checkpoint: str | Path, tokenizer: str | Path | None, estimate: str = AUTO):
    """A Hugging Face-format checkpoint in eval mode, fp32, its tokenizer, and the estimate it
    gets (``auto`` resolved by the model's kind); loaded through
    :mod:`mlm_dynamics.sources.checks`, so a broken checkpoint is one error line, and a model
    without its LM head is refused rather than scored with a random one. An estimate of the
    other kind of model is refused."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from mlm_dynamics.activations.extract import conditioning_token
    from mlm_dynamics.sources.checks import (
        load_model,
        load_tokenizer,
        read_config,
        tokenizer_dir,
    )

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise InputError(f"{checkpoint}: not a checkpoint directory (no config.json)")
    config = read_config(checkpoint)
    estimate = estimate_for(config, checkpoint, estimate)
    directory = tokenizer_dir(checkpoint, tokenizer)
    if estimate == "ar":
        model, has_head = load_model(AutoModelForCausalLM, checkpoint, dtype="float32")
        if not has_head:
            raise InputError(
                f"{checkpoint}: no causal-LM head in the weights: bits per character would "
                f"come from a randomly initialised head"
            )
        causal_tokenizer = load_tokenizer(directory, config)
        conditioning_token(causal_tokenizer, str(directory))  # refused before any scoring
        return model.eval(), causal_tokenizer, estimate
    model, _ = load_model(
        AutoModelForMaskedLM, checkpoint, head_needed_for="bits per character", dtype="float32"
    )
    return model.eval(), load_tokenizer(directory, config), estimate


def estimate_for(config, checkpoint: Path, estimate: str) -> str:
    """The estimate a model gets: ``auto`` is its kind's own; a causal LM has no masked-token
    predictions and a masked LM no left-to-right likelihood, so the other kind's estimate (it
    would score a head trained for something else) is refused."""
    from transformers import MODEL_FOR_MASKED_LM_MAPPING

    from mlm_dynamics.sources.checks import is_causal_lm

    causal = is_causal_lm(config)
    kind = config.model_type
    if estimate == AUTO:
        if not causal and type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
            raise InputError(f"{checkpoint}: {kind} has neither a masked-LM nor a causal-LM head")
        return "ar" if causal else "pll"
    if causal and estimate != "ar":
        raise InputError(
            f"{checkpoint}: {kind} is a causal LM: bpc.estimate ar (or auto) fits it, "
            f"not {estimate}"
        )
    if not causal and estimate == "ar":
        if type(config) in MODEL_FOR_MASKED_LM_MAPPING:
            raise InputError(
                f"{checkpoint}: {kind} is a masked LM: bpc.estimate pll, mlm, both (or auto) "
                f"fits it, not ar"
            )
        raise InputError(f"{checkpoint}: {kind} is not a causal LM: bpc.estimate ar needs one")
    return estimate


def windows(token_ids: list[int], width: int) -> list[list[int]]:
    """Consecutive pieces of at most ``width`` tokens (one piece when it fits)."""
    return [token_ids[i : i + width] for i in range(0, max(len(token_ids), 1), width)]


# ---------------------------------------------------------------- tokenised sentences


@dataclass(frozen=True)
class Sequences:
    """The encoder inputs of some sentences: ``<s> window </s>`` per window of each sentence."""

    sequences: list[list[int]]
    sentence: np.ndarray  # (sequences,) the sentence of each sequence
    first_token: np.ndarray  # (sequences,) sentence token index of the window's first token
    tokens: np.ndarray  # (sentences,) tokens of each sentence (specials excluded)
    windowed_sentences: int
    width: int  # tokens a window holds


def tokenise(model, tokenizer, sentences: list[str]) -> Sequences:
    from mlm_dynamics.activations.extract import max_positions

    width = max_positions(tokenizer, model.config) - 2
    if width < 1:
        raise InputError(f"model has {width + 2} positions: too few to score a token")
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    sequences, owner, first = [], [], []
    tokens = np.zeros(len(sentences), dtype=np.int64)
    windowed = 0
    for s, ids in enumerate(tokenizer(sentences, add_special_tokens=False)["input_ids"]):
        tokens[s] = len(ids)
        pieces = windows(ids, width)
        windowed += len(pieces) > 1
        for k, piece in enumerate(pieces):
            if piece:
                sequences.append([bos, *piece, eos])
                owner.append(s)
                first.append(k * width)
    return Sequences(
        sequences, np.array(owner, np.int64), np.array(first, np.int64), tokens, windowed, width
    )


def masked_bits(
    model, tokenizer, sequences: list[list[int]], copies, batch_tokens: int, device
) -> np.ndarray:
    """``-log2 p`` of the true tokens, summed per copy, with each copy's positions masked.

    ``copies``: (sequence index, positions) pairs; a copy is its sequence with every one of its
    positions (indices into the sequence, specials excluded) replaced by the mask token at once.
    """
    import torch

    pad, mask = tokenizer.pad_token_id, tokenizer.mask_token_id
    order = sorted(range(len(copies)), key=lambda c: len(sequences[copies[c][0]]))
    bits = np.zeros(len(copies))
    head = model.lm_head if hasattr(model, "lm_head") else model.cls
    start = 0
    with torch.inference_mode():
        while start < len(order):
            # Copies are length-sorted, so the last one in a batch sets its padded length.
            end = start + 1
            while end < len(order) and (
                (end + 1 - start) * len(sequences[copies[order[end]][0]]) <= batch_tokens
            ):
                end += 1
            batch = order[start:end]
            length = len(sequences[copies[batch[-1]][0]])
            input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), length), dtype=torch.long)
            rows, columns, targets = [], [], []
            for row, c in enumerate(batch):
                s, positions = copies[c]
                sequence = torch.tensor(sequences[s])
                positions = torch.as_tensor(np.asarray(positions), dtype=torch.long)
                input_ids[row, : len(sequence)] = sequence
                attention[row, : len(sequence)] = 1
                input_ids[row, positions] = mask
                rows.append(torch.full((len(positions),), row, dtype=torch.long))
                columns.append(positions)
                targets.append(sequence[positions])
            rows, columns = torch.cat(rows).to(device), torch.cat(columns).to(device)
            targets = torch.cat(targets).to(device)
            hidden = model.base_model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).last_hidden_state
            logits = head(hidden[rows, columns]).float()
            picked = torch.arange(len(targets), device=device)
            log_p = torch.log_softmax(logits, dim=-1)[picked, targets]
            per_row = torch.zeros(len(batch), dtype=torch.float64, device=device)
            per_row.index_add_(0, rows, -log_p.double() / math.log(2))
            bits[batch] = per_row.cpu().numpy()
            start = end
    return bits


# ---------------------------------------------------------------- pseudo-log-likelihood


@dataclass(frozen=True)
class SentenceBits:
    """Bits summed per sentence over its tokens, by one of the estimates."""

    sentence_bits: np.ndarray  # (sentences,)
    sentence_tokens: np.ndarray  # (sentences,)
    windowed_sentences: int

    @property
    def bits(self) -> float:
        return float(self.sentence_bits.sum())

    @property
    def tokens(self) -> int:
        return int(self.sentence_tokens.sum())


@dataclass(frozen=True)
class PseudoLogLikelihood(SentenceBits):
    """``sentence_bits``: the sum of -log2 p(token | rest) over its tokens, each masked in turn."""


def pseudo_log_likelihood(
    model, tokenizer, sentences: list[str], *, batch_tokens: int, device=None
) -> PseudoLogLikelihood:
    """Per sentence, the sum of ``-log2 p`` of every token with that token masked."""
    import torch

    device = device or torch.device("cpu")
    model = model.to(device)
    seqs = tokenise(model, tokenizer, sentences)
    # One masked copy per (sequence, position).
    copies = [
        (s, [position])
        for s, sequence in enumerate(seqs.sequences)
        for position in range(1, len(sequence) - 1)
    ]
    bits = masked_bits(model, tokenizer, seqs.sequences, copies, batch_tokens, device)
    owner = seqs.sentence[[s for s, _ in copies]] if copies else np.zeros(0, np.int64)
    sentence_bits = np.bincount(owner, weights=bits, minlength=len(sentences))
    return PseudoLogLikelihood(sentence_bits, seqs.tokens, seqs.windowed_sentences)


def sentence_characters(sentences: list[str]) -> np.ndarray:
    characters = np.array([len(sentence) for sentence in sentences], dtype=np.int64)
    if characters.sum() == 0:
        raise InputError("no text to score")
    return characters


def bits_per_character(
    model, tokenizer, sentences: list[str], *, batch_tokens: int, device=None
) -> tuple[float, int, PseudoLogLikelihood]:
    """BPC, the number of characters it is divided by, and the pseudo-log-likelihood."""
    characters = int(sentence_characters(sentences).sum())
    pll = pseudo_log_likelihood(
        model, tokenizer, sentences, batch_tokens=batch_tokens, device=device
    )
    return pll.bits / characters, characters, pll


# ---------------------------------------------------------------- masked-LM estimate


def mlm_masks(tokens: np.ndarray, probability: float, masking: int) -> list[np.ndarray]:
    """Masking ``masking``: the masked token indices of each sentence (see the module docstring).

    Each token is chosen with ``probability``; a sentence with tokens but none chosen gets one,
    uniformly. Reproducible: the same token counts, probability and masking give the same masks.
    """
    if not 0 < probability <= 1:
        raise InputError(f"--mask-probability: {probability} is not in (0, 1]")
    rng = np.random.default_rng([MASK_SEED, masking])
    masks = []
    for n in tokens:
        chosen = np.flatnonzero(rng.random(int(n)) < probability)
        if n and not len(chosen):
            chosen = np.array([rng.integers(int(n))])
        masks.append(chosen.astype(np.int64))
    return masks


@dataclass(frozen=True)
class MaskedEstimate:
    masked_bits: np.ndarray  # (sentences, maskings) -log2 p summed over the masked tokens
    masked_tokens: np.ndarray  # (sentences, maskings)
    sentence_tokens: np.ndarray  # (sentences,)
    windowed_sentences: int


def masked_lm_bits(
    model,
    tokenizer,
    sentences: list[str],
    *,
    maskings: int,
    probability: float,
    batch_tokens: int,
    device=None,
) -> MaskedEstimate:
    """Bits of the masked tokens per sentence and masking (see the module docstring)."""
    import torch

    if maskings < 1:
        raise InputError("--maskings: must be >= 1")
    device = device or torch.device("cpu")
    model = model.to(device)
    seqs = tokenise(model, tokenizer, sentences)
    masked_bits_ = np.zeros((len(sentences), maskings))
    masked_tokens = np.zeros((len(sentences), maskings), dtype=np.int64)
    copies, where = [], []  # one copy per (masking, window with a masked token)
    for k in range(maskings):
        masks = mlm_masks(seqs.tokens, probability, k)
        for q, (s, first) in enumerate(zip(seqs.sentence, seqs.first_token, strict=True)):
            mask = masks[s]
            inside = mask[(mask >= first) & (mask < first + seqs.width)]
            if len(inside):
                copies.append((q, 1 + inside - first))  # +1: after <s>
                where.append((s, k))
        masked_tokens[:, k] = [len(mask) for mask in masks]
    bits = masked_bits(model, tokenizer, seqs.sequences, copies, batch_tokens, device)
    for (s, k), value in zip(where, bits, strict=True):
        masked_bits_[s, k] += value
    return MaskedEstimate(masked_bits_, masked_tokens, seqs.tokens, seqs.windowed_sentences)


def mlm_resampled(weights: np.ndarray, mlm: MaskedEstimate, characters: np.ndarray) -> np.ndarray:
    """``bpc_mlm`` per resample (rows of ``weights``; a row of ones gives the point value)."""
    from mlm_dynamics.stats import resampled_ratios

    per_token = resampled_ratios(weights, mlm.masked_bits, mlm.masked_tokens)  # (R, maskings)
    tokens_per_character = resampled_ratios(weights, mlm.sentence_tokens, characters)  # (R,)
    return (per_token * tokens_per_character[:, None]).mean(axis=1)


# ---------------------------------------------------------------- causal-LM estimate


def sliding_windows(length: int, width: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` of each window over a sequence of ``length`` ids whose
    index 0 is the conditioning token: the window reads ids ``begin:end`` and scores ids
    ``first_scored:end``, those no earlier window scored (see the module docstring)."""
    if not 1 <= stride < width:
        raise ValueError(f"stride {stride} must be in [1, width {width})")
    spans, begin, scored_to = [], 0, 1
    while scored_to < length:
        end = min(begin + width, length)
        spans.append((begin, end, scored_to))
        scored_to, begin = end, begin + stride
    return spans


@dataclass(frozen=True)
class CausalWindows:
    """The model inputs of some sentences: windows over ``[BOS] + tokens`` of each sentence."""

    inputs: list[list[int]]
    first_scored: np.ndarray  # (windows,) index in the window of its first scored token
    sentence: np.ndarray  # (windows,) the sentence of each window
    tokens: np.ndarray  # (sentences,) tokens of each sentence (the conditioning token excluded)
    windowed_sentences: int
    width: int
    stride: int


def causal_windows(model, tokenizer, sentences: list[str]) -> CausalWindows:
    from mlm_dynamics.activations.extract import conditioning_token, max_positions

    width = max_positions(tokenizer, model.config)
    if width < 2:
        raise InputError(f"model has {width} positions: too few to score a token")
    stride = width // 2
    first = conditioning_token(tokenizer, getattr(tokenizer, "name_or_path", "") or "tokenizer")
    inputs, first_scored, owner = [], [], []
    tokens = np.zeros(len(sentences), dtype=np.int64)
    windowed = 0
    for s, ids in enumerate(tokenizer(sentences, add_special_tokens=False)["input_ids"]):
        tokens[s] = len(ids)
        sequence = [first, *ids]
        spans = sliding_windows(len(sequence), width, stride)
        windowed += len(spans) > 1
        for begin, end, scored in spans:
            inputs.append(sequence[begin:end])
            first_scored.append(scored - begin)
            owner.append(s)
    return CausalWindows(
        inputs, np.array(first_scored, np.int64), np.array(owner, np.int64), tokens, windowed,
        width, stride,
    )  # fmt: skip


def next_token_bits(
    model, inputs: list[list[int]], first_scored, batch_tokens: int, pad: int, device
) -> tuple[np.ndarray, np.ndarray]:
    """Per window, ``-log2 p`` of its ids ``first_scored:`` given the ids before them, summed,
    and the number of ids scored."""
    import torch

    order = sorted(range(len(inputs)), key=lambda w: len(inputs[w]))
    # The model's logits are the batch's largest tensor (BLOOM: 250k of them a token).
    vocabulary = model.get_output_embeddings().weight.shape[0]
    batch_tokens = max(1, min(batch_tokens, LOGIT_BUDGET // vocabulary))
    bits = np.zeros(len(inputs))
    scored = np.zeros(len(inputs), dtype=np.int64)
    start = 0
    with torch.inference_mode():
        while start < len(order):
            # Windows are length-sorted, so the last one in a batch sets its padded length.
            end = start + 1
            while end < len(order) and (end + 1 - start) * len(inputs[order[end]]) <= batch_tokens:
                end += 1
            batch = order[start:end]
            length = len(inputs[batch[-1]])
            # Right padding: a real token never attends to a pad (causal), and its positions
            # (absolute or ALiBi) are those of the unpadded window.
            input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), length), dtype=torch.long)
            rows, columns, targets = [], [], []
            for row, w in enumerate(batch):
                ids = torch.tensor(inputs[w], dtype=torch.long)
                input_ids[row, : len(ids)] = ids
                attention[row, : len(ids)] = 1
                positions = torch.arange(int(first_scored[w]), len(ids))
                rows.append(torch.full((len(positions),), row, dtype=torch.long))
                columns.append(positions - 1)  # the logits at i predict the id at i + 1
                targets.append(ids[positions])
            rows, columns = torch.cat(rows).to(device), torch.cat(columns).to(device)
            targets = torch.cat(targets).to(device)
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
            ).logits
            log_p = torch.log_softmax(logits[rows, columns].float(), dim=-1)
            log_p = log_p[torch.arange(len(targets), device=device), targets]
            per_row = torch.zeros(len(batch), dtype=torch.float64, device=device)
            per_row.index_add_(0, rows, -log_p.double() / math.log(2))
            bits[batch] = per_row.cpu().numpy()
            scored[batch] = np.bincount(rows.cpu().numpy(), minlength=len(batch))
            start = end
    return bits, scored


@dataclass(frozen=True)
class AutoregressiveEstimate(SentenceBits):
    """``sentence_bits``: the sum of -log2 p(token | tokens before) over its tokens."""

    scored_tokens: np.ndarray  # (sentences,) tokens the windows scored: sentence_tokens
    width: int  # tokens a window holds, the conditioning token included
    stride: int


def autoregressive_bits(
    model, tokenizer, sentences: list[str], *, batch_tokens: int, device=None
) -> AutoregressiveEstimate:
    """Per sentence, the sum of ``-log2 p`` of every token given the tokens before it (and the
    conditioning token), from a causal LM."""
    import torch

    device = device or torch.device("cpu")
    model = model.to(device)
    plan = causal_windows(model, tokenizer, sentences)
    # A pad is never attended to nor scored: any id will do where the tokenizer has no pad
    # (causal_windows refused a tokenizer with neither BOS nor EOS).
    ids = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    pad = next(token_id for token_id in ids if token_id is not None)
    bits, scored = next_token_bits(model, plan.inputs, plan.first_scored, batch_tokens, pad, device)
    n = len(sentences)
    return AutoregressiveEstimate(
        sentence_bits=np.bincount(plan.sentence, weights=bits, minlength=n),
        sentence_tokens=plan.tokens,
        windowed_sentences=plan.windowed_sentences,
        scored_tokens=np.bincount(plan.sentence, weights=scored, minlength=n).astype(np.int64),
        width=plan.width,
        stride=plan.stride,
    )


# ---------------------------------------------------------------- command


def main(command: str, argv: list[str]) -> None:
    from mlm_dynamics import stats
    from mlm_dynamics.analysis.tables import tidy_frame
    from mlm_dynamics.atomic import save_table
    from mlm_dynamics.devices import select_device
    from mlm_dynamics.textio import read_lines

    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--text", required=True, help="held-out text, one sentence a line")
    parser.add_argument("--max-sentences", type=int, required=True, help="bpc.max_sentences")
    parser.add_argument("--estimate", choices=ESTIMATES, required=True, help="bpc.estimate")
    parser.add_argument("--maskings", type=int, required=True, help="bpc_mlm: seeded maskings")
    parser.add_argument("--mask-probability", type=float, required=True, help="bpc_mlm: share")
    parser.add_argument("--batch-tokens", type=int, required=True, help="bpc.batch_tokens")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--model", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--language", required=True)
    parser.add_argument("--out", required=True, help="tidy score table (.parquet)")
    stats.add_arguments(parser)
    args = parser.parse_args(argv)
    bootstrap = stats.from_arguments(args)
    if args.maskings < 1:
        raise InputError("--maskings: must be >= 1")
    if not 0 < args.mask_probability <= 1:
        raise InputError(f"--mask-probability: {args.mask_probability} is not in (0, 1]")

    sentences = read_lines(args.text, limit=args.max_sentences)
    characters = sentence_characters(sentences)
    weights = bootstrap.weights(
        len(sentences), args.language, HELDOUT_SPLIT, f"{args.text} (BPC, {args.language})"
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        model, tokenizer, estimate = load_checkpoint(args.checkpoint, args.tokenizer, args.estimate)
    except InputError as exc:
        raise InputError(f"{args.model} step {args.step}: {exc}") from None
    device = select_device("cuda")
    key = dict(model=args.model, step=args.step, task="bpc", layer=-1, train_lang="")
    key.update(test_lang=args.language, split="test", seed=0)
    rows = []

    def add(metric: str, value: float, samples: np.ndarray, n: int) -> None:
        low, high = bootstrap.interval(samples)
        rows.append(
            {**key, "metric": metric, "value": value, "ci_low": low, "ci_high": high, "n": n}
        )

    summary = f"{args.model} step {args.step} {args.language}: {len(sentences)} sentences, "
    summary += f"{characters.sum()} characters"
    if estimate in ("pll", "both"):
        bpc, _, pll = bits_per_character(
            model, tokenizer, sentences, batch_tokens=args.batch_tokens, device=device
        )
        samples = stats.resampled_ratios(weights, pll.sentence_bits, characters)
        add(METRICS["pll"], bpc, samples, int(characters.sum()))
        add("pll_bits", pll.bits, weights @ pll.sentence_bits, pll.tokens)
        tokens, windowed = pll.tokens, pll.windowed_sentences
        summary += f"; BPC (pseudo-log-likelihood) {bpc:.4f}"
    if estimate in ("mlm", "both"):
        mlm = masked_lm_bits(
            model, tokenizer, sentences, maskings=args.maskings,
            probability=args.mask_probability, batch_tokens=args.batch_tokens, device=device,
        )  # fmt: skip
        value = float(mlm_resampled(np.ones((1, len(sentences))), mlm, characters)[0])
        add(METRICS["mlm"], value, mlm_resampled(weights, mlm, characters), int(characters.sum()))
        tokens, windowed = int(mlm.sentence_tokens.sum()), mlm.windowed_sentences
        summary += (
            f"; BPC (masked-LM, {args.maskings} maskings of {args.mask_probability:g}) {value:.4f}"
        )
    if estimate == "ar":
        ar = autoregressive_bits(
            model, tokenizer, sentences, batch_tokens=args.batch_tokens, device=device
        )
        value = ar.bits / int(characters.sum())
        samples = stats.resampled_ratios(weights, ar.sentence_bits, characters)
        add(METRICS["ar"], value, samples, int(characters.sum()))
        add("ar_bits", ar.bits, weights @ ar.sentence_bits, ar.tokens)
        tokens, windowed = ar.tokens, ar.windowed_sentences
        summary += (
            f"; BPC (autoregressive, windows of {ar.width} tokens, stride {ar.stride}) {value:.4f}"
        )
    log(
        f"{summary}; {tokens} tokens, {windowed} sentences longer than the model's positions "
        f"scored in windows"
    )
    save_table(args.out, tidy_frame(rows))
