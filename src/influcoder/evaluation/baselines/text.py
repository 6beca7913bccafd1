"""Text-similarity baselines: what a method gets from the words alone, with no gradient information."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer


def sample_text(sample: Sample) -> str:
    return f"{sample.prompt}\n{sample.response}"


class TfIdf(Scorer):
    """Cosine of TF-IDF vectors (scikit-learn, fitted on the texts being scored: unsupervised)."""

    name = "tfidf"
    description = "TF-IDF cosine of prompt + response"
    _stored: float | None = None

    def bytes_per_sample(self) -> float | None:
        """The pool's sparse rows (values + column indices) of the last scoring."""
        return self._stored

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError:
            raise InflucoderError('the tfidf baseline needs scikit-learn: pip install "influcoder[eval]"') from None
        texts = [sample_text(s) for s in (*pool, *queries)]
        vectors = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)  # rows are L2-normalised
        self._stored = vectors[: len(pool)].nnz * (vectors.data.itemsize + vectors.indices.itemsize) / len(pool)
        return np.asarray((vectors[: len(pool)] @ vectors[len(pool) :].T).todense(), dtype=np.float64)


class EncoderScorer(Scorer):
    """Cosine of an `InfluenceEncoder`'s embeddings: the distilled encoder, or an untrained one."""

    name = "encoder"
    description = "cosine of encoder embeddings"

    def __init__(self, encoder, batch_size: int = 32):
        self.encoder, self.batch_size = encoder, batch_size
        self.scored: tuple[np.ndarray, np.ndarray] | None = None
        """The (pool, query) vectors of the last `score`, as `attribute` would score them: what the coverage
        flag and the spread are measured on, without encoding the pool a second time."""

    def models(self) -> list:
        return [self.encoder.backbone]

    def bytes_per_sample(self) -> float:
        return 2.0 * self.encoder.score_dim  # float16 embeddings, as `influcoder index` stores them

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        self.scored = (self.encoder.encode_pool(pool, self.batch_size), self.query_vectors(queries))
        return self.scored[0] @ self.scored[1].T

    def query_vectors(self, queries: Sequence[Sample]) -> np.ndarray:
        return self.encoder.encode_queries(queries, self.batch_size)


class Semantic(EncoderScorer):
    """The untrained backbone of the distilled encoder (the paper's "Semantic" baseline)."""

    name = "semantic"
    description = "untrained encoder cosine"


class Distilled(EncoderScorer):
    """The distilled influence encoder."""

    name = "influcoder"
    description = "distilled encoder cosine"


class SubspaceDistilled(Distilled):
    """A subspace encoder scored as `attribute` scores it: each pool sample's predicted coordinates against
    each query's exact gradient coordinates, read from the labels directory's stored gradients (what the query's
    own gradient gives; `attribute` computes it with the decoder)."""

    description = "subspace encoder coordinates x exact query gradient coordinates"

    def __init__(self, encoder, subspace, labels_dir, batch_size: int = 32):
        super().__init__(encoder, batch_size)
        self.subspace, self.labels_dir = subspace, labels_dir

    def query_vectors(self, queries: Sequence[Sample]) -> np.ndarray:
        from pathlib import Path

        from influcoder.encoder.subspace_distill import stored_gradients

        return self.subspace.coordinates(stored_gradients(Path(self.labels_dir), [q.id for q in queries]))
