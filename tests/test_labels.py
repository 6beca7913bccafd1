"""Gradient stores and labels: resume after a crash is bit-identical, mismatches refused, NaN reported,
influence equals a direct cosine, and `influcoder label` runs end to end on a tiny model directory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from influcoder.cli.main import main
from influcoder.core.errors import ArtifactMismatchError, InflucoderError, NonFiniteGradientError
from influcoder.core.store import FeatureStore
from influcoder.data.formats import load_file
from influcoder.data.records import Sample
from influcoder.labels.featurizer import GradientFeaturizer, make_batches
from influcoder.labels.influence import InfluenceMatrix, aggregate, cosine_matrix, top_k
from influcoder.labels.labelling import label, load_labels
from influcoder.labels.settings import LabelSettings

WORDS = "one two three four five six seven eight nine ten cat dog bird fish red green blue sky sea sun".split()


def samples(n: int, seed: int = 0, prefix: str = "p") -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 12))))
        response = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))
        out.append(Sample(f"{prefix}{i}", prompt, response))
    return out


def settings(**kw) -> LabelSettings:
    base = dict(rank=4, proj_dim=64, max_length=32, batch_size=3, batch_tokens=64, shard_size=4)
    return LabelSettings(**{**base, **kw})


def featurizer(model_dir, **kw) -> GradientFeaturizer:
    from influcoder.data.models import load_decoder

    s = settings(model=str(model_dir), **kw)
    model, tok = load_decoder(s.model)
    return GradientFeaturizer(s, model, tok)


def test_make_batches_respects_caps_and_covers_all():
    lengths = [5, 30, 7, 30, 2, 9, 9, 12]
    batches = make_batches(lengths, batch_size=3, batch_tokens=40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 40 or len(b) == 1


def test_resume_after_crash_is_bit_identical(tiny_model_dir, tmp_path, monkeypatch):
    data = samples(10)
    f = featurizer(tiny_model_dir)
    whole = f.featurize_to_store(data, tmp_path / "whole")
    reference = [whole.shard_path(i).read_bytes() for i in range(whole.n_shards)]

    calls = {"n": 0}
    original = FeatureStore.write_shard

    def crash_after_first(self, index, rows):
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        original(self, index, rows)

    monkeypatch.setattr(FeatureStore, "write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        f.featurize_to_store(data, tmp_path / "crashed")
    monkeypatch.setattr(FeatureStore, "write_shard", original)
    crashed = FeatureStore(tmp_path / "crashed")
    assert crashed.missing_shards() == [1, 2] and not crashed.complete
    assert not list((tmp_path / "crashed").glob(".*tmp"))  # no half-written shard left behind

    resumed = featurizer(tiny_model_dir).featurize_to_store(data, tmp_path / "crashed")
    assert resumed.complete
    assert [resumed.shard_path(i).read_bytes() for i in range(resumed.n_shards)] == reference


def test_store_rows_equal_unsharded_features(tiny_model_dir, tmp_path):
    data = samples(7, seed=1)
    f = featurizer(tiny_model_dir)
    store = f.featurize_to_store(data, tmp_path / "s")
    direct = np.concatenate([f.featurize(data[i : i + 4]) for i in range(0, 7, 4)])
    np.testing.assert_array_equal(store.load(), direct)
    assert store.ids == [s.id for s in data] and store.load().shape == (7, 64)


def test_mismatched_manifest_is_refused_with_the_field(tiny_model_dir, tmp_path):
    data = samples(5)
    featurizer(tiny_model_dir).featurize_to_store(data, tmp_path / "s")
    with pytest.raises(ArtifactMismatchError, match=r"config\.projector\.dim: stored 64, requested 32"):
        featurizer(tiny_model_dir, proj_dim=32).featurize_to_store(data, tmp_path / "s")
    with pytest.raises(ArtifactMismatchError, match="data_fingerprint"):
        featurizer(tiny_model_dir).featurize_to_store(samples(5, seed=9), tmp_path / "s")
    store = featurizer(tiny_model_dir, proj_dim=32).featurize_to_store(data, tmp_path / "s", overwrite=True)
    assert store.dim == 32 and store.complete


def test_non_finite_gradient_names_the_sample(tiny_model_dir):
    f = featurizer(tiny_model_dir)
    with torch.no_grad():
        next(p for n, p in f.model.named_parameters() if "lora_B" in n).fill_(float("nan"))
    with pytest.raises(NonFiniteGradientError, match="p0"):
        f.featurize(samples(2))


def test_influence_is_blocked_cosine(tmp_path):
    rng = np.random.default_rng(0)
    pool, queries = rng.normal(size=(10, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    stores = []
    for name, x in (("pool", pool), ("queries", queries)):
        s = FeatureStore.create_or_resume(
            tmp_path / name, {"k": 1}, [f"{name}{i}" for i in range(len(x))], 8, shard_size=3
        )
        for i in range(s.n_shards):
            s.write_shard(i, x[s.shard_rows(i).start : s.shard_rows(i).stop])
        stores.append(s)
    got = cosine_matrix(*stores)
    expected = (pool / np.linalg.norm(pool, axis=1, keepdims=True)) @ (
        queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    idx, val = top_k(got, 3, axis=0)
    assert idx.shape == (5, 3) and np.all(val[:, 0] == got.max(axis=0))
    np.testing.assert_allclose(aggregate(got, "mean"), got.mean(axis=1))
    with pytest.raises(InflucoderError):
        aggregate(got, "median")


def test_label_writes_a_self_contained_directory(tiny_model_dir, tmp_path):
    pool, queries = samples(6), samples(3, seed=5, prefix="q")
    matrix = label(pool, queries, tmp_path / "labels", settings(model=str(tiny_model_dir)), progress=False)
    again, pool2, queries2, info = load_labels(tmp_path / "labels")
    np.testing.assert_array_equal(np.asarray(again.scores), matrix.scores)
    assert [s.id for s in pool2] == [s.id for s in pool] and info["n_queries"] == 3
    assert np.all(np.abs(matrix.scores) <= 1 + 1e-5)


def test_label_cli_end_to_end(tiny_model_dir, tmp_path, capsys):
    pool_file, query_file = tmp_path / "pool.jsonl", tmp_path / "queries.jsonl"
    for path, data in ((pool_file, samples(5)), (query_file, samples(2, seed=3, prefix="q"))):
        path.write_text(
            "".join(json.dumps({"id": s.id, "prompt": s.prompt, "response": s.response}) + "\n" for s in data)
        )
    out = tmp_path / "out"
    args = [
        "label",
        "--pool",
        str(pool_file),
        "--queries",
        str(query_file),
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--rank",
        "2",
        "--proj-dim",
        "16",
        "--max-length",
        "24",
        "--quiet",
    ]
    assert main(args) == 0
    matrix = InfluenceMatrix.load(out / "influence")
    assert matrix.scores.shape == (5, 2) and matrix.pool_ids == [f"p{i}" for i in range(5)]
    assert load_file(out / "queries.jsonl")[0].id == "q0"
    assert main(args) == 0  # a rerun resumes: nothing left to do, same result
    np.testing.assert_array_equal(InfluenceMatrix.load(out / "influence").scores, matrix.scores)
    assert main([*args[:-5], "--proj-dim", "8", "--max-length", "24", "--quiet"]) == 2
    assert "requested 8" in capsys.readouterr().err
    query_file.write_text('{"prompt": "x"}\n')
    assert main(args) == 2
    assert f"{query_file}:1: missing response field" in capsys.readouterr().err


def test_projection_fidelity_improves_with_dim(tiny_model_dir, tmp_path, capsys):
    from influcoder.labels.fidelity import projection_fidelity

    f = featurizer(tiny_model_dir)
    rows = projection_fidelity(samples(12), f.settings, [8, 4096], progress=False, featurizer=f)
    small, large = rows
    assert small["in_dim"] == f.in_dim and large["dim"] == 4096
    assert large["spearman"] > small["spearman"] and large["spearman"] > 0.95
    assert large["max_abs_error"] < small["max_abs_error"]
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(samples(1)[0].to_record()) + "\n")
    assert main(["fidelity", "--data", str(one), "--model", str(tiny_model_dir), "--quiet"]) == 2
    assert "a fidelity check needs at least 3 samples" in capsys.readouterr().err


def test_merged_parts_equal_one_run_and_mismatches_are_refused(tiny_model_dir, tmp_path, capsys):
    """Labelling a pool in two parts and merging gives the matrix and store of labelling it at once
    (to float tolerance: shard boundaries change batch padding), and bad merges are refused by name."""
    pool, queries = samples(11), samples(3, seed=5, prefix="q")
    s = settings(model=str(tiny_model_dir))
    whole = label(pool, queries, tmp_path / "whole", s, progress=False)
    label(pool[:6], queries, tmp_path / "a", s, progress=False)
    label(pool[6:], queries, tmp_path / "b", s, progress=False)
    assert main(["merge-labels", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    merged, pool2, queries2, info = load_labels(tmp_path / "ab")
    assert merged.pool_ids == [x.id for x in pool] and [x.id for x in queries2] == [x.id for x in queries]
    np.testing.assert_allclose(np.asarray(merged.scores), whole.scores, atol=1e-5)
    np.testing.assert_allclose(
        FeatureStore(tmp_path / "ab" / "pool").load(), FeatureStore(tmp_path / "whole" / "pool").load(), atol=1e-5
    )
    assert info["n_pool"] == 11 and len(info["merged_from"]) == 2
    fingerprint_of = lambda d: FeatureStore(tmp_path / d / "pool").manifest["config"]["data_fingerprint"]  # noqa: E731
    assert fingerprint_of("ab") == fingerprint_of("whole") != fingerprint_of("a")  # the merged pool's, not part 1's

    label(pool[:2], queries[:2], tmp_path / "other-queries", s, progress=False)
    label(pool[8:], queries, tmp_path / "other-dim", settings(model=str(tiny_model_dir), proj_dim=32), progress=False)
    for part, message in (
        ("other-queries", "other queries"),
        ("other-dim", "other feature settings"),
        ("a", "more than one"),
    ):
        code = main(["merge-labels", str(tmp_path / "a"), str(tmp_path / part), "--out", str(tmp_path / "bad")])
        assert code == 2 and message in capsys.readouterr().err


def test_concurrent_manifest_writes_do_not_collide(tmp_path, monkeypatch):
    """Two Ray workers that finish a store's last shards together both rewrite its manifest. Reproduce that
    interleaving deterministically: a second write lands between the first one's tmp write and its rename."""
    import influcoder.core.atomic as atomic_module
    import influcoder.core.store as store_module

    path = tmp_path / "manifest.json"
    real_replace = os.replace
    calls = {"n": 0}

    def interleaved(src, dst):
        calls["n"] += 1
        if calls["n"] == 1:
            store_module.write_json_atomic(path, {"writer": 2})
        real_replace(src, dst)

    monkeypatch.setattr(atomic_module.os, "replace", interleaved)
    store_module.write_json_atomic(path, {"writer": 1})
    assert json.loads(path.read_text()) == {"writer": 1} and calls["n"] == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_the_attention_setting_reaches_the_decoder_and_keeps_the_features(tiny_model_dir):
    eager = GradientFeaturizer(settings(model=str(tiny_model_dir)))
    sdpa = GradientFeaturizer(settings(model=str(tiny_model_dir), attention="sdpa"))
    assert sdpa.model.config._attn_implementation == "sdpa" != eager.model.config._attn_implementation
    pool = samples(7)
    np.testing.assert_allclose(sdpa.featurize(pool), eager.featurize(pool), rtol=1e-4, atol=1e-6)


def test_all_pairs_computes_each_gradient_once_and_equals_the_two_sided_run(tiny_model_dir, tmp_path, monkeypatch):
    """The same samples as pool and queries give the N x N matrix from one gradient pass; it equals a run
    whose queries are copies under other ids (both sides computed), and no query store is written."""
    pool = samples(7, seed=4)
    copies = [Sample(f"copy-{s.id}", s.prompt, s.response) for s in pool]
    s = settings(model=str(tiny_model_dir))
    passes = []
    real = GradientFeaturizer.featurize_to_store
    monkeypatch.setattr(
        GradientFeaturizer, "featurize_to_store", lambda self, items, *a, **k: passes.append(len(items)) or real(
            self, items, *a, **k)
    )  # fmt: skip
    square = label(pool, pool, tmp_path / "all", s, progress=False)
    assert passes == [7] and not (tmp_path / "all" / "queries").exists()
    two_sided = label(pool, copies, tmp_path / "two", s, progress=False)
    assert passes == [7, 7, 7]
    np.testing.assert_allclose(np.asarray(square.scores), np.asarray(two_sided.scores), atol=1e-5)
    np.testing.assert_allclose(np.diag(np.asarray(square.scores)), 1.0, atol=1e-5)
    info = json.loads((tmp_path / "all" / "labels.json").read_text())
    assert info["all_pairs"] is True and info["n_queries"] == 7
    assert load_labels(tmp_path / "all")[2] == pool
