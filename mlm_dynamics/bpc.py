"""Masked-LM bits per character on held-out text (``bpc``).

A masked LM has no left-to-right likelihood, so a sentence is scored by its pseudo-log-likelihood
(Salazar et al., 2020): every token is masked in turn and the model's log-probability of the true
token at the masked position is summed. BPC is the sum of ``-log2 p`` over all tokens of all
sentences, divided by the number of characters of the raw text: the characters of each line as
read (surrounding whitespace stripped, spaces inside the line counted, no newline).

A sentence with more tokens than the model has positions is cut into consecutive windows, each
wrapped in ``<s> ... </s>`` and scored on its own; the log says how many sentences were windowed.

The masked copies of a sentence (one per token, ``<s>`` and ``</s>`` never masked) are batched
together with other sentences' copies, length-sorted, up to ``--batch-tokens`` padded tokens a
batch. Only the masked positions go through the LM head, so a batch never materialises a
(batch, length, vocabulary) logit tensor.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from mlm_dynamics.errors import InputError


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pick_device():
    """CUDA when there is one; otherwise the CPU, said in the log."""
    import torch

    if torch.cuda.is_available():
        log(f"device: cuda ({torch.cuda.get_device_name(0)})")
        return torch.device("cuda")
    log(f"device: CUDA is not available, running on CPU ({torch.get_num_threads()} threads)")
    return torch.device("cpu")


def load_checkpoint(checkpoint: str | Path, tokenizer: str | Path | None, masked_lm: bool):
    """A Hugging Face-format checkpoint in eval mode, fp32, and its tokenizer."""
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise InputError(f"{checkpoint}: not a checkpoint directory (no config.json)")
    tokenizer_dir = Path(tokenizer) if tokenizer else checkpoint
    loader = AutoModelForMaskedLM if masked_lm else AutoModel
    model = loader.from_pretrained(checkpoint, dtype="float32").eval()
    return model, AutoTokenizer.from_pretrained(tokenizer_dir)


def windows(token_ids: list[int], width: int) -> list[list[int]]:
    """Consecutive pieces of at most ``width`` tokens (one piece when it fits)."""
    return [token_ids[i : i + width] for i in range(0, max(len(token_ids), 1), width)]


@dataclass(frozen=True)
class PseudoLogLikelihood:
    bits: float  # sum of -log2 p(token | rest) over every scored token
    tokens: int
    windowed_sentences: int


def pseudo_log_likelihood(
    model, tokenizer, sentences: list[str], batch_tokens: int = 8192, device=None
) -> PseudoLogLikelihood:
    """Sum of ``-log2 p`` of every token of ``sentences`` with that token masked."""
    import torch

    from mlm_dynamics.extract import max_positions

    device = device or torch.device("cpu")
    model = model.to(device)
    width = max_positions(tokenizer, model.config) - 2
    if width < 1:
        raise InputError(f"model has {width + 2} positions: too few to score a token")
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    pad, mask = tokenizer.pad_token_id, tokenizer.mask_token_id

    sequences = []  # <s> window </s>
    windowed = 0
    for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]:
        pieces = windows(ids, width)
        windowed += len(pieces) > 1
        sequences += [[bos, *piece, eos] for piece in pieces if piece]

    # One masked copy per (sequence, position); copies of similar length share a batch.
    copies = [
        (s, position)
        for s in sorted(range(len(sequences)), key=lambda s: len(sequences[s]))
        for position in range(1, len(sequences[s]) - 1)
    ]
    bits = 0.0
    start = 0
    head = model.lm_head if hasattr(model, "lm_head") else model.cls
    with torch.inference_mode():
        while start < len(copies):
            # Copies are length-sorted, so the last one in a batch sets its padded length.
            end = start + 1
            while end < len(copies) and (
                (end + 1 - start) * len(sequences[copies[end][0]]) <= batch_tokens
            ):
                end += 1
            batch = copies[start:end]
            length = len(sequences[batch[-1][0]])
            input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), length), dtype=torch.long)
            targets = torch.empty(len(batch), dtype=torch.long)
            positions = torch.empty(len(batch), dtype=torch.long)
            for row, (s, position) in enumerate(batch):
                sequence = sequences[s]
                input_ids[row, : len(sequence)] = torch.tensor(sequence)
                attention[row, : len(sequence)] = 1
                targets[row] = sequence[position]
                positions[row] = position
                input_ids[row, position] = mask
            hidden = model.base_model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).last_hidden_state
            rows = torch.arange(len(batch), device=device)
            logits = head(hidden[rows, positions.to(device)]).float()
            log_p = torch.log_softmax(logits, dim=-1)[rows, targets.to(device)]
            bits -= float(log_p.sum()) / math.log(2)
            start = end
    return PseudoLogLikelihood(bits, len(copies), windowed)


def bits_per_character(
    model, tokenizer, sentences: list[str], batch_tokens: int = 8192, device=None
) -> tuple[float, int, PseudoLogLikelihood]:
    """BPC, the number of characters it is divided by, and the pseudo-log-likelihood."""
    characters = sum(len(sentence) for sentence in sentences)
    if characters == 0:
        raise InputError("no text to score")
    pll = pseudo_log_likelihood(model, tokenizer, sentences, batch_tokens, device)
    return pll.bits / characters, characters, pll


def main(command: str, argv: list[str]) -> None:
    import pandas as pd

    from mlm_dynamics.analysis import tidy_table
    from mlm_dynamics.atomic import save_table
    from mlm_dynamics.textio import read_lines

    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--text", required=True, help="held-out text, one sentence a line")
    parser.add_argument("--max-sentences", type=int, default=100)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--model", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--language", required=True)
    parser.add_argument("--out", required=True, help="tidy score table (.parquet)")
    args = parser.parse_args(argv)

    sentences = read_lines(args.text, limit=args.max_sentences)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, tokenizer = load_checkpoint(args.checkpoint, args.tokenizer, masked_lm=True)
    device = pick_device()
    bpc, characters, pll = bits_per_character(
        model, tokenizer, sentences, args.batch_tokens, device
    )
    log(
        f"{args.model} step {args.step} {args.language}: {len(sentences)} sentences, "
        f"{characters} characters, {pll.tokens} tokens, {pll.windowed_sentences} sentences "
        f"longer than the model's positions scored in windows; BPC {bpc:.4f}"
    )
    row = dict(model=args.model, step=args.step, task="bpc", layer=-1, train_lang="")
    row.update(test_lang=args.language, seed=0)
    table = pd.DataFrame(
        [
            {**row, "metric": "bpc", "value": bpc, "n": characters},
            {**row, "metric": "pll_bits", "value": pll.bits, "n": pll.tokens},
        ]
    )
    save_table(args.out, tidy_table(table))
