# The adapter between Snakemake and the plan (mlm_dynamics/plan.py): the config is validated once,
# here, and every rule asks `plan` for its inputs, arguments and resources.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mlm_dynamics import config_check, plan as layout
from mlm_dynamics.activations.store import CACHE_DIR
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.errors import InputError
from mlm_dynamics.figures import FIGURES
from mlm_dynamics.plan import Plan

# Rule commands run `python -m mlm_dynamics ...` from this checkout, in whatever software
# environment (local, conda, SLURM node) the job lands in.
# (Braces are doubled twice: once for this f-string, once for Snakemake's formatting.)
shell.prefix(
    f"export PYTHONPATH={Path(workflow.basedir).resolve()}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

CONFIG_SCHEMA = "../schemas/config.schema.yaml"

# The schema (types and defaults), then what a schema cannot say (config_check), then the plan
# (steps on disk, transfer steps): each stops with one line naming the key, before any job.
try:
    validate(config, CONFIG_SCHEMA, set_default=True)
except WorkflowError:
    schema = Path(workflow.current_basedir) / CONFIG_SCHEMA
    sys.exit(f"error: {config_check.schema_error(config, schema)}")
try:
    config_check.check_config(config)
    plan = Plan(config)
except InputError as error:
    sys.exit(f"error: {error}")
for notice in plan.notices():
    print(notice, file=sys.stderr)


wildcard_constraints:
    model=r"[^/]+",
    step=r"\d+",
    lang=r"[^/.]+",
    layer=r"\d\d",


def env(name):
    """A software environment of envs/, as a rule's conda: directive spells it."""
    return f"../../envs/{name}.yaml"


def get_final_output():
    return plan.final_output()
