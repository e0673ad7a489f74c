"""``fetch-checkpoint``: one model x step from the Hub or from a fairseq file, as a HF directory.

Every source ends in the same place and format: a directory with ``config.json``, the weights (as
safetensors where the source has them), the tokenizer files, and ``checksums.json`` (the sha256 of
each file, and of the fetched file). The directory appears atomically, only once everything in it
is complete and verified, so a failed or interrupted fetch leaves no half-written checkpoint.

- hub: ``huggingface_hub.snapshot_download`` into the user's Hugging Face cache (``HF_HOME`` and
  ``HF_HUB_OFFLINE`` are respected; a step already in the cache is not downloaded again), then the
  needed files are hard-linked (or copied) into the step directory. Repositories are read as data:
  remote code is never run.
- fairseq: a fairseq RoBERTa/XLM-R ``.pt`` (a path or an http(s) URL) converted to
  ``XLMRobertaForMaskedLM`` by :mod:`mlm_dynamics.sources.fairseq`, without fairseq, with the
  XLM-R tokenizer from a directory or a hub repository (:func:`fairseq_tokenizer`).

This module owns the fetching (the hub cache, downloads, checksums); :mod:`.fairseq` only
converts a file already on disk and imports nothing from here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlm_dynamics.atomic import atomic_dir, save_json
from mlm_dynamics.errors import InputError

CONFIG_FILES = ["config.json"]
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
]
# Safetensors first; the pickled PyTorch format only for revisions that have nothing else.
WEIGHT_FORMATS = [
    ["model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json"],
    ["pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"],
]
CHECKSUMS = "checksums.json"
RETRY_DELAYS = (2.0, 8.0, 30.0)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_pin(what: str, actual: str, pinned: str | None) -> None:
    if pinned and actual != pinned.lower():
        raise InputError(f"{what}: sha256 is {actual}, but the config pins {pinned}")


def write_checksums(directory: Path, source: dict, fetched_sha256: str) -> None:
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}
    save_json(directory / CHECKSUMS, {"source": source, "sha256": fetched_sha256, "files": files})


def check_layers(config, layers: int | None, what: str) -> None:
    found = getattr(config, "num_hidden_layers", None)
    if layers is not None and found is not None and found != layers:
        raise InputError(f"{what}: the checkpoint has {found} layers, but the config says {layers}")


# ---------------------------------------------------------------- hub


def _weight_files(directory: Path) -> list[Path]:
    import fnmatch

    return [
        p
        for p in directory.iterdir()
        if any(fnmatch.fnmatch(p.name, pattern) for fmt in WEIGHT_FORMATS for pattern in fmt)
    ]


def _snapshot(repo: str, revision: str, patterns: list[str], retries: int) -> Path:
    """One ``snapshot_download`` into the HF cache, retrying transient failures with backoff."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"hub repository {repo!r} at revision {revision!r}"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    for attempt in range(retries + 1):
        try:
            return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
        except RevisionNotFoundError:
            raise InputError(f"{where}: no such revision") from None
        except GatedRepoError:
            raise InputError(f"{where}: gated repository (log in with `hf auth login`)") from None
        except RepositoryNotFoundError:
            raise InputError(f"{where}: no such repository (or it is private)") from None
        except LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError)
            # No connection or a server error, and nothing in the cache: maybe transient.
            error = exc
        except EntryNotFoundError:
            raise InputError(f"{where}: a listed file is missing on the server") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status < 500:
                raise InputError(f"{where}: HTTP {status} from the Hub") from None
            error = exc
        except Exception as exc:
            # The HTTP client's transport errors differ between huggingface_hub versions.
            transport = {"TransportError", "ConnectionError", "Timeout", "TimeoutError"}
            if not isinstance(exc, OSError) and not transport & {
                cls.__name__ for cls in type(exc).__mro__
            }:
                raise
            error = exc
        if offline or attempt == retries:
            reason = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
            raise InputError(
                f"{where}: {reason} and the cache has no copy ({type(error).__name__})"
            )
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"{where}: {first_line}; retrying in {delay:.0f} s", file=sys.stderr)
        time.sleep(delay)
    raise AssertionError("unreachable")


def _link_or_copy(source: Path, target: Path) -> None:
    # Cache entries are symlinks to blobs; a hard link to the blob costs no space and stays valid
    # if the cache is cleaned. Across file systems, copy.
    source = source.resolve()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def fetch_hub(
    repo: str,
    revision: str,
    output: Path,
    layers: int | None = None,
    sha256: str | None = None,
    retries: int = len(RETRY_DELAYS),
) -> None:
    from transformers import AutoConfig

    where = f"hub repository {repo!r} at revision {revision!r}"
    for weights in WEIGHT_FORMATS:
        snapshot = _snapshot(repo, revision, CONFIG_FILES + TOKENIZER_FILES + weights, retries)
        weight_files = _weight_files(snapshot)
        if weight_files:
            break
    else:
        raise InputError(f"{where}: no model.safetensors or pytorch_model.bin in it")
    if not (snapshot / "config.json").is_file():
        raise InputError(f"{where}: no config.json in it")
    single = [p for p in weight_files if not p.name.endswith(".index.json")]
    fetched_sha = sha256_file(single[0]) if len(single) == 1 else ""
    if sha256 and len(single) != 1:
        raise InputError(f"{where}: sha256 pins need a single weights file, found {len(single)}")
    check_pin(f"{where}: {single[0].name}", fetched_sha, sha256)
    with atomic_dir(output) as tmp:
        for path in snapshot.iterdir():
            if path.is_file():
                _link_or_copy(path, tmp / path.name)
        try:
            config = AutoConfig.from_pretrained(tmp, trust_remote_code=False)
        except (ValueError, OSError) as exc:
            raise InputError(
                f"{where}: config.json is not a built-in architecture: {exc}"
            ) from None
        check_layers(config, layers, where)
        source = {"type": "hub", "repo": repo, "revision": revision}
        write_checksums(tmp, source, fetched_sha)


# ---------------------------------------------------------------- fairseq


def _download(url: str, target: Path, retries: int) -> None:
    """Download ``url`` to ``target`` (a temporary file), retrying transient failures."""
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
                expected = response.headers.get("Content-Length")
            if expected is not None and target.stat().st_size != int(expected):
                raise OSError(f"got {target.stat().st_size} of {expected} bytes")
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == retries:
                raise InputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            reason = exc
        except (urllib.error.URLError, OSError) as exc:
            if attempt == retries:
                raise InputError(f"{url}: download failed: {exc}") from None
            reason = exc
        delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
        print(f"download failed ({reason}); retrying in {delay:.0f} s", file=sys.stderr)
        time.sleep(delay)


def local_path(location: str) -> Path:
    parts = urllib.parse.urlsplit(location)
    return (
        Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else Path(location)
    )


def fetched_file(url: str, directory: str | Path, name: str, retries: int, missing: str) -> Path:
    """The file at ``url``: downloaded into ``directory`` (http/https), else the local path
    itself; ``missing`` is the error when a local file does not exist."""
    if urllib.parse.urlsplit(url).scheme in {"http", "https"}:
        path = Path(directory) / name
        _download(url, path, retries)
        return path
    path = local_path(url)
    if not path.is_file():
        raise InputError(missing)
    return path


def fairseq_tokenizer(location: str):
    """The XLM-R tokenizer of a fairseq checkpoint: a local directory, or a hub repository id
    (its tokenizer files only, through the hub cache)."""
    from transformers import AutoTokenizer

    path = Path(location)
    if not path.is_dir():
        if path.is_absolute() or location.startswith(".") or location.count("/") != 1:
            raise InputError(f"{location}: no such tokenizer directory")
        path = _snapshot(location, "main", TOKENIZER_FILES, retries=1)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{location}: not a tokenizer directory: {exc}") from None


def fetch_fairseq(
    url: str,
    tokenizer: str,
    output: Path,
    layers: int | None = None,
    sha256: str | None = None,
    retries: int = len(RETRY_DELAYS),
) -> None:
    from mlm_dynamics.sources.fairseq import convert_checkpoint

    with tempfile.TemporaryDirectory(prefix=".download-", dir=_existing_parent(output)) as tmpdir:
        path = fetched_file(
            url, tmpdir, "checkpoint.pt", retries, f"{url}: no such checkpoint file"
        )
        fetched_sha = sha256_file(path)
        check_pin(url, fetched_sha, sha256)
        tok = fairseq_tokenizer(tokenizer)
        model = convert_checkpoint(path, tok, what=url)
        check_layers(model.config, layers, url)
        with atomic_dir(output) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            write_checksums(
                tmp, {"type": "fairseq", "url": url, "tokenizer": tokenizer}, fetched_sha
            )


def _existing_parent(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent


# ---------------------------------------------------------------- command


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Fetch one model x step into a Hugging Face-format directory.",
    )
    parser.add_argument("--source", required=True, choices=["hub", "fairseq"])
    parser.add_argument("--repo", help="hub: repository id")
    parser.add_argument("--revision", help="hub: revision (branch, tag or commit)")
    parser.add_argument("--url", help="fairseq: path or http(s) URL of the .pt file")
    parser.add_argument("--tokenizer", help="fairseq: XLM-R tokenizer directory or hub repo id")
    parser.add_argument("--layers", type=int, help="expected number of transformer layers")
    parser.add_argument("--sha256", default="", help="expected sha256 of the fetched file")
    parser.add_argument("--retries", type=int, default=len(RETRY_DELAYS))
    parser.add_argument("--output", required=True, type=Path, help="the step directory")
    parser.add_argument("--model", help="the run (model or model/seedN), named in errors")
    parser.add_argument("--step", type=int, help="the step, named in errors")
    args = parser.parse_args(argv)
    if args.source == "hub" and (not args.repo or not args.revision):
        parser.error("--source hub needs --repo and --revision")
    if args.source == "fairseq" and (not args.url or not args.tokenizer):
        parser.error("--source fairseq needs --url and --tokenizer")
    try:
        if args.source == "hub":
            fetch_hub(args.repo, args.revision, args.output, args.layers, args.sha256, args.retries)
        else:
            fetch_fairseq(
                args.url, args.tokenizer, args.output, args.layers, args.sha256, args.retries
            )
    except InputError as error:
        if args.model is None:
            raise
        # Which run and step, as check-checkpoint says it (a seed is part of the run's name).
        raise InputError(f"{args.model} step {args.step}: {error}") from None
    print(f"wrote {args.output}")
