# Embedded checkpoints: a tokenizer learnt from the bundled text, then one pretraining job per
# configured step, each resuming from the previous configured step (see mlm_dynamics/pretrain.py).


rule train_tokenizer:
    input:
        texts=config["pretrain"]["texts"],
    output:
        directory(layout.TOKENIZER),
    log:
        layout.log("train_tokenizer"),
    wildcard_constraints:
        model=plan.model_pattern("embedded"),
    conda:
        env("core")
    params:
        vocab_size=config["pretrain"]["vocab_size"],
    shell:
        "python -m mlm_dynamics --log {log} train-tokenizer --texts {input.texts}"
        " --vocab-size {params.vocab_size} --out {output}"


rule pretrain:
    input:
        unpack(plan.pretrain_inputs),
        earlier=plan.earlier_checks,
    output:
        checkpoint=directory(layout.CHECKPOINT),
        # check_checkpoint's record, written by the job that made the checkpoint
        check=layout.CHECK_RECORD,
    log:
        layout.log("pretrain"),
    benchmark:
        layout.benchmark("pretrain")
    wildcard_constraints:
        model=plan.run_pattern("embedded"),
    # the checkpoints are a chain: starting each as soon as it can shortens the whole run
    priority: 10
    conda:
        env("core")
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=request.pretrain_mem_mb,
        runtime=request.pretrain_runtime,
    params:
        arguments=plan.pretrain_arguments,
    shell:
        "python -m mlm_dynamics --log {log} pretrain --texts {input.texts} --tokenizer {input.tokenizer}"
        " --step {wildcards.step} {params.arguments} --threads {threads}"
        " --model {wildcards.model} --check-record {output.check} --earlier {input.earlier}"
        " --out {output.checkpoint}"
