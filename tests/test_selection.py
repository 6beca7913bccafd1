"""Choosing what to label: deterministic, within budget, and spread over groups a random draw misses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.encoder.selection import select_indices

from .test_labels import samples


def clustered_pool(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """30 tight clusters in 16 dimensions; one holds 80% of the 1,000 points, as one large task in a pool."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 16))
    sizes = [800] + [200 // 29 + (1 if i < 200 % 29 else 0) for i in range(29)]
    points = np.concatenate([c + 0.05 * rng.normal(size=(n, 16)) for c, n in zip(centres, sizes)])
    groups = [f"task-{k}" for k, n in enumerate(sizes) for _ in range(n)]
    return points, groups


@pytest.mark.parametrize("method", ["kmeans", "farthest"])
def test_coverage_selection_is_deterministic_within_budget_and_covers_more_groups_than_random(method):
    points, groups = clustered_pool()
    chosen = select_indices(len(points), 40, method, points, seed=3)
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, select_indices(len(points), 40, method, points, seed=3))
    covered = len({groups[i] for i in chosen})
    by_chance = [len({groups[i] for i in select_indices(len(points), 40, "random", seed=s)}) for s in range(10)]
    assert covered == 30 and max(by_chance) < 25  # every cluster vs. about 14 of 30 for a random draw


def test_per_group_cap_and_bad_requests():
    points, groups = clustered_pool(1)
    for method in ("kmeans", "farthest", "random"):
        chosen = select_indices(len(points), 60, method, points, seed=0, groups=groups, per_group_cap=2)
        counts = np.unique([groups[i] for i in chosen], return_counts=True)[1]
        assert counts.max() <= 2 and len(chosen) == 60, method
    np.testing.assert_array_equal(select_indices(5, 10, "kmeans", points[:5]), np.arange(5))  # budget >= n: all
    with pytest.raises(InflucoderError, match="budget 0 is out of range"):
        select_indices(10, 0)
    with pytest.raises(InflucoderError, match="one embedding per candidate"):
        select_indices(10, 3, "farthest", points[:4])
    with pytest.raises(InflucoderError, match="unknown selection method"):
        select_indices(10, 3, "dpp")


def test_select_cli_writes_a_labelable_file_and_reports_coverage(tiny_bert_dir, tmp_path, capsys):
    pool = samples(30)
    for i, s in enumerate(pool):
        s.meta["task"] = f"t{i % 5}"
    source = tmp_path / "pool.jsonl"
    source.write_text("".join(json.dumps(s.to_record()) + "\n" for s in pool))
    out = tmp_path / "chosen.jsonl"
    args = ["select", "--pool", str(source), "--budget", "8", "--out", str(out), "--encoder", str(tiny_bert_dir)]
    assert main([*args, "--quiet", "--method", "farthest"]) == 0
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(chosen) == 8 and {r["id"] for r in chosen} <= {s.id for s in pool}
    assert "of 5 task groups covered" in capsys.readouterr().out
    assert main([*args, "--quiet", "--budget", "0"]) == 2
    assert main([*args, "--quiet", "--pool", str(source), str(source)]) == 2  # the same ids twice
    assert "twice" in capsys.readouterr().err
