"""The layer-activation cache: one vector per word, per layer, per split of a prepared treebank.

``extract-activations`` loads a Hugging Face-format checkpoint, encodes every sentence of a
prepared treebank in length-sorted batches bounded by a number of padded tokens, pools each word's
subword vectors (mean, first or last) for every hidden state (embeddings included) and writes the
cache described in :mod:`mlm_dynamics.activations.store`, restored to treebank order.

A sentence longer than the model's positions is split into windows of whole words, each encoded
separately with its own special tokens, so every word gets a vector; how many words needed a
window other than the first (or lost subwords, for a single word longer than a window) is logged
and recorded per sentence in ``index.npz`` as ``truncated``. So is the tokenizer's coverage of each
sentence (its subwords, its words holding the unknown token, its unknown subwords: the fields of
:class:`mlm_dynamics.activations.store.SplitIndex`), and the split's shares are logged: a language
whose script the tokenizer never saw is mostly unknown tokens, and a probe on it reads positions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.activations.store import COVERAGE_FIELDS, SplitIndex, layer_file
from mlm_dynamics.atomic import atomic_dir
from mlm_dynamics.errors import InputError

POOLINGS = ("mean", "first", "last")
# activations.pooling's default: each model kind's own (resolve_pooling).
AUTO_POOLING = "auto"
# The context of a model that neither its config nor its tokenizer limits (ALiBi: BLOOM, whose
# tokenizer sets no model_max_length): the sequence length BLOOM was trained on.
UNLIMITED_CONTEXT = 2048

# Models whose position ids start after the padding index (RoBERTa's convention): the first
# pad_token_id + 1 rows of the position table are never used for real tokens.
PADDING_OFFSET_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text"}
# On a CPU, batches beyond this many padded tokens add no parallelism and only lose cache
# locality (measured on the default tiny model: 8192-token batches ~30% slower than 1024).
CPU_BATCH_TOKENS = 1024
# Encoders whose base model carries a (here unused) pooler over the first token.
POOLER_MODELS = PADDING_OFFSET_MODELS | {"bert"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Window:
    """One encoder input: consecutive whole words of one sentence that fit the model's positions."""

    token_ids: np.ndarray  # (tokens,) subword ids, special tokens excluded
    word_rows: np.ndarray  # (tokens,) row of each token's word among all words of the split


@dataclass(frozen=True)
class WindowPlan:
    """How the sentences of one split become encoder inputs."""

    windows: list[Window]
    word_counts: np.ndarray  # (sentences,)
    truncated: np.ndarray  # (sentences,) words in a window other than the first, or cut short
    cut_words: int  # single words longer than a window, their subwords cut to fit
    windowed_sentences: int  # sentences encoded in more than one window
    # the tokenizer's coverage per sentence (SplitIndex's fields; None where not counted)
    subword_counts: np.ndarray | None = None
    unk_word_counts: np.ndarray | None = None
    unk_subword_counts: np.ndarray | None = None

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.word_counts)]).astype(np.int64)

    @property
    def n_words(self) -> int:
        return int(self.word_counts.sum())


class Encoder:
    """A checkpoint's tokenizer and encoder, turning word sequences into pooled word vectors."""

    def __init__(self, tokenizer, model, device):
        from mlm_dynamics.sources.checks import is_causal_lm

        self.tokenizer = tokenizer
        self.model = model.eval()
        self.device = device
        self.causal = is_causal_lm(model.config)
        self.prefix, self.suffix = special_tokens(tokenizer)
        if self.causal:
            # A causal LM's first position has nothing to attend to but itself (and draws the
            # attention of every later one): the words start after BOS (else EOS), as BPC's do;
            # what follows the words is never seen by them.
            self.prefix = self.prefix or [conditioning_token(tokenizer, model.config.model_type)]
            self.suffix = []
        self.window_tokens = (
            max_positions(tokenizer, model.config) - len(self.prefix) - len(self.suffix)
        )
        if self.window_tokens < 1:
            raise InputError(f"model positions ({max_positions(tokenizer, model.config)}) too few")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.unk_id = tokenizer.unk_token_id

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, tokenizer: str | Path | None = None):
        """Load through :mod:`mlm_dynamics.sources.checks`, so that a broken checkpoint (no
        tokenizer files, truncated or missing weights, ...) is one error line, checked before the
        device is taken."""
        from transformers import AutoModel

        from mlm_dynamics.devices import select_device
        from mlm_dynamics.sources.checks import (
            load_model,
            load_tokenizer,
            read_config,
            tokenizer_dir,
        )

        checkpoint = Path(checkpoint)
        config = read_config(checkpoint)
        directory = tokenizer_dir(checkpoint, tokenizer)
        tok = load_tokenizer(directory, config)
        if any(not state["add_prefix_space"] for state in byte_level_states(tok)):
            # Byte-level BPE (GPT-2 style) takes pre-split words only with a prefix space.
            tok = with_prefix_space(load_tokenizer(directory, config, add_prefix_space=True))
        # The pooler is never used: leaving it out keeps the load check about real weights.
        options = {"add_pooling_layer": False} if config.model_type in POOLER_MODELS else {}
        model, _ = load_model(AutoModel, checkpoint, config=config, **options)
        device = select_device("cuda")
        return cls(tok, model.to(device), device)

    def pooling(self, configured: str) -> str:
        """``activations.pooling`` for this model (:func:`resolve_pooling`)."""
        return resolve_pooling(configured, self.causal)

    @property
    def n_hidden_states(self) -> int:
        return self.model.config.num_hidden_layers + 1

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    # ------------------------------------------------------------ planning

    def plan(self, sentences: Sequence[Sequence[str]]) -> WindowPlan:
        """Tokenise all sentences at once and cut those too long for the model into windows."""
        word_counts = np.array([len(words) for words in sentences], dtype=np.int64)
        truncated = np.zeros(len(sentences), dtype=np.int64)
        coverage = {name: np.zeros(len(sentences), dtype=np.int64) for name in COVERAGE_FIELDS}
        windows: list[Window] = []
        cut_words = windowed = 0
        if not sentences:
            return WindowPlan(windows, word_counts, truncated, cut_words, windowed, **coverage)
        encoding = self.tokenizer(
            [list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False
        )
        row = 0
        for s, words in enumerate(sentences):
            n_words = len(words)
            if n_words == 0:
                continue  # nothing to encode; its (empty) row range stays in the offsets
            ids = np.asarray(encoding["input_ids"][s], dtype=np.int64)
            word_ids = np.asarray(encoding.word_ids(s), dtype=np.int64)
            lengths = np.bincount(word_ids, minlength=n_words)
            self._count_coverage(s, ids, word_ids, lengths, coverage)
            if len(ids) <= self.window_tokens and (lengths > 0).all():
                windows.append(Window(ids, row + word_ids))  # the common case: one window
            else:
                n_windows = len(windows)
                cut, extra = self._cut_windows(ids, lengths, row, windows)
                cut_words += cut
                windowed += len(windows) - n_windows > 1
                truncated[s] = extra
            row += n_words
        return WindowPlan(windows, word_counts, truncated, cut_words, int(windowed), **coverage)

    def _count_coverage(self, s, ids, word_ids, lengths, coverage) -> None:
        """Sentence ``s``'s subwords, words holding the unknown token and unknown subwords, into
        ``coverage``. A word the tokenizer drops entirely is read as one unknown token (see
        ``_cut_windows``) and counts so; a tokenizer without an unknown token counts none."""
        unknown = np.zeros(len(lengths))
        if self.unk_id is not None:
            unknown = np.bincount(word_ids, weights=ids == self.unk_id, minlength=len(lengths))
        dropped = lengths == 0
        coverage["subword_counts"][s] = len(ids) + dropped.sum()
        coverage["unk_word_counts"][s] = ((unknown > 0) | dropped).sum()
        coverage["unk_subword_counts"][s] = int(unknown.sum()) + dropped.sum()

    def _cut_windows(self, ids, lengths, row, windows) -> tuple[int, int]:
        """Greedy windows of whole words; returns (words cut short, words needing care)."""
        starts = np.concatenate([[0], np.cumsum(lengths)])
        pieces = []
        flagged = np.zeros(len(lengths), dtype=bool)
        for w in range(len(lengths)):
            piece = ids[starts[w] : starts[w + 1]]
            if len(piece) == 0:
                # A word the tokenizer drops entirely (e.g. a lone zero-width character) still
                # needs a vector: it is read as the unknown token.
                piece = np.array([self.unk_id], dtype=np.int64)
            if len(piece) > self.window_tokens:
                piece = piece[: self.window_tokens]
                flagged[w] = True
            pieces.append(piece)
        cut = int(flagged.sum())
        first_window = len(windows)
        current: list[int] = []
        size = 0
        for w, piece in enumerate(pieces + [None]):
            if piece is None or (current and size + len(piece) > self.window_tokens):
                windows.append(
                    Window(
                        np.concatenate([pieces[i] for i in current]),
                        np.concatenate(
                            [np.full(len(pieces[i]), row + i, dtype=np.int64) for i in current]
                        ),
                    )
                )
                if len(windows) - 1 > first_window:
                    flagged[current] = True
                current, size = [], 0
            if piece is not None:
                current.append(w)
                size += len(piece)
        return cut, int(flagged.sum())

    # ------------------------------------------------------------ encoding

    def encode(
        self,
        plan: WindowPlan,
        out: Sequence[np.ndarray],
        *,
        pooling: str,
        batch_tokens: int,
        progress: bool = False,
    ) -> dict[str, float]:
        """Fill ``out[layer][word]`` for every word of the plan; returns throughput figures."""
        import torch
        from tqdm import tqdm

        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}")
        if self.device.type == "cpu":
            batch_tokens = min(batch_tokens, CPU_BATCH_TOKENS)
        windows = plan.windows
        n_special = len(self.prefix) + len(self.suffix)
        lengths = np.array([len(w.token_ids) + n_special for w in windows], dtype=np.int64)
        # Longest first: a batch too large for the device fails at once, not at the end.
        order = np.argsort(-lengths, kind="stable")
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        bar = tqdm(total=len(windows), unit="window", file=sys.stderr, disable=not progress)
        start = time.perf_counter()
        position = 0
        with torch.inference_mode(), autocast:
            while position < len(order):
                width = int(lengths[order[position]])
                size = max(1, batch_tokens // width)
                batch = [windows[i] for i in order[position : position + size]]
                self._encode_batch(batch, width, out, pooling)
                position += len(batch)
                bar.update(len(batch))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        bar.close()
        seconds = time.perf_counter() - start
        tokens = int(lengths.sum())
        return {
            "windows": len(windows),
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else float("nan"),
        }

    def _encode_batch(self, batch: list[Window], width: int, out, pooling: str) -> None:
        import torch

        n_prefix = len(self.prefix)
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(batch), width), dtype=np.int64)
        positions, rows = [], []
        for i, window in enumerate(batch):
            n = len(window.token_ids)
            input_ids[i, :n_prefix] = self.prefix
            input_ids[i, n_prefix : n_prefix + n] = window.token_ids
            input_ids[i, n_prefix + n : n_prefix + n + len(self.suffix)] = self.suffix
            attention[i, : n + len(self.prefix) + len(self.suffix)] = 1
            positions.append(i * width + n_prefix + np.arange(n))
            rows.append(window.word_rows)
        positions = np.concatenate(positions)
        rows = np.concatenate(rows)

        # Word rows are non-decreasing within a window and disjoint between windows, so the
        # first (last) occurrence of a row is the word's first (last) subword.
        words, first = np.unique(rows, return_index=True)
        if pooling == "first":
            positions = positions[first]
        elif pooling == "last":
            last = len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1]
            positions = positions[last]
        index = torch.from_numpy(positions).to(self.device)

        hidden_states = self.model(
            input_ids=torch.from_numpy(input_ids).to(self.device),
            attention_mask=torch.from_numpy(attention).to(self.device),
            output_hidden_states=True,
        ).hidden_states
        # fp32 per layer: under bf16 autocast the embeddings and the layers differ in dtype
        selected = torch.stack(
            [h.reshape(-1, h.shape[-1]).index_select(0, index).float() for h in hidden_states]
        )  # (layers, tokens or words, hidden)
        if pooling == "mean":
            local = torch.from_numpy(np.searchsorted(words, rows)).to(self.device)
            counts = torch.bincount(local, minlength=len(words)).to(selected.dtype)
            sums = selected.new_zeros((selected.shape[0], len(words), selected.shape[2]))
            selected = sums.index_add_(1, local, selected) / counts[None, :, None]
        pooled = selected.cpu().numpy()
        for layer, array in enumerate(out):
            array[words] = pooled[layer]

    def extract(
        self,
        sentences: Sequence[Sequence[str]],
        *,
        pooling: str,
        batch_tokens: int,
    ) -> tuple[np.ndarray, WindowPlan]:
        """In-memory word vectors, (hidden states, words, hidden) float32, and the window plan."""
        plan = self.plan(sentences)
        out = np.zeros((self.n_hidden_states, plan.n_words, self.hidden_size), dtype=np.float32)
        self.encode(plan, out, pooling=pooling, batch_tokens=batch_tokens)
        return out, plan


# ---------------------------------------------------------------- model geometry


def resolve_pooling(configured: str, causal: bool | None) -> str:
    """``activations.pooling`` for a model of a kind: ``auto`` is the last subword for a causal
    LM (the only one that has read the whole word) and the mean of the subwords for a masked
    one; it stays ``auto`` where the kind is not known (None) until the checkpoint is read."""
    if configured != AUTO_POOLING or causal is None:
        return configured
    return "last" if causal else "mean"


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a sentence (``<s>`` and ``</s>`` for XLM-R)."""
    encoding = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = encoding["input_ids"][0], encoding.word_ids(0)
    word_positions = [i for i, w in enumerate(word_ids) if w is not None]
    return list(ids[: word_positions[0]]), list(ids[word_positions[-1] + 1 :])


def max_positions(tokenizer, config) -> int:
    """Tokens (special ones included) the model can encode at once: its position table, within
    the tokenizer's limit; the tokenizer's limit alone for a model without one (ALiBi), else
    ``UNLIMITED_CONTEXT``."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit >= 1_000_000:  # unset limits are a huge sentinel
        limit = None
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return int(limit) if limit is not None else UNLIMITED_CONTEXT
    if config.model_type in PADDING_OFFSET_MODELS:
        positions -= config.pad_token_id + 1
    return positions if limit is None else min(positions, int(limit))


def conditioning_token(tokenizer, where: str) -> int:
    """The token a causal LM's first token is conditioned on: BOS, else EOS (a document
    boundary, as in GPT-2's training text); ``where`` names the model in the refusal."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise InputError(f"{where}: no BOS or EOS token to condition the first token on")


def byte_level_states(tokenizer) -> list[dict]:
    """The ByteLevel pre-tokenizer settings of a fast tokenizer (GPT-2, BLOOM, Pythia; inside a
    Sequence too), as the dicts of its JSON; none for other tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.pre_tokenizer is None:
        return []
    state = json.loads(backend.to_str())["pre_tokenizer"]
    parts = state.get("pretokenizers", [state])
    return [part for part in parts if part.get("type") == "ByteLevel"]


def with_prefix_space(tokenizer):
    """``tokenizer`` reading pre-split words as a byte-level BPE model saw them inside text:
    each with its leading space (``Ġword``), not as the start of a text (``word``). The
    ``add_prefix_space`` option sets it for the tokenizer classes that know it (GPT-2, BLOOM,
    GPT-NeoX); a generic fast tokenizer needs its pre-tokenizer set."""
    from tokenizers import Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    parts = state["pre_tokenizer"].get("pretokenizers", [state["pre_tokenizer"]])
    for part in parts:
        if part.get("type") == "ByteLevel":
            part["add_prefix_space"] = True
    rebuilt = Tokenizer.from_str(json.dumps(state))
    tokenizer.backend_tokenizer.pre_tokenizer = rebuilt.pre_tokenizer
    return tokenizer


# ---------------------------------------------------------------- writing the cache


def write_split(
    encoder: Encoder,
    sentences: Sequence[Sequence[str]],
    split_dir: Path,
    pooling: str,
    batch_tokens: int,
) -> None:
    """Encode one split into ``split_dir`` (layerNN.npy float16 memory maps, index.npz)."""
    split_dir.mkdir(parents=True)
    plan = encoder.plan(sentences)
    shape = (plan.n_words, encoder.hidden_size)
    if plan.n_words == 0:
        layers = [np.zeros(shape, dtype=np.float16) for _ in range(encoder.n_hidden_states)]
        stats = {"windows": 0, "tokens": 0, "seconds": 0.0, "tokens_per_second": 0.0}
    else:
        # Memory maps: the layers of a large split never have to fit in memory at once.
        layers = [
            np.lib.format.open_memmap(
                layer_file(split_dir, layer), mode="w+", dtype=np.float16, shape=shape
            )
            for layer in range(encoder.n_hidden_states)
        ]
        stats = encoder.encode(
            plan, layers, pooling=pooling, batch_tokens=batch_tokens, progress=True
        )
    for layer, array in enumerate(layers):
        if isinstance(array, np.memmap):
            array.flush()
        else:
            np.save(layer_file(split_dir, layer), array)
    index = SplitIndex(
        plan.offsets, plan.word_counts, plan.truncated,
        plan.subword_counts, plan.unk_word_counts, plan.unk_subword_counts, pooling,
    )  # fmt: skip
    index.save(split_dir)
    unk_words, unk_subwords = index.unk_shares()
    log(
        f"{split_dir.name}: {len(sentences)} sentences, {plan.n_words} words, "
        f"{stats['windows']} windows, {stats['tokens']} tokens in {stats['seconds']:.1f} s "
        f"({stats['tokens_per_second']:.0f} tokens/s); unknown token in "
        f"{int(index.unk_word_counts.sum())} words ({unk_words:.1%}), "
        f"{int(index.unk_subword_counts.sum())} of {int(index.subword_counts.sum())} subwords "
        f"({unk_subwords:.1%})"
    )
    if plan.windowed_sentences or plan.cut_words:
        log(
            f"{split_dir.name}: {plan.windowed_sentences} sentences longer than the model's "
            f"{encoder.window_tokens} subword positions were split into windows; "
            f"{int(plan.truncated.sum())} words needed a later window or were cut "
            f"({plan.cut_words} single words longer than a window had their subwords cut)"
        )


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Cache one vector per word and layer for every split of a prepared treebank.",
    )
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--treebank", required=True, help="prepared treebank .json.gz")
    parser.add_argument(
        "--pooling", choices=[AUTO_POOLING, *POOLINGS], required=True, help="activations.pooling"
    )
    parser.add_argument("--batch-tokens", type=int, required=True, help="padded tokens per batch")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--out", required=True, help="output directory ({split}/layerNN.npy)")
    args = parser.parse_args(argv)
    if args.batch_tokens < 1:
        raise InputError("--batch-tokens: must be >= 1")

    import torch

    from mlm_dynamics.treebanks import load_prepared

    if args.threads:
        torch.set_num_threads(args.threads)
    splits = load_prepared(args.treebank)
    encoder = Encoder.from_checkpoint(args.checkpoint, args.tokenizer)
    pooling = encoder.pooling(args.pooling)
    kind = "causal LM" if encoder.causal else "encoder"
    log(
        f"model: {args.checkpoint} ({kind}, {encoder.n_hidden_states} hidden states of size "
        f"{encoder.hidden_size}, windows of {encoder.window_tokens} subwords), "
        f"pooling {pooling}, {args.batch_tokens} padded tokens per batch"
    )
    if encoder.device.type == "cpu" and args.batch_tokens > CPU_BATCH_TOKENS:
        log(f"CPU: batches capped at {CPU_BATCH_TOKENS} padded tokens (faster there)")
    with atomic_dir(args.out) as tmp:
        for split, sentences in splits.items():
            words = [sentence.words for sentence in sentences]
            write_split(encoder, words, tmp / split, pooling, args.batch_tokens)
    log(f"wrote {args.out}")
