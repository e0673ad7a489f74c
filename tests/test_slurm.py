"""The workflow on a real SLURM controller, through workflow/profiles/slurm.

Needs the one-node cluster of tests/slurm/cluster.sh (`tests/slurm/cluster.sh up`; .ci/run brings
it up before pytest); skipped, saying why, when no SLURM controller answers. The default config's
DAG runs with fewer languages, steps and sentences, once through SLURM and once locally, and:

- every job of a non-local rule ran as a SLURM job (grouped rules inside group jobs);
- GPU rules were submitted with --gpus to the GPU partition, got the node's GPU from SLURM and saw
  CUDA_VISIBLE_DEVICES; CPU rules asked for no GPU;
- a job made to fail once (MLM_DYNAMICS_FAIL_ONCE, read by the test-only hook
  tests/hooks/sitecustomize.py that the run's PYTHONPATH brings into every job) was retried and
  the run completed;
- the results equal the local run's.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "workflow" / "profiles" / "default"
HOOKS = Path(__file__).resolve().parent / "hooks"  # sitecustomize.py: the fail-once hook
FAILING_COMMAND, FAILING_RULE = "prepare-treebank", "prepare_treebank"
TIMEOUT_S = 600

pytestmark = pytest.mark.slurm


def slurm_conf() -> dict[str, str]:
    """SLURM_CONF of the test cluster when /etc/slurm/slurm.conf is not there."""
    state = Path(os.environ.get("SLURM_STATE_DIR", "/tmp/mlmdyn-slurm"))
    if "SLURM_CONF" in os.environ or Path("/etc/slurm/slurm.conf").exists():
        return {}
    if (state / "slurm.conf").is_file():
        return {"SLURM_CONF": str(state / "slurm.conf")}
    return {}


NEEDS = "needs a SLURM cluster with partitions cpu and gpu (tests/slurm/cluster.sh up)"


def slurm_unreachable() -> str | None:
    """Why no SLURM cluster can be used here, or None."""
    if shutil.which("sinfo") is None:
        return f"{NEEDS}: no SLURM client (sinfo) on PATH"
    env = {**os.environ, **slurm_conf()}
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=20, env=env
        )
    except subprocess.TimeoutExpired:
        return f"{NEEDS}: sinfo timed out, no SLURM controller answers"
    if result.returncode != 0:
        return f"{NEEDS}: no SLURM controller answers ({result.stderr.strip()})"
    partitions = {line.split()[0].rstrip("*") for line in result.stdout.splitlines() if line}
    if not {"cpu", "gpu"} <= partitions:
        return f"{NEEDS}: the cluster has partitions {sorted(partitions)}, not cpu and gpu"
    return None


def reduced_config() -> dict:
    """config.yaml with two languages, two steps and a few sentences: the same DAG, smaller."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    languages = [lang for lang, spec in config["languages"].items() if "treebank" in spec][:2]
    config["languages"] = {lang: config["languages"][lang] for lang in languages}
    config["transfer_languages"] = languages
    for model in config["models"].values():
        model["steps"] = [0, 10]
        model["layers"] = 2
    config["pretrain"].update(
        {
            "texts": [f"resources/text/{lang}.txt.gz" for lang in languages],
            "vocab_size": 2000,
            "batch_size": 8,
            "warmup_steps": 5,
            "threads": 1,
        }
    )
    config.setdefault("treebanks", {})["max_sentences"] = {"train": 40, "dev": 20, "test": 20}
    config["bpc"] = {"max_sentences": 5}
    # a few sentences per split keep the cluster run short: below the default minimum of 30
    config["statistics"] = {"min_sentences": 5}
    return config


def run_snakemake(workdir: Path, *arguments: str, env: dict[str, str]) -> str:
    """Run the workflow in workdir; returns its console output (also in workdir/snakemake.out)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--replace-workflow-config",
        *arguments,
    ]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    output = result.stdout + result.stderr
    (workdir / "snakemake.out").write_text(output)
    assert result.returncode == 0, f"snakemake failed in {workdir}:\n{output[-6000:]}"
    return output


def make_workdir(path: Path) -> Path:
    path.mkdir()
    (path / "resources").symlink_to(REPO / "resources")
    (path / "config.yaml").write_text(yaml.safe_dump(reduced_config(), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reason = slurm_unreachable()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        **slurm_conf(),
        # Jobs inherit the submitting environment (sbatch --export=ALL): this Python and its
        # Snakemake must be found on the node.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    slurm_dir = make_workdir(base / "slurm")
    marker = slurm_dir / "fail-once.marker"
    slurm_output = run_snakemake(
        slurm_dir,
        "--profile",
        str(PROFILE),
        # The test cluster has no accounting database (no sacct), two CPUs and quick jobs.
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        "--cores",
        "2",
        "--latency-wait",
        "10",
        "--verbose",
        env={
            **env,
            "MLM_DYNAMICS_FAIL_ONCE": f"{FAILING_COMMAND}:{marker}",
            # kept by the Snakefile's shell.prefix, which prepends the repository to PYTHONPATH
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), env.get("PYTHONPATH")])),
        },
    )
    local_dir = make_workdir(base / "local")
    run_snakemake(local_dir, "--profile", str(LOCAL_PROFILE), "--cores", "2", env=env)
    return {"slurm": slurm_dir, "local": local_dir, "output": slurm_output, "env": env}


# ---------------------------------------------------------------- reading the run's traces

# A group job's id is a UUID, a single job's a number.
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
SBATCH = re.compile(r"sbatch call: (sbatch .*?) --wrap=")


def submissions(output: str) -> list[dict]:
    """One entry per sbatch: SLURM job id, the rule or group (from the log path), the call."""
    calls = SBATCH.findall(output)
    found = []
    for match in SUBMITTED.finditer(output):
        log = Path(match.group(3))
        kind_and_name = next(part for part in log.parts if part.startswith(("rule_", "group_")))
        call = next(c for c in calls if f"/{kind_and_name}/" in c and str(log.parent) in c)
        found.append(
            {"slurm_id": match.group(2), "unit": kind_and_name, "log": log, "sbatch": call}
        )
    return found


def planned_rules(output: str) -> set[str]:
    """Rules with jobs in the run, from the first "Job stats" table Snakemake printed."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return set(re.findall(r"^(\w+)\s+\d+$", table, flags=re.M))


@functools.cache
def parsed_rules() -> dict[str, tuple[bool, int]]:
    """(runs locally, GPUs asked for) of every rule, as Snakemake parses the workflow under the
    default config: rules made in a loop (the figure rules) and computed resources included."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            snakefile=REPO / "Snakefile",
            workdir=REPO,
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(),
        )._workflow  # not public API; pyproject pins Snakemake to one major version
        rules = {}
        for rule in workflow.rules:
            gpu = rule.resources.get("gpu")
            gpus = 0 if gpu is None or gpu.is_evaluable() else gpu.value or 0
            rules[rule.name] = (rule.name in workflow._localrules or rule.norun, gpus)
        return rules


def local_rules() -> set[str]:
    """Rules marked `localrule: True`, and those without a command (the target rules)."""
    return {name for name, (local, _) in parsed_rules().items() if local}


def gpu_rules() -> set[str]:
    """Rules that ask for a GPU (`resources: gpu=1`)."""
    return {name for name, (_, gpus) in parsed_rules().items() if gpus == 1}


def profile_groups() -> dict[str, str]:
    return yaml.safe_load((PROFILE / "config.yaml").read_text()).get("groups", {})


def scontrol(slurm_id: str, env) -> str:
    result = subprocess.run(
        ["scontrol", "-d", "show", "job", slurm_id], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------- the tests


def test_every_remote_rule_ran_as_a_slurm_job(runs):
    output = runs["output"]
    remote = planned_rules(output) - local_rules()
    assert {"pretrain", "prepare_treebank", "extract_activations"} <= remote, remote
    jobs = submissions(output)
    units = {job["unit"] for job in jobs}
    groups = profile_groups()
    for rule in remote:
        # the plugin names a group's unit group_<group>_<its rules>
        unit = f"group_{groups[rule]}_" if rule in groups else f"rule_{rule}"
        assert any(u == unit or u.startswith(unit) for u in units), (
            f"rule {rule} has no SLURM job (SLURM units: {sorted(units)})"
        )
    for job in jobs:
        # The plugin names the job log after the SLURM job id: the job really ran on SLURM.
        assert job["log"].is_file(), f"{job['log']}: SLURM job log missing"
        assert job["log"].stem == job["slurm_id"]


def test_gpu_rules_got_a_gpu_and_cpu_rules_none(runs):
    jobs = submissions(runs["output"])
    gpu_units = {f"rule_{rule}" for rule in gpu_rules()}
    assert "rule_extract_activations" in gpu_units
    gpu_jobs = [job for job in jobs if job["unit"] in gpu_units]
    cpu_jobs = [job for job in jobs if job["unit"] not in gpu_units]
    assert gpu_jobs and cpu_jobs
    for job in gpu_jobs:
        assert "--gpus=1" in job["sbatch"] and "-p gpu" in job["sbatch"], job["sbatch"]
        # SLURM allocated the node's GPU to the job (and so set CUDA_VISIBLE_DEVICES).
        assert "JOB_GRES=gpu:1" in scontrol(job["slurm_id"], runs["env"]), job
    for job in cpu_jobs:
        assert "--gpus" not in job["sbatch"] and "--gres" not in job["sbatch"], job["sbatch"]
        assert "-p cpu" in job["sbatch"], job["sbatch"]
        assert "JOB_GRES=(null)" in scontrol(job["slurm_id"], runs["env"]), job
    # The extractor says which device it was given, and that it fell back to the CPU.
    logs = sorted((runs["slurm"] / "logs" / "activations").rglob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text()
        assert "CUDA_VISIBLE_DEVICES=0" in text, f"{log}: device not logged:\n{text[:500]}"
        assert "running on CPU" in text, log


def test_a_failed_job_is_retried(runs):
    output = runs["output"]
    assert (runs["slurm"] / "fail-once.marker").is_file(), "the hook never fired"
    jobs = [job for job in submissions(output) if job["unit"] == f"rule_{FAILING_RULE}"]
    failed = [job for job in jobs if "non-zero exit status 1" in job["log"].read_text()]
    assert len(failed) == 1, "exactly one SLURM job should have failed"
    # it failed through the hook (tests/hooks/sitecustomize.py), whose one line is in its log
    hook_line = f"error: {FAILING_COMMAND} failed on purpose (MLM_DYNAMICS_FAIL_ONCE testing hook)"
    assert hook_line in failed[0]["log"].read_text()
    assert f"SLURM-job '{failed[0]['slurm_id']}' failed" in output
    assert re.search(r"Trying to restart job \d+", output), "the failed job was not retried"
    # The same job (same wildcards, so the same log directory) was submitted again and succeeded.
    again = [
        job
        for job in jobs
        if job["log"].parent == failed[0]["log"].parent
        and int(job["slurm_id"]) > int(failed[0]["slurm_id"])
    ]
    assert again and "non-zero exit status" not in again[-1]["log"].read_text()


def test_results_equal_a_local_run(runs):
    slurm, local = runs["slurm"] / "results", runs["local"] / "results"
    table = Path("tables") / "probing.csv"
    if (local / table).is_file():
        import pandas as pd

        keys = ["model", "step", "task", "layer", "train_lang", "test_lang", "seed", "metric"]
        a = pd.read_csv(slurm / table).sort_values(keys).reset_index(drop=True)
        b = pd.read_csv(local / table).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    arrays = sorted(p.relative_to(local) for p in (local / "activations").rglob("*.npy"))
    assert arrays, "the local run cached no activations"
    for path in arrays:  # same seeds, same threads: the same bits, wherever the job ran
        np.testing.assert_array_equal(np.load(slurm / path), np.load(local / path), str(path))
