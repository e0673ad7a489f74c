"""extract-activations: subword pooling, batching, windows and the atomic cache directory."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from causal_models import END, START, causal_tokenizer, tiny_causal, train_byte_bpe

from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.activations.extract import UNLIMITED_CONTEXT, Encoder, write_split
from mlm_dynamics.activations.store import cache_pooling, load_index, load_layers
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.treebanks import prepare, save_prepared

REPO = Path(__file__).resolve().parents[1]
BATCH_TOKENS = schema_default("activations.batch_tokens")
CACHE_OPTIONS = ["--pooling", schema_default("activations.pooling")]
CACHE_OPTIONS += ["--batch-tokens", str(BATCH_TOKENS)]


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint) -> Encoder:
    torch.set_num_threads(1)
    return Encoder.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> Path:
    """60 train and 20 test sentences of the bundled English treebank, prepared."""
    path = tmp_path_factory.mktemp("treebanks") / "en.json.gz"
    splits = prepare(
        REPO / "resources/ud/UD_English-EWT", {"train": 60, "dev": 20, "test": 20}, seed=13
    )
    save_prepared(path, splits, "en", "resources/ud/UD_English-EWT")
    return path


def english_words(path: Path, split: str) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [s["words"] for s in json.load(f)["splits"][split]]


def by_hand(encoder: Encoder, words: list[str], pooling: str) -> np.ndarray:
    """(hidden states, words, hidden) from one plain forward pass, pooled word by word."""
    tokenizer, model = encoder.tokenizer, encoder.model
    encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**encoding, output_hidden_states=True).hidden_states
    word_ids = encoding.word_ids(0)
    result = np.zeros((len(states), len(words), states[0].shape[-1]), dtype=np.float32)
    for w in range(len(words)):
        positions = [t for t, wid in enumerate(word_ids) if wid == w]
        chosen = {"mean": positions, "first": positions[:1], "last": positions[-1:]}[pooling]
        for layer, state in enumerate(states):
            result[layer, w] = state[0, chosen].mean(dim=0).numpy()
    return result


@pytest.mark.parametrize("pooling", ["mean", "first", "last"])
def test_pooling_matches_a_hand_computed_example(encoder, pooling):
    words = ["The", "government", "said", "it", "will", "return", "home", "."]
    subwords = encoder.tokenizer(words, is_split_into_words=True).word_ids()
    assert max(subwords.count(w) for w in range(len(words))) >= 3  # pooling has work to do
    vectors, plan = encoder.extract([words], pooling=pooling, batch_tokens=BATCH_TOKENS)
    assert len(plan.windows) == 1 and plan.truncated.tolist() == [0]
    assert vectors.shape == (3, len(words), 32)
    np.testing.assert_allclose(vectors, by_hand(encoder, words, pooling), rtol=1e-5, atol=1e-5)
    if pooling != "mean":  # the three poolings really differ
        mean, _ = encoder.extract([words], pooling="mean", batch_tokens=BATCH_TOKENS)
        assert not np.allclose(mean, vectors)


def test_batched_cache_equals_one_sentence_at_a_time(encoder, tiny_checkpoint, english, tmp_path):
    out = tmp_path / "activations" / "en"
    argv = ["extract-activations", "--checkpoint", str(tiny_checkpoint), "--treebank"]
    argv += [str(english), "--pooling", "mean", "--batch-tokens", "256", "--out", str(out)]
    assert cli(argv) == 0
    for split in ("train", "test"):
        sentences = english_words(english, split)
        index = load_index(out / split)
        assert index.word_counts.tolist() == [len(s) for s in sentences]
        cached = load_layers(out / split, [0, 1, 2])
        assert cached.shape == (3, index.n_words, 32)
        for s, words in enumerate(sentences):
            alone, plan = encoder.extract([words], pooling="mean", batch_tokens=BATCH_TOKENS)
            rows = slice(index.offsets[s], index.offsets[s + 1])
            np.testing.assert_allclose(cached[:, rows], alone, rtol=1e-3, atol=2e-3)
            assert index.truncated[s] == plan.truncated[0]
    assert load_index(out / "train").truncated.sum() > 0  # some EWT sentences needed windows


def test_long_sentence_is_cut_into_windows_of_whole_words(encoder):
    words = ("the quick brown fox jumps over the lazy dog and runs away " * 8).split()
    vectors, plan = encoder.extract([words, ["short", "one"]], batch_tokens=64, pooling="mean")
    assert vectors.shape == (3, len(words) + 2, 32)
    budget = encoder.window_tokens
    assert budget == 34 - 2 - 2  # XLM-R's padding offset, then <s> and </s>
    long_windows = [w for w in plan.windows if w.word_rows[0] < len(words)]
    assert len(long_windows) >= 3
    assert all(len(w.token_ids) <= budget for w in plan.windows)
    first_window_words = len(np.unique(long_windows[0].word_rows))
    assert plan.truncated.tolist() == [len(words) - first_window_words, 0]
    assert plan.windowed_sentences == 1 and plan.cut_words == 0
    # each window is encoded exactly as its words alone would be
    for window in long_windows:
        rows = np.unique(window.word_rows)
        alone, _ = encoder.extract(
            [[words[r] for r in rows]], pooling="mean", batch_tokens=BATCH_TOKENS
        )
        np.testing.assert_allclose(vectors[:, rows], alone, rtol=1e-4, atol=1e-4)


def test_a_word_longer_than_a_window_is_cut_and_counted(encoder):
    rng = np.random.default_rng(0)
    giant = "".join(rng.choice(list("qxzjkvw"), size=200))
    vectors, plan = encoder.extract([["a", giant, "b"]], pooling="mean", batch_tokens=BATCH_TOKENS)
    assert vectors.shape[1] == 3 and np.isfinite(vectors).all()
    assert plan.cut_words == 1
    assert plan.truncated.tolist() == [2]  # the giant word (cut) and "b" (a second window)


def test_missing_checkpoint_is_one_error_line(english, tmp_path, capsys):
    missing = tmp_path / "no-such-checkpoint"
    argv = ["extract-activations", "--checkpoint", str(missing), "--treebank", str(english)]
    assert cli(argv + [*CACHE_OPTIONS, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such checkpoint directory"
    assert not (tmp_path / "out").exists()


def test_a_failure_midway_leaves_no_partial_directory(tiny_checkpoint, english, tmp_path):
    # The test split holds a word that is not a string: the tokenizer fails on it after the
    # train split has been written to the temporary directory.
    with gzip.open(english, "rt", encoding="utf-8") as f:
        obj = json.load(f)
    obj["splits"]["test"][0]["words"][0] = 12345
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(gzip.compress(json.dumps(obj).encode()))
    out = tmp_path / "activations" / "en"

    def run(treebank):
        argv = ["extract-activations", "--checkpoint", str(tiny_checkpoint), *CACHE_OPTIONS]
        return cli(argv + ["--treebank", str(treebank), "--out", str(out)])

    # the tokenizer refuses the int (the message is transformers')
    with pytest.raises(ValueError, match=r"^text input must be of type `str` \(single example\)"):
        run(broken)
    assert list(out.parent.iterdir()) == []  # neither the final nor the temporary directory

    assert run(english) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"^text input must be of type `str` \(single example\)"):
        run(broken)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the earlier complete result is untouched
    assert [p.name for p in out.parent.iterdir()] == ["en"]


def test_a_dropped_split_gives_empty_layer_files(encoder, tiny_checkpoint, tmp_path):
    path = tmp_path / "en.json.gz"
    caps = {"train": 5, "dev": 5, "test": 5}
    splits = prepare(REPO / "resources/ud/UD_English-EWT", caps, seed=13)
    splits["test"] = []
    save_prepared(path, splits, "en", "resources/ud/UD_English-EWT")
    out = tmp_path / "out"
    argv = ["extract-activations", "--checkpoint", str(tiny_checkpoint), "--treebank", str(path)]
    assert cli(argv + [*CACHE_OPTIONS, "--out", str(out), "--pooling", "first"]) == 0
    assert load_layers(out / "test", [0, 2]).shape == (2, 0, 32)
    assert load_index(out / "test").offsets.tolist() == [0]
    assert load_layers(out / "train", [2]).shape[1] == sum(len(s.words) for s in splits["train"])


def test_an_empty_sentence_keeps_its_place(encoder):
    vectors, plan = encoder.extract(
        [["a", "cat"], [], ["the", "dog"]], pooling="mean", batch_tokens=BATCH_TOKENS
    )
    assert plan.offsets.tolist() == [0, 2, 2, 4]
    alone, _ = encoder.extract([["the", "dog"]], pooling="mean", batch_tokens=BATCH_TOKENS)
    np.testing.assert_allclose(vectors[:, 2:], alone, rtol=1e-5, atol=1e-5)


def test_the_plan_counts_the_tokenizer_coverage_per_sentence(encoder):
    sentences = [["the", "cat"], [], ["ሰላም", "dog", "สวัสดี"]]  # Ethiopic and Thai: never seen
    plan = encoder.plan(sentences)
    ids = encoder.tokenizer(sentences[2], is_split_into_words=True, add_special_tokens=False)
    unk = encoder.tokenizer.unk_token_id
    assert plan.unk_word_counts.tolist() == [0, 0, 2]
    assert plan.unk_subword_counts.tolist() == [0, 0, ids["input_ids"].count(unk)]
    assert plan.subword_counts[1:].tolist() == [0, len(ids["input_ids"])]
    assert plan.subword_counts[0] >= 2


@pytest.mark.parametrize("treebank", ["English-EWT", "French-GSD", "German-GSD", "Russian-GSD"])
def test_the_tokenizer_knows_the_languages_it_was_trained_on(encoder, treebank, tmp_path):
    splits = prepare(REPO / f"resources/ud/UD_{treebank}", {"train": 5, "dev": 5, "test": 60}, 13)
    split_dir = tmp_path / "test"
    write_split(encoder, [s.words for s in splits["test"]], split_dir, "mean", BATCH_TOKENS)
    index = load_index(split_dir)
    assert index.has_coverage and index.subword_counts.sum() >= index.n_words
    assert max(index.unk_shares()) < 0.01


# ---------------------------------------------------------------- causal LMs


@pytest.fixture(scope="module")
def byte_bpe():
    return train_byte_bpe()


@pytest.fixture(scope="module", params=["gpt2", "bloom"])
def causal_checkpoint(request, byte_bpe, tmp_path_factory) -> Path:
    """A tiny random GPT-2 (learned positions; BOS and EOS) or BLOOM (ALiBi, no position table;
    EOS only, as GPT-2's own tokenizer) with a byte-level BPE tokenizer, saved."""
    specials = {"bos_token": START} if request.param == "gpt2" else {}
    tokenizer = causal_tokenizer(byte_bpe, eos_token=END, **specials)
    directory = tmp_path_factory.mktemp("causal") / request.param
    tiny_causal(request.param, len(tokenizer), positions=64).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_causal_lm_reads_words_after_bos_and_pools_their_last_subword(causal_checkpoint):
    encoder = Encoder.from_checkpoint(causal_checkpoint)
    tokenizer = encoder.tokenizer
    assert encoder.causal and encoder.pooling("auto") == "last"
    assert encoder.pooling("mean") == "mean"  # a configured pooling is kept
    start = START if encoder.model.config.model_type == "gpt2" else END  # BOS, else EOS
    assert encoder.prefix == [tokenizer.convert_tokens_to_ids(start)] and encoder.suffix == []
    # GPT-2's positions (64); BLOOM has none and its tokenizer sets no limit
    expected = 64 if encoder.model.config.model_type == "gpt2" else UNLIMITED_CONTEXT
    assert encoder.window_tokens == expected - 1
    words = ["The", "governments", "reconsidered", "it", "."]
    ids = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    assert ids["input_ids"][0] == tokenizer(" The", add_special_tokens=False)["input_ids"][0]
    vectors, _ = encoder.extract([words], pooling="last", batch_tokens=BATCH_TOKENS)
    # By hand: one forward pass over [BOS or EOS] + the subwords, each word's last subword.
    with torch.no_grad():
        states = encoder.model(
            input_ids=torch.tensor([encoder.prefix + ids["input_ids"]]), output_hidden_states=True
        ).hidden_states
    word_ids = ids.word_ids()
    assert max(word_ids.count(w) for w in range(len(words))) >= 2  # pooling has work to do
    last = [1 + max(t for t, w in enumerate(word_ids) if w == word) for word in range(len(words))]
    expected = np.stack([state[0, last].numpy() for state in states])
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)


def test_the_cache_records_the_pooling_it_used(causal_checkpoint, english, tmp_path):
    out = tmp_path / "cache"
    argv = ["extract-activations", "--checkpoint", str(causal_checkpoint), "--treebank"]
    assert cli([*argv, str(english), *CACHE_OPTIONS, "--out", str(out)]) == 0
    assert schema_default("activations.pooling") == "auto"
    assert {load_index(out / split).pooling for split in ("train", "dev", "test")} == {"last"}
    assert cache_pooling(out) == "last"


def test_a_masked_lm_cache_records_mean_pooling(tiny_checkpoint, english, tmp_path):
    out = tmp_path / "cache"
    argv = ["extract-activations", "--checkpoint", str(tiny_checkpoint), "--treebank"]
    assert cli([*argv, str(english), *CACHE_OPTIONS, "--out", str(out)]) == 0
    assert cache_pooling(out) == "mean"


# The architectures of the causal checkpoint series users bring: GPT-2, BLOOM, Pythia and
# PolyPythias (GPT-NeoX), OLMo 1, 2 and 3 (their -hf releases); all load through the Auto
# classes, never with remote code.
HUB_FAMILIES = {
    "gpt2": ("GPT2Config", dict(n_layer=2, n_head=2, n_embd=32, n_positions=64)),
    "bloom": ("BloomConfig", dict(n_layer=2, n_head=2, hidden_size=32)),
    "gpt_neox": ("GPTNeoXConfig", dict(num_hidden_layers=2, num_attention_heads=2,
                                       hidden_size=32, intermediate_size=64,
                                       max_position_embeddings=64)),
    "olmo": ("OlmoConfig", dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32,
                                intermediate_size=64, max_position_embeddings=64)),
    "olmo2": ("Olmo2Config", dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32,
                                  intermediate_size=64, max_position_embeddings=64)),
    "olmo3": ("Olmo3Config", dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=32,
                                  intermediate_size=64, max_position_embeddings=64)),
}  # fmt: skip


@pytest.mark.parametrize("model_type", sorted(HUB_FAMILIES))
def test_every_hub_family_loads_as_a_causal_lm_and_is_cached(model_type, byte_bpe, tmp_path):
    import transformers

    from mlm_dynamics import bpc

    tokenizer = causal_tokenizer(byte_bpe, bos_token=START, eos_token=END)
    name, sizes = HUB_FAMILIES[model_type]
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = getattr(transformers, name)(vocab_size=len(tokenizer), **ids, **sizes)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = Encoder.from_checkpoint(tmp_path)
    assert encoder.model.config.model_type == model_type
    assert encoder.causal and encoder.pooling("auto") == "last"
    assert encoder.prefix == [tokenizer.bos_token_id] and encoder.suffix == []
    words = [["The", "governments", "said", "."], ["Die", "Regierung"]]
    vectors, plan = encoder.extract(words, pooling="last", batch_tokens=BATCH_TOKENS)
    assert vectors.shape == (3, 6, 32) and np.isfinite(vectors).all()
    model, _, estimate = bpc.load_checkpoint(tmp_path, None)
    assert estimate == "ar"
    ar = bpc.autoregressive_bits(model, tokenizer, ["The governments said ."], batch_tokens=64)
    assert np.isfinite(ar.sentence_bits).all() and ar.sentence_bits[0] > 0
