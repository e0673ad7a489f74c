"""Test-only failure injection for ``python -m mlm_dynamics`` (tests/test_slurm.py).

With this directory on PYTHONPATH, Python imports this module at start-up (``site`` imports any
``sitecustomize`` on the path). It does nothing unless ``MLM_DYNAMICS_FAIL_ONCE`` is set to
``<command>:<marker file>``; then the first ``python -m mlm_dynamics [--log FILE] <command> ...``
that creates the marker file (atomically: one process wins) prints one error line on stderr and
exits 1 before the command runs, as a crashed job would; every later run finds the marker and runs
normally. So a test can make one scheduler job fail once and check that it is retried.

The rule commands keep this directory on the path: the Snakefile's ``shell.prefix`` prepends the
repository to PYTHONPATH and keeps what was there, and sbatch exports the submitting environment.
The production entry point (mlm_dynamics/__main__.py) knows nothing of this.
"""

from __future__ import annotations

import importlib.util
import os
import sys

VARIABLE = "MLM_DYNAMICS_FAIL_ONCE"
MODULE = "mlm_dynamics"


def command_of(argv: list[str]) -> str | None:
    """The mlm_dynamics command of an interpreter command line (``sys.orig_argv``), or None when
    the interpreter does not run ``-m mlm_dynamics``."""
    rest, index = None, 1
    while index < len(argv) and rest is None:
        argument = argv[index]
        index += 1
        if argument in ("--check-hash-based-pycs",):
            index += 1  # its value
            continue
        if argument == "-" or not argument.startswith("-") or argument.startswith("--"):
            return None  # a script, stdin or an option after which no -m can come
        for position, flag in enumerate(argument[1:], start=2):  # a cluster such as -um
            value = argument[position:]
            if flag == "c":
                return None
            if flag in "XW":  # options with a value: -X dev, -Wignore
                index += 0 if value else 1
                break
            if flag == "m":
                module = value or (argv[index] if index < len(argv) else "")
                if module != MODULE:
                    return None
                rest = argv[index if value else index + 1 :]
                break
    if rest is None:
        return None
    # the entry point's own --log FILE / --log=FILE before the command
    if rest[:1] == ["--log"]:
        rest = rest[2:]
    elif rest and rest[0].startswith("--log="):
        rest = rest[1:]
    return rest[0] if rest else None


def fails_once(command: str | None, setting: str | None) -> bool:
    """True for the one run of ``command`` that creates the marker file named by ``setting``."""
    target, _, marker = (setting or "").partition(":")
    if not command or target != command or not marker:
        return False
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def fail_line(command: str) -> str:
    return f"error: {command} failed on purpose ({VARIABLE} testing hook)"


def chain_next_sitecustomize() -> None:
    """Run the sitecustomize that this one shadows, if there is one further along sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        directory = os.path.abspath(entry or ".")
        candidate = os.path.join(directory, "sitecustomize.py")
        if directory != here and os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


def hook() -> None:
    setting = os.environ.get(VARIABLE)
    if not setting:
        return
    command = command_of(list(getattr(sys, "orig_argv", [])))
    if fails_once(command, setting):
        sys.stderr.write(fail_line(command) + "\n")
        sys.stderr.flush()
        # SystemExit would not leave site's start-up cleanly; nothing has run yet to clean up.
        os._exit(1)


hook()
chain_next_sitecustomize()
