"""Does the embedded pretraining depend on the CPU's instruction set? Measured on one machine.

    python benchmarks/cpu_capability.py              # ~5 minutes on 2 cores
    python benchmarks/cpu_capability.py --steps 100
    python benchmarks/cpu_capability.py --tables A/results B/results   # two whole runs compared

The same pretraining job (the default config's model and settings, ``--steps`` updates from step
0, one thread, the workflow's own ``pretrain`` command) runs in child processes that differ only
in their environment: torch's ATen CPU kernels forced to an instruction set with
``ATEN_CPU_CAPABILITY`` (``default``: scalar; ``avx2``), and MKL's code path (torch's BLAS here)
pinned or not with ``MKL_CBWR`` (conditional numerical reproducibility). It prints, per pair,
whether the saved weights are bit-identical, the largest absolute weight difference, and each
run's wall time: what a second machine with other vector instructions would see, and what pinning
both would cost.

``--tables`` compares the tidy tables of two runs of the same config (e.g. the default run with and
without ``ATEN_CPU_CAPABILITY=default``): the largest move of each test-split metric at the last
layer, in its own units, and how many of the rows' intervals contain the other run's value.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parents[1]

# (name, environment): what each child process runs with.
VARIANTS = [
    ("native", {}),
    ("native, again", {}),
    ("ATen default", {"ATEN_CPU_CAPABILITY": "default"}),
    ("ATen avx2 + MKL_CBWR=COMPATIBLE", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}),
    ("ATen default + MKL_CBWR=COMPATIBLE",
     {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}),
]  # fmt: skip
PAIRS = [
    ("native", "native, again"),
    ("native", "ATen default"),
    ("ATen avx2 + MKL_CBWR=COMPATIBLE", "ATen default + MKL_CBWR=COMPATIBLE"),
    ("native", "ATen avx2 + MKL_CBWR=COMPATIBLE"),
]


def default_plan():
    from snakemake.utils import validate

    from mlm_dynamics.config_check import SCHEMA
    from mlm_dynamics.plan import Plan

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["pretrain"]["texts"] = [str(REPO / path) for path in config["pretrain"]["texts"]]
    validate(config, str(SCHEMA), set_default=True)
    return config, Plan(config)


def run(argv: list[str], env: dict, log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "mlm_dynamics", *argv],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    return time.perf_counter() - started


def compare(a: Path, b: Path) -> tuple[bool, float]:
    """(bit-identical weights, largest absolute difference of any weight)."""
    from safetensors.numpy import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    identical = all(left[k].tobytes() == right[k].tobytes() for k in left)
    worst = max(float(abs(left[k].astype("float64") - right[k]).max()) for k in left)
    return identical, worst


def compare_tables(a: Path, b: Path) -> None:
    """Per (task, metric, in-language or transfer): the largest and the median |difference| of
    seed 0's test values at the last layer between two runs, the largest's row, and the share of
    rows whose interval holds the other run's value."""
    from mlm_dynamics.analysis import tables

    left, right = (tables.read_table(path / "tables/probing.parquet") for path in (a, b))
    both = left.merge(right, on=tables.KEY, suffixes=("_a", "_b"))
    if len(both) != len(left) or len(both) != len(right):
        sys.exit(f"error: {a} and {b} do not have the same rows (not the same config?)")
    last = both.groupby(["model", "task"]).layer.transform("max")
    rows = both[(both.split == "test") & (both.seed == 0) & (both.layer == last)]
    rows = rows.assign(move=(rows.value_a - rows.value_b).abs())
    inside = (rows.ci_low_a <= rows.value_b) & (rows.value_b <= rows.ci_high_a)
    kind = (rows.train_lang == rows.test_lang).map({True: "in-language", False: "transfer"})
    rows = rows.assign(inside=inside, kind=kind)
    print("task | metric | kind | rows | largest |difference| | median | at | rows whose interval "
          "holds the other")  # fmt: skip
    for (task, metric, kind), group in rows.groupby(["task", "metric", "kind"]):
        worst = group.loc[group.move.idxmax()]
        print(f"{task} | {metric} | {kind} | {len(group)} | {worst.move:.4f} | "
              f"{group.move.median():.4f} | step {worst.step} "
              f"{worst.train_lang}->{worst.test_lang} ({worst.value_a:.4f} vs {worst.value_b:.4f})"
              f" | {group.inside.mean():.0%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="updates from step 0")
    parser.add_argument("--tables", nargs=2, type=Path, metavar="RESULTS", help="two results/")
    args = parser.parse_args()
    if args.tables:
        compare_tables(*args.tables)
        return
    import shlex

    import torch

    config, plan = default_plan()
    model = next(iter(config["models"]))
    settings = shlex.split(plan.pretrain_arguments(SimpleNamespace(model=model, step="0")))
    texts = config["pretrain"]["texts"]
    print(f"torch {torch.__version__}, native ATen capability "
          f"{torch.backends.cpu.get_cpu_capability()}; default config's {model}, "
          f"{args.steps} updates, 1 thread", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cpu_capability.") as tmp:
        work = Path(tmp)
        run(["train-tokenizer", "--texts", *texts, "--vocab-size",
             str(config["pretrain"]["vocab_size"]), "--out", str(work / "tokenizer")], {},
            work / "tokenizer.log")  # fmt: skip
        seconds, out = {}, {}
        for name, env in VARIANTS:
            out[name] = work / name.replace(" ", "_").replace(",", "").replace("+", "")
            seconds[name] = run(
                ["pretrain", "--texts", *texts, "--tokenizer", str(work / "tokenizer"),
                 "--step", str(args.steps), *settings, "--threads", "1", "--out", str(out[name])],
                {**env, "OMP_NUM_THREADS": "1"}, work / f"{out[name].name}.log",
            )  # fmt: skip
            print(f"  {name}: {seconds[name]:.1f} s", flush=True)
        print("\npair | bit-identical | max |weight difference| | wall s")
        for a, b in PAIRS:
            identical, worst = compare(out[a], out[b])
            print(f"{a} vs {b} | {'yes' if identical else 'NO'} | {worst:.2e} | "
                  f"{seconds[a]:.1f} vs {seconds[b]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
