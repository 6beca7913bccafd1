"""`airrep`: a second learned representation, trained in `fit` on the same labels as the distilled encoder.

AirRep (Sun et al. 2025) learns text embeddings for attribution with two choices of its own: attention
pooling and a group-wise ranking objective. Here it is the same backbone, training split and schedule as the
encoder it is compared with, with `pooling="attention"` and `objective="airrep"` (see
`influcoder.encoder.losses.group_ranking_loss`): so the comparison isolates the objective and pooling, not the
data or the backbone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.encoder.settings import DistillSettings
from influcoder.evaluation.baselines.base import EvaluationData, Scorer


class AirRep(Scorer):
    name = "airrep"
    description = "encoder trained with attention pooling and AirRep's group-wise ranking loss"

    def __init__(self, settings: DistillSettings, device: str = "auto"):
        self.settings = replace(settings, pooling="attention", objective="airrep")
        self.device = device
        self.encoder = None

    def models(self) -> list:
        return [self.encoder.backbone] if self.encoder is not None else []

    def bytes_per_sample(self) -> float | None:
        return 2.0 * self.encoder.dim if self.encoder is not None else None  # float16, as an index stores them

    def fit(self, data: EvaluationData) -> None:
        from influcoder.encoder.distill import Distiller
        from influcoder.encoder.model import InfluenceEncoder

        if len(data.train_pool) == 0 or len(data.train_queries) == 0:
            raise InflucoderError("airrep learns from the training part of a split: evaluate on a held-out split")
        scores = data.scores[np.ix_(data.train_pool, data.train_queries)]
        distiller = Distiller(self.settings, device=self.device)
        pool = [data.pool[i] for i in data.train_pool]
        queries = [data.queries[j] for j in data.train_queries]
        with tempfile.TemporaryDirectory(prefix="influcoder-airrep-") as tmp:  # model selection as for distill:
            distiller.fit(scores, pool, queries, out=tmp)  # the best validation epoch
            self.encoder = InfluenceEncoder.from_pretrained(Path(tmp) / "best", device=self.device).eval()

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        from influcoder.encoder.predict import predict_matrix

        if self.encoder is None:
            raise InflucoderError("airrep scores only after fit()")
        return predict_matrix(self.encoder, pool, queries)
