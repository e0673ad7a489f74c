"""The workflow on a real SLURM controller, through workflow/profiles/slurm.

Needs the one-node cluster of tests/slurm/cluster.sh (`tests/slurm/cluster.sh up`; .ci/run brings
it up before pytest); skipped, saying why, when no SLURM controller answers. The default config's
DAG runs with fewer languages, steps and sentences, once through SLURM with the profile as shipped
(on a cluster whose only partition is its default one) and once locally, and:

- every job of a non-local rule ran as a SLURM job, grouped as the profile says: one GPU job per
  checkpoint holding all its GPU members, one probe job per checkpoint, one for the treebanks;
- each grouped GPU job was submitted with --gpus=1 to the default partition, got the node's GPU
  from SLURM, saw CUDA_VISIBLE_DEVICES and ran its members; CPU jobs asked for no GPU;
- a member of a GPU group made to fail once (MLM_DYNAMICS_FAIL_ONCE, read by the test-only hook
  tests/hooks/sitecustomize.py that the run's PYTHONPATH brings into every job) was retried inside
  its SLURM job, and the group's other members ran once;
- the results equal the local run's;
- a run whose jobs no node could hold (more CPUs than the node has) stops before submitting
  anything, with one line saying which jobs and what the nodes offer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from slurm_submissions import rule_kinds  # how Snakemake parses the rules

REPO = Path(__file__).resolve().parents[1]

PROFILE = REPO / "workflow" / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "workflow" / "profiles" / "default"
HOOKS = Path(__file__).resolve().parent / "hooks"  # sitecustomize.py: the fail-once hook
FAILING_COMMAND, FAILING_RULE = "extract-activations", "extract_activations"
TIMEOUT_S = 1500

pytestmark = pytest.mark.slurm


def slurm_conf() -> dict[str, str]:
    """SLURM_CONF of the test cluster when /etc/slurm/slurm.conf is not there."""
    state = Path(os.environ.get("SLURM_STATE_DIR", "/tmp/mlmdyn-slurm"))
    if "SLURM_CONF" in os.environ or Path("/etc/slurm/slurm.conf").exists():
        return {}
    if (state / "slurm.conf").is_file():
        return {"SLURM_CONF": str(state / "slurm.conf")}
    return {}


NEEDS = "needs a SLURM cluster with a GPU node (tests/slurm/cluster.sh up)"


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
    gres = subprocess.run(
        ["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=20, env=env
    ).stdout
    if "gpu" not in gres:
        return f"{NEEDS}: no node has a GPU (sinfo -o %G: {gres.strip()})"
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


def local_rules() -> set[str]:
    """Rules marked `localrule: True`, and those without a command (the target rules)."""
    return {name for name, (local, _) in rule_kinds().items() if local}


def gpu_rules() -> set[str]:
    """Rules that ask for a GPU (`resources: gpu=1`)."""
    return {name for name, (_, gpus) in rule_kinds().items() if gpus == 1}


def profile_groups() -> dict[str, str]:
    return yaml.safe_load((PROFILE / "config.yaml").read_text()).get("groups", {})


def scontrol(slurm_id: str, env) -> str:
    result = subprocess.run(
        ["scontrol", "-d", "show", "job", slurm_id], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------- the tests


def group_unit(rule: str) -> str | None:
    """The prefix of the SLURM unit of a grouped rule's jobs (the plugin names a group job's log
    directory group_<group id>_...; the profile's group names carry {model} and {step})."""
    group = profile_groups().get(rule)
    return None if group is None else "group_" + group.split("{")[0]


def test_every_remote_rule_ran_as_a_slurm_job(runs):
    output = runs["output"]
    remote = planned_rules(output) - local_rules()
    assert {"pretrain", "prepare_treebank", "extract_activations", "train_probe"} <= remote, remote
    jobs = submissions(output)
    units = {job["unit"] for job in jobs}
    for rule in remote:
        unit = group_unit(rule) or f"rule_{rule}"
        assert any(u == unit or u.startswith(unit) for u in units), (
            f"rule {rule} has no SLURM job (SLURM units: {sorted(units)})"
        )
    for job in jobs:
        # The plugin names the job log after the SLURM job id: the job really ran on SLURM.
        assert job["log"].is_file(), f"{job['log']}: SLURM job log missing"
        assert job["log"].stem == job["slurm_id"]
    # One GPU job and one probe job per checkpoint, one job for all treebanks.
    steps = len(next(iter(reduced_config()["models"].values()))["steps"])
    for rule, expected in [("extract_activations", steps), ("train_probe", steps)]:
        prefix = group_unit(rule)
        assert len({j["slurm_id"] for j in jobs if j["unit"].startswith(prefix)}) == expected, (
            f"{rule}: expected {expected} group jobs ({sorted(units)})"
        )
    assert len([j for j in jobs if j["unit"].startswith(group_unit("prepare_treebank"))]) == 1


def gpu_group_jobs(runs) -> list[dict]:
    prefix = group_unit("extract_activations")
    return [job for job in submissions(runs["output"]) if job["unit"].startswith(prefix)]


def test_grouped_gpu_jobs_got_one_gpu_each_and_ran_their_members(runs):
    assert gpu_rules() >= {"extract_activations", "bpc", "xnli_features", "simalign"}
    gpu_jobs = gpu_group_jobs(runs)
    cpu_jobs = [job for job in submissions(runs["output"]) if job not in gpu_jobs]
    assert gpu_jobs and cpu_jobs
    languages = [lang for lang in reduced_config()["languages"]]
    for job in gpu_jobs:
        # One GPU for the whole group, on the cluster's default partition (the profile names none).
        assert "--gpus=1" in job["sbatch"] and "-p main" in job["sbatch"], job["sbatch"]
        # SLURM allocated the node's GPU to the job (and so set CUDA_VISIBLE_DEVICES).
        assert "JOB_GRES=gpu:1" in scontrol(job["slurm_id"], runs["env"]), job
        # The group's Snakemake ran one extraction and one BPC job per language. (The embedded
        # model has no check_checkpoint job: its pretrain job checks what it writes.)
        log = job["log"].read_text()
        for rule in ("extract_activations", "bpc"):
            ran = {wildcards.split("lang=")[1] for wildcards in member_runs(log, rule)}
            assert ran == set(languages), f"{job['log']}: {rule} ran for {sorted(ran)}"
    for job in cpu_jobs:
        assert "--gpus" not in job["sbatch"] and "--gres" not in job["sbatch"], job["sbatch"]
        assert "-p main" in job["sbatch"], job["sbatch"]
        assert "JOB_GRES=(null)" in scontrol(job["slurm_id"], runs["env"]), job
    # The extractor says which device it was given, and that it fell back to the CPU.
    logs = sorted((runs["slurm"] / "logs" / "activations").rglob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text()
        assert "CUDA_VISIBLE_DEVICES=0" in text, f"{log}: device not logged:\n{text[:500]}"
        assert "running on CPU" in text, log


def member_runs(log: str, rule: str) -> list[str]:
    """The wildcards of each run of a job of ``rule`` in a group job's log: the Snakemake that
    executes one member prints it as a ``localrule`` block (a retry prints another)."""
    return re.findall(rf"^localrule {rule}:\n(?:    .*\n)*?    wildcards: (.*)$", log, flags=re.M)


def test_a_failed_member_is_retried_without_redoing_the_others(runs):
    output = runs["output"]
    assert (runs["slurm"] / "fail-once.marker").is_file(), "the hook never fired"
    hook_line = f"error: {FAILING_COMMAND} failed on purpose (MLM_DYNAMICS_FAIL_ONCE testing hook)"
    gpu_jobs = gpu_group_jobs(runs)
    # No group job failed: each checkpoint's GPU work was submitted exactly once.
    steps = len(next(iter(reduced_config()["models"].values()))["steps"])
    assert len(gpu_jobs) == steps, [job["unit"] for job in gpu_jobs]
    assert "failed" not in " ".join(re.findall(r"SLURM-job '\d+' failed", output))
    failing = [job for job in gpu_jobs if hook_line in job["log"].read_text()]
    assert len(failing) == 1, "exactly one group job should hold the failing member"
    log = failing[0]["log"].read_text()
    assert re.search(r"Trying to restart job \d+", log), "the member was not retried in place"
    runs_of = member_runs(log, FAILING_RULE)
    counts = {wildcards: runs_of.count(wildcards) for wildcards in runs_of}
    # the failed member ran twice, every other member once
    assert sorted(counts.values()) == [1] * (len(counts) - 1) + [2], counts
    assert len(counts) == len(reduced_config()["languages"])
    bpc = member_runs(log, "bpc")
    assert sorted(bpc) == sorted(set(bpc)) and bpc, bpc


def test_jobs_no_node_can_run_stop_the_run_before_anything_is_submitted(runs, tmp_path):
    workdir = make_workdir(tmp_path / "too-big")
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--configfile", "config.yaml", "--replace-workflow-config", "--profile", str(PROFILE),
        "--slurm-status-command", "squeue",
        # a site that gave its probes 4 threads and 4 cores per job, on 2-CPU nodes
        "--cores", "4", "--set-threads", "train_probe=4",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=workdir, env=runs["env"], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    lines = [line for line in output.splitlines() if "would never start" in line]
    assert lines, output[-3000:]
    assert all(line.startswith("error: ") for line in lines)
    assert any(
        re.search(r"probes-\{model\}-\{step\} would never start on the default partition: one "
                  r"asks for 4 CPUs, .*its nodes offer at most 2 CPUs", line)
        for line in lines
    ), lines  # fmt: skip
    assert "has been submitted with SLURM jobid" not in output


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
