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
import torch

from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings


class Less(Scorer):
    name = "less"
    description = "LoRA gradients, Rademacher 8,192, cosine (SGD: no optimizer state)"
    preconditioner = "sgd"

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None, dim: int = 8192, rows_per_pass: int = 128):
        from influcoder.labels.featurizer import GradientFeaturizer
        from influcoder.labels.projectors import Rademacher

        self.featurizer = GradientFeaturizer(replace(settings, projector="identity"), model, tokenizer)
        self.projector = Rademacher(dim, settings.seed)
        self.rows_per_pass = rows_per_pass

    def models(self) -> list:
        return [self.featurizer.model]

    def bytes_per_sample(self) -> float:
        return 4.0 * self.projector.out_dim  # one float32 projected gradient

    def features(self, samples: Sequence[Sample]) -> np.ndarray:
        """Unit-norm projected gradients. A dense projection of 2.4M LoRA coordinates is 20G random signs,
        generated on the fly: projecting `rows_per_pass` exact gradients per generation instead of one
        labelling batch (<= 8) makes it affordable on a CPU."""
        out = []
        for start in range(0, len(samples), self.rows_per_pass):
            exact = self.featurizer.featurize(samples[start : start + self.rows_per_pass])
            out.append(self.projector.project_matrix(torch.from_numpy(exact)).numpy())
        return normalize_rows(np.concatenate(out)).astype(np.float64)

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        return self.features(list(pool)) @ self.features(list(queries)).T
