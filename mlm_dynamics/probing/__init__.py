"""UD probes (rules: workflow/rules/probing.smk): the registry of probing tasks, the probe
classifiers, control tasks, MDL, and the train-probe / score-probe commands."""
