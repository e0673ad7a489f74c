"""Tiny causal LMs for the tests: a byte-level BPE trained offline on the bundled text, and
random GPT-2 and BLOOM models sized to it."""

from __future__ import annotations

import copy

import torch

from mlm_dynamics.textio import read_lines

END, START = "<|endoftext|>", "<s>"
TEXT = "resources/text/{}.txt.gz"


def train_byte_bpe():
    """A byte-level BPE (a ``tokenizers.Tokenizer``) trained offline on the bundled text, with two
    special tokens so that BOS and EOS can differ."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=[END, START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    texts = [
        line for lang in ("en", "de") for line in read_lines(f"resources/text/{lang}.txt.gz", 200)
    ]
    bpe.train_from_iterator(texts, trainer)
    return bpe


def causal_tokenizer(bpe, **specials):
    """The BPE as a transformers tokenizer; ``specials``: e.g. bos_token=START."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(bpe), **specials)


def tiny_causal(kind: str, vocab_size: int, positions: int = 512, seed: int = 0):
    """A random 2-layer GPT-2 (learned positions) or BLOOM (ALiBi, no positions). A wide
    initialisation makes predictions depend on the context, so that a token scored with the
    wrong context would show."""
    torch.manual_seed(seed)
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            n_layer=2, n_head=2, n_embd=32, n_positions=positions, vocab_size=vocab_size,
            initializer_range=0.3, bos_token_id=1, eos_token_id=0,
        )  # fmt: skip
        return GPT2LMHeadModel(config).eval()
    from transformers import BloomConfig, BloomForCausalLM

    config = BloomConfig(
        vocab_size=vocab_size, hidden_size=32, n_layer=2, n_head=2, initializer_range=0.3,
        bos_token_id=1, eos_token_id=0,
    )  # fmt: skip
    return BloomForCausalLM(config).eval()
