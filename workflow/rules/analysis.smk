# The tidy table of every score, and what is concluded from it: transfer matrices per model and
# UD task, and the findings tables (onset, final-layer gap, degradation), with their intervals
# (see mlm_dynamics/analysis/). They are light, so they run on the submitting machine.


rule collect_table:
    input:
        scores=plan.score_tables(),
        item_scores=plan.item_score_files(seeded=True),
    output:
        table=layout.TABLE,
        csv=layout.TABLE_CSV,
    log:
        layout.log("collect_table"),
    localrule: True
    conda:
        env("core")
    params:
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} collect-table --inputs {input.scores}"
        " --items {input.item_scores} {params.stats} --out {output.table} --csv {output.csv}"


rule environment:
    input:
        table=rules.collect_table.output.table,
        checkpoints=plan.embedded_checkpoints(),
    output:
        layout.ENVIRONMENT,
    log:
        layout.log("environment"),
    localrule: True
    conda:
        env("core")
    params:
        arguments=plan.fingerprint_arguments,
    shell:
        "python -m mlm_dynamics --log {log} fingerprint {params.arguments}"
        " --checkpoints {input.checkpoints} --out {output}"


rule transfer_matrices:
    input:
        rules.collect_table.output.table,
    output:
        directory(layout.TRANSFER_MATRICES),
    log:
        layout.log("transfer_matrices"),
    wildcard_constraints:
        task=plan.transfer_task_pattern(),
    localrule: True
    conda:
        env("core")
    params:
        arguments=plan.transfer_matrices_arguments,
    shell:
        "python -m mlm_dynamics --log {log} transfer-matrices --table {input}"
        " --model {wildcards.model} --task {wildcards.task} {params.arguments} --out-dir {output}"


rule findings:
    input:
        table=rules.collect_table.output.table,
        item_scores=plan.item_score_files(),
    output:
        **{
            table: report(
                layout.FINDINGS.format(table=table),
                caption=f"../report/table-{table.replace('_', '-')}.rst",
                category="Tables",
            )
            for table in ANALYSIS_TABLES
        },
    log:
        layout.log("findings"),
    localrule: True
    conda:
        env("core")
    params:
        arguments=plan.findings_arguments(),
        stats=plan.statistics_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} analyse --table {input.table} --items {input.item_scores}"
        " {params.arguments} {params.stats} --out {output}"


rule explorer:
    input:
        table=rules.collect_table.output.table,
        findings=rules.findings.output,
    output:
        report(layout.EXPLORER, caption="../report/explorer.rst", category="Explorer"),
    log:
        layout.log("explorer"),
    localrule: True
    conda:
        env("core")
    params:
        arguments=plan.explorer_arguments(),
    shell:
        "python -m mlm_dynamics --log {log} explorer --table {input.table} {params.arguments}"
        " --out {output}"
