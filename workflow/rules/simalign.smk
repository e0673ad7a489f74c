# SimAlign word alignment of each configured language pair, every layer, each method at each
# granularity (words, subwords), with bootstrap intervals over sentence pairs; one job per
# model x step x target language (see mlm_dynamics/simalign.py).


rule simalign:
    input:
        unpack(plan.simalign_files),
        unpack(plan.checkpoint_inputs),
    output:
        layout.SIMALIGN,
    log:
        layout.log("simalign"),
    benchmark:
        layout.benchmark("simalign")
    retries: request.retries_in_job
    conda:
        env("gpu")
    threads: request.gpu_threads
    resources:
        **request.gpu_resources,
    params:
        arguments=plan.simalign_arguments,
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} simalign --checkpoint {input.checkpoint}"
        " --source {input.source} --target {input.target} --gold {input.gold}"
        " {params.arguments} --language {wildcards.lang} --threads {threads}"
        " --model {wildcards.model} --step {wildcards.step} {params.stats} --out {output}"
