# SimAlign word alignment of each configured language pair, every layer, each method at each
# granularity (words, subwords), with bootstrap intervals over sentence pairs; one job per
# model x step x target language (see mlm_dynamics/simalign.py).


rule simalign:
    input:
        unpack(simalign_files),
        checkpoint=checkpoint_input,
        # A gate, not data: re-checking a checkpoint never re-runs its jobs.
        checked=ancient(rules.check_checkpoint.output),
    output:
        "results/simalign/{model}/{step}/{lang}.parquet",
    log:
        "logs/simalign/{model}/{step}/{lang}.log",
    conda:
        "../../envs/gpu.yaml"
    threads: config["gpu_resources"]["threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    params:
        tokenizer=tokenizer_option,
        methods=config["simalign"]["methods"],
        granularity=config["simalign"]["granularity"],
        source_language=config["simalign"]["source_language"],
        batch_tokens=config["simalign"]["batch_tokens"],
        stats=statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} simalign --checkpoint {input.checkpoint}"
        " {params.tokenizer}"
        " --source {input.source} --target {input.target} --gold {input.gold}"
        " --methods {params.methods} --granularity {params.granularity}"
        " --source-language {params.source_language} --language {wildcards.lang}"
        " --batch-tokens {params.batch_tokens} --threads {threads}"
        " --model {wildcards.model} --step {wildcards.step} {params.stats}"
        " --out {output}"
