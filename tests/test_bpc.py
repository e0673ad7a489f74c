"""Bits per character: the batched pseudo-log-likelihood against a one-token-at-a-time reference."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mlm_dynamics import bpc
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis import COLUMNS
from mlm_dynamics.pretrain import train_tokenizer
from mlm_dynamics.textio import read_lines

HELDOUT = "resources/heldout/{}.txt.gz"
TEXT = "resources/text/{}.txt.gz"


@pytest.fixture(scope="module")
def tokenizer():
    texts = [line for lang in ("en", "de") for line in read_lines(TEXT.format(lang), 200)]
    return train_tokenizer(texts, 1000)


def tiny_model(tokenizer, positions: int, seed: int = 0):
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=positions + 2,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return XLMRobertaForMaskedLM(config).eval()


def reference_bits(model, tokenizer, sentences, width):
    """Plain loop: one sequence, one masked position, one full forward pass at a time."""
    bits = 0.0
    for sentence in sentences:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), width):
            sequence = [tokenizer.cls_token_id, *ids[start : start + width], tokenizer.sep_token_id]
            for i in range(1, len(sequence) - 1):
                masked = list(sequence)
                masked[i] = tokenizer.mask_token_id
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([masked])).logits[0, i]
                bits -= float(torch.log_softmax(logits, -1)[sequence[i]]) / math.log(2)
    return bits


def test_batched_pll_matches_one_at_a_time_reference(tokenizer):
    # 16 positions: several held-out sentences need more than one window.
    model = tiny_model(tokenizer, positions=16)
    sentences = read_lines(HELDOUT.format("en"), 5)
    expected = reference_bits(model, tokenizer, sentences, width=14)
    # A small batch budget forces copies of one sentence across batches, and padding.
    pll = bpc.pseudo_log_likelihood(model, tokenizer, sentences, batch_tokens=200)
    assert pll.windowed_sentences > 0
    assert pll.bits == pytest.approx(expected, rel=1e-4)
    n_tokens = sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences)
    assert pll.tokens == n_tokens
    # A random model predicts roughly uniformly: about log2(vocabulary) bits a token.
    assert 0.8 * math.log2(len(tokenizer)) < pll.bits / pll.tokens < 1.2 * math.log2(len(tokenizer))
    value, characters, _ = bpc.bits_per_character(model, tokenizer, sentences, batch_tokens=200)
    assert characters == sum(len(s) for s in sentences)
    assert value == pytest.approx(expected / characters, rel=1e-4)


def test_training_lowers_bpc(tokenizer):
    model = tiny_model(tokenizer, positions=32, seed=1)
    sentences = read_lines(HELDOUT.format("en"), 20)
    before = bpc.bits_per_character(model, tokenizer, sentences)[0]
    # A few MLM updates on the bundled English text: the unigram distribution alone helps.
    texts = read_lines(TEXT.format("en"), 32)
    batch = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(15):
        chosen = torch.rand(batch["input_ids"].shape, generator=generator) < 0.15
        chosen &= batch["attention_mask"].bool()
        labels = torch.where(chosen, batch["input_ids"], -100)
        inputs = torch.where(chosen, tokenizer.mask_token_id, batch["input_ids"])
        loss = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    after = bpc.bits_per_character(model, tokenizer, sentences)[0]
    assert after < 0.9 * before


def test_command_writes_one_tidy_row(tokenizer, tmp_path):
    model = tiny_model(tokenizer, positions=32)
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "bpc" / "de.parquet"
    argv = ["bpc", "--checkpoint", str(tmp_path / "ckpt"), "--text", HELDOUT.format("de")]
    argv += ["--max-sentences", "5", "--model", "tiny", "--step", "7", "--language", "de"]
    assert cli([*argv, "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    row = table.set_index("metric").loc["bpc"]
    assert (row.model, row.step, row.task, row.layer, row.test_lang) == ("tiny", 7, "bpc", -1, "de")
    assert row.n == sum(len(s) for s in read_lines(HELDOUT.format("de"), 5))
    bits = table.set_index("metric").loc["pll_bits", "value"]
    assert row.value == pytest.approx(bits / row.n)


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    argv = ["bpc", "--checkpoint", str(tmp_path / "nothing"), "--text", HELDOUT.format("en")]
    argv += ["--model", "m", "--step", "0", "--language", "en"]
    argv += ["--out", str(tmp_path / "x.parquet")]
    assert cli(argv) == 2
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
