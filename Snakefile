# Pretraining dynamics of a multilingual masked LM, probed layer by layer and step by step.
#
#   snakemake --cores 2                       # the embedded default (config.yaml), offline
#   snakemake --cores 2 --configfile configs/xlmr-replica.yaml --profile workflow/profiles/slurm
#
# Snakemake only orchestrates: every rule calls one command of the mlm_dynamics package.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/treebanks.smk"
include: "workflow/rules/activations.smk"


rule all:
    input:
        all_targets(),
    default_target: True
