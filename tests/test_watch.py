"""`watch` follows a local model while a background process writes its checkpoints.

A real writer process writes three step directories one after another, each first half-written
under its final name (config.json and a truncated weights file) for a few polls, then completed
and marked with checkpoint.done. `watch --until` the third step must probe each step exactly once,
as it lands and never half-written, and end with the table a one-shot `snakemake` run on the same
three checkpoints makes.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_run import REPO

from mlm_dynamics.config_check import CHECKPOINT_DONE
from mlm_dynamics.errors import InputError
from mlm_dynamics.plan import Plan
from mlm_dynamics.sources.checks import weights_digests
from mlm_dynamics.sources.discover import discover_steps

STEPS = [100, 200, 300]
INTERVAL = 1.0  # watch's polling, seconds
HALF_WRITTEN = 3.0  # seconds each step directory stays half-written: two polls or more
PER_STEP_RULES = ["check_checkpoint", "extract_activations", "train_probe", "score_probe"]
# What the runs make: the table (watch passes targets on; without one the figures are made too,
# left out here to keep the test short).
TARGETS = ["results/tables/probing.parquet"]

# The writer: for each step, wait until the previous one was probed (the test touches
# go-<step> when watch says so, so that each step lands while watch is polling, not while a run
# is going on), write the step directory half (config.json, the first half of the weights), wait,
# then write it whole and mark it done; each moment goes to a JSON-lines log.
WRITER = r"""
import json, shutil, sys, time
from pathlib import Path

staging, run, log, pause = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), \
    float(sys.argv[4])
steps = [int(step) for step in sys.argv[5:]]

def probed(step):
    return (log.parent / f"go-{step}").exists()

def note(**fields):
    with open(log, "a") as f:
        f.write(json.dumps({**fields, "time": time.time()}) + "\n")

for i, step in enumerate(steps):
    while i and not probed(steps[i - 1]):
        time.sleep(0.2)
    source, target = staging / str(step), run / f"ckpt-{step}"
    target.mkdir()
    shutil.copy(source / "config.json", target / "config.json")
    weights = (source / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    note(step=step, event="half-written")
    time.sleep(pause)
    for path in sorted(source.iterdir()):
        shutil.copy(path, target / path.name)
    (target / "checkpoint.done").touch()
    note(step=step, event="done")
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    """Three complete checkpoints of the embedded architecture (2 layers, hidden 32), seeded
    differently per step, with their tokenizer: what the writer copies from."""
    from mlm_dynamics.config_check import schema_default
    from mlm_dynamics.pretrain import initial_model, settings_from, train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [line for path in [REPO / "resources/text/en.txt.gz"] for line in read_lines(path)]
    tokenizer = train_tokenizer(texts, vocab_size=1000)
    root = tmp_path_factory.mktemp("staged")
    for step in STEPS:
        shape = settings_from(
            {**schema_default("pretrain"), "hidden_size": 32, "layers": 2, "attention_heads": 2,
             "intermediate_size": 64, "max_length": 32, "seed": step}
        )  # fmt: skip
        model = initial_model(tokenizer, shape)
        model.save_pretrained(root / str(step), safe_serialization=True)
        tokenizer.save_pretrained(root / str(step))
    return root


def watched_config(run: Path) -> dict:
    """The smallest probing config the workflow tests use: one language, POS, few sentences."""
    en = {"treebank": str(REPO / "resources/ud/UD_English-EWT")}
    return {
        "models": {
            "run": {"source": "local", "layers": 2, "steps": "discover",
                    "glob": str(run / "ckpt-*"), "complete": "marker"}
        },
        "languages": {"en": en},
        "transfer_languages": [],
        "treebanks": {"max_sentences": {"train": 80, "dev": 40, "test": 40}},
        "statistics": {"min_sentences": 10, "resamples": 200},
        "probing": {"tasks": ["pos"], "controls": [], "l2": [0.01], "max_iter": 50},
        "bpc": {"enabled": False},
        "gpu_resources": {"threads": 1},
    }  # fmt: skip


def jobs_of(snakemake_log: Path) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a Snakemake run started, from its log."""
    jobs = []
    for line in snakemake_log.read_text().splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line.strip()):
            jobs.append((match.group(1), {}))
        elif jobs and (match := re.match(r"^wildcards: (.*)$", line.strip())):
            jobs[-1][1].update(item.split("=", 1) for item in match.group(1).split(", "))
    return jobs


@pytest.mark.e2e
def test_watch_probes_each_checkpoint_once_as_it_lands(staged, tmp_path):
    run, workdir, reference = tmp_path / "run", tmp_path / "watched", tmp_path / "one-shot"
    for directory in (run, workdir, reference):
        directory.mkdir()
    config = watched_config(run)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # The one-shot run reads the same three checkpoints where they were staged (complete, so
    # 'rename'), beside the watched run: its jobs use the core the watched chain leaves idle.
    one_shot = watched_config(staged)
    one_shot["models"]["run"].update(glob=str(staged / "*"), complete="rename")
    (reference / "config.yaml").write_text(yaml.safe_dump(one_shot))
    one_shot_log = tmp_path / "one-shot.out"
    with open(one_shot_log, "w") as out:
        one_shot = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
             "--directory", str(reference), "--configfile", str(reference / "config.yaml"),
             "--cores", "1", *TARGETS],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    started = time.monotonic()
    output = tmp_path / "watch.out"
    with open(output, "w") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "mlm_dynamics", "watch", "--directory", str(workdir),
             "--configfile", str(workdir / "config.yaml"), "--interval", str(INTERVAL),
             "--until", str(STEPS[-1]), "--cores", "2", *TARGETS],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    moments = tmp_path / "writer.jsonl"
    writer = None
    try:
        # the writer starts once watch is looking at the (still empty) run directory
        while "waiting (models.run: no complete step yet)" not in output.read_text():
            assert watch.poll() is None, output.read_text()[-3000:]
            time.sleep(0.1)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, staged, run, moments, str(HALF_WRITTEN)]
            + [str(step) for step in STEPS]
        )
        deadline = time.monotonic() + 400
        while watch.poll() is None:
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            for probed in re.findall(
                r"^watch: probed models\.run: .*?(\d+)$", output.read_text(), re.M
            ):
                (tmp_path / f"go-{probed}").touch()
            time.sleep(0.1)
        assert writer.wait(timeout=30) == 0
    finally:
        for process in (watch, writer):
            if process is not None and process.poll() is None:
                process.kill()
    text = output.read_text()
    assert watch.returncode == 0, text[-6000:]
    watched_seconds = time.monotonic() - started

    # Written one after another: each step half-written first, then done, before the next began.
    events = [json.loads(line) for line in moments.read_text().splitlines()]
    assert [(e["step"], e["event"]) for e in events] == [
        (step, event) for step in STEPS for event in ("half-written", "done")
    ]
    done_at = {e["step"]: e["time"] for e in events if e["event"] == "done"}
    # watch saw every step half-written, and left it alone until it was marked done
    for step in STEPS:
        assert f"models.run: step {step} is being written (no {CHECKPOINT_DONE} yet)" in text
    assert f"step {STEPS[-1]} (--until) probed: done" in text

    # One Snakemake run per checkpoint, each running only that checkpoint's jobs, once each.
    logs = sorted((workdir / ".snakemake/log").glob("*.snakemake.log"))
    assert len(logs) == len(STEPS), text[-3000:]
    every = Counter()
    for step, log in zip(STEPS, logs, strict=True):
        jobs = jobs_of(log)
        per_step = [(rule, w) for rule, w in jobs if rule in PER_STEP_RULES]
        assert {int(w["step"]) for _, w in per_step} == {step}, log.read_text()[-3000:]
        every.update((rule, int(w["step"])) for rule, w in per_step)
        assert "collect_table" in {rule for rule, _ in jobs}  # ... and refreshed the table
    assert every == Counter({(rule, step): 1 for rule in PER_STEP_RULES for step in STEPS})
    # ... never before the step was done: its first job ran after, on the complete weights
    for step in STEPS:
        record = workdir / f"results/checks/run/{step}.json"
        assert record.stat().st_mtime >= done_at[step]
        _, expected = weights_digests(sorted((staged / str(step)).glob("*.safetensors")))
        assert json.loads(record.read_text())["weights_sha256"] == expected

    # The table equals the one-shot run's on the same three checkpoints.
    assert one_shot.wait(timeout=300) == 0, one_shot_log.read_text()[-3000:]
    watched = pd.read_parquet(workdir / "results/tables/probing.parquet")
    expected = pd.read_parquet(reference / "results/tables/probing.parquet")
    assert sorted(watched["step"].unique()) == STEPS
    pd.testing.assert_frame_equal(watched, expected, check_exact=True)
    print(f"watched {watched_seconds:.0f} s, in all {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- discovery, in process


def local_spec(root: Path, complete: str) -> dict:
    return {"source": "local", "glob": str(root / "ckpt-*"), "steps": "discover",
            "complete": complete, "layers": 2}  # fmt: skip


def test_discovery_skips_step_directories_not_marked_done(tmp_path):
    from workflow_run import reduced_config

    for step in (10, 20, 30):
        (tmp_path / f"ckpt-{step}").mkdir()
    (tmp_path / "ckpt-10" / CHECKPOINT_DONE).touch()
    (tmp_path / "ckpt-30" / CHECKPOINT_DONE).touch()
    (tmp_path / "ckpt-40").write_text("a file, not a step directory")
    (tmp_path / ".tmp-ckpt-50.x1y2").mkdir()  # atomic_dir's temporary: never matched
    assert discover_steps(local_spec(tmp_path, "marker")) == ([10, 30], [20])
    assert discover_steps(local_spec(tmp_path, "rename")) == ([10, 20, 30], [])

    from snakemake.utils import validate

    from mlm_dynamics.config_check import SCHEMA

    config = reduced_config()
    config["models"] = {"run": local_spec(tmp_path, "marker")}
    validate(config, str(SCHEMA), set_default=True)
    assert Plan(config).steps("run") == [10, 30]
    for step in (10, 30):
        (tmp_path / f"ckpt-{step}" / CHECKPOINT_DONE).unlink()
    with pytest.raises(
        InputError,
        match=r"models\.run\.glob: no checkpoint matches .* \(3 step directories have no "
        r"checkpoint\.done yet\)",
    ):
        Plan(config)


# ---------------------------------------------------------------- the command's own errors


def watch_line(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, str]:
    """watch's exit status and what it wrote on stderr, run in this process (from ``cwd``)."""
    from mlm_dynamics.__main__ import main

    monkeypatch.chdir(cwd)  # restored after the test (watch changes into --directory)
    status = main(["watch", *args])
    return status, capsys.readouterr().err


def test_watch_mistakes_are_one_line_naming_the_key(tmp_path, monkeypatch, capsys):
    config = watched_config(tmp_path / "run")
    config["models"]["run"]["steps"] = [100]
    config["models"]["run"]["path"] = str(tmp_path / "run" / "ckpt-{step}")
    (tmp_path / "run" / "ckpt-100").mkdir(parents=True)
    (tmp_path / "listed.yaml").write_text(yaml.safe_dump(config))
    listed = ["--configfile", "listed.yaml"]
    assert watch_line(monkeypatch, capsys, tmp_path, *listed) == (
        2,
        "error: config: models.run.complete: step 100: "
        f"{tmp_path / 'run' / 'ckpt-100'} has no {CHECKPOINT_DONE} (still being written?)\n",
    )
    (tmp_path / "run" / "ckpt-100" / CHECKPOINT_DONE).touch()
    cases = [
        (listed, "error: config: models: no model has source 'local' and steps: discover "
                 "(what watch follows)"),
        ([*listed, "--model", "other"],
         "error: --model other: no such model in the config (models: run)"),
        ([*listed, "--config", "transfer_languages=[xx]"],
         "error: config: transfer_languages[0]: unknown language 'xx' (not under 'languages')"),
        (["--configfile", "missing.yaml"],
         f"error: {tmp_path / 'missing.yaml'}: no such config file"),
        (["--directory", "nowhere"], "error: --directory nowhere: no such directory"),
    ]  # fmt: skip
    for args, line in cases:
        assert watch_line(monkeypatch, capsys, tmp_path, *args) == (2, line + "\n"), args


def test_ctrl_c_while_waiting_stops_cleanly(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(watched_config(tmp_path / "run")))
    process = subprocess.Popen(
        [sys.executable, "-m", "mlm_dynamics", "watch", "--interval", "0.2", "--cores", "1"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert "following models.run" in process.stderr.readline()
    assert "waiting (models.run: no complete step yet)" in process.stderr.readline()
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0
    assert rest == "watch: stopped (SIGINT) while waiting; probed models.run: none\n"
