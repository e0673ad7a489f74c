"""Pretraining seeds as an axis: runs and their templates, the plan of a model with seeds, and
the two-level resampling (seeds, then sentences) of its scores, on planted effects."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic_tables import BOOTSTRAP, synthetic_run
from workflow_run import reduced_config, run_to_completion, snakemake

from mlm_dynamics import layout, stats
from mlm_dynamics.analysis import seeds, tables
from mlm_dynamics.analysis.findings import ANALYSIS_TABLES
from mlm_dynamics.analysis.items import ItemBank
from mlm_dynamics.config_check import validated
from mlm_dynamics.errors import InputError
from mlm_dynamics.plan import Plan
from mlm_dynamics.sources import runs

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- runs and templates


def test_a_run_name_is_the_model_or_one_directory_level_per_seed():
    assert runs.run_name("m", None) == "m"
    assert runs.run_name("m", 3) == "m/seed3"
    assert runs.split_run("m/seed3") == ("m", 3)
    assert runs.split_run("m") == ("m", None)


def test_templates_fill_the_step_its_thousands_and_the_seed():
    located = runs.locate("google/multiberts-seed_3-step_{step_k}k", 20000, "k")
    assert located == "google/multiberts-seed_3-step_20k"
    assert runs.locate("step{step}", 512, "k") == "step512"
    spec = {"source": "hub", "repo": "org/m-seed{seed}", "revision": "step{step}", "seeds": [1, 2]}
    expanded = runs.expand({"m": spec})
    assert list(expanded) == ["m/seed1", "m/seed2"]
    assert expanded["m/seed2"]["repo"] == "org/m-seed2"
    assert expanded["m/seed2"]["revision"] == "step{step}"
    assert (expanded["m/seed2"]["model"], expanded["m/seed2"]["seed"]) == ("m", 2)


@pytest.mark.parametrize(
    ("template", "step", "message"),
    [
        ("org/{model}", 1, "config: models.m.repo: unknown field {model} in 'org/{model}' "
         "({step}, {step_k}, {seed})"),
        ("org/m-{step", 1, "config: models.m.repo: 'org/m-{step' is not a template"),
        ("step_{step_k}k", 1500, "config: models.m.repo: step 1500 is not whole thousands"),
    ],
)  # fmt: skip
def test_a_bad_template_is_one_line_naming_the_key(template, step, message):
    with pytest.raises(InputError) as error:
        runs.locate(template, step, "models.m.repo")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def hub_config(**model) -> dict:
    config = reduced_config()
    config["models"] = {"hub": {"source": "hub", "layers": 2, "steps": [1000, 2000], **model}}
    config["analysis"] = {"transfer_steps": []}
    return config


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"repo": "org/m-seed{seed}"}, "config: models.hub.repo: {seed} in 'org/m-seed{seed}' "
         "but the model lists no seeds (models.hub.seeds)"),
        ({"repo": "org/m", "seeds": [0, 1]}, "config: models.hub.repo: 2 seeds but no {seed} in "
         "repo or revision, so every seed would read the same checkpoints"),
        ({"repo": "org/m-{seed}", "seeds": [0, 0]}, "config: models.hub.seeds: [0, 0] has "
         "non-unique elements"),
        ({"repo": "org/m-{seed}", "revision": "{revision}", "seeds": [0]},
         "config: models.hub.revision: unknown field {revision}"),
    ],
)  # fmt: skip
def test_seed_mistakes_are_refused_before_any_job(model, message):
    with pytest.raises(InputError) as error:
        validated(hub_config(**model))
    assert str(error.value).startswith(message)


def test_a_local_seed_that_lacks_a_step_is_refused_naming_the_seed(tmp_path):
    for seed, steps in ((0, (20, 40)), (1, (20,))):
        for step in steps:
            (tmp_path / f"run{seed}" / str(step)).mkdir(parents=True)
    config = reduced_config()
    path = str(tmp_path / "run{seed}" / "{step}")
    config["models"] = {
        "own": {"source": "local", "path": path, "seeds": [0, 1], "steps": [20, 40]}
    }
    with pytest.raises(InputError) as error:
        validated(config)
    assert str(error.value) == (
        f"config: models.own.path: seed 1, step 40: no checkpoint directory {tmp_path}/run1/40"
    )


# ---------------------------------------------------------------- the plan


def preset(name: str) -> dict:
    return validated(yaml.safe_load((REPO / "configs" / name).read_text()))


def test_the_multiberts_preset_reads_one_repository_per_seed_and_step():
    plan = Plan(preset("multiberts.yaml"))
    assert plan.model_runs("multiberts") == [f"multiberts/seed{seed}" for seed in range(5)]
    assert len(plan.steps("multiberts/seed4")) == 28
    wildcards = SimpleNamespace(model="multiberts/seed3", step="40000")
    assert plan.fetch_checkpoint_arguments(wildcards).startswith(
        "--repo google/multiberts-seed_3-step_40k --revision main --source hub"
    )
    assert plan.checkpoint(wildcards) == "results/checkpoints/multiberts/seed3/40000"
    assert "results/figures/multiberts/onset.png" in plan.final_output()


def test_the_polypythias_preset_reads_revisions_of_one_repository_per_seed():
    plan = Plan(preset("polypythias.yaml"))
    wildcards = SimpleNamespace(model="pythia-160m/seed2", step="512")
    assert plan.fetch_checkpoint_arguments(wildcards).startswith(
        "--repo EleutherAI/pythia-160m-seed2 --revision step512 --source hub"
    )


def test_an_embedded_model_pretrains_each_seed_from_its_seed_with_one_tokenizer():
    config = reduced_config()
    config["models"]["tiny-xlmr"]["seeds"] = [3, 5]
    plan = Plan(validated(config))
    wildcards = SimpleNamespace(model="tiny-xlmr/seed5", step="40")
    assert "--seed 5" in plan.pretrain_arguments(wildcards)
    assert "--resume results/checkpoints/tiny-xlmr/seed5/20" in plan.pretrain_arguments(wildcards)
    assert plan.pretrain_inputs(wildcards)["tokenizer"] == "results/checkpoints/tiny-xlmr/tokenizer"
    assert plan.embedded_checkpoints()[:2] == [
        "results/checkpoints/tiny-xlmr/seed3/0", "results/checkpoints/tiny-xlmr/seed3/20",
    ]  # fmt: skip
    # the table's rows of the model as a whole resample the seeds' per-item scores
    assert plan.item_score_files(seeded=True) == plan.item_score_files()
    assert "results/scores/tiny-xlmr/seed5/40/en.items.npz" in plan.item_score_files()


def test_a_model_without_seeds_keeps_its_paths():
    plan = Plan(validated(reduced_config()))
    assert list(plan.runs) == ["tiny-xlmr"]
    assert plan.item_score_files(seeded=True) == []
    assert "results/scores/tiny-xlmr/40/en.parquet" in plan.score_tables()


# ---------------------------------------------------------------- two-level resampling


SENTENCES, WORDS = 200, 10


def item_file(run: str, accuracy: float, rng, step: int = 10, layers: int = 1) -> stats.ItemFile:
    """One run's per-item test scores of a pos probe on 'aa': every word right with
    probability ``accuracy`` (independently: the sentence variance is small)."""
    units = np.repeat(np.arange(SENTENCES), WORDS)
    correct = (rng.random((layers, units.size)) < accuracy).astype(np.uint8)
    score = stats.ItemScores(
        "pos", "aa", "aa", "test", 0, np.arange(layers), correct, units, SENTENCES
    )
    return stats.ItemFile(run, step, [score])


def interval(bank: ItemBank, model: str) -> tuple[float, float, float]:
    point, resampled = bank.resampled(model, "pos", "aa", "aa", [(10, 0)])
    low, high = bank.bootstrap.interval(resampled[:, 0])
    return float(point[0]), float(low), float(high)


BIG = stats.Bootstrap(resamples=4000, confidence=0.95, seed=0, min_sentences=30)


def test_a_planted_seed_effect_widens_the_interval_as_the_seeds_vary():
    rng = np.random.default_rng(0)
    accuracies = [0.40, 0.50, 0.60, 0.70, 0.80]  # seeds far apart, sentences many
    files = [item_file(f"m/seed{s}", p, rng) for s, p in enumerate(accuracies)]
    bank = ItemBank(files, BIG)
    point, low, high = interval(bank, "m")
    _, one_low, one_high = interval(ItemBank(files[:1], BIG), "m")  # seed 0 alone: sentences
    measured = [f.scores[0].correct.mean() for f in files]  # each seed's accuracy as drawn
    assert point == pytest.approx(np.mean(measured))
    # A percentile bootstrap of the mean of 5 seeds: its spread is the seeds' (ddof 0) / sqrt(5),
    # plus the sentences' (small here).
    seed_sd = np.std(measured) / np.sqrt(len(measured))
    sentence_sd = (one_high - one_low) / (2 * 1.96)
    expected = 2 * 1.96 * np.sqrt(seed_sd**2 + sentence_sd**2 / len(measured))
    assert 0.75 < (high - low) / expected < 1.25
    assert (high - low) > 4 * (one_high - one_low)
    assert low < point < high


def test_identical_seeds_leave_the_sentence_interval_as_it_was():
    rng = np.random.default_rng(1)
    one = item_file("m/seed0", 0.6, rng)
    copies = [stats.ItemFile(f"m/seed{s}", 10, one.scores) for s in range(4)]
    seeded = interval(ItemBank(copies, BIG), "m")
    single = interval(ItemBank([stats.ItemFile("m", 10, one.scores)], BIG), "m")
    # one sentence draw shared by the seeds: averaging identical seeds does not narrow it
    assert seeded == pytest.approx(single)


def seeded_table(accuracies):
    """A tidy table of runs m/seed<i> (the synthetic run, its accuracies shifted per seed) and
    their per-item files."""
    frames, files = [], []
    for seed, shift in enumerate(accuracies):
        table, items = synthetic_run(
            model=f"m/seed{seed}", steps=[0, 100], languages=["aa", "bb"], tasks=["pos"],
            bpc=True, xnli=False, simalign=False,
        )  # fmt: skip
        table = table.assign(value=table["value"] + shift)
        frames.append(table)
        files += items
    return pd.concat(frames, ignore_index=True), files


def collected(table: pd.DataFrame) -> pd.DataFrame:
    """``tables.collect``'s split of run names into model and pretrain_seed, in memory."""
    split = [runs.split_run(name) for name in table["model"]]
    table = table.assign(model=[m for m, _ in split])
    table.insert(1, "pretrain_seed", [s for _, s in split])
    return table.assign(interval_covers=tables.interval_covers(table))


def test_the_rows_of_a_model_with_seeds_are_their_mean_with_seed_level_intervals():
    runs_table, files = seeded_table([0.0, 0.0, 0.0])
    whole = seeds.model_rows(collected(runs_table), ItemBank(files, BOOTSTRAP))
    assert set(whole["pretrain_seed"]) == {tables.WHOLE_MODEL}
    accuracy = whole[(whole.metric == "accuracy") & (whole.split == "test")]
    assert set(accuracy["interval_covers"]) == {"test sentences, pretraining seeds (3)"}
    bpc = whole[whole.task == "bpc"]
    assert set(bpc["interval_covers"]) == {"pretraining seeds (3)"}
    # three identical runs: the mean is each run's value, and the two-level interval is the
    # sentence interval of one run (the seed draws change nothing)
    one = runs_table[runs_table.model == "m/seed0"].set_index(seeds.GROUP[1:])
    mine = accuracy.set_index(seeds.GROUP[1:])
    np.testing.assert_allclose(mine["value"], one.loc[mine.index, "value"])
    np.testing.assert_allclose(mine["ci_low"], one.loc[mine.index, "ci_low"])


def test_a_seed_without_a_row_is_refused_naming_it():
    runs_table, files = seeded_table([0.0, 0.1])
    table = collected(runs_table)
    dropped = table.drop(table[(table.pretrain_seed == 1) & (table.step == 100)].index[:1])
    with pytest.raises(InputError, match="model m: seed 1 has no score for step=100"):
        seeds.model_rows(dropped, ItemBank(files, BOOTSTRAP))


def test_read_table_gives_the_models_rows_unless_asked_for_the_runs(tmp_path):
    runs_table, files = seeded_table([0.0, 0.05])
    table = collected(runs_table)
    whole = seeds.model_rows(table, ItemBank(files, BOOTSTRAP))
    both = tables.sorted_table(pd.concat([table, whole], ignore_index=True))
    tables.save_outputs(both, tmp_path / "t.parquet", tmp_path / "t.csv")
    for path in ("t.parquet", "t.csv"):
        assert set(tables.read_table(tmp_path / path)["pretrain_seed"]) == {tables.WHOLE_MODEL}
        assert set(tables.read_table(tmp_path / path, runs=True)["pretrain_seed"]) == {-1, 0, 1}


# ---------------------------------------------------------------- a run with seeds, end to end


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    """A finished run of the reduced embedded model with two pretraining seeds."""
    workdir = tmp_path_factory.mktemp("seeded")
    config = reduced_config(languages=["en", "zh"], steps=[0, 20])
    config["models"]["tiny-xlmr"]["seeds"] = [0, 1]
    config["probing"]["tasks"] = ["pos"]
    config["bpc"]["enabled"] = False
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run_to_completion(workdir)
    return workdir, config


@pytest.mark.e2e
def test_every_interval_of_a_model_with_seeds_says_it_covers_them(seeded_run):
    workdir, _ = seeded_run
    table = tables.read_table(workdir / layout.TABLE)
    covered = table[table["ci_low"].notna()]
    assert covered["interval_covers"].str.endswith("pretraining seeds (2)").all()
    accuracy = covered[(covered.metric == "accuracy") & (covered.split == "test")]
    assert set(accuracy["interval_covers"]) == {"test sentences, pretraining seeds (2)"}
    for name in ANALYSIS_TABLES:
        frame = pd.read_csv(workdir / layout.FINDINGS.format(table=name))
        assert set(frame["interval_covers"]) == {"test sentences, pretraining seeds (2)"}, name


@pytest.mark.e2e
def test_adding_a_seed_to_a_finished_run_plans_only_its_jobs_and_the_aggregates(seeded_run):
    workdir, config = seeded_run
    config = {**config, "models": {"tiny-xlmr": {**config["models"]["tiny-xlmr"]}}}
    config["models"]["tiny-xlmr"]["seeds"] = [0, 1, 2]
    planned = snakemake(workdir, "-n", config=config)
    assert planned.returncode == 0, planned.stderr[-3000:]
    jobs = planned_jobs(planned.stdout + planned.stderr)
    runs_planned = {model for _, model in jobs if model is not None and "/seed" in model}
    assert runs_planned == {"tiny-xlmr/seed2"}
    counts = Counter(rule for rule, model in jobs if model == "tiny-xlmr/seed2")
    assert counts == {"pretrain": 2, "extract_activations": 4, "train_probe": 4, "score_probe": 4}
    aggregates = {rule for rule, model in jobs if model in (None, "tiny-xlmr")}
    assert {"collect_table", "findings", "environment"} <= aggregates
    assert not aggregates & {"pretrain", "extract_activations", "train_probe", "score_probe"}


def planned_jobs(output: str) -> list[tuple[str, str | None]]:
    """(rule, model wildcard or None) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\nrule |rule )", output):
        rule = re.search(r"^(?:\[.*\]\n)?rule (\w+):", block, re.M)
        if not rule:
            continue
        model = re.search(r"wildcards: .*?model=([^,\n]+)", block)
        jobs.append((rule.group(1), model.group(1) if model else None))
    return jobs


def test_watch_waits_for_a_step_until_every_seed_has_it():
    from mlm_dynamics.watch import steps_every_seed_has

    followed = runs.expand({"own": {"source": "local", "glob": "w/{seed}/*", "seeds": [0, 1]}})
    found = {"own/seed0": [100, 200], "own/seed1": [100]}
    assert steps_every_seed_has(found, followed) == {"own/seed0": [100], "own/seed1": [100]}
