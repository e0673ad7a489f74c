"""Probe a local model's checkpoints while its pretraining run is still writing them.

``watch`` follows every ``local`` model with ``steps: discover`` (or the ones named with
``--model``): it polls the model's ``glob`` every ``--interval`` seconds and, each time a new
complete step directory appears, runs ``snakemake`` (same Snakefile, ``--directory`` and config,
plus every option it does not know itself), which makes only the new step's jobs and then
refreshes the table and the figures. A step directory is complete when it appeared by rename or
holds ``checkpoint.done`` (``models.<name>.complete``); discovery itself skips the others, so a
plain ``snakemake`` never reads a half-written checkpoint either.

It stops after the run that probed a step at or past ``--until STEP`` (of every followed model),
or on Ctrl-C / SIGTERM: a snakemake that is running gets the signal (SIGINT: its jobs are
stopped; SIGTERM: its running jobs finish, no new one starts) and is waited for; every output is
written atomically, so nothing half-written stays behind. Exit status: 0 when done or stopped
while waiting, 130 when a snakemake run was cut short (the next start resumes it), snakemake's
status when a run failed.

Snakemake's own ``--until`` and any option watch would read itself go after ``--``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlm_dynamics import config_check
from mlm_dynamics.config_check import CHECKPOINT_DONE
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources import runs
from mlm_dynamics.sources.discover import discover_steps

SNAKEFILE = Path(__file__).resolve().parents[1] / "Snakefile"
INTERRUPTED = 130  # the shell's status of a command stopped by Ctrl-C


def say(line: str) -> None:
    print(f"watch: {line}", file=sys.stderr, flush=True)


def steps_text(steps) -> str:
    return ", ".join(map(str, steps)) or "none"


# ---------------------------------------------------------------- the command line


def parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description=(
            "Probe a local model's checkpoints as its pretraining run writes them: poll the "
            "glob of every local model with steps: discover and run snakemake (only the new "
            "step's jobs, then the table and the figures) each time a complete step appears. "
            f"A step directory is complete when it appeared by rename or holds {CHECKPOINT_DONE} "
            "(models.<name>.complete). Every option watch does not know is passed to snakemake, "
            "as is everything after '--'."
        ),
        epilog=(
            "example: mlm-dynamics watch --configfile run.yaml --until 10000 --cores 4 "
            "--interval 60. Stops on Ctrl-C (exit 130 if it cut a snakemake run short, 0 if it "
            "was waiting) or after the run that probed --until."
        ),
        allow_abbrev=False,  # an abbreviation must never swallow a snakemake option
    )
    parser.add_argument(
        "--interval", type=float, default=30.0, metavar="SECONDS",
        help="seconds between two looks at the checkpoint directories (default: 30)",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=int, metavar="STEP",
        help="stop after the run that probed a step >= STEP of every followed model "
        "(default: run until stopped)",
    )  # fmt: skip
    parser.add_argument(
        "--model", action="append", metavar="NAME",
        help="follow only this model (repeatable; default: every local model with "
        "steps: discover)",
    )  # fmt: skip
    parser.add_argument(
        "--directory", "-d", metavar="DIR", help="snakemake's working directory (default: .)"
    )
    parser.add_argument(
        "--configfile", "--configfiles", nargs="+", default=[], metavar="FILE",
        help="config files, as for snakemake (default: DIR/config.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--config", "-C", nargs="*", default=[], metavar="KEY=VALUE",
        help="config overrides, as for snakemake",
    )  # fmt: skip
    parser.add_argument(
        "--snakefile", "-s", default=str(SNAKEFILE), metavar="FILE",
        help=f"the workflow (default: {SNAKEFILE})",
    )  # fmt: skip
    return parser


def parse(command: str, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """watch's options and snakemake's (the unknown ones, then everything after ``--``)."""
    verbatim = []
    if "--" in argv:
        cut = argv.index("--")
        argv, verbatim = argv[:cut], argv[cut + 1 :]
    args, passed = parser(command).parse_known_args(argv)
    if args.interval <= 0:
        parser(command).error(f"--interval: must be positive, not {args.interval:g}")
    return args, passed + verbatim


# ---------------------------------------------------------------- the config


def read_config(configfiles: list[str], overrides: list[str]) -> dict:
    """The config Snakemake will build (files merged in order, then --config), validated with
    the workflow's schema and checked as common.smk checks it; mistakes name their key."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    config_check.check_config_files(configfiles)
    config: dict = {}
    for path in configfiles:
        update_config(config, config_check.load_yaml(path) or {})
    try:
        update_config(config, parse_config(overrides))
    except ValueError as exc:
        raise InputError(f"--config: {exc}") from None
    return config_check.validated(config)


def followed_models(config: dict, names: list[str] | None) -> dict[str, dict]:
    """The models watch follows: the named ones, else every local model with steps: discover."""
    models = config["models"]
    followable = {
        name: spec
        for name, spec in models.items()
        if spec["source"] == "local" and spec["steps"] == "discover"
    }
    if not names:
        if not followable:
            raise config_check.config_error(
                "models", "no model has source 'local' and steps: discover (what watch follows)"
            )
        return followable
    for name in names:
        if name not in models:
            known = ", ".join(models)
            raise InputError(f"--model {name}: no such model in the config (models: {known})")
        if name not in followable:
            raise config_check.config_error(
                f"models.{name}", "watch follows a model with source 'local' and steps: discover"
            )
    return {name: followable[name] for name in dict.fromkeys(names)}


def steps_every_seed_has(found: dict[str, list[int]], followed: dict[str, dict]) -> dict:
    """Each run's complete steps, kept only where every seed of its model has them (the
    workflow compares seeds step by step, so a step waits for its last seed)."""
    by_model: dict[str, set[int]] = {}
    for run, steps in found.items():
        model = followed[run]["model"]
        by_model[model] = by_model.get(model, set(steps)) & set(steps)
    return {run: sorted(by_model[followed[run]["model"]]) for run in found}


# ---------------------------------------------------------------- signals


class Stop:
    """The first SIGINT or SIGTERM asks watch to stop; while snakemake runs, each signal is
    passed on to it (SIGINT to its whole process group, as a terminal's Ctrl-C would be)."""

    def __init__(self):
        self.signal: int | None = None
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        self.saved = {
            sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    def handle(self, sig: int, frame) -> None:
        repeated = self.signal is not None
        self.signal = self.signal or sig
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            if sig == signal.SIGINT or repeated:  # a second signal stops the jobs too
                os.killpg(process.pid, signal.SIGINT)
            else:  # SIGTERM: Snakemake lets the running jobs finish and starts no new one
                process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else ""

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.signal is None and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def run_snakemake(argv: list[str], cwd: str, stop: Stop) -> int:
    """snakemake in its own process group (a terminal's Ctrl-C reaches watch, which passes it
    on once); its output goes to watch's stdout and stderr."""
    process = subprocess.Popen(argv, cwd=cwd, process_group=0)
    stop.process = process
    try:
        return process.wait()  # a signal runs Stop.handle, then the wait goes on
    finally:
        stop.process = None


# ---------------------------------------------------------------- the loop


def snakemake_argv(args, directory: str, configfiles: list[str], passed: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "snakemake", "--snakefile", args.snakefile]
    argv += ["--directory", directory]
    if args.configfile:
        argv += ["--configfile", *configfiles]
    if args.config:
        argv += ["--config", *args.config]
    return argv + passed


def main(command: str, argv: list[str]) -> int:
    args, passed = parse(command, argv)
    directory = os.path.abspath(args.directory or ".")
    if not os.path.isdir(directory):
        raise InputError(f"--directory {args.directory}: no such directory")
    configfiles = [os.path.abspath(path) for path in args.configfile]
    if not os.path.isfile(args.snakefile):
        raise InputError(f"--snakefile {args.snakefile}: no such file")
    args.snakefile = os.path.abspath(args.snakefile)
    os.chdir(directory)  # relative paths in the config are the working directory's, as for jobs
    config = read_config(configfiles or ["config.yaml"], args.config)
    # a model with seeds is followed run by run (its glob holds {seed})
    models = runs.expand(followed_models(config, args.model))
    transfer_steps = config["analysis"]["transfer_steps"]
    argv = snakemake_argv(args, directory, configfiles, passed)

    for name, spec in models.items():
        say(
            f"following models.{name}: {spec['glob']!r} (complete: {spec['complete']}) every "
            f"{args.interval:g} s"
            + (f", until step {args.until}" if args.until is not None else "")
        )
    probed = {name: [] for name in models}
    announced: dict[str, set[int]] = {name: set() for name in models}
    waiting_said = False
    with Stop() as stop:
        while stop.signal is None:
            found = {}
            for name, spec in models.items():
                complete, incomplete = discover_steps(spec)
                found[name] = complete
                for step in sorted(set(incomplete) - announced[name]):
                    say(f"models.{name}: step {step} is being written (no {CHECKPOINT_DONE} yet)")
                announced[name] |= set(incomplete)
            found = steps_every_seed_has(found, models)
            new = {name: sorted(set(found[name]) - set(probed[name])) for name in models}
            missing = [step for step in transfer_steps if any(step not in found[m] for m in models)]
            if any(new.values()) and all(found.values()) and not missing:
                waiting_said = False
                changes = "; ".join(
                    f"models.{name}: new step {steps_text(steps)}"
                    for name, steps in new.items()
                    if steps
                )
                say(f"{changes}: running snakemake")
                status = run_snakemake(argv, directory, stop)
                if status == 0:
                    probed = found
                if stop.signal is not None:
                    if status == 0:
                        break
                    say(
                        f"stopped ({stop.name}): snakemake was cut short; its unfinished jobs "
                        "run again on the next start"
                    )
                    return INTERRUPTED
                if status != 0:
                    print(
                        f"error: snakemake exited with status {status} probing "
                        f"{changes.replace(': new step', ' step')} (its output is above); watch "
                        "stopped, start it again to retry",
                        file=sys.stderr,
                        flush=True,
                    )
                    return status if status > 0 else 1  # (killed by a signal: negative)
                say("probed " + "; ".join(f"models.{n}: {steps_text(s)}" for n, s in found.items()))
                if args.until is not None and all(
                    steps and steps[-1] >= args.until for steps in probed.values()
                ):
                    say(f"step {args.until} (--until) probed: done")
                    return 0
            elif not waiting_said:
                if not all(found.values()) or missing:
                    why = [f"models.{n}: no complete step yet" for n in models if not found[n]]
                    why += [f"step {step} of analysis.transfer_steps" for step in missing]
                    say("waiting (" + "; ".join(why) + ")")
                else:
                    say("waiting for the next checkpoint")
                waiting_said = True
            stop.sleep(args.interval)
        say(
            f"stopped ({stop.name}) while waiting; probed "
            + "; ".join(f"models.{n}: {steps_text(s)}" for n, s in probed.items())
        )
    return 0
