# The paper's analyses and figures, drawn from the tidy probing table (see mlm_dynamics/analysis/findings.py
# and mlm_dynamics/figures.py). They are light, so they run on the submitting machine on a cluster.
# `snakemake analysis` (re)draws just these once the table exists.
# Each figure rule writes {figure}.png (in the report) and {figure}.pdf (for print).


rule analysis:
    input:
        analysis_targets(),
    localrule: True


rule analyse:
    input:
        table=PROBING_TABLE,
        item_scores=item_score_files(),
    output:
        onset=report(
            f"{ANALYSIS_DIR}/onset.csv",
            caption="../report/table-onset.rst",
            category="Tables",
        ),
        final_layer_gap=report(
            f"{ANALYSIS_DIR}/final_layer_gap.csv",
            caption="../report/table-final-layer-gap.rst",
            category="Tables",
        ),
        degradation=report(
            f"{ANALYSIS_DIR}/degradation.csv",
            caption="../report/table-degradation.rst",
            category="Tables",
        ),
    log:
        "logs/analysis/analyse.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        fraction=config["analysis"]["onset_fraction"],
        views=views_argument(),
        stats=statistics_arguments(),
        out_dir=lambda wildcards, output: os.path.dirname(output.onset),
    shell:
        "python -m mlm_dynamics --log {log} analyse --table {input.table} --items {input.item_scores}"
        " --views {params.views} --onset-fraction {params.fraction} {params.stats}"
        " --out-dir {params.out_dir}"


rule plot_in_language_curves:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/in-language-curves.png",
            caption="../report/in-language-curves.rst",
            category="In-language probing",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/in-language-curves.pdf",
    log:
        "logs/analysis/{model}/in-language-curves.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure in-language-curves {params.options}"


rule plot_selectivity:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/selectivity.png",
            caption="../report/selectivity.rst",
            category="In-language probing",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/selectivity.pdf",
    log:
        "logs/analysis/{model}/selectivity.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure selectivity {params.options}"


rule plot_layer_heatmaps:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/layer-heatmaps.png",
            caption="../report/layer-heatmaps.rst",
            category="In-language probing",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/layer-heatmaps.pdf",
    log:
        "logs/analysis/{model}/layer-heatmaps.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure layer-heatmaps {params.options}"


rule plot_final_layer_gap:
    input:
        table=PROBING_TABLE,
        gaps=rules.analyse.output.final_layer_gap,
    output:
        png=report(
            "results/figures/{model}/final-layer-gap.png",
            caption="../report/final-layer-gap.rst",
            category="In-language probing",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/final-layer-gap.pdf",
    log:
        "logs/analysis/{model}/final-layer-gap.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
        analysis_dir=lambda wildcards, input: os.path.dirname(input.gaps),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --analysis-dir {params.analysis_dir} --figure final-layer-gap {params.options}"


rule plot_onset:
    input:
        table=PROBING_TABLE,
        onset=rules.analyse.output.onset,
    output:
        png=report(
            "results/figures/{model}/onset.png",
            caption="../report/onset.rst",
            category="Learning onset",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/onset.pdf",
    log:
        "logs/analysis/{model}/onset.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
        analysis_dir=lambda wildcards, input: os.path.dirname(input.onset),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --analysis-dir {params.analysis_dir} --figure onset {params.options}"


rule plot_transfer_matrices:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/transfer-matrices-{task}.png",
            caption="../report/transfer-matrices.rst",
            category="Cross-lingual transfer",
            subcategory="{model}",
            labels={"task": "{task}", "figure": "matrices at selected steps"},
        ),
        pdf="results/figures/{model}/transfer-matrices-{task}.pdf",
    log:
        "logs/analysis/{model}/transfer-matrices-{task}.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure transfer-matrices-{wildcards.task}"
        " {params.options}"


rule plot_transfer_over_time:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/transfer-over-time-{task}.png",
            caption="../report/transfer-over-time.rst",
            category="Cross-lingual transfer",
            subcategory="{model}",
            labels={"task": "{task}", "figure": "pairs over time"},
        ),
        pdf="results/figures/{model}/transfer-over-time-{task}.pdf",
    log:
        "logs/analysis/{model}/transfer-over-time-{task}.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure transfer-over-time-{wildcards.task}"
        " {params.options}"


rule plot_bpc:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/bpc.png",
            caption="../report/bpc.rst",
            category="Language modelling",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/bpc.pdf",
    log:
        "logs/analysis/{model}/bpc.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure bpc {params.options}"


rule plot_alignment_f1:
    input:
        table=PROBING_TABLE,
    output:
        png=report(
            "results/figures/{model}/alignment-f1.png",
            caption="../report/alignment-f1.rst",
            category="Word alignment",
            subcategory="{model}",
        ),
        pdf="results/figures/{model}/alignment-f1.pdf",
    log:
        "logs/analysis/{model}/alignment-f1.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        options=plot_arguments,
        out_dir=lambda wildcards, output: os.path.dirname(output.png),
    shell:
        "python -m mlm_dynamics --log {log} plot --table {input.table} --out-dir {params.out_dir}"
        " --figure alignment-f1 {params.options}"
