"""Index, attribute, filter and audit on a tiny encoder: FAISS answers equal brute force, append equals a
fresh build, filtering loses no sample, and the CLI writes what it says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder import Influcoder
from influcoder.attribution.index import EmbeddingIndex
from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.data.formats import load_file
from influcoder.encoder.model import InfluenceEncoder

from .test_labels import samples


@pytest.fixture(scope="module")
def encoder_dir(tiny_bert_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("encoder")
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=16, max_length=24).save_pretrained(directory)
    return directory


def brute_force_top_k(index: EmbeddingIndex, queries: np.ndarray, k: int) -> np.ndarray:
    scores = index.embeddings() @ queries.T
    return np.argsort(-scores, axis=0, kind="stable")[:k].T


def test_attribute_equals_brute_force_cosine(encoder_dir, tmp_path):
    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(50), samples(5, seed=3, prefix="q")
    index = ic.index(pool, tmp_path / "idx", shard_size=16, progress=False)
    assert len(index) == 50 and index.manifest["dtype"] == "float16"
    hits = ic.attribute(queries, k=7)
    expected = brute_force_top_k(index, ic.encoder.encode(queries), 7)
    for j, per_query in enumerate(hits):
        got = [a.sample.id for a in per_query]
        assert got == [pool[i].id for i in expected[j]]
        assert all(a.score >= b.score for a, b in zip(per_query, per_query[1:]))


def test_append_equals_building_from_scratch(encoder_dir, tmp_path):
    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(40), samples(4, seed=3, prefix="q")
    whole = ic.index(pool, tmp_path / "whole", progress=False)
    whole_hits = [[a.sample.id for a in h] for h in ic.attribute(queries, k=5)]
    ic.index(pool[:25], tmp_path / "grown", progress=False)
    grown = ic.index(pool[25:], tmp_path / "grown", append=True, progress=False)
    assert grown.ids() == whole.ids() and len(grown.manifest["segments"]) == 2
    np.testing.assert_array_equal(grown.embeddings(), whole.embeddings())
    assert [[a.sample.id for a in h] for h in ic.attribute(queries, k=5)] == whole_hits
    with pytest.raises(InflucoderError, match="already in"):
        ic.index(pool[:3], tmp_path / "grown", append=True, progress=False)
    with pytest.raises(InflucoderError, match="set `append` to add to it or `overwrite`"):
        ic.index(pool, tmp_path / "grown", progress=False)


def test_ivf_with_all_lists_probed_equals_flat(encoder_dir, tmp_path):
    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(200, seed=11), samples(3, seed=12, prefix="q")
    flat = EmbeddingIndex.build(ic.encoder, pool, tmp_path / "flat", dtype="float32", progress=False)
    ivf = EmbeddingIndex.build(
        ic.encoder, pool, tmp_path / "ivf", dtype="float32", index_factory="IVF4,Flat", progress=False
    )
    q = ic.encoder.encode(queries)
    f_scores, _ = flat.search(q, 5)
    i_scores, _ = ivf.search(q, 5, nprobe=4)
    np.testing.assert_allclose(i_scores, f_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", ["Flat", "SQfp16", "IVF4,Flat"])
def test_searches_read_the_faiss_index_memory_mapped_with_a_loaded_indexs_answers(encoder_dir, tmp_path, factory):
    """Readers map index.faiss instead of copying it into memory (attribute's memory stays flat in the pool);
    the answers are those of the index loaded whole."""
    import faiss

    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(120, seed=11), samples(4, seed=12, prefix="q")
    index = EmbeddingIndex.build(ic.encoder, pool, tmp_path / "idx", index_factory=factory, progress=False)
    q = ic.encoder.encode(queries)
    loaded = faiss.read_index(str(tmp_path / "idx" / "index.faiss"))
    if factory.startswith("IVF"):
        faiss.ParameterSpace().set_index_parameter(loaded, "nprobe", 4)
    expected = loaded.search(q, 6)
    got = index.search(q, 6, nprobe=4 if factory.startswith("IVF") else None)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])
    if not factory.startswith("IVF"):  # flat codes: a view of the mapped file, not a copy
        assert loaded.codes.is_owned and not index.faiss_index.codes.is_owned


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_filter_splits_the_pool_exactly(encoder_dir, tmp_path, aggregate):
    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(30), samples(4, seed=3, prefix="q")
    ic.index(pool, tmp_path / "idx", progress=False)
    result = ic.filter(queries, drop_fraction=0.2, aggregate=aggregate)
    kept, dropped = {s.id for s in result.kept}, {s.id for s in result.dropped}
    assert len(dropped) == 6 and kept.isdisjoint(dropped) and kept | dropped == {s.id for s in pool}
    emb_pool, emb_q = ic.encoder.encode(pool), ic.encoder.encode(queries)
    reference = (emb_pool @ emb_q.T).mean(1) if aggregate == "mean" else (emb_pool @ emb_q.T).max(1)
    np.testing.assert_allclose(result.scores, reference, atol=2e-3)  # float16 storage
    assert min(result.scores[[s.id in dropped for s in pool]]) >= max(result.scores[[s.id in kept for s in pool]])
    assert len(ic.filter(queries, drop_top=4).dropped) == 4
    with pytest.raises(InflucoderError):
        ic.filter(queries, drop_fraction=0.1, drop_top=3)


def test_index_attribute_filter_cli(encoder_dir, tmp_path, capsys):
    pool_file, query_file = tmp_path / "pool.jsonl", tmp_path / "q.jsonl"
    pool_file.write_text(
        "".join(json.dumps({**s.to_record(), "label": i % 2}) + "\n" for i, s in enumerate(samples(20)))
    )
    query_file.write_text("".join(json.dumps(s.to_record()) + "\n" for s in samples(3, seed=5, prefix="q")))
    idx = tmp_path / "idx"
    assert main(["index", "--encoder", str(encoder_dir), "--pool", str(pool_file), "--out", str(idx), "--quiet"]) == 0
    assert "20 samples" in capsys.readouterr().out
    assert (
        main(
            [
                "attribute",
                "--index",
                str(idx),
                "--queries",
                str(query_file),
                "-k",
                "3",
                "--out",
                str(tmp_path / "hits.jsonl"),
            ]
        )
        == 0
    )
    hits = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert len(hits) == 9 and [h["rank"] for h in hits[:3]] == [1, 2, 3]
    assert main(["attribute", "--index", str(idx), "--queries", str(query_file), "-k", "2", "--format", "table"]) == 0
    assert "query q0" in capsys.readouterr().out
    assert (
        main(
            [
                "filter",
                "--index",
                str(idx),
                "--queries",
                str(query_file),
                "--drop-top",
                "5",
                "--kept",
                str(tmp_path / "kept.csv"),
                "--dropped",
                str(tmp_path / "dropped.csv"),
            ]
        )
        == 0
    )
    kept, dropped = load_file(tmp_path / "kept.csv"), load_file(tmp_path / "dropped.csv")
    assert len(kept) == 15 and len(dropped) == 5 and "label" in kept[0].meta
    scores = [json.loads(x) for x in (tmp_path / "kept.scores.jsonl").read_text().splitlines()]
    assert sum(s["dropped"] for s in scores) == 5 and len(scores) == 20
    assert (
        main(
            [
                "filter",
                "--index",
                str(idx),
                "--queries",
                str(query_file),
                "--drop-top",
                "5",
                "--kept",
                str(tmp_path / "kept.txt"),
                "--dropped",
                str(tmp_path / "d.csv"),
            ]
        )
        == 2
    )
    assert "unknown file type" in capsys.readouterr().err


def test_audit_recomputes_exact_influence(tiny_model_dir, tiny_bert_dir, tmp_path):
    from influcoder.attribution.audit import audit_attribution, choose_audit_rows, label_settings_from_config
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24)
    from influcoder.data.models import load_decoder

    model, tok = load_decoder(settings.model)
    config = GradientFeaturizer(settings, model, tok).config()
    assert label_settings_from_config(config) == LabelSettings(
        **{**settings.__dict__, "alpha": 4.0, "chat_template": False}
    )
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24, label_config=config)
    ic = Influcoder(encoder)
    ic.index(samples(12), tmp_path / "idx", progress=False)
    queries = samples(3, seed=4, prefix="q")
    results = ic.attribute(queries, k=2)
    # the audit's figure is Spearman(encoder cosines, exact gradient cosines) on the audited rows, recomputed here
    from influcoder.labels.influence import normalize_rows
    from influcoder.metrics import spearman_report

    exact = GradientFeaturizer(label_settings_from_config(config), *load_decoder(settings.model))
    pool = ic.index_.samples()
    truth = normalize_rows(exact.featurize(pool)) @ normalize_rows(exact.featurize(queries)).T
    predicted = encoder.encode(pool) @ encoder.encode(queries).T
    whole = audit_attribution(ic, queries, results, n=12, progress=False)
    assert whole["per_anchor_mean"] == pytest.approx(spearman_report(predicted, truth).per_anchor_mean, abs=1e-9)
    # on a subset: every returned hit plus random rows (the same draw as the audit's), on exactly those rows
    report = audit_attribution(ic, queries, results, n=8, progress=False)
    row_of = {sample_id: i for i, sample_id in enumerate(pool.ids)}
    hits = [row_of[a.sample.id] for per_query in results for a in per_query]
    rows = choose_audit_rows(12, hits, 8, seed=0)
    assert report["n_pool"] == 8 == len(rows) and report["n_queries"] == 3 and set(hits) <= set(rows.tolist())
    subset = spearman_report(predicted[rows], truth[rows])
    assert report["per_anchor_mean"] == pytest.approx(subset.per_anchor_mean, abs=1e-9)
    assert report["per_anchor_mean"] != pytest.approx(whole["per_anchor_mean"], abs=1e-6)  # the subset was scored
    rows = choose_audit_rows(12, [5, 5, 1], 4, seed=0)
    assert len(rows) == 4 and {1, 5} <= set(rows.tolist())
    preferred = choose_audit_rows(100, [5, 1], 6, seed=0, prefer=[40, 41, 42, 43, 44, 45, 46])
    assert {1, 5} <= set(preferred.tolist()) and set(preferred.tolist()) - {1, 5} <= set(range(40, 47))
    assert len(choose_audit_rows(100, [5], 4, seed=0, prefer=[7])) == 4  # preferred first, then random


def test_interrupted_index_build_and_faiss_resume(encoder_dir, tmp_path, monkeypatch):
    from influcoder.core.store import FeatureStore

    ic = Influcoder.from_pretrained(encoder_dir)
    pool = samples(20)
    reference = ic.index(pool, tmp_path / "ref", shard_size=6, progress=False)

    original = FeatureStore.write_shard
    calls = {"n": 0}

    def crash_on_second(self, index, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        original(self, index, rows)

    monkeypatch.setattr(FeatureStore, "write_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ic.index(pool, tmp_path / "idx", shard_size=6, progress=False)
    monkeypatch.setattr(FeatureStore, "write_shard", original)
    with pytest.raises(InflucoderError, match="data_fingerprint"):  # same ids, other texts
        ic.index(samples(20, seed=5), tmp_path / "idx", shard_size=6, progress=False)
    with pytest.raises(InflucoderError, match="interrupted build of other samples"):
        ic.index(samples(21), tmp_path / "idx", shard_size=6, progress=False)
    resumed = ic.index(pool, tmp_path / "idx", shard_size=6, progress=False)
    np.testing.assert_array_equal(resumed.embeddings(), reference.embeddings())
    assert resumed.faiss_index.ntotal == 20

    (tmp_path / "idx" / "index.faiss").unlink()  # a crash after encoding, before FAISS was written
    again = ic.index(pool, tmp_path / "idx", shard_size=6, progress=False)
    assert again.faiss_index.ntotal == 20
    with pytest.raises(InflucoderError, match="already holds an index"):  # finished, but other texts
        ic.index(samples(20, seed=5), tmp_path / "idx", shard_size=6, progress=False)


def test_overwrite_replaces_only_an_index(encoder_dir, tmp_path, caplog):
    """--overwrite once deleted whatever directory --out named; now only an influcoder index (or nothing)."""
    ic = Influcoder.from_pretrained(encoder_dir)
    pool = samples(6)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "results.md").write_text("months of work\n")
    with pytest.raises(InflucoderError, match="not an influcoder index"):
        ic.index(pool, notes, overwrite=True, progress=False)
    assert (notes / "results.md").read_text() == "months of work\n"
    assert not (notes / ".influcoder.lock").exists()  # no lock left where writing was refused
    ic.index(pool[:3], tmp_path / "idx", progress=False)
    (tmp_path / "idx" / "notes.txt").write_text("mine\n")  # a user's file inside a real index
    (tmp_path / "idx" / "segment-00000" / "extra.md").write_text("inside a segment: the index's own\n")
    with caplog.at_level("WARNING"):
        replaced = ic.index(pool, tmp_path / "idx", overwrite=True, progress=False)
    assert replaced.ids() == [s.id for s in pool]
    assert (tmp_path / "idx" / "notes.txt").read_text() == "mine\n" and "notes.txt" in caplog.text
    assert not (tmp_path / "idx" / "segment-00000" / "extra.md").exists()
    (tmp_path / "empty").mkdir()
    assert len(ic.index(pool, tmp_path / "empty", overwrite=True, progress=False)) == 6


def test_rerunning_index_with_other_options_is_refused(encoder_dir, tmp_path):
    """A rerun with another dtype, FAISS factory or shard size used to answer 'done' and keep the old index."""
    from influcoder.core.errors import ArtifactMismatchError

    ic = Influcoder.from_pretrained(encoder_dir)
    pool = samples(8)
    ic.index(pool, tmp_path / "idx", shard_size=4, progress=False)
    assert len(ic.index(pool, tmp_path / "idx", shard_size=4, progress=False)) == 8  # same options: resumes
    for options, field in (({"dtype": "float32"}, "dtype"), ({"index_factory": "IVF2,Flat"}, "index_factory")):
        with pytest.raises(ArtifactMismatchError, match=field):
            ic.index(pool, tmp_path / "idx", shard_size=4, progress=False, **options)
    with pytest.raises(ArtifactMismatchError, match="shard size 4"):
        ic.index(pool, tmp_path / "idx", shard_size=5, progress=False)


def test_a_kill_between_the_manifest_and_the_first_segment_resumes(encoder_dir, tmp_path, monkeypatch):
    """The gap after `index` writes a new index's manifest and before it registers a segment used to make the
    plain rerun refuse ("already holds an index; pass --append"): it now resumes the build."""
    ic = Influcoder.from_pretrained(encoder_dir)
    pool = samples(10)
    reference = ic.index(pool, tmp_path / "ref", shard_size=4, progress=False)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    real = EmbeddingIndex._encode_segment
    monkeypatch.setattr(EmbeddingIndex, "_encode_segment", killed)
    with pytest.raises(KeyboardInterrupt):
        ic.index(pool, tmp_path / "idx", shard_size=4, progress=False)
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["segments"] == []
    monkeypatch.setattr(EmbeddingIndex, "_encode_segment", real)
    resumed = ic.index(pool, tmp_path / "idx", shard_size=4, progress=False)
    assert resumed.ids() == reference.ids()
    np.testing.assert_array_equal(resumed.embeddings(), reference.embeddings())


def test_an_int8_index_embeds_its_queries_with_int8_and_refuses_a_float_append(encoder_dir, tmp_path):
    pool, queries = samples(30), samples(3, seed=3, prefix="q")
    int8 = InfluenceEncoder.from_pretrained(encoder_dir, backend="int8")
    EmbeddingIndex.build(int8, pool, tmp_path / "idx", progress=False, encoder_path=encoder_dir)
    ic = Influcoder.from_index(tmp_path / "idx")
    assert (
        ic.encoder.backend == "int8"
        and Influcoder.from_pretrained(encoder_dir, tmp_path / "idx").encoder.backend == "int8"
    )
    expected = brute_force_top_k(ic.index_, int8.encode(queries), 4)
    assert [[a.sample.id for a in h] for h in ic.attribute(queries, k=4)] == [[pool[i].id for i in e] for e in expected]
    with pytest.raises(InflucoderError, match="int8 encoder backend"):
        Influcoder.from_pretrained(encoder_dir).index(samples(3, prefix="new"), tmp_path / "idx", append=True)
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(s.to_record()) + "\n" for s in samples(6, seed=9, prefix="cli")))
    assert (
        main(
            [
                "index",
                "--encoder",
                str(encoder_dir),
                "--pool",
                str(pool_file),
                "--limit",
                "4",
                "--out",
                str(tmp_path / "cli"),
                "--backend",
                "int8",
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["encoder_backend"] == "int8"


def test_the_spread_sample_is_drawn_once_and_redrawn_after_an_append(encoder_dir, tmp_path, monkeypatch):
    """attribute measures each query's spread over a seeded sample of the index; drawing it reads every shard,
    so it is kept beside the index, named by the row count (an append draws it again)."""
    ic = Influcoder.from_pretrained(encoder_dir)
    pool, queries = samples(30), samples(3, seed=3, prefix="q")
    index = ic.index(pool[:20], tmp_path / "idx", shard_size=8, progress=False)
    first = index.sample_embeddings(n=8)
    assert first.shape == (8, ic.encoder.dim) and (tmp_path / "idx" / "spread-sample-20-8-0.npy").exists()
    monkeypatch.setattr(EmbeddingIndex, "iter_embeddings", lambda self: (_ for _ in ()).throw(AssertionError))
    np.testing.assert_array_equal(index.sample_embeddings(n=8), first)  # read back, no shard read
    monkeypatch.undo()
    grown = ic.index(pool[20:], tmp_path / "idx", append=True, progress=False)
    assert grown.sample_embeddings(n=8).shape == (8, ic.encoder.dim)
    assert (tmp_path / "idx" / "spread-sample-30-8-0.npy").exists()
    ic.attribute(queries, k=3)
    assert set(ic.query_spread) == {q.id for q in queries} and all(v > 0 for v in ic.query_spread.values())


def test_a_faiss_without_the_mapping_flag_reads_the_index_into_memory(encoder_dir, tmp_path, monkeypatch):
    """FAISS releases before the flag (>= 1.8 is allowed) still answer, from a loaded index."""
    import faiss

    from influcoder.attribution import index as index_module

    ic = Influcoder.from_pretrained(encoder_dir)
    built = EmbeddingIndex.build(ic.encoder, samples(30), tmp_path / "idx", progress=False)
    monkeypatch.delattr(faiss, "IO_FLAG_MMAP_IFC")
    loaded = index_module.read_mapped(faiss, tmp_path / "idx" / "index.faiss")
    assert loaded.ntotal == 30 and loaded.codes.is_owned
    q = ic.encoder.encode(samples(2, seed=3, prefix="q"))
    np.testing.assert_array_equal(loaded.search(q, 5)[1], built.search(q, 5)[1])
