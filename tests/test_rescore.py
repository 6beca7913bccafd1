"""Retrieve, then rescore: the encoder's top-K re-ranked by exact gradient cosine equals brute force over the
same candidates, and over the whole pool when K covers it."""

from __future__ import annotations

import numpy as np
import pytest

from influcoder.attribution.influcoder import Influcoder
from influcoder.core.errors import InflucoderError
from influcoder.data.models import load_decoder
from influcoder.encoder.model import InfluenceEncoder
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings

from .test_labels import samples


@pytest.fixture
def indexed(tiny_model_dir, tiny_bert_dir, tmp_path):
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24)
    model, tokenizer = load_decoder(settings.model)
    config = GradientFeaturizer(settings, model, tokenizer).config()
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24, label_config=config)
    ic = Influcoder(encoder, device="cpu")
    pool = samples(12)
    ic.index(pool, tmp_path / "idx", progress=False)
    exact = GradientFeaturizer(LabelSettings.from_features(config, "cpu"), *load_decoder(settings.model))
    return ic, pool, exact


def test_rescoring_the_whole_pool_is_the_exact_top_k(indexed):
    ic, pool, exact = indexed
    queries = samples(3, seed=4, prefix="q")
    truth = normalize_rows(exact.featurize(pool)) @ normalize_rows(exact.featurize(queries)).T
    rescored = ic.rescore(queries, k=4, candidates=len(pool))
    encoder_scores = {(h.query_id, h.sample.id): h.score for hits in ic.attribute(queries, k=12) for h in hits}
    for j, hits in enumerate(rescored):
        want = np.argsort(-truth[:, j], kind="stable")[:4]
        assert [h.sample.id for h in hits] == [pool[i].id for i in want]
        assert [h.rank for h in hits] == [1, 2, 3, 4]
        np.testing.assert_allclose([h.score for h in hits], truth[want, j], atol=1e-5)
        for h in hits:  # the encoder's own score is kept beside the exact one
            assert h.encoder_score == pytest.approx(encoder_scores[(queries[j].id, h.sample.id)], abs=1e-6)


def test_rescoring_k_candidates_reorders_exactly_those(indexed):
    ic, pool, exact = indexed
    queries = samples(2, seed=9, prefix="q")
    candidates = ic.attribute(queries, k=5)
    rescored = ic.rescore(queries, k=3, candidates=5, rounds=1)
    by_id = {s.id: s for s in pool}
    query_unit = normalize_rows(exact.featurize(queries))
    for j, (found, hits) in enumerate(zip(candidates, rescored)):
        ids = [h.sample.id for h in found]
        scores = normalize_rows(exact.featurize([by_id[i] for i in ids])) @ query_unit[j]
        assert [h.sample.id for h in hits] == [ids[i] for i in np.argsort(-scores, kind="stable")[:3]]
        assert {h.sample.id for h in hits} <= set(ids)


def test_two_rounds_add_the_samples_nearest_the_best_exact_hit(indexed):
    """Round one: the encoder's top 4 of 6; round two: the 2 rows of highest cosine (in the stored vectors)
    with the best exact hit of round one, round-one rows left out; the answer: the exact top 3 of those 6."""
    ic, pool, exact = indexed
    queries = samples(3, seed=5, prefix="q")
    first = ic.attribute(queries, k=4)
    vectors = ic.query_vectors(queries)
    stored = ic.index_.embeddings()
    unit = normalize_rows(stored)
    query_unit = normalize_rows(exact.featurize(queries))
    pool_unit = normalize_rows(exact.featurize(pool))
    row_of = {s.id: i for i, s in enumerate(pool)}
    rescored = ic.rescore(queries, k=3, candidates=6, rounds=2)
    for j, hits in enumerate(rescored):
        rows1 = [row_of[h.sample.id] for h in first[j]]
        best = rows1[int(np.argmax(pool_unit[rows1] @ query_unit[j]))]
        near = [int(r) for r in np.argsort(-(unit @ unit[best]), kind="stable") if r not in rows1][:2]
        union = rows1 + near
        want = [union[i] for i in np.argsort(-(pool_unit[union] @ query_unit[j]), kind="stable")[:3]]
        assert [h.sample.id for h in hits] == [pool[i].id for i in want]
        np.testing.assert_allclose([h.score for h in hits], pool_unit[want] @ query_unit[j], atol=1e-5)
        for h in hits:  # a second-round hit carries the encoder's score of its row too
            assert h.row == row_of[h.sample.id]
            assert h.encoder_score == pytest.approx(float(stored[h.row] @ vectors[j]), abs=1e-5)


def test_rescoring_differentiates_each_query_and_candidate_once(indexed, monkeypatch):
    ic, pool, _ = indexed
    featurizer = ic.exact_featurizer()
    seen: list[int] = []
    original = featurizer.tokenize
    monkeypatch.setattr(featurizer, "tokenize", lambda items: seen.append(len(items)) or original(items))
    queries = samples(2, seed=6, prefix="q")
    ic.rescore(queries, k=2, candidates=9, rounds=2)
    assert seen[0] == 2  # the queries, once
    assert sum(seen[1:]) <= 2 * 9 and len(seen) == 3  # candidates of both queries, each sample once per call
    assert sum(seen[1:]) == len({h.sample.id for hits in ic.attribute(queries, k=6) for h in hits}) + seen[2]


def test_rescoring_refuses_an_unknown_number_of_rounds(indexed):
    ic, _, _ = indexed
    with pytest.raises(InflucoderError, match="1 or 2 rounds, got 3"):
        ic.rescore(samples(1, seed=2, prefix="q"), k=2, candidates=4, rounds=3)


def test_nearest_rows_match_brute_force_across_blocks():
    from influcoder.attribution.rescore import nearest_rows

    rng = np.random.default_rng(0)
    stored = rng.normal(size=(50, 6)).astype(np.float32)
    stored[7] = stored[3] * 2.0  # a tie in cosine: the lower row comes first
    seeds = stored[[3, 10]]
    exclude = [{3, 1, 2}, set()]
    rows, vectors = nearest_rows([stored[:17], stored[17:40], stored[40:]], seeds, exclude, 5, width=4)
    unit = stored[:, :4] / np.linalg.norm(stored[:, :4], axis=1, keepdims=True)
    for j, seed in enumerate(seeds):
        cos = unit @ (seed[:4] / np.linalg.norm(seed[:4]))
        want = [int(r) for r in np.lexsort((np.arange(50), -cos)) if r not in exclude[j]][:5]
        assert rows[j].tolist() == want
        np.testing.assert_array_equal(vectors[j], stored[want])
    assert rows[0][0] == 7  # the excluded seed's own row is skipped, its scaled copy kept


def test_rows_embeddings_reads_any_rows_in_order(indexed):
    ic, _, _ = indexed
    stored = ic.index_.embeddings()
    np.testing.assert_array_equal(ic.index_.rows_embeddings([5, 0, 5, 11]), stored[[5, 0, 5, 11]])
    with pytest.raises(InflucoderError, match="row out of range for an index of 12 rows"):
        ic.index_.rows_embeddings([12])


def test_rescoring_refuses_fewer_candidates_than_k(indexed):
    ic, _, _ = indexed
    with pytest.raises(InflucoderError, match="at least k candidates, got 2 for k = 3"):
        ic.rescore(samples(1, seed=2, prefix="q"), k=3, candidates=2)


def test_attribute_rescore_writes_the_exact_top_k_with_the_encoder_score(indexed, tmp_path, capsys):
    import json

    from influcoder.cli.main import main

    ic, pool, exact = indexed
    ic.encoder.save_pretrained(tmp_path / "enc")
    pool_file, query_file = tmp_path / "pool.jsonl", tmp_path / "queries.jsonl"
    queries = samples(2, seed=4, prefix="q")
    for path, items in ((pool_file, pool), (query_file, queries)):
        path.write_text("".join(json.dumps(s.to_record()) + "\n" for s in items), encoding="utf-8")
    index = ["index", "--encoder", str(tmp_path / "enc"), "--pool", str(pool_file), "--out", str(tmp_path / "cli")]
    assert main([*index, "--quiet"]) == 0
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["scoring"] == {"objective": "cosine", "query_side": "encoded"}  # no subspace beside it
    out = tmp_path / "hits.jsonl"
    argv = ["attribute", "--index", str(tmp_path / "cli"), "--queries", str(query_file), "-k", "3", "--quiet",
            "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--rescore", "12", "--rescore-rounds", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    truth = normalize_rows(exact.featurize(pool)) @ normalize_rows(exact.featurize(queries)).T
    for j, query in enumerate(queries):
        mine = [r for r in rows if r["query_id"] == query.id]
        assert [r["pool_id"] for r in mine] == [pool[i].id for i in np.argsort(-truth[:, j], kind="stable")[:3]]
        assert all("encoder_score" in r for r in mine)
    assert main([*argv, "--rescore", "2", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "at least k candidates, got 2 for k = 3" in capsys.readouterr().err
