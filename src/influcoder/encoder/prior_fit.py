"""Fit the length prior of a finished distillation run (`influcoder.encoder.length_prior` says what it is and
why): on the run's training split, its weight chosen on the run's validation split with the best encoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from influcoder.data.records import Sample
from influcoder.encoder.length_prior import LengthPrior, choose_weight
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.predict import predict_matrix
from influcoder.encoder.run_record import DistillRun, TrainingRecord


def fit_length_prior(
    out: str | Path,
    scores: np.ndarray,
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    record: TrainingRecord | None = None,
) -> LengthPrior:
    """Fit the prior of a finished `distill` run in `out` on its training split, choose its weight on its
    validation split with the best encoder, and save it into ``out/best``. `scores`, `pool` and `queries` are
    what the run trained on (the ids of its training record index them); `record` is that record when the
    caller holds it (read from ``out/training.json`` otherwise)."""
    run = DistillRun(out)
    record = record if record is not None else run.record()
    pool_row = {s.id: i for i, s in enumerate(pool)}
    query_col = {s.id: j for j, s in enumerate(queries)}
    train_p, val_p = [pool_row[i] for i in record.train_pool_ids], [pool_row[i] for i in record.val_pool_ids]
    train_q, val_q = [query_col[i] for i in record.train_query_ids], [query_col[i] for i in record.val_query_ids]
    scores = np.asarray(scores, dtype=np.float64)
    prior = LengthPrior.fit([pool[i] for i in train_p], scores[np.ix_(train_p, train_q)].mean(axis=1))
    encoder = InfluenceEncoder.from_pretrained(run.best)
    val_pool, val_queries = [pool[i] for i in val_p], [queries[j] for j in val_q]
    cosine = predict_matrix(encoder, val_pool, val_queries)
    prior.weight, figures = choose_weight(cosine, prior.predict(val_pool), scores[np.ix_(val_p, val_q)])
    group = record.val_group
    split = f"whole groups of {group!r}" if group else "random samples (seen tasks: unseen ones may want more)"
    prior.chosen_on = f"validation split of {split}; per-anchor rho by weight (z-units): {figures}"
    prior.save(run.best)
    return prior
