"""Command-line entry point: ``python -m mlm_dynamics <command> [options]``.

Each command lives in its own module with a ``main(argv)`` function; modules are imported lazily so
that a probe job does not pay for importing torch and transformers.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from pathlib import Path

from mlm_dynamics.errors import InputError

COMMANDS = {
    "train-tokenizer": "mlm_dynamics.pretrain",
    "pretrain": "mlm_dynamics.pretrain",
    "prepare-treebank": "mlm_dynamics.treebanks",
    "extract-activations": "mlm_dynamics.activations.extract",
    "train-probe": "mlm_dynamics.probing.cli",
    "score-probe": "mlm_dynamics.probing.cli",
    "collect-table": "mlm_dynamics.analysis.collect",
    "transfer-matrices": "mlm_dynamics.analysis.tables",
    "analyse": "mlm_dynamics.analysis.findings",
    "plot": "mlm_dynamics.figures",
    "bpc": "mlm_dynamics.bpc",
    "explorer": "mlm_dynamics.explorer",
    "xnli-features": "mlm_dynamics.xnli",
    "xnli-probe": "mlm_dynamics.xnli",
    "simalign": "mlm_dynamics.simalign",
    "fetch-checkpoint": "mlm_dynamics.sources.fetch",
    "check-checkpoint": "mlm_dynamics.sources.checks",
    "check-config": "mlm_dynamics.config_check",
    "fetch-ud": "mlm_dynamics.sources.ud_release",
    "watch": "mlm_dynamics.watch",
    "fingerprint": "mlm_dynamics.fingerprint",
}


def split_log_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--log FILE`` (before the command) and the rest of the arguments."""
    if argv[:1] == ["--log"] and len(argv) >= 2:
        return argv[1], argv[2:]
    if argv and argv[0].startswith("--log="):
        return argv[0].split("=", 1)[1], argv[1:]
    return None, argv


@contextlib.contextmanager
def log_to(path: str):
    """Send this process's stdout and stderr (file descriptors too, for torch's C++ warnings) to
    ``path`` for the duration; yields a duplicate of the original stderr, so the error line still
    reaches the terminal that started the job."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    streams = sys.stdout, sys.stderr
    for stream in streams:
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = open(path, "w", encoding="utf-8", buffering=1)  # closed in the finally below
    for fd in saved:
        os.dup2(log.fileno(), fd)
    sys.stdout = sys.stderr = log
    try:
        yield saved[2]
    finally:
        log.flush()
        sys.stdout, sys.stderr = streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.close()


def run(command: str, rest: list[str]) -> tuple[int, str | None]:
    """Run one command: (exit status, the one error line or None)."""
    module = importlib.import_module(COMMANDS[command])
    try:
        status = module.main(command, rest)  # None, or an exit status (watch's 130)
    except InputError as exc:
        return 2, f"error: {exc}"
    except SystemExit as exc:  # argparse's usage errors; its message is already on stderr
        if exc.code in (0, None):
            return 0, None
        return 2 if isinstance(exc.code, int) else 1, None
    return status or 0, None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    log_path, argv = split_log_option(argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        names = "\n  ".join(sorted(COMMANDS))
        print(
            f"usage: python -m mlm_dynamics [--log FILE] <command> [options]\ncommands:\n  {names}"
        )
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    command, rest = argv[0], argv[1:]
    if not log_path:
        status, error = run(command, rest)
        if error:
            # One clear line naming the file and line (or config key); nothing else on stderr.
            print(error, file=sys.stderr, flush=True)
        return status
    with log_to(log_path) as terminal:
        try:
            status, error = run(command, rest)
        except Exception as exc:
            # A bug, not bad input: the traceback goes to the log, one line to the terminal.
            traceback.print_exc()
            status = 1
            error = (
                f"error: {command} failed ({type(exc).__name__}: {exc}); traceback in {log_path}"
            )
        if error:
            print(error, file=sys.stderr, flush=True)
        elif status:  # argparse's message: the last line of the log
            sys.stderr.flush()
            lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
            last = next((line for line in reversed(lines) if line.strip()), "")
            error = f"{last or f'error: {command} failed'} (log: {log_path})"
        if status:
            os.write(terminal, f"{error}\n".encode())
    return status


if __name__ == "__main__":
    sys.exit(main())
