"""How long Snakemake takes to plan the paper's preset, and how the plan grows.

Dry-runs (``snakemake -n``, no network, nothing written but Snakemake's own metadata) the preset
cut to several steps x languages sizes, and prints the seconds, the job count, and jobs per
step x language: that ratio levels off when the DAG is linear in steps x languages (per-step and
per-language jobs, e.g. fetching a checkpoint or preparing a treebank, only add lower-order terms).

    python benchmarks/dag_scale.py                       # configs/xlmr-replica.yaml, full DAG
    python benchmarks/dag_scale.py --sizes 39x44         # the full preset only
    python benchmarks/dag_scale.py --targets activations # only up to the activation cache
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = ["10x11", "20x22", "39x44", "39x11", "10x44"]


def cut_config(config: dict, steps: int, languages: int) -> dict:
    """The preset with the first ``steps`` steps of every model and the first ``languages``
    languages (transfer languages and release treebanks cut to match)."""
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy
    for spec in config["models"].values():
        if isinstance(spec["steps"], list):
            if steps > len(spec["steps"]):
                sys.exit(f"error: the preset has only {len(spec['steps'])} steps")
            spec["steps"] = spec["steps"][:steps]
    names = list(config["languages"])
    if languages > len(names):
        sys.exit(f"error: the preset has only {len(names)} languages")
    kept = names[:languages]
    config["languages"] = {lang: config["languages"][lang] for lang in kept}
    config["transfer_languages"] = [
        lang for lang in config.get("transfer_languages", []) if lang in kept
    ]
    folders = {Path(spec["treebank"]).name for spec in config["languages"].values()}
    release = config.get("ud_release", {})
    if release.get("treebanks"):
        release["treebanks"] = [name for name in release["treebanks"] if name in folders]
    return config


def activation_targets(config: dict) -> list[str]:
    return [
        f"results/activations/{model}/{step}/{lang}"
        for model, spec in config["models"].items()
        for step in spec["steps"]
        for lang, lang_spec in config["languages"].items()
        if "treebank" in lang_spec
    ]


def dry_run(config: dict, targets: str) -> tuple[float, float, dict[str, int]]:
    """Wall and CPU seconds of one ``snakemake -n``, and its job counts per rule (and 'total')."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=ROOT, prefix=".bench-") as f:
        yaml.safe_dump(config, f)
        f.flush()
        command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"]
        command += [f"--configfile={f.name}"]
        if targets == "activations":
            command += ["--", *activation_targets(config)]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        sys.exit(f"error: snakemake -n failed:\n{tail}")
    counts = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", result.stdout + result.stderr, re.M)
    }
    if "total" not in counts:
        counts["total"] = 0  # nothing to do
    return seconds, cpu, counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(ROOT / "configs" / "xlmr-replica.yaml"))
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="STEPSxLANGUAGES")
    parser.add_argument("--targets", choices=["all", "activations"], default="all")
    args = parser.parse_args(argv)
    preset = yaml.safe_load(Path(args.configfile).read_text())
    # CPU seconds too: on a shared machine the wall clock also measures the neighbours.
    header = f"{'steps':>5} {'langs':>5} {'jobs':>7} {'seconds':>8} {'cpu s':>7}"
    print(f"{header} {'jobs/(steps*langs)':>19}")
    rules_of_full = None
    for size in args.sizes:
        steps, languages = (int(x) for x in size.lower().split("x"))
        seconds, cpu, counts = dry_run(cut_config(preset, steps, languages), args.targets)
        ratio = counts["total"] / (steps * languages)
        row = f"{steps:>5} {languages:>5} {counts['total']:>7} {seconds:>8.1f} {cpu:>7.1f}"
        print(f"{row} {ratio:>19.2f}")
        if rules_of_full is None or steps * languages > rules_of_full[0]:
            rules_of_full = (steps * languages, size, counts)
    _, size, counts = rules_of_full
    print(f"\njobs per rule at {size}:")
    for rule, count in sorted(counts.items(), key=lambda item: -item[1]):
        if rule != "total":
            print(f"  {rule:<28} {count:>7}")


if __name__ == "__main__":
    main()
