"""The plan (mlm_dynamics/plan.py) without Snakemake: targets, per-job arguments and transfer
sets (the scheduler requests are tests/test_scheduler.py's)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake.utils import validate

from mlm_dynamics.config_check import SCHEMA
from mlm_dynamics.errors import InputError
from mlm_dynamics.plan import Plan, options

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


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
    # 1 model x 3 steps x 4 languages of caches; the table, its CSV and the environment
    # record; 3 UD tasks with a
    # transfer set of 4 languages: 3 matrix folders; 3 findings tables; 12 figures x 2 formats.
    steps, languages = [0, 200, 800], ["en", "de", "ru", "zh"]
    assert default.steps("tiny-xlmr") == steps
    caches = [f"results/activations/tiny-xlmr/{s}/{lang}" for s in steps for lang in languages]
    figures = [
        "in-language-curves", "layer-heatmaps", "final-layer-gap", "onset", "selectivity",
        "transfer-matrices-pos", "transfer-matrices-arc", "transfer-matrices-deprel",
        "transfer-over-time-pos", "transfer-over-time-arc", "transfer-over-time-deprel", "bpc",
    ]  # fmt: skip
    assert default.final_output() == [
        *caches,
        "results/tables/probing.parquet",
        "results/tables/probing.csv",
        "results/environment.json",
        *[f"results/tables/transfer/tiny-xlmr/{task}" for task in ["pos", "arc", "deprel"]],
        *[f"results/analysis/{t}.csv" for t in ["onset", "final_layer_gap", "degradation"]],
        *[f"results/figures/tiny-xlmr/{name}.{ext}" for name in figures for ext in ["png", "pdf"]],
        "results/explorer.html",
    ]
    # 12 probe score tables and 12 BPC tables; per-item scores of the probes only
    assert len(default.score_tables()) == 24 and len(default.item_score_files()) == 12


def test_transfer_sets_decide_which_probes_a_language_is_scored_with():
    config = validated({**DEFAULT, "transfer_languages": ["en", "de"]})
    plan = Plan(config)
    assert plan.probe_train_languages("de") == ["de", "en"]
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
    arguments = default.pretrain_arguments(job(step=800))
    assert arguments.startswith("--resume results/checkpoints/tiny-xlmr/200 --attention-heads 4")
    assert "--layers 4" in arguments and "--threads" not in arguments
    assert "--architecture" not in arguments  # the default, masked LM
    assert default.pretrain_inputs(job(step=800))["resume"] == "results/checkpoints/tiny-xlmr/200"
    assert [Path(p).name for p in default.earlier_checks(job(step=800))] == ["0.json", "200.json"]


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
    config["bpc"]["estimate"] = "mlm"  # any estimate has the figure, its metric on the axis
    assert "bpc" in Plan(config).figure_names()
    config["bpc"]["enabled"] = False
    assert "bpc" not in Plan(config).figure_names()


def test_a_bpc_estimate_of_the_other_kind_is_refused_before_any_job():
    causal = yaml.safe_load((REPO / "configs/embedded-causal.yaml").read_text())
    causal["bpc"]["estimate"] = "pll"
    with pytest.raises(InputError) as error:
        Plan(validated(causal))
    assert str(error.value) == (
        "config: bpc.estimate: pll does not fit models.tiny-bloom, a causal LM: use auto or ar"
    )
    masked = validated({**DEFAULT, "bpc": {**DEFAULT["bpc"], "estimate": "ar"}})
    with pytest.raises(InputError) as error:
        Plan(masked)
    assert str(error.value) == (
        "config: bpc.estimate: ar does not fit models.tiny-xlmr, a masked LM: "
        "use auto, pll, mlm or both"
    )
    causal["bpc"]["enabled"] = False  # no BPC job: nothing to refuse
    Plan(validated(causal))
