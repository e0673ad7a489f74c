"""Checkpoint sources, end to end over loopback HTTP: the real huggingface_hub client against a
small Hub-compatible server, and fairseq checkpoints written in fairseq's own layout."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from loopback import serve, serve_directory

from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.fetch import fetch_fairseq

ROOT = Path(__file__).resolve().parents[1]
PIECES = ["▁the", "▁a", "s", "e", "t", "▁", "a", "b", "c", "d", "o", "n", "▁cat", "r", "i", "l"]


def xlmr_tokenizer():
    """A tiny tokenizer with XLM-R's layout: <s> <pad> </s> <unk>, the pieces, <mask> last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import XLMRobertaTokenizerFast

    vocab = [(t, 0.0) for t in ["<s>", "<pad>", "</s>", "<unk>"]]
    vocab += [(p, -float(i + 1)) for i, p in enumerate(PIECES)] + [("<mask>", 0.0)]
    spm = Tokenizer(models.Unigram(vocab, unk_id=3))
    spm.pre_tokenizer = pre_tokenizers.Metaspace()
    spm.decoder = decoders.Metaspace()
    specials = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>")
    return XLMRobertaTokenizerFast(
        tokenizer_object=spm, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", **specials
    )


def tiny_xlmr(seed: int, vocab_size: int = len(PIECES) + 5, layers: int = 2):
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=34,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
    )
    model = XLMRobertaForMaskedLM(config).eval()
    with torch.no_grad():  # make the biases and norms non-trivial, so a mix-up shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


SAMPLE_IDS = torch.tensor([[0, 5, 9, 12, 20, 7, 2], [0, 17, 4, 2, 1, 1, 1]])


# ---------------------------------------------------------------- hub


class FakeHub:
    """The part of the Hub's HTTP API that ``snapshot_download`` uses, for in-memory repos."""

    def __init__(self):
        self.revisions: dict[tuple[str, str], str] = {}  # (repo, name) -> commit
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}  # (repo, commit) -> files

    def add(self, repo: str, revision: str, directory: Path) -> None:
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.revisions[repo, revision] = self.revisions[repo, commit] = commit
        self.files[repo, commit] = files

    @staticmethod
    def _json(obj) -> tuple[int, dict, bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()

    @staticmethod
    def _missing(code: str) -> tuple[int, dict, bytes]:
        return 404, {"X-Error-Code": code, "X-Error-Message": code}, b"{}"

    def __call__(self, method: str, path: str, headers: dict) -> tuple[int, dict, bytes]:
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and parts[4] in {"revision", "tree"}:
            repo, revision = "/".join(parts[2:4]), parts[5]
            commit = self.revisions.get((repo, revision))
            if commit is None:
                return self._missing("RevisionNotFound")
            files = self.files[repo, commit]
            if parts[4] == "revision":
                siblings = [{"rfilename": name} for name in files]
                return self._json({"id": repo, "sha": commit, "siblings": siblings})
            return self._json(
                [
                    {
                        "type": "file",
                        "path": name,
                        "size": len(data),
                        "oid": hashlib.sha1(data).hexdigest(),
                    }
                    for name, data in files.items()
                ]
            )
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            commit = self.revisions.get((repo, revision))
            if commit is None:
                return self._missing("RevisionNotFound")
            data = self.files[repo, commit].get(name)
            if data is None:
                return self._missing("EntryNotFound")
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            return 200, {"X-Repo-Commit": commit, "ETag": etag}, data
        return self._missing("RepoNotFound")


def fetch_cli(*runs: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m mlm_dynamics fetch-checkpoint ARGS`` for each run, in one fresh process:
    huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when imported."""
    script = (
        "import sys; from mlm_dynamics.__main__ import main\n"
        f"sys.exit(max(main(['fetch-checkpoint', *run]) for run in {list(runs)!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hub_revisions_are_fetched_through_the_real_client(tmp_path):
    from transformers import AutoTokenizer, XLMRobertaForMaskedLM

    tokenizer = xlmr_tokenizer()
    served = {}
    hub = FakeHub()
    for revision, seed in [("step100", 1), ("step200", 2)]:
        model = tiny_xlmr(seed)
        directory = tmp_path / "served" / revision
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        if revision == "step200":  # an older revision with only the pickled format
            torch.save(model.state_dict(), directory / "pytorch_model.bin")
            (directory / "model.safetensors").unlink()
        else:  # both formats: only safetensors should be fetched
            torch.save(model.state_dict(), directory / "pytorch_model.bin")
        hub.add("org/tiny-xlmr", revision, directory)
        served[revision] = logits(model, SAMPLE_IDS)

    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}
    with serve(hub) as url:
        env["HF_ENDPOINT"] = url
        runs = [
            ["--source", "hub", "--repo", "org/tiny-xlmr", "--revision", revision, "--layers", "2"]
            + ["--output", str(tmp_path / "checkpoints" / revision)]
            for revision in served
        ]
        result = fetch_cli(*runs, env=env)
        assert result.returncode == 0, result.stderr
        missing = fetch_cli(
            ["--source", "hub", "--repo", "org/tiny-xlmr", "--revision", "step999"]
            + ["--output", str(tmp_path / "checkpoints" / "step999")]
            + ["--model", "tiny/seed3", "--step", "999"],  # as the rule passes them
            env=env,
        )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: tiny/seed3 step 999: hub repository 'org/tiny-xlmr' at revision 'step999': "
        "no such revision"
    ]
    assert not (tmp_path / "checkpoints" / "step999").exists()

    step100 = tmp_path / "checkpoints" / "step100"
    assert (step100 / "model.safetensors").is_file()
    assert not (step100 / "pytorch_model.bin").exists()
    assert (tmp_path / "checkpoints" / "step200" / "pytorch_model.bin").is_file()
    for revision, expected in served.items():
        directory = tmp_path / "checkpoints" / revision
        model = XLMRobertaForMaskedLM.from_pretrained(directory).eval()
        torch.testing.assert_close(logits(model, SAMPLE_IDS), expected, atol=1e-6, rtol=0)
        assert len(AutoTokenizer.from_pretrained(directory)) == len(tokenizer)
        checksums = json.loads((directory / "checksums.json").read_text())
        assert checksums["source"]["revision"] == revision
        for name, digest in checksums["files"].items():
            assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    assert not torch.allclose(served["step100"], served["step200"])

    # Offline, with the server gone: the cache answers, as HF_HUB_OFFLINE promises.
    offline = fetch_cli(
        ["--source", "hub", "--repo", "org/tiny-xlmr", "--revision", "step100"]
        + ["--output", str(tmp_path / "offline"), "--retries", "0"],
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert offline.returncode == 0, offline.stderr
    assert (tmp_path / "offline" / "model.safetensors").read_bytes() == (
        step100 / "model.safetensors"
    ).read_bytes()


# ---------------------------------------------------------------- fairseq


def fairseq_state_dict(model, legacy: bool) -> dict:
    """The model's weights under fairseq's names (written out by hand, independently of the
    converter's tables). ``legacy``: fairseq < 0.9's 'decoder.' prefix and emb_layer_norm."""
    sd = model.state_dict()
    top = "decoder" if legacy else "encoder"
    enc = f"{top}.sentence_encoder"
    norm = "emb_layer_norm" if legacy else "layernorm_embedding"
    out = {
        f"{enc}.embed_tokens.weight": sd["roberta.embeddings.word_embeddings.weight"],
        f"{enc}.embed_positions.weight": sd["roberta.embeddings.position_embeddings.weight"],
        f"{enc}.{norm}.weight": sd["roberta.embeddings.LayerNorm.weight"],
        f"{enc}.{norm}.bias": sd["roberta.embeddings.LayerNorm.bias"],
        f"{enc}.version": torch.tensor([2.0]),
        f"{top}.lm_head.weight": sd["lm_head.decoder.weight"],
        f"{top}.lm_head.bias": sd["lm_head.bias"],
    }
    for part in ["dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias"]:
        out[f"{top}.lm_head.{part}"] = sd[f"lm_head.{part}"]
    for i in range(model.config.num_hidden_layers):
        hf = f"roberta.encoder.layer.{i}"
        fs = f"{enc}.layers.{i}"
        for kind in ["weight", "bias"]:
            if legacy:  # fairseq < 0.7: one in_proj for q, k and v
                out[f"{fs}.self_attn.in_proj_{kind}"] = torch.cat(
                    [sd[f"{hf}.attention.self.{p}.{kind}"] for p in ["query", "key", "value"]]
                )
            else:
                out[f"{fs}.self_attn.q_proj.{kind}"] = sd[f"{hf}.attention.self.query.{kind}"]
                out[f"{fs}.self_attn.k_proj.{kind}"] = sd[f"{hf}.attention.self.key.{kind}"]
                out[f"{fs}.self_attn.v_proj.{kind}"] = sd[f"{hf}.attention.self.value.{kind}"]
            out[f"{fs}.self_attn.out_proj.{kind}"] = sd[f"{hf}.attention.output.dense.{kind}"]
            out[f"{fs}.self_attn_layer_norm.{kind}"] = sd[f"{hf}.attention.output.LayerNorm.{kind}"]
            out[f"{fs}.fc1.{kind}"] = sd[f"{hf}.intermediate.dense.{kind}"]
            out[f"{fs}.fc2.{kind}"] = sd[f"{hf}.output.dense.{kind}"]
            out[f"{fs}.final_layer_norm.{kind}"] = sd[f"{hf}.output.LayerNorm.{kind}"]
    # fairseq trains in fp16 and saves what it trained.
    return {k: v.clone().half() if v.is_floating_point() else v.clone() for k, v in out.items()}


def write_fairseq_checkpoint(path: Path, model, legacy: bool) -> None:
    hyper = dict(
        arch="roberta_base",
        encoder_layers=model.config.num_hidden_layers,
        encoder_embed_dim=model.config.hidden_size,
        encoder_ffn_embed_dim=model.config.intermediate_size,
        encoder_attention_heads=model.config.num_attention_heads,
        activation_fn="gelu",
        dropout=0.1,
        attention_dropout=0.1,
        encoder_normalize_before=False,
        max_positions=model.config.max_position_embeddings - 2,
    )
    state = {
        "model": fairseq_state_dict(model, legacy),
        "optimizer_history": [
            {"criterion_name": "MaskedLmLoss", "optimizer_name": "FairseqAdam", "num_updates": 5000}
        ],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 7}, "val_loss": 9.5},
        "last_optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-4}]},
    }
    if legacy:
        state["args"] = argparse.Namespace(**hyper)
    else:  # what fairseq >= 0.10 saves: OmegaConf.to_container(cfg), a plain dict
        state["cfg"] = {"model": hyper, "task": {"_name": "masked_lm"}, "common": {"fp16": True}}
        state["args"] = None
    torch.save(state, path)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("xlmr-tokenizer")
    xlmr_tokenizer().save_pretrained(directory)
    return directory


def assert_nothing_written(output: Path) -> None:
    assert not output.exists()
    leftovers = [p.name for p in output.parent.iterdir()] if output.parent.exists() else []
    assert leftovers == []


@pytest.mark.parametrize("legacy", [False, True], ids=["cfg", "legacy-args"])
def test_fairseq_checkpoint_converts_to_the_same_model(tmp_path, tokenizer_dir, legacy):
    from transformers import XLMRobertaForMaskedLM

    original = tiny_xlmr(seed=3)
    # fairseq saved fp16 weights and has no token-type embeddings: compare with the model that
    # those weights define.
    weights = {k: v.half().float() for k, v in original.state_dict().items()}
    weights["roberta.embeddings.token_type_embeddings.weight"].zero_()
    original.load_state_dict(weights)
    write_fairseq_checkpoint(tmp_path / "checkpoint_1_5000.pt", original, legacy)
    digest = hashlib.sha256((tmp_path / "checkpoint_1_5000.pt").read_bytes()).hexdigest()
    output = tmp_path / "checkpoints" / "xlmr" / "5000"
    if legacy:  # read in place, with the right sha256 pinned
        fetch_fairseq(str(tmp_path / "checkpoint_1_5000.pt"), str(tokenizer_dir), output, 2, digest)
    else:  # downloaded over HTTP
        with serve_directory(tmp_path) as url:
            fetch_fairseq(f"{url}/checkpoint_1_5000.pt", str(tokenizer_dir), output, 2)
    converted = XLMRobertaForMaskedLM.from_pretrained(output).eval()
    torch.testing.assert_close(
        logits(converted, SAMPLE_IDS), logits(original, SAMPLE_IDS), atol=1e-5, rtol=0
    )
    assert json.loads((output / "checksums.json").read_text())["sha256"] == digest
    assert (output / "model.safetensors").is_file() and (output / "tokenizer.json").is_file()


def test_fairseq_bad_files_are_refused_and_leave_nothing(tmp_path, tokenizer_dir):
    good = tmp_path / "good.pt"
    write_fairseq_checkpoint(good, tiny_xlmr(seed=4), legacy=False)
    data = good.read_bytes()
    output = tmp_path / "checkpoints" / "xlmr" / "5000"

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.pt: not a readable PyTorch checkpoint"):
        fetch_fairseq(str(truncated), str(tokenizer_dir), output)
    assert_nothing_written(output)

    with pytest.raises(
        InputError, match="good.pt: sha256 is [0-9a-f]{64}, but the config pins 0+$"
    ):
        fetch_fairseq(str(good), str(tokenizer_dir), output, sha256="0" * 64)
    assert_nothing_written(output)

    wrong_vocab = tmp_path / "wrong-vocab.pt"
    write_fairseq_checkpoint(wrong_vocab, tiny_xlmr(seed=4, vocab_size=40), legacy=False)
    with pytest.raises(InputError, match="vocabulary has 40 entries, the tokenizer 21"):
        fetch_fairseq(str(wrong_vocab), str(tokenizer_dir), output)
    assert_nothing_written(output)

    with pytest.raises(InputError, match="the checkpoint has 2 layers, but the config says 12"):
        fetch_fairseq(str(good), str(tokenizer_dir), output, layers=12)
    assert_nothing_written(output)


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_fairseq_pickled_code_is_never_run(tmp_path, tokenizer_dir):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "args": RunsCode()}, path)
    output = tmp_path / "checkpoints" / "evil" / "1"
    with pytest.raises(InputError, match="evil.pt: refused to unpickle the checkpoint safely"):
        fetch_fairseq(str(path), str(tokenizer_dir), output)
    assert_nothing_written(output)


def test_fairseq_dictionary_order_is_checked(tmp_path):
    directory = tmp_path / "tokenizer"
    xlmr_tokenizer().save_pretrained(directory)
    pieces = list(PIECES)
    pieces[2], pieces[3] = pieces[3], pieces[2]
    (directory / "dict.txt").write_text("".join(f"{p} 1\n" for p in pieces), encoding="utf-8")
    write_fairseq_checkpoint(tmp_path / "c.pt", tiny_xlmr(seed=5), legacy=False)
    with pytest.raises(
        InputError, match=r"dict.txt:3: fairseq id 6 is 'e' but the tokenizer's is 's'"
    ):
        fetch_fairseq(str(tmp_path / "c.pt"), str(directory), tmp_path / "out")


# ---------------------------------------------------------------- wiring


def test_snakemake_fetches_a_checkpoint_and_a_release_treebank(tmp_path, tokenizer_dir):
    """The rules as Snakemake runs them: a pinned fairseq file converted, a pinned UD release
    unpacked, and the treebank preparation fed from it."""
    import tarfile

    import yaml

    work = tmp_path / "work"
    (work / "downloads").mkdir(parents=True)
    write_fairseq_checkpoint(work / "downloads" / "ck_5000.pt", tiny_xlmr(seed=6), legacy=False)
    pt_digest = hashlib.sha256((work / "downloads" / "ck_5000.pt").read_bytes()).hexdigest()
    archive = tmp_path / "ud-treebanks-v2.99.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ["UD_French-GSD", "UD_German-GSD"]:
            tar.add(ROOT / "resources" / "ud" / name, arcname=f"ud-treebanks-v2.99/{name}")
    config = {
        "models": {
            "replica": {
                "source": "fairseq",
                "layers": 2,
                "steps": [5000],
                "url": "downloads/ck_{step}.pt",
                "tokenizer": str(tokenizer_dir),
                "sha256": {5000: pt_digest},
            }
        },
        "languages": {"fr": {"treebank": "ud/UD_French-GSD"}},
        "ud_release": {
            "url": str(archive),
            "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
            "directory": "ud",
            "treebanks": ["UD_French-GSD"],
        },
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work)]
        + ["--configfile", str(work / "config.yaml"), "--cores", "2", "--quiet", "all"]
        + ["--", "results/checkpoints/replica/5000", "results/treebanks/fr.json.gz"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checkpoint = work / "results" / "checkpoints" / "replica" / "5000"
    assert json.loads((checkpoint / "checksums.json").read_text())["sha256"] == pt_digest
    assert (checkpoint / "model.safetensors").is_file()
    assert sorted(p.name for p in (work / "ud").iterdir()) == ["UD_French-GSD"]
    assert (work / "results" / "treebanks" / "fr.json.gz").is_file()
