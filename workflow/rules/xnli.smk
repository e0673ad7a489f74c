# XNLI: sentence-pair features (train, dev, test) per model x step x language, then a probe per
# training language, its L2 chosen on its dev split, scored on every XNLI language's test split
# and its own dev split, with bootstrap intervals and per-pair correctness (see
# mlm_dynamics/xnli.py).


rule xnli_features:
    input:
        checkpoint=checkpoint_input,
        # A gate, not data: re-checking a checkpoint never re-runs its jobs.
        checked=ancient(rules.check_checkpoint.output),
        data=xnli_data_files,
    output:
        directory("results/xnli/features/{model}/{step}/{lang}"),
    log:
        "logs/xnli/features/{model}/{step}/{lang}.log",
    conda:
        "../../envs/gpu.yaml"
    threads: config["gpu_resources"]["threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    params:
        tokenizer=tokenizer_option,
        data=config["xnli"]["data"],
        hub_revision=config["xnli"]["hub_revision"],
        max_train=config["xnli"]["max_train"],
        max_dev=config["xnli"]["max_dev"],
        max_test=config["xnli"]["max_test"],
        batch_tokens=config["xnli"]["batch_tokens"],
    shell:
        "python -m mlm_dynamics --log {log} xnli-features --checkpoint {input.checkpoint}"
        " {params.tokenizer}"
        " --data {params.data:q} --hub-revision={params.hub_revision:q}"
        " --language {wildcards.lang} --max-train {params.max_train}"
        " --max-dev {params.max_dev} --max-test {params.max_test}"
        " --batch-tokens {params.batch_tokens}"
        " --threads {threads} --out {output}"


rule xnli_probe:
    input:
        xnli_features_dirs,
    output:
        scores="results/xnli/scores/{model}/{step}/{lang}.parquet",
        item_scores="results/xnli/scores/{model}/{step}/{lang}.items.npz",
    log:
        "logs/xnli/probe/{model}/{step}/{lang}.log",
    conda:
        "../../envs/core.yaml"
    params:
        features="results/xnli/features/{model}/{step}",
        languages=config["xnli"]["languages"],
        backend=config["probing"]["backend"],
        l2=config["probing"]["l2"],
        max_iter=config["probing"]["max_iter"],
        seeds=config["probing"]["seeds"],
        stats=statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} xnli-probe --features {params.features}"
        " --train-language {wildcards.lang} --languages {params.languages}"
        " --backend {params.backend} --l2 {params.l2} --max-iter {params.max_iter}"
        " --seeds {params.seeds} --model {wildcards.model} --step {wildcards.step}"
        " {params.stats} --out {output.scores} --items {output.item_scores}"
