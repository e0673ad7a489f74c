# The layer-activation cache: one vector per word and hidden state for every model x step x
# language (see mlm_dynamics/activations/extract.py and mlm_dynamics/activations/store.py).


rule extract_activations:
    input:
        checkpoint=checkpoint_input,
        # A gate, not data: re-checking a checkpoint never re-runs its jobs.
        checked=ancient(rules.check_checkpoint.output),
        treebank="results/treebanks/{lang}.json.gz",
    output:
        directory("results/activations/{model}/{step}/{lang}"),
    log:
        "logs/activations/{model}/{step}/{lang}.log",
    conda:
        "../../envs/gpu.yaml"
    threads: config["gpu_resources"]["threads"]
    resources:
        gpu=1,
        mem_mb=gpu_mem_mb,
        runtime=gpu_runtime,
    params:
        tokenizer=tokenizer_option,
        pooling=config["activations"]["pooling"],
        batch_tokens=config["activations"]["batch_tokens"],
    shell:
        "python -m mlm_dynamics --log {log} extract-activations --checkpoint {input.checkpoint}"
        " {params.tokenizer}"
        " --treebank {input.treebank} --pooling {params.pooling}"
        " --batch-tokens {params.batch_tokens} --threads {threads} --out {output}"
