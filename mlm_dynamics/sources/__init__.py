"""Checkpoints and treebanks from elsewhere (rules: workflow/rules/sources.smk): hub revisions and
fairseq files fetched and converted, every checkpoint checked before use, a pinned UD release."""
