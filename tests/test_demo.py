"""The demo end to end on the real embedded models and data, at toy sizes (a real-asset smoke test)."""

from __future__ import annotations

import json

import pytest

from influcoder.experiments.demo import run_demo


@pytest.mark.assets
def test_demo_runs_every_stage_on_real_assets(smollm_dir, minilm_dir, tmp_path, caplog):
    args = dict(
        out=str(tmp_path / "demo"), pool_size=20, query_size=16, epochs=1, lr=1e-4, max_length=48, proj_dim=1024, seed=0
    )
    with caplog.at_level("INFO", logger="influcoder"):
        summary = run_demo(**args).summary()
    assert "report (every figure measured in this run)" in summary and "Spearman vs gradient labels" in summary
    assert "[demo] 5/5 attribute and filter" in caplog.text and "  filter: dropped the 2" in caplog.text
    kept = (tmp_path / "demo" / "kept.jsonl").read_text().splitlines()
    dropped = (tmp_path / "demo" / "dropped.jsonl").read_text().splitlines()
    assert len(kept) + len(dropped) == 20 and len(dropped) == 2
    labels = json.loads((tmp_path / "demo" / "labels" / "labels.json").read_text())
    assert labels["n_pool"] == 20 and labels["features"]["model"] == "smollm2-135m-instruct"
    # the default objective is the subspace one: its encoder predicts coordinates on the saved directions, and
    # the demo scored it as attribute does (its distilled row is not the cosine of two encodings)
    training = json.loads((tmp_path / "demo" / "encoder" / "training.json").read_text())
    assert training["objective"] == "subspace" and (tmp_path / "demo" / "encoder" / "best" / "subspace.npz").exists()
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["settings"]["objective"] == "subspace"


@pytest.mark.assets
def test_demo_report_json_holds_what_it_printed(smollm_dir, minilm_dir, tmp_path):
    """The demo's report.json (what CI checks after its short demo) carries the printed figures, not others."""
    import math

    done = run_demo(str(tmp_path / "d"), pool_size=24, query_size=8, epochs=1, max_length=32, proj_dim=512)
    out = done.summary()
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report == done.record
    assert report["sizes"]["pool"] == 24 and report["sizes"]["kept"] + report["sizes"]["dropped"] == 24
    distilled, untrained = report["spearman"]["distilled"], report["spearman"]["untrained"]
    assert all(math.isfinite(v) for r in (distilled, untrained) for v in r.values())
    assert (
        f"per-anchor {distilled['per_anchor_mean']:.3f} distilled vs {untrained['per_anchor_mean']:.3f} untrained"
        in out
    )
    assert report["protocol"].startswith("random") and report["seconds"]["total"] > 0
