"""Retrieve, then rescore (transfer design 3): the encoder's top-K candidates per query, re-ranked by exact
gradient influence.

The encoder narrows a pool of millions to K candidates per query at encoder speed; the decoder then computes
the exact projected LoRA gradient of those K (and of the query) with the settings the encoder was distilled
from, and the top k are the best by exact cosine. A user asking for the top 10 of a large pool gets gradient
answers for the price of K gradients per query, and the encoder only has to put the right samples somewhere
in its top K, not in the right order: on tasks the encoder never saw that is what it still does well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bar
from influcoder.data.records import Sample
from influcoder.labels.influence import normalize_rows


def rescore_hits(
    featurizer,
    queries: Sequence[Sample],
    candidates: Sequence[Sequence],
    k: int,
) -> list[list]:
    """Each query's `candidates` (`Attribution`s, any order) re-ranked by the exact cosine of their projected
    gradients with the query's, best `k` first. A pool sample that is a candidate of several queries is
    differentiated once. The returned hits carry the exact cosine as `score` and the encoder's as
    `encoder_score`; coverage flags are kept."""
    if k < 1:
        raise InflucoderError(f"k must be at least 1, got {k}")
    if len(candidates) != len(queries):
        raise InflucoderError(f"{len(candidates)} candidate lists for {len(queries)} queries")
    position: dict[str, int] = {}
    unique: list[Sample] = []
    for hits in candidates:
        for hit in hits:
            if hit.sample.id not in position:
                position[hit.sample.id] = len(unique)
                unique.append(hit.sample)
    total = len(unique) + len(queries)
    with progress_bar(total=total, desc="exact gradients", unit="sample") as bar:
        pool_grads = featurizer.featurize_tokenized(featurizer.tokenize(unique), bar) if unique else None
        query_grads = featurizer.featurize_tokenized(featurizer.tokenize(list(queries)), bar)
    query_unit = normalize_rows(query_grads)
    pool_unit = normalize_rows(pool_grads) if pool_grads is not None else np.zeros((0, query_unit.shape[1]))
    rescored = []
    for j, hits in enumerate(candidates):
        rows = np.array([position[h.sample.id] for h in hits], dtype=np.int64)
        exact = pool_unit[rows] @ query_unit[j] if len(rows) else np.zeros(0)
        order = np.argsort(-exact, kind="stable")[:k]
        rescored.append(
            [
                replace(hits[i], rank=r + 1, score=float(exact[i]), encoder_score=hits[i].score)
                for r, i in enumerate(order)
            ]  # fmt: skip
        )
    return rescored
