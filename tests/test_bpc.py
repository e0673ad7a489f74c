"""Bits per character: the batched pseudo-log-likelihood and masked-LM estimates against plain
one-sequence-at-a-time references, and the command's rows with their bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mlm_dynamics import bpc, stats
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.analysis.tables import COLUMNS
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.pretrain import train_tokenizer
from mlm_dynamics.textio import read_lines

HELDOUT = "resources/heldout/{}.txt.gz"
BATCH_TOKENS = schema_default("bpc.batch_tokens")
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


def reference_sentence_bits(model, tokenizer, sentences, width):
    """Plain loop: one sequence, one masked position, one full forward pass at a time."""
    per_sentence = []
    for sentence in sentences:
        bits = 0.0
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), width):
            sequence = [tokenizer.cls_token_id, *ids[start : start + width], tokenizer.sep_token_id]
            for i in range(1, len(sequence) - 1):
                masked = list(sequence)
                masked[i] = tokenizer.mask_token_id
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([masked])).logits[0, i]
                bits -= float(torch.log_softmax(logits, -1)[sequence[i]]) / math.log(2)
        per_sentence.append(bits)
    return np.array(per_sentence)


def reference_bits(model, tokenizer, sentences, width):
    return float(reference_sentence_bits(model, tokenizer, sentences, width).sum())


def reference_masked_bits(model, tokenizer, sentences, width, masks):
    """Plain loop for one masking: per sentence and window, one forward pass with every chosen
    token of the window masked at once; (bits, masked tokens) summed per sentence."""
    bits, counts = [], []
    for sentence, mask in zip(sentences, masks, strict=True):
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        total = 0.0
        for start in range(0, len(ids), width):
            sequence = [tokenizer.cls_token_id, *ids[start : start + width], tokenizer.sep_token_id]
            chosen = [1 + t - start for t in mask if start <= t < start + width]
            if not chosen:
                continue
            masked = list(sequence)
            for i in chosen:
                masked[i] = tokenizer.mask_token_id
            with torch.no_grad():
                log_p = torch.log_softmax(model(input_ids=torch.tensor([masked])).logits[0], -1)
            total -= sum(float(log_p[i, sequence[i]]) for i in chosen) / math.log(2)
        bits.append(total)
        counts.append(len(mask))
    return np.array(bits), np.array(counts)


def test_batched_pll_matches_one_at_a_time_reference(tokenizer):
    # 16 positions: several held-out sentences need more than one window.
    model = tiny_model(tokenizer, positions=16)
    sentences = read_lines(HELDOUT.format("en"), 5)
    expected = reference_bits(model, tokenizer, sentences, width=14)
    # A small batch budget forces copies of one sentence across batches, and padding.
    pll = bpc.pseudo_log_likelihood(model, tokenizer, sentences, batch_tokens=200)
    assert pll.windowed_sentences > 0
    assert pll.bits == pytest.approx(expected, rel=1e-4)
    per_sentence = reference_sentence_bits(model, tokenizer, sentences, width=14)
    np.testing.assert_allclose(pll.sentence_bits, per_sentence, rtol=1e-4)
    n_tokens = sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences)
    assert pll.tokens == n_tokens
    # A random model predicts roughly uniformly: about log2(vocabulary) bits a token.
    assert 0.8 * math.log2(len(tokenizer)) < pll.bits / pll.tokens < 1.2 * math.log2(len(tokenizer))
    value, characters, _ = bpc.bits_per_character(model, tokenizer, sentences, batch_tokens=200)
    assert characters == sum(len(s) for s in sentences)
    assert value == pytest.approx(expected / characters, rel=1e-4)


def test_masks_are_reproducible_and_at_least_one_per_sentence():
    tokens = np.array([1, 3, 40, 0, 7])
    masks = bpc.mlm_masks(tokens, 0.15, masking=0)
    again = bpc.mlm_masks(tokens, 0.15, masking=0)
    assert all((a == b).all() for a, b in zip(masks, again, strict=True))
    other = bpc.mlm_masks(tokens, 0.15, masking=1)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(masks, other, strict=True))
    # A vanishing probability still masks exactly one token per sentence (none when it is empty).
    assert [len(m) for m in bpc.mlm_masks(tokens, 1e-12, masking=0)] == [1, 1, 1, 0, 1]
    # Probability 1 masks every token.
    assert [m.tolist() for m in bpc.mlm_masks(tokens, 1.0, 3)] == [list(range(n)) for n in tokens]


def test_masked_estimate_matches_one_at_a_time_reference(tokenizer):
    model = tiny_model(tokenizer, positions=16)  # windows again
    sentences = read_lines(HELDOUT.format("en"), 5)
    characters = bpc.sentence_characters(sentences)
    tokens = np.array([len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences])
    mlm = bpc.masked_lm_bits(
        model, tokenizer, sentences, maskings=3, probability=0.15, batch_tokens=100
    )
    assert mlm.windowed_sentences > 0
    np.testing.assert_array_equal(mlm.sentence_tokens, tokens)
    expected = []
    for k in range(3):
        masks = bpc.mlm_masks(tokens, 0.15, k)
        bits, counts = reference_masked_bits(model, tokenizer, sentences, 14, masks)
        np.testing.assert_array_equal(mlm.masked_tokens[:, k], counts)
        np.testing.assert_allclose(mlm.masked_bits[:, k], bits, rtol=1e-4)
        expected.append(bits.sum() / counts.sum() * tokens.sum() / characters.sum())
    point = bpc.mlm_resampled(np.ones((1, len(sentences))), mlm, characters)[0]
    assert point == pytest.approx(np.mean(expected), rel=1e-4)


def test_masking_every_token_scores_all_bits_at_once(tokenizer):
    # With p = 1 every token of a window is masked together: bits_masked / masked * tokens is
    # the summed bits, so bpc_mlm = bits / characters, for any number of maskings.
    model = tiny_model(tokenizer, positions=16)
    sentences = read_lines(HELDOUT.format("de"), 3)
    characters = bpc.sentence_characters(sentences)
    tokens = np.array([len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences])
    bits, _ = reference_masked_bits(model, tokenizer, sentences, 14, [range(n) for n in tokens])
    mlm = bpc.masked_lm_bits(
        model, tokenizer, sentences, maskings=2, probability=1.0, batch_tokens=BATCH_TOKENS
    )
    np.testing.assert_allclose(mlm.masked_bits, np.stack([bits, bits], axis=1), rtol=1e-4)
    point = bpc.mlm_resampled(np.ones((1, 3)), mlm, characters)[0]
    assert point == pytest.approx(bits.sum() / characters.sum(), rel=1e-4)


def test_training_lowers_bpc(tokenizer):
    model = tiny_model(tokenizer, positions=32, seed=1)
    sentences = read_lines(HELDOUT.format("en"), 20)
    before = bpc.bits_per_character(model, tokenizer, sentences, batch_tokens=BATCH_TOKENS)[0]
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
    after = bpc.bits_per_character(model, tokenizer, sentences, batch_tokens=BATCH_TOKENS)[0]
    assert after < 0.9 * before


STATS = ["--resamples", "200", "--confidence", "0.95", "--bootstrap-seed", "3"]


def run_bpc(checkpoint, out, *extra, min_sentences=5):
    """The command with the schema's bpc settings; ``extra`` options override them."""
    argv = ["bpc", "--checkpoint", str(checkpoint), "--text", HELDOUT.format("de")]
    for key in ("estimate", "maskings", "mask_probability", "batch_tokens"):
        argv += [f"--{key.replace('_', '-')}", str(schema_default(f"bpc.{key}"))]
    argv += ["--max-sentences", "5", "--model", "tiny", "--step", "7", "--language", "de"]
    argv += [*STATS, "--min-sentences", str(min_sentences), *extra, "--out", str(out)]
    return cli(argv)


@pytest.fixture(scope="module")
def checkpoint(tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("bpc") / "ckpt"
    tiny_model(tokenizer, positions=32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_command_writes_tidy_rows_with_intervals(tokenizer, checkpoint, tmp_path):
    out = tmp_path / "bpc" / "de.parquet"
    assert run_bpc(checkpoint, out) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    assert sorted(table.metric) == ["bpc", "pll_bits"]  # the schema's estimate: pll
    row = table.set_index("metric").loc["bpc"]
    assert (row.model, row.step, row.task, row.layer, row.test_lang) == ("tiny", 7, "bpc", -1, "de")
    assert row.split == "test" and row.train_lang == "" and row.seed == 0
    sentences = read_lines(HELDOUT.format("de"), 5)
    characters = np.array([len(s) for s in sentences])
    assert row.n == characters.sum()
    bits = table.set_index("metric").loc["pll_bits", "value"]
    assert row.value == pytest.approx(bits / row.n)
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert (table.ci_low < table.ci_high).all()

    # The interval: sentences resampled by the key (seed 3, de, heldout), ratio of the sums.
    model = bpc.load_checkpoint(checkpoint, None)[0]
    pll = bpc.pseudo_log_likelihood(model, tokenizer, sentences, batch_tokens=BATCH_TOKENS)
    weights = stats.resample_counts(5, 200, stats.resample_key(3, "de", "heldout"))
    ratios = (weights @ pll.sentence_bits) / (weights @ characters)
    low, high = np.quantile(ratios, [0.025, 0.975])
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=1e-5)
    total = table.set_index("metric").loc["pll_bits"]
    assert (total.ci_low, total.ci_high) == pytest.approx(
        tuple(np.quantile(weights @ pll.sentence_bits, [0.025, 0.975])), rel=1e-5
    )


def test_command_both_estimates(tokenizer, checkpoint, tmp_path):
    out = tmp_path / "both.parquet"
    extra = ["--estimate", "both", "--maskings", "2", "--mask-probability", "0.3"]
    assert run_bpc(checkpoint, out, *extra) == 0
    table = pd.read_parquet(out).set_index("metric")
    assert sorted(table.index) == ["bpc", "bpc_mlm", "pll_bits"]
    sentences = read_lines(HELDOUT.format("de"), 5)
    characters = bpc.sentence_characters(sentences)
    model = bpc.load_checkpoint(checkpoint, None)[0]
    mlm = bpc.masked_lm_bits(
        model, tokenizer, sentences, maskings=2, probability=0.3, batch_tokens=BATCH_TOKENS
    )
    row = table.loc["bpc_mlm"]
    assert row.value == pytest.approx(bpc.mlm_resampled(np.ones((1, 5)), mlm, characters)[0])
    weights = stats.resample_counts(5, 200, stats.resample_key(3, "de", "heldout"))
    low, high = np.quantile(bpc.mlm_resampled(weights, mlm, characters), [0.025, 0.975])
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=1e-5)
    assert row.ci_low <= row.value <= row.ci_high and row.split == "test"
    assert row.n == characters.sum()
    only = tmp_path / "mlm.parquet"
    assert run_bpc(checkpoint, only, "--estimate", "mlm", "--maskings", "2") == 0
    assert pd.read_parquet(only).metric.tolist() == ["bpc_mlm"]


def test_too_few_sentences_is_one_line_error(checkpoint, tmp_path, capsys):
    out = tmp_path / "x.parquet"
    assert run_bpc(checkpoint, out, min_sentences=6) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 sentences, fewer than the 6" in err and "de.txt.gz" in err
    assert not out.exists()


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    assert run_bpc(tmp_path / "nothing", tmp_path / "x.parquet") == 2
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
