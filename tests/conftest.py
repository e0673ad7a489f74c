"""Shared fixtures: a tiny real Hugging Face checkpoint (tokenizer + random XLM-R)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory: SentencePiece tokenizer trained on the bundled text and a seeded,
    randomly initialised ``XLMRobertaForMaskedLM`` (2 layers, hidden 32, 32 positions usable)
    saved as safetensors; short positions make long UD sentences need windows."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from mlm_dynamics.pretrain import train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [
        line
        for path in sorted((REPO / "resources" / "text").glob("*.txt.gz"))
        for line in read_lines(path, limit=100)
    ]
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=34,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(config)
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
