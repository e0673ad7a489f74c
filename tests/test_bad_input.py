"""Bad input never yields a number: every mistake is one line, on screen, and nothing is lost.

One parametrised matrix over every kind of bad input a new user has tried: config mistakes (run
through the real Snakefile, as a plain ``snakemake --cores 2``), CoNLL-U files that are not valid
UD trees (through ``prepare-treebank`` as its rule runs it, ``--log`` and all), broken checkpoints
(through ``check-checkpoint`` likewise) and whole runs that meet a bad treebank, checkpoint or
model on the way. Each case asserts the exact one line on the terminal, the exit status, no
traceback, and that every file the previous run had computed is byte-identical afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_checkpoint_check import BAD_CHECKPOINT_CASES, NON_FINITE_CASES
from test_treebanks import BAD_CONLLU_CASES
from workflow_run import REPO, reduced_config

from mlm_dynamics.__main__ import main as cli
from mlm_dynamics.config_check import load_yaml

# ---------------------------------------------------------------- the previous run


@pytest.fixture(scope="module")
def finished(reference, tmp_path_factory) -> Path:
    """A copy of the finished reference run, which the bad inputs below meet."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    shutil.copytree(reference, workdir, symlinks=True)
    return workdir


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the previous run's outputs)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def assert_nothing_lost(before: dict[str, str], root: Path) -> None:
    after = digests(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"previous outputs changed or removed: {changed[:5]}"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def run_snakemake(workdir: Path, config: dict | None, *args: str) -> subprocess.CompletedProcess:
    """A plain ``snakemake --cores 2`` in ``workdir`` with ``config`` as its --configfile (none:
    the workdir's own config.yaml, read by the Snakefile's ``configfile:``)."""
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--directory", str(workdir), "--cores", "2", *args]
    if config is not None:
        (workdir / "variant.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        argv += ["--configfile", str(workdir / "variant.yaml")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------- config mistakes


@dataclass(frozen=True)
class ConfigCase:
    id: str
    change: Callable[[dict, Path], None]  # (config, a scratch directory for bad files)
    expected: str  # the one line; {bad} is the scratch directory


def set_in(config: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value


def add_language(code: str):
    def change(config, bad):
        config["languages"][code] = dict(config["languages"]["en"])

    return change


def add_model(name: str, **spec):
    def change(config, bad):
        config["models"][name] = {
            key: value.format(bad=bad) if isinstance(value, str) else value
            for key, value in spec.items()
        }

    return change


def local_steps(*steps: int):
    """Step directories bad/local/{step} (empty: these cases stop before any is read)."""

    def make(bad: Path) -> None:
        for step in steps:
            (bad / "local" / str(step)).mkdir(parents=True, exist_ok=True)

    return make


def with_files(make: Callable[[Path], None], change: Callable[[dict, Path], None]):
    def both(config, bad):
        make(bad)
        change(config, bad)

    return both


CONFIG_CASES = [
    ConfigCase(
        "verdict-resamples-below-resamples",
        lambda c, bad: c.setdefault("statistics", {}).update(resamples=2000, verdict_resamples=500),
        "error: config: statistics.verdict_resamples: 500 is fewer than statistics.resamples "
        "(2000): a verdict reads at least the intervals' resamples",
    ),
    ConfigCase(
        "unknown-top-level-key",
        lambda c, bad: c.update(seeds=3),
        "error: config: (top level): Additional properties are not allowed "
        "('seeds' was unexpected)",
    ),
    ConfigCase(
        "unknown-model-key",
        lambda c, bad: c["models"]["tiny-xlmr"].update(layerz=2),
        "error: config: models.tiny-xlmr: Additional properties are not allowed "
        "('layerz' was unexpected)",
    ),
    ConfigCase(
        "unknown-task",
        lambda c, bad: set_in(c, "probing.tasks", ["pos", "foo"]),
        "error: config: probing.tasks[1]: 'foo' is not a probing task (known: pos, arc, deprel,"
        " morph-PronType, morph-NumType, morph-Gender, morph-Animacy, morph-Number, morph-Case,"
        " morph-Definite, morph-Degree, morph-VerbForm, morph-Mood, morph-Tense, morph-Aspect,"
        " morph-Voice, morph-Evident, morph-Polarity, morph-Person, morph-Polite)",
    ),
    ConfigCase(
        "confidence-out-of-range",
        lambda c, bad: set_in(c, "statistics.confidence", 95),
        "error: config: statistics.confidence: 95 is greater than or equal to the maximum of 1",
    ),
    ConfigCase(
        "steps-not-integers",
        lambda c, bad: c["models"]["tiny-xlmr"].update(steps=["0", "20"]),
        "error: config: models.tiny-xlmr.steps.0: '0' is not of type 'integer'",
    ),
    ConfigCase(
        "unknown-transfer-language",
        lambda c, bad: c["transfer_languages"].append("xx"),
        "error: config: transfer_languages[3]: unknown language 'xx' (not under 'languages')",
    ),
    ConfigCase(
        "transfer-language-without-treebank",
        lambda c, bad: (
            c["languages"].update(sw={"heldout_text": c["languages"]["en"]["heldout_text"]}),
            c["transfer_languages"].append("sw"),
        ),
        "error: config: transfer_languages[3]: language 'sw' has no 'treebank' under languages.sw",
    ),
    ConfigCase(
        "missing-treebank",
        lambda c, bad: c["languages"]["en"].update(treebank=f"{bad}/UD_English-EWTT"),
        "error: config: languages.en.treebank: no such directory {bad}/UD_English-EWTT",
    ),
    ConfigCase(
        "missing-heldout-text",
        lambda c, bad: c["languages"]["ru"].update(heldout_text=f"{bad}/ru.txt.gz"),
        "error: config: languages.ru.heldout_text: no such file {bad}/ru.txt.gz",
    ),
    ConfigCase(
        "language-code-with-a-dot",
        add_language("fr.ca"),
        "error: config: languages.fr.ca: language code 'fr.ca' cannot be used in file names "
        "and wildcards (letters, digits, '_' and '-' only, e.g. fr_ca)",
    ),
    ConfigCase(
        "language-code-with-a-slash",
        add_language("zh/tw"),
        "error: config: languages.zh/tw: language code 'zh/tw' cannot be used in file names "
        "and wildcards (letters, digits, '_' and '-' only, e.g. fr_ca)",
    ),
    ConfigCase(
        "model-name-with-a-space",
        add_model("my model", source="local", path="{bad}/local/{{step}}", steps=[20]),
        "error: config: models.my model: model name 'my model' cannot be a directory name "
        "(letters, digits, '_', '.', '+' and '-' only)",
    ),
    ConfigCase(
        "missing-pretraining-text",
        lambda c, bad: c["pretrain"]["texts"].append(f"{bad}/sw.txt.gz"),
        "error: config: pretrain.texts[3]: no such file {bad}/sw.txt.gz",
    ),
    ConfigCase(
        "local-without-path-or-glob",
        add_model("run", source="local", steps=[20]),
        "error: config: models.run: source 'local' needs 'path' or 'glob'",
    ),
    ConfigCase(
        "local-path-without-step",
        with_files(
            local_steps(20),
            add_model("run", source="local", path="{bad}/local/20", steps=[20, 40]),
        ),
        "error: config: models.run.path: '{bad}/local/20' has no {{step}}, so all 2 steps "
        "would read the same checkpoint",
    ),
    ConfigCase(
        "local-step-directory-missing",
        with_files(
            local_steps(20),
            add_model("run", source="local", path="{bad}/local/{{step}}", steps=[20, 40]),
        ),
        "error: config: models.run.path: step 40: no checkpoint directory {bad}/local/40",
    ),
    ConfigCase(
        "local-tokenizer-missing",
        with_files(
            local_steps(20),
            add_model(
                "run",
                source="local",
                path="{bad}/local/{{step}}",
                tokenizer="{bad}/tokenizer",
                steps=[20],
            ),
        ),
        "error: config: models.run.tokenizer: no such directory {bad}/tokenizer",
    ),
    ConfigCase(
        "discover-without-glob",
        add_model("run", source="local", path="{bad}/local/{{step}}", steps="discover"),
        "error: config: models.run.steps: 'discover' needs models.run.glob",
    ),
    ConfigCase(
        "hub-without-repo",
        add_model("hub", source="hub", steps=[1000]),
        "error: config: models.hub.repo: needed by source 'hub'",
    ),
    ConfigCase(
        "fairseq-without-tokenizer",
        add_model("fs", source="fairseq", url="{bad}/checkpoint_{{step}}.pt", steps=[1000]),
        "error: config: models.fs.tokenizer: needed by source 'fairseq'",
    ),
    ConfigCase(
        "fairseq-file-missing",
        add_model(
            "fs",
            source="fairseq",
            url="{bad}/checkpoint_{{step}}.pt",
            tokenizer="xlm-roberta-base",
            steps=[1000],
        ),
        "error: config: models.fs.url: step 1000: no such file {bad}/checkpoint_1000.pt",
    ),
    ConfigCase(
        "transfer-step-not-a-step",
        lambda c, bad: set_in(c, "analysis.transfer_steps", [0, 30]),
        "error: config: analysis.transfer_steps[1]: step 30 is not a step of models.tiny-xlmr",
    ),
    ConfigCase(
        "xnli-data-missing",
        lambda c, bad: c.update(
            xnli={"enabled": True, "languages": ["en", "ru"], "data": f"{bad}/xnli"}
        ),
        "error: config: xnli.data: no such directory {bad}/xnli",
    ),
    ConfigCase(
        "simalign-file-missing",
        lambda c, bad: c.update(
            simalign={
                "enabled": True,
                "pairs": {
                    "ru": {
                        "source": f"{bad}/en-ru.en",
                        "target": f"{bad}/en-ru.ru",
                        "gold": f"{bad}/en-ru.gold",
                    }
                },
            }
        ),
        "error: config: simalign.pairs.ru.source: no such file {bad}/en-ru.en",
    ),
    ConfigCase(
        "confidence-nan",
        lambda c, bad: c.setdefault("statistics", {}).update(confidence=float("nan")),
        "error: config: statistics.confidence: .nan is not a finite number",
    ),
    ConfigCase(
        "l2-infinite",
        lambda c, bad: c["probing"].update(l2=[0.01, float("inf")]),
        "error: config: probing.l2[1]: .inf is not a finite number",
    ),
    ConfigCase(
        "view-deeper-than-the-model",
        lambda c, bad: set_in(c, "analysis.views", ["last", 99]),
        "error: config: analysis.views[1]: layer 99 is deeper than models.tiny-xlmr (layers 0-2)",
    ),
    ConfigCase(
        "unknown-placeholder-in-a-local-path",
        with_files(
            local_steps(20),
            add_model("run", source="local", path="{bad}/{{model}}/{{step}}", steps=[20]),
        ),
        "error: config: models.run.path: unknown field {{model}} in '{bad}/{{model}}/{{step}}' "
        "({{step}}, {{step_k}}, {{seed}})",
    ),
    ConfigCase(
        "unclosed-placeholder-in-a-revision",
        add_model("hub", source="hub", repo="org/m", revision="step{{step", steps=[1000]),
        "error: config: models.hub.revision: 'step{{step' is not a template (expected '}}' before "
        "end of string)",
    ),
    ConfigCase(
        "seed-placeholder-without-seeds",
        add_model("hub", source="hub", repo="org/m-seed{{seed}}", steps=[1000]),
        "error: config: models.hub.repo: {{seed}} in 'org/m-seed{{seed}}' but the model lists no "
        "seeds (models.hub.seeds)",
    ),
    ConfigCase(
        "seeds-without-a-seed-placeholder",
        add_model("hub", source="hub", repo="org/m", seeds=[0, 1], steps=[1000]),
        "error: config: models.hub.repo: 2 seeds but no {{seed}} in repo or revision, so every "
        "seed would read the same checkpoints",
    ),
    ConfigCase(
        "duplicate-seeds",
        add_model("hub", source="hub", repo="org/m-{{seed}}", seeds=[1, 1], steps=[1000]),
        "error: config: models.hub.seeds: [1, 1] has non-unique elements",
    ),
]


def config_error_line(config: dict) -> str | None:
    """What the Snakefile's validation says of ``config`` (common.smk's loader: the schema with
    its defaults, then config_check), without starting Snakemake."""
    from mlm_dynamics.config_check import validated
    from mlm_dynamics.errors import InputError

    try:
        validated(config)
    except InputError as error:
        return f"error: {error}"
    return None


# Checked by the Snakefile after the package's checks (it needs the steps a glob discovers).
NEEDS_SNAKEMAKE = {"transfer-step-not-a-step"}
IN_PROCESS = [case for case in CONFIG_CASES if case.id not in NEEDS_SNAKEMAKE]


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda case: case.id)
def test_a_config_mistake_is_one_line_naming_the_key(tmp_path, case):
    config = reduced_config()
    assert config_error_line(config) is None
    case.change(config, tmp_path)
    assert config_error_line(config) == case.expected.format(bad=tmp_path)


# Through a plain `snakemake --cores 2` on the finished run: a schema error, each kind of
# config_check error, and the one common.smk raises itself.
ON_THE_TERMINAL = ["unknown-task", "missing-treebank", "language-code-with-a-dot"]
ON_THE_TERMINAL += ["local-path-without-step", "transfer-step-not-a-step"]
ON_THE_TERMINAL += ["confidence-nan", "view-deeper-than-the-model"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case", [case for case in CONFIG_CASES if case.id in ON_THE_TERMINAL], ids=lambda c: c.id
)
def test_a_config_mistake_stops_a_plain_run_with_its_line(finished, tmp_path, case):
    before = digests(finished / "results")
    config = yaml.safe_load((finished / "config.yaml").read_text())
    case.change(config, tmp_path)
    done = run_snakemake(finished, config)
    assert done.returncode == 1
    assert error_lines(done.stdout + done.stderr) == [case.expected.format(bad=tmp_path)]
    assert "Traceback" not in done.stdout + done.stderr
    assert_nothing_lost(before, finished / "results")


@pytest.mark.e2e
@pytest.mark.parametrize("section", ["statistics", "probing"])
def test_a_key_given_twice_names_the_file_and_line(finished, section):
    """The previous run's config with one of its sections given a second time at the end."""
    before = digests(finished / "results")
    text = yaml.safe_dump(reduced_config(), sort_keys=False)
    first = text.splitlines().index(f"{section}:") + 1
    second = len(text.splitlines()) + 1
    config = finished / "twice.yaml"
    config.write_text(text + f"{section}: {{}}\n")
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--directory", str(finished), "--cores", "2", "--configfile", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    # Snakemake hands the Snakefile absolute paths; the line names the file relative to the run.
    assert error_lines(done.stdout + done.stderr) == [
        f"error: twice.yaml:{second}: duplicate key {section!r} (first given at line {first}; "
        "YAML would silently keep the last)"
    ]
    assert_nothing_lost(before, finished / "results")


@pytest.mark.e2e
def test_a_yaml_syntax_error_in_config_yaml_names_the_file_and_line(tmp_path):
    """The workflow's own config.yaml (no --configfile), edited with a syntax error."""
    text = yaml.safe_dump(reduced_config(), sort_keys=False)
    broken = len(text.splitlines()) + 1
    (tmp_path / "config.yaml").write_text(text + "views: [last, best}\n")
    done = run_snakemake(tmp_path, None)
    assert done.returncode == 1
    assert error_lines(done.stdout + done.stderr) == [
        f"error: config.yaml:{broken}: YAML syntax error: expected ',' or ']', but got '}}' "
        "while parsing a flow sequence"
    ]
    assert not (tmp_path / "results").exists()


CHECK_CONFIG_CASES = [
    (
        "unclosed-flow-sequence",
        "models:\n  run: {source: local, steps: [0, 20}\n",
        ":2: YAML syntax error: expected ',' or ']', but got '}' while parsing a flow sequence",
    ),
    (
        "tab-indentation",
        "probing:\n\tmax_iter: 50\n",
        ":2: YAML syntax error: found character '\\t' that cannot start any token "
        "while scanning for the next token",
    ),
    (
        "bad-indentation",
        "probing:\n  max_iter: 50\n   seeds: 2\n",
        ":3: YAML syntax error: mapping values are not allowed here",
    ),
    (
        "duplicate-nested-key",
        "languages:\n  en: {treebank: a}\n  en: {treebank: b}\n",
        ":3: duplicate key 'en' (first given at line 2; YAML would silently keep the last)",
    ),
    ("not-a-mapping", "- en\n- fr\n", ":1: a config file is a mapping of keys, not a list"),
    (
        "alias-bomb",  # 8 levels of 10: 10^8 values from 90 lines, refused at the first level
        # that is too big on its own (a5, line 7), in well under a second
        "junk:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
        ":7: its aliases expand to more than 1,000,000 values (nested aliases, each repeating "
        "the one before: a config holds a few thousand)",
    ),
]


def test_a_yaml_merge_key_is_read_as_yaml_means_it(tmp_path):
    """`<<: *base` merges base's keys; keys beside it override them (no duplicate-key error)."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        "bpc: &bpc {enabled: false, max_sentences: 30}\n"
        "xnli:\n  <<: {enabled: false, max_train: 50}\n  max_train: 100\n"
    )
    assert load_yaml(path) == {
        "bpc": {"enabled": False, "max_sentences": 30},
        "xnli": {"enabled": False, "max_train": 100},
    }


@pytest.mark.parametrize(
    ("name", "text", "expected"), CHECK_CONFIG_CASES, ids=[c[0] for c in CHECK_CONFIG_CASES]
)
def test_check_config_names_the_file_and_line(tmp_path, capfd, name, text, expected):
    """For a --configfile, whose syntax errors Snakemake reports before the workflow runs."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    capfd.readouterr()
    assert cli(["--log", str(tmp_path / "check.log"), "check-config", str(path)]) == 2
    assert capfd.readouterr().err.splitlines() == [f"error: {path}{expected}"]


# ---------------------------------------------------------------- CoNLL-U files


def treebank_with(train: str | bytes, directory: Path) -> Path:
    """A treebank directory whose train file is ``train`` and dev/test are a valid tree."""
    directory.mkdir(parents=True)
    (directory / "xx-ud-train.conllu").write_bytes(
        train if isinstance(train, bytes) else train.encode("utf-8")
    )
    good = BAD_CONLLU_CASES_GOOD_TREE
    for split in ("dev", "test"):
        (directory / f"xx-ud-{split}.conllu").write_text(good)
    return directory


def prepare_argv(treebank: Path, out: Path) -> list[str]:
    """prepare-treebank's arguments as the rule gives them (min-sentences 1: one tree here)."""
    return [
        "prepare-treebank",
        "--treebank",
        str(treebank),
        "--language",
        "xx",
        "--max-train",
        "600",
        "--max-dev",
        "300",
        "--max-test",
        "300",
        "--dev-fraction",
        "0.2",
        "--min-sentences",
        "1",
        "--on-bad-sentence",
        "stop",
        "--seed",
        "13",
        "--out",
        str(out / "xx.json.gz"),
        "--labels",
        str(out / "xx.labels.json"),
    ]


BAD_CONLLU_CASES_GOOD_TREE = "1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n\n"
REFUSED_CONLLU = [case for case in BAD_CONLLU_CASES if case[2] is not None]


@pytest.mark.parametrize(
    ("name", "text", "expected"), REFUSED_CONLLU, ids=[case[0] for case in REFUSED_CONLLU]
)
def test_a_bad_conllu_file_is_one_line_naming_file_and_line(tmp_path, capfd, name, text, expected):
    out = tmp_path / "results"
    good = treebank_with(BAD_CONLLU_CASES_GOOD_TREE, tmp_path / "good")
    assert cli(["--log", str(tmp_path / "good.log"), *prepare_argv(good, out)]) == 0
    before = digests(out)
    capfd.readouterr()
    treebank = treebank_with(text, tmp_path / "bad")
    status = cli(["--log", str(tmp_path / "bad.log"), *prepare_argv(treebank, out)])
    terminal = capfd.readouterr()
    assert status == 2
    train = treebank / "xx-ud-train.conllu"
    assert terminal.err.splitlines() == [f"error: {train}{expected}"]
    assert "Traceback" not in (tmp_path / "bad.log").read_text()
    assert_nothing_lost(before, out)
    assert digests(out) == before  # nothing new either


# ---------------------------------------------------------------- broken checkpoints


@pytest.mark.parametrize(
    ("name", "breaks", "expected"),
    BAD_CHECKPOINT_CASES + NON_FINITE_CASES,  # the latter: a weight holding NaN or infinity
    ids=[case[0] for case in BAD_CHECKPOINT_CASES + NON_FINITE_CASES],
)
def test_a_broken_checkpoint_is_one_line_naming_model_step_and_file(
    tiny_checkpoint, tmp_path, capfd, name, breaks, expected
):
    checkpoint = tmp_path / "run" / "200"
    shutil.copytree(tiny_checkpoint, checkpoint)
    out = tmp_path / "results"
    out.mkdir()
    record = out / "200.json"
    record.write_text("{}")  # the record of an earlier check of this step
    before = digests(out)
    extra = breaks(checkpoint)
    argv = ["check-checkpoint", "--checkpoint", str(checkpoint), "--model", "run"]
    argv += ["--step", "200", *extra, "--out", str(record)]
    capfd.readouterr()
    status = cli(["--log", str(tmp_path / "check.log"), *argv])
    terminal = capfd.readouterr()
    assert status == 2
    assert terminal.err.splitlines() == [f"error: {expected.format(dir=checkpoint)}"]
    assert "Traceback" not in (tmp_path / "check.log").read_text()
    assert_nothing_lost(before, out)


# ---------------------------------------------------------------- whole runs


def step_directory(finished: Path, step: int, target: Path, keep=lambda path: True) -> Path:
    """A copy of the reference run's embedded checkpoint of ``step`` (only the files ``keep``
    accepts) as a ``local`` model's step directory."""
    target.mkdir(parents=True)
    for path in (finished / "results/checkpoints/tiny-xlmr" / str(step)).iterdir():
        if path.is_file() and keep(path):
            shutil.copy2(path, target / path.name)
    return target


def without_tokenizer(path: Path) -> bool:
    from mlm_dynamics.sources.fetch import TOKENIZER_FILES

    return path.name not in TOKENIZER_FILES


def local_model(config: dict, name: str, root: Path, steps: list[int], **spec) -> None:
    config["models"][name] = {
        "source": "local",
        "layers": config["models"]["tiny-xlmr"]["layers"],
        "path": f"{root}/{{step}}",
        "steps": steps,
        **spec,
    }


def bad_treebank_language(finished: Path, config: dict, bad: Path) -> str:
    [(name, text, expected)] = [case for case in BAD_CONLLU_CASES if case[0] == "cycle"]
    treebank = treebank_with(text, bad / "UD_Bad")
    config["languages"]["xx"] = {"treebank": str(treebank)}
    return f"error: {treebank / 'xx-ud-train.conllu'}{expected}"


def no_tokenizer(finished: Path, config: dict, bad: Path) -> str:
    step = step_directory(finished, 20, bad / "run" / "20", keep=without_tokenizer)
    local_model(config, "run", bad / "run", [20])
    return (
        f"error: run step 20: {step}: no tokenizer files (tokenizer.json, "
        "sentencepiece.bpe.model, vocab.txt, ...) and no tokenizer configured "
        "(models.run.tokenizer)"
    )


def identical_steps(finished: Path, config: dict, bad: Path) -> str:
    step_directory(finished, 20, bad / "suite" / "20")
    step_directory(finished, 20, bad / "suite" / "40")
    local_model(config, "suite", bad / "suite", [20, 40])
    return "error: models.suite: steps 20 and 40 have identical weights (sha256 "


def garbled_config_json(finished: Path, config: dict, bad: Path) -> str:
    step = step_directory(finished, 20, bad / "broken" / "20")
    text = (step / "config.json").read_text().replace('"hidden_size"', '"hidden_size"::', 1)
    (step / "config.json").write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "hidden_size" in row)
    local_model(config, "broken", bad / "broken", [20])
    return f"error: broken step 20: {step / 'config.json'}:{line}: not JSON"


def encoder_without_head(finished: Path, config: dict, bad: Path) -> str:
    from transformers import AutoModel

    step = step_directory(
        finished, 20, bad / "encoder" / "20", keep=lambda p: p.suffix != ".safetensors"
    )
    AutoModel.from_pretrained(finished / "results/checkpoints/tiny-xlmr/20").save_pretrained(step)
    local_model(config, "encoder", bad / "encoder", [20])
    del config["models"]["tiny-xlmr"]  # (the embedded model's jobs are done either way)
    return (
        f"error: encoder step 20: {step}: no masked-LM head in the weights (lm_head.* missing): "
        "bits per character would come from a randomly initialised head"
    )


def lower_case_upos(finished: Path, config: dict, bad: Path) -> str:
    """An existing language pointed at a copy of its treebank whose test tags are lower-case:
    refused before any job, so en's prepared treebank (and all that follows) stays."""
    treebank = bad / "UD_English-EWT"
    shutil.copytree(REPO / "resources/ud/UD_English-EWT", treebank)
    test = treebank / "en_ewt-ud-test.conllu.gz"
    lines = gzip.decompress(test.read_bytes()).decode().split("\n")
    first = next(i for i, line in enumerate(lines) if line[:1].isdigit())
    columns = lines[first].split("\t")
    lines[first] = "\t".join([*columns[:3], columns[3].lower(), *columns[4:]])
    test.write_bytes(gzip.compress("\n".join(lines).encode()))
    config["languages"]["en"]["treebank"] = str(treebank)
    upos = columns[3].lower()
    return f"error: {test}:{first + 1}: UPOS {upos!r} is not a UD part-of-speech tag"


def min_sentences_above_the_treebanks(finished: Path, config: dict, bad: Path) -> str:
    """statistics.min_sentences above every treebank's dev split: refused before any job (each
    prepared treebank would otherwise be deleted by the job that refuses it)."""
    config["statistics"]["min_sentences"] = 1000
    dev = REPO / "resources/ud/UD_English-EWT/en_ewt-ud-dev.conllu.gz"
    return f"error: {dev}: 40 dev sentences after the cap of 40, fewer than the 1000 a bootstrap"


RUN_CASES = [bad_treebank_language, no_tokenizer, identical_steps, garbled_config_json]
RUN_CASES += [encoder_without_head, lower_case_upos, min_sentences_above_the_treebanks]


@pytest.mark.e2e
@pytest.mark.parametrize("make", RUN_CASES, ids=lambda make: make.__name__.replace("_", "-"))
def test_a_run_that_meets_bad_input_shows_the_one_line_and_keeps_what_it_had(
    finished, tmp_path, make
):
    before = digests(finished / "results")
    config = yaml.safe_load((finished / "config.yaml").read_text())
    expected = make(finished, config, tmp_path)
    planned = run_snakemake(finished, config, "-n")
    assert planned.returncode == 0, planned.stderr[-2000:]
    done = run_snakemake(finished, config)
    terminal = done.stdout + done.stderr
    assert done.returncode == 1
    lines = error_lines(terminal)  # one per failed job: jobs running side by side may both fail
    assert lines and all(line.startswith(expected) for line in lines), terminal[-3000:]
    assert len(set(lines)) == 1
    assert "Traceback" not in terminal
    assert_nothing_lost(before, finished / "results")


@pytest.mark.e2e
def test_a_configured_tokenizer_reaches_every_command_that_loads_the_checkpoint(finished, tmp_path):
    """models.<name>.tokenizer (step directories without tokenizer files) is wired through."""
    step_directory(finished, 20, tmp_path / "run" / "20", keep=without_tokenizer)
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(finished / "results/checkpoints/tiny-xlmr/tokenizer", tokenizer)
    config = yaml.safe_load((finished / "config.yaml").read_text())
    local_model(config, "run", tmp_path / "run", [20], tokenizer=str(tokenizer))
    done = run_snakemake(finished, config, "-n", "-p")
    assert done.returncode == 0, done.stderr[-2000:]
    commands = [line for line in done.stdout.splitlines() if "python -m mlm_dynamics" in line]
    loading = [c for c in commands if " --model run " in c or "/run/20 " in c]
    for command in ("check-checkpoint", "extract-activations", "bpc"):
        uses = [c for c in loading if re.search(rf"mlm_dynamics --log \S+ {command} ", c)]
        assert uses and all(f"--tokenizer {tokenizer}" in c for c in uses), command


# ================================================================ checks a real dataset needs
# Weights that are not finite (check-checkpoint), and treebank files that are each valid but not
# as a set or not as text: a control character in a FORM, a sent_id given twice (in one file or
# in two split files), test sentences copied from train or dev. Each is one line naming the
# file(s), as the cases above.


def conllu_tree(forms: list[str], sent_id: str | None = None) -> str:
    """A valid tree (word 1 the root, the others its dependents) and its blank line."""
    lines = [f"# sent_id = {sent_id}"] if sent_id else []
    for i, form in enumerate(forms, start=1):
        head, relation = (0, "root") if i == 1 else (1, "dep")
        lines.append(f"{i}\t{form}\t_\tX\t_\t_\t{head}\t{relation}\t_\t_")
    return "\n".join(lines) + "\n\n"


def long_sentences(prefix: str, n: int) -> str:
    """``n`` distinct sentences of 6 words: long enough to count as copied between splits."""
    return "".join(
        conllu_tree([f"{prefix}{i}", "is", "a", "sentence", "of", "six"]) for i in range(n)
    )


# (case id, {split: file content, None: no such file; a split left out: a valid one-word tree},
# the one line after "error: ", with {train}, {dev} and {test} for the split files)
DATASET_CASES = [
    (
        "control-character-nul",
        {"train": conllu_tree(["Hi"]) + conllu_tree(["Hi", "the\x00re"])},
        "{train}:4: FORM 'the\\x00re' holds control character U+0000",
    ),
    (
        "control-character-escape",
        {"test": conllu_tree(["\x1b[31mred"])},
        "{test}:1: FORM '\\x1b[31mred' holds control character U+001B",
    ),
    (
        "control-character-c1",
        {"dev": conllu_tree(["a", "b"], "d1") + conllu_tree(["caf\x85"])},
        "{dev}:5: FORM 'caf\\x85' holds control character U+0085",
    ),
    (
        "sent-id-twice-in-a-file",
        {"train": "".join(conllu_tree(["a", "b"], i) for i in ("x-1", "x-17", "x-2", "x-17"))},
        "{train}:13: sent_id 'x-17' given twice (first at line 5)",
    ),
    (
        "sent-id-in-two-files",
        {
            "train": conllu_tree(["a", "b"], "s1") + conllu_tree(["c", "d"], "s2"),
            "test": conllu_tree(["e", "f"], "t1") + conllu_tree(["g", "h"], "s2"),
        },
        "{test}:5: sent_id 's2' also given in {train}:5 (1 sent_id in both files)",
    ),
    (
        "test-copied-from-train",  # 27 of 300 test sentences appended from train
        {
            "train": long_sentences("train", 300) + long_sentences("test", 27),
            "test": long_sentences("test", 300),
        },
        "{test}: 27 of 300 test sentences of 5 or more words (9.0%) also in {train} (more than "
        "5%: sentences copied between splits?)",
    ),
    (
        "test-copied-from-the-dev-file-train-is-carved-from",
        {"train": None, "dev": long_sentences("s", 10), "test": long_sentences("s", 8)},
        "{test}: 8 of 8 test sentences of 5 or more words (100.0%) also in {dev} (more than "
        "5%: sentences copied between splits?)",
    ),
]


@pytest.mark.parametrize(
    ("name", "files", "expected"), DATASET_CASES, ids=[case[0] for case in DATASET_CASES]
)
def test_a_treebank_a_real_dataset_check_refuses_is_one_line_naming_its_files(
    tmp_path, capfd, name, files, expected
):
    out = tmp_path / "results"
    good = treebank_with(BAD_CONLLU_CASES_GOOD_TREE, tmp_path / "good")
    assert cli(["--log", str(tmp_path / "good.log"), *prepare_argv(good, out)]) == 0
    before = digests(out)
    capfd.readouterr()
    treebank = tmp_path / "bad"
    treebank.mkdir()
    paths = {split: treebank / f"xx-ud-{split}.conllu" for split in ("train", "dev", "test")}
    for split, path in paths.items():
        text = files.get(split, BAD_CONLLU_CASES_GOOD_TREE)
        if text is not None:
            path.write_text(text, encoding="utf-8")
    status = cli(["--log", str(tmp_path / "bad.log"), *prepare_argv(treebank, out)])
    terminal = capfd.readouterr()
    assert status == 2
    assert terminal.err.splitlines() == [f"error: {expected.format(**paths)}"]
    assert "Traceback" not in (tmp_path / "bad.log").read_text()
    assert digests(out) == before  # nothing lost, nothing new


def copy_of(finished: Path, work: Path) -> Path:
    shutil.copytree(finished, work, symlinks=True)
    return work


def reading_a_copy(finished: Path, tmp_path: Path, lang: str, key: str, source: Path):
    """A copy of the finished run whose ``languages.<lang>.<key>`` is a copy of ``source`` (a
    file or a folder), its outputs touched to stand for that copy: (run, config, the copy)."""
    work = copy_of(finished, tmp_path / "run")
    copy = tmp_path / source.name
    if source.is_dir():
        shutil.copytree(source, copy)
    else:
        shutil.copy2(source, copy)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["languages"][lang][key] = str(copy)
    touched = run_snakemake(work, config, "--touch")
    assert touched.returncode == 0, touched.stderr[-2000:]
    assert "Nothing to be done" in run_snakemake(work, config, "-n").stdout
    return work, config, copy


@pytest.mark.e2e
def test_a_treebank_file_changed_in_place_re_plans_what_reads_it(finished, tmp_path):
    """cp over a CoNLL-U file (or a script rewriting it) leaves the folder's mtime alone: the
    file itself is the input, so its dependents are planned again."""
    source = REPO / "resources/ud/UD_English-EWT"
    work, config, treebank = reading_a_copy(finished, tmp_path, "en", "treebank", source)
    before = digests(work / "results")
    test = treebank / "en_ewt-ud-test.conllu.gz"
    folder_mtime = treebank.stat().st_mtime_ns
    text = gzip.decompress(test.read_bytes()).decode().replace("\tNOUN\t", "\tPROPN\t", 50)
    with test.open("r+b") as handle:  # rewritten in place: the folder's entries stay
        handle.write(gzip.compress(text.encode()))
        handle.truncate()
    assert treebank.stat().st_mtime_ns == folder_mtime
    planned = run_snakemake(work, config, "-n")
    assert planned.returncode == 0
    assert f"Updated input files: {test}" in planned.stdout
    assert re.search(r"prepare_treebank\s+1\b", planned.stdout)
    assert_nothing_lost(before, work / "results")


# ================================================================ refusals inside a job
# What only a job can find (the weights it hashes, the text it reads) fails that job after
# Snakemake has deleted its outputs: the run puts them back, with Snakemake's record of how each
# was made (mlm_dynamics/kept.py), so the previous results are exactly as they were.


def run_state(work: Path) -> dict[str, str]:
    """The previous run as a user and Snakemake see it: its results, byte for byte, and which of
    them Snakemake holds a record of (the records' use is checked by dry runs)."""
    records = {f"record: {name}": "" for name in digests(work / ".snakemake/metadata")}
    return digests(work / "results") | records


def assert_refused_and_kept(work: Path, config: dict, before: dict, expected: str, *targets):
    done = run_snakemake(work, config, *targets)
    terminal = done.stdout + done.stderr
    assert done.returncode == 1, terminal[-3000:]
    lines = error_lines(terminal)  # one per failed job
    assert lines and all(line.startswith(expected) for line in lines), terminal[-3000:]
    assert "Traceback" not in terminal
    assert run_state(work) == before
    assert not (work / ".snakemake/mlm_dynamics-kept").exists()


@pytest.mark.e2e
def test_checkpoint_weights_replaced_in_place_are_refused_and_keep_what_was_made(
    reference, tmp_path
):
    """A local step's model.safetensors overwritten by another step's (the folder's mtime
    unchanged): its check runs again, finds the two steps identical, and the check record it
    would have replaced comes back."""
    work = copy_of(reference, tmp_path / "run")  # `finished` may hold earlier cases' "suite"
    for step in (20, 40):
        step_directory(reference, step, tmp_path / "suite" / str(step))
    config = yaml.safe_load((work / "config.yaml").read_text())
    local_model(config, "suite", tmp_path / "suite", [20, 40])
    checks = [f"results/checks/suite/{step}.json" for step in (20, 40)]
    checked = run_snakemake(work, config, *checks)
    assert checked.returncode == 0, checked.stderr[-3000:]
    before = run_state(work)
    weights = tmp_path / "suite/40/model.safetensors"
    folder_mtime = weights.parent.stat().st_mtime_ns
    with weights.open("r+b") as handle:  # cp over it: the same inode, the folder untouched
        handle.write((tmp_path / "suite/20/model.safetensors").read_bytes())
        handle.truncate()
    assert weights.parent.stat().st_mtime_ns == folder_mtime
    expected = "error: models.suite: steps 20 and 40 have identical weights (sha256 "
    assert_refused_and_kept(work, config, before, expected, *checks)
    # The record put back is not taken as up to date with the weights it was not made from...
    planned = run_snakemake(work, config, "-n", *checks)
    assert re.search(r"^check_checkpoint\s+1$", planned.stdout, re.M), planned.stdout[-2000:]
    assert f"Updated input files: {weights}" in planned.stdout
    # ...and it holds the checksum of the weights it was made from (Snakemake records those of
    # inputs under 1 MB), so step 40's own weights back in place need no work at all.
    with weights.open("r+b") as handle:
        handle.write((reference / "results/checkpoints/tiny-xlmr/40" / weights.name).read_bytes())
        handle.truncate()
    assert "Nothing to be done" in run_snakemake(work, config, "-n", *checks).stdout


@pytest.mark.e2e
def test_held_out_text_that_turns_bad_in_place_keeps_the_scores_it_had(finished, tmp_path):
    """A held-out text rewritten in place with bytes that are not UTF-8: every BPC job of its
    language runs again and refuses it, and their previous scores come back."""
    source = REPO / "resources/heldout/en.txt.gz"
    work, config, text = reading_a_copy(finished, tmp_path, "en", "heldout_text", source)
    before = run_state(work)
    lines = gzip.decompress(text.read_bytes()).split(b"\n")
    lines[1] = b"\xff" + lines[1]
    with text.open("r+b") as handle:
        handle.write(gzip.compress(b"\n".join(lines)))
        handle.truncate()
    expected = f"error: {text}:2: not UTF-8 text"
    assert_refused_and_kept(work, config, before, expected)
