"""The plan (mlm_dynamics/plan.py) without Snakemake: targets, per-job arguments, transfer sets
and the resource model, the last against the peak memory of real jobs of the reference run."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake.utils import validate
from workflow_run import LANGUAGES, STEPS, reduced_config

from mlm_dynamics.config_check import schema_default
from mlm_dynamics.errors import InputError
from mlm_dynamics.plan import BENCHMARK, TREEBANK, Plan, options
from mlm_dynamics.treebanks import load_prepared

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
DEFAULT_SCHEMA_RUNTIME = schema_default("gpu_resources.runtime_minutes")


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA), set_default=True)
    return config


def job(model="tiny-xlmr", step=0, lang="en", task="pos"):
    return SimpleNamespace(model=model, step=str(step), lang=lang, task=task)


@pytest.fixture
def default() -> Plan:
    return Plan(validated(DEFAULT))


def test_the_default_targets(default):
    # 1 model x 4 steps x 5 languages of caches; the table, its CSV and the environment
    # record; 3 UD tasks with a
    # transfer set of 5 languages: 3 matrix folders; 3 findings tables; 11 figures x 2 formats.
    steps, languages = [0, 200, 400, 800], ["en", "fr", "de", "ru", "zh"]
    assert default.steps("tiny-xlmr") == steps
    caches = [f"results/activations/tiny-xlmr/{s}/{lang}" for s in steps for lang in languages]
    figures = [
        "in-language-curves", "layer-heatmaps", "final-layer-gap", "onset", "selectivity",
        "transfer-matrices-pos", "transfer-matrices-arc", "transfer-matrices-deprel",
        "transfer-over-time-pos", "transfer-over-time-arc", "transfer-over-time-deprel",
    ]  # fmt: skip
    assert default.final_output() == [
        *caches,
        "results/tables/probing.parquet",
        "results/tables/probing.csv",
        "results/environment.json",
        *[f"results/tables/transfer/tiny-xlmr/{task}" for task in ["pos", "arc", "deprel"]],
        *[f"results/analysis/{t}.csv" for t in ["onset", "final_layer_gap", "degradation"]],
        *[f"results/figures/tiny-xlmr/{name}.{ext}" for name in figures for ext in ["png", "pdf"]],
    ]
    assert len(default.score_tables()) == 20 and len(default.item_score_files()) == 20


def test_transfer_sets_decide_which_probes_a_language_is_scored_with():
    config = validated({**DEFAULT, "transfer_languages": ["en", "fr"]})
    plan = Plan(config)
    assert plan.probe_train_languages("fr") == ["fr", "en"]
    assert plan.probe_train_languages("zh") == ["zh"]
    assert plan.scored_probes(job(step=200, lang="zh")) == [
        f"results/probes/tiny-xlmr/200/{task}/zh.npz" for task in ["pos", "arc", "deprel"]
    ]
    single = Plan(validated({**DEFAULT, "transfer_languages": ["en"]}))
    assert single.transfer_matrix_dirs() == [] and "transfer-matrices-pos" not in (
        single.figure_names()
    )


def test_pretraining_resumes_from_the_previous_configured_step(default):
    assert "--resume" not in default.pretrain_arguments(job(step=0))
    arguments = default.pretrain_arguments(job(step=400))
    assert arguments.startswith("--resume results/checkpoints/tiny-xlmr/200 --attention-heads 4")
    assert "--layers 4" in arguments and "--threads" not in arguments
    assert default.pretrain_inputs(job(step=400))["resume"] == "results/checkpoints/tiny-xlmr/200"
    assert [Path(p).name for p in default.earlier_checks(job(step=400))] == ["0.json", "200.json"]


def test_per_job_arguments_spell_the_config():
    config = validated(DEFAULT)
    config["probing"].update(seeds=3, l2=[0.1, 1.0], mdl=True, controls=["pos", "deprel"])
    plan = Plan(config)
    assert plan.train_probe_arguments() == (
        "--tasks pos arc deprel --seeds 3 --l2 0.1 1.0 --max-iter 50 --backend torch"
        " --device cpu --controls pos deprel --mdl"
    )
    assert plan.statistics_arguments() == (
        "--resamples 1000 --confidence 0.95 --bootstrap-seed 0 --min-sentences 30"
    )
    assert options(name="it's", empty=[], none=None, flag=False) == "--name 'it'\"'\"'s'"


def test_a_hub_model_fills_its_step_into_repository_and_revision():
    pin = "ab" * 32
    models = {"pythia": {"source": "hub", "repo": "org/m-{step}", "steps": [0, 1000], "layers": 6,
                         "sha256": {"1000": pin}}}  # fmt: skip
    plan = Plan(validated({**DEFAULT, "models": models}))
    assert plan.fetch_checkpoint_arguments(job("pythia", 1000)) == (
        f"--repo org/m-1000 --revision step1000 --source hub --layers 6 --sha256 {pin}"
    )
    assert "--sha256" not in plan.fetch_checkpoint_arguments(job("pythia", 0))
    assert plan.model_pattern("hub") == "pythia" and plan.model_pattern("embedded") == "(?!)"
    assert plan.checkpoint(job("pythia", 0)) == "results/checkpoints/pythia/0"


def test_discovered_steps_come_from_the_glob(tmp_path):
    for step in [300, 20, 1000]:
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    run = {"source": "local", "path": str(tmp_path / "checkpoint-{step}"),
           "glob": str(tmp_path / "checkpoint-*"), "steps": "discover"}  # fmt: skip
    config = validated({**DEFAULT, "models": {"run": run}})
    assert Plan(config).steps("run") == [20, 300, 1000]
    config["models"]["run"]["glob"] = str(tmp_path / "nothing-*")
    with pytest.raises(InputError, match=r"models\.run\.glob: no checkpoint matches"):
        Plan(config)


def test_transfer_steps_must_be_steps_of_every_model():
    config = validated(DEFAULT)
    config["analysis"]["transfer_steps"] = [0, 300]
    with pytest.raises(InputError, match=r"analysis\.transfer_steps\[1\]: step 300 is not a step"):
        Plan(config)


def test_the_figures_follow_what_the_config_measures(default, tmp_path):
    config = validated(DEFAULT)
    config["probing"]["controls"] = []
    config["bpc"]["enabled"] = True
    config["languages"]["en"]["heldout_text"] = "resources/text/en.txt.gz"
    config["simalign"].update(
        enabled=True, pairs={"fr": {"source": "a", "target": "b", "gold": "c"}}
    )
    config["xnli"].update(enabled=True, data=str(tmp_path), languages=["en", "fr"])
    names = Plan(config).figure_names()
    assert "selectivity" not in names
    assert names[-4:] == [
        "transfer-over-time-deprel",
        "transfer-over-time-xnli",
        "bpc",
        "alignment-f1",
    ]
    assert "transfer-matrices-xnli" in names
    config["bpc"]["estimate"] = "mlm"  # the BPC figure draws metric bpc, which mlm does not write
    assert "bpc" not in Plan(config).figure_names()


# ---------------------------------------------------------------- the resource model


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
    plan = Plan(config)
    assert plan.model_shape("run", 0) == (1000, 64, 2, 256)
    assert plan.model_shape("hub", 0) == (250002, 768, 12, 3072)
    assert plan.model_shape("sized", 0) == (50000, 1024, 24, 4096)
    # XLM-R base: 192M embedding + 85M layer parameters
    assert plan.million_parameters("hub", 0) == pytest.approx(277.0, abs=0.5)


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
    assert Plan(config).retries_in_job == 0  # locally and when submitting: the profile decides
    assert Plan(config, in_job=True).retries_in_job == schema_default("scheduler.retries_in_job")
    config["scheduler"]["retries_in_job"] = 5
    assert Plan(config, in_job=True).retries_in_job == 5


@pytest.mark.parametrize("counted", [False, True], ids=["estimated", "counted"])
def test_no_job_of_the_reference_run_used_more_memory_than_it_asked_for(
    reference, counted, monkeypatch
):
    """Snakemake's benchmark of every measured job (max_rss: peak resident memory of the job's
    process tree) against the plan's request for that job on its first attempt: estimated from
    the caps (what a dry run sees) and from the words counted in the run's own cache (what the
    job is submitted with, its inputs being there)."""
    config = validated(reduced_config())
    plan = Plan(config)
    if counted:
        monkeypatch.chdir(reference)
        treebank = load_prepared(reference / TREEBANK.format(lang="en"))
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
        pattern = BENCHMARK.format(rule=rule, job="*/*/*" if rule != "pretrain" else "*/*")
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
