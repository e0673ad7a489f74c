"""Reading plain-text corpora (one sentence a line, optionally gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

from mlm_dynamics.errors import InputError


def read_lines(path: str | Path, limit: int | None = None) -> list[str]:
    """Non-empty stripped lines of a text file (``.gz`` is decompressed); at most ``limit``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{number}: not UTF-8 text ({exc.reason})") from None
            if line:
                lines.append(line)
            if limit is not None and len(lines) >= limit:
                break
    return lines
