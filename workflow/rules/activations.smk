# The layer-activation cache: one vector per word and hidden state for every model x step x
# language (see mlm_dynamics/extract.py and mlm_dynamics/store.py).


rule extract_activations:
    input:
        checkpoint=checkpoint_input,
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
        pooling=config["activations"]["pooling"],
        batch_tokens=config["activations"]["batch_tokens"],
    shell:
        "python -m mlm_dynamics extract-activations --checkpoint {input.checkpoint}"
        " --treebank {input.treebank} --pooling {params.pooling}"
        " --batch-tokens {params.batch_tokens} --threads {threads} --out {output} > {log} 2>&1"
