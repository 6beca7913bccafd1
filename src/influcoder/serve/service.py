"""The library calls behind the endpoints, free of web code: attribute, score, look a sample up, describe.

Each call takes a *batch* of jobs (the requests gathered by `influcoder.serve.batching`) and makes one model
call for all their queries: `Influcoder.attribute` once with the largest k asked (each job keeps its own top
k: FAISS returns the best rows first, so a job's top k is the prefix of a larger k), `Influcoder.query_vectors`
once for the scoring jobs. Queries are renamed to their position in the batch before the call, because
`Influcoder` keys each query's coverage and spread by query id, and two requests (or one, without ids) may
name different texts alike. The service is not thread-safe (`Influcoder` keeps the last call's coverage and
spread on itself, torch and FAISS run their own threads): one worker thread calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from influcoder.attribution.influcoder import Influcoder
from influcoder.core.progress import progress_bars
from influcoder.data.records import Sample
from influcoder.serve.results import (
    Histogram,
    QueryAttribution,
    histogram,
    index_summary,
    pool_scores,
    query_flags,
)
from influcoder.serve.warm_index import WarmIndex

log = logging.getLogger(__name__)

WARM_UP = Sample("warm-up", "warm up the encoder", "ok")


@dataclass(frozen=True)
class AttributeJob:
    """One request's queries and how many hits each wants."""

    queries: Sequence[Sample]
    k: int


@dataclass(frozen=True)
class ScoreJob:
    """One request's queries, the pool rows to score them against, and histogram bins (0: none)."""

    queries: Sequence[Sample]
    rows: Sequence[int] = ()
    bins: int = 0


@dataclass(frozen=True)
class ScoreResult:
    """Scores of one job: `scores[q, i]` of query q on row `rows[i]` (what `Influcoder.score` aggregates)."""

    query_ids: list[str]
    scores: np.ndarray
    histograms: list[Histogram] = field(default_factory=list)


class IndexService:
    """An `Influcoder` on a `WarmIndex`, opened once, answering batches of jobs."""

    def __init__(self, ic: Influcoder, encoder_dir: str | Path | None = None):
        if not isinstance(ic.index_, WarmIndex):
            raise TypeError("IndexService needs an Influcoder on a WarmIndex (IndexService.open builds one)")
        self.ic = ic
        self.index: WarmIndex = ic.index_
        self.encoder_dir = str(encoder_dir) if encoder_dir else self.index.manifest.encoder_path

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        encoder_dir: str | Path | None = None,
        device: str | None = None,
        query_side: str = "exact",
        warm_up: bool = True,
    ) -> IndexService:
        """Open the index with its encoder (`Influcoder.from_index`: the encoder the index records unless one
        is given), over a `WarmIndex`, and run one query through every path so the first request is not slow."""
        opened = Influcoder.from_index(index_dir, encoder_dir, device=device, query_side=query_side)
        warm = WarmIndex(index_dir)
        ic = Influcoder(opened.encoder, warm, opened.coverage_reference, opened.subspace, opened.query_side, device)
        service = cls(ic, encoder_dir)
        if warm_up:
            service.attribute([AttributeJob([WARM_UP], 1)])
            service.score([ScoreJob([WARM_UP], (0,) if len(warm) else (), 1)])
        log.info("serving %s: %d samples, dim %d, query side %s", index_dir, len(warm), warm.dim, ic.query_side)
        return service

    def attribute(self, jobs: Sequence[AttributeJob]) -> list[list[QueryAttribution]]:
        """Top-k hits and flags per query of each job, from one `Influcoder.attribute` call."""
        batch = [Sample(str(n), q.prompt, q.response, q.meta) for n, q in enumerate(q for j in jobs for q in j.queries)]
        if not batch:
            return [[] for _ in jobs]
        hits = self.ic.attribute(batch, k=max(job.k for job in jobs))
        reference = self.ic.coverage_reference
        answers, position = [], 0
        for job in jobs:
            answer = []
            for query in job.queries:
                key = batch[position].id
                flags = query_flags(reference, self.ic.query_coverage.get(key), self.ic.query_spread.get(key))
                hits_of_query = [replace(hit, query_id=query.id) for hit in hits[position][: job.k]]
                answer.append(QueryAttribution(query.id, hits_of_query, **flags))
                position += 1
            answers.append(answer)
        return answers

    def score(self, jobs: Sequence[ScoreJob]) -> list[ScoreResult]:
        """Each job's queries against its rows (and binned over the whole pool), from one encoder call and one
        pass over the stored embeddings. Holds pool size x queries float32 scores while it runs (a batch of 64
        queries on a 1M pool: 256 MB)."""
        queries = [q for job in jobs for q in job.queries]
        if not queries:
            return [ScoreResult([], np.zeros((0, len(job.rows)), np.float32)) for job in jobs]
        vectors = self.ic.query_vectors(queries).astype(np.float32)
        pool = pool_scores(self.index.iter_embeddings(), vectors)
        results, start = [], 0
        for job in jobs:
            columns = pool[:, start : start + len(job.queries)]
            start += len(job.queries)
            scores = np.ascontiguousarray(columns[np.asarray(job.rows, dtype=np.int64)].T)
            histograms = [histogram(columns[:, c], job.bins) for c in range(columns.shape[1])] if job.bins else []
            results.append(ScoreResult([q.id for q in job.queries], scores, histograms))
        return results

    def sample(self, sample_id: str) -> Sample | None:
        """The indexed sample of this id, or None."""
        row = self.index.row_of(sample_id)
        return None if row is None else self.index.samples()[row]

    def audit(self, queries: list[Sample], k: int) -> list[dict]:
        """The exact-gradient check of each query's top-k hits: the encoder's hits, then the exact projected
        LoRA gradient cosine of each (with the decoder, adapter and projection the encoder records; one decoder
        pass and backward per hit and query), and the Spearman of the two scores over the hits."""
        from scipy.stats import spearmanr

        from influcoder.attribution.rescore import ExactCosines

        with progress_bars(False):  # a request's few gradients: no bar in the server's log
            exact = ExactCosines(self.ic.exact_featurizer(), queries)  # each query differentiated once
            shown = self.ic.attribute(queries, k=k, query_gradients=exact.query_gradients)
            exact.add(hit.sample for hits in shown for hit in hits)
            checked = exact.ranked(shown, k)
        out = []
        for query, hits, exact in zip(queries, shown, checked):
            by_id = {h.sample.id: h for h in exact}
            rows = [
                {"id": h.sample.id, "rank": h.rank, "encoder_score": h.score,
                 "exact_score": by_id[h.sample.id].score, "exact_rank": by_id[h.sample.id].rank}
                for h in hits
            ]  # fmt: skip
            rho = spearmanr([r["encoder_score"] for r in rows], [r["exact_score"] for r in rows]).statistic
            spearman = float(rho) if len(rows) >= 3 and np.isfinite(rho) else None
            out.append({"id": query.id, "spearman": spearman, "hits": rows})
        return out

    def row_of(self, sample_id: str) -> int | None:
        return self.index.row_of(sample_id)

    def summary(self) -> dict:
        """What /v1/index says about the served index (`results.index_summary`)."""
        return index_summary(self.ic, self.encoder_dir)
