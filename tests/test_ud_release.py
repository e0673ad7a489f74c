"""fetch-ud: a release archive built from real UD treebanks, served over loopback HTTP."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from loopback import serve_directory

from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources.ud_release import fetch_ud

SHARED_UD = Path(__file__).resolve().parents[2] / "shared" / "ud"
BUNDLED_UD = Path(__file__).resolve().parents[1] / "resources" / "ud"
UD = SHARED_UD if SHARED_UD.is_dir() else BUNDLED_UD
TREEBANKS = ["UD_English-EWT", "UD_French-GSD"]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, str]:
    """A release .tgz laid out like LINDAT's: ud-treebanks-v2.X/UD_<Name>/..., two treebanks."""
    served = tmp_path_factory.mktemp("served")
    archive = served / "ud-treebanks-v2.99.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in TREEBANKS:
            tar.add(UD / name, arcname=f"ud-treebanks-v2.99/{name}")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_only_the_configured_treebank_is_unpacked(tmp_path, release, capsys):
    archive, digest = release
    directory = tmp_path / "ud-release"
    with serve_directory(archive.parent) as url:
        argv = ["fetch-ud", "--url", f"{url}/{archive.name}", "--sha256", digest]
        assert cli([*argv, "--directory", str(directory), "UD_French-GSD"]) == 0
    assert sorted(p.name for p in directory.iterdir()) == ["UD_French-GSD"]
    for source in (UD / "UD_French-GSD").iterdir():
        assert (directory / "UD_French-GSD" / source.name).read_bytes() == source.read_bytes()

    # Already there: nothing is downloaded (the URL no longer answers).
    assert fetch_ud("http://127.0.0.1:9/gone.tgz", digest, ["UD_French-GSD"], directory) == []


def test_wrong_checksum_fails_and_leaves_nothing(tmp_path, release, capsys):
    archive, digest = release
    directory = tmp_path / "ud-release"
    wrong = "f" * 64
    with serve_directory(archive.parent) as url:
        argv = ["fetch-ud", "--url", f"{url}/{archive.name}", "--sha256", wrong]
        assert cli([*argv, "--directory", str(directory), "UD_English-EWT"]) == 2
    assert f"the config pins {wrong}" in capsys.readouterr().err
    assert not directory.exists() or list(directory.iterdir()) == []


def test_a_missing_treebank_and_a_path_climbing_out_are_refused(tmp_path, release):
    archive, digest = release
    with pytest.raises(InputError, match="the archive has no UD_Klingon-KGD"):
        fetch_ud(str(archive), digest, ["UD_Klingon-KGD"], tmp_path / "a")
    assert list((tmp_path / "a").iterdir()) == []

    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = b"pwned\n"
        info = tarfile.TarInfo("UD_English-EWT/../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    evil_digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    with pytest.raises(InputError, match="refused to unpack"):
        fetch_ud(str(evil), evil_digest, ["UD_English-EWT"], tmp_path / "b" / "ud")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "b" / "escaped.txt").exists()
    assert list((tmp_path / "b" / "ud").iterdir()) == []
