"""Gradient baselines: what the encoder is distilled to imitate, at their own cost.

`less` (LESS, Xia et al. 2024): per-example LoRA gradients of the response-only loss, Rademacher-projected
to 8,192 dimensions, cosine. LESS preconditions the training gradients with the Adam state of a warm-up
run; with no optimizer state given (a fresh adapter, as the labels use), the gradients are plain SGD ones,
and the report says so (`preconditioner: sgd`). Same decoder, adapter seed and text view as the labels, so
on the labels' own data it differs from the ground truth only by its projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings


class Less(Scorer):
    name = "less"
    description = "LoRA gradients, Rademacher 8,192, cosine (SGD: no optimizer state)"
    preconditioner = "sgd"

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None, dim: int = 8192):
        from influcoder.labels.featurizer import GradientFeaturizer

        self.settings = replace(settings, projector="rademacher", proj_dim=dim)
        self.featurizer = GradientFeaturizer(self.settings, model, tokenizer)

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        pool_features = normalize_rows(self.featurizer.featurize(pool)).astype(np.float64)
        query_features = normalize_rows(self.featurizer.featurize(queries)).astype(np.float64)
        return pool_features @ query_features.T
