"""Retrieve, then rescore (transfer design 3): the encoder's top-K candidates per query, re-ranked by exact
gradient influence.

The encoder narrows a pool of millions to K candidates per query at encoder speed; the decoder then computes
the exact projected LoRA gradient of those K (and of the query) with the settings the encoder was distilled
from, and the top k are the best by exact cosine. A user asking for the top 10 of a large pool gets gradient
answers for the price of K gradients per query, and the encoder only has to put the right samples somewhere
in its top K, not in the right order: on tasks the encoder never saw that is what it still does well.

Two rounds spend the same K better: the encoder's top two thirds first, then the rest on the pool samples
nearest (in the encoder's space) to the best exact hit found so far. The samples that truly influence a query
cluster around one another more tightly than around the encoder's guess, so the best exact hit points at
others the encoder ranked too low (docs/results/transfer.md, "Rescoring in two rounds").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bar
from influcoder.data.records import Sample
from influcoder.labels.influence import normalize_rows

ROUNDS = (1, 2)
SECOND_ROUND_SHARE = 1 / 3
"""Share of the candidates a second round spends around the best exact hit: of a third, a half and two thirds,
a third found the most of the exact top 10 on held-out tasks at every share of the pool rescored
(benchmarks/results/rescore_pool_size)."""


def first_round_size(candidates: int, rounds: int, second_share: float = SECOND_ROUND_SHARE) -> int:
    """How many of `candidates` the encoder picks: all of them in one round; in two, all but `second_share` of
    them (at least one; the answer's k are then the best of both rounds)."""
    if rounds not in ROUNDS:
        raise InflucoderError(f"rescoring runs in {' or '.join(map(str, ROUNDS))} rounds, got {rounds}")
    if rounds == 1:
        return candidates
    return max(1, candidates - int(candidates * second_share))


class ExactCosines:
    """Exact projected-gradient cosines of pool samples with a set of queries; each sample (and each query) is
    differentiated once however many queries or rounds ask for it."""

    def __init__(self, featurizer, queries: Sequence[Sample]):
        self.featurizer = featurizer
        self.queries = list(queries)
        self.query_gradients = self._featurize(self.queries, "exact gradients (queries)")
        """The queries' projected gradients as computed (a subspace encoder's query side reads them too)."""
        self._query_unit = normalize_rows(self.query_gradients)
        self._rows: dict[str, int] = {}
        self._unit: list[np.ndarray] = []

    def _featurize(self, items: list[Sample], desc: str) -> np.ndarray:
        with progress_bar(total=len(items), desc=desc, unit="sample") as bar:
            return self.featurizer.featurize_tokenized(self.featurizer.tokenize(items), bar)

    def add(self, samples: Iterable[Sample], desc: str = "exact gradients (candidates)") -> None:
        """Differentiate the samples not seen yet (by id)."""
        new: dict[str, Sample] = {}
        for sample in samples:
            if sample.id not in self._rows and sample.id not in new:
                new[sample.id] = sample
        if not new:
            return
        unit = normalize_rows(self._featurize(list(new.values()), desc))
        for i, sample_id in enumerate(new):
            self._rows[sample_id] = len(self._rows)
            self._unit.append(unit[i])

    def cosines(self, sample_ids: Sequence[str], j: int) -> np.ndarray:
        """Exact cosine of each (added) sample with query `j`."""
        if not sample_ids:
            return np.zeros(0)
        missing = [i for i in sample_ids if i not in self._rows]
        if missing:
            raise InflucoderError(f"no exact gradient for {missing[0]!r}: add() it first")
        return np.stack([self._unit[self._rows[i]] for i in sample_ids]) @ self._query_unit[j]

    def ranked(self, candidates: Sequence[Sequence], k: int) -> list[list]:
        """Each query's candidates (`Attribution`s) best `k` first by exact cosine, which becomes their `score`;
        the encoder's score moves to `encoder_score`, coverage flags are kept."""
        if len(candidates) != len(self.queries):
            raise InflucoderError(f"{len(candidates)} candidate lists for {len(self.queries)} queries")
        out = []
        for j, hits in enumerate(candidates):
            exact = self.cosines([h.sample.id for h in hits], j)
            order = np.argsort(-exact, kind="stable")[:k]
            out.append([replace(hits[i], rank=r + 1, score=float(exact[i]), encoder_score=hits[i].score)
                        for r, i in enumerate(order)])  # fmt: skip
        return out


def rescore_hits(featurizer, queries: Sequence[Sample], candidates: Sequence[Sequence], k: int) -> list[list]:
    """Each query's `candidates` (`Attribution`s, any order) re-ranked by the exact cosine of their projected
    gradients with the query's, best `k` first. A pool sample that is a candidate of several queries is
    differentiated once. The returned hits carry the exact cosine as `score` and the encoder's as
    `encoder_score`; coverage flags are kept."""
    if k < 1:
        raise InflucoderError(f"k must be at least 1, got {k}")
    if len(candidates) != len(queries):
        raise InflucoderError(f"{len(candidates)} candidate lists for {len(queries)} queries")
    exact = ExactCosines(featurizer, queries)
    exact.add(hit.sample for hits in candidates for hit in hits)
    return exact.ranked(candidates, k)


def nearest_rows(
    blocks: Iterable[np.ndarray], seeds: np.ndarray, exclude: Sequence[set[int]], n: int, width: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each seed vector, the `n` pool rows of highest cosine with it (on the first `width` columns), best
    first, leaving out the rows in its `exclude` set; with their stored vectors (all columns).

    `blocks`: the pool's embeddings in row order, a block at a time (`EmbeddingIndex.iter_embeddings`), so a
    pool of millions is streamed once whatever the number of seeds."""
    seeds = np.asarray(seeds, dtype=np.float32)
    width = width or seeds.shape[1]
    unit_seeds = normalize_rows(seeds[:, :width])
    keep = [n + len(skip) for skip in exclude]
    best_rows = [np.zeros(0, dtype=np.int64) for _ in seeds]
    best_cos = [np.zeros(0, dtype=np.float32) for _ in seeds]
    best_vec = [np.zeros((0, 0), dtype=np.float32) for _ in seeds]
    start = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        cos = normalize_rows(block[:, :width]) @ unit_seeds.T
        for j in range(len(seeds)):
            # only the block's rows that can still enter the top keep[j] (ties at the cut kept, so the lower row
            # wins as in a full sort) are copied and sorted: a large block is never copied once per seed
            column = cos[:, j]
            if len(column) > keep[j]:
                local = np.flatnonzero(column >= np.partition(column, len(column) - keep[j])[len(column) - keep[j]])
            else:
                local = np.arange(len(column))
            joined_cos = np.concatenate([best_cos[j], column[local]])
            joined_rows = np.concatenate([best_rows[j], start + local])
            joined_vec = np.concatenate([best_vec[j].reshape(-1, block.shape[1]), block[local]])
            top = np.lexsort((joined_rows, -joined_cos))[: keep[j]]  # best cosine first, lower row on ties
            best_cos[j], best_rows[j], best_vec[j] = joined_cos[top], joined_rows[top], joined_vec[top]
        start += len(block)
    out_rows, out_vec = [], []
    for j, skip in enumerate(exclude):
        chosen = [i for i, row in enumerate(best_rows[j]) if int(row) not in skip][:n]
        out_rows.append(best_rows[j][chosen])
        out_vec.append(best_vec[j][chosen])
    return out_rows, out_vec
