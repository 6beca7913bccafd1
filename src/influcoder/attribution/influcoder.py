"""The Python API of step 3, mirroring the CLI: index a pool, attribute queries, filter a pool.

from influcoder import Influcoder
ic = Influcoder.from_pretrained("runs/encoder")      # a distilled encoder
ic.index(pool_samples, "runs/index")                  # encode once, FAISS index
hits = ic.attribute(query_samples, k=10)              # top-k influential pool samples per query
result = ic.filter(query_samples, drop_fraction=0.1)  # drop what most drives the query behaviour
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from influcoder.attribution.index import EmbeddingIndex
from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bars
from influcoder.data.records import Sample
from influcoder.data.stream import SelectedSamples, sample_ids
from influcoder.encoder.coverage import CoverageReference, query_spread
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.subspace import GradientSubspace

QUERY_SIDES = ("exact", "encoded")


@dataclass
class Attribution:
    """One retrieved pool sample for one query."""

    query_id: str
    rank: int
    score: float
    sample: Sample
    coverage: float | None = None
    """How close the sample lies to the encoder's labelled data (None: no coverage reference or scores)."""
    covered: bool | None = None
    """False: outside what the encoder was distilled on; its score is less trustworthy."""
    encoder_score: float | None = None
    """After `Influcoder.rescore`: the encoder's predicted score (`score` is then the exact gradient cosine)."""
    row: int | None = None
    """The sample's row in the index it was found in."""


@dataclass
class FilterResult:
    """A pool split by influence on a query set; `scores` in pool order (higher = more influential)."""

    kept: Sequence[Sample]
    dropped: Sequence[Sample]
    """Views over the indexed pool (`SelectedSamples`): written one sample at a time, never copied whole."""
    scores: np.ndarray
    ids: list[str]


def drop_count(n: int, drop_fraction: float | None, drop_top: int | None) -> int:
    if (drop_fraction is None) == (drop_top is None):
        raise InflucoderError("give exactly one of drop_fraction and drop_top")
    if drop_fraction is not None:
        if not 0.0 <= drop_fraction <= 1.0:
            raise InflucoderError(f"drop fraction must be in [0, 1], got {drop_fraction}")
        return int(round(n * drop_fraction))
    if drop_top < 0:
        raise InflucoderError(f"drop count must be >= 0, got {drop_top}")
    return min(drop_top, n)


class Influcoder:
    """A distilled encoder plus (optionally) an index of a pool."""

    def __init__(
        self,
        encoder: InfluenceEncoder,
        index: EmbeddingIndex | None = None,
        coverage: CoverageReference | None = None,
        subspace: GradientSubspace | None = None,
        query_side: str = "exact",
        device: str | None = None,
    ):
        if query_side not in QUERY_SIDES:
            raise InflucoderError(f"query_side must be one of {', '.join(QUERY_SIDES)}, got {query_side!r}")
        if subspace is not None and subspace.k != encoder.dim:
            raise InflucoderError(f"the encoder predicts {encoder.dim} coordinates but its subspace holds {subspace.k}")
        self.encoder = encoder
        self._index = index
        self.subspace = subspace
        """A subspace encoder's gradient directions (`subspace.npz` beside it), if it has them."""
        self.query_side = query_side if subspace is not None else "encoded"
        """How queries are scored: ``exact`` (a subspace encoder: the coordinates of each query's own gradient,
        one decoder pass and backward per query) or ``encoded`` (the encoder's vector of the text)."""
        self.device = device
        self._featurizer = None
        self.coverage_reference = coverage
        """The encoder's out-of-coverage reference (`coverage.npz` beside it), if it has one."""
        self.query_coverage: dict[str, float] = {}
        self.query_spread: dict[str, float] = {}
        """Per query of the last `attribute`: the spread of its scores over a sample of the pool (low: the
        encoder cannot rank the pool for it; `CoverageReference.confident`)."""
        """Coverage score of each query of the last `attribute` call."""
        if index is not None:
            index.check_encoder(encoder)

    @classmethod
    def from_pretrained(
        cls,
        encoder_dir: str | Path,
        index: str | Path | None = None,
        device: str | None = None,
        backend: str | None = None,
        query_side: str = "exact",
    ) -> Influcoder:
        """The encoder (on `backend`: default the index's, else float) and optionally an index of a pool;
        `query_side` as `Influcoder.query_side`."""
        opened = EmbeddingIndex(index) if index else None
        backend = backend or (opened.manifest.encoder_backend if opened else "torch")
        encoder_device = "cpu" if backend != "torch" and device in (None, "auto") else device
        encoder = InfluenceEncoder.from_pretrained(encoder_dir, device=encoder_device, backend=backend)
        subspace = GradientSubspace.load(encoder_dir)
        return cls(encoder, opened, CoverageReference.load(encoder_dir), subspace, query_side, device)

    @classmethod
    def from_index(
        cls,
        index_dir: str | Path,
        encoder_dir: str | Path | None = None,
        device: str | None = None,
        query_side: str = "exact",
    ) -> Influcoder:
        """Open an index with its encoder (the one recorded in the index when `encoder_dir` is None)."""
        index = EmbeddingIndex(index_dir)
        encoder_dir = encoder_dir or index.manifest.encoder_path
        if not encoder_dir:
            raise InflucoderError(f"{index_dir} does not record its encoder; give its `encoder`")
        backend = index.manifest.encoder_backend  # queries embedded as the pool was
        encoder_device = "cpu" if backend != "torch" and device in (None, "auto") else device
        encoder = InfluenceEncoder.from_pretrained(encoder_dir, device=encoder_device, backend=backend)
        subspace = GradientSubspace.load(encoder_dir)
        return cls(encoder, index, CoverageReference.load(encoder_dir), subspace, query_side, device)

    @property
    def index_(self) -> EmbeddingIndex:
        if self._index is None:
            raise InflucoderError("no index: call .index(pool, out) or open one with from_index")
        return self._index

    def index(self, pool: Sequence[Sample], out: str | Path, **kw) -> EmbeddingIndex:
        """Encode `pool` into an index at `out`; with a coverage reference, also score every row's coverage."""
        self._index = EmbeddingIndex.build(self.encoder, pool, out, **kw)
        if self.coverage_reference is not None:
            self._index.write_coverage(self.coverage_reference)
        return self._index

    def query_vectors(
        self, queries: Sequence[Sample], batch_size: int = 32, gradients: np.ndarray | None = None
    ) -> np.ndarray:
        """The vectors queries are scored with (inner product with the pool's): the encoder's, or for a
        subspace encoder with ``query_side="exact"`` the coordinates of each query's projected gradient,
        computed with the decoder, adapter and projection recorded in the encoder's config (`gradients`: those
        gradients when the caller has them already, as rescoring does, so no query is differentiated twice)."""
        if self.query_side != "exact":  # no bar: a server's or a command's handful of queries at a time
            return self.encoder.encode_queries(queries, batch_size, show_progress_bar=False)
        if gradients is None:
            gradients = self.exact_featurizer().featurize(list(queries))
        elif len(gradients) != len(queries):
            raise InflucoderError(f"{len(gradients)} query gradients for {len(queries)} queries")
        return self.subspace.coordinates(gradients)

    def exact_featurizer(self):
        """The `GradientFeaturizer` of the decoder, adapter and projection the encoder was distilled from (as its
        config records them), loaded once."""
        if self._featurizer is None:
            from influcoder.labels.featurizer import GradientFeaturizer
            from influcoder.labels.settings import LabelSettings

            if not self.encoder.config.label_config:
                raise InflucoderError("this encoder does not record the gradient settings of its labels")
            settings = LabelSettings.from_features(self.encoder.config.label_config, self.device or "auto")
            self._featurizer = GradientFeaturizer(settings)
        return self._featurizer

    def rescore(
        self,
        queries: Sequence[Sample],
        k: int = 10,
        candidates: int = 100,
        progress: bool | None = None,
        rounds: int = 2,
        nprobe: int | None = None,
        batch_size: int = 32,
    ) -> list[list[Attribution]]:
        """Top-k per query by *exact* gradient influence among `candidates` pool samples per query
        (`attribution.rescore`): `candidates` exact gradients per query instead of one per pool sample, and one
        per query. `rounds` 1: the encoder's top `candidates`; 2: its top two thirds, then the samples nearest
        the best exact hit among them. `progress`: the bars on (True) or off (False); None: the switch in
        `influcoder.core.progress`."""
        from influcoder.attribution.rescore import ExactCosines, first_round_size

        if k < 1:
            raise InflucoderError(f"k must be at least 1, got {k}")
        if candidates < k:
            raise InflucoderError(f"rescoring needs at least k candidates, got {candidates} for k = {k}")
        first = first_round_size(candidates, rounds)
        with progress_bars(progress):
            exact = ExactCosines(self.exact_featurizer(), queries)
            vectors = self.query_vectors(queries, batch_size, exact.query_gradients)
            found = self._hits(queries, vectors, first, nprobe)
            exact.add(hit.sample for hits in found for hit in hits)
            if first < candidates and len(self.index_) > first:
                self._second_round(queries, vectors, found, exact, candidates - first)
            return exact.ranked(found, k)

    def _second_round(self, queries: Sequence[Sample], vectors: np.ndarray, found: list[list[Attribution]], exact,
                      n: int) -> None:  # fmt: skip
        """Add to each query's `found` the `n` rows nearest (cosine of the stored vectors) to its best exact hit
        so far, and differentiate them (`attribution.rescore`: why this finds what the encoder ranked too low)."""
        from influcoder.attribution.rescore import nearest_rows

        index = self.index_
        best = [hits[int(np.argmax(exact.cosines([h.sample.id for h in hits], j)))] for j, hits in enumerate(found)]
        taken = [{h.row for h in hits} for hits in found]
        rows, stored = nearest_rows(index.iter_embeddings(), index.rows_embeddings([b.row for b in best]), taken, n,
                                    index.manifest.embedding_dim)  # fmt: skip
        pool, coverage = index.samples(), index.coverage()
        for j, hits in enumerate(found):
            scores = stored[j] @ vectors[j]  # the encoder's score of each, as the index would give it
            hits += [self._attribution(queries[j].id, len(hits) + r + 1, float(scores[r]), int(row), pool, coverage)
                     for r, row in enumerate(rows[j])]  # fmt: skip
        exact.add((h.sample for hits in found for h in hits), "exact gradients (second round)")

    def attribute(
        self,
        queries: Sequence[Sample],
        k: int = 10,
        nprobe: int | None = None,
        batch_size: int = 32,
        query_gradients: np.ndarray | None = None,
    ) -> list[list[Attribution]]:
        """Top-k pool samples per query by predicted influence, best first (`query_gradients`: as in
        `query_vectors`)."""
        return self._hits(queries, self.query_vectors(queries, batch_size, query_gradients), k, nprobe)

    def _hits(
        self, queries: Sequence[Sample], embedded: np.ndarray, k: int, nprobe: int | None
    ) -> list[list[Attribution]]:
        """Top-k per query for query vectors already computed; records each query's coverage and spread."""
        index = self.index_
        scores, rows = index.search(embedded, k, nprobe)
        embedded = embedded[:, : self.encoder.dim]  # coverage lives in the embedding space only
        pool = index.samples()
        reference, row_coverage = self.coverage_reference, index.coverage()
        self.query_coverage = (
            dict(zip([q.id for q in queries], map(float, reference.score(embedded)))) if reference else {}
        )
        spreads = query_spread(embedded, index.sample_embeddings())
        self.query_spread = dict(zip([q.id for q in queries], map(float, spreads)))
        return [
            [self._attribution(queries[j].id, r + 1, float(scores[j, r]), int(rows[j, r]), pool, row_coverage)
             for r in range(rows.shape[1]) if rows[j, r] >= 0]
            for j in range(len(queries))
        ]  # fmt: skip

    def _attribution(
        self, query_id: str, rank: int, score: float, row: int, pool: Sequence[Sample], row_coverage
    ) -> Attribution:
        found = Attribution(query_id, rank, score, pool[row], row=row)
        if self.coverage_reference is not None and row_coverage is not None:
            found.coverage = float(row_coverage[row])
            found.covered = bool(self.coverage_reference.covered(row_coverage[row]))
        return found

    def score(self, queries: Sequence[Sample], aggregate: str = "mean", batch_size: int = 32) -> np.ndarray:
        """Predicted influence of every indexed pool sample on the query set (pool order)."""
        return self.index_.score_pool(self.query_vectors(queries, batch_size), aggregate)

    def filter(
        self,
        queries: Sequence[Sample],
        drop_fraction: float | None = None,
        drop_top: int | None = None,
        aggregate: str = "mean",
    ) -> FilterResult:
        """Drop the pool samples that most influence the queries (ties broken by pool order)."""
        pool = self.index_.samples()
        scores = self.score(queries, aggregate)
        n_drop = drop_count(len(pool), drop_fraction, drop_top)
        order = np.argsort(-scores, kind="stable")
        dropped_rows = np.sort(order[:n_drop])
        kept_rows = np.setdiff1d(np.arange(len(pool)), dropped_rows)
        kept, dropped = SelectedSamples(pool, kept_rows), SelectedSamples(pool, dropped_rows)
        return FilterResult(kept, dropped, scores, sample_ids(pool))
