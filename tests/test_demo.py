"""The demo end to end on the real embedded models and data, at toy sizes (a real-asset smoke test)."""

from __future__ import annotations

import json

import pytest

from influcoder.core.errors import AssetError
from influcoder.demo import run_demo


@pytest.mark.assets
def test_demo_runs_every_stage_on_real_assets(smollm_dir, minilm_dir, tmp_path, capsys):
    args = dict(
        out=str(tmp_path / "demo"), pool_size=20, query_size=16, epochs=1, lr=1e-4, max_length=48, proj_dim=1024, seed=0
    )
    try:
        assert run_demo(**args) == 0
    except AssetError as exc:
        pytest.skip(f"an embedded data set is unavailable (package registry unreachable?): {exc}")
    out = capsys.readouterr().out
    assert "report (every figure measured in this run)" in out and "Spearman vs gradient labels" in out
    kept = (tmp_path / "demo" / "kept.jsonl").read_text().splitlines()
    dropped = (tmp_path / "demo" / "dropped.jsonl").read_text().splitlines()
    assert len(kept) + len(dropped) == 20 and len(dropped) == 2
    labels = json.loads((tmp_path / "demo" / "labels" / "labels.json").read_text())
    assert labels["n_pool"] == 20 and labels["features"]["model"] == "smollm2-135m-instruct"
