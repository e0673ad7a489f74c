"""Which steps a model has: the configured list, or the checkpoints found on disk.

A model with ``steps: discover`` has the steps its ``glob`` matches, the single '*' being the
step number; the plan (every parse of the workflow) and ``watch`` (between runs) both ask here.
"""

from __future__ import annotations

import glob
import os
import re

from mlm_dynamics.config_check import CHECKPOINT_DONE
from mlm_dynamics.errors import InputError


def discover_steps(spec: dict) -> tuple[list[int], list[int]]:
    """(complete, incomplete) steps on disk of a model with ``steps: discover``, ascending: what
    its ``glob`` matches, the single '*' being the step number. A ``local`` model's steps are
    directories, complete when they appeared by rename or hold ``CHECKPOINT_DONE``
    (see ``models.<name>.complete``); a half-written one is never listed as complete."""
    pattern = spec["glob"]
    regex = re.compile(re.escape(pattern).replace(r"\*", r"(\d+)") + "$")
    complete, incomplete = [], []
    for path in glob.glob(pattern):
        match = regex.match(path)
        if not match:
            continue
        step = int(match.group(1))
        if spec["source"] != "local":
            complete.append(step)
        elif not os.path.isdir(path):
            continue  # a file beside the step directories (an archive, a log) is no step
        elif spec.get("complete") == "marker" and not os.path.isfile(
            os.path.join(path, CHECKPOINT_DONE)
        ):
            incomplete.append(step)
        else:
            complete.append(step)
    return sorted(complete), sorted(incomplete)


def model_steps(model: str, spec: dict) -> list[int]:
    """A model's configured (or discovered) steps, ascending; none found is refused, naming the
    glob (and the step directories still waiting for their marker)."""
    steps = spec["steps"]
    if steps != "discover":
        return sorted(steps)
    pattern = spec["glob"]
    found, incomplete = discover_steps(spec)
    if not found:
        waiting = (
            f" ({len(incomplete)} step directories have no {CHECKPOINT_DONE} yet)"
            if incomplete
            else ""
        )
        raise InputError(f"config: models.{model}.glob: no checkpoint matches {pattern!r}{waiting}")
    return found
