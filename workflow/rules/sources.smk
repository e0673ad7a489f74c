# Checkpoints and treebanks from elsewhere: hub revisions and fairseq files become one Hugging
# Face-format directory per model x step; a pinned UD release is unpacked for the languages that
# point into it (see mlm_dynamics/sources/fetch.py and mlm_dynamics/sources/ud_release.py).
#
# Both rules download, and compute nodes of many clusters have no internet: they run where
# Snakemake runs (localrule), which on a cluster is the login node.


rule fetch_checkpoint:
    input:
        fetch_checkpoint_inputs,
    output:
        directory("results/checkpoints/{model}/{step}"),
    log:
        "logs/checkpoints/{model}/{step}.log",
    wildcard_constraints:
        model=model_name_pattern("hub", "fairseq"),
    localrule: True
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        arguments=fetch_checkpoint_arguments,
    shell:
        "python -m mlm_dynamics --log {log} fetch-checkpoint {params.arguments} --output {output}"


if config["ud_release"]["treebanks"]:

    rule fetch_ud_release:
        output:
            [directory(path) for path in ud_release_outputs()],
        log:
            "logs/ud_release.log",
        localrule: True
        conda:
            "../../envs/core.yaml"
        resources:
            mem_mb=2000,
            runtime=60,
        params:
            url=config["ud_release"]["url"],
            sha256=config["ud_release"]["sha256"],
            directory=lambda wildcards, output: os.path.dirname(output[0]),
            treebanks=config["ud_release"]["treebanks"],
        shell:
            "python -m mlm_dynamics --log {log} fetch-ud --url={params.url:q} --sha256={params.sha256:q}"
            " --directory {params.directory:q} {params.treebanks:q}"


# Every checkpoint, whatever its source, is checked once before any job reads it: the weights
# load, config.json names a known architecture, the tokenizer is there and covers the vocabulary
# (see mlm_dynamics/sources/checks.py). Its record names the tokenizer and the weights' sha256;
# the records of a model's earlier steps are inputs, so that a suite serving one file under two
# step names is refused before anything is computed from it.
rule check_checkpoint:
    input:
        checkpoint=checkpoint_input,
        earlier=earlier_checks,
    output:
        CHECK_RECORD,
    log:
        "logs/checks/{model}/{step}.log",
    # (embedded checkpoints are checked by the pretrain job that writes them)
    wildcard_constraints:
        model=model_name_pattern("hub", "fairseq", "local"),
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=gpu_mem_mb,
        runtime=30,
    params:
        tokenizer=tokenizer_option,
        layers=lambda wildcards: config["models"][wildcards.model]["layers"],
    shell:
        "python -m mlm_dynamics --log {log} check-checkpoint --checkpoint {input.checkpoint}"
        " {params.tokenizer} --model {wildcards.model} --step {wildcards.step}"
        " --layers {params.layers} --earlier {input.earlier} --out {output}"
