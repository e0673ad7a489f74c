# Embedded checkpoints: a tokenizer learnt from the bundled text, then one pretraining job per
# configured step, each resuming from the previous configured step (see mlm_dynamics/pretrain.py).


rule train_tokenizer:
    input:
        texts=pretrain_texts,
    output:
        directory("results/checkpoints/{model}/tokenizer"),
    log:
        "logs/pretrain/{model}/tokenizer.log",
    wildcard_constraints:
        model=model_name_pattern("embedded"),
    conda:
        "../../envs/core.yaml"
    params:
        vocab_size=config["pretrain"]["vocab_size"],
    shell:
        "python -m mlm_dynamics --log {log} train-tokenizer --texts {input.texts}"
        " --vocab-size {params.vocab_size} --out {output}"


rule pretrain:
    input:
        unpack(pretrain_inputs),
        earlier=earlier_checks,
    output:
        checkpoint=directory("results/checkpoints/{model}/{step}"),
        # check_checkpoint's record, written by the job that made the checkpoint
        check=CHECK_RECORD,
    log:
        "logs/pretrain/{model}/{step}.log",
    wildcard_constraints:
        model=model_name_pattern("embedded"),
    # the checkpoints are a chain: starting each as soon as it can shortens the whole run
    priority: 10
    conda:
        "../../envs/core.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=pretrain_mem_mb,
        runtime=pretrain_runtime,
    params:
        settings=pretrain_arguments,
        resume=lambda wildcards, input: (
            f"--resume {input.resume}" if "resume" in input.keys() else ""
        ),
    shell:
        "python -m mlm_dynamics --log {log} pretrain --texts {input.texts} --tokenizer {input.tokenizer}"
        " --step {wildcards.step} {params.resume} {params.settings} --threads {threads}"
        " --model {wildcards.model} --check-record {output.check} --earlier {input.earlier}"
        " --out {output.checkpoint}"
