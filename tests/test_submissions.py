"""What the SLURM profile submits, from dry runs (no cluster needed): one GPU job per checkpoint,
one probe job per checkpoint, one treebank job; or, as the profile documents, GPU jobs of N
members each. Counted by benchmarks/slurm_submissions.py, which the README's figures come from."""

from __future__ import annotations

from pathlib import Path

import yaml
from dag_scale import cut_config
from slurm_submissions import count

ROOT = Path(__file__).resolve().parents[1]

STEPS, LANGUAGES = 3, 5


def preset() -> dict:
    config = yaml.safe_load((ROOT / "configs" / "xlmr-replica.yaml").read_text())
    return cut_config(config, STEPS, LANGUAGES)


def test_the_paper_preset_submits_one_gpu_and_one_probe_job_per_checkpoint():
    jobs, units = count(preset())
    # 3 fetches, 3 checks, 5 treebanks, 15 extractions, 15 + 15 probe jobs, the analysis (its
    # environment record and the explorer page included)
    assert jobs == 76
    assert units == {
        "group gpu-{model}-{step}": STEPS,
        "group probes-{model}-{step}": STEPS,
        "group treebanks": 1,
    }


def test_gpu_jobs_can_be_split_into_jobs_of_n_members():
    # the profile's recipe: check_checkpoint in a group of its own, N pieces per GPU job (options
    # on the command line replace the profile's, so all of its groups are given again)
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    groups = {**profile["groups"], "check_checkpoint": "checks"}
    components = {**profile["group-components"], "gpu-{model}-{step}": 2}
    _, units = count(
        preset(),
        "--groups", *(f"{rule}={group}" for rule, group in groups.items()),
        "--group-components", *(f"{group}={n}" for group, n in components.items()),
    )  # fmt: skip
    assert units == {
        "group gpu-{model}-{step}": STEPS * 3,  # 5 extractions a checkpoint: 2 + 2 + 1
        "group checks": 1,  # each check reads the earlier ones': one connected piece
        "group probes-{model}-{step}": STEPS,
        "group treebanks": 1,
    }
