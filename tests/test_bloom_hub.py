"""BLOOM's intermediate checkpoints, end to end from a hub laid out as
bigscience/bloom-560m-intermediate is: one ``global_step{N}`` revision per step, weights as
``pytorch_model.bin``, BLOOM's byte-level BPE tokenizer with ``<unk> <s> </s> <pad>``. Served over
loopback HTTP to the real huggingface_hub client from configs/bloom-intermediate.yaml's model
entry, then checked, extracted (a causal LM: each word's last subword), probed and scored for
autoregressive bits per character into the tidy table; and a suite that serves one checkpoint
under two step names, which check-checkpoint refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from loopback import serve
from test_seed_hubs import VOCAB_SIZE, Hub, snakemake, training_text

from mlm_dynamics.analysis import tables
from mlm_dynamics.layout import TABLE

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "bloom-intermediate.yaml"
STEPS = (1000, 10000)
LANGUAGES = {"en": "UD_English-EWT", "fr": "UD_French-GSD"}
SPECIALS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


class RecordingHub(Hub):
    """Hub, keeping the path of every request it answers (what the client asked for)."""

    def __init__(self):
        super().__init__()
        self.requests: list[str] = []

    def __call__(self, method: str, path: str, headers: dict):
        self.requests.append(path)
        return super().__call__(method, path, headers)


def bloom_tokenizer():
    """A byte-level BPE trained offline, with BLOOM's special tokens first (<unk> <s> </s> <pad>,
    ids 0-3, as in bigscience/tokenizer), as BloomTokenizerFast where transformers still has
    it (4.x) and as its generic fast tokenizer otherwise (5.x loads BLOOM's tokenizer.json so)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(training_text(), trainer)
    cls = getattr(transformers, "BloomTokenizerFast", transformers.PreTrainedTokenizerFast)
    return cls(tokenizer_object=bpe, padding_side="left", **SPECIALS)


def tiny_bloom(vocab_size: int, seed: int):
    """A randomly initialised 2-layer BLOOM (ALiBi, hidden 32, 2 heads), BLOOM's special ids."""
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(seed)
    config = BloomConfig(
        vocab_size=vocab_size, hidden_size=32, n_layer=2, n_head=2,
        unk_token_id=0, bos_token_id=1, eos_token_id=2, pad_token_id=3,
    )  # fmt: skip
    return BloomForCausalLM(config).eval()


def save_revision(tokenizer, seed: int, directory: Path) -> Path:
    """One revision's files as the intermediate repositories ship them: config.json,
    pytorch_model.bin (no safetensors) and the tokenizer, BloomTokenizerFast by name. The
    weights are the base model's, as BLOOM's converted Megatron checkpoints are (keys without
    the ``transformer.`` prefix, no ``lm_head``: it is tied to the embeddings). transformers 5
    saves safetensors only (no ``safe_serialization=False``), so the pickle is torch.save's."""
    model = tiny_bloom(len(tokenizer), seed)
    model.save_pretrained(directory)
    (directory / "model.safetensors").unlink()
    torch.save(model.transformer.state_dict(), directory / "pytorch_model.bin")
    tokenizer.save_pretrained(directory)
    settings = directory / "tokenizer_config.json"
    config = json.loads(settings.read_text())
    settings.write_text(json.dumps({**config, "tokenizer_class": "BloomTokenizerFast"}, indent=2))
    names = {path.name for path in directory.iterdir()}
    assert "pytorch_model.bin" in names and "model.safetensors" not in names, names
    assert json.loads((directory / "config.json").read_text())["model_type"] == "bloom"
    return directory


def preset_model() -> tuple[str, dict]:
    models = yaml.safe_load(PRESET.read_text())["models"]
    ((name, spec),) = models.items()
    return name, spec


def bloom_config(probed=tuple(LANGUAGES)) -> dict:
    """The preset's model (its repository and revision template) at two steps of the tiny model,
    on the ``probed`` languages: pos only, one L2 value, few sentences, BPC on (estimate
    auto)."""
    name, spec = preset_model()
    model = {key: spec[key] for key in ("source", "repo", "revision")}
    model |= {"layers": 2, "steps": list(STEPS)}
    ud, heldout = ROOT / "resources" / "ud", ROOT / "resources" / "heldout"
    languages = {
        lang: {"treebank": str(ud / treebank), "heldout_text": str(heldout / f"{lang}.txt.gz")}
        for lang, treebank in LANGUAGES.items()
        if lang in probed
    }
    return {
        "models": {name: model},
        "languages": languages,
        "transfer_languages": [],
        "probing": {"tasks": ["pos"], "l2": [0.01], "max_iter": 50, "controls": []},
        "treebanks": {"max_sentences": {"train": 60, "dev": 30, "test": 30}},
        "statistics": {"min_sentences": 10, "resamples": 200},
        "bpc": {"enabled": True, "max_sentences": 10},
        "analysis": {"views": ["last", "best"], "transfer_steps": []},
        "gpu_resources": {"threads": 1, "base_mem_mb": 256, "mem_mb_per_million_parameters": 1},
    }


@pytest.fixture(scope="module")
def tokenizer():
    return bloom_tokenizer()


def run_on_hub(hub: Hub, tmp_path: Path, config: dict):
    """Snakemake to the tidy table in ``tmp_path/work``, the hub served on loopback."""
    work = tmp_path / "work"
    work.mkdir()
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
    with serve(hub, lifetime=900) as url:
        env["HF_ENDPOINT"] = url
        return work, snakemake(work, configfile, env, TABLE)


@pytest.mark.e2e
def test_bloom_revisions_run_to_the_table(tmp_path, tokenizer):
    name, spec = preset_model()
    repo = spec["repo"]
    revisions = {step: spec["revision"].format(step=step) for step in STEPS}
    assert repo == "bigscience/bloom-560m-intermediate"
    assert revisions == {1000: "global_step1000", 10000: "global_step10000"}
    hub = RecordingHub()
    for seed, (step, revision) in enumerate(revisions.items(), start=1):
        hub.add(repo, revision, save_revision(tokenizer, seed, tmp_path / "served" / str(step)))

    work, done = run_on_hub(hub, tmp_path, bloom_config())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    # Both revisions fetched through the real client, the pickled weights as they are.
    asked = [path.split("?")[0] for path in hub.requests]
    for step, revision in revisions.items():
        commit = hub.revisions[repo, revision]  # the client resolves the name, then the commit
        assert f"/api/models/{repo}/revision/{revision}" in asked, (revision, asked)
        assert f"/{repo}/resolve/{commit}/pytorch_model.bin" in asked, (revision, asked)
        checkpoint = work / "results" / "checkpoints" / name / str(step)
        assert (checkpoint / "pytorch_model.bin").is_file(), step
        source = json.loads((checkpoint / "checksums.json").read_text())["source"]
        assert source == {"type": "hub", "repo": repo, "revision": revision}, step

    table = tables.read_table(work / TABLE)
    table = table[table["model"] == name]
    cells = {(step, lang) for step in STEPS for lang in LANGUAGES}

    # BPC: the autoregressive estimate (bpc.estimate auto for a causal LM), with intervals.
    bpc = table[table["task"] == "bpc"]
    assert set(bpc["metric"]) == {"bpc_ar", "ar_bits"}
    for metric in ("bpc_ar", "ar_bits"):
        rows = bpc[bpc["metric"] == metric]
        assert set(zip(rows["step"], rows["test_lang"], strict=True)) == cells, metric
        assert len(rows) == len(cells), metric
        assert ((rows["ci_low"] <= rows["value"]) & (rows["value"] <= rows["ci_high"])).all()
        assert (rows["value"] > 0).all(), metric
    assert not table["metric"].isin(["bpc_pll", "pll_bits", "bpc_mlm"]).any()
    assert (bpc["pooling"] == "").all()
    # Two different checkpoints: their bits differ.
    ar = bpc[bpc["metric"] == "bpc_ar"].set_index(["test_lang", "step"])["value"]
    assert all(ar[lang, STEPS[0]] != ar[lang, STEPS[1]] for lang in LANGUAGES)

    # Probes: a causal LM's word vectors are each word's last subword.
    pos = table[(table["task"] == "pos") & (table["metric"] == "accuracy")]
    assert set(zip(pos["step"], pos["train_lang"], strict=True)) == cells
    assert set(pos[pos["layer"] >= 0]["layer"]) == {0, 1, 2}  # embeddings + 2 layers
    assert (pos["pooling"] == "last").all(), set(pos["pooling"])


@pytest.mark.e2e
def test_one_checkpoint_under_two_steps_is_refused(tmp_path, tokenizer):
    name, spec = preset_model()
    repo = spec["repo"]
    directory = save_revision(tokenizer, 1, tmp_path / "served" / "same")
    hub = RecordingHub()
    for step in STEPS:  # the same bytes under both revision names
        hub.add(repo, spec["revision"].format(step=step), directory)

    # One language: the refusal does not depend on it, and the jobs of step 1000 (which passes
    # its check) may run before step 10000's check refuses it.
    work, failed = run_on_hub(hub, tmp_path, bloom_config(probed=("en",)))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-5000:]
    expected = f"error: models.{name}: steps {STEPS[0]} and {STEPS[1]} have identical weights"
    assert errors[0].startswith(expected), errors
    assert not (work / TABLE).exists()
    assert not (work / "results" / "checks" / name / f"{STEPS[1]}.json").exists()
    for pattern in ("scores", "bpc"):
        assert not list((work / "results" / pattern).glob(f"{name}/{STEPS[1]}/*")), pattern
