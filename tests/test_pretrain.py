"""Embedded pretraining: the tokenizer, masking, and resumption equal to uninterrupted training,
for the masked LM (XLM-R) and the causal LM (BLOOM)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError
from mlm_dynamics.pretrain import (
    ARCHITECTURES,
    RECIPE,
    TokenStreams,
    causal_lm_loss,
    initial_model,
    language_weights,
    learning_rate,
    load_checkpoint,
    make_optimizer,
    mask_tokens,
    masked_lm_loss,
    settings_from,
    train_steps,
    train_tokenizer,
)
from mlm_dynamics.textio import read_lines

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [ROOT / f"resources/text/{lang}.txt.gz" for lang in ("en", "ru", "zh")]
SMALL = {  # the schema's pretrain settings, shrunk
    **{
        key.replace("_", "-"): value
        for key, value in schema_default("pretrain").items()
        if key not in ("texts", "vocab_size", "threads")  # inputs and job settings
    },
    "hidden-size": 32,
    "layers": 1,
    "attention-heads": 2,
    "intermediate-size": 64,
    "max-length": 24,
    "batch-size": 8,
    "warmup-steps": 2,
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "tokenizer"
    run("train-tokenizer", "--texts", *TEXTS, "--vocab-size", "4000", "--out", out)
    return out


def run(command, *args):
    argv = [sys.executable, "-m", "mlm_dynamics", command, *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done


def pretrain(tokenizer_dir, step, out, resume=None, architecture="xlm-roberta"):
    args = ["--texts", *TEXTS, "--tokenizer", tokenizer_dir, "--step", step, "--out", out]
    args += ["--threads", "1"] + [x for key, value in SMALL.items() for x in (f"--{key}", value)]
    args += ["--architecture", architecture]
    if resume:
        args += ["--resume", resume]
    return run("pretrain", *args)


def small_settings(**changes):
    """SMALL as ``PretrainSettings`` (for the library functions, in this process)."""
    return settings_from(
        {**{key.replace("-", "_"): value for key, value in SMALL.items()}, **changes}
    )


@pytest.fixture(scope="module")
def bloom_chain(tokenizer_dir, tmp_path_factory):
    """A tiny BLOOM trained to step 4 in one go, and to step 2 then resumed to 4."""
    out = tmp_path_factory.mktemp("bloom")
    logs = {"4-direct": pretrain(tokenizer_dir, 4, out / "4-direct", architecture="bloom")}
    pretrain(tokenizer_dir, 2, out / "2", architecture="bloom")
    logs["4-resumed"] = pretrain(
        tokenizer_dir, 4, out / "4-resumed", resume=out / "2", architecture="bloom"
    )
    return out, logs


def test_tokenizer_covers_every_script_without_unknowns():
    texts = [line for path in TEXTS for line in read_lines(path, limit=300)]
    tokenizer = train_tokenizer(texts, vocab_size=4000)
    for path in TEXTS:  # Latin, Cyrillic and Han: only the rarest characters become <unk>
        ids = [tokenizer(line)["input_ids"] for line in read_lines(path, limit=300)]
        assert all(i[0] == tokenizer.bos_token_id and i[-1] == tokenizer.eos_token_id for i in ids)
        flat = [token for sentence in ids for token in sentence]
        assert flat.count(tokenizer.unk_token_id) / len(flat) < 0.005, path
    assert train_tokenizer(texts, 4000).get_vocab() == tokenizer.get_vocab()  # deterministic
    assert tokenizer.mask_token == "<mask>" and tokenizer.pad_token_id == 1


def test_language_weights_follow_xlmr_sampling():
    p = language_weights([100, 10_000], alpha=0.3)
    assert p.sum() == pytest.approx(1.0)
    # n^0.3: the ratio of 100x more data becomes 100**0.3 ~ 3.98x more probability
    assert p[1] / p[0] == pytest.approx(100**0.3)
    assert language_weights([100, 10_000], alpha=1.0)[0] == pytest.approx(100 / 10_100)


def test_masking_never_touches_special_tokens_and_is_seeded(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    streams = TokenStreams(tokenizer, {"en": read_lines(TEXTS[0], limit=200)}, alpha=0.3)
    ids = torch.from_numpy(streams.batch(np.random.default_rng(0), 16, 24))
    assert (ids[:, 0] == tokenizer.bos_token_id).all() and (
        ids[:, -1] == tokenizer.eos_token_id
    ).all()
    first = mask_tokens(ids, tokenizer, 0.15, torch.Generator().manual_seed(1))
    again = mask_tokens(ids, tokenizer, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    inputs, masked, targets = first
    assert not masked[:, 0].any() and not masked[:, -1].any()
    assert torch.equal(targets, ids[masked])
    assert 0.08 < masked.float().mean() < 0.22


def test_learning_rate_warms_up_then_decays_without_a_total():
    settings = settings_from(
        {**schema_default("pretrain"), "layers": 1, "learning_rate": 1e-3, "warmup_steps": 10}
    )
    assert learning_rate(5, settings) == pytest.approx(5e-4)
    assert learning_rate(10, settings) == pytest.approx(1e-3)
    assert learning_rate(40, settings) == pytest.approx(5e-4)


def test_resuming_from_an_earlier_step_equals_training_in_one_go(tokenizer_dir, tmp_path):
    pretrain(tokenizer_dir, 0, tmp_path / "0")
    pretrain(tokenizer_dir, 6, tmp_path / "6-direct", resume=tmp_path / "0")
    pretrain(tokenizer_dir, 3, tmp_path / "3", resume=tmp_path / "0")
    pretrain(tokenizer_dir, 6, tmp_path / "6-resumed", resume=tmp_path / "3")
    direct = load_file(tmp_path / "6-direct/model.safetensors")
    resumed = load_file(tmp_path / "6-resumed/model.safetensors")
    initial = load_file(tmp_path / "0/model.safetensors")
    assert direct.keys() == resumed.keys()
    for name in direct:
        np.testing.assert_array_equal(direct[name], resumed[name], err_msg=name)
    assert any(not np.array_equal(direct[name], initial[name]) for name in direct)
    state = json.loads((tmp_path / "6-resumed/pretrain_state.json").read_text())
    assert state["step"] == 6
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (tmp_path / "6-resumed" / name).is_file()


def test_resume_with_other_settings_is_refused(tokenizer_dir, tmp_path):
    pretrain(tokenizer_dir, 0, tmp_path / "0")
    argv = [sys.executable, "-m", "mlm_dynamics", "pretrain", "--texts", *map(str, TEXTS)]
    argv += ["--tokenizer", str(tokenizer_dir), "--step", "2", "--resume", str(tmp_path / "0")]
    argv += ["--threads", "1"]
    argv += [x for key, value in SMALL.items() for x in (f"--{key}", str(value))]
    argv += ["--out", str(tmp_path / "2"), "--hidden-size", "48"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "pretrain_state.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "2").exists()


def test_resume_from_a_checkpoint_of_another_training_recipe_is_refused(tokenizer_dir, tmp_path):
    """A checkpoint written before the recipe changed (dropout 0.1, the for-loop AdamW: its state
    has no "recipe") has the same settings, but a chain that resumed it would mix two recipes."""
    pretrain(tokenizer_dir, 0, tmp_path / "0")
    state_file = tmp_path / "0" / "pretrain_state.json"
    state = json.loads(state_file.read_text())
    assert state["recipe"] == RECIPE and state["environment"]["packages"]["torch"]
    del state["recipe"]
    state_file.write_text(json.dumps(state))
    argv = [sys.executable, "-m", "mlm_dynamics", "pretrain", "--texts", *map(str, TEXTS)]
    argv += ["--tokenizer", str(tokenizer_dir), "--step", "2", "--resume", str(tmp_path / "0")]
    argv += ["--threads", "1"] + [
        x for key, value in SMALL.items() for x in (f"--{key}", str(value))
    ]
    done = subprocess.run(argv + ["--out", str(tmp_path / "2")], capture_output=True, text=True)
    assert done.returncode == 2
    assert (
        done.stderr == f"error: {state_file}: was trained with another training recipe than "
        "this config and code's; delete results/checkpoints of this model to retrain\n"
    )
    assert not (tmp_path / "2").exists()


def test_bloom_checkpoint_is_a_hugging_face_causal_lm(bloom_chain):
    from transformers import AutoModelForCausalLM, BloomForCausalLM

    out, logs = bloom_chain
    config = json.loads((out / "4-direct/config.json").read_text())
    assert config["model_type"] == "bloom" and config["n_layer"] == SMALL["layers"]
    model = AutoModelForCausalLM.from_pretrained(out / "4-direct")
    assert type(model) is BloomForCausalLM
    assert not hasattr(model.transformer, "position_embeddings")  # ALiBi
    state = json.loads((out / "4-direct/pretrain_state.json").read_text())
    assert state["settings"]["architecture"] == "bloom" and state["step"] == 4
    assert "step 4: clm loss" in logs["4-direct"].stdout
    assert "mlm loss" not in logs["4-direct"].stdout


def test_bloom_resumed_from_an_earlier_step_equals_training_in_one_go(bloom_chain):
    out, _ = bloom_chain
    direct = load_file(out / "4-direct/model.safetensors")
    resumed = load_file(out / "4-resumed/model.safetensors")
    earlier = load_file(out / "2/model.safetensors")
    assert direct.keys() == resumed.keys()
    for name in direct:
        assert torch.equal(torch.from_numpy(direct[name]), torch.from_numpy(resumed[name])), name
    assert any(not np.array_equal(direct[name], earlier[name]) for name in direct)


def test_bloom_next_token_loss_falls_on_held_out_text(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lines = {path.name.split(".")[0]: read_lines(path, limit=700) for path in TEXTS}
    train = TokenStreams(tokenizer, {lang: text[:-100] for lang, text in lines.items()}, 0.3)
    held_out = TokenStreams(tokenizer, {lang: text[-100:] for lang, text in lines.items()}, 0.3)
    batch = torch.from_numpy(held_out.batch(np.random.default_rng(123), 32, 24))
    settings = small_settings(architecture="bloom", learning_rate=1e-2)
    model = initial_model(tokenizer, settings)
    optimizer = make_optimizer(model, settings)

    def held_out_loss():
        model.eval()
        with torch.no_grad():
            return causal_lm_loss(model, batch).item()

    before = held_out_loss()
    # the model's own shifted loss is the same objective
    with torch.no_grad():
        own = model(input_ids=batch, labels=batch).loss.item()
    assert own == pytest.approx(before, rel=1e-5)
    logged = []
    train_steps(model, optimizer, tokenizer, train, settings, 0, 45, log=logged.append)
    after = held_out_loss()
    assert after < before - 0.5, (before, after)  # from ~ln(4000) = 8.3 to ~7.4
    assert logged[0].startswith("step 1: clm loss ")


def test_masked_lm_training_is_unchanged_by_the_causal_variant(tokenizer_dir):
    """train_steps on the masked LM equals a frozen copy of its loop from before BLOOM: the same
    draws from the same generators, so the masked checkpoints did not change."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    streams = TokenStreams(tokenizer, {"en": read_lines(TEXTS[0], limit=300)}, 0.3)
    settings = small_settings()
    assert settings.architecture == "xlm-roberta"  # the default
    model = initial_model(tokenizer, settings)
    optimizer = make_optimizer(model, settings)
    train_steps(model, optimizer, tokenizer, streams, settings, 0, 3, log=lambda line: None)

    frozen = initial_model(tokenizer, settings)
    frozen_optimizer = make_optimizer(frozen, settings)
    frozen.train()
    for t in range(1, 4):
        rng = np.random.default_rng([settings.seed, t])
        ids = torch.from_numpy(streams.batch(rng, settings.batch_size, settings.max_length))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        inputs, masked, targets = mask_tokens(ids, tokenizer, settings.mask_probability, generator)
        torch.manual_seed(int(rng.integers(2**62)))
        for group in frozen_optimizer.param_groups:
            group["lr"] = learning_rate(t, settings)
        loss = masked_lm_loss(frozen, inputs, masked, targets)
        frozen_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(frozen.parameters(), 1.0)
        frozen_optimizer.step()
    trained, expected = model.state_dict(), frozen.state_dict()
    for name in expected:
        assert torch.equal(trained[name], expected[name]), name


def test_unknown_architecture_is_refused_in_one_line(tokenizer_dir, tmp_path):
    assert ARCHITECTURES == ("xlm-roberta", "bloom")
    with pytest.raises(InputError, match="architecture 'gpt2'"):
        small_settings(architecture="gpt2")
    argv = [sys.executable, "-m", "mlm_dynamics", "pretrain", "--texts", *map(str, TEXTS)]
    argv += ["--tokenizer", str(tokenizer_dir), "--step", "0", "--threads", "1"]
    argv += [x for key, value in SMALL.items() for x in (f"--{key}", str(value))]
    argv += ["--architecture", "gpt2", "--out", str(tmp_path / "0")]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr == (
        "error: architecture 'gpt2': an embedded model is one of xlm-roberta, bloom\n"
    )
    assert not (tmp_path / "0").exists()


def test_resume_with_another_architecture_is_refused(bloom_chain):
    out, _ = bloom_chain
    with pytest.raises(InputError, match="was trained with another pretrain settings"):
        load_checkpoint(out / "4-direct", small_settings(architecture="xlm-roberta"))
    model = load_checkpoint(out / "4-direct", small_settings(architecture="bloom"))[0]
    assert type(model).__name__ == "BloomForCausalLM"
