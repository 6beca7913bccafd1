"""The interface every compared method implements: optionally learn from the training part, then score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from influcoder.data.records import Sample


@dataclass
class EvaluationData:
    """One evaluation's labels: the whole ground-truth matrix, its samples, and the split.

    Training rows/columns are what a learned method may fit on; the evaluation rows/columns are scored.
    """

    scores: np.ndarray
    pool: list[Sample]
    queries: list[Sample]
    train_pool: np.ndarray
    eval_pool: np.ndarray
    train_queries: np.ndarray
    eval_queries: np.ndarray
    protocol: str | None = None

    def eval_samples(self) -> tuple[list[Sample], list[Sample]]:
        return [self.pool[i] for i in self.eval_pool], [self.queries[j] for j in self.eval_queries]

    def eval_truth(self) -> np.ndarray:
        return self.scores[np.ix_(self.eval_pool, self.eval_queries)]


class Scorer(ABC):
    """A method under evaluation: `fit` on the training part (optional), `score(pool, queries)` -> matrix."""

    name: ClassVar[str]
    description: ClassVar[str]

    def bytes_per_sample(self) -> float | None:
        """Bytes stored per pool sample to answer a new query (None: not meaningful for the method)."""
        return None

    def models(self) -> list:
        """The torch models `score` runs, for the FLOP meter (none: the method's cost is not counted)."""
        return []

    def fit(self, data: EvaluationData) -> None:  # noqa: B027 - most methods learn nothing
        """Learn what the method learns from `data`'s training rows and columns (default: nothing)."""

    @abstractmethod
    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        """Predicted influence, pool x queries (higher: more influential)."""
