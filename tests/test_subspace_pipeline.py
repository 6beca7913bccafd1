"""`distill --objective subspace` -> `index` -> `attribute`, on tiny labels: the saved subspace is the training
gradients' own, and attribution scores a query by its exact gradient's coordinates (checked against gradients
computed here) or, asked to, by the encoder's prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder.attribution.influcoder import Influcoder
from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.core.store import FeatureStore
from influcoder.encoder.coverage import CoverageReference
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.subspace import GradientSubspace
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples


@pytest.fixture(scope="module")
def subspace_run(tiny_model_dir, tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("subspace")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    pool, queries = samples(30), samples(10, seed=7, prefix="q")
    label(pool, queries, root / "labels", settings, progress=False)
    args = [
        "distill",
        "--labels",
        str(root / "labels"),
        "--out",
        str(root / "enc"),
        "--objective",
        "subspace",
        "--subspace-k",
        "6",
        "--encoder",
        str(tiny_bert_dir),
        "--epochs",
        "2",
        "--max-length",
        "16",
        "--lr",
        "1e-4",
        "--eval-pool",
        "6",
        "--eval-queries",
        "3",
    ]  # no --quiet: it outlives a module fixture
    assert main(args) == 0
    assert main(["index", "--encoder", str(root / "enc"), "--pool", str(root / "labels" / "pool.jsonl"),
                 "--out", str(root / "index")]) == 0  # fmt: skip
    return root, settings, pool, queries


def test_distill_writes_the_training_gradients_subspace(subspace_run):
    root, _, _, _ = subspace_run
    training = json.loads((root / "enc" / "training.json").read_text())
    assert training["objective"] == "subspace" and training["complete"]
    assert [e["epoch"] for e in training["epochs"]] == [0, 1, 2]  # the ridge start, then two epochs
    assert training["epochs"][0]["loss"] is None and training["epochs"][1]["coordinate_error"] > 0
    subspace = GradientSubspace.load(root / "enc")  # resolves to best/
    pool_store, query_store = FeatureStore(root / "labels" / "pool"), FeatureStore(root / "labels" / "queries")
    gradients = np.concatenate(
        [  # the training pool's and the training queries' gradients: all training texts
            pool_store.load()[[pool_store.ids.index(i) for i in training["train_pool_ids"]]],
            query_store.load()[[query_store.ids.index(i) for i in training["train_query_ids"]]],
        ]
    )
    assert training["subspace"]["targets"] == len(gradients)
    config = InfluenceEncoder.from_pretrained(root / "enc").config  # the default head: every training text a landmark
    assert (config.head_kind, config.kernel_landmarks) == ("kernel", len(gradients))
    expected = GradientSubspace.fit(gradients, 6)
    np.testing.assert_allclose(subspace.directions.T @ subspace.directions,
                               expected.directions.T @ expected.directions, atol=1e-4)  # fmt: skip
    split = (root / "enc" / "eval_split.json").read_bytes()
    assert main(["distill", "--labels", str(root / "labels"), "--out", str(root / "enc"), "--objective", "subspace",
                 "--subspace-k", "6", "--epochs", "2", "--quiet"]) == 2  # another run's settings: refused  # fmt: skip
    assert (root / "enc" / "eval_split.json").read_bytes() == split  # and the finished run's split kept


def test_attribute_scores_queries_by_their_exact_gradient_coordinates(subspace_run, tiny_model_dir):
    root, settings, pool, queries = subspace_run
    ic = Influcoder.from_index(root / "index")
    assert ic.query_side == "exact"
    hits = ic.attribute(queries[:3], k=5)
    exact = GradientFeaturizer(settings).featurize(queries[:3])
    coords = ic.subspace.coordinates(exact)
    pool_vectors = ic.encoder.encode_pool(pool)
    for j, per_query in enumerate(hits):
        expected = pool_vectors @ coords[j]
        top = np.argsort(-expected, kind="stable")[:5]
        assert [a.sample.id for a in per_query] == [pool[i].id for i in top]
        np.testing.assert_allclose([a.score for a in per_query], expected[top], atol=2e-3)  # float16 index
    encoded = Influcoder.from_index(root / "index", query_side="encoded")
    assert encoded.query_side == "encoded"
    np.testing.assert_allclose(encoded.query_vectors(queries[:2]), encoded.encoder.encode_queries(queries[:2]))
    with pytest.raises(InflucoderError, match="query_side"):
        Influcoder.from_index(root / "index", query_side="both")


def test_rescoring_a_subspace_index_reads_each_query_gradient_once(subspace_run, monkeypatch):
    """The exact query side's coordinates and the rescoring's cosines come from one gradient per query: the
    first-round candidates are those `attribute` finds, and the answer is their exact top k with round two's."""
    root, settings, pool, queries = subspace_run
    ic = Influcoder.from_index(root / "index")
    featurizer = ic.exact_featurizer()
    calls: list[list[str]] = []
    original = featurizer.tokenize
    monkeypatch.setattr(featurizer, "tokenize", lambda items: calls.append([s.id for s in items]) or original(items))
    rescored = ic.rescore(queries[:2], k=3, candidates=6)
    assert calls[0] == [q.id for q in queries[:2]] and all(q.id not in c for c in calls[1:] for q in queries[:2])
    first = {h.sample.id for hits in ic.attribute(queries[:2], k=4) for h in hits}
    assert first <= set(calls[1])
    exact = GradientFeaturizer(settings)
    by_id = {s.id: s for s in pool}
    query_grads = exact.featurize(queries[:2])
    for j, hits in enumerate(rescored):
        grads = exact.featurize([by_id[h.sample.id] for h in hits])
        cos = (grads @ query_grads[j]) / np.linalg.norm(grads, axis=1) / np.linalg.norm(query_grads[j])
        np.testing.assert_allclose([h.score for h in hits], cos, atol=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_attribute_cli_with_exact_queries_and_audit(subspace_run, tmp_path):
    root, _, _, _ = subspace_run
    out = tmp_path / "hits.jsonl"
    assert main(["attribute", "--index", str(root / "index"), "--queries", str(root / "labels" / "queries.jsonl"),
                 "-k", "3", "--out", str(out), "--audit", "12", "--quiet"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and {r["rank"] for r in rows} == {1, 2, 3}  # 10 queries x 3 hits


def test_evaluate_scores_a_subspace_encoder_with_exact_query_coordinates(subspace_run, tmp_path):
    """The evaluate row of a subspace encoder equals its pool predictions against the stored query gradients'
    coordinates, ranked against the labels (reference computed here from the stores)."""
    from influcoder.labels.labelling import load_labels
    from influcoder.metrics import spearman_report

    root, _, pool, _ = subspace_run
    assert main(["evaluate", "--encoder", str(root / "enc"), "--labels", str(root / "labels"),
                 "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0  # fmt: skip
    row = json.loads((tmp_path / "eval.json").read_text())["distilled"]
    matrix, *_ = load_labels(root / "labels")
    split = json.loads((root / "enc" / "eval_split.json").read_text())
    rows = [matrix.pool_ids.index(i) for i in split["pool_ids"]]
    cols = [matrix.query_ids.index(i) for i in split["query_ids"]]
    ic = Influcoder.from_pretrained(root / "enc")
    coords = ic.subspace.coordinates(FeatureStore(root / "labels" / "queries").load()[cols])
    predicted = ic.encoder.encode_pool([pool[i] for i in rows]) @ coords.T
    expected = spearman_report(predicted, np.asarray(matrix.scores)[np.ix_(rows, cols)])
    assert abs(row["per_anchor_mean"] - expected.per_anchor_mean) < 1e-6


def test_coordinates_read_in_chunks_equal_one_read(subspace_run):
    from influcoder.encoder.subspace_distill import coordinates_of

    root, _, pool, queries = subspace_run
    subspace = GradientSubspace.load(root / "enc")
    ids = [q.id for q in queries[::-1]] + [p.id for p in pool[:7]]  # both stores, out of store order
    whole = coordinates_of(root / "labels", ids, subspace)
    np.testing.assert_allclose(coordinates_of(root / "labels", ids, subspace, chunk=3), whole, atol=1e-6)
    assert whole.shape == (len(ids), subspace.k)
    with pytest.raises(InflucoderError, match="no stored gradient for 1 sample"):
        coordinates_of(root / "labels", ["p0", "nowhere"], subspace)


def test_a_subspace_run_has_a_coverage_reference_and_its_index_the_flags(subspace_run):
    """The out-of-coverage flag of index and attribute works for subspace encoders too: the reference is the
    run's training texts, scored by the encoder's predicted coordinates."""
    root, _, pool, _ = subspace_run
    reference = CoverageReference.load(root / "enc")
    training = json.loads((root / "enc" / "training.json").read_text())
    assert reference is not None
    assert len(reference.embeddings) == len(training["train_pool_ids"]) + len(training["train_query_ids"])
    stored = np.load(root / "index" / "coverage.npy")
    encoder = InfluenceEncoder.from_pretrained(root / "enc")
    np.testing.assert_allclose(stored, reference.score(encoder.encode(pool)), atol=1e-4)
    manifest = json.loads((root / "index" / "manifest.json").read_text())
    assert manifest["coverage"]["share_covered"] == pytest.approx(float(reference.covered(stored).mean()))
    # the manifest says how its rows are scored: predicted coordinates against each query's exact ones
    assert manifest["scoring"] == {"objective": "subspace", "subspace_k": 6, "query_side": "exact"}


def test_subspace_refuses_the_length_prior_before_writing_anything(subspace_run, tmp_path, capsys):
    root, _, _, _ = subspace_run
    out = tmp_path / "enc"
    argv = ["distill", "--labels", str(root / "labels"), "--out", str(out), "--objective", "subspace",
            "--length-prior", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "--length-prior applies to the cosine objectives" in capsys.readouterr().err
    assert not out.exists()


class _Killed(BaseException):
    """Stands in for SIGKILL: raised right after an epoch's state is saved, and caught by no handler."""


def _distill_argv(root, out, encoder) -> list[str]:
    return ["distill", "--labels", str(root / "labels"), "--out", str(out), "--objective", "subspace",
            "--subspace-k", "6", "--encoder", str(encoder), "--epochs", "2", "--max-length", "16",
            "--lr", "1e-4", "--eval-pool", "6", "--eval-queries", "3"]  # fmt: skip


def _files(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _untimed(record: dict) -> dict:
    return {**record, "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in record["epochs"]]}


@pytest.mark.parametrize("killed_after", [0, 1])
def test_a_killed_subspace_run_resumes_after_its_last_epoch_and_ends_as_an_uninterrupted_one(
    subspace_run, tiny_bert_dir, tmp_path, monkeypatch, caplog, killed_after
):
    """Killed after the ridge start (epoch 0) or after epoch 1 of 2, a rerun says where it resumes, keeps the
    epochs recorded before the kill verbatim (timings included: a restart would re-time them), and ends with
    the uninterrupted run's encoders and record."""
    from influcoder.encoder.subspace_distill import EpochTracker

    root, _, _, _ = subspace_run
    out = tmp_path / "enc"
    saved = EpochTracker.save

    def save_then_die(self, done, position):
        saved(self, done, position)
        if position.epochs_done == killed_after:
            raise _Killed

    monkeypatch.setattr(EpochTracker, "save", save_then_die)
    with pytest.raises(_Killed):
        main(_distill_argv(root, out, tiny_bert_dir) + ["--quiet"])
    at_kill = json.loads((out / "training.json").read_text())
    assert not at_kill["complete"] and (out / "resume.pt").exists()
    assert [e["epoch"] for e in at_kill["epochs"]] == list(range(killed_after + 1))
    monkeypatch.setattr(EpochTracker, "save", saved)
    # a SIGKILL inside an encoder's swap leaves its half-filled temporary directory (no handler runs)
    from .test_atomic import _dead_pid

    stale = out / f".last.{_dead_pid()}.0123456789ab.tmp"
    (stale / "backbone").mkdir(parents=True)
    with caplog.at_level("INFO", logger="influcoder"):
        assert main(_distill_argv(root, out, tiny_bert_dir)) == 0
    assert f"resuming {out} after epoch {killed_after} of 2" in caplog.text
    done = json.loads((out / "training.json").read_text())
    assert done["epochs"][: killed_after + 1] == at_kill["epochs"]  # not recomputed
    reference = json.loads((root / "enc" / "training.json").read_text())
    assert _untimed(done) == _untimed(reference)
    assert not (out / "resume.pt").exists() and not stale.exists()
    for part in ("best", "last"):
        assert _files(out / part) == _files(root / "enc" / part), part


def test_serve_answers_a_subspace_index_with_exact_query_gradients(subspace_run):
    """The default objective behind `influcoder serve`: each query's exact gradient coordinates, computed on
    the server, give the same hits as the library's `attribute`."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from influcoder.serve.app import create_app
    from influcoder.serve.limits import ServeLimits
    from influcoder.serve.service import IndexService

    root, _, _, queries = subspace_run
    service = IndexService.open(root / "index", root / "enc", device="cpu")
    library = Influcoder.from_index(root / "index", root / "enc", device="cpu")
    assert service.ic.query_side == "exact" and library.query_side == "exact"
    bodies = [{"id": q.id, "prompt": q.prompt, "response": q.response} for q in queries[:2]]
    with TestClient(create_app(service, ServeLimits(batch_window_s=0.002))) as client:
        response = client.post("/v1/attribute", json={"queries": bodies, "k": 4})
    assert response.status_code == 200, response.text
    for got, hits in zip(response.json()["results"], library.attribute(queries[:2], k=4)):
        assert [h["sample"]["id"] for h in got["hits"]] == [a.sample.id for a in hits]
        assert [h["score"] for h in got["hits"]] == pytest.approx([a.score for a in hits], abs=1e-5)
    # the page's exact-gradient check: each shown hit's exact cosine with the query, recomputed here
    with TestClient(create_app(service, ServeLimits(batch_window_s=0.002))) as client:
        audited = client.post("/v1/audit", json={"queries": bodies[:1], "k": 4})
    assert audited.status_code == 200, audited.text
    result = audited.json()["results"][0]
    exact = GradientFeaturizer(LabelSettings.from_features(library.encoder.config.label_config, "cpu"))
    by_id = {s.id: s for s in library.index_.samples()}
    pool_grads = normalize_rows(exact.featurize([by_id[h["id"]] for h in result["hits"]]))
    truth = pool_grads @ normalize_rows(exact.featurize(queries[:1]))[0]
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["exact_score"] for h in result["hits"]], truth, atol=1e-5)
    assert sorted(h["exact_rank"] for h in result["hits"]) == [1, 2, 3, 4]
    assert result["spearman"] is not None and -1 <= result["spearman"] <= 1


def test_the_servers_audit_differentiates_each_query_once(subspace_run, monkeypatch):
    """The audit's hits come from the query's exact gradient coordinates and its check from the same gradient:
    one decoder pass and backward per query, not two; the hits are the library's."""
    from influcoder.serve.service import IndexService

    root, _, _, queries = subspace_run
    service = IndexService.open(root / "index", root / "enc", device="cpu")
    featurizer = service.ic.exact_featurizer()
    calls: list[list[str]] = []
    original = featurizer.tokenize
    monkeypatch.setattr(featurizer, "tokenize", lambda items: calls.append([s.id for s in items]) or original(items))
    result = service.audit(queries[:2], k=3)
    asked = [q.id for q in queries[:2]]
    assert sum(c.count(i) for c in calls for i in asked) == 2
    library = Influcoder.from_index(root / "index", root / "enc", device="cpu")
    for got, hits in zip(result, library.attribute(queries[:2], k=3)):
        assert [h["id"] for h in got["hits"]] == [a.sample.id for a in hits]


def test_query_vectors_refuse_gradients_of_another_number_of_queries(subspace_run):
    root, _, _, queries = subspace_run
    ic = Influcoder.from_index(root / "index")
    with pytest.raises(InflucoderError, match="1 query gradients for 2 queries"):
        ic.query_vectors(queries[:2], gradients=np.zeros((1, 4), dtype=np.float32))
