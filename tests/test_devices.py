"""One device choice for every command: CUDA when asked for and visible, else the CPU, logged."""

from __future__ import annotations

import pytest
import torch

from mlm_dynamics.devices import select_device


def test_cuda_falls_back_to_the_cpu_where_none_is_visible(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert select_device("cuda") == torch.device("cpu")
    log = capsys.readouterr().err
    assert "device: CUDA is not available, running on CPU" in log
    assert "CUDA_VISIBLE_DEVICES=0" in log


def test_cuda_is_taken_where_visible(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Test GPU")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert select_device("cuda") == torch.device("cuda")
    assert "device: cuda (Test GPU; CUDA_VISIBLE_DEVICES=<unset>)" in capsys.readouterr().err


def test_the_cpu_when_asked_for_even_with_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err.startswith("device: cpu (")


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="'tpu' is not one of cpu, cuda"):
        select_device("tpu")
