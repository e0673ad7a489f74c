# UD probes (pos, arc, deprel): one probe file per model x step x task x training language,
# scored on the test split of every language of its transfer set. One job fits (and one scores)
# every task of a model x step x language: a paper-scale run stays at a few jobs per checkpoint
# and language, which keeps both the DAG and the scheduler's queue small; then the tidy table of every
# score and the transfer matrices (see mlm_dynamics/probing/cli.py and mlm_dynamics/analysis/tables.py).
# Probe jobs are light CPU jobs (unless probing.device is cuda); scoring never imports torch.


rule train_probe:
    input:
        activations=activation_input,
        treebank="results/treebanks/{lang}.json.gz",
    output:
        probe_outputs(),
    log:
        "logs/probing/train/{model}/{step}/{lang}.log",
    conda:
        probe_conda_env()
    resources:
        mem_mb=probe_mem_mb,
        runtime=probe_runtime,
        gpu=probe_gpus(),
    params:
        tasks=" ".join(config["probing"]["tasks"]),
        seeds=config["probing"]["seeds"],
        l2=" ".join(str(value) for value in config["probing"]["l2"]),
        max_iter=config["probing"]["max_iter"],
        backend=config["probing"]["backend"],
        device=config["probing"]["device"],
        options=probe_options(),
    shell:
        "python -m mlm_dynamics --log {log} train-probe --tasks {params.tasks}"
        " --activations {input.activations} --treebank {input.treebank} --seeds {params.seeds}"
        " --l2 {params.l2} --max-iter {params.max_iter} --backend {params.backend}"
        " --device {params.device} {params.options} --threads {threads} --out {output}"


rule score_probe:
    input:
        probes=score_probe_inputs,
        activations=activation_input,
        treebank="results/treebanks/{lang}.json.gz",
    output:
        scores="results/scores/{model}/{step}/{lang}.parquet",
        item_scores="results/scores/{model}/{step}/{lang}.items.npz",
    log:
        "logs/probing/score/{model}/{step}/{lang}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=probe_mem_mb,
        runtime=probe_runtime,
    params:
        stats=statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} score-probe --probes {input.probes}"
        " --activations {input.activations} --treebank {input.treebank}"
        " --model {wildcards.model} --step {wildcards.step} {params.stats}"
        " --out {output.scores} --items {output.item_scores}"


rule collect_table:
    input:
        score_table_inputs,
    output:
        table=PROBING_TABLE,
        csv=PROBING_TABLE_CSV,
    log:
        "logs/probing/collect_table.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    shell:
        "python -m mlm_dynamics --log {log} collect-table --inputs {input}"
        " --out {output.table} --csv {output.csv}"


rule transfer_matrices:
    input:
        PROBING_TABLE,
    output:
        directory("results/tables/transfer/{model}/{task}"),
    log:
        "logs/probing/transfer_matrices/{model}/{task}.log",
    wildcard_constraints:
        task=PROBING_TASK_PATTERN,
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        steps=transfer_steps_argument,
        languages=" ".join(config["transfer_languages"]),
        views=views_argument(),
    shell:
        "python -m mlm_dynamics --log {log} transfer-matrices --table {input} --model {wildcards.model}"
        " --task {wildcards.task} --steps {params.steps} --languages {params.languages}"
        " --views {params.views} --out-dir {output}"
