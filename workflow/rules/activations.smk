# The layer-activation cache: one vector per word and hidden state for every model x step x
# language (see mlm_dynamics/activations/).


rule extract_activations:
    input:
        unpack(plan.checkpoint_inputs),
        treebank=rules.prepare_treebank.output.treebank,
    output:
        directory(layout.CACHE),
    log:
        layout.log("extract_activations"),
    benchmark:
        layout.benchmark("extract_activations")
    retries: request.retries_in_job
    conda:
        env("gpu")
    threads: request.gpu_threads
    resources:
        **request.gpu_resources,
    params:
        arguments=plan.extract_arguments,
    shell:
        "python -m mlm_dynamics --log {log} extract-activations --checkpoint {input.checkpoint}"
        " --treebank {input.treebank} {params.arguments}"
        " --threads {threads} --out {output}"
