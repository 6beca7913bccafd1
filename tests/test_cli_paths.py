"""CLI paths that no other test ran: --version, label's --pool-limit / --query-limit, fidelity and finetune on a
tiny decoder. Each check ties the command's output to what it must be (the library's answer, the file's first
samples), not to its exit code alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder import __version__
from influcoder.cli.main import main
from influcoder.data.formats import load_file

from .test_labels import samples


def write_jsonl(path, items) -> None:
    path.write_text("".join(json.dumps(s.to_record()) + "\n" for s in items), encoding="utf-8")


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"influcoder {__version__}"


def test_label_limits_take_the_seeded_subset_of_each_file(tiny_model_dir, tmp_path):
    from influcoder.data.records import subsample

    pool_file, query_file = tmp_path / "pool.jsonl", tmp_path / "queries.jsonl"
    write_jsonl(pool_file, samples(7))
    write_jsonl(query_file, samples(5, seed=3, prefix="q"))
    out = tmp_path / "labels"
    argv = ["label", "--pool", str(pool_file), "--queries", str(query_file), "--model", str(tiny_model_dir),
            "--rank", "2", "--proj-dim", "32", "--max-length", "24", "--out", str(out), "--quiet"]  # fmt: skip
    assert main([*argv, "--pool-limit", "3", "--query-limit", "2", "--data-seed", "5"]) == 0
    ids = json.loads((out / "influence" / "ids.json").read_text())
    pool_ids = [s.id for s in subsample(load_file(pool_file), 3, 5)]
    assert ids["pool_ids"] == pool_ids and ids["query_ids"] == [s.id for s in subsample(load_file(query_file), 2, 5)]
    assert len(set(pool_ids)) == 3 and np.load(out / "influence" / "scores.npy").shape == (3, 2)
    assert [s.id for s in load_file(out / "pool.jsonl")] == pool_ids


def test_fidelity_prints_and_writes_the_librarys_rows(tiny_model_dir, tmp_path, capsys):
    from influcoder.labels.fidelity import projection_fidelity
    from influcoder.labels.settings import LabelSettings

    data = tmp_path / "data.jsonl"
    write_jsonl(data, samples(6))
    out = tmp_path / "fidelity.json"
    argv = ["fidelity", "--data", str(data), "--limit", "6", "--dims", "16", "65536", "--model", str(tiny_model_dir),
            "--rank", "2", "--max-length", "24", "--json", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(out.read_text())
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24)
    expected = projection_fidelity(load_file(data), settings, [16, 65536], progress=False)
    assert [r["dim"] for r in rows] == [16, 65536] and all(r["n_samples"] == 6 for r in rows)
    for row, want in zip(rows, expected):
        assert row["spearman"] == pytest.approx(want["spearman"], abs=1e-6)
        assert row["mean_abs_error"] == pytest.approx(want["mean_abs_error"], abs=1e-6)
    # far more buckets than LoRA coordinates: CountSketch keeps the pair cosines nearly exact
    assert rows[1]["dim"] > 8 * rows[1]["in_dim"] and rows[1]["mean_abs_error"] < rows[0]["mean_abs_error"]
    assert rows[1]["spearman"] > 0.95
    printed = capsys.readouterr().out
    assert f"| countsketch | 65,536 | {rows[1]['spearman']:.4f} |" in printed


def test_finetune_command_writes_an_adapter_that_label_loads(tiny_model_dir, tmp_path):
    data = tmp_path / "pool.jsonl"
    write_jsonl(data, samples(8))
    adapter = tmp_path / "adapter"
    argv = ["finetune", "--data", str(data), "--model", str(tiny_model_dir), "--rank", "2", "--epochs", "1",
            "--batch-size", "4", "--max-length", "24", "--lr", "1e-3", "--out", str(adapter), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert (adapter / "adapter_config.json").exists() and (adapter / "optimizer.pt").exists()
    out = tmp_path / "labels"
    common = ["label", "--pool", str(data), "--queries", str(data), "--model", str(tiny_model_dir), "--rank", "2",
              "--proj-dim", "32", "--max-length", "24", "--quiet"]  # fmt: skip
    assert main([*common, "--adapter", str(adapter), "--out", str(out)]) == 0
    assert main([*common, "--out", str(tmp_path / "fresh")]) == 0
    trained = np.load(out / "influence" / "scores.npy")
    fresh = np.load(tmp_path / "fresh" / "influence" / "scores.npy")
    assert trained.shape == fresh.shape == (8, 8)
    assert not np.allclose(trained, fresh, atol=1e-4)  # the labels are the fine-tuned adapter's, not a fresh one's
    assert json.loads((out / "labels.json").read_text())["settings"]["adapter"] == str(adapter)
