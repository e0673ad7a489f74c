# The adapter between Snakemake and the package: the config is validated once, here; every rule
# takes its file names from `layout` (mlm_dynamics/layout.py), its inputs and arguments from
# `plan` (mlm_dynamics/plan.py) and its scheduler requests from `request`
# (mlm_dynamics/scheduler.py).

import sys
from pathlib import Path

from mlm_dynamics import config_check, layout, slurm
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.errors import InputError
from mlm_dynamics.figure_registry import FIGURES
from mlm_dynamics.kept import KeptOutputs
from mlm_dynamics.plan import Plan
from mlm_dynamics.scheduler import Requests

# Rule commands run `python -m mlm_dynamics ...` from this checkout, in whatever software
# environment (local, conda, SLURM node) the job lands in.
# (Braces are doubled twice: once for this f-string, once for Snakemake's formatting.)
shell.prefix(
    f"export PYTHONPATH={Path(workflow.basedir).resolve()}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

# The schema (types and defaults) and what a schema cannot say (config_check.validated), then
# the plan (steps on disk, transfer steps): each stops with one line naming the key, before any
# job.
try:
    config_check.validated(config)
    plan = Plan(config)
except InputError as error:
    sys.exit(f"error: {error}")
request = Requests(config, plan.steps_by_model, in_job=workflow.remote_exec)
for notice in plan.notices():
    print(notice, file=sys.stderr)


# A model, or one run of it (sources.runs.run_name: a pretraining seed is a directory level).
wildcard_constraints:
    model=r"[^/]+(?:/seed\d+)?",
    step=r"\d+",
    lang=r"[^/.]+",
    layer=r"\d\d",


def env(name):
    """A software environment of envs/, as a rule's conda: directive spells it."""
    return f"../../envs/{name}.yaml"


def get_final_output():
    return plan.final_output()


def slurm_requests():
    """What each SLURM job about to be submitted asks for (a group job counts once)."""
    dag = workflow.dag
    units = {
        dag.get_job_group(job) or job for job in dag.needrun_jobs() if not job.is_local
    }
    for unit in units:
        resources = unit.resources
        yield slurm.Request(
            name=(
                workflow.parent_groupids.get(unit.groupid, unit.groupid)
                if unit.is_group()
                else unit.rule.name
            ),
            cpus=resources.get("_cores") or 1,
            mem_mb=resources.get("mem_mb") or 0,
            gpus=resources.get("gpu") or 0,
            minutes=resources.get("runtime") or 0,
            partition=resources.get("slurm_partition") or None,
        )


# The outputs of the jobs about to run, kept until the run ends (mlm_dynamics/kept.py), with
# Snakemake's record of how each was made: a failed run puts both back.
kept_outputs = KeptOutputs(".snakemake/mlm_dynamics-kept")  # beside Snakemake's records
kept_records = {}


def keep_outputs():
    if not hasattr(workflow.persistence, "_write_record"):
        print(
            "note: this Snakemake cannot restore its records: outputs are not kept",
            file=sys.stderr,
        )
        return
    outputs = {str(f): f for job in workflow.dag.needrun_jobs() for f in job.output}
    for path in kept_outputs.keep(outputs):
        kept_records[path] = workflow.persistence.metadata(outputs[path])


def restore_outputs():
    persistence = workflow.persistence
    for path in kept_outputs.restore():
        if kept_records.get(path) is not None:
            # Snakemake has no public call that writes a record back (its version is pinned in
            # constraints.txt; tests/test_bad_input.py checks the records come back).
            persistence._clear_cache()
            persistence._write_record(path, kept_records[path])


onstart:
    # A treebank that its job would refuse is refused before any job runs (and deletes what it
    # is about to re-make): the previous results stay exactly as they were.
    for lang in sorted(
        {
            job.wildcards.lang
            for job in workflow.dag.needrun_jobs()
            if job.rule.name == "prepare_treebank"
        }
    ):
        refusal = plan.treebank_refusal(lang)
        if refusal:
            sys.exit(f"error: {refusal}")
    # A job no node can run would pend for ever, silently: refuse the run before submitting.
    if workflow.executor_plugin.name == "slurm":
        problems = slurm.unschedulable(slurm_requests(), slurm.cluster_nodes())
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            sys.exit(1)
    keep_outputs()


onsuccess:
    kept_outputs.discard()


onerror:
    restore_outputs()
