"""What the numbers depend on: the environment fingerprint of a results tree.

``fingerprint`` writes ``results/environment.json`` beside the tidy table (re-made with it)::

    {"config_sha256": "...",          # of the validated config, defaults filled in
     "seeds": {"pretrain.seed": 0, "probing.seeds": 3, ...},     # every seed key of the config
     "threads": {"pretrain.threads": 1, ...},                    # every thread count of the config
     "environment": {...},            # this process: see mlm_dynamics.environment
     "checkpoints": {"tiny-xlmr/800": {...}, ...}}  # each embedded checkpoint's pretraining job

Same machine, same packages, same config: every number of the workflow is bit-identical. What
moves across machines is the embedded checkpoints (the CPU's vector instructions and the BLAS
code path change float sums in pretraining), which is why each checkpoint records the
environment of the job that trained it. Nothing here depends on the time or on paths, so two
identical runs write identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mlm_dynamics.atomic import save_json
from mlm_dynamics.environment import environment
from mlm_dynamics.pretrain import trained_environment


def config_sha256(config: dict) -> str:
    """The validated config's digest: key order and formatting do not change it."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def keys_named(config: dict, wanted, prefix: str = "") -> dict:
    """``{"a.b.seed": value}`` for every key for which ``wanted(key)`` holds, at any depth."""
    found = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            found |= keys_named(value, wanted, f"{dotted}.")
        elif wanted(key):
            found[dotted] = value
    return found


def record(config: dict, checkpoints: list[Path]) -> dict:
    """The fingerprint of a results tree made with ``config``; ``checkpoints`` are embedded
    checkpoint directories, whose pretraining state holds the environment that trained them."""
    paths = [Path(path) for path in checkpoints]
    trained = {f"{path.parent.name}/{path.name}": trained_environment(path) for path in paths}
    return {
        "config_sha256": config_sha256(config),
        "seeds": keys_named(config, lambda key: "seed" in key),
        "threads": keys_named(config, lambda key: key == "threads"),
        # how intervals and verdicts were reached (resamples, level, false discovery rate)
        "statistics": dict(sorted(config.get("statistics", {}).items())),
        "environment": environment(),
        "checkpoints": trained,
    }


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.add_argument("--config", required=True, help="the validated config, as JSON")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="embedded checkpoints")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    save_json(args.out, record(json.loads(args.config), [Path(p) for p in args.checkpoints]))
