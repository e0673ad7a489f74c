"""Bits per character: the batched pseudo-log-likelihood, masked-LM and causal-LM estimates
against plain one-sequence-at-a-time references, and the command's rows with their bootstrap
intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from causal_models import END, START, causal_tokenizer, tiny_causal, train_byte_bpe

from mlm_dynamics import bpc, stats
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.activations import extract
from mlm_dynamics.analysis.tables import COLUMNS
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError
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
    # the schema's estimate, auto: pll for a masked LM; no pooling (no word vectors)
    assert sorted(table.metric) == ["bpc_pll", "pll_bits"] and set(table.pooling) == {""}
    row = table.set_index("metric").loc["bpc_pll"]
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
    assert sorted(table.index) == ["bpc_mlm", "bpc_pll", "pll_bits"]
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


# ---------------------------------------------------------------- causal LMs


@pytest.fixture(scope="module")
def byte_bpe():
    return train_byte_bpe()


def causal_pair(byte_bpe, kind: str, context: int | None = None):
    """(model, tokenizer, the id a sentence is conditioned on): GPT-2 with BOS and EOS (BOS
    conditions), BLOOM with EOS only (EOS conditions); ``context`` tokens a window reads."""
    if kind == "gpt2":
        tokenizer = causal_tokenizer(byte_bpe, bos_token=START, eos_token=END)
        model = tiny_causal(kind, len(tokenizer), positions=context or 512)
        return model, tokenizer, tokenizer.convert_tokens_to_ids(START)
    tokenizer = causal_tokenizer(byte_bpe, eos_token=END)
    if context:
        tokenizer.model_max_length = context  # BLOOM has no positions: the tokenizer's limit
    return tiny_causal(kind, len(tokenizer)), tokenizer, tokenizer.convert_tokens_to_ids(END)


def log_p_of_next(model, ids: list[int]) -> torch.Tensor:
    """One unbatched forward pass: row i is log p(next id | ids[: i + 1]), in float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def reference_causal_bits(model, tokenizer, sentences, first: int) -> np.ndarray:
    """Plain loop: per sentence, one forward pass over [first] + tokens."""
    per_sentence = []
    for sentence in sentences:
        ids = [first, *tokenizer(sentence, add_special_tokens=False)["input_ids"]]
        log_p = log_p_of_next(model, ids)
        per_sentence.append(-sum(float(log_p[t - 1, ids[t]]) for t in range(1, len(ids))))
    return np.array(per_sentence) / math.log(2)


def reference_sliding_bits(model, tokenizer, sentences, first: int, width: int):
    """The sliding-window perplexity loop (Hugging Face's recipe, one window at a time): windows
    begin every width // 2 ids, each scores its ids after the previous window's end. Returns the
    bits and the number of scored tokens per sentence."""
    stride = width // 2
    bits, counts = [], []
    for sentence in sentences:
        ids = [first, *tokenizer(sentence, add_special_tokens=False)["input_ids"]]
        total, count, previous_end = 0.0, 0, 0
        for begin in range(0, len(ids), stride):
            end = min(begin + width, len(ids))
            new = end - previous_end  # the last `new` ids of the window are scored
            window = ids[begin:end]
            log_p = log_p_of_next(model, window)
            for j in range(max(1, len(window) - new), len(window)):
                total -= float(log_p[j - 1, window[j]])
                count += 1
            previous_end = end
            if end == len(ids):
                break
        bits.append(total / math.log(2))
        counts.append(count)
    return np.array(bits), np.array(counts)


def token_counts(tokenizer, sentences) -> np.ndarray:
    return np.array([len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences])


def test_sliding_windows_score_every_token_once_with_the_most_context():
    for width in (2, 3, 4, 7, 16):
        stride = width // 2
        for length in range(1, 60):
            spans = bpc.sliding_windows(length, width, stride)
            scored = [i for _, end, first in spans for i in range(first, end)]
            assert scored == list(range(1, length))  # the conditioning token is never scored
            for k, (begin, end, first) in enumerate(spans):
                assert end - begin <= width and begin < first
                if k:  # after the first window, at least width - stride tokens of context
                    assert first - begin >= width - stride
                for i in range(first, end):  # no window reads more of i's left context
                    assert all(b >= begin for b, e, _ in spans if b < i < e)


@pytest.mark.parametrize("kind", ["gpt2", "bloom"])
def test_batched_causal_bits_match_one_sentence_at_a_time(byte_bpe, kind):
    model, tokenizer, first = causal_pair(byte_bpe, kind)
    sentences = read_lines(HELDOUT.format("en"), 8)
    expected = reference_causal_bits(model, tokenizer, sentences, first)
    # A small batch budget: several batches, sentences of different lengths padded together.
    ar = bpc.autoregressive_bits(model, tokenizer, sentences, batch_tokens=150)
    assert ar.windowed_sentences == 0
    np.testing.assert_array_equal(ar.sentence_tokens, token_counts(tokenizer, sentences))
    np.testing.assert_array_equal(ar.scored_tokens, ar.sentence_tokens)
    np.testing.assert_allclose(ar.sentence_bits, expected, rtol=1e-6)
    characters = bpc.sentence_characters(sentences).sum()
    assert ar.bits / characters == pytest.approx(expected.sum() / characters, rel=1e-6)


@pytest.mark.parametrize("kind", ["gpt2", "bloom"])
def test_long_sentences_are_scored_in_sliding_windows(byte_bpe, kind):
    model, tokenizer, first = causal_pair(byte_bpe, kind, context=16)
    sentences = read_lines(HELDOUT.format("de"), 4)
    ar = bpc.autoregressive_bits(model, tokenizer, sentences, batch_tokens=100)
    assert (ar.width, ar.stride) == (16, 8)
    assert ar.windowed_sentences > 0
    tokens = token_counts(tokenizer, sentences)
    np.testing.assert_array_equal(ar.scored_tokens, tokens)  # every token exactly once
    assert ar.scored_tokens.sum() == tokens.sum()
    bits, counts = reference_sliding_bits(model, tokenizer, sentences, first, width=16)
    np.testing.assert_array_equal(counts, tokens)
    np.testing.assert_allclose(ar.sentence_bits, bits, rtol=1e-6)
    if kind == "bloom":  # ALiBi reads any length: the windows' shorter context shows
        whole = reference_causal_bits(model, tokenizer, sentences, first)
        long = tokens >= 16
        assert not np.allclose(ar.sentence_bits[long], whole[long], rtol=1e-4)


def test_the_first_token_is_conditioned_on_bos_else_eos(byte_bpe):
    both = causal_tokenizer(byte_bpe, bos_token=START, eos_token=END)
    assert extract.conditioning_token(both, "ckpt") == both.convert_tokens_to_ids(START)
    eos_only = causal_tokenizer(byte_bpe, eos_token=END)
    assert extract.conditioning_token(eos_only, "ckpt") == eos_only.convert_tokens_to_ids(END)
    with pytest.raises(InputError) as error:
        extract.conditioning_token(causal_tokenizer(byte_bpe), "ckpt")
    assert str(error.value) == "ckpt: no BOS or EOS token to condition the first token on"


def save_causal(byte_bpe, directory, **specials):
    tokenizer = causal_tokenizer(byte_bpe, **specials)
    tiny_causal("gpt2", len(tokenizer), positions=32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def causal_checkpoint(byte_bpe, tmp_path_factory):
    directory = tmp_path_factory.mktemp("bpc") / "gpt2"
    return save_causal(byte_bpe, directory, bos_token=START, eos_token=END)


@pytest.mark.parametrize("estimate", ["auto", "ar"])
def test_command_causal_estimate(causal_checkpoint, tmp_path, estimate):
    out = tmp_path / "causal.parquet"
    assert run_bpc(causal_checkpoint, out, "--estimate", estimate) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS)
    assert sorted(table.metric) == ["ar_bits", "bpc_ar"]
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()
    assert (table.ci_low < table.ci_high).all()
    table = table.set_index("metric")
    row = table.loc["bpc_ar"]
    assert (row.model, row.step, row.task, row.layer, row.test_lang) == ("tiny", 7, "bpc", -1, "de")
    assert row.split == "test" and row.train_lang == "" and row.seed == 0
    sentences = read_lines(HELDOUT.format("de"), 5)
    characters = bpc.sentence_characters(sentences)
    assert row.n == characters.sum()
    assert row.value == pytest.approx(table.loc["ar_bits", "value"] / row.n)

    # The same bits as the function, resampled by the key (seed 3, de, heldout) as pll's are.
    model, tokenizer, resolved = bpc.load_checkpoint(causal_checkpoint, None, estimate)
    assert resolved == "ar"
    ar = bpc.autoregressive_bits(model, tokenizer, sentences, batch_tokens=BATCH_TOKENS)
    assert table.loc["ar_bits", "n"] == ar.tokens
    assert row.value == pytest.approx(ar.bits / characters.sum(), rel=1e-6)
    weights = stats.resample_counts(5, 200, stats.resample_key(3, "de", "heldout"))
    ratios = (weights @ ar.sentence_bits) / (weights @ characters)
    assert (row.ci_low, row.ci_high) == pytest.approx(
        tuple(np.quantile(ratios, [0.025, 0.975])), rel=1e-5
    )


def assert_one_error_line(capsys, message: str) -> None:
    assert capsys.readouterr().err.splitlines() == [f"error: {message}"]


@pytest.mark.parametrize(
    "model, estimate, message",
    [
        (
            "causal_checkpoint",
            "pll",
            "gpt2 is a causal LM: bpc.estimate ar (or auto) fits it, not pll",
        ),
        (
            "causal_checkpoint",
            "both",
            "gpt2 is a causal LM: bpc.estimate ar (or auto) fits it, not both",
        ),
        (
            "checkpoint",
            "ar",
            "xlm-roberta is a masked LM: bpc.estimate pll, mlm, both (or auto) fits it, not ar",
        ),
    ],
    ids=["causal-pll", "causal-both", "masked-causal"],
)
def test_an_estimate_of_the_other_kind_is_one_line_error(
    request, model, estimate, message, tmp_path, capsys
):
    directory = request.getfixturevalue(model)
    capsys.readouterr()  # the progress bar of saving it, where this test made it
    out = tmp_path / "x.parquet"
    assert run_bpc(directory, out, "--estimate", estimate) == 2
    assert_one_error_line(capsys, f"tiny step 7: {directory}: {message}")
    assert not out.exists()


def test_causal_without_bos_or_eos_is_one_line_error(byte_bpe, tmp_path, capsys):
    directory = save_causal(byte_bpe, tmp_path / "no-specials")
    capsys.readouterr()  # saving's progress bar
    out = tmp_path / "x.parquet"
    assert run_bpc(directory, out, "--estimate", "ar") == 2
    assert_one_error_line(
        capsys, f"tiny step 7: {directory}: no BOS or EOS token to condition the first token on"
    )
    assert not out.exists()
