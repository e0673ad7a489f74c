"""Pretraining dynamics of multilingual masked language models, probed layer by layer.

The science of the workflow: each module is one step with a small command-line interface
(``python -m mlm_dynamics <command> --help``) that the Snakemake rules call.
"""

__version__ = "0.1.0"
