"""How many SLURM jobs a run submits, from its dry run with the SLURM profile.

    python benchmarks/slurm_submissions.py                                # the paper's preset
    python benchmarks/slurm_submissions.py --configfile config.yaml --steps 3 --languages 5

Runs ``snakemake -n --profile workflow/profiles/slurm --configfile FILE`` (no cluster needed)
and counts the submission units Snakemake plans: each group job is one sbatch, each job of a rule
that is not a local rule one more; local rules (downloads, the table, findings, figures) run on
the submitting node. Prints the count per group or rule and the total. ``--steps``/``--languages``
cut the preset to its first steps and languages, as benchmarks/dag_scale.py does.
"""

from __future__ import annotations

import argparse
import functools
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
sys.path.insert(0, str(ROOT / "benchmarks"))
from dag_scale import cut_config  # noqa: E402


@functools.cache
def rule_kinds(configfile: Path | None = None) -> dict[str, tuple[bool, int]]:
    """(runs on the submitting node, GPUs asked for) of every rule, as Snakemake parses the
    workflow under a config (default: config.yaml): rules made in a loop (the figure rules) and
    rules that only some configs have (fetch_ud_release) included."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=ROOT,
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[configfile] if configfile else []),
        )._workflow  # not public API; pyproject pins Snakemake to one major version
        kinds = {}
        for rule in workflow.rules:
            gpu = rule.resources.get("gpu")
            gpus = 0 if gpu is None or gpu.is_evaluable() else gpu.value or 0
            kinds[rule.name] = (rule.name in workflow._localrules or rule.norun, gpus)
        return kinds


@functools.cache
def profile_group_names() -> frozenset[str]:
    """The group names of the SLURM profile (read once)."""
    return frozenset(yaml.safe_load((PROFILE / "config.yaml").read_text())["groups"].values())


def group_name(group_id: str) -> str:
    """The profile's name of a group job's group (``gpu-{model}-{step}`` for ``gpu-m-10``)."""
    for name in profile_group_names():
        pattern = re.escape(name).replace(r"\{model\}", ".+").replace(r"\{step\}", r"\d+")
        if re.fullmatch(pattern, group_id):
            return name
    return group_id


def submissions(dry_run: str, configfile: Path | None = None) -> Counter:
    """Submission units of a dry run's output: ``group <name>`` per group job, ``rule <name>``
    per job of a rule that runs on the cluster (``configfile``: the run's config)."""
    units = Counter()
    local = {name for name, (is_local, _) in rule_kinds(configfile).items() if is_local}
    for line in dry_run.splitlines():
        group = re.search(r"Group job (\S+) \(jobs", line)
        if group:
            units["group " + group_name(group.group(1))] += 1
            continue
        rule = re.match(r"(?:local)?rule (\w+):$", line)  # unindented: not inside a group job
        if rule and rule.group(1) not in local:
            units["rule " + rule.group(1)] += 1
    return units


def count(config: dict, *options: str) -> tuple[int, Counter]:
    """Jobs and SLURM submission units of a config's dry run with the SLURM profile (and
    further ``snakemake`` options, which replace the profile's)."""
    with tempfile.TemporaryDirectory() as workdir:
        configfile = Path(workdir) / "config.yaml"
        configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        command = [
            sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILE),
            "--snakefile", str(ROOT / "Snakefile"), "--configfile", str(configfile),
            "--directory", workdir, *options,
        ]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            sys.exit("error: snakemake -n failed:\n" + "\n".join(output.splitlines()[-15:]))
        jobs = re.search(r"^total\s+(\d+)$", output, flags=re.M)
        return int(jobs.group(1)) if jobs else 0, submissions(output, configfile)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(ROOT / "configs" / "xlmr-replica.yaml"))
    parser.add_argument("--steps", type=int, help="keep the first N steps of every model")
    parser.add_argument("--languages", type=int, help="keep the first N languages")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.configfile).read_text())
    if args.steps or args.languages:
        first = next(iter(config["models"].values()))["steps"]
        config = cut_config(
            config, args.steps or len(first), args.languages or len(config["languages"])
        )
    jobs, units = count(config)
    print(f"{args.configfile}: {jobs} jobs, SLURM submissions:")
    for unit, number in sorted(units.items()):
        print(f"  {unit:<36} {number:>6}")
    print(f"  {'total':<36} {sum(units.values()):>6}")


if __name__ == "__main__":
    main()
