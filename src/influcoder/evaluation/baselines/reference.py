"""`pool-mean`: the query-agnostic reference a learned attributor should beat.

Each pool sample is scored by its mean *true* influence over the training queries, the same value for every
query. It needs the gradients of every pool sample (so it is no cheaper than labelling), but it shows how much
of a per-anchor figure a method can earn without ranking per query: its query-specific Spearman is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
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
