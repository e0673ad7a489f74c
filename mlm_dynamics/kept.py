"""A failed run never costs the outputs of the last good one.

Snakemake deletes a job's outputs before the job runs, and a failed job's partial outputs after
it. A mistake found only inside a job (a held-out text that is no longer UTF-8, a checkpoint whose
weights were replaced by another step's) would therefore cost the results of the last good run.
So at start-up every existing output of the jobs about to run is hard-linked into a store (the
same bytes and mtime, no copy); when the run fails, each output that is then missing is put
back; when it succeeds, the store is dropped. An output that a job re-made in the failed run is
never replaced by its old version, and a put-back output keeps its old mtime: if what it was made
from changed, Snakemake plans its job again.

A run killed outright (no failure handler runs) leaves the store behind: the next run puts back
what is missing before it keeps anything (the plan Snakemake made before that already re-runs
those jobs).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from mlm_dynamics.atomic import atomic_path

MANIFEST = "kept.json"


class KeptOutputs:
    """The outputs of one run's jobs, kept in ``store`` until the run ends."""

    def __init__(self, store: str | os.PathLike):
        self.store = Path(store)

    def keep(self, paths: Iterable[str]) -> list[str]:
        """Link every existing path (file or directory) into the store; the paths kept."""
        self.restore()  # what a killed run left behind
        kept = []
        for path in dict.fromkeys(os.fspath(path) for path in paths):
            if os.path.lexists(path):
                _link_tree(path, self._kept(path))
                kept.append(path)
        if kept:
            with atomic_path(self.store / MANIFEST) as manifest:
                manifest.write_text(json.dumps(kept))
        return kept

    def restore(self) -> list[str]:
        """Put back every kept path that is missing now; drop the store; the paths put back."""
        try:
            kept = json.loads((self.store / MANIFEST).read_text())
        except FileNotFoundError:
            kept = []
        restored = []
        for path in kept:
            if not os.path.lexists(path) and os.path.lexists(self._kept(path)):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._kept(path), path)
                restored.append(path)
        self.discard()
        return restored

    def discard(self) -> None:
        shutil.rmtree(self.store, ignore_errors=True)

    def _kept(self, path: str) -> Path:
        relative = Path(os.path.normpath(path))
        if relative.is_absolute():
            return self.store / "absolute" / relative.relative_to(relative.anchor)
        return self.store / "relative" / relative


def _link_tree(source: str, target: Path) -> None:
    """A hard-linked copy of a file or directory (a copy where the store is on another device)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
    elif os.path.isdir(source):
        target.mkdir()
        for entry in os.scandir(source):
            _link_tree(entry.path, target / entry.name)
    else:
        try:
            os.link(source, target)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copy2(source, target)
