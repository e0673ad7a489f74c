"""The conda environments (envs/*.yaml) and pyproject.toml name the same packages, same ranges.

Each env file is parsed as conda reads it: conda dependencies (``name >=1,<2``, conda-forge
spellings such as ``pytorch``) and the pip list (PEP 508 requirements plus option lines such as
``--extra-index-url``). Names compare after PEP 503 normalisation, ranges as specifier sets.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
# Conda-forge spellings of PyPI names, where they differ.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}
# Run outside the jobs' environments (Snakemake activates an env only for a rule's command).
NOT_IN_JOB_ENVS = {"snakemake"}
# Conda's own machinery, not a dependency of the package.
CONDA_TOOLING = {"pip"}


def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]


def pyproject_requirements() -> dict[str, SpecifierSet]:
    requirements = [Requirement(line) for line in pyproject()["dependencies"]]
    return {canonicalize_name(r.name): r.specifier for r in requirements}


def conda_requirement(spec: str) -> tuple[str, str]:
    """``'numpy >=1.26,<3'`` or ``'numpy>=1.26,<3'`` -> (pypi name, specifier text)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    assert match, f"unreadable conda dependency {spec!r}"
    name, version = match.groups()
    name = CONDA_TO_PYPI.get(name.lower(), name)
    return canonicalize_name(name), version.replace(" ", "")


def env_requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    """(package -> specifier text as written, pip option lines) of one env file."""
    env = yaml.safe_load(path.read_text())
    packages: dict[str, str] = {}
    options: list[str] = []
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            for line in dependency["pip"]:
                if line.startswith("-"):
                    options.append(line)
                    continue
                requirement = Requirement(line)
                packages[canonicalize_name(requirement.name)] = str(requirement.specifier)
        else:
            name, version = conda_requirement(dependency)
            packages[name] = version
    return packages, options


@functools.cache
def parsed_rules(device: str) -> dict[str, tuple[Path | None, int]]:
    """(conda env file, GPUs asked for) of every rule that runs a command, as Snakemake parses
    the workflow with ``probing.device: device`` (env paths are relative to the rule's own file;
    None where it names none; 0 GPUs where ``resources`` has no ``gpu``)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    config = {"probing": {"device": device}}
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            snakefile=REPO / "Snakefile",
            workdir=REPO,
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(config=config),
        )
        # the parsed rules are not public API; pyproject pins Snakemake to one major version
        rules = {}
        for rule in workflow._workflow.rules:
            if rule.shellcmd is None:
                continue
            env = rule.conda_env and (Path(rule.snakefile).parent / rule.conda_env).resolve()
            gpu = rule.resources.get("gpu")
            assert gpu is None or not gpu.is_evaluable(), f"{rule.name}: gpu is a function"
            rules[rule.name] = (env, (gpu.value if gpu is not None else None) or 0)
        return rules


def rule_conda_envs(config: dict) -> dict[str, Path | None]:
    """The conda env file of every rule that runs a command under ``config`` (probing.device)."""
    return {rule: env for rule, (env, _) in parsed_rules(config["probing"]["device"]).items()}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_rule_names_an_env_file_and_probes_on_cuda_get_the_cuda_build(device):
    envs = rule_conda_envs({"probing": {"device": device}})
    assert len(envs) >= 20, sorted(envs)
    assert not [rule for rule, env in envs.items() if env is None]
    assert set(envs.values()) <= {path.resolve() for path in ENV_FILES}
    assert envs["extract_activations"].name == "gpu.yaml"
    assert envs["score_probe"].name == "core.yaml"
    assert envs["train_probe"].name == ("gpu.yaml" if device == "cuda" else "core.yaml")


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_packages_have_the_pyproject_ranges(path):
    declared = pyproject_requirements()
    packages, _ = env_requirements(path)
    python = packages.pop("python")
    for name in CONDA_TOOLING:
        packages.pop(name, None)
    for name, specifier in packages.items():
        assert name in declared, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert SpecifierSet(specifier) == declared[name], (
            f"{path.name}: {name}{specifier} but pyproject.toml says {name}{declared[name]}"
        )
    # The env's Python is one that pyproject allows.
    pinned = re.fullmatch(r"=?=?(\d+\.\d+)(\.\*)?", python)
    assert pinned, f"{path.name}: pin python to one minor version (python =3.X), not {python!r}"
    assert Version(pinned.group(1)) in SpecifierSet(pyproject()["requires-python"])


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_is_complete(path):
    """A job in the env can import everything the package needs."""
    packages, _ = env_requirements(path)
    missing = set(pyproject_requirements()) - NOT_IN_JOB_ENVS - set(packages)
    assert not missing, f"{path.name}: lacks {sorted(missing)} (pyproject.toml dependencies)"


def test_torch_builds():
    """CPU rules get the CPU build of torch; GPU rules a CUDA build (never the CPU index)."""
    _, core_options = env_requirements(REPO / "envs" / "core.yaml")
    _, gpu_options = env_requirements(REPO / "envs" / "gpu.yaml")
    assert any("download.pytorch.org/whl/cpu" in line for line in core_options)
    pytorch_indexes = [line for line in gpu_options if "download.pytorch.org" in line]
    assert all(re.search(r"/whl/cu\d+", line) for line in pytorch_indexes), pytorch_indexes
    assert "torch" in env_requirements(REPO / "envs" / "gpu.yaml")[0]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_gpu_rules_use_the_gpu_env(device):
    """A rule that asks for a GPU runs in the CUDA env; one that does not, never does. Read from
    the parsed workflow, so a rule whose env or GPU count is computed (train_probe's, which
    follow probing.device) counts as configured, not as written in the rule file."""
    rules = parsed_rules(device)
    gpu_env = (REPO / "envs" / "gpu.yaml").resolve()
    mismatched = {
        rule: (gpus, env and env.name)
        for rule, (env, gpus) in rules.items()
        if (gpus == 1) != (env == gpu_env) or gpus not in (0, 1)
    }
    assert mismatched == {}
    assert rules["train_probe"][1] == (1 if device == "cuda" else 0)
    asks_gpu = {rule for rule, (_, gpus) in rules.items() if gpus}
    assert asks_gpu == {"extract_activations", "bpc", "xnli_features", "simalign"} | (
        {"train_probe"} if device == "cuda" else set()
    )
