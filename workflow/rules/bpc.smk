# Masked-LM bits per character on each language's held-out text, one job per model x step x
# language, with bootstrap intervals over held-out sentences (see mlm_dynamics/bpc.py).


rule bpc:
    input:
        unpack(plan.checkpoint_inputs),
        text=plan.heldout_text,
    output:
        layout.BPC,
    log:
        layout.log("bpc"),
    benchmark:
        layout.benchmark("bpc")
    retries: request.retries_in_job
    conda:
        env("gpu")
    threads: request.gpu_threads
    resources:
        **request.gpu_resources,
    params:
        arguments=plan.bpc_arguments,
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} bpc --checkpoint {input.checkpoint} --text {input.text}"
        " {params.arguments} --threads {threads}"
        " --model {wildcards.model} --step {wildcards.step} --language {wildcards.lang}"
        " {params.stats} --out {output}"
