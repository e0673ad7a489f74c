# Masked-LM bits per character on each language's held-out text, one job per model x step x
# language, with bootstrap intervals over held-out sentences (see mlm_dynamics/bpc.py).


rule bpc:
    input:
        checkpoint=checkpoint_input,
        # A gate, not data: re-checking a checkpoint never re-runs its jobs.
        checked=ancient(rules.check_checkpoint.output),
        text=heldout_text,
    output:
        "results/bpc/{model}/{step}/{lang}.parquet",
    log:
        "logs/bpc/{model}/{step}/{lang}.log",
    conda:
        "../../envs/gpu.yaml"
    threads: config["gpu_resources"]["threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    params:
        tokenizer=tokenizer_option,
        max_sentences=config["bpc"]["max_sentences"],
        estimate=config["bpc"]["estimate"],
        maskings=config["bpc"]["maskings"],
        mask_probability=config["bpc"]["mask_probability"],
        batch_tokens=config["bpc"]["batch_tokens"],
        stats=statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} bpc --checkpoint {input.checkpoint} --text {input.text}"
        " {params.tokenizer}"
        " --max-sentences {params.max_sentences} --estimate {params.estimate}"
        " --maskings {params.maskings} --mask-probability {params.mask_probability}"
        " --batch-tokens {params.batch_tokens} --threads {threads}"
        " --model {wildcards.model} --step {wildcards.step} --language {wildcards.lang}"
        " {params.stats} --out {output}"
