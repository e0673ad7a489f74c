"""check-checkpoint: every way a checkpoint breaks is one line naming the model, step and file.

``BAD_CHECKPOINT_CASES`` is the table of breakages, for reuse by other test modules: each row is
``(case_id, break_function, expected_message_format)``. ``break_function(checkpoint_dir)`` breaks
a copy of a good checkpoint in place and returns the extra ``check-checkpoint`` arguments it
needs; the format is the whole message after ``error: `` for ``--model MODEL --step STEP``
(the constants below), with ``{dir}`` for the checkpoint directory: ``expected.format(dir=...)``.
Without its ``PREFIX`` it is also what the loaders of ``extract-activations`` and ``bpc`` say
(except where ``DIRECT_LOADER_DIFFERS`` says otherwise).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlm_dynamics import bpc
from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.checks import distinct_steps

MODEL, STEP = "run", 200
PREFIX = f"{MODEL} step {STEP}: "
TOKENIZER_NAMES = "tokenizer.json, sentencepiece.bpe.model, vocab.txt, ..."


# ---------------------------------------------------------------- ways to break a checkpoint


def remove(*names: str):
    def breaks(directory: Path) -> list[str]:
        for name in names:
            (directory / name).unlink()
        return []

    return breaks


def remove_directory(directory: Path) -> list[str]:
    shutil.rmtree(directory)
    return []


def write(name: str, content: str | bytes):
    def breaks(directory: Path) -> list[str]:
        path = directory / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return []

    return breaks


def edit_json(name: str, edit):
    def breaks(directory: Path) -> list[str]:
        path = directory / name
        obj = json.loads(path.read_text())
        edit(obj)
        path.write_text(json.dumps(obj, indent=2))
        return []

    return breaks


def config_changes(**changes):
    return edit_json("config.json", lambda obj: obj.update(changes))


def truncate(directory: Path) -> list[str]:
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return []


def garble(directory: Path) -> list[str]:
    path = directory / "model.safetensors"
    size = path.stat().st_size
    path.write_bytes(np.random.default_rng(0).bytes(size))
    return []


def huge_header(directory: Path) -> list[str]:
    path = directory / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes((1 << 40).to_bytes(8, "little") + data[8:])
    return []


def other_shape(directory: Path) -> list[str]:
    """Weights of a model with hidden size 64 under this (hidden size 32) config."""
    import torch
    from transformers import AutoConfig, XLMRobertaForMaskedLM

    config = AutoConfig.from_pretrained(directory)
    config.hidden_size, config.intermediate_size = 64, 128
    torch.manual_seed(0)
    save_weights(XLMRobertaForMaskedLM(config), directory)
    return []


def save_weights(model, directory: Path) -> None:
    """Replace the checkpoint's weights by the model's, keeping its config.json."""
    model.save_pretrained(directory / "other", safe_serialization=True)
    (directory / "other" / "model.safetensors").replace(directory / "model.safetensors")
    shutil.rmtree(directory / "other")


def half_the_tensors(directory: Path) -> list[str]:
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(path)
    kept = sorted(tensors)[::2]
    save_file({key: tensors[key] for key in kept}, path, metadata={"format": "pt"})
    return []


def sharded_without_index(directory: Path) -> list[str]:
    (directory / "model.safetensors").rename(directory / "model-00001-of-00001.safetensors")
    return []


def index_with_missing_shard(directory: Path) -> list[str]:
    (directory / "model.safetensors").rename(directory / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return []


def pytorch_truncated(directory: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    torch.save(tensors, directory / "pytorch_model.bin")
    data = (directory / "pytorch_model.bin").read_bytes()
    (directory / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    return []


class RunsCode:
    """An object whose unpickling would call a function: what a pickle can hide."""

    def __reduce__(self):
        return (print, ("unpickled: code ran",))


def pytorch_with_code(directory: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    torch.save({**tensors, "extra": RunsCode()}, directory / "pytorch_model.bin")
    return []


def more_layers(directory: Path) -> list[str]:
    return ["--layers", "3"]


def tokenizer_vocabulary(edit):
    return edit_json("tokenizer.json", lambda obj: edit(obj["model"]))


def keep_100_pieces(model: dict) -> None:
    model["vocab"] = model["vocab"][:100]  # the special tokens are the first five


def unknown_pieces(model: dict) -> None:
    # Pieces no text contains (private-use characters): every word is <unk>.
    model["vocab"] = model["vocab"][:5] + [
        [f"\ue000{i}", score] for i, (_, score) in enumerate(model["vocab"][5:])
    ]


NOT_JSON = '{\n  "model_type": "xlm-roberta"\n  "vocab_size": 2000\n}\n'

BAD_CHECKPOINT_CASES = [
    (
        "pytorch-with-code",
        pytorch_with_code,
        PREFIX + "{dir}/pytorch_model.bin: the weights do not load (a pickle with objects other "
        "than tensors, which is never unpickled here (it could run code); save the weights as "
        "model.safetensors)",
    ),
    ("no-directory", remove_directory, PREFIX + "{dir}: no such checkpoint directory"),
    (
        "no-config",
        remove("config.json"),
        PREFIX + "{dir}: not a Hugging Face checkpoint (no config.json)",
    ),
    (
        "config-not-json",
        write("config.json", NOT_JSON),
        PREFIX + "{dir}/config.json:3: not JSON (Expecting ',' delimiter)",
    ),
    (
        "config-not-utf8",
        write("config.json", b'{"model_type": "xlm-roberta\xff"}'),
        PREFIX + "{dir}/config.json: not UTF-8 text",
    ),
    (
        "config-not-object",
        write("config.json", "[1, 2]\n"),
        PREFIX + "{dir}/config.json: not a JSON object (an array)",
    ),
    (
        "no-model-type",
        write("config.json", '{"vocab_size": 2000}'),
        PREFIX + "{dir}/config.json: no model_type (the architecture)",
    ),
    (
        "unknown-model-type",
        config_changes(model_type="foo"),
        PREFIX + "{dir}/config.json: model_type 'foo' is not an architecture transformers knows",
    ),
    (
        "config-rejected",
        config_changes(hidden_size="big"),
        PREFIX + "{dir}/config.json: transformers does not accept it (Validation error for field "
        "'hidden_size': TypeError: Field 'hidden_size' expected int, got str (value: 'big'))",
    ),
    (
        "no-weights",
        remove("model.safetensors"),
        PREFIX + "{dir}: no weights (model.safetensors or pytorch_model.bin)",
    ),
    (
        "truncated",
        truncate,
        PREFIX + "{dir}/model.safetensors: not a complete safetensors file "
        "(incomplete metadata, file not fully covered)",
    ),
    (
        "garbled",
        garble,
        PREFIX + "{dir}/model.safetensors: not a complete safetensors file (header too large)",
    ),
    (
        "huge-header",
        huge_header,
        PREFIX + "{dir}/model.safetensors: not a complete safetensors file (header too large)",
    ),
    (
        "shards-without-index",
        sharded_without_index,
        PREFIX + "{dir}/model.safetensors.index.json: missing "
        "(the shards model-*-of-*.safetensors need it; 1 found)",
    ),
    (
        "index-missing-shard",
        index_with_missing_shard,
        PREFIX + "{dir}/model-00002-of-00002.safetensors: missing "
        "(listed in model.safetensors.index.json)",
    ),
    (
        "pytorch-truncated",
        pytorch_truncated,
        PREFIX
        + "{dir}/pytorch_model.bin: not a complete PyTorch file (no zip directory at its end)",
    ),
    (
        "other-shape",
        other_shape,
        PREFIX + "{dir}/model.safetensors: 41 tensors have shapes that do not fit config.json "
        "(e.g. embeddings.LayerNorm.bias: [64] in the file, [32] for config.json)",
    ),
    (
        "partial-weights",
        half_the_tensors,
        PREFIX + "{dir}: 19 of the model's weights are missing from model.safetensors "
        "(e.g. embeddings.LayerNorm.bias)",
    ),
    (
        "layers-mismatch",
        more_layers,
        PREFIX + "{dir}/config.json: the checkpoint has 2 layers, but the config says 3",
    ),
    (
        "no-tokenizer",
        remove("tokenizer.json", "tokenizer_config.json"),
        PREFIX + f"{{dir}}: no tokenizer files ({TOKENIZER_NAMES}) "
        f"and no tokenizer configured (models.{MODEL}.tokenizer)",
    ),
    (
        # The bug this check was made for: tokenizer_config.json alone gives a tokenizer of
        # special tokens only, and every word is <unk>.
        "no-vocabulary",
        remove("tokenizer.json"),
        PREFIX + f"{{dir}}: no tokenizer files ({TOKENIZER_NAMES}) "
        f"and no tokenizer configured (models.{MODEL}.tokenizer)",
    ),
    (
        "tokenizer-not-json",
        write("tokenizer.json", "garbage"),
        PREFIX + "{dir}: the tokenizer does not load (Expecting value: line 1 column 1 (char 0))",
    ),
    (
        "tokenizer-far-smaller",
        tokenizer_vocabulary(keep_100_pieces),
        PREFIX + "{dir}: the tokenizer has 100 tokens, the model's vocabulary 2000 "
        "(config.json vocab_size)",
    ),
    (
        "tokenizer-knows-no-word",
        tokenizer_vocabulary(unknown_pieces),
        PREFIX
        + "{dir}: every test word is the unknown token <unk> (the and der de la и 的 في 1 .)",
    ),
]
# Where bpc's and extract's own loaders say something else than the check.
DIRECT_LOADER_DIFFERS = {"no-directory", "no-config", "no-tokenizer", "no-vocabulary"}


# ---------------------------------------------------------------- weights that are not finite

NAN, INF = float("nan"), float("inf")
QUERY = "roberta.encoder.layer.1.attention.self.query.weight"  # 32 x 32 in the tiny checkpoint


def set_values(changes: dict[str, dict[int, float]], pytorch: bool = False):
    """Give tensors non-finite values ({tensor: {flat position: value}}); ``pytorch`` saves the
    weights as ``pytorch_model.bin`` instead of ``model.safetensors``."""

    def breaks(directory: Path) -> list[str]:
        import torch
        from safetensors.torch import load_file, save_file

        path = directory / "model.safetensors"
        tensors = load_file(path)
        for name, values in changes.items():
            flat = tensors[name].view(-1)
            for position, value in values.items():
                flat[position] = value
        if pytorch:
            path.unlink()
            torch.save(tensors, directory / "pytorch_model.bin")
        else:
            save_file(tensors, path, metadata={"format": "pt"})
        return []

    return breaks


# The same format as BAD_CHECKPOINT_CASES; only check-checkpoint reads every tensor, so these
# are not cases for the direct loaders.
NON_FINITE_CASES = [
    (
        "nan-weight",
        set_values({QUERY: {0: NAN, 5: NAN, 1023: NAN}}),
        PREFIX + f"{{dir}}/model.safetensors: tensor {QUERY} holds NaN (3 of 1024 values)",
    ),
    (
        "infinite-weight",
        set_values({"roberta.embeddings.word_embeddings.weight": {7: INF, 8: -INF}}),
        PREFIX + "{dir}/model.safetensors: tensor roberta.embeddings.word_embeddings.weight "
        "holds infinity (2 of 64000 values)",
    ),
    (
        "the-first-of-two-tensors",  # in the file's order (safetensors: by name)
        set_values({QUERY: {0: NAN}, "lm_head.dense.weight": {1: NAN, 2: NAN, 3: -INF}}),
        PREFIX + "{dir}/model.safetensors: tensor lm_head.dense.weight holds NaN and infinity "
        "(2 and 1 of 1024 values)",
    ),
    (
        "pytorch-nan-weight",
        set_values({QUERY: {3: NAN}}, pytorch=True),
        PREFIX + f"{{dir}}/pytorch_model.bin: tensor {QUERY} holds NaN (1 of 1024 values)",
    ),
]


# ---------------------------------------------------------------- helpers


@pytest.fixture
def copy(tiny_checkpoint, tmp_path) -> Path:
    """A copy of the good checkpoint, to break."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))


def run_check(checkpoint: Path, out: Path, *extra: str, model=MODEL, step=STEP) -> int:
    argv = ["check-checkpoint", "--checkpoint", str(checkpoint), "--model", model]
    return cli(argv + ["--step", str(step), *extra, "--out", str(out)])


def expected(message_format: str, directory: Path) -> str:
    return message_format.format(dir=directory)


def assert_one_error_line(capfd, message: str) -> None:
    captured = capfd.readouterr()
    assert captured.err == f"error: {message}\n"
    assert captured.out == ""


# ---------------------------------------------------------------- the check


@pytest.mark.parametrize(
    "break_checkpoint, message_format",
    [case[1:] for case in BAD_CHECKPOINT_CASES],
    ids=[case[0] for case in BAD_CHECKPOINT_CASES],
)
def test_a_broken_checkpoint_is_one_line(copy, tmp_path, capfd, break_checkpoint, message_format):
    extra = break_checkpoint(copy)
    capfd.readouterr()
    out = tmp_path / "check.json"
    assert run_check(copy, out, *extra) == 2
    assert_one_error_line(capfd, expected(message_format, copy))
    assert not out.exists()


@pytest.mark.parametrize(
    "break_checkpoint, message_format",
    [case[1:] for case in NON_FINITE_CASES],
    ids=[case[0] for case in NON_FINITE_CASES],
)
def test_a_weight_that_is_not_finite_is_one_line_naming_file_and_tensor(
    copy, tmp_path, capfd, break_checkpoint, message_format
):
    break_checkpoint(copy)
    capfd.readouterr()
    out = tmp_path / "check.json"
    assert run_check(copy, out) == 2
    assert_one_error_line(capfd, expected(message_format, copy))
    assert not out.exists()


def test_non_finite_counts_in_every_float_dtype_and_skips_integers():
    import torch

    from mlm_dynamics.sources import checks

    values = torch.tensor([1.0, NAN, INF, -INF, NAN, 0.5])
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64):
        assert checks.non_finite(values.to(dtype)) == (2, 2), dtype
    assert checks.non_finite(torch.ones(3, 4)) == (0, 0)
    assert checks.non_finite(torch.arange(5)) == (0, 0)  # integer buffers (position ids)
    assert checks.non_finite(torch.ones(2, dtype=torch.bool)) == (0, 0)


def test_a_tensor_is_checked_piece_by_piece(monkeypatch):
    import torch

    from mlm_dynamics.sources import checks

    monkeypatch.setattr(checks, "FINITE_CHUNK", 4)
    values = torch.zeros(3, 5)
    values[0, 1], values[2, 4] = NAN, INF  # in the first and the last of 4 pieces
    assert checks.non_finite(values) == (1, 1)


def test_a_good_checkpoint_gets_its_record(tiny_checkpoint, tmp_path, capfd):
    out = tmp_path / "checks" / f"{MODEL}-{STEP}.json"
    assert run_check(tiny_checkpoint, out, "--layers", "2") == 0
    record = json.loads(out.read_text())
    digest = hashlib.sha256((tiny_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert record == {
        "model": MODEL,
        "step": STEP,
        "checkpoint": str(tiny_checkpoint),
        "tokenizer": str(tiny_checkpoint),
        "model_type": "xlm-roberta",
        "layers": 2,
        "hidden_size": 32,
        "vocab_size": 2000,
        "tokenizer_size": 2000,
        "masked_lm_head": True,  # tied decoder: not in the file, not reported missing
        "weights": {"model.safetensors": digest},
        "weights_sha256": hashlib.sha256(digest.encode()).hexdigest(),
    }
    captured = capfd.readouterr()
    assert captured.out.count("\n") == 1 and captured.out.startswith(f"{MODEL} step {STEP}: ")
    assert "masked-LM head" in captured.out and captured.err == ""


def test_the_configured_tokenizer_serves_a_checkpoint_without_one(tiny_checkpoint, copy, tmp_path):
    remove("tokenizer.json", "tokenizer_config.json")(copy)
    out = tmp_path / "check.json"
    assert run_check(copy, out, "--tokenizer", str(tiny_checkpoint)) == 0
    assert json.loads(out.read_text())["tokenizer"] == str(tiny_checkpoint)


def test_an_explicit_tokenizer_wins_over_the_checkpoints_own(tiny_checkpoint, copy, tmp_path):
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, tokenizer / name)
    out = tmp_path / "check.json"
    assert run_check(copy, out, "--tokenizer", str(tokenizer)) == 0
    assert json.loads(out.read_text())["tokenizer"] == str(tokenizer)


def test_a_configured_tokenizer_without_files_is_one_line(copy, tmp_path, capfd):
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    shutil.copy(copy / "tokenizer_config.json", tokenizer)
    out = tmp_path / "check.json"
    assert run_check(copy, out, "--tokenizer", str(tokenizer)) == 2
    message = f"{MODEL} step {STEP}: {tokenizer}: no tokenizer files ({TOKENIZER_NAMES})"
    assert_one_error_line(capfd, message)
    missing = tmp_path / "nowhere"
    assert run_check(copy, out, "--tokenizer", str(missing)) == 2
    assert_one_error_line(capfd, f"{MODEL} step {STEP}: {missing}: no such tokenizer directory")


def test_sharded_weights_are_hashed_per_file(tiny_checkpoint, copy, tmp_path):
    from transformers import AutoModelForMaskedLM

    (copy / "model.safetensors").unlink()
    model = AutoModelForMaskedLM.from_pretrained(tiny_checkpoint)
    model.save_pretrained(copy, safe_serialization=True, max_shard_size="200KB")
    out = tmp_path / "check.json"
    assert run_check(copy, out) == 0
    record = json.loads(out.read_text())
    assert sorted(record["weights"]) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    combined = "\n".join(sorted(record["weights"].values())).encode()
    assert record["weights_sha256"] == hashlib.sha256(combined).hexdigest()
    assert record["masked_lm_head"] is True


def encoder_only(directory: Path) -> None:
    """Save only the encoder (``XLMRobertaModel``) of the checkpoint's masked LM over it."""
    from transformers import AutoModelForMaskedLM

    base = AutoModelForMaskedLM.from_pretrained(directory).base_model
    (directory / "model.safetensors").unlink()
    base.save_pretrained(directory, safe_serialization=True)


def test_an_encoder_only_checkpoint_passes_without_head_but_bpc_refuses(copy, tmp_path, capfd):
    from mlm_dynamics.activations.extract import Encoder

    encoder_only(copy)
    out = tmp_path / "check.json"
    assert run_check(copy, out) == 0
    record = json.loads(out.read_text())
    assert record["masked_lm_head"] is False and record["layers"] == 2
    assert Encoder.from_checkpoint(copy).n_hidden_states == 3  # activations need no head
    message = (
        f"{copy}: no masked-LM head in the weights (lm_head.* missing): bits per character "
        f"would come from a randomly initialised head"
    )
    with pytest.raises(InputError) as error:
        bpc.load_checkpoint(copy, None)
    assert str(error.value) == message
    capfd.readouterr()
    argv = ["bpc", "--checkpoint", str(copy), "--text", "resources/heldout/de.txt.gz"]
    argv += ["--model", MODEL, "--step", str(STEP), "--language", "de", "--resamples", "10"]
    argv += ["--confidence", "0.95", "--bootstrap-seed", "0", "--min-sentences", "1"]
    for key in ("estimate", "maskings", "mask_probability", "batch_tokens"):
        argv += [f"--{key.replace('_', '-')}", str(schema_default(f"bpc.{key}"))]
    assert cli(argv + ["--max-sentences", "2", "--out", str(tmp_path / "bpc.parquet")]) == 2
    assert_one_error_line(capfd, f"{MODEL} step {STEP}: {message}")
    assert not (tmp_path / "bpc.parquet").exists()


# ---------------------------------------------------------------- the loaders of the commands

DIRECT_CASES = [
    case
    for case in BAD_CHECKPOINT_CASES
    if case[0] not in DIRECT_LOADER_DIFFERS | {"layers-mismatch"}
]


@pytest.mark.parametrize(
    "break_checkpoint, message_format",
    [case[1:] for case in DIRECT_CASES],
    ids=[case[0] for case in DIRECT_CASES],
)
def test_bpc_loads_a_broken_checkpoint_as_one_error(copy, break_checkpoint, message_format):
    break_checkpoint(copy)
    with pytest.raises(InputError) as error:
        bpc.load_checkpoint(copy, None)
    assert str(error.value) == expected(message_format.removeprefix(PREFIX), copy)


@pytest.mark.parametrize("case_id", ["truncated", "partial-weights", "tokenizer-far-smaller"])
def test_extract_loads_a_broken_checkpoint_as_one_error(copy, case_id):
    from mlm_dynamics.activations.extract import Encoder

    _, break_checkpoint, message_format = next(c for c in BAD_CHECKPOINT_CASES if c[0] == case_id)
    break_checkpoint(copy)
    with pytest.raises(InputError) as error:
        Encoder.from_checkpoint(copy)
    assert str(error.value) == expected(message_format.removeprefix(PREFIX), copy)


def test_extract_without_tokenizer_names_the_option(copy):
    from mlm_dynamics.activations.extract import Encoder

    remove("tokenizer.json")(copy)
    with pytest.raises(InputError) as error:
        Encoder.from_checkpoint(copy)
    message = f"{copy}: no tokenizer files ({TOKENIZER_NAMES}) and no tokenizer configured"
    assert str(error.value) == message + " (--tokenizer)"


# ---------------------------------------------------------------- across steps


def check_file(checkpoint: Path, directory: Path, step: int, model: str = MODEL) -> Path:
    out = directory / f"{model}-{step}.json"
    assert run_check(checkpoint, out, model=model, step=step) == 0
    return out


def test_two_steps_with_identical_weights_are_refused(tiny_checkpoint, copy, tmp_path):
    later = check_file(copy, tmp_path, 400)
    earlier = check_file(tiny_checkpoint, tmp_path, 200)
    digest = json.loads(earlier.read_text())["weights_sha256"]
    with pytest.raises(InputError) as error:
        distinct_steps([later, earlier])
    assert str(error.value) == (
        f"models.{MODEL}: steps 200 and 400 have identical weights (sha256 {digest[:8]}...; "
        f"{earlier}, {later}): the suite serves one checkpoint under two step names"
    )
    # The same weights under two model names are two models' business, not an error.
    distinct_steps([earlier, check_file(copy, tmp_path, 400, model="other")])


def test_the_check_refuses_weights_of_an_earlier_step(tiny_checkpoint, copy, tmp_path, capfd):
    earlier = check_file(tiny_checkpoint, tmp_path, 200)
    digest = json.loads(earlier.read_text())["weights_sha256"]
    out = tmp_path / "400.json"
    capfd.readouterr()
    assert run_check(copy, out, "--earlier", str(earlier), step=400) == 2
    message = (
        f"models.{MODEL}: steps 200 and 400 have identical weights (sha256 {digest[:8]}...; "
        f"{earlier}, {out}): the suite serves one checkpoint under two step names"
    )
    assert_one_error_line(capfd, message)
    assert not out.exists()
    assert run_check(copy, out, "--earlier", step=400) == 0  # none earlier (the first step)


def test_steps_with_different_weights_pass(tiny_checkpoint, copy, tmp_path):
    import torch
    from transformers import AutoConfig, XLMRobertaForMaskedLM

    torch.manual_seed(1)
    save_weights(XLMRobertaForMaskedLM(AutoConfig.from_pretrained(copy)), copy)
    earlier = check_file(tiny_checkpoint, tmp_path, 200)
    distinct_steps([earlier, check_file(copy, tmp_path, 400)])
    assert run_check(copy, tmp_path / "again.json", "--earlier", str(earlier), step=400) == 0


def test_a_file_that_is_no_check_record_is_one_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"model": "tiny", "step": 1}')
    with pytest.raises(InputError, match=r"x\.json: no weights_sha256 \(not a check-checkpoint"):
        distinct_steps([path])
