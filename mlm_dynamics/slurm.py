"""Will SLURM ever start these jobs? The run's requests checked against the cluster's nodes.

A job that asks for more CPUs, memory, GPUs or time than any node of its partition offers is
accepted by ``sbatch`` and then pends for ever (reason ``PartitionConfig`` or ``Resources``) while
Snakemake waits without a word. Before anything is submitted, the workflow's ``onstart`` hands
every job and group job it is about to submit to ``unschedulable`` with the nodes ``sinfo``
reports, and stops with one line per kind of job that no node could run.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

# One line per node and partition: name, CPUs, memory (MB), generic resources, time limit.
SINFO_FORMAT = "%P|%c|%m|%G|%l"


@dataclass(frozen=True)
class Node:
    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    minutes: float  # the partition's time limit; inf when there is none
    default: bool = False  # the partition jobs without -p go to


@dataclass(frozen=True)
class Request:
    """What one SLURM job (a rule's job or a group job) asks for."""

    name: str  # the rule or group, with wildcards replaced by {…} so that alike jobs pool
    cpus: int
    mem_mb: int
    gpus: int
    minutes: float
    partition: str | None = None  # None: the cluster's default partition


def minutes(limit: str) -> float:
    """A SLURM time limit (``infinite``, ``30``, ``2:00:00``, ``1-12:00:00``) in minutes."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return float("inf")
    days, _, clock = limit.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if len(parts) == 1:
        hours, mins, secs = 0, parts[0], 0
    elif len(parts) == 2:
        hours, mins, secs = 0, parts[0], parts[1]
    else:
        hours, mins, secs = parts
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60


def gpus_of(gres: str) -> int:
    """GPUs in a node's generic resources (``gpu:1``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    total = 0
    for item in gres.split(","):
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o SINFO_FORMAT`` (memory ``1000+`` means at least 1000)."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        partition, cpus, mem, gres, limit = line.strip().split("|")
        nodes.append(
            Node(
                partition=partition.rstrip("*"),
                cpus=int(cpus.rstrip("+")),
                mem_mb=int(mem.rstrip("+")),
                gpus=gpus_of(gres),
                minutes=minutes(limit),
                default=partition.endswith("*"),
            )
        )
    return nodes


def cluster_nodes() -> list[Node]:
    """The nodes of the cluster this process submits to, as ``sinfo`` reports them."""
    result = subprocess.run(
        ["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"sinfo failed: {result.stderr.strip()}")
    return parse_sinfo(result.stdout)


def fits(request: Request, node: Node) -> bool:
    return (
        request.cpus <= node.cpus
        and request.mem_mb <= node.mem_mb
        and request.gpus <= node.gpus
        and request.minutes <= node.minutes
    )


def describe(cpus: int, mem_mb: int, gpus: int, mins: float) -> str:
    limit = "no time limit" if mins == float("inf") else f"{mins:.0f} min"
    return f"{cpus} CPUs, {mem_mb} MB, {gpus} GPUs, {limit}"


def unschedulable(requests: Iterable[Request], nodes: list[Node]) -> list[str]:
    """One line for each kind of job (``Request.name``) that no node of its partition can run,
    naming the largest request of that kind and what the partition's nodes offer at most."""
    worst: dict[tuple[str, str | None], Request] = {}
    count: dict[tuple[str, str | None], int] = {}
    for request in requests:
        key = (request.name, request.partition)
        candidates = [
            node
            for node in nodes
            if (node.partition == request.partition) or (request.partition is None and node.default)
        ]
        if any(fits(request, node) for node in candidates):
            continue
        count[key] = count.get(key, 0) + 1
        previous = worst.get(key)
        if previous is None or (request.cpus, request.mem_mb, request.minutes) > (
            previous.cpus,
            previous.mem_mb,
            previous.minutes,
        ):
            worst[key] = request
    lines = []
    for key, request in worst.items():
        candidates = [
            node
            for node in nodes
            if node.partition == request.partition or (request.partition is None and node.default)
        ]
        where = f"partition {request.partition}" if request.partition else "the default partition"
        if not candidates:
            offer = "it has no nodes"
        else:
            offer = "its nodes offer at most " + describe(
                max(node.cpus for node in candidates),
                max(node.mem_mb for node in candidates),
                max(node.gpus for node in candidates),
                max(node.minutes for node in candidates),
            )
        jobs = f"{count[key]} job{'s' if count[key] > 1 else ''} of {request.name}"
        lines.append(
            f"{jobs} would never start on {where}: one asks for "
            f"{describe(request.cpus, request.mem_mb, request.gpus, request.minutes)}, and "
            f"{offer} (sinfo); lower `cores` or the rule's resources in the profile, or name "
            "another partition (slurm_partition)"
        )
    return lines
