# UD treebanks: validated, subsampled and stored compactly, one job per language
# (see mlm_dynamics/treebanks.py).


rule prepare_treebank:
    input:
        treebank_dir,
    output:
        treebank="results/treebanks/{lang}.json.gz",
        labels="results/treebanks/{lang}.labels.json",
    log:
        "logs/treebanks/{lang}.log",
    conda:
        "../../envs/core.yaml"
    params:
        max_train=config["treebanks"]["max_sentences"]["train"],
        max_dev=config["treebanks"]["max_sentences"]["dev"],
        max_test=config["treebanks"]["max_sentences"]["test"],
        dev_fraction=config["treebanks"]["dev_fraction"],
        min_sentences=config["statistics"]["min_sentences"],
        seed=config["treebanks"]["seed"],
        on_bad_sentence=config["treebanks"]["on_bad_sentence"],
    shell:
        "python -m mlm_dynamics --log {log} prepare-treebank --treebank {input} --language {wildcards.lang}"
        " --max-train {params.max_train} --max-dev {params.max_dev} --max-test {params.max_test}"
        " --dev-fraction {params.dev_fraction} --min-sentences {params.min_sentences}"
        " --seed {params.seed} --on-bad-sentence {params.on_bad_sentence}"
        " --out {output.treebank} --labels {output.labels}"
