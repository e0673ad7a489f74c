"""What the numbers depend on: the environment record of a results tree (see fingerprint.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from test_plan import DEFAULT, validated

from mlm_dynamics import fingerprint
from mlm_dynamics.layout import ENVIRONMENT
from mlm_dynamics.plan import Plan


def test_the_config_digest_ignores_key_order_and_follows_every_value():
    config = validated(DEFAULT)
    reordered = json.loads(json.dumps(dict(reversed(list(config.items())))))
    assert fingerprint.config_sha256(reordered) == fingerprint.config_sha256(config)
    config["probing"]["l2"] = [*config["probing"]["l2"], 1.0]
    assert fingerprint.config_sha256(config) != fingerprint.config_sha256(reordered)


def test_every_seed_and_thread_count_of_the_config_is_recorded():
    config = validated(DEFAULT)
    record = fingerprint.record(config, [])
    assert record["seeds"]["pretrain.seed"] == config["pretrain"]["seed"]
    assert record["seeds"]["probing.seeds"] == config["probing"]["seeds"]
    assert record["seeds"]["statistics.seed"] == config["statistics"]["seed"]
    assert record["threads"]["pretrain.threads"] == config["pretrain"]["threads"] == 1
    assert record["threads"]["gpu_resources.threads"] == config["gpu_resources"]["threads"]
    packages = record["environment"]["packages"]
    assert packages["torch"] == torch.__version__ and packages["mlm-dynamics"] is not None


@pytest.mark.parametrize("capability", [None, "default"])
def test_the_instruction_set_torch_dispatches_to_is_the_one_recorded(tmp_path, capability):
    """ATEN_CPU_CAPABILITY lowers torch's kernels (e.g. to the scalar 'default' ones): the record
    says which ran, not which the CPU has."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = tmp_path / "environment.json"
    subprocess.run(
        [sys.executable, "-m", "mlm_dynamics", "fingerprint", "--config", "{}", "--out", str(out)],
        env=env, check=True,
    )  # fmt: skip
    recorded = json.loads(out.read_text())["environment"]
    expected = "DEFAULT" if capability else torch.backends.cpu.get_cpu_capability()
    assert recorded["torch_cpu_capability"] == expected
    assert recorded["ATEN_CPU_CAPABILITY"] == capability


@pytest.mark.e2e
def test_the_reference_run_records_its_config_and_each_checkpoint_s_environment(reference):
    config = validated(yaml.safe_load((reference / "config.yaml").read_text()))
    record = json.loads((reference / ENVIRONMENT).read_text())
    assert record["config_sha256"] == fingerprint.config_sha256(config)
    checkpoints = Plan(config).embedded_checkpoints()
    assert sorted(record["checkpoints"]) == sorted(
        "/".join(path.split("/")[-2:]) for path in checkpoints
    )
    for trained in record["checkpoints"].values():
        assert trained["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert trained["packages"]["torch"] == torch.__version__
