"""The test-only fail-once hook (tests/hooks/sitecustomize.py) that tests/test_slurm.py puts on
the jobs' PYTHONPATH: the named command fails once, then runs; the entry point has no hook."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parent / "hooks"
LINE = "error: check-config failed on purpose (MLM_DYNAMICS_FAIL_ONCE testing hook)\n"


def load_hook_module():
    spec = importlib.util.spec_from_file_location("fail_once_hook", HOOKS / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # MLM_DYNAMICS_FAIL_ONCE unset here: the hook does nothing
    return module


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["python", "-m", "mlm_dynamics", "check-config", "a.yaml"], "check-config"),
        (["python", "-m", "mlm_dynamics", "--log", "x.log", "pretrain", "--out", "o"], "pretrain"),
        (["python", "-m", "mlm_dynamics", "--log=x.log", "bpc"], "bpc"),
        (["python", "-u", "-X", "dev", "-mmlm_dynamics", "plot"], "plot"),
        (["python", "-um", "mlm_dynamics", "analyse"], "analyse"),
        (["python", "-m", "mlm_dynamics"], None),
        (["python", "-m", "snakemake", "--cores", "2"], None),
        (["python", "-c", "import mlm_dynamics", "-m", "mlm_dynamics", "plot"], None),
        (["python", "script.py", "-m", "mlm_dynamics", "plot"], None),
        (["python"], None),
    ],
)
def test_the_command_is_read_from_the_interpreter_command_line(argv, command):
    assert load_hook_module().command_of(argv) == command


def test_only_the_named_command_fails_and_only_once(tmp_path):
    hook = load_hook_module()
    marker = tmp_path / "marker"
    assert not hook.fails_once("pretrain", f"check-config:{marker}") and not marker.exists()
    assert not hook.fails_once("check-config", None) and not hook.fails_once("check-config", "")
    assert hook.fails_once("check-config", f"check-config:{marker}") and marker.is_file()
    assert not hook.fails_once("check-config", f"check-config:{marker}")


def check_config(tmp_path, hooks: bool, setting: str) -> subprocess.CompletedProcess:
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    env = {**os.environ, "MLM_DYNAMICS_FAIL_ONCE": setting}
    env.pop("PYTHONPATH", None)
    if hooks:
        env["PYTHONPATH"] = str(HOOKS)
    argv = [sys.executable, "-m", "mlm_dynamics", "--log", str(tmp_path / "log.txt")]
    return subprocess.run(
        [*argv, "check-config", str(config)], capture_output=True, text=True, env=env
    )


def test_a_job_with_the_hook_fails_once_then_runs(tmp_path):
    marker = tmp_path / "marker"
    first = check_config(tmp_path, hooks=True, setting=f"check-config:{marker}")
    assert (first.returncode, first.stderr, first.stdout) == (1, LINE, "")
    assert marker.is_file() and not (tmp_path / "log.txt").exists()  # failed before it ran
    second = check_config(tmp_path, hooks=True, setting=f"check-config:{marker}")
    assert (second.returncode, second.stderr) == (0, "")
    log = (tmp_path / "log.txt").read_text()
    assert log == "1 config file(s) read: no syntax error, no key given twice\n"


def test_another_command_and_the_entry_point_alone_never_fail(tmp_path):
    marker = tmp_path / "marker"
    other = check_config(tmp_path, hooks=True, setting=f"pretrain:{marker}")
    assert (other.returncode, other.stderr) == (0, "") and not marker.exists()
    # without tests/hooks on the path the variable means nothing: production has no hook
    plain = check_config(tmp_path, hooks=False, setting=f"check-config:{marker}")
    assert (plain.returncode, plain.stderr) == (0, "") and not marker.exists()
