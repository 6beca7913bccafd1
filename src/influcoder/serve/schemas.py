"""The bodies of every endpoint, as pydantic models: FastAPI validates requests with them (an error names the
field: `queries[2].response`) and publishes them as the OpenAPI schema (/v1/openapi.json).

Limits that the server's flags set (--max-k, --max-queries) are checked by the routes, not here: the models
hold what is true of every server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A request body: unknown fields are refused (a misspelt `respone` says so instead of going unread)."""

    model_config = ConfigDict(extra="forbid")


class QueryIn(Strict):
    """A query: the behaviour to explain, as a prompt and the model's response to it."""

    id: str | None = Field(None, min_length=1, description="Your id for the query (default: a hash of its text).")
    prompt: str = Field(description="The prompt (context; may be empty).")
    response: str = Field(min_length=1, description="The response whose influence is traced.")
    meta: dict[str, Any] | None = Field(None, description="Anything else; not used for scoring.")


class AttributeRequest(Strict):
    queries: list[QueryIn] = Field(min_length=1)
    k: int = Field(
        10,
        gt=0,
        strict=True,
        description="Hits per query (at most the server's --max-k; left out: 10, or --max-k if lower).",
    )


class ScoreRequest(Strict):
    queries: list[QueryIn] = Field(min_length=1)
    ids: list[str] = Field(min_length=1, description="Pool sample ids to score (at most the server's max_ids).")
    aggregate: Literal["mean", "max"] = Field("mean", description="How `aggregated` combines the queries.")


class HistogramRequest(Strict):
    queries: list[QueryIn] = Field(min_length=1)
    bins: int = Field(40, gt=0, strict=True, description="Histogram bins (at most the server's max_bins).")


class AuditRequest(Strict):
    queries: list[QueryIn] = Field(min_length=1)
    k: int = Field(10, gt=0, strict=True, description="Hits per query to check (at most the server's --max-k).")


class AuditHitOut(BaseModel):
    id: str
    rank: int = Field(description="The hit's rank by the encoder.")
    encoder_score: float
    exact_score: float = Field(description="Cosine of the hit's and the query's exact projected LoRA gradients.")
    exact_rank: int = Field(description="The hit's rank among the k hits by exact score.")


class AuditQueryOut(BaseModel):
    id: str
    spearman: float | None = Field(description="Spearman of encoder and exact scores over the k hits (None: < 3).")
    hits: list[AuditHitOut]


class AuditResponse(BaseModel):
    k: int
    results: list[AuditQueryOut]


class SampleOut(BaseModel):
    id: str
    prompt: str
    response: str
    meta: dict[str, Any] = Field(default_factory=dict)


class HitOut(BaseModel):
    rank: int
    score: float = Field(description="Predicted influence: the encoder's inner product (a cosine) with the query.")
    coverage: float | None = Field(None, description="Mean cosine to the encoder's nearest labelled samples.")
    covered: bool | None = Field(None, description="False: outside what the encoder was distilled on.")
    sample: SampleOut


class QueryOut(BaseModel):
    id: str
    coverage: float | None = None
    covered: bool | None = None
    spread: float | None = Field(None, description="Std of the query's scores over a sample of the pool.")
    confident: bool | None = Field(None, description="False: spread under its calibrated threshold.")
    hits: list[HitOut]


class AttributeResponse(BaseModel):
    k: int
    results: list[QueryOut] = Field(description="One per query, in request order; hits best first.")


class ScoreResponse(BaseModel):
    ids: list[str]
    query_ids: list[str]
    scores: list[list[float]] = Field(description="scores[q][i]: query q on pool sample ids[i].")
    aggregate: Literal["mean", "max"]
    aggregated: list[float] = Field(description="Per id, over the queries (what `influcoder filter` ranks by).")


class HistogramOut(BaseModel):
    query_id: str
    edges: list[float] = Field(description="Bin edges, one more than counts.")
    counts: list[int]
    mean: float
    std: float


class HistogramResponse(BaseModel):
    size: int = Field(description="Pool samples scored.")
    histograms: list[HistogramOut]


class EncoderOut(BaseModel):
    path: str | None
    fingerprint: str
    backbone: str | None = None
    pooling: str | None = None
    head_dim: int | None = None
    max_length: int | None = None


class LimitsOut(BaseModel):
    max_queries: int
    max_k: int
    max_ids: int
    max_bins: int
    max_body_bytes: int


class IndexOut(BaseModel):
    path: str
    size: int
    dim: int
    dtype: str | None
    index_factory: str | None
    segments: int
    backend: str
    query_side: str
    encoder: EncoderOut
    coverage: dict[str, Any] | None
    spread_threshold: float | None
    limits: LimitsOut


class BatchStatsOut(BaseModel):
    batches: int
    jobs: int
    items: int
    largest: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    size: int
    uptime_s: float
    batching: dict[str, BatchStatsOut]


class FieldError(BaseModel):
    field: str | None
    message: str


class ErrorOut(BaseModel):
    """Every failure's body: `error` is one line for a person, `field` names what to fix (None: the request as a
    whole, or the server), `errors` lists every field at fault when there were several."""

    status: int
    error: str
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)
