"""The scheduler requests (mlm_dynamics/scheduler.py) without Snakemake: the shape and size of a
job, requests that grow with each attempt, and against the peak memory of the reference run's
real jobs."""

from __future__ import annotations

import csv
import json

import pytest
from test_plan import DEFAULT, job, validated
from workflow_run import LANGUAGES, STEPS, reduced_config

from mlm_dynamics import layout
from mlm_dynamics.config_check import schema_default
from mlm_dynamics.plan import Plan
from mlm_dynamics.probing import registry
from mlm_dynamics.scheduler import Requests
from mlm_dynamics.treebanks import load_prepared

DEFAULT_SCHEMA_RUNTIME = schema_default("gpu_resources.runtime_minutes")


def requests_of(config: dict, in_job: bool = False) -> Requests:
    return Requests(config, Plan(config).steps_by_model, in_job=in_job)


@pytest.fixture
def default() -> Requests:
    return requests_of(validated(DEFAULT))


def test_the_shape_comes_from_config_json_then_the_config_then_the_assumption(tmp_path):
    models = {
        "run": {"source": "local", "path": str(tmp_path / "{step}"), "steps": [0], "layers": 2},
        "hub": {"source": "hub", "repo": "org/m", "steps": [0], "layers": 12},
        "sized": {"source": "hub", "repo": "org/m", "steps": [0], "layers": 24,
                  "shape": {"vocab_size": 50000, "hidden_size": 1024, "intermediate_size": 4096}},
    }  # fmt: skip
    config = validated({**DEFAULT, "models": models})
    (tmp_path / "0").mkdir()
    (tmp_path / "0/config.json").write_text(
        json.dumps({"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2})
    )
    request = requests_of(config)
    assert request.model_shape("run", 0) == (1000, 64, 2, 256)
    assert request.model_shape("hub", 0) == (250002, 768, 12, 3072)
    assert request.model_shape("sized", 0) == (50000, 1024, 24, 4096)
    # XLM-R base: 192M embedding + 85M layer parameters
    assert request.million_parameters("hub", 0) == pytest.approx(277.0, abs=0.5)


def test_requests_grow_with_each_attempt(default):
    first, second = default.gpu_mem_mb(job(), 1), default.gpu_mem_mb(job(), 2)
    assert second == pytest.approx(2 * first, abs=1)
    assert default.probe_runtime(job(), 2) == 2 * default.probe_runtime(job(), 1)
    assert default.pretrain_runtime(job(step=800), 1) > default.pretrain_runtime(job(step=200), 1)


def test_every_gpu_rule_asks_for_one_gpu_and_the_plan_s_memory_and_time(default):
    resources = default.gpu_resources
    assert resources["gpu"] == 1
    assert resources["mem_mb"](job(), 2) == default.gpu_mem_mb(job(), 2)
    assert resources["runtime"](job(), 1) == DEFAULT_SCHEMA_RUNTIME
    assert default.gpu_threads == DEFAULT["gpu_resources"]["threads"]


def test_members_are_retried_in_place_only_inside_a_group_job():
    config = validated(DEFAULT)
    # locally and when submitting: the profile decides
    assert requests_of(config).retries_in_job == 0
    in_job = requests_of(config, in_job=True).retries_in_job
    assert in_job == schema_default("scheduler.retries_in_job")
    config["scheduler"]["retries_in_job"] = 5
    assert requests_of(config, in_job=True).retries_in_job == 5


@pytest.mark.e2e
@pytest.mark.parametrize("counted", [False, True], ids=["estimated", "counted"])
def test_no_job_of_the_reference_run_used_more_memory_than_it_asked_for(
    reference, counted, monkeypatch
):
    """Snakemake's benchmark of every measured job (max_rss: peak resident memory of the job's
    process tree) against the plan's request for that job on its first attempt: estimated from
    the caps (what a dry run sees) and from the words counted in the run's own cache (what the
    job is submitted with, its inputs being there)."""
    plan = requests_of(validated(reduced_config()))
    if counted:
        monkeypatch.chdir(reference)
        treebank = load_prepared(reference / layout.TREEBANK.format(lang="en"))
        words = {split: sum(len(s.words) for s in part) for split, part in treebank.items()}
        assert plan.split_words("tiny-xlmr", STEPS[-1], "en") == words
    else:
        assert plan.split_words("tiny-xlmr", STEPS[-1], "en") == {
            split: plan.treebank_words((split,)) for split in ("train", "dev", "test")
        }
    requests = {
        "pretrain": plan.pretrain_mem_mb,
        "extract_activations": plan.gpu_mem_mb,
        "train_probe": plan.probe_mem_mb,
        "score_probe": plan.probe_mem_mb,
    }
    measured = {}
    for rule, request in requests.items():
        pattern = layout.BENCHMARK.format(rule=rule, job="*/*/*" if rule != "pretrain" else "*/*")
        files = sorted(reference.glob(pattern))
        per_job = 1 if rule == "pretrain" else len(LANGUAGES)
        assert len(files) == len(STEPS) * per_job, rule
        for path in files:
            parts = path.relative_to(reference / "logs/benchmarks" / rule).with_suffix("").parts
            wildcards = job(parts[0], parts[1], parts[2] if len(parts) > 2 else "en")
            with path.open() as handle:
                peak = float(next(csv.DictReader(handle, delimiter="\t"))["max_rss"])
            measured[rule, parts] = (peak, request(wildcards, 1))
            assert peak <= request(wildcards, 1), (rule, parts, peak)
    # the model is not so generous that a wrong one could pass: the tightest request is used
    # to at least a fifth
    assert max(peak / asked for peak, asked in measured.values()) > 0.2


def test_the_probe_runtime_reads_each_task_s_shape_from_the_registry():
    # deprel's pair problem (3 hidden features, 37 relations) costs more than pos's word problem
    # (1 hidden feature, 17 tags) at the same train size: the registry, not the scheduler, says
    config = validated(DEFAULT)
    minutes = {}
    for task in ("pos", "deprel"):
        config["probing"].update(tasks=[task], controls=[], mdl=False)
        minutes[task] = requests_of(config).probe_minutes("tiny-xlmr", 0, 10**6)
    assert registry.shape("pos") == (1, 1, 17) and registry.shape("deprel") == (1, 3, 37)
    assert minutes["deprel"] > 3 * minutes["pos"]
