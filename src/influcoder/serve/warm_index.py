"""An index opened for serving: what `Influcoder.attribute` rereads from disk on every call, read once.

`EmbeddingIndex.samples()` scans every segment's JSONL (parsing each record to rebuild byte offsets and ids),
and `coverage()` / `sample_embeddings()` load their ``.npy`` files, on each call: right for a command that
attributes once, a full pool scan per request for a server. A served index is never written while it is
open (`influcoder index` would need the directory's lock and a new segment), so these answers stay valid for
the server's life and are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from influcoder.attribution.index import EmbeddingIndex
from influcoder.data.records import Sample
from influcoder.data.stream import sample_ids


class WarmIndex(EmbeddingIndex):
    """`EmbeddingIndex` whose samples, coverage and spread sample are read on first use and kept."""

    def __init__(self, path):
        super().__init__(path)
        self._samples: Sequence[Sample] | None = None
        self._coverage: tuple[np.ndarray | None] | None = None
        self._spread_samples: dict[tuple[int, int], np.ndarray] = {}
        self._rows: dict[str, int] | None = None

    def samples(self) -> Sequence[Sample]:
        if self._samples is None:
            self._samples = super().samples()
        return self._samples

    def coverage(self) -> np.ndarray | None:
        if self._coverage is None:
            self._coverage = (super().coverage(),)
        return self._coverage[0]

    def sample_embeddings(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        if (n, seed) not in self._spread_samples:
            self._spread_samples[(n, seed)] = super().sample_embeddings(n, seed)
        return self._spread_samples[(n, seed)]

    def row_of(self, sample_id: str) -> int | None:
        """The row of a sample id (None: not in the index)."""
        if self._rows is None:
            self._rows = {sid: row for row, sid in enumerate(sample_ids(self.samples()))}
        return self._rows.get(sample_id)
