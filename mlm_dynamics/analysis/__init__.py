"""The tidy table and what is concluded from it (rules: workflow/rules/analysis.smk): transfer
matrices, onsets, final-layer gaps and degradation, with their intervals."""
