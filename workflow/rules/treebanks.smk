# UD treebanks: validated, subsampled and stored compactly, one job per language
# (see mlm_dynamics/treebanks.py).


rule prepare_treebank:
    input:
        treebank=plan.treebank_dir,
        files=plan.treebank_files,
    output:
        treebank=layout.TREEBANK,
        labels=layout.TREEBANK_LABELS,
    log:
        layout.log("prepare_treebank"),
    retries: request.retries_in_job
    conda:
        env("core")
    params:
        arguments=plan.prepare_treebank_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} prepare-treebank --treebank {input.treebank} --language {wildcards.lang}"
        " {params.arguments} --out {output.treebank} --labels {output.labels}"
