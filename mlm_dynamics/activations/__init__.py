"""The activation cache (rules: workflow/rules/activations.smk): its format (``store``) and the job
that fills it from a checkpoint (``extract``)."""
