# Checkpoints and treebanks from elsewhere: hub revisions and fairseq files become one Hugging
# Face-format directory per model x step, every checkpoint is checked before use, and a pinned UD
# release is unpacked for the languages that point into it (see mlm_dynamics/sources/).
#
# The fetch rules download, and compute nodes of many clusters have no internet: they run where
# Snakemake runs (localrule), which on a cluster is the login node.


rule fetch_checkpoint:
    input:
        plan.fetch_checkpoint_inputs,
    output:
        directory(layout.CHECKPOINT),
    log:
        layout.log("fetch_checkpoint"),
    wildcard_constraints:
        model=plan.run_pattern("hub", "fairseq"),
    localrule: True
    conda:
        env("core")
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        arguments=plan.fetch_checkpoint_arguments,
    shell:
        "python -m mlm_dynamics --log {log} fetch-checkpoint {params.arguments}"
        " --model {wildcards.model} --step {wildcards.step} --output {output}"


if config["ud_release"]["treebanks"]:

    rule fetch_ud_release:
        output:
            [directory(path) for path in plan.ud_release_dirs()],
        log:
            layout.log("fetch_ud_release"),
        localrule: True
        conda:
            env("core")
        resources:
            mem_mb=2000,
            runtime=60,
        params:
            arguments=plan.fetch_ud_arguments(),
        shell:
            "python -m mlm_dynamics --log {log} fetch-ud {params.arguments}"


# Every checkpoint, whatever its source, is checked once before any job reads it: the weights
# load, config.json names a known architecture, the tokenizer is there and covers the vocabulary.
# Its record names the tokenizer and the weights' sha256; the records of a model's earlier steps
# are inputs, so that a suite serving one file under two step names is refused before anything
# is computed from it. (Embedded checkpoints are checked by the pretrain job that writes them.)
rule check_checkpoint:
    input:
        checkpoint=plan.checkpoint,
        checkpoint_files=plan.checkpoint_files,
        earlier=plan.earlier_checks,
    output:
        layout.CHECK_RECORD,
    log:
        layout.log("check_checkpoint"),
    benchmark:
        layout.benchmark("check_checkpoint")
    wildcard_constraints:
        model=plan.run_pattern("hub", "fairseq", "local"),
    retries: request.retries_in_job
    conda:
        env("core")
    resources:
        mem_mb=request.gpu_mem_mb,
        runtime=30,
    params:
        arguments=plan.check_arguments,
    shell:
        "python -m mlm_dynamics --log {log} check-checkpoint --checkpoint {input.checkpoint}"
        " {params.arguments} --model {wildcards.model} --step {wildcards.step}"
        " --earlier {input.earlier} --out {output}"
