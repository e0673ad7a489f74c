# Pretraining dynamics of a multilingual masked LM, probed layer by layer and step by step.
#
#   snakemake --cores 2                       # the embedded default (config.yaml), offline
#   snakemake --cores 2 --configfile configs/xlmr-replica.yaml --profile workflow/profiles/slurm
#
# Snakemake only orchestrates: every rule calls one command of the mlm_dynamics package.

import os
import sys

from snakemake.utils import min_version

from mlm_dynamics.config_check import check_config_files
from mlm_dynamics.errors import InputError

min_version("9.0")


# Every config file read strictly before Snakemake uses it: a key given twice (which YAML keeps
# silently) or a syntax error is one line naming the file and line.
try:
    check_config_files(
        [os.path.relpath(path) for path in workflow.overwrite_configfiles]
        or ["config.yaml"]
    )
except InputError as error:
    sys.exit(f"error: {error}")


# A --configfile replaces the embedded default rather than merging into it (a preset's models
# and languages are the whole set).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# common.smk validates the config against workflow/schemas/config.schema.yaml first.
include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/treebanks.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/probing.smk"
include: "workflow/rules/bpc.smk"
include: "workflow/rules/xnli.smk"
include: "workflow/rules/simalign.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
