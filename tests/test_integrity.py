"""Shards carry their size and sha256: a truncated shard is refused on read, a changed one by `verify`."""

from __future__ import annotations

import numpy as np
import pytest

from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.core.store import FeatureStore


def make_store(path, n=10, shard_size=4):
    store = FeatureStore.create_or_resume(path, {"kind": "test"}, [f"s{i}" for i in range(n)], 3, shard_size, "float32")
    rows = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    for index in range(store.n_shards):
        store.write_shard(index, rows[store.shard_rows(index).start : store.shard_rows(index).stop])
    return FeatureStore(path), rows


def test_a_truncated_shard_is_refused_on_read_and_a_changed_one_by_verify(tmp_path, capsys):
    store, rows = make_store(tmp_path / "store")
    assert store.manifest["complete"] and store.verify() == []
    np.testing.assert_array_equal(store.load(), rows)
    assert main(["verify", str(tmp_path)]) == 0 and "intact" in capsys.readouterr().out

    shard = store.shard_path(1)
    data = shard.read_bytes()
    shard.write_bytes(data[:-5])  # truncated: trusted before because it existed
    with pytest.raises(InflucoderError, match="truncated or replaced; delete it and rerun"):
        FeatureStore(tmp_path / "store").load()

    changed = bytearray(data)
    changed[-1] ^= 0xFF  # same size, other content: only the full check sees it
    shard.write_bytes(bytes(changed))
    FeatureStore(tmp_path / "store").load()
    problems = FeatureStore(tmp_path / "store").verify()
    assert len(problems) == 1 and "sha256 mismatch" in problems[0] and "shard-00001" in problems[0]
    assert main(["verify", str(tmp_path / "store")]) == 1 and "sha256 mismatch" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nothing")]) == 2


def test_stores_written_before_checksums_still_read_and_verify_says_so(tmp_path):
    store, rows = make_store(tmp_path / "old", n=5)
    for index in range(store.n_shards):
        store.checksum_path(index).unlink()
    np.testing.assert_array_equal(FeatureStore(tmp_path / "old").load(), rows)
    assert all("no checksum recorded" in p for p in FeatureStore(tmp_path / "old").verify())


def test_completion_is_marked_whatever_order_the_shards_arrive_in(tmp_path):
    store = FeatureStore.create_or_resume(tmp_path / "s", {}, [f"s{i}" for i in range(9)], 2, 3, "float32")
    for index in (2, 0, 1):  # the last index is not written last (Ray workers finish in any order)
        assert not store.manifest["complete"]
        store.write_shard(index, np.zeros((3, 2), dtype=np.float32))
    assert FeatureStore(tmp_path / "s").manifest["complete"]


def test_a_truncated_influence_matrix_is_refused_with_the_way_to_rebuild_it(tmp_path):
    import json

    from influcoder.labels.influence import InfluenceMatrix

    scores = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    InfluenceMatrix(scores, [f"p{i}" for i in range(6)], ["q0", "q1", "q2"]).save(tmp_path / "m")
    np.testing.assert_array_equal(InfluenceMatrix.load(tmp_path / "m").scores, scores)
    path = tmp_path / "m" / "scores.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(InflucoderError, match="truncated or replaced; rerun `influcoder label` with the same `out`"):
        InfluenceMatrix.load(tmp_path / "m")
    ids = json.loads((tmp_path / "m" / "ids.json").read_text())
    del ids["scores_bytes"]  # a matrix written before sizes were recorded: numpy's own check refuses it, named
    (tmp_path / "m" / "ids.json").write_text(json.dumps(ids))
    with pytest.raises(InflucoderError, match=r"scores\.npy: not a readable \.npy array"):
        InfluenceMatrix.load(tmp_path / "m")


def test_completion_is_marked_when_shards_come_from_several_writers(tmp_path):
    """Ray workers each hold their own store object: the one writing the last missing shard marks completion,
    whatever it saw when it started (CI once saw this left unmarked)."""
    ids = [f"s{i}" for i in range(12)]
    a = FeatureStore.create_or_resume(tmp_path / "s", {}, ids, 2, 3, "float32")
    b = FeatureStore(tmp_path / "s")
    rows = np.zeros((3, 2), dtype=np.float32)
    a.write_shard(0, rows)  # a has seen 1, 2, 3 missing
    b.write_shard(3, rows)  # b too
    b.write_shard(1, rows)
    a.write_shard(2, rows)  # the last shard, written by a, which never saw b's shards being written
    assert FeatureStore(tmp_path / "s").manifest["complete"]


def test_verify_checks_influence_matrices_and_reading_commands_check_under_verify(tmp_path, tiny_bert_dir, capsys):
    from influcoder import Influcoder
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.labels.influence import InfluenceMatrix

    from .test_labels import samples

    scores = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    InfluenceMatrix(scores, [f"p{i}" for i in range(6)], ["q0", "q1", "q2"]).save(tmp_path / "labels" / "influence")
    assert main(["verify", str(tmp_path / "labels")]) == 0
    matrix = tmp_path / "labels" / "influence" / "scores.npy"
    data = bytearray(matrix.read_bytes())
    data[-1] ^= 0xFF  # same size: only the full check sees it
    matrix.write_bytes(bytes(data))
    assert main(["verify", str(tmp_path / "labels")]) == 1 and "scores.npy: content differs" in capsys.readouterr().out

    encoder_dir = tmp_path / "encoder"
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16).save_pretrained(encoder_dir)
    Influcoder.from_pretrained(encoder_dir).index(samples(12), tmp_path / "index", shard_size=4, progress=False)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"prompt": "the cat", "response": "a dog"}\n', encoding="utf-8")
    args = ["attribute", "--index", str(tmp_path / "index"), "--encoder", str(encoder_dir), "--queries", str(queries)]
    args += ["-k", "2", "--quiet"]
    shard = next((tmp_path / "index").rglob("shard-00001.npy"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(args) == 0  # sizes agree: the everyday read trusts it
    capsys.readouterr()
    assert main([*args, "--verify"]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
