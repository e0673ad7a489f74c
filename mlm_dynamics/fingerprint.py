"""What the numbers depend on: the environment fingerprint of a results tree.

``fingerprint`` writes ``results/environment.json`` beside the tidy table (re-made with it)::

    {"config_sha256": "...",          # of the validated config, defaults filled in
     "seeds": {"pretrain.seed": 0, "probing.seeds": 3, ...},     # every seed key of the config
     "threads": {"pretrain.threads": 1, ...},                    # every thread count of the config
     "environment": {...},            # this process: see ``environment()``
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
import importlib.metadata
import json
import os
import platform
from pathlib import Path

from mlm_dynamics.atomic import save_json

# The distributions whose versions a number can depend on.
PACKAGES = (
    "mlm-dynamics", "torch", "transformers", "tokenizers", "sentencepiece", "safetensors",
    "numpy", "scipy", "scikit-learn", "pandas", "pyarrow", "datasets", "matplotlib", "seaborn",
    "snakemake",
)  # fmt: skip
# The CPU flags that decide which kernels torch and the BLAS run.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_bf16", "asimd", "sve")  # fmt: skip
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu() -> dict:
    """The CPU's model name and which of CPU_FLAGS it has (Linux; empty elsewhere)."""
    model, flags = platform.processor(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": model, "flags": []}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    return {"model": model, "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    """This process: Python, packages, the CPU and the instruction set torch dispatches to (its
    ATen CPU capability, which ``ATEN_CPU_CAPABILITY`` can lower), torch's BLAS and threads, the
    thread variables, numpy's BLAS, the GPU if torch sees one."""
    import numpy
    import torch

    words = torch.__config__.show().split()
    blas = next(
        (w[len("BLAS_INFO=") :].rstrip(",") for w in words if w.startswith("BLAS_INFO=")), None
    )
    numpy_blas = numpy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": cpu(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "torch_blas": blas,
        "numpy_blas": numpy_blas.get("name"),
        "torch_threads": torch.get_num_threads(),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "cuda": torch.version.cuda,
        "gpu": gpu,
        "packages": package_versions(),
    }


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
    from mlm_dynamics.pretrain import STATE_FILE

    trained = {}
    for path in checkpoints:
        state = json.loads((Path(path) / STATE_FILE).read_text())
        trained[f"{Path(path).parent.name}/{Path(path).name}"] = state.get("environment")
    return {
        "config_sha256": config_sha256(config),
        "seeds": keys_named(config, lambda key: "seed" in key),
        "threads": keys_named(config, lambda key: key == "threads"),
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
