"""What an attribution answer looks like as JSON, in one place, for the server and for `attribute --report`.

The explorer page renders the same records whether it fetched them from /v1/attribute or found them embedded
in a report file, so both are built here: `query_record` is the shape of one entry of /v1/attribute's
``results`` (the pydantic models of `influcoder.serve.schemas` validate and publish it), `histogram` that of
/v1/histogram. Nothing here imports the web stack: a report is written without the serve extra installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from influcoder.attribution.influcoder import Attribution, Influcoder
from influcoder.data.records import Sample
from influcoder.encoder.coverage import CoverageReference

DEFAULT_BINS = 40
"""Bins of a query's whole-pool histogram on the page (and the report)."""


@dataclass(frozen=True)
class QueryAttribution:
    """One query's top-k hits (`Influcoder.attribute`'s `Attribution`s, query id as the caller named it) and the
    query-level flags `Influcoder` computed with them (None where the encoder has no reference for them)."""

    query_id: str
    hits: list[Attribution]
    coverage: float | None = None
    covered: bool | None = None
    spread: float | None = None
    """Standard deviation of the query's scores over a seeded sample of the pool (low: hits close to arbitrary)."""
    confident: bool | None = None


@dataclass(frozen=True)
class Histogram:
    """A query's scores over the whole pool, binned (`numpy.histogram`: len(edges) = len(counts) + 1)."""

    edges: list[float]
    counts: list[int]
    mean: float
    std: float


def finite(value: float | None) -> float | None:
    """JSON has no NaN: a spread over fewer than two pool samples (NaN) is reported as unknown (None)."""
    return None if value is None or not math.isfinite(value) else float(value)


def query_flags(reference: CoverageReference | None, coverage: float | None, spread: float | None) -> dict:
    """A query's coverage and spread, and their flags where the encoder's reference calibrated them (as
    `influcoder attribute` prints them: ``covered`` against the coverage threshold, ``confident`` against the
    spread threshold)."""
    coverage, spread = finite(coverage), finite(spread)
    covered = confident = None
    if reference is not None and coverage is not None:
        covered = bool(reference.covered(coverage))
    if reference is not None and reference.spread_threshold is not None and spread is not None:
        confident = bool(reference.confident(spread))
    return {"coverage": coverage, "covered": covered, "spread": spread, "confident": confident}


def histogram(scores: np.ndarray, bins: int) -> Histogram:
    """`scores` binned into `bins` equal-width bins between their minimum and maximum."""
    counts, edges = np.histogram(scores, bins=bins)
    return Histogram(edges.tolist(), counts.tolist(), float(scores.mean()), float(scores.std()))


def pool_scores(blocks: Iterable[np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """(pool rows, queries) inner products of every stored embedding with each query vector, one stored block
    at a time (`EmbeddingIndex.iter_embeddings`): the exact whole-pool scores `Influcoder.score` aggregates."""
    vectors = np.asarray(vectors, dtype=np.float32)
    parts = [block @ vectors.T for block in blocks]
    return np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)


def sample_record(sample: Sample) -> dict[str, Any]:
    return {"id": sample.id, "prompt": sample.prompt, "response": sample.response, "meta": dict(sample.meta or {})}


def query_record(answer: QueryAttribution) -> dict[str, Any]:
    """One query's answer as /v1/attribute returns it (`schemas.QueryOut`)."""
    hits = [
        {
            "rank": a.rank,
            "score": a.score,
            "coverage": a.coverage,
            "covered": a.covered,
            "sample": sample_record(a.sample),
        }
        for a in answer.hits
    ]
    flags = {name: getattr(answer, name) for name in ("coverage", "covered", "spread", "confident")}
    return {"id": answer.query_id, **flags, "hits": hits}


def histogram_record(query_id: str, binned: Histogram) -> dict[str, Any]:
    """One query's histogram as /v1/histogram returns it (`schemas.HistogramOut`)."""
    return {
        "query_id": query_id,
        "edges": binned.edges,
        "counts": binned.counts,
        "mean": binned.mean,
        "std": binned.std,
    }


def index_summary(ic: Influcoder, encoder_dir: str | None = None) -> dict[str, Any]:
    """An index in brief (`schemas.IndexOut` less the server's limits): its manifest's size, dimensions,
    FAISS factory and encoder, and how queries are scored; the page's header says what it is searching."""
    index, reference = ic.index_, ic.coverage_reference
    manifest = index.manifest
    config = manifest.encoder_config
    return {
        "path": str(index.path),
        "size": len(index),
        "dim": index.dim,
        "dtype": manifest.dtype,
        "index_factory": manifest.index_factory,
        "segments": len(manifest.segments),
        "backend": manifest.encoder_backend,
        "query_side": ic.query_side,
        "encoder": {
            "path": str(encoder_dir) if encoder_dir else manifest.encoder_path,
            "fingerprint": manifest.encoder_fingerprint[:16],
            **{key: config.get(key) for key in ("backbone", "pooling", "head_dim", "max_length")},
        },
        "coverage": manifest.coverage.to_record() if manifest.coverage is not None else None,
        "spread_threshold": reference.spread_threshold if reference is not None else None,
    }
