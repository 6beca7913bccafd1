"""Predicted influence of an encoder: the cosine matrix of its embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from influcoder.data.records import Sample
from influcoder.encoder.model import InfluenceEncoder


def predict_matrix(
    encoder: InfluenceEncoder,
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    batch_size: int = 32,
) -> np.ndarray:
    """Predicted influence (pool x queries): cosines of the encoder's embeddings (plus each pool sample's
    length prior, when the encoder has one); the encoding bars follow `influcoder.core.progress`."""
    pool_vectors = encoder.encode_pool(pool, batch_size)
    return pool_vectors @ encoder.encode_queries(queries, batch_size).T
