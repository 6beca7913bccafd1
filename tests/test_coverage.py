"""The out-of-coverage flag: scores near the labelled data are high, far ones low; the threshold is the
validation quantile; distill writes the reference, index scores every row, attribute reports both."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder.cli.main import main
from influcoder.encoder.coverage import CoverageReference, build_reference, query_spread
from influcoder.encoder.model import InfluenceEncoder
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples


def test_coverage_is_the_mean_cosine_to_the_k_nearest_labelled_samples_and_ranks_near_above_far(tmp_path):
    rng = np.random.default_rng(0)
    direction = np.eye(8)[0]
    labelled = direction + 0.2 * rng.normal(size=(50, 8))
    reference = CoverageReference(labelled / np.linalg.norm(labelled, axis=1, keepdims=True), 5, 0.5, 0.05)
    near = direction + 0.2 * rng.normal(size=(20, 8))
    far = -direction + 0.2 * rng.normal(size=(20, 8))
    near_scores, far_scores = reference.score(near), reference.score(far)
    assert near_scores.min() > far_scores.max()
    unit = near[0] / np.linalg.norm(near[0])
    expected = np.sort(reference.embeddings @ unit)[-5:].mean()
    np.testing.assert_allclose(near_scores[0], expected, rtol=1e-6)
    assert reference.covered(near_scores).all() and not reference.covered(far_scores).any()
    reference.save(tmp_path)
    again = CoverageReference.load(tmp_path)
    assert again.k == 5 and again.threshold == 0.5
    np.testing.assert_allclose(again.score(near), near_scores, atol=2e-3)  # float16 on disk
    assert CoverageReference.load(tmp_path / "nothing") is None


def test_coverage_scores_in_blocks_bounded_by_the_reference_size():
    """Memory bound: any block size gives the same scores (to float32 rounding: BLAS sums a block's products in
    its own order), down to one row per block."""
    rng = np.random.default_rng(1)
    labelled = rng.normal(size=(300, 16))
    reference = CoverageReference(labelled / np.linalg.norm(labelled, axis=1, keepdims=True), 7, 0.0, 0.05)
    rows = rng.normal(size=(57, 16))
    whole = reference.score(rows, block_entries=10**9)
    for entries in (1, 299, 300, 301, 5 * 300 + 17):
        np.testing.assert_allclose(reference.score(rows, block_entries=entries), whole, rtol=0, atol=1e-6)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    expected = np.sort(unit @ reference.embeddings.T, axis=1)[:, -7:].mean(axis=1)
    np.testing.assert_allclose(whole, expected, rtol=1e-5)


def test_threshold_is_the_validation_quantile_and_training_texts_score_above_foreign_ones(tiny_bert_dir):
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24)
    train, validation = samples(30), samples(12, seed=4)
    reference = build_reference(encoder, train, validation, k=3, quantile=0.25)
    validation_scores = reference.score(encoder.encode(validation))
    np.testing.assert_allclose(reference.threshold, np.quantile(validation_scores, 0.25), atol=2e-3)
    own = reference.score(encoder.encode(train)).mean()
    foreign = [f"{chr(0x4E00 + i)}{chr(0x4E80 + 2 * i)} 9{i}9 ~~ {chr(0x0600 + i)}" for i in range(12)]
    assert own > reference.score(encoder.encode(foreign)).mean()


def test_build_reference_encodes_each_distinct_sample_once_and_uses_known_embeddings(tiny_bert_dir):
    """All-pairs labels put every training text on both sides and the validation texts in two lists: each is
    encoded once, and the reference equals the one built from each list encoded apart."""
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24)
    train, val_pool, val_queries = samples(20), samples(8, seed=4), samples(5, seed=5, prefix="q")
    encoded: list[str] = []

    class Counting:
        def encode(self, items):
            encoded.extend(x.id for x in items)
            return encoder.encode(items)

    args = (train + train, val_pool + val_queries)
    reference = build_reference(Counting(), *args, k=3, validation_pool=val_pool, validation_queries=val_queries)
    assert sorted(encoded) == sorted(x.id for x in train + val_pool + val_queries)
    apart = encoder.encode(train + train)
    np.testing.assert_allclose(reference.embeddings, apart.astype(np.float16), atol=1e-6)
    scores = CoverageReference(reference.embeddings, 3, 0.0, 0.05).score(encoder.encode(val_pool + val_queries))
    np.testing.assert_allclose(reference.threshold, np.quantile(scores, 0.05), atol=1e-5)
    spreads = query_spread(encoder.encode(val_queries), encoder.encode(val_pool))
    np.testing.assert_allclose(reference.spread_threshold, np.quantile(spreads, 0.05), atol=1e-5)
    encoded.clear()
    known = dict(zip(train, -apart[:20], strict=True))  # a caller's embeddings are taken as they are
    again = build_reference(Counting(), *args, k=3, validation_pool=val_pool, validation_queries=val_queries,
                            known=known)  # fmt: skip
    assert sorted(encoded) == sorted(x.id for x in val_pool + val_queries)
    np.testing.assert_allclose(again.embeddings[:20], -apart[:20].astype(np.float16), atol=1e-6)


def test_distill_index_attribute_carry_the_coverage_flag(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    pool, queries = samples(24), samples(10, seed=7, prefix="q")
    label(pool, queries, tmp_path / "labels", settings, progress=False)
    out = tmp_path / "enc"
    args = ["distill", "--labels", str(tmp_path / "labels"), "--out", str(out), "--encoder", str(tiny_bert_dir)]
    assert (
        main([*args, "--epochs", "1", "--max-length", "16", "--quiet", "--eval-pool", "4", "--eval-queries", "2"]) == 0
    )
    reference = CoverageReference.load(out)
    assert reference.spread_threshold is not None and reference.spread_threshold >= 0
    training = json.loads((out / "training.json").read_text())
    assert len(reference.embeddings) == len(training["train_pool_ids"]) + len(training["train_query_ids"])
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(s.to_record()) + "\n" for s in pool))
    idx = tmp_path / "idx"
    assert main(["index", "--encoder", str(out), "--pool", str(pool_file), "--out", str(idx), "--quiet"]) == 0
    assert "of the pool lies within what the encoder was distilled on" in capsys.readouterr().out
    manifest = json.loads((idx / "manifest.json").read_text())
    stored = np.load(idx / "coverage.npy")
    assert manifest["coverage"]["rows"] == 24 == len(stored)
    # row i of the stored scores is pool sample i's coverage (a misaligned or stale row fails here)
    encoded = InfluenceEncoder.from_pretrained(out).encode(pool)
    np.testing.assert_allclose(stored, reference.score(encoded), atol=1e-4)
    # the share is that of the stored scores at the reference's threshold (a share of other rows, or of a
    # different threshold, fails here; an edge value 0 or 1 alone does not prove it)
    assert manifest["coverage"]["share_covered"] == pytest.approx(float(reference.covered(stored).mean()), abs=1e-9)
    hits_file = tmp_path / "hits.jsonl"
    query_file = tmp_path / "q.jsonl"
    query_file.write_text("".join(json.dumps(s.to_record()) + "\n" for s in queries[:3]))
    assert (
        main(["attribute", "--index", str(idx), "--queries", str(query_file), "-k", "2", "--out", str(hits_file)]) == 0
    )
    hits = [json.loads(line) for line in hits_file.read_text().splitlines()]
    row = {s.id: i for i, s in enumerate(pool)}
    for hit in hits:
        assert abs(hit["coverage"] - stored[row[hit["pool_id"]]]) < 1e-4
        assert hit["covered"] == (stored[row[hit["pool_id"]]] >= reference.threshold)
        assert isinstance(hit["query_covered"], bool) and isinstance(hit["query_confident"], bool)
        assert hit["query_confident"] == (hit["query_spread"] >= reference.spread_threshold - 1e-4)
    err = capsys.readouterr().err
    assert "queries and" in err and "queries get scores that hardly differ" in err


def test_spread_is_the_deviation_of_a_querys_cosines_over_the_pool_and_old_references_load(tmp_path):
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(50, 8))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = np.vstack([pool[0], rng.normal(size=8)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_allclose(query_spread(queries, pool), (pool @ queries.T).std(axis=0), rtol=1e-5)
    flat = np.zeros((1, 8))  # orthogonal to... nothing: a zero query's cosines are all 0, no spread
    assert query_spread(flat, pool)[0] == 0 and np.isnan(query_spread(queries, pool[:1])).all()
    scales = np.array([[3.0], [0.01]])  # coordinates, not unit vectors: the spread is of the cosines still
    np.testing.assert_allclose(query_spread(queries * scales, pool * 7.0), query_spread(queries, pool), rtol=1e-5)
    reference = CoverageReference(pool, 5, 0.1, 0.05, spread_threshold=0.2)
    assert list(reference.confident(np.array([0.1, 0.3]))) == [False, True]
    reference.save(tmp_path)
    assert CoverageReference.load(tmp_path).spread_threshold == 0.2
    meta = json.dumps({"k": 5, "threshold": 0.1, "quantile": 0.05})  # as saved before spreads were calibrated
    (tmp_path / "coverage.npz.sha256").unlink()  # ... and before files carried checksum records
    np.savez(tmp_path / "coverage.npz", embeddings=pool.astype(np.float16), meta=np.array(meta))
    old = CoverageReference.load(tmp_path)
    assert old.spread_threshold is None and old.confident(np.zeros(3)).all()
