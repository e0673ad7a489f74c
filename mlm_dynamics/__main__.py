"""Command-line entry point: ``python -m mlm_dynamics <command> [options]``.

Each command lives in its own module with a ``main(argv)`` function; modules are imported lazily so
that a probe job does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
import sys

from mlm_dynamics.errors import InputError

COMMANDS = {
    "train-tokenizer": "mlm_dynamics.pretrain",
    "pretrain": "mlm_dynamics.pretrain",
    "prepare-treebank": "mlm_dynamics.treebank",
    "extract-activations": "mlm_dynamics.extract",
    "train-probe": "mlm_dynamics.probe_cli",
    "score-probe": "mlm_dynamics.probe_cli",
    "collect-table": "mlm_dynamics.tables",
    "transfer-matrices": "mlm_dynamics.tables",
    "analyse": "mlm_dynamics.analysis",
    "plot": "mlm_dynamics.plots",
    "bpc": "mlm_dynamics.bpc",
    "xnli-features": "mlm_dynamics.xnli",
    "xnli-probe": "mlm_dynamics.xnli",
    "simalign": "mlm_dynamics.simalign",
    "fetch-checkpoint": "mlm_dynamics.sources",
    "fetch-ud": "mlm_dynamics.ud_release",
}


# Testing hook (tests/test_slurm.py): MLM_DYNAMICS_FAIL_ONCE=<command>:<marker file> makes the
# first run of <command> that claims the marker fail, so a test can show that the scheduler retries
# a failed job and the run still completes. Unset, it does nothing.
FAIL_ONCE_VARIABLE = "MLM_DYNAMICS_FAIL_ONCE"


def fails_once(command: str) -> bool:
    """True for the one run of ``command`` that creates the hook's marker file."""
    import os

    target, _, marker = os.environ.get(FAIL_ONCE_VARIABLE, "").partition(":")
    if target != command or not marker:
        return False
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        names = "\n  ".join(sorted(COMMANDS))
        print(f"usage: python -m mlm_dynamics <command> [options]\ncommands:\n  {names}")
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    command, rest = argv[0], argv[1:]
    if fails_once(command):
        print(
            f"error: {command} failed on purpose ({FAIL_ONCE_VARIABLE} testing hook)",
            file=sys.stderr,
        )
        return 1
    module = importlib.import_module(COMMANDS[command])
    try:
        module.main(command, rest)
    except InputError as exc:
        # One clear line naming the file and line (or config key); nothing else on stderr.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
