# UD probes (the tasks of mlm_dynamics/probing/registry.py): one probe file per model x step x
# task x training language, scored on the test split of every language of its transfer set. One
# job fits (and one scores) every task of a model x step x language, which keeps both the DAG and
# the scheduler's queue small (see mlm_dynamics/probing/). Probe jobs are light CPU jobs (unless
# probing.device is cuda); scoring never imports torch.


rule train_probe:
    input:
        activations=rules.extract_activations.output,
        treebank=rules.prepare_treebank.output.treebank,
    output:
        plan.probe_outputs(),
    log:
        layout.log("train_probe"),
    benchmark:
        layout.benchmark("train_probe")
    retries: request.retries_in_job
    conda:
        env(plan.probe_env())
    resources:
        mem_mb=request.probe_mem_mb,
        runtime=request.probe_runtime,
        gpu=request.probe_gpus(),
    params:
        arguments=plan.train_probe_arguments(),
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} train-probe --activations {input.activations}"
        " --treebank {input.treebank} {params.arguments} {params.stats} --threads {threads}"
        " --out {output}"


rule score_probe:
    input:
        probes=plan.scored_probes,
        activations=rules.extract_activations.output,
        treebank=rules.prepare_treebank.output.treebank,
    output:
        scores=layout.SCORES,
        item_scores=layout.item_scores(layout.SCORES),
    log:
        layout.log("score_probe"),
    benchmark:
        layout.benchmark("score_probe")
    retries: request.retries_in_job
    conda:
        env("core")
    resources:
        mem_mb=request.probe_mem_mb,
        runtime=request.probe_runtime,
    params:
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} score-probe --probes {input.probes}"
        " --activations {input.activations} --treebank {input.treebank}"
        " --model {wildcards.model} --step {wildcards.step} {params.stats}"
        " --out {output.scores} --items {output.item_scores}"
