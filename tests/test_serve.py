"""`influcoder serve` through the ASGI test client on a tiny index: every endpoint answers what the library
answers on the same index (ids exactly, scores to float precision), every bad request gets a 4xx naming the
field at fault, a failing request gets a 500 and the server goes on, concurrent requests share encoder calls,
and `attribute --report` writes the explorer page with the CLI's own hits inside."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="influcoder serve needs the serve extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient  # noqa: E402

from influcoder import Influcoder  # noqa: E402
from influcoder.cli.main import main  # noqa: E402
from influcoder.data.records import Sample  # noqa: E402
from influcoder.encoder.coverage import CoverageReference, query_spread  # noqa: E402
from influcoder.encoder.model import InfluenceEncoder  # noqa: E402
from influcoder.serve.app import create_app  # noqa: E402
from influcoder.serve.batching import MicroBatcher  # noqa: E402
from influcoder.serve.limits import ServeLimits  # noqa: E402
from influcoder.serve.service import IndexService  # noqa: E402

from .test_labels import samples  # noqa: E402

POOL, K = 40, 5
LIMITS = ServeLimits(max_queries=4, max_k=8, max_ids=6, max_bins=50, max_body_bytes=4096, batch_window_s=0.002)
DATA_SCRIPT = re.compile(r'<script id="influcoder-data" type="application/json">(.*?)</script>', re.S)


def build_index(root: Path, backbone: Path) -> dict[str, Path]:
    """A tiny encoder (untrained head on the tiny BERT, max length 16) with a coverage reference whose
    thresholds split the pool and the queries (so both flags take both values), and an index of 40 samples
    with tasks; the pool and query files beside them. Returns their paths."""
    encoder = InfluenceEncoder.from_backbone(str(backbone), head_dim=8, max_length=16)
    encoder.save_pretrained(root / "encoder")
    pool = [Sample(s.id, s.prompt, s.response, {"task": f"task-{i % 3}", "n": i}) for i, s in enumerate(samples(POOL))]
    queries = samples(3, seed=5, prefix="q")
    labelled, pool_embedded = encoder.encode(samples(20, seed=9, prefix="l")), encoder.encode(pool)
    coverage = CoverageReference(labelled, 3, 0.0, 0.05).score(pool_embedded)
    spreads = query_spread(encoder.encode(queries), pool_embedded)
    reference = CoverageReference(labelled, 3, float(np.median(coverage)), 0.05, float(np.median(spreads)))
    reference.save(root / "encoder")
    ic = Influcoder.from_pretrained(root / "encoder")
    ic.index(pool, root / "index", progress=False, encoder_path=root / "encoder", shard_size=16)
    for name, rows in (("pool.jsonl", pool), ("queries.jsonl", queries)):
        (root / name).write_text("".join(json.dumps(s.to_record()) + "\n" for s in rows), encoding="utf-8")
    return {name: root / name for name in ("encoder", "index", "pool.jsonl", "queries.jsonl")}


def query_bodies(queries) -> list[dict]:
    return [{"id": q.id, "prompt": q.prompt, "response": q.response} for q in queries]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    return build_index(tmp_path_factory.mktemp("serve"), tiny_bert_dir)


@pytest.fixture(scope="module")
def queries(built):
    from influcoder.data.loading import load_samples

    return list(load_samples(built["queries.jsonl"]))


@pytest.fixture(scope="module")
def library(built) -> Influcoder:
    """The library on the same index, as `influcoder attribute` opens it."""
    return Influcoder.from_index(built["index"])


@pytest.fixture(scope="module")
def service(built) -> IndexService:
    return IndexService.open(built["index"])


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service, LIMITS)) as test_client:
        yield test_client


def test_attribute_returns_the_librarys_hits_and_flags(client, library, queries):
    response = client.post("/v1/attribute", json={"queries": query_bodies(queries), "k": K})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = library.attribute(queries, k=K)
    reference = library.coverage_reference
    assert body["k"] == K and [r["id"] for r in body["results"]] == ["q0", "q1", "q2"]
    for query, got, hits in zip(queries, body["results"], expected):
        assert [h["sample"]["id"] for h in got["hits"]] == [a.sample.id for a in hits]
        assert [h["rank"] for h in got["hits"]] == list(range(1, K + 1))
        assert [h["score"] for h in got["hits"]] == pytest.approx([a.score for a in hits], abs=1e-6)
        assert [h["coverage"] for h in got["hits"]] == pytest.approx([a.coverage for a in hits], abs=1e-6)
        assert [h["covered"] for h in got["hits"]] == [a.covered for a in hits]
        top = got["hits"][0]["sample"]
        assert (top["prompt"], top["response"], top["meta"]) == (
            hits[0].sample.prompt,
            hits[0].sample.response,
            hits[0].sample.meta,
        )
        assert got["coverage"] == pytest.approx(library.query_coverage[query.id], abs=1e-6)
        assert got["covered"] == bool(reference.covered(library.query_coverage[query.id]))
        assert got["spread"] == pytest.approx(library.query_spread[query.id], abs=1e-6)
        assert got["confident"] == bool(reference.confident(library.query_spread[query.id]))
    flags = [(r["covered"], r["confident"]) for r in body["results"]]
    hit_flags = {h["covered"] for r in body["results"] for h in r["hits"]}
    assert {c for c, _ in flags} | hit_flags == {True, False}, "the fixture's thresholds should split the flags"


def test_a_smaller_k_is_the_prefix_and_a_query_without_id_gets_its_text_hash(client, library, queries):
    from influcoder.data.records import content_id

    q = queries[1]
    body = client.post("/v1/attribute", json={"queries": [{"prompt": q.prompt, "response": q.response}], "k": 2}).json()
    result = body["results"][0]
    assert result["id"] == content_id(q.prompt, q.response)
    assert [h["sample"]["id"] for h in result["hits"]] == [a.sample.id for a in library.attribute([q], k=2)[0]]


def test_score_and_histogram_equal_the_whole_pool_scores(client, library, queries):
    ids = ["p7", "p0", "p33"]
    body = client.post("/v1/score", json={"queries": query_bodies(queries[:2]), "ids": ids, "aggregate": "max"})
    assert body.status_code == 200, body.text
    body = body.json()
    rows = [int(i[1:]) for i in ids]
    per_query = np.stack([library.score([q]) for q in queries[:2]])
    assert body["ids"] == ids and body["query_ids"] == ["q0", "q1"] and body["aggregate"] == "max"
    np.testing.assert_allclose(body["scores"], per_query[:, rows], atol=1e-6)
    np.testing.assert_allclose(body["aggregated"], library.score(queries[:2], "max")[rows], atol=1e-6)
    mean = client.post("/v1/score", json={"queries": query_bodies(queries[:2]), "ids": ids}).json()
    np.testing.assert_allclose(mean["aggregated"], library.score(queries[:2], "mean")[rows], atol=1e-6)

    binned = client.post("/v1/histogram", json={"queries": query_bodies(queries[:1]), "bins": 7}).json()
    whole = library.score(queries[:1])
    (histogram,) = binned["histograms"]
    assert binned["size"] == POOL and histogram["query_id"] == "q0"
    assert histogram["counts"] == np.histogram(whole, bins=7)[0].tolist() and sum(histogram["counts"]) == POOL
    assert histogram["edges"][0] == pytest.approx(whole.min(), abs=1e-6)
    assert histogram["edges"][-1] == pytest.approx(whole.max(), abs=1e-6)
    assert histogram["mean"] == pytest.approx(whole.mean(), abs=1e-6)


def test_samples_index_health_and_schema(client, built):
    sample = client.get("/v1/samples/p3")
    assert sample.status_code == 200
    pool = read_jsonl(built["pool.jsonl"])
    assert sample.json() == pool[3] and pool[3]["meta"] == {"task": "task-0", "n": 3}
    index = client.get("/v1/index").json()
    brief = {name: index[name] for name in ("size", "dim", "dtype", "index_factory", "segments")}
    assert brief == {"size": POOL, "dim": 8, "dtype": "float16", "index_factory": "Flat", "segments": 1}
    assert index["encoder"]["path"] == str(built["encoder"].resolve()) and index["encoder"]["max_length"] == 16
    assert index["limits"] == {"max_queries": 4, "max_k": 8, "max_ids": 6, "max_bins": 50, "max_body_bytes": 4096}
    assert index["coverage"]["rows"] == POOL and index["spread_threshold"] is not None
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["size"] == POOL and health["uptime_s"] >= 0
    assert set(health["batching"]) == {"attribute", "score"}
    schema = client.get("/v1/openapi.json").json()
    assert {"/v1/attribute", "/v1/score", "/v1/histogram", "/v1/samples/{sample_id}", "/v1/index", "/v1/health"} <= set(
        schema["paths"]
    )
    assert {"AttributeRequest", "QueryOut", "HitOut", "ErrorOut"} <= set(schema["components"]["schemas"])
    assert "422" in schema["paths"]["/v1/attribute"]["post"]["responses"]


QUERY = {"prompt": "the cat is big", "response": "yes"}
BAD_REQUESTS = [
    ("malformed JSON", "/v1/attribute", b'{"queries": [', 400, "body", "malformed JSON"),
    ("not an object", "/v1/attribute", [QUERY], 422, "body", "JSON object"),
    ("empty body", "/v1/attribute", b"", 422, "body", "JSON object"),
    ("missing prompt", "/v1/attribute", {"queries": [{"response": "yes"}]}, 422, "queries[0].prompt", "required"),
    (
        "missing response",
        "/v1/attribute",
        {"queries": [QUERY, {"prompt": "x"}]},
        422,
        "queries[1].response",
        "required",
    ),
    ("empty response", "/v1/attribute", {"queries": [{"prompt": "x", "response": ""}]}, 422, "queries[0].response", ""),
    ("misspelt field", "/v1/attribute", {"queries": [{**QUERY, "respone": "x"}]}, 422, "queries[0].respone", "Extra"),
    ("no queries", "/v1/attribute", {"queries": []}, 422, "queries", "at least 1"),
    ("k = 0", "/v1/attribute", {"queries": [QUERY], "k": 0}, 422, "k", "greater than 0"),
    ("k < 0", "/v1/attribute", {"queries": [QUERY], "k": -3}, 422, "k", "greater than 0"),
    ("k not an integer", "/v1/attribute", {"queries": [QUERY], "k": "5"}, 422, "k", "integer"),
    ("k above the limit", "/v1/attribute", {"queries": [QUERY], "k": 9}, 422, "k", "limit of 8 (--max-k)"),
    ("too many queries", "/v1/attribute", {"queries": [QUERY] * 5}, 422, "queries", "limit of 4 (--max-queries)"),
    ("repeated query id", "/v1/attribute", {"queries": [{**QUERY, "id": "a"}] * 2}, 422, "queries[1].id", "duplicate"),
    ("unknown pool id", "/v1/score", {"queries": [QUERY], "ids": ["p1", "nope"]}, 422, "ids[1]", "'nope'"),
    ("too many ids", "/v1/score", {"queries": [QUERY], "ids": ["p1"] * 7}, 422, "ids", "limit of 6"),
    ("unknown aggregate", "/v1/score", {"queries": [QUERY], "ids": ["p1"], "aggregate": "sum"}, 422, "aggregate", ""),
    ("bins above the limit", "/v1/histogram", {"queries": [QUERY], "bins": 51}, 422, "bins", "limit of 50"),
    ("body over the limit", "/v1/attribute", {"queries": [{**QUERY, "prompt": "x" * 5000}]}, 413, "body", "4,096"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "says"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_a_bad_request_gets_a_4xx_naming_the_field(client, path, body, status, field, says):
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["status"] == status and error["field"] == field
    assert error["error"].startswith(f"{field}:") and says in error["error"]
    assert client.get("/v1/health").json()["status"] == "ok"


def test_unknown_sample_paths_and_methods_are_json_errors(client):
    missing = client.get("/v1/samples/no-such-id")
    assert missing.status_code == 404 and missing.json()["field"] == "id" and "'no-such-id'" in missing.json()["error"]
    assert client.get("/v1/nothing").status_code == 404 and "/v1/" in client.get("/v1/nothing").json()["error"]
    wrong = client.get("/v1/attribute")
    assert wrong.status_code == 405 and wrong.json()["error"] == "GET is not allowed on /v1/attribute"


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/attribute", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"


def test_a_failing_request_is_a_500_and_the_server_goes_on(client, service, monkeypatch, caplog):
    original = service.ic.attribute

    def fails_on_boom(batch, *args, **kwargs):
        if any(q.response == "boom" for q in batch):
            raise RuntimeError("the encoder broke")
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(service.ic, "attribute", fails_on_boom)
    response = client.post("/v1/attribute", json={"queries": [{"prompt": "x", "response": "boom"}]})
    assert response.status_code == 500
    assert response.json()["error"].startswith("internal error (RuntimeError: the encoder broke)")
    assert "failed" in caplog.text
    assert client.post("/v1/attribute", json={"queries": [QUERY], "k": 2}).status_code == 200


def test_concurrent_requests_share_encoder_calls_and_get_their_own_answers(service, library):
    import httpx

    queries = samples(12, seed=21, prefix="c")
    app = create_app(service, ServeLimits(batch_window_s=0.05))

    async def together():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
                bodies = [{"queries": query_bodies([q]), "k": 3} for q in queries]
                answers = await asyncio.gather(*(http.post("/v1/attribute", json=b) for b in bodies))
                return answers, (await http.get("/v1/health")).json()

    answers, health = asyncio.run(together())
    expected = library.attribute(queries, k=3)
    for answer, query, hits in zip(answers, queries, expected):
        result = answer.json()["results"][0]
        assert result["id"] == query.id
        assert [h["sample"]["id"] for h in result["hits"]] == [a.sample.id for a in hits]
        assert [h["score"] for h in result["hits"]] == pytest.approx([a.score for a in hits], abs=1e-5)
    stats = health["batching"]["attribute"]
    assert stats["jobs"] == 12 and stats["items"] == 12 and stats["batches"] < 12 and stats["largest"] > 1


def test_micro_batcher_never_splits_a_job_and_survives_a_failed_batch():
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def run(jobs):
        calls.append([len(job) for job in jobs])
        if any("fail" in job for job in jobs):
            raise ValueError("bad batch")
        return [sum(len(x) for x in job) for job in jobs]

    async def scenario():
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(run, executor, len, window_s=0.02, max_batch=5)
            jobs = [["a"] * 3, ["bb"] * 2, ["c"] * 4, ["d"]]
            first = await asyncio.gather(*(batcher.submit(job) for job in jobs))
            failed = await asyncio.gather(batcher.submit(["fail"]), return_exceptions=True)
            after = await batcher.submit(["ok"])
            await batcher.stop()
            return first, failed, after, batcher.stats

    first, failed, after, stats = asyncio.run(scenario())
    assert first == [3, 4, 4, 1] and after == 2
    assert isinstance(failed[0], ValueError)
    assert calls[:2] == [[3, 2], [4, 1]] and all(sum(c) <= 5 for c in calls)
    assert (stats.batches, stats.jobs, stats.largest) == (3, 5, 5)


def test_the_explorer_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="query-form"', 'id="prompt"', 'id="response"', 'id="k"', 'id="results"'):
        assert element in page.text
    script, style = client.get("/static/app.js"), client.get("/static/style.css")
    assert script.status_code == style.status_code == 200
    assert "javascript" in script.headers["content-type"] and style.headers["content-type"].startswith("text/css")
    for text in (page.text, script.text, style.text):  # nothing from a CDN: the page works offline
        assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text)


def test_attribute_report_embeds_the_clis_hits_in_the_page(built, client, queries, tmp_path, capsys):
    out, report = tmp_path / "hits.jsonl", tmp_path / "report"
    argv = ["attribute", "--index", str(built["index"]), "--queries", str(built["queries.jsonl"]), "-k", str(K)]
    assert main([*argv, "--out", str(out), "--report", str(report), "--quiet"]) == 0
    assert "report:" in capsys.readouterr().err
    rows = read_jsonl(out)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "/static/" not in page and "<style>" in page  # style and script inlined: opens from the file
    data = json.loads(DATA_SCRIPT.search(page).group(1))
    assert data["mode"] == "report" and data["k"] == K and data["index"]["size"] == POOL
    assert [q["id"] for q in data["queries"]] == [r["id"] for r in data["results"]] == ["q0", "q1", "q2"]
    for result in data["results"]:
        cli = [r for r in rows if r["query_id"] == result["id"]]
        assert [h["sample"]["id"] for h in result["hits"]] == [r["pool_id"] for r in cli]
        assert [round(h["score"], 6) for h in result["hits"]] == [r["score"] for r in cli]
        assert result["covered"] == cli[0]["query_covered"] and result["confident"] == cli[0]["query_confident"]
        assert [h["covered"] for h in result["hits"]] == [r["covered"] for r in cli]
    assert [sum(h["counts"]) for h in data["histograms"]] == [POOL] * 3
    served = client.post("/v1/attribute", json={"queries": query_bodies(queries), "k": K}).json()
    assert [[h["sample"]["id"] for h in r["hits"]] for r in served["results"]] == [
        [h["sample"]["id"] for h in r["hits"]] for r in data["results"]
    ]


def test_report_data_cannot_break_out_of_its_script_element(built, tmp_path):
    from influcoder.serve.report import write_report

    ic = Influcoder.from_index(built["index"])
    query = Sample("</script><script>alert(1)</script>", "<!-- a", "</SCRIPT> b")
    page = write_report(tmp_path, ic, [query], ic.attribute([query], k=2), 2).read_text(encoding="utf-8")
    assert page.count("</script>") == 2  # the data element's and the inlined script's own
    data = json.loads(DATA_SCRIPT.search(page).group(1))
    assert data["queries"][0] == {"id": query.id, "prompt": query.prompt, "response": query.response}


def test_serve_command_checks_its_options_and_hands_the_limits_to_the_server(built, monkeypatch, capsys):
    import influcoder.serve.app as app_module

    started = {}
    monkeypatch.setattr(app_module, "run_server", lambda service, limits, host, port, quiet: started.update(locals()))
    argv = ["serve", "--index", str(built["index"]), "--port", "8123", "--max-k", "7", "--max-queries", "3", "--quiet"]
    assert main([*argv, "--batch-window-ms", "1", "--verify"]) == 0
    limits = started["limits"]
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)
    assert (limits.max_k, limits.max_queries, limits.max_batch) == (7, 3, 64)
    assert limits.batch_window_s == pytest.approx(0.001) and len(started["service"].index) == POOL
    assert main(["serve", "--index", str(built["index"]), "--max-k", "0"]) == 2
    assert "--max-k must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--index", str(built["index"].parent / "nothing")]) == 2
    assert "not an influcoder index" in capsys.readouterr().err


def test_load_benchmark_runs_at_tiny_scale_with_a_kill_and_a_restart(built, tmp_path):
    """benchmarks/serve_load.py end to end, a second per phase: no errors, the server batched the 3 clients'
    requests, and after a SIGKILL under load and a restart the index verifies and answers as before and as
    `influcoder attribute` does."""
    from .conftest import load_benchmark

    out = tmp_path / "serve_load"
    argv = ["--index", str(built["index"]), "--clients", "1", "3", "--seconds", "1", "--n-queries", "6", "--k", "4"]
    code = load_benchmark("serve_load").main(
        [*argv, "--kill-restart", "--check-cli", "--check-queries", "3", "--out", str(out)]
    )
    report = json.loads(out.with_suffix(".json").read_text())
    assert code == 0, report
    assert [p["clients"] for p in report["phases"]] == [1, 3] and report["index"]["size"] == POOL
    for phase in report["phases"]:
        assert phase["requests"] > 0 and phase["errors"] == 0 and phase["latency_ms"]["p50"] > 0
        assert phase["server_rss_mb"]["peak"] > 0
    kill = report["kill_restart"]
    assert kill["verify_exit"] == 0 and kill["same_answers"] and kill["queries_compared"] == 3
    assert report["check_cli"] == {"queries_compared": 3, "same_answers": True}
    table = out.with_suffix(".md").read_text()
    assert "| 3 |" in table and "SIGKILL under load" in table


def test_audit_needs_the_gradient_settings_and_says_so(client, queries):
    """The tiny encoder here records no labelling decoder: the exact-gradient check is refused by name
    (test_subspace_pipeline runs it where the decoder is there)."""
    response = client.post("/v1/audit", json={"queries": query_bodies(queries[:1]), "k": 3})
    assert response.status_code == 422
    assert response.json()["field"] == "audit" and "does not record the gradient settings" in response.json()["error"]
    assert client.post("/v1/audit", json={"queries": query_bodies(queries[:1]), "k": 99}).status_code == 422


def test_the_allocator_fix_is_for_servers_that_run_the_decoder(service, monkeypatch):
    """A server of encoded queries leaves glibc alone; one of exact query gradients (the decoder on requests
    of every length) fixes the mmap threshold (the readings before and after: docs/results/serve.md)."""
    import uvicorn

    import influcoder.core.allocator as allocator
    from influcoder.serve.app import run_server

    calls = []
    monkeypatch.setattr(allocator, "fix_mmap_threshold", lambda *a: calls.append("fixed") or True)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append("served"))
    run_server(service, LIMITS, port=0, quiet=True)
    assert service.ic.query_side == "encoded" and calls == ["served"]
    monkeypatch.setattr(service.ic, "query_side", "exact")
    run_server(service, LIMITS, port=0, quiet=True)
    assert calls == ["served", "fixed", "served"]
