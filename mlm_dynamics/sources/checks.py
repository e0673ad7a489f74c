"""``check-checkpoint``: one model x step, checked once before any job uses it.

A checkpoint can be broken in ways that transformers does not report as errors: a directory with
only ``config.json`` gets a near-empty tokenizer (every word becomes ``<unk>``), and weights that
are missing from the file are silently initialised at random. Other breakages end in a long
traceback. This command checks, in order, the directory, ``config.json``, the weight files, the
model as loaded, that every weight is finite (a NaN or infinity would pass every load and only
fail deep inside probing), the number of layers and the tokenizer, and stops at the first failure
with one line ``NAME step N: PATH: what is wrong``. A checkpoint that passes gets a small JSON
record (sizes, whether it has a masked-LM head, and the sha256 of its weights), which lets
:func:`distinct_steps` catch a suite that serves one checkpoint under two step names.

The loading functions here (:func:`read_config`, :func:`load_model`, :func:`tokenizer_dir`,
:func:`load_tokenizer`) are also what ``extract-activations`` and ``bpc`` load through, so a
broken checkpoint is one line there too. The finiteness check reads every tensor once more, so
it runs here only: every job's checkpoint has passed this command first. torch and transformers
are imported inside functions: importing this module stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

from mlm_dynamics.atomic import save_json
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.fetch import TOKENIZER_FILES, WEIGHT_FORMATS, check_layers, sha256_file

# Files that carry a vocabulary; the others (tokenizer_config.json, special_tokens_map.json, ...)
# alone make transformers build a tokenizer of special tokens only.
SETTINGS_FILES = {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
VOCABULARY_FILES = [name for name in TOKENIZER_FILES if name not in SETTINGS_FILES | {"merges.txt"}]
# A tokenizer smaller than this share of the embedding rows is not the model's: published models
# pad their vocabularies by a few hundred rows at most (Pythia 50277 of 50304, BLOOM 250680 of
# 250880).
MIN_VOCABULARY_SHARE = 0.9
# Common words of several scripts, digits and punctuation: a real tokenizer knows some of them.
PROBE_WORDS = ["the", "and", "der", "de", "la", "и", "的", "في", "1", "."]
# How a legacy (before PyTorch 1.6) torch.save file starts: its magic number, pickled.
LEGACY_TORCH_START = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
# Elements per piece when a tensor is checked for NaN and infinity: bounds the check's own memory
# (a boolean per element) whatever the tensor's size.
FINITE_CHUNK = 1 << 24
JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: the user sees it inside an error message. A pickle that
    holds more than tensors is said in our words: torch's message advises turning the safe
    loading off, which this workflow never does (a pickle can run code)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "Weights only load failed" in text:
        return (
            "a pickle with objects other than tensors, which is never unpickled here (it could "
            "run code); save the weights as model.safetensors"
        )
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports, warnings and progress bars: the checks here say what
    matters in one line, and a failure must be the only line on stderr."""
    import warnings

    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def read_json(path: Path):
    """A JSON file's content; a syntax error names the line, as a person would look for it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or one_line(exc)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None


# ---------------------------------------------------------------- config


def read_config(checkpoint: str | os.PathLike):
    """The checkpoint's ``PretrainedConfig``, after checking what transformers would trip on."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise InputError(f"{checkpoint}: no such checkpoint directory")
    path = checkpoint / "config.json"
    if not path.is_file():
        raise InputError(f"{checkpoint}: not a Hugging Face checkpoint (no config.json)")
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a JSON object ({JSON_TYPES.get(type(obj), 'a value')})")
    check_model_type(obj.get("model_type"), path)
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(checkpoint)
    except Exception as exc:
        raise InputError(f"{path}: transformers does not accept it ({one_line(exc)})") from None


def check_model_type(model_type, path: Path) -> None:
    """The architecture must be built into transformers: remote code is never run."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type is None:
        raise InputError(f"{path}: no model_type (the architecture)")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise InputError(
            f"{path}: model_type {model_type!r} is not an architecture transformers knows"
        )


# ---------------------------------------------------------------- weight files


def weight_files(checkpoint: Path) -> list[Path]:
    """The files transformers will read the weights from (one, or the shards of an index); the
    formats in transformers' order of preference, each (single file, shard pattern, index)."""
    for single, shard_pattern, index in WEIGHT_FORMATS:
        if (checkpoint / single).is_file():
            return [checkpoint / single]
        if (checkpoint / index).is_file():
            return indexed_shards(checkpoint / index)
        shards = sorted(p for p in checkpoint.glob(shard_pattern) if p.is_file())
        if shards:
            found = f"the shards {shard_pattern} need it; {len(shards)} found"
            raise InputError(f"{checkpoint / index}: missing ({found})")
    raise InputError(f"{checkpoint}: no weights (model.safetensors or pytorch_model.bin)")


def indexed_shards(index: Path) -> list[Path]:
    obj = read_json(index)
    weight_map = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f"{index}: no weight_map (tensor name -> shard file)")
    shards = [index.parent / str(name) for name in sorted(set(weight_map.values()))]
    for shard in shards:
        if not shard.is_file():
            raise InputError(f"{shard}: missing (listed in {index.name})")
    return shards


def weights_label(files: list[Path]) -> str:
    """How messages name the weights: the file, or the shards of one index."""
    if len(files) == 1:
        return files[0].name
    return f"the {len(files)} shards {files[0].name} ... {files[-1].name}"


def check_weight_files(files: list[Path]) -> None:
    """Each weight file must be complete: a truncated download fails here, in one line, rather
    than deep in transformers' loader."""
    for path in files:
        if path.suffix == ".safetensors":
            check_safetensors(path)
        else:
            check_pickled(path)


def check_safetensors(path: Path) -> None:
    """The header must parse and its tensors cover the file exactly."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt"):
            pass
    except Exception as exc:
        reason = one_line(exc).removeprefix("Error while deserializing header: ")
        raise InputError(f"{path}: not a complete safetensors file ({reason})") from None


def check_pickled(path: Path) -> None:
    """``torch.save`` writes a zip archive (its directory at the end, so a truncated file has
    none), or, before PyTorch 1.6, a pickle that starts with torch's magic number."""
    import zipfile

    with open(path, "rb") as f:
        start = f.read(len(LEGACY_TORCH_START))
    if start != LEGACY_TORCH_START and not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a complete PyTorch file (no zip directory at its end)")


def weight_tensors(path: Path) -> Iterator[tuple[str, object]]:
    """(name, tensor) of each tensor of one weight file, in turn: a safetensors file is read one
    tensor at a time; a PyTorch file is memory-mapped where its format allows."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
        return
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (before PyTorch 1.6) file cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: the weights do not load ({one_line(exc)})") from None
    for name, tensor in state.items() if isinstance(state, dict) else ():
        if isinstance(tensor, torch.Tensor):
            yield str(name), tensor


def non_finite(tensor) -> tuple[int, int]:
    """(NaN, infinite) element counts of a tensor; (0, 0) for integer and boolean tensors.

    numpy does the test, a piece at a time, on a view of the tensor's memory (torch's own
    reductions were 10-30 times slower on a shared CPU)."""
    import numpy as np
    import torch

    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0, 0
    wide = torch.complex64 if tensor.is_complex() else torch.float32
    nan = inf = 0
    for piece in tensor.reshape(-1).split(FINITE_CHUNK):
        try:
            values = piece.numpy()
        except TypeError:  # no numpy dtype (bfloat16, float8): widened, NaN and infinity kept
            values = piece.to(wide).numpy()
        if not np.isfinite(values).all():
            nan += int(np.isnan(values).sum())
            inf += int(np.isinf(values).sum())
    return nan, inf


def check_finite_weights(files: list[Path]) -> None:
    """Every tensor of every weight file, one at a time: the first that holds a NaN or an
    infinity is named with its file and how many of its values are not finite."""
    for path in files:
        for name, tensor in weight_tensors(path):
            nan, inf = non_finite(tensor)
            if nan or inf:
                kinds = " and ".join(kind for kind, n in (("NaN", nan), ("infinity", inf)) if n)
                counts = " and ".join(str(n) for n in (nan, inf) if n)
                raise InputError(
                    f"{path}: tensor {name} holds {kinds} ({counts} of {tensor.numel()} values)"
                )


def weights_digests(files: list[Path]) -> tuple[dict[str, str], str]:
    """sha256 per weight file, and one sha256 over the sorted per-file digests (newline-joined):
    two checkpoints have the same weights exactly when the latter is the same."""
    digests = {path.name: sha256_file(path) for path in files}
    combined = hashlib.sha256("\n".join(sorted(digests.values())).encode()).hexdigest()
    return digests, combined


# ---------------------------------------------------------------- model


def load_model(
    loader, checkpoint: str | os.PathLike, head_needed_for: str | None = None, **options
):
    """``loader.from_pretrained(checkpoint, **options)``, refusing what transformers would run
    with randomly initialised weights. Returns ``(model, masked_lm_head)``.

    ``loader``: a transformers auto class (``AutoModel``, ``AutoModelForMaskedLM``).
    ``masked_lm_head`` is true when the model has a masked-LM head and none of its weights were
    missing (a decoder tied to the input embeddings counts as present). ``head_needed_for``
    (e.g. "bits per character") makes a missing head an error that says what it would spoil.
    """
    checkpoint = Path(checkpoint)
    files = weight_files(checkpoint)
    check_weight_files(files)
    try:
        with quiet_transformers():
            model, info = loader.from_pretrained(
                checkpoint, output_loading_info=True, ignore_mismatched_sizes=True, **options
            )
    except Exception as exc:
        where = files[0] if len(files) == 1 else checkpoint
        raise InputError(f"{where}: the weights do not load ({one_line(exc)})") from None
    check_loading_info(model, info, checkpoint, files)
    base_missing, head_missing = split_missing(model, info["missing_keys"])
    if base_missing:
        raise InputError(
            f"{checkpoint}: {len(base_missing)} of the model's weights are missing from "
            f"{weights_label(files)} (e.g. {base_missing[0]})"
        )
    if head_needed_for and (head_missing or model.base_model is model):
        heads = ", ".join(sorted({f"{key.split('.')[0]}.*" for key in head_missing})) or "head"
        raise InputError(
            f"{checkpoint}: no masked-LM head in the weights ({heads} missing): "
            f"{head_needed_for} would come from a randomly initialised head"
        )
    return model, model.base_model is not model and not head_missing


def check_loading_info(model, info: dict, checkpoint: Path, files: list[Path]) -> None:
    """Tensors of other shapes than the config's (loaded with ``ignore_mismatched_sizes``, so
    they are listed here rather than in a report that is logged) and other load errors."""
    where = files[0] if len(files) == 1 else checkpoint
    if info.get("error_msgs"):
        raise InputError(f"{where}: the weights do not load ({one_line(info['error_msgs'][0])})")
    prefix = f"{model.base_model_prefix}."
    mismatched = sorted(
        (key.removeprefix(prefix), list(found), list(wanted))
        for key, found, wanted in info.get("mismatched_keys", [])
    )
    if mismatched:
        key, found, wanted = mismatched[0]
        raise InputError(
            f"{where}: {len(mismatched)} tensors have shapes that do not fit config.json "
            f"(e.g. {key}: {found} in the file, {wanted} for config.json)"
        )


def split_missing(model, missing_keys) -> tuple[list[str], list[str]]:
    """Missing weights of the base model (prefix removed; the pooler, never used, left out) and
    of the head, each sorted."""
    if model.base_model is model:
        base, head = sorted(missing_keys), []
    else:
        prefix = f"{model.base_model_prefix}."
        base = sorted(k.removeprefix(prefix) for k in missing_keys if k.startswith(prefix))
        head = sorted(k for k in missing_keys if not k.startswith(prefix))
    return [key for key in base if not key.startswith("pooler.")], head


def is_causal_lm(config) -> bool:
    """Whether the architecture is a left-to-right LM: it has a causal-LM class and no masked-LM
    one, or it has both (BERT, RoBERTa) and its config makes it a decoder."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        return False
    return type(config) not in MODEL_FOR_MASKED_LM_MAPPING or bool(
        getattr(config, "is_decoder", False)
    )


def model_loader(config):
    """The masked-LM class where the architecture has one (so the head is checked too), else
    the base model."""
    from transformers import MODEL_FOR_MASKED_LM_MAPPING, AutoModel, AutoModelForMaskedLM

    return AutoModelForMaskedLM if type(config) in MODEL_FOR_MASKED_LM_MAPPING else AutoModel


# ---------------------------------------------------------------- tokenizer


def has_vocabulary(directory: Path) -> bool:
    return any((directory / name).is_file() for name in VOCABULARY_FILES)


def tokenizer_dir(
    checkpoint: str | os.PathLike, tokenizer: str | os.PathLike | None, model: str | None = None
) -> Path:
    """The tokenizer directory: ``tokenizer`` when given (an explicit choice wins), else the
    checkpoint's own. Checked for vocabulary files first, because transformers builds a
    tokenizer of special tokens only from a directory without them."""
    listed = ", ".join(["tokenizer.json", "sentencepiece.bpe.model", "vocab.txt", "..."])
    if tokenizer:
        directory = Path(tokenizer)
        if not directory.is_dir():
            raise InputError(f"{directory}: no such tokenizer directory")
        if not has_vocabulary(directory):
            raise InputError(f"{directory}: no tokenizer files ({listed})")
        return directory
    checkpoint = Path(checkpoint)
    if not has_vocabulary(checkpoint):
        configured = f"models.{model}.tokenizer" if model else "--tokenizer"
        raise InputError(
            f"{checkpoint}: no tokenizer files ({listed}) "
            f"and no tokenizer configured ({configured})"
        )
    return checkpoint


def load_tokenizer(directory: str | os.PathLike, config, **options):
    """``AutoTokenizer.from_pretrained(directory, **options)``, checked against the model."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(directory, **options)
    except Exception as exc:
        raise InputError(f"{directory}: the tokenizer does not load ({one_line(exc)})") from None
    check_vocabulary(tokenizer, directory, getattr(config, "vocab_size", None))
    check_known_words(tokenizer, directory)
    return tokenizer


def check_vocabulary(tokenizer, directory: Path, vocab_size: int | None) -> None:
    """Ids beyond the embedding would overflow it; far fewer tokens than rows means another
    model's tokenizer (or one of special tokens only)."""
    size = len(tokenizer)
    if vocab_size and not MIN_VOCABULARY_SHARE * vocab_size <= size <= vocab_size:
        raise InputError(
            f"{directory}: the tokenizer has {size} tokens, the model's vocabulary {vocab_size} "
            f"(config.json vocab_size)"
        )


def check_known_words(tokenizer, directory: Path) -> None:
    unk = tokenizer.unk_token_id
    if unk is None:
        return  # byte-level: every word has tokens of its own
    encoded = tokenizer(PROBE_WORDS, add_special_tokens=False)["input_ids"]
    if all(set(ids) <= {unk} for ids in encoded):
        raise InputError(
            f"{directory}: every test word is the unknown token {tokenizer.unk_token} "
            f"({' '.join(PROBE_WORDS)})"
        )


# ---------------------------------------------------------------- the check


def check_checkpoint(
    checkpoint: str | os.PathLike,
    tokenizer: str | os.PathLike | None,
    model: str,
    step: int,
    layers: int | None = None,
) -> dict:
    """The check record of one model x step; the first failure is ``NAME step N: PATH: ...``."""
    try:
        return checked_record(Path(checkpoint), tokenizer, model, step, layers)
    except InputError as exc:
        raise InputError(f"{model} step {step}: {exc}") from None


def checked_record(checkpoint: Path, tokenizer, model: str, step: int, layers) -> dict:
    config = read_config(checkpoint)
    _, masked_lm_head = load_model(model_loader(config), checkpoint, config=config)
    check_finite_weights(weight_files(checkpoint))
    check_layers(config, layers, str(checkpoint / "config.json"))
    directory = tokenizer_dir(checkpoint, tokenizer, model)
    tok = load_tokenizer(directory, config)
    digests, combined = weights_digests(weight_files(checkpoint))
    return {
        "model": model,
        "step": step,
        "checkpoint": str(checkpoint),
        "tokenizer": str(directory),
        "model_type": config.model_type,
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "tokenizer_size": len(tok),
        "masked_lm_head": bool(masked_lm_head),
        "weights": digests,
        "weights_sha256": combined,
    }


def summary(record: dict) -> str:
    head = "masked-LM head" if record["masked_lm_head"] else "no masked-LM head"
    return (
        f"{record['model']} step {record['step']}: {record['checkpoint']} ok: "
        f"{record['model_type']}, {record['layers']} layers of size {record['hidden_size']}, "
        f"vocabulary {record['vocab_size']} (tokenizer {record['tokenizer_size']} from "
        f"{record['tokenizer']}), {head}, weights sha256 {record['weights_sha256'][:12]}"
    )


# ---------------------------------------------------------------- across steps


def distinct_steps(check_files: list[str | os.PathLike]) -> None:
    """Refuse two steps of one model with identical weights: published checkpoint suites have
    served one file under several step names, which would make a flat, wrong learning curve."""
    distinct_records([(Path(path), read_record(Path(path))) for path in check_files])


def distinct_records(records: list[tuple[Path, dict]]) -> None:
    """:func:`distinct_steps` on (check file, record) pairs; a record may be one not yet
    written (``check-checkpoint --earlier`` checks its own before writing it)."""
    seen: dict[tuple[str, str], tuple[int, Path]] = {}
    for path, record in sorted(records, key=lambda item: (item[1]["step"], str(item[0]))):
        key = (record["model"], record["weights_sha256"])
        if key in seen:
            step, first = seen[key]
            raise InputError(
                f"models.{record['model']}: steps {step} and {record['step']} have identical "
                f"weights (sha256 {record['weights_sha256'][:8]}...; {first}, {path}): the suite "
                f"serves one checkpoint under two step names"
            )
        seen[key] = (record["step"], path)


def read_record(path: Path) -> dict:
    record = read_json(path)
    for field in ("model", "step", "weights_sha256"):
        if not isinstance(record, dict) or field not in record:
            raise InputError(f"{path}: no {field} (not a check-checkpoint record)")
    return record


# ---------------------------------------------------------------- command


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Check one model x step before use; write its check record.",
    )
    parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint's)")
    parser.add_argument("--model", required=True, help="model name (models.NAME)")
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--layers", type=int, help="expected number of transformer layers")
    earlier_help = "check records of the model's earlier steps: none may have the same weights"
    parser.add_argument("--earlier", nargs="*", default=[], help=earlier_help)
    parser.add_argument("--out", required=True, help="check record (.json)")
    args = parser.parse_args(argv)
    write_record(
        args.checkpoint, args.tokenizer, args.model, args.step, args.layers, args.earlier, args.out
    )


def write_record(checkpoint, tokenizer, model: str, step: int, layers, earlier, out) -> dict:
    """Check one model x step against itself and the records of its ``earlier`` steps, then
    write its record to ``out`` (the command's work; ``pretrain`` calls it on what it saved)."""
    record = check_checkpoint(checkpoint, tokenizer, model, step, layers)
    records = [(Path(path), read_record(Path(path))) for path in earlier]
    distinct_records(records + [(Path(out), record)])
    save_json(out, record)
    print(summary(record))
    return record
