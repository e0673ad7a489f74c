"""The environment a process computes in: what a number made here can differ by elsewhere.

:func:`environment` is recorded twice: by ``pretrain`` in each embedded checkpoint it saves (the
environment that trained it) and by ``fingerprint`` in ``results/environment.json`` (the one that
made the results). Imports nothing of the package, so both can use it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

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
