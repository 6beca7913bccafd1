"""The HTTP front of `IndexService`: the JSON API under /v1/ and the explorer page at /.

``create_app(service, limits)`` builds the FastAPI app; ``run_server`` runs it under uvicorn. Every model
call goes through a `MicroBatcher` onto one worker thread (`IndexService` is not thread-safe, and the event
loop must stay free to accept requests while the encoder runs); lookups that read the index's files run on
the same thread. The OpenAPI schema is at /v1/openapi.json; FastAPI's interactive /docs page is off, because
it loads its scripts from a CDN and this server works offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from influcoder import __version__
from influcoder.core.errors import DataError, InflucoderError
from influcoder.data.records import IdAssigner, Sample
from influcoder.serve import schemas
from influcoder.serve.batching import MicroBatcher
from influcoder.serve.errors import RequestError, install
from influcoder.serve.limits import ServeLimits
from influcoder.serve.results import QueryAttribution, histogram_record, query_record, sample_record
from influcoder.serve.service import AttributeJob, IndexService, ScoreJob, ScoreResult

log = logging.getLogger(__name__)

T = TypeVar("T")
ERRORS = {status: {"model": schemas.ErrorOut} for status in (400, 404, 413, 422, 500)}


@dataclass
class Runtime:
    """What lives as long as the server runs: the model thread and a batcher per kind of model call."""

    executor: ThreadPoolExecutor
    attribute: MicroBatcher[AttributeJob, list[QueryAttribution]]
    score: MicroBatcher[ScoreJob, ScoreResult]
    started: float

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the model thread (index files are read there too: one reader at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


def query_samples(queries: Sequence[schemas.QueryIn]) -> list[Sample]:
    """Requests' queries as `Sample`s, ids as a query file gets them (`IdAssigner`: a missing id is the text's
    hash, a repeated id is refused naming both places)."""
    assigner, samples, first = IdAssigner(), [], {}
    for i, query in enumerate(queries):
        if query.id is not None and query.id in first:
            raise RequestError(
                422, f"queries[{i}].id", f"duplicate id {query.id!r} (also queries[{first[query.id]}].id)"
            )
        first.setdefault(query.id, i)
        sample = Sample(query.id or "", query.prompt, query.response, query.meta or {})
        try:  # an id equal to an earlier query's text hash (the only clash left)
            samples.append(Sample(assigner.take(sample, "queries", i), sample.prompt, sample.response, sample.meta))
        except DataError as exc:
            raise RequestError(422, f"queries[{i}].id", exc.message) from None
    return samples


def check_at_most(field: str, value: int, limit: int, flag: str) -> None:
    if value > limit:
        raise RequestError(422, field, f"{value} is above this server's limit of {limit} ({flag})")


def runtime(request: Request) -> Runtime:
    """The running server's `Runtime` (set up by the app's lifespan)."""
    return request.app.state.runtime


def checked_queries(queries: list[schemas.QueryIn], limits: ServeLimits) -> list[Sample]:
    """A request's queries as `Sample`s, refused above --max-queries."""
    check_at_most("queries", len(queries), limits.max_queries, "--max-queries")
    return query_samples(queries)


def create_app(service: IndexService, limits: ServeLimits | None = None) -> FastAPI:
    """The app serving `service` within `limits`."""
    limits = limits or ServeLimits()
    summary = service.summary()
    app = FastAPI(
        title="influcoder",
        version=__version__,
        description="Training-data attribution at encoder speed: a served influcoder index.",
        lifespan=_lifespan(service, limits),
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    install(app, limits.max_body_bytes)
    app.mount("/static", StaticFiles(packages=[("influcoder.serve", "static")]), name="static")
    _add_server_routes(app, service, limits, summary)
    _add_attribution_routes(app, service, limits)
    _add_check_routes(app, service, limits, summary)
    return app


def _lifespan(service: IndexService, limits: ServeLimits):
    """The app's lifespan: the model thread and the batchers start with the server and stop with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="influcoder-model")
        window, most = limits.batch_window_s, limits.max_batch
        app.state.runtime = Runtime(
            executor,
            MicroBatcher(service.attribute, executor, lambda job: len(job.queries), window, most, "attribute"),
            MicroBatcher(service.score, executor, lambda job: len(job.queries), window, most, "score"),
            time.monotonic(),
        )
        try:
            yield
        finally:
            await app.state.runtime.attribute.stop()
            await app.state.runtime.score.stop()
            executor.shutdown(wait=True)

    return lifespan


def _add_server_routes(app: FastAPI, service: IndexService, limits: ServeLimits, summary: dict) -> None:
    """The explorer page, health, the index's summary, and pool samples by id."""
    page = resources.files("influcoder.serve").joinpath("static", "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def explorer() -> str:
        return page

    @app.get("/v1/health", response_model=schemas.HealthOut, tags=["server"])
    async def health(request: Request) -> schemas.HealthOut:
        state = runtime(request)
        batching = {name: asdict(getattr(state, name).stats) for name in ("attribute", "score")}
        uptime = time.monotonic() - state.started
        return schemas.HealthOut(status="ok", size=summary["size"], uptime_s=round(uptime, 3), batching=batching)

    @app.get("/v1/index", response_model=schemas.IndexOut, tags=["server"])
    async def index_summary() -> schemas.IndexOut:
        names = ("max_queries", "max_k", "max_ids", "max_bins", "max_body_bytes")
        return schemas.IndexOut(**summary, limits=schemas.LimitsOut(**{n: getattr(limits, n) for n in names}))

    @app.get("/v1/samples/{sample_id:path}", response_model=schemas.SampleOut, responses=ERRORS, tags=["pool"])
    async def sample(sample_id: str, request: Request) -> schemas.SampleOut:
        found = await runtime(request).call(service.sample, sample_id)
        if found is None:
            raise RequestError(404, "id", f"no sample {sample_id!r} in this index")
        return schemas.SampleOut(**sample_record(found))


def _add_attribution_routes(app: FastAPI, service: IndexService, limits: ServeLimits) -> None:
    """/v1/attribute and /v1/score: the encoder's predicted influence, batched across requests."""

    @app.post("/v1/attribute", response_model=schemas.AttributeResponse, responses=ERRORS, tags=["attribution"])
    async def attribute(body: schemas.AttributeRequest, request: Request) -> schemas.AttributeResponse:
        """The top-k pool samples of each query by predicted influence (`Influcoder.attribute`), with coverage
        and spread flags where the encoder has a reference for them. Without k, the default within --max-k."""
        k = body.k if "k" in body.model_fields_set else min(body.k, limits.max_k)
        check_at_most("k", k, limits.max_k, "--max-k")
        queries = checked_queries(body.queries, limits)
        answers = await runtime(request).attribute.submit(AttributeJob(queries, k))
        return schemas.AttributeResponse(k=k, results=[schemas.QueryOut(**query_record(a)) for a in answers])

    @app.post("/v1/score", response_model=schemas.ScoreResponse, responses=ERRORS, tags=["attribution"])
    async def score(body: schemas.ScoreRequest, request: Request) -> schemas.ScoreResponse:
        """Each query's predicted influence on the given pool samples, and their mean or max over the queries
        (what `Influcoder.score` gives those samples)."""
        check_at_most("ids", len(body.ids), limits.max_ids, "max_ids")
        queries = checked_queries(body.queries, limits)
        state = runtime(request)
        rows = await state.call(lambda: [service.row_of(i) for i in body.ids])
        unknown = next((i for i, row in enumerate(rows) if row is None), None)
        if unknown is not None:
            raise RequestError(422, f"ids[{unknown}]", f"no sample {body.ids[unknown]!r} in this index")
        result = await state.score.submit(ScoreJob(queries, rows))
        combined = result.scores.mean(axis=0) if body.aggregate == "mean" else result.scores.max(axis=0)
        return schemas.ScoreResponse(
            ids=body.ids,
            query_ids=result.query_ids,
            scores=result.scores.tolist(),
            aggregate=body.aggregate,
            aggregated=combined.tolist(),
        )


def _add_check_routes(app: FastAPI, service: IndexService, limits: ServeLimits, summary: dict) -> None:
    """/v1/audit and /v1/histogram: how far to trust each query's top hits."""

    @app.post("/v1/audit", response_model=schemas.AuditResponse, responses=ERRORS, tags=["attribution"])
    async def audit(body: schemas.AuditRequest, request: Request) -> schemas.AuditResponse:
        """The exact-gradient check of each query's top-k hits (`IndexService.audit`): slow (one decoder pass
        and backward per hit), and only where the decoder the encoder was distilled from is available."""
        check_at_most("k", body.k, limits.max_k, "--max-k")
        queries = checked_queries(body.queries, limits)
        try:
            results = await runtime(request).call(service.audit, queries, body.k)
        except InflucoderError as exc:
            raise RequestError(422, "audit", f"the exact-gradient check is not available: {exc}") from None
        return schemas.AuditResponse(k=body.k, results=[schemas.AuditQueryOut(**r) for r in results])

    @app.post("/v1/histogram", response_model=schemas.HistogramResponse, responses=ERRORS, tags=["attribution"])
    async def histogram(body: schemas.HistogramRequest, request: Request) -> schemas.HistogramResponse:
        """Each query's scores over the whole pool, binned: where its top hits stand against everything else."""
        check_at_most("bins", body.bins, limits.max_bins, "max_bins")
        queries = checked_queries(body.queries, limits)
        result = await runtime(request).score.submit(ScoreJob(queries, (), body.bins))
        histograms = [
            schemas.HistogramOut(**histogram_record(qid, h)) for qid, h in zip(result.query_ids, result.histograms)
        ]
        return schemas.HistogramResponse(size=summary["size"], histograms=histograms)


def run_server(
    service: IndexService,
    limits: ServeLimits | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
) -> None:
    """Serve until interrupted (uvicorn; Ctrl-C stops it cleanly).

    A server scoring exact query gradients runs the decoder forward and backward on requests of every length:
    glibc's heap would keep the blocks of each new activation shape and grow step after step, so large
    allocations get their own mappings here (`core.allocator.fix_mmap_threshold`, as `distill --low-memory`
    does), returned to the system when freed. docs/results/serve.md has the readings."""
    import uvicorn

    if service.ic.query_side == "exact":
        from influcoder.core.allocator import fix_mmap_threshold

        fix_mmap_threshold()
    log.info("influcoder serve: http://%s:%d/ (API under /v1/, schema at /v1/openapi.json)", host, port)
    uvicorn.run(create_app(service, limits), host=host, port=port, log_level="warning" if quiet else "info")
