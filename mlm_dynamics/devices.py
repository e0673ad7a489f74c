"""Where a job's torch work runs: one choice for every command, said once in the job's log.

The GPU rules (activations, BPC, XNLI features, SimAlign) ask for ``cuda``, and the probes for
``probing.device``; the scheduler gives a job its GPU through ``CUDA_VISIBLE_DEVICES``, and a job
that lands where CUDA is not visible runs on the CPU and says so.
"""

from __future__ import annotations

import os
import sys

DEVICES = ("cpu", "cuda")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def select_device(requested: str):
    """The ``torch.device`` of ``requested`` ("cuda" or "cpu"): CUDA when asked for and visible,
    otherwise the CPU; logged with the job's threads and its ``CUDA_VISIBLE_DEVICES``."""
    import torch

    if requested not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    visible = f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}"
    if requested == "cuda" and torch.cuda.is_available():
        device = torch.device("cuda")
        log(f"device: cuda ({torch.cuda.get_device_name(device)}; {visible})")
        return device
    threads = torch.get_num_threads()
    if requested == "cuda":
        log(f"device: CUDA is not available, running on CPU ({threads} threads; {visible})")
    else:
        log(f"device: cpu ({threads} threads)")
    return torch.device("cpu")
