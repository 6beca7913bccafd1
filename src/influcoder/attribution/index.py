"""Step 3 of the paper: encode a pool once, keep the embeddings, and search them with FAISS.

An index directory::

    manifest.json          encoder fingerprint and text view, dim, dtype, FAISS factory, segments in order
    segment-00000/         a `FeatureStore` of embeddings (float16 by default) with the sample ids
    segment-00000.jsonl    that segment's samples (texts and meta), for printing and filtering
    index.faiss            the FAISS index over all segments, rows in segment order

`--append` adds a segment without touching the existing ones (ids must stay unique). Encoding streams in
shards and resumes after an interruption, as labelling does. Scores are inner products of unit vectors,
i.e. the encoder's predicted influence (cosines).

The manifest is a typed record (`influcoder.attribution.index_manifest.IndexManifest`); what a build does
before it encodes (its options, a new manifest, where a rerun resumes) is `influcoder.attribution.index_build`;
the checks of the files against each other are `influcoder.attribution.index_integrity`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from influcoder.attribution.index_build import (
    IndexBuildOptions,
    encode_on_ray,
    encoder_fingerprint,
    next_segment,
    start_index,
)
from influcoder.attribution.index_integrity import (
    REBUILD,
    check_segment_samples,
    open_faiss,
    read_cache,
    readable_faiss,
)
from influcoder.attribution.index_manifest import (
    COVERAGE,
    FORMAT,
    MANIFEST,
    CoverageRecord,
    IndexManifest,
    IndexSegment,
)
from influcoder.core import checksums
from influcoder.core.allocator import release_freed_memory
from influcoder.core.arrayfile import read_npy
from influcoder.core.atomic import atomic_output
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.locks import exclusive_directory
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.core.store import FeatureStore, npy_bytes
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample, fingerprint
from influcoder.data.stream import sample_ids

__all__ = ["COVERAGE", "FORMAT", "MANIFEST", "EmbeddingIndex", "IndexBuildOptions", "IndexManifest", "read_mapped"]


def _faiss():
    import faiss

    # Flat search over many queries is much faster through BLAS than query by query: batches of 20 or more use it.
    faiss.cvar.distance_compute_blas_threshold = 20
    return faiss


def read_mapped(faiss, path: Path):
    """Read a FAISS index memory-mapped and read-only. `IO_FLAG_MMAP_IFC` maps the codes of flat, scalar- and
    product-quantized, HNSW and IVF indexes alike in FAISS 1.15 (each checked: same search results;
    `IO_FLAG_MMAP` maps IVF lists only, and the two flags together fail on IVF). FAISS releases without the
    flag (the project allows >= 1.8) read the index into memory, as before."""
    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
    if flag is None:
        return faiss.read_index(str(path))
    return faiss.read_index(str(path), flag | faiss.IO_FLAG_READ_ONLY)


class EmbeddingIndex:
    """Embeddings of a pool plus a FAISS index over them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = IndexManifest.load(self.path)
        self._faiss_index = None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        encoder,
        samples: Sequence[Sample],
        path: str | Path,
        append: bool = False,
        dtype: str = "float16",
        index_factory: str = "Flat",
        shard_size: int = 1024,
        batch_size: int = 32,
        progress: bool | None = None,
        overwrite: bool = False,
        encoder_path: str | Path | None = None,
        ray=None,
    ) -> EmbeddingIndex:
        """Encode `samples` into a new index (or a new segment of an existing one with `append`); one writer
        at a time (`influcoder.core.locks`). The other keyword arguments are `IndexBuildOptions`' fields;
        `progress`: the bars on (True) or off (False), None: the switch in `influcoder.core.progress`."""
        options = IndexBuildOptions(
            append=append,
            dtype=dtype,
            index_factory=index_factory,
            shard_size=shard_size,
            batch_size=batch_size,
            overwrite=overwrite,
            encoder_path=encoder_path,
            ray=ray,
        )
        path = Path(path)
        with exclusive_directory(path, "index"), progress_bars(progress):
            return cls._build(encoder, samples, path, options)

    @classmethod
    def _build(cls, encoder, samples: Sequence[Sample], path: Path, options: IndexBuildOptions) -> EmbeddingIndex:
        """`build`'s work, under its lock: resume or extend the index at `path`, or start one
        (`influcoder.attribution.index_build`), then bring its FAISS file up to date."""
        if (path / MANIFEST).exists() and not options.overwrite:
            index = cls(path)
            pending = next_segment(index, encoder, samples, options)
        else:
            start_index(path, encoder, options)
            index, pending = cls(path), "segment-00000"
        if pending is not None:
            index._encode_segment(encoder, samples, pending, options)
        index._sync_faiss()
        return index

    def _encode_segment(self, encoder, samples, name: str, options: IndexBuildOptions) -> None:
        """Encode `samples` into the segment `name` (created, or resumed from the shards it lacks)."""
        config = {"encoder_fingerprint": self.manifest.encoder_fingerprint, "data_fingerprint": fingerprint(samples)}
        store = FeatureStore.create_or_resume(
            self.path / name, config, sample_ids(samples), self.dim, options.shard_size, self.manifest.dtype
        )
        write_samples(samples, self.path / f"{name}.jsonl")
        if not any(segment.name == name for segment in self.manifest.segments):
            self.manifest.segments.append(IndexSegment(name, len(samples)))
            self.manifest.save(self.path)
        missing = store.missing_shards()
        if options.ray is not None and missing:
            encode_on_ray(store, self.path / f"{name}.jsonl", missing, encoder, options)
            missing = []
        done = len(samples) - sum(len(store.shard_rows(i)) for i in missing)
        with progress_bar(total=len(samples), initial=done, desc=f"encode {name}", unit="sample") as bar:
            for i in missing:
                rows = store.shard_rows(i)
                vectors = encoder.encode_pool([samples[j] for j in rows], options.batch_size, show_progress_bar=False)
                store.write_shard(i, vectors)
                release_freed_memory()  # memory flat in the pool's size (`influcoder.core.allocator`)
                bar.update(len(rows))

    def _sync_faiss(self) -> None:
        """Bring index.faiss up to date: add the rows it lacks (after an append or a crash), else build it.

        A trained factory (IVF/PQ) is trained on the embeddings themselves when the index is first built.
        """
        faiss = _faiss()
        existing = self.path / "index.faiss"
        index = readable_faiss(existing, lambda file: read_mapped(faiss, file))
        if index is not None and index.ntotal == len(self):
            return  # up to date: checked without loading it
        index = faiss.read_index(str(existing)) if index is not None else None
        if index is None or index.ntotal > len(self):
            factory = self.manifest.index_factory
            index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                sample = self.embeddings(limit=100_000)
                if len(sample) < 40:
                    raise InflucoderError(f"index factory {factory!r} needs training data; the pool is too small")
                index.train(sample)
        skip = index.ntotal
        for block in progress_bar(self.iter_embeddings(), desc="faiss add", unit="shard", leave=False):
            if skip >= len(block):
                skip -= len(block)
                continue
            index.add(np.ascontiguousarray(block[skip:]))
            skip = 0
        with atomic_output(existing) as tmp:
            faiss.write_index(index, str(tmp))
            checksums.record_file(tmp, existing)  # its record first, as a store's shards
        self._faiss_index = None

    # ------------------------------------------------------------------ reading
    @property
    def dim(self) -> int:
        return self.manifest.dim

    def __len__(self) -> int:
        return self.manifest.rows

    def ids(self) -> list[str]:
        return [i for s in self.manifest.segments for i in FeatureStore(self.path / s.name).ids]

    def samples(self) -> Sequence[Sample]:
        """The indexed samples in row order, read from the segments' JSONL files on access (an index of
        millions is never loaded whole to print its top hits)."""
        from influcoder.data.stream import ConcatSamples, JsonlSamples

        parts = []
        for segment in self.manifest.segments:
            parts.append(JsonlSamples(self.path / f"{segment.name}.jsonl"))
            check_segment_samples(self.path, segment, parts[-1].ids)
        return ConcatSamples(parts)

    def iter_embeddings(self) -> Iterator[np.ndarray]:
        """float32 blocks of embeddings in index row order (one store shard at a time)."""
        for segment in self.manifest.segments:
            for _, block in FeatureStore(self.path / segment.name).iter_blocks():
                yield np.ascontiguousarray(block, dtype=np.float32)

    def embeddings(self, limit: int | None = None) -> np.ndarray:
        blocks, total = [], 0
        for block in self.iter_embeddings():
            blocks.append(block)
            total += len(block)
            if limit is not None and total >= limit:
                break
        out = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), dtype=np.float32)
        return out[:limit] if limit is not None else out

    def rows_embeddings(self, rows: Sequence[int]) -> np.ndarray:
        """The stored vectors of `rows` (any order, repeats allowed), in that order: one pass over the shards."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise InflucoderError(f"row out of range for an index of {len(self)} rows")
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        start = 0
        for block in self.iter_embeddings():
            inside = (rows >= start) & (rows < start + len(block))
            out[inside] = block[rows[inside] - start]
            start += len(block)
        return out

    def sample_embeddings(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """A seeded sample of `n` rows' embeddings (all rows when fewer), without a length prior's column: the
        reference pool over which a query's spread is measured (`influcoder.encoder.coverage.query_spread`).

        Drawing it reads every shard, so it is kept in the index directory (``spread-sample-<rows>-<n>-<seed>
        .npy``: an append changes the row count and so the name) and later calls read that file only."""
        cache = self.path / f"spread-sample-{len(self)}-{n}-{seed}.npy"
        width = self.manifest.embedding_dim
        cached = read_cache(cache, width)
        if cached is not None:
            return cached
        rows = np.arange(len(self))
        if len(rows) > n:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
        wanted, parts, start = set(rows.tolist()), [], 0
        for block in self.iter_embeddings():
            local = [r - start for r in range(start, start + len(block)) if r in wanted]
            parts.append(block[local])
            start += len(block)
        sample = np.concatenate(parts)[:, :width] if parts else np.zeros((0, width), dtype=np.float32)
        try:
            checksums.write_checked(cache, npy_bytes(sample, "float32"))
        except OSError:  # a read-only index still answers; it draws the sample again next time
            pass
        return sample

    @property
    def faiss_index(self):
        """The FAISS index, memory-mapped read-only: its codes stay in the page cache (shared with other
        readers, reclaimable) instead of being copied into this process, so a search's own memory does not grow
        with the pool (a Flat index is 1.5 KB per sample). Same results as a loaded index (tested)."""
        if self._faiss_index is None:
            self._faiss_index = open_faiss(self.path, self.manifest, lambda file: read_mapped(_faiss(), file))
        return self._faiss_index

    def check_encoder(self, encoder) -> None:
        if encoder_fingerprint(encoder) != self.manifest.encoder_fingerprint:
            raise ArtifactMismatchError(f"{self.path} was built with another encoder than the one given")

    def search(self, query_embeddings: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row indices), each (n_queries, k), best first."""
        index = self.faiss_index
        if nprobe is not None:
            _faiss().ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        k = min(k, len(self))
        scores, rows = index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), k)
        return scores, rows

    def score_pool(self, query_embeddings: np.ndarray, aggregate: str = "mean") -> np.ndarray:
        """Influence of every pool sample on the query set: mean (DATE-LM) or max cosine over queries.

        Exact, streamed over the stored embeddings: mean of cosines of unit vectors = dot with the mean query.
        """
        queries = np.asarray(query_embeddings, dtype=np.float32)
        parts = []
        for block in self.iter_embeddings():
            if aggregate == "mean":
                parts.append(block @ queries.mean(axis=0))
            elif aggregate == "max":
                parts.append((block @ queries.T).max(axis=1))
            else:
                raise InflucoderError(f"unknown aggregation {aggregate!r}: use mean or max")
        return np.concatenate(parts)

    def write_coverage(self, reference) -> dict:
        """Score every indexed sample's coverage (`influcoder.encoder.coverage`) into ``coverage.npy`` (row
        order) and record the threshold and the covered share in the manifest; returns that record."""
        width = self.manifest.embedding_dim  # coverage lives in the embedding space only
        blocks = [reference.score(block[:, :width]) for block in self.iter_embeddings()]
        scores = np.concatenate(blocks or [np.zeros(0)])
        checksums.write_checked(self.path / COVERAGE, npy_bytes(scores, "float32"), fsync=True)
        self.manifest.coverage = CoverageRecord(
            threshold=reference.threshold,
            k=reference.k,
            rows=int(len(scores)),
            share_covered=float(reference.covered(scores).mean()) if len(scores) else 0.0,
        )
        self.manifest.save(self.path)
        return self.manifest.coverage.to_record()

    def coverage(self) -> np.ndarray | None:
        """Per-row coverage scores written by `write_coverage`, or None (none written, or stale after an
        --append: rows were added since)."""
        path = self.path / COVERAGE
        if not path.exists():
            return None
        checksums.check(path, REBUILD, full=True)  # rows x 4 bytes, read whole: the hash costs less than the read
        scores = read_npy(path, REBUILD, shape=(None,), finite=True)
        return scores if len(scores) == len(self) else None

    def bytes_per_sample(self) -> float:
        total = sum(FeatureStore(self.path / s.name).bytes_per_sample() * s.n for s in self.manifest.segments)
        return total / max(len(self), 1)
