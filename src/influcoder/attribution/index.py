"""Step 3 of the paper: encode a pool once, keep the embeddings, and search them with FAISS.

An index directory::

    manifest.json          encoder fingerprint and text view, dim, dtype, FAISS factory, segments in order
    segment-00000/         a `FeatureStore` of embeddings (float16 by default) with the sample ids
    segment-00000.jsonl    that segment's samples (texts and meta), for printing and filtering
    index.faiss            the FAISS index over all segments, rows in segment order

`--append` adds a segment without touching the existing ones (ids must stay unique). Encoding streams in
shards and resumes after an interruption, as labelling does. Scores are inner products of unit vectors,
i.e. the encoder's predicted influence (cosines).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from influcoder.attribution.index_integrity import (
    REBUILD,
    check_segment_samples,
    open_faiss,
    read_cache,
    readable_faiss,
)
from influcoder.core import checksums
from influcoder.core.allocator import release_freed_memory
from influcoder.core.arrayfile import read_npy
from influcoder.core.atomic import atomic_output, write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.core.locks import LOCK_NAME, exclusive_directory
from influcoder.core.store import FeatureStore, npy_bytes
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample, fingerprint
from influcoder.data.stream import sample_ids

MANIFEST = "manifest.json"
FORMAT = "influcoder.index"
COVERAGE = "coverage.npy"
INDEX_FILES = (MANIFEST, "index.faiss*", f"{COVERAGE}*", "segment-*", "spread-sample-*", "config.yaml", ".*.tmp")
"""What an index directory holds that influcoder wrote (fnmatch patterns): all that --overwrite removes."""


def _faiss():
    import faiss

    # Flat search over many queries is much faster through BLAS (measured 6x at 100 queries x 1M x 384).
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


def encoder_fingerprint(encoder) -> str:
    """An index only answers queries of the same encoder on the same backend (`InfluenceEncoder.fingerprint`)."""
    return encoder.fingerprint()


def scoring_record(encoder_path) -> dict | None:
    """How this index's rows are scored, for a reader of the manifest: a subspace encoder's rows are predicted
    gradient coordinates, scored against each query's exact ones by default (`Influcoder.query_side`); a
    cosine encoder's rows against the encoded query. None when the encoder's directory is not known."""
    if not encoder_path:
        return None
    from influcoder.encoder.subspace import GradientSubspace

    subspace = GradientSubspace.load(encoder_path)
    if subspace is None:
        return {"objective": "cosine", "query_side": "encoded"}
    return {"objective": "subspace", "subspace_k": subspace.k, "query_side": "exact"}


def _remove_index(path: Path) -> None:
    """Delete an index directory for --overwrite, but only one that is recognisably an influcoder index (or
    empty): --overwrite once deleted whatever directory --out named, a folder of notes included."""
    import shutil

    entries = [p for p in path.iterdir() if p.name != LOCK_NAME] if path.is_dir() else []
    if path.is_dir() and not entries:
        return
    manifest = path / MANIFEST
    try:
        known = read_json(manifest).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        known = False
    if not known:
        raise InflucoderError(
            f"refusing to overwrite {path}: it is not an influcoder index (no {MANIFEST} of one); "
            "pick an empty or new --out"
        )
    foreign = [e.name for e in entries if not any(fnmatch.fnmatch(e.name, p) for p in INDEX_FILES)]
    for entry in entries:  # what an index writes; the lock this run holds and a user's own files stay
        if entry.name not in foreign:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if foreign:
        logging.getLogger(__name__).warning(
            "--overwrite kept files that influcoder did not write in %s: %s", path, ", ".join(sorted(foreign))
        )


class EmbeddingIndex:
    """Embeddings of a pool plus a FAISS index over them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / MANIFEST).exists():
            raise InflucoderError(f"{self.path} is not an influcoder index (no {MANIFEST}); run `influcoder index`")
        self.manifest = read_json(self.path / MANIFEST)
        if self.manifest.get("format") != FORMAT:
            raise InflucoderError(f"{self.path / MANIFEST}: not an influcoder index manifest")
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
        progress: bool = True,
        overwrite: bool = False,
        encoder_path: str | Path | None = None,
        ray=None,
    ) -> EmbeddingIndex:
        """Encode `samples` into a new index (or a new segment of an existing one with `append`); one writer
        at a time (`influcoder.core.locks`)."""
        path = Path(path)
        with exclusive_directory(path, "index"):
            return cls._build(encoder, samples, path, locals())

    @classmethod
    def _build(cls, encoder, samples: Sequence[Sample], path: Path, options: dict) -> EmbeddingIndex:
        """`build`'s work, under its lock; `options` are build's keyword arguments."""
        append, dtype, index_factory = options["append"], options["dtype"], options["index_factory"]
        shard_size, batch_size, progress = options["shard_size"], options["batch_size"], options["progress"]
        overwrite, encoder_path, ray = options["overwrite"], options["encoder_path"], options["ray"]
        encoder_fp = encoder_fingerprint(encoder)
        if (path / MANIFEST).exists() and not overwrite:
            index = cls(path)
            m = index.manifest
            if m.get("encoder_backend", "torch") != encoder.backend:
                raise ArtifactMismatchError(
                    f"{path} was built with the {m.get('encoder_backend', 'torch')} encoder backend, not "
                    f"{encoder.backend}; pass --backend {m.get('encoder_backend', 'torch')} or use another --out"
                )
            if m["encoder_fingerprint"] != encoder_fp:
                raise ArtifactMismatchError(f"{path} was built with another encoder; use another --out")
            ids = sample_ids(samples)
            last = m["segments"][-1] if m["segments"] else None
            last_store = FeatureStore(path / last["name"]) if last else None
            differ = [f"{k} {m[k]!r}" for k, v in (("dtype", dtype), ("index_factory", index_factory)) if m[k] != v]
            if not append and last_store is not None and last_store.manifest["shard_size"] != shard_size:
                differ.append(f"shard size {last_store.manifest['shard_size']}")
            if differ:  # a rerun with other options used to answer 'done' and keep the old index untouched
                raise ArtifactMismatchError(
                    f"{path} holds an index built with {', '.join(differ)}, not what this run asks for; "
                    "use the same options, another --out, or --overwrite"
                )
            if not m["segments"]:  # killed between writing the manifest and registering the first segment
                pending = "segment-00000"
            elif last_store is not None and not last_store.complete:
                if last_store.ids != ids:  # an interrupted build or append: resume it only with the same data
                    raise InflucoderError(
                        f"{path / last['name']} is an interrupted build of other samples; rerun it with the same "
                        "data, or pass --overwrite"
                    )
                pending = last["name"]
            elif not append:
                same = last_store is not None and last_store.config.get("data_fingerprint") == fingerprint(samples)
                if len(m["segments"]) == 1 and same:
                    pending = None  # the same build finished already: only make sure FAISS is in sync
                else:
                    raise InflucoderError(f"{path} already holds an index; pass --append to add to it or --overwrite")
            else:
                known = set(index.ids())
                dup = next((i for i in ids if i in known), None)
                if dup is not None:
                    raise InflucoderError(f"id {dup!r} is already in {path}; appended samples need new ids")
                pending = f"segment-{len(m['segments']):05d}"
        else:
            if append:
                raise InflucoderError(f"--append needs an existing index at {path}")
            if overwrite and path.exists():
                _remove_index(path)
            path.mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": FORMAT,
                "version": 1,
                "encoder_fingerprint": encoder_fp,
                "encoder_backend": encoder.backend,
                "encoder_config": {k: v for k, v in encoder.config.__dict__.items() if k != "label_config"},
                "label_config": encoder.config.label_config,
                "dim": encoder.score_dim,
                "prior_columns": encoder.score_dim - encoder.dim,  # a length prior's column after the embedding
                "dtype": dtype,
                "index_factory": index_factory,
                "segments": [],
                "encoder_path": str(Path(encoder_path).resolve()) if encoder_path else None,
                "scoring": scoring_record(encoder_path),
            }
            write_json_atomic(path / MANIFEST, manifest)
            index, pending = cls(path), "segment-00000"
        if pending is not None:
            index._encode_segment(encoder, samples, pending, shard_size, batch_size, progress, ray, encoder_path)
        index._sync_faiss(progress)
        return index

    def _encode_segment(
        self, encoder, samples, name, shard_size, batch_size, progress, ray=None, encoder_path=None
    ) -> None:
        config = {"encoder_fingerprint": self.manifest["encoder_fingerprint"], "data_fingerprint": fingerprint(samples)}
        store = FeatureStore.create_or_resume(
            self.path / name, config, sample_ids(samples), self.dim, shard_size, self.manifest["dtype"]
        )
        write_samples(samples, self.path / f"{name}.jsonl")
        if not any(seg["name"] == name for seg in self.manifest["segments"]):
            self.manifest["segments"].append({"name": name, "n": len(samples)})
            write_json_atomic(self.path / MANIFEST, self.manifest)
        missing = store.missing_shards()
        if ray is not None and missing:
            from influcoder.attribution.distributed import EncodeShardJob
            from influcoder.core.ray import run_shards_on_ray

            if encoder_path is None:
                raise InflucoderError("indexing on Ray needs the encoder as a directory (encoder_path)")
            job = EncodeShardJob(
                str(Path(encoder_path).resolve()),
                str((self.path / f"{name}.jsonl").resolve()),
                str(store.path.resolve()),
                batch_size,
                backend=encoder.backend,
            )
            run_shards_on_ray(job, missing, ray.address, ray.num_actors, ray.gpus_per_actor)
            missing = FeatureStore(store.path).missing_shards()
            if missing:
                raise InflucoderError(f"Ray run left shards {missing[:5]} of {store.path} unwritten; rerun")
        done = len(samples) - sum(len(store.shard_rows(i)) for i in missing)
        with tqdm(total=len(samples), initial=done, desc=f"encode {name}", unit="sample", disable=not progress) as bar:
            for i in missing:
                rows = store.shard_rows(i)
                store.write_shard(i, encoder.encode_pool([samples[j] for j in rows], batch_size))
                release_freed_memory()  # memory flat in the pool's size (`influcoder.core.allocator`)
                bar.update(len(rows))

    def _sync_faiss(self, progress: bool) -> None:
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
            factory = self.manifest["index_factory"]
            index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                sample = self.embeddings(limit=100_000)
                if len(sample) < 40:
                    raise InflucoderError(f"index factory {factory!r} needs training data; the pool is too small")
                index.train(sample)
        skip = index.ntotal
        for block in tqdm(self.iter_embeddings(), desc="faiss add", disable=not progress, leave=False):
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
        return self.manifest["dim"]

    def __len__(self) -> int:
        return sum(s["n"] for s in self.manifest["segments"])

    def ids(self) -> list[str]:
        return [i for s in self.manifest["segments"] for i in FeatureStore(self.path / s["name"]).ids]

    def samples(self) -> Sequence[Sample]:
        """The indexed samples in row order, read from the segments' JSONL files on access (an index of
        millions is never loaded whole to print its top hits)."""
        from influcoder.data.stream import ConcatSamples, JsonlSamples

        parts = []
        for segment in self.manifest["segments"]:
            parts.append(JsonlSamples(self.path / f"{segment['name']}.jsonl"))
            check_segment_samples(self.path, segment, parts[-1].ids)
        return ConcatSamples(parts)

    def iter_embeddings(self) -> Iterator[np.ndarray]:
        """float32 blocks of embeddings in index row order (one store shard at a time)."""
        for s in self.manifest["segments"]:
            for _, block in FeatureStore(self.path / s["name"]).iter_blocks():
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

    def sample_embeddings(self, n: int = 4096, seed: int = 0) -> np.ndarray:
        """A seeded sample of `n` rows' embeddings (all rows when fewer), without a length prior's column: the
        reference pool over which a query's spread is measured (`influcoder.encoder.coverage.query_spread`).

        Drawing it reads every shard, so it is kept in the index directory (``spread-sample-<rows>-<n>-<seed>
        .npy``: an append changes the row count and so the name) and later calls read that file only."""
        cache = self.path / f"spread-sample-{len(self)}-{n}-{seed}.npy"
        width = self.dim - self.manifest.get("prior_columns", 0)
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
        if encoder_fingerprint(encoder) != self.manifest["encoder_fingerprint"]:
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
        width = self.dim - self.manifest.get("prior_columns", 0)  # coverage lives in the embedding space only
        blocks = [reference.score(block[:, :width]) for block in self.iter_embeddings()]
        scores = np.concatenate(blocks or [np.zeros(0)])
        checksums.write_checked(self.path / COVERAGE, npy_bytes(scores, "float32"), fsync=True)
        record = {
            "threshold": reference.threshold,
            "k": reference.k,
            "rows": int(len(scores)),
            "share_covered": float(reference.covered(scores).mean()) if len(scores) else 0.0,
        }
        self.manifest["coverage"] = record
        write_json_atomic(self.path / MANIFEST, self.manifest)
        return record

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
        total = sum(FeatureStore(self.path / s["name"]).bytes_per_sample() * s["n"] for s in self.manifest["segments"])
        return total / max(len(self), 1)
