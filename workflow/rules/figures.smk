# The paper's figures, one rule per entry of the figure registry (mlm_dynamics/figures.py
# FIGURES), each writing {figure}.png (in the report, captioned by workflow/report/<stem>.rst)
# and {figure}.pdf (for print). `snakemake figures` (re)draws every figure and findings table.


rule figures:
    input:
        plan.findings_tables() + plan.figure_files(),
    localrule: True


for figure in FIGURES:

    rule:
        name:
            f"figure_{figure.stem.replace('-', '_')}"
        input:
            table=rules.collect_table.output.table,
            findings=[rules.findings.output[table] for table in figure.reads],
        output:
            png=report(
                layout.FIGURE.format(
                    model="{model}", figure=figure.name, suffix="png"
                ),
                caption=f"../report/{figure.stem}.rst",
                category=figure.category,
                subcategory="{model}",
                labels=(
                    {"task": "{task}", "figure": figure.label}
                    if figure.per_task
                    else None
                ),
            ),
            pdf=layout.FIGURE.format(model="{model}", figure=figure.name, suffix="pdf"),
        log:
            layout.log("figure", figure=figure.name),
        localrule: True
        conda:
            env("core")
        params:
            figure=figure.name_for,
            options=plan.plot_arguments,
            covers=plan.band_covers,  # for the caption
        shell:
            "python -m mlm_dynamics --log {log} plot --table {input.table} --findings {input.findings}"
            " --figure {params.figure} {params.options} --png {output.png} --pdf {output.pdf}"
