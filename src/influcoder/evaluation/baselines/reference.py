"""Query-agnostic references a learned attributor should beat.

`pool-mean`: each pool sample is scored by its mean *true* influence over the training queries, the same value
for every query. It needs the gradients of every pool sample (so it is no cheaper than labelling), but it
shows how much of a per-anchor figure a method can earn without ranking per query: its query-specific
Spearman is 0.

`lengths`: the same offset *predicted* from five length features of the pool sample by a ridge fitted on the
training pool (`influcoder.encoder.length_prior`): text-only and free at scoring time, it ranks unseen tasks'
pools better than the distilled encoder does (`benchmarks/pool_offset.py`), so a learned method that does not
beat it on unseen tasks has learned nothing that transfers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.encoder.length_prior import LengthPrior
from influcoder.evaluation.baselines.base import EvaluationData, Scorer


class PoolMean(Scorer):
    name = "pool-mean"
    description = "mean true influence over training queries (needs every pool gradient)"

    def __init__(self) -> None:
        self.means: dict[str, float] = {}

    def bytes_per_sample(self) -> float:
        return 8.0  # one float64 mean (after labelling every pool sample against the training queries)

    def fit(self, data: EvaluationData) -> None:
        if len(data.train_queries) == 0:
            raise InflucoderError("pool-mean needs training queries (a split that holds some out)")
        means = data.scores[:, data.train_queries].mean(axis=1)
        self.means = {s.id: float(m) for s, m in zip(data.pool, means)}

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        missing = [s.id for s in pool if s.id not in self.means]
        if missing:
            raise InflucoderError(f"pool-mean has no labels for pool sample {missing[0]!r}")
        column = np.array([self.means[s.id] for s in pool], dtype=np.float64)
        return np.repeat(column[:, None], len(queries), axis=1)


class LengthOffset(Scorer):
    name = "lengths"
    description = "pool offset predicted from length features (ridge on the training pool)"

    def __init__(self) -> None:
        self.prior: LengthPrior | None = None

    def bytes_per_sample(self) -> float:
        return 4.0  # one float32 per pool sample

    def fit(self, data: EvaluationData) -> None:
        if len(data.train_queries) == 0 or len(data.train_pool) < 6:
            raise InflucoderError("lengths needs a training split of pool samples and queries to fit on")
        offsets = data.scores[np.ix_(data.train_pool, data.train_queries)].mean(axis=1)
        self.prior = LengthPrior.fit([data.pool[i] for i in data.train_pool], offsets)

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        if self.prior is None:
            raise InflucoderError("lengths scores only after fit()")
        return np.repeat(self.prior.predict(pool)[:, None], len(queries), axis=1)
