"""mlm_dynamics.slurm: the cluster's nodes read from sinfo, and the jobs no node could run.

Plain tests of the check that the workflow's onstart runs before submitting to SLURM
(tests/test_slurm.py runs it against the real test cluster)."""

from __future__ import annotations

import math

import pytest

from mlm_dynamics.slurm import Node, Request, gpus_of, minutes, parse_sinfo, unschedulable

# `sinfo -h -N -o "%P|%c|%m|%G|%l"` of a small site: two CPU nodes, a GPU node in its own partition
SINFO = """\
cpu*|32|257000|(null)|2-00:00:00
cpu*|32|257000|(null)|2-00:00:00
gpu|16|128000+|gpu:a100:4(S:0-1)|12:00:00
"""


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("infinite", math.inf), ("30", 30), ("2:30", 2.5), ("12:00:00", 720), ("1-06:00:00", 1800)],
)
def test_time_limits_are_read_in_minutes(limit, expected):
    assert minutes(limit) == expected


@pytest.mark.parametrize(
    ("gres", "expected"),
    [("(null)", 0), ("gpu:1", 1), ("gpu:a100:4(S:0-1)", 4), ("gpu:2,shard:8", 2)],
)
def test_gpus_are_counted_from_generic_resources(gres, expected):
    assert gpus_of(gres) == expected


def test_sinfo_lines_become_nodes_with_the_default_partition_marked():
    nodes = parse_sinfo(SINFO)
    assert nodes[0] == Node("cpu", 32, 257000, 0, 2880, default=True)
    assert nodes[2] == Node("gpu", 16, 128000, 4, 720, default=False)


def test_jobs_that_fit_a_node_of_their_partition_pass():
    nodes = parse_sinfo(SINFO)
    requests = [
        Request("probes-{model}-{step}", cpus=32, mem_mb=200000, gpus=0, minutes=600),
        Request("gpu-{model}-{step}", cpus=8, mem_mb=100000, gpus=1, minutes=700, partition="gpu"),
    ]
    assert unschedulable(requests, nodes) == []


def test_each_kind_of_job_no_node_can_run_gets_one_line_naming_its_largest_request():
    nodes = parse_sinfo(SINFO)
    requests = [
        # a GPU group sent to the default partition, which has no GPU
        Request("gpu-{model}-{step}", cpus=2, mem_mb=9000, gpus=1, minutes=60),
        Request("gpu-{model}-{step}", cpus=2, mem_mb=9500, gpus=1, minutes=60),
        # more CPUs than a node has
        Request("probes-{model}-{step}", cpus=64, mem_mb=1000, gpus=0, minutes=10),
        # longer than the GPU partition's limit
        Request("bpc", cpus=1, mem_mb=1000, gpus=1, minutes=800, partition="gpu"),
        # a partition the cluster does not have
        Request("simalign", cpus=1, mem_mb=1000, gpus=1, minutes=5, partition="a100"),
    ]
    lines = unschedulable(requests, nodes)
    assert lines == [
        "2 jobs of gpu-{model}-{step} would never start on the default partition: one asks for "
        "2 CPUs, 9500 MB, 1 GPUs, 60 min, and its nodes offer at most 32 CPUs, 257000 MB, "
        "0 GPUs, 2880 min (sinfo); lower `cores` or the rule's resources in the profile, or "
        "name another partition (slurm_partition)",
        "1 job of probes-{model}-{step} would never start on the default partition: one asks "
        "for 64 CPUs, 1000 MB, 0 GPUs, 10 min, and its nodes offer at most 32 CPUs, 257000 MB, "
        "0 GPUs, 2880 min (sinfo); lower `cores` or the rule's resources in the profile, or "
        "name another partition (slurm_partition)",
        "1 job of bpc would never start on partition gpu: one asks for 1 CPUs, 1000 MB, 1 GPUs, "
        "800 min, and its nodes offer at most 16 CPUs, 128000 MB, 4 GPUs, 720 min (sinfo); "
        "lower `cores` or the rule's resources in the profile, or name another partition "
        "(slurm_partition)",
        "1 job of simalign would never start on partition a100: one asks for 1 CPUs, 1000 MB, "
        "1 GPUs, 5 min, and it has no nodes (sinfo); lower `cores` or the rule's resources in "
        "the profile, or name another partition (slurm_partition)",
    ]
