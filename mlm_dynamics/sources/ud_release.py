"""``fetch-ud``: the configured treebanks of a pinned Universal Dependencies release.

A UD release is one archive (``ud-treebanks-v2.X.tgz`` on LINDAT) with a ``UD_<Name>/`` folder
per treebank, usually under one top-level folder. This command downloads it (or reads it from a
path), checks its sha256 before anything is unpacked, and unpacks only the wanted ``UD_<Name>``
folders into the release directory, each appearing atomically. Treebanks already in the directory
are kept as they are; when all are there, nothing is downloaded. Only regular files and folders are
unpacked, and only inside their treebank folder: no links, devices or paths that climb out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.fetch import RETRY_DELAYS, check_pin, fetched_file, sha256_file


def treebank_of(member: str, wanted: set[str]) -> tuple[str, PurePosixPath] | None:
    """(treebank, path inside it) when ``member`` lies in a wanted ``UD_<Name>`` folder.

    The folder may be at the top of the archive or one level down (``ud-treebanks-v2.X/``)."""
    parts = PurePosixPath(member).parts
    for depth in (0, 1):
        if len(parts) > depth and parts[depth] in wanted:
            return parts[depth], PurePosixPath(*parts[depth + 1 :])
    return None


def safe_relative(path: PurePosixPath, archive: str, member: str) -> PurePosixPath:
    if path.is_absolute() or ".." in path.parts:
        raise InputError(f"{archive}: refused to unpack {member!r} (it points outside its folder)")
    return path


def unpack(archive: Path, treebanks: list[str], directory: Path, what: str) -> None:
    wanted = set(treebanks)
    directory.mkdir(parents=True, exist_ok=True)
    found: set[str] = set()
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=directory) as tmp:
        staging = Path(tmp)
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    place = treebank_of(member.name, wanted)
                    if place is None:
                        continue
                    treebank, inner = place
                    inner = safe_relative(inner, what, member.name)
                    target = staging / treebank / inner
                    found.add(treebank)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                    # Links, devices and fifos are skipped: a treebank is plain files.
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"{what}: not a readable .tgz archive: {exc}") from None
        missing = sorted(wanted - found)
        if missing:
            raise InputError(f"{what}: the archive has no {', '.join(missing)}")
        # Each treebank appears whole, by one rename from the staging folder beside it.
        for treebank in treebanks:
            if (directory / treebank).exists():
                shutil.rmtree(directory / treebank)
            os.replace(staging / treebank, directory / treebank)


def fetch_ud(
    url: str, sha256: str, treebanks: list[str], directory: Path, retries: int = len(RETRY_DELAYS)
) -> list[str]:
    """Make every treebank in ``treebanks`` a folder of ``directory``; return those unpacked."""
    needed = [name for name in treebanks if not (directory / name).is_dir()]
    if not needed:
        return []
    if not url:
        raise InputError(f"ud_release.url: empty, and {directory} lacks {', '.join(needed)}")
    if not sha256:
        raise InputError("ud_release.sha256: empty; pin the release archive's sha256")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=directory) as tmp:
        missing = f"ud_release.url: no such file {url}"
        archive = fetched_file(url, tmp, "release.tgz", retries, missing)
        check_pin(f"ud_release.url {url}", sha256_file(archive), sha256)
        unpack(archive, needed, directory, url)
    return needed


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Download a pinned UD release and unpack the listed treebanks.",
    )
    parser.add_argument("--url", required=True, help="ud_release.url: a .tgz URL or path, or ''")
    parser.add_argument("--sha256", required=True, help="ud_release.sha256 of the archive")
    parser.add_argument("--directory", required=True, type=Path, help="where treebanks go")
    parser.add_argument("--retries", type=int, default=len(RETRY_DELAYS))
    parser.add_argument("treebanks", nargs="+", help="UD_<Name> folders to unpack")
    args = parser.parse_args(argv)
    unpacked = fetch_ud(
        args.url, args.sha256.strip().lower(), args.treebanks, args.directory, args.retries
    )
    print(
        f"unpacked {len(unpacked)} treebanks into {args.directory}: {' '.join(unpacked)}",
        file=sys.stderr,
    )
