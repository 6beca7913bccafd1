"""benchmarks/gpu_check.py runs unchanged on a machine without CUDA: it says so in its JSON and exits 0."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import load_benchmark


def _load():
    return load_benchmark("gpu_check")


def test_gpu_check_writes_a_skip_record_without_cuda(tmp_path, monkeypatch):
    gpu_check = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "g.json")]) == 0
    record = json.loads((tmp_path / "g.json").read_text())
    assert "no CUDA device" in record["skipped"] and record["torch"] == torch.__version__
    assert not any(isinstance(v, dict) for v in record.values())  # no step ran


def test_a_failing_step_is_recorded_and_fails_the_command(tmp_path, monkeypatch):
    """On a GPU machine a broken step must show in the JSON and the exit status, without stopping the rest."""
    gpu_check = _load()
    results: dict = {}
    gpu_check._step(results, "boom", lambda: 1 / 0)
    gpu_check._step(results, "fine", lambda: {"ok": True})
    assert "ZeroDivisionError" in results["boom"]["error"] and results["fine"]["ok"] is True


@pytest.mark.assets
def test_the_equality_step_runs_on_the_cpu_too():
    """The CUDA equality check is the CPU test's logic on another device: run it here, small, so the code the
    GPU day depends on is not run for the first time that day."""
    result = _load().check_equality("float32", device="cpu", n=3)
    assert result["ok"] and result["samples"] == 3 and result["max_relative_error"] < 1e-4
