# XNLI: sentence-pair features (train, dev, test) per model x step x language, then a probe per
# training language, its L2 chosen on its dev split, scored on every XNLI language's test split
# and its own dev split, with bootstrap intervals and per-pair correctness (see
# mlm_dynamics/xnli.py).


rule xnli_features:
    input:
        unpack(plan.checkpoint_inputs),
        data=plan.xnli_data_files,
    output:
        directory(layout.XNLI_FEATURES),
    log:
        layout.log("xnli_features"),
    benchmark:
        layout.benchmark("xnli_features")
    retries: request.retries_in_job
    conda:
        env("gpu")
    threads: request.gpu_threads
    resources:
        **request.gpu_resources,
    params:
        arguments=plan.xnli_features_arguments,
    shell:
        "python -m mlm_dynamics --log {log} xnli-features --checkpoint {input.checkpoint}"
        " {params.arguments} --language {wildcards.lang}"
        " --threads {threads} --out {output}"


rule xnli_probe:
    input:
        plan.xnli_features,
    output:
        scores=layout.XNLI_SCORES,
        item_scores=layout.item_scores(layout.XNLI_SCORES),
    log:
        layout.log("xnli_probe"),
    retries: request.retries_in_job
    conda:
        env("core")
    params:
        arguments=plan.xnli_probe_arguments(),
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} xnli-probe --features {input}"
        " --train-language {wildcards.lang} {params.arguments}"
        " --model {wildcards.model} --step {wildcards.step}"
        " {params.stats} --out {output.scores} --items {output.item_scores}"
