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
    rescored = ic.rescore(queries, k=3, candidates=5)
    by_id = {s.id: s for s in pool}
    query_unit = normalize_rows(exact.featurize(queries))
    for j, (found, hits) in enumerate(zip(candidates, rescored)):
        ids = [h.sample.id for h in found]
        scores = normalize_rows(exact.featurize([by_id[i] for i in ids])) @ query_unit[j]
        assert [h.sample.id for h in hits] == [ids[i] for i in np.argsort(-scores, kind="stable")[:3]]
        assert {h.sample.id for h in hits} <= set(ids)


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
    assert main([*argv, "--rescore", "12", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    truth = normalize_rows(exact.featurize(pool)) @ normalize_rows(exact.featurize(queries)).T
    for j, query in enumerate(queries):
        mine = [r for r in rows if r["query_id"] == query.id]
        assert [r["pool_id"] for r in mine] == [pool[i].id for i in np.argsort(-truth[:, j], kind="stable")[:3]]
        assert all("encoder_score" in r for r in mine)
    assert main([*argv, "--rescore", "2", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "at least k candidates, got 2 for k = 3" in capsys.readouterr().err
