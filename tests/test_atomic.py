"""Atomic output: the target holds the old or the whole new content, and no temporary file is left behind."""

from __future__ import annotations

import pytest

from influcoder.core.atomic import atomic_output, temporary_sibling
from influcoder.data.formats import write_samples
from influcoder.data.loading import load_samples
from influcoder.data.records import Sample


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_output(target, fsync=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.txt.")
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the block ends
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_temporary_names_are_unique_per_call(tmp_path):
    names = {temporary_sibling(tmp_path / "manifest.json") for _ in range(100)}
    assert len(names) == 100


def test_write_samples_failure_leaves_previous_file(tmp_path):
    path = tmp_path / "s.jsonl"
    write_samples([Sample("a", "p", "r")], path)

    def broken():
        yield Sample("b", "p", "r")
        raise ValueError("generator failed")

    with pytest.raises(ValueError):
        write_samples(broken(), path)
    assert [s.id for s in load_samples(path)] == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_a_directory_is_replaced_whole_or_not_at_all(tmp_path):
    from influcoder.core.atomic import atomic_directory

    target = tmp_path / "best"
    target.mkdir()
    (target / "weights").write_text("epoch 1")
    (target / "stale").write_text("from epoch 1 only")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("epoch 2, half written")
        raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "epoch 1" and (target / "stale").exists()
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("epoch 2")
    assert sorted(p.name for p in target.iterdir()) == ["weights"] and (target / "weights").read_text() == "epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporary or old copy left


def test_an_encoder_saved_with_replace_survives_a_failed_save(tiny_bert_dir, tmp_path, monkeypatch):
    from influcoder.encoder.model import InfluenceEncoder

    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=8, max_length=16)
    encoder.save_pretrained(tmp_path / "best", replace=True)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "best").rglob("*") if p.is_file()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoder.tokenizer, "save_pretrained", killed)  # after the backbone's weights are written
    with pytest.raises(KeyboardInterrupt):
        encoder.save_pretrained(tmp_path / "best", replace=True)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "best").rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    InfluenceEncoder.from_pretrained(tmp_path / "best")


def test_a_write_error_names_the_target_not_the_hidden_temporary_file(tmp_path, capsys):
    """A read-only output folder: the message names --out's file, not `.x.jsonl.<pid>.<hex>.tmp`."""
    import os

    from influcoder.cli.main import main

    if os.geteuid() == 0:  # root writes anywhere: make the folder a file's child instead, which fails for all
        target = tmp_path / "a-file" / "x.jsonl"
        (tmp_path / "a-file").write_text("")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        target = tmp_path / "ro" / "x.jsonl"
    pool = tmp_path / "p.jsonl"
    pool.write_text('{"prompt": "p", "response": "r"}\n')
    assert main(["data", str(pool), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and ".tmp" not in err


def _dead_pid() -> int:
    """The pid of a process that has ended (a killed writer's)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    """What a SIGKILLed writer left (a half-written file, a half-filled encoder directory) goes; a temporary of a
    process still running, of this process, or anything not named as a temporary stays."""
    import os

    from influcoder.core.atomic import sweep_stale_temporaries

    dead = _dead_pid()
    stale_file = tmp_path / f".shard-00001.npy.{dead}.0123456789ab.tmp"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f".last.{dead}.abcdef012345.tmp"
    (stale_dir / "backbone").mkdir(parents=True)
    (stale_dir / "backbone" / "config.json").write_text("{}")
    live = tmp_path / f".best.{os.getppid()}.abcdef012345.tmp"
    ours = tmp_path / f".best.{os.getpid()}.abcdef012345.tmp"
    notes = tmp_path / f".notes.{dead}.tmp"  # not a temporary's name (no 12-hex part)
    for kept in (live, ours, notes):
        kept.write_text("keep")
    removed = sweep_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and ours.exists() and notes.exists()
    assert sweep_stale_temporaries(tmp_path / "missing") == []


def test_a_resumed_store_sweeps_a_shard_a_killed_writer_left(tmp_path):
    import numpy as np

    from influcoder.core.store import FeatureStore

    store = FeatureStore.create_or_resume(tmp_path / "s", {"a": 1}, ["x", "y", "z"], dim=2, shard_size=2)
    store.write_shard(0, np.ones((2, 2), dtype=np.float32))
    stale = tmp_path / "s" / f".shard-00001.npy.{_dead_pid()}.0123456789ab.tmp"
    stale.write_bytes(b"half")
    FeatureStore.create_or_resume(tmp_path / "s", {"a": 1}, ["x", "y", "z"], dim=2, shard_size=2)
    assert not stale.exists()
