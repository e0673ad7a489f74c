"""Models with pretraining seeds, end to end from hubs laid out as the real ones are: MultiBERTs
(one repository per seed and step, each on ``main``) and PolyPythias (one repository per seed,
one ``step{N}`` revision per step), served over loopback HTTP to the real huggingface_hub client,
then checked, extracted, probed and collected into the tidy table with every seed's rows and the
whole model's (the mean over the seeds, intervals resampling seeds and test sentences)."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
import yaml
from loopback import serve
from test_sources import FakeHub

from mlm_dynamics.analysis import tables
from mlm_dynamics.layout import TABLE
from mlm_dynamics.sources.runs import fill, locate

ROOT = Path(__file__).resolve().parents[1]
TEXT_LINES = 2000  # tokenizer training text: the first lines of the bundled English text
VOCAB_SIZE = 400


@dataclass(frozen=True)
class Layout:
    preset: str  # configs/<preset>.yaml
    seeds: tuple[int, int]
    steps: tuple[int, int]
    missing_step: int  # the step asked of a seed the hub does not have


LAYOUTS = {
    "multiberts": Layout("multiberts", seeds=(0, 1), steps=(20000, 40000), missing_step=20000),
    "polypythias": Layout("polypythias", seeds=(1, 2), steps=(0, 512), missing_step=512),
}
MISSING_SEED = 7


class Hub(FakeHub):
    """FakeHub, answering as the Hub does for a repository that does not exist at all (401,
    RepoNotFound: FakeHub says RevisionNotFound for any repository x revision it lacks)."""

    def __call__(self, method: str, path: str, headers: dict):
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        repo = "/".join(parts[2:4] if parts[:2] == ["api", "models"] else parts[:2])
        if repo not in {known for known, _ in self.revisions}:
            return 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "RepoNotFound"}, b""
        return super().__call__(method, path, headers)


def training_text() -> list[str]:
    with gzip.open(ROOT / "resources" / "text" / "en.txt.gz", "rt", encoding="utf-8") as f:
        return [line.strip() for line in itertools.islice(f, TEXT_LINES) if line.strip()]


def bert_tokenizer():
    """A WordPiece tokenizer trained offline, as BertTokenizerFast (BERT's normaliser and
    pre-tokeniser, [PAD] [UNK] [CLS] [SEP] [MASK] first)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials)
    wordpiece.train_from_iterator(training_text(), trainer)
    return BertTokenizerFast(vocab=wordpiece.get_vocab())


def neox_tokenizer():
    """A byte-level BPE tokenizer trained offline, as GPTNeoXTokenizerFast (<|endoftext|> and
    <|padding|> first, as in Pythia's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(training_text(), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return GPTNeoXTokenizerFast(vocab=model["vocab"], merges=merges)


def tiny_model(preset: str, vocab_size: int, seed: int, step: int):
    """A randomly initialised 2-layer model, its weights different for every seed and step."""
    torch.manual_seed(1000 * seed + step % 997 + 1)
    if preset == "multiberts":
        from transformers import BertConfig, BertForMaskedLM

        config = BertConfig(
            vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=256, pad_token_id=0,
        )  # fmt: skip
        return BertForMaskedLM(config).eval()
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=256, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPTNeoXForCausalLM(config).eval()


def serve_runs(layout: Layout, spec: dict, directory: Path) -> tuple[Hub, dict[str, tuple]]:
    """Every seed x step of ``layout`` on a Hub, where the preset's templates say; returns the
    hub and, by run name/step, the (repo, revision) each was served as."""
    tokenizer = bert_tokenizer() if layout.preset == "multiberts" else neox_tokenizer()
    hub = Hub()
    served = {}
    for seed in layout.seeds:
        for step in layout.steps:
            out = directory / f"seed{seed}" / str(step)
            model = tiny_model(layout.preset, len(tokenizer), seed, step)
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            repo, revision = hub_location(spec, seed, step)
            hub.add(repo, revision, out)
            served[f"seed{seed}/{step}"] = (repo, revision)
    return hub, served


def hub_location(spec: dict, seed: int, step: int) -> tuple[str, str]:
    """(repo, revision) of one seed x step, from the preset's templates."""
    return tuple(locate(fill(spec[key], key, seed=seed), step, key) for key in ("repo", "revision"))


def seed_config(layout: Layout, seeds) -> dict:
    """The smallest run of the preset's model: 2 layers, pos only, one L2 value, few sentences."""
    name, spec = preset_model(layout)
    model = {key: spec[key] for key in ("source", "repo", "revision")}
    model |= {"layers": 2, "seeds": list(seeds), "steps": list(layout.steps)}
    return {
        "models": {name: model},
        "languages": {"en": {"treebank": str(ROOT / "resources" / "ud" / "UD_English-EWT")}},
        "transfer_languages": [],
        "probing": {"tasks": ["pos"], "l2": [0.01], "max_iter": 50, "controls": []},
        "treebanks": {"max_sentences": {"train": 80, "dev": 40, "test": 40}},
        "statistics": {"min_sentences": 10, "resamples": 200},
        "bpc": {"enabled": False},
        "analysis": {"views": ["last", "best"], "transfer_steps": []},
        "gpu_resources": {"threads": 1},
    }


def preset_model(layout: Layout) -> tuple[str, dict]:
    """The one model of the preset: its name and spec."""
    models = yaml.safe_load((ROOT / "configs" / f"{layout.preset}.yaml").read_text())["models"]
    ((name, spec),) = models.items()
    return name, spec


def snakemake(work: Path, configfile: Path, env: dict, *targets: str):
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    argv += ["--directory", str(work), "--configfile", str(configfile), "--cores", "2"]
    return subprocess.run(
        [*argv, *targets],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("which", sorted(LAYOUTS))
def test_seeded_hub_model_runs_to_the_table(tmp_path, which):
    layout = LAYOUTS[which]
    name, spec = preset_model(layout)
    hub, served = serve_runs(layout, spec, tmp_path / "served")
    work = tmp_path / "work"
    work.mkdir()
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(seed_config(layout, layout.seeds)))
    variant = work / "missing-seed.yaml"
    variant.write_text(yaml.safe_dump(seed_config(layout, [*layout.seeds, MISSING_SEED])))
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}

    with serve(hub, lifetime=1200) as url:
        env["HF_ENDPOINT"] = url
        done = snakemake(work, config, env, TABLE)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        missing_target = f"results/checkpoints/{name}/seed{MISSING_SEED}/{layout.missing_step}"
        missing = snakemake(work, variant, env, missing_target)

    # Every run x step fetched from where the preset says, into its own seed directory.
    for run_step, (repo, revision) in served.items():
        checkpoint = work / "results" / "checkpoints" / name / run_step
        assert (checkpoint / "model.safetensors").is_file(), run_step
        source = json.loads((checkpoint / "checksums.json").read_text())["source"]
        assert source == {"type": "hub", "repo": repo, "revision": revision}, run_step

    # Each seed's rows and the whole model's, at both steps.
    table = tables.read_table(work / "results" / "tables" / "probing.parquet", runs=True)
    pos = table[(table["task"] == "pos") & (table["metric"] == "accuracy") & (table["seed"] == 0)]
    pos = pos[pos["model"] == name]
    assert set(pos["pretrain_seed"]) == {*layout.seeds, tables.WHOLE_MODEL}
    for seed in [*layout.seeds, tables.WHOLE_MODEL]:
        assert set(pos[pos["pretrain_seed"] == seed]["step"]) == set(layout.steps), seed
    whole = pos[pos["pretrain_seed"] == tables.WHOLE_MODEL]
    covers = whole[(whole["split"] == "test") & (whole["layer"] >= 0)]["interval_covers"]
    assert len(covers) == 2 * 3  # 2 steps x 3 hidden states (embeddings + 2 layers)
    assert set(covers) == {f"test sentences, pretraining seeds ({len(layout.seeds)})"}
    assert ((whole["ci_low"] <= whole["value"]) & (whole["value"] <= whole["ci_high"])).all()
    key = ["step", "layer", "train_lang", "test_lang", "split"]
    runs = pos[pos["pretrain_seed"] != tables.WHOLE_MODEL]
    means = runs.groupby(key)["value"].mean()
    assert (runs.groupby(key)["pretrain_seed"].nunique() == len(layout.seeds)).all()
    merged = whole.set_index(key)["value"].sort_index()
    assert merged.index.equals(means.sort_index().index)
    assert merged.to_numpy() == pytest.approx(means.sort_index().to_numpy(), abs=1e-12)
    # The seeds are different runs: their scores differ somewhere.
    by_seed = runs.pivot_table(index=key, columns="pretrain_seed", values="value")
    assert (by_seed[layout.seeds[0]] != by_seed[layout.seeds[1]]).any()

    # A seed the hub does not have: one error line naming its repository, and nothing written.
    assert missing.returncode != 0
    repo, revision = hub_location(spec, MISSING_SEED, layout.missing_step)
    errors = [
        line for line in (missing.stdout + missing.stderr).splitlines() if line.startswith("error:")
    ]
    expected = (
        f"error: {name}/seed{MISSING_SEED} step {layout.missing_step}: "
        f"hub repository {repo!r} at revision {revision!r}: no such repository"
    )
    assert len(errors) == 1 and errors[0].startswith(expected), missing.stderr[-3000:]
    assert not (work / missing_target).exists()
