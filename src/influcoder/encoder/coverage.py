"""How far a text lies from what the encoder was distilled on: the out-of-coverage flag.

A distilled encoder is faithful on the tasks its labels covered and much less so elsewhere (per-anchor rho on
seen and unseen tasks: docs/results/ranking.md). A user cannot tell from a score which case they are in, so
every query and every returned sample gets a *coverage score*: the mean cosine, in the encoder's own space, to
its k nearest labelled training samples (pool and queries).

The threshold is calibrated on the distillation's validation split, samples held out of training but drawn
from its tasks: a text scoring below the `quantile` (default 5%) of the validation samples' scores lies
farther from the labelled data than nearly every in-coverage text does, and is flagged. The reference is
saved beside the encoder (`coverage.npz`, ~0.8 KB per labelled sample in float16) so `index` and `attribute`
can score without the labels.

A second, query-level signal predicts failure better: the *spread* of a query's predicted influence over the
pool (the standard deviation of its cosines to the pool samples). A query the encoder has learned to rank gets
widely spread scores; one it cannot place gets scores that hardly differ, and their order is noise. Low
spread predicts per-anchor rho < 0.3 better than low coverage does, on the ranking experiment's encoders and
the generalization benchmark's (`benchmarks/flag_signals.py`; figures in docs/results/ranking.md and
docs/results/generalization.md). Its threshold is the `quantile` of the validation queries' spreads
over the validation pool; at attribution time a query's spread is taken over a seeded sample of the index.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from influcoder.core import checksums
from influcoder.core.arrayfile import check_shape, read_npz
from influcoder.core.errors import DamagedFileError
from influcoder.data.records import Sample
from influcoder.encoder.run_record import DistillRun, TrainingRecord
from influcoder.labels.influence import normalize_rows

FILE = "coverage.npz"
REMEDY = "restore it or rerun `influcoder distill` with the same `out` (it is rewritten at the end)"
BLOCK_ENTRIES = 1 << 22
"""Most similarities `CoverageReference.score` holds at once (4M float32: 16 MB, twice with the partition)."""


@dataclass
class CoverageReference:
    """Unit embeddings of the labelled training samples, k, and the calibrated threshold."""

    embeddings: np.ndarray
    k: int
    threshold: float
    quantile: float
    spread_threshold: float | None = None
    """Queries whose predicted influence spreads less than this over a pool are flagged (None: not calibrated,
    e.g. a reference saved before spreads were)."""

    def confident(self, spreads: np.ndarray) -> np.ndarray:
        """Whether each query's spread reaches the calibrated threshold (all True when there is none)."""
        spreads = np.asarray(spreads, dtype=np.float64)
        return spreads >= self.spread_threshold if self.spread_threshold is not None else np.ones(spreads.shape, bool)

    def score(self, embeddings: np.ndarray, block_entries: int = BLOCK_ENTRIES) -> np.ndarray:
        """Mean cosine to the k nearest reference samples, per row of `embeddings` (higher: better covered).

        Rows are scored in blocks of at most `block_entries` similarities, so memory stays bounded however
        large the reference grows (a fixed 4,096-row block held rows x N floats twice over: at the end of a
        100K-sample distillation, its 10K validation rows against 90K references held ~3 GB: docs/results/scale.md)."""
        reference = self.embeddings.astype(np.float32)
        k = min(self.k, len(reference))
        out = np.empty(len(embeddings), dtype=np.float64)
        batch = max(1, block_entries // max(1, len(reference)))
        for start in range(0, len(embeddings), batch):
            rows = np.asarray(embeddings[start : start + batch], dtype=np.float32)
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            similarity = rows @ reference.T
            nearest = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, -k:]
            out[start : start + batch] = nearest.mean(axis=1)
        return out

    def covered(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def save(self, directory: str | Path) -> None:
        """Write ``coverage.npz`` with its checksum record (`influcoder.core.checksums`)."""
        meta = {"k": self.k, "threshold": self.threshold, "quantile": self.quantile}
        meta = json.dumps({**meta, "spread_threshold": self.spread_threshold})
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=self.embeddings.astype(np.float16), meta=np.array(meta))
        checksums.write_checked(Path(directory) / FILE, buffer.getvalue())

    @classmethod
    def load(cls, directory: str | Path) -> CoverageReference | None:
        """The reference saved in an encoder directory (or its `best/`), or None when there is none; refused
        naming the file when it is damaged (read whole, so its sha256 is checked too)."""
        for candidate in (Path(directory) / FILE, Path(directory) / "best" / FILE):
            if candidate.exists():
                return cls._read(candidate)
        return None

    @classmethod
    def _read(cls, path: Path) -> CoverageReference:
        checksums.check(path, REMEDY, full=True)
        data = read_npz(path, REMEDY, ("embeddings", "meta"))
        try:
            meta = json.loads(str(data["meta"]))
            values = (int(meta["k"]), float(meta["threshold"]), float(meta["quantile"]), meta.get("spread_threshold"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DamagedFileError(f"{path}: its meta record is damaged ({exc}); {REMEDY}") from None
        check_shape(path, data["embeddings"], (None, None), REMEDY)
        return cls(data["embeddings"].astype(np.float32), *values)


def query_spread(query_embeddings: np.ndarray, pool_embeddings: np.ndarray) -> np.ndarray:
    """Per query, the standard deviation of its cosines to the pool samples ((n,) out). Rows are scaled to
    unit length here: a subspace encoder's vectors are coordinates, not unit vectors, and a query's exact
    gradient coordinates would otherwise spread in proportion to its gradient's norm, not to how differently
    it ranks the pool."""
    queries = normalize_rows(query_embeddings)
    pool = normalize_rows(pool_embeddings)
    if len(pool) < 2:
        return np.full(len(queries), np.nan)
    return (pool @ queries.T).std(axis=0).astype(np.float64)


def build_reference(
    encoder,
    labelled: Sequence[Sample],
    validation: Sequence[Sample],
    k: int = 10,
    quantile: float = 0.05,
    validation_pool: Sequence[Sample] = (),
    validation_queries: Sequence[Sample] = (),
    known: Mapping[Sample, np.ndarray] | None = None,
    query_vectors: np.ndarray | None = None,
) -> CoverageReference:
    """Embed the labelled training samples; calibrate the coverage threshold on the validation samples'
    scores (with the reference rounded to float16 first, as it is saved) and, given the validation split's
    pool and queries apart, the spread threshold on the validation queries' spreads over that pool.

    Each distinct sample is encoded once, however many of these lists hold it (with all-pairs labels every
    training text is both pool and query, and the validation pool and queries are also `validation`): a
    decoder backbone pays a full forward pass per text. `known` maps samples to embeddings the caller already
    holds from this very encoder (a frozen backbone's ridge fit): those are not encoded again.
    `query_vectors`: the validation queries' vectors as `attribute` scores a query, where those are not its
    embeddings (a subspace encoder's queries: their exact gradient coordinates), in `validation_queries` order."""
    embed = _Embeddings(encoder, known)
    embed.add([*labelled, *validation, *validation_pool, *validation_queries])
    embeddings = embed(labelled).astype(np.float16).astype(np.float32)
    reference = CoverageReference(embeddings, k, float("-inf"), quantile)
    if len(validation):
        reference.threshold = float(np.quantile(reference.score(embed(validation)), quantile))
    if len(validation_pool) >= 2 and len(validation_queries):
        queries = embed(validation_queries) if query_vectors is None else query_vectors
        spreads = query_spread(queries, embed(validation_pool))
        reference.spread_threshold = float(np.quantile(spreads, quantile))
    return reference


class _Embeddings:
    """Embeddings by sample (equal id and text: the same key), each encoded once, in one `encode` call."""

    def __init__(self, encoder, known: Mapping[Sample, np.ndarray] | None):
        self.encoder = encoder
        self.by_sample: dict[Sample | str, np.ndarray] = dict(known or {})

    def add(self, items: Sequence[Sample | str]) -> None:
        missing = list(dict.fromkeys(x for x in items if x not in self.by_sample))
        if missing:
            self.by_sample.update(zip(missing, self.encoder.encode(missing), strict=True))

    def __call__(self, items: Sequence[Sample | str]) -> np.ndarray:
        if not items:
            return self.encoder.encode([])
        self.add(items)
        return np.stack([self.by_sample[x] for x in items]).astype(np.float32)


def write_coverage_reference(
    out: Path,
    samples: Sequence[Sample],
    device: str = "auto",
    record: TrainingRecord | None = None,
    encoder=None,
    known: Mapping[Sample, np.ndarray] | None = None,
    query_vectors: np.ndarray | None = None,
) -> CoverageReference:
    """The coverage reference of a finished `distill` run, saved into ``out/best``: its training samples are
    the reference, its validation samples calibrate the thresholds. `record` is the run's training record
    when the caller holds it (read from ``out/training.json`` otherwise); `encoder` the best encoder when the
    caller holds it (loaded from ``out/best`` otherwise), with `known` embeddings it already computed;
    `query_vectors` as `build_reference` takes them, in the record's validation query order."""
    from influcoder.encoder.model import InfluenceEncoder

    run = DistillRun(out)
    record = record if record is not None else run.record()
    by_id = {s.id: s for s in samples}
    labelled = [by_id[i] for i in record.train_pool_ids + record.train_query_ids]
    val_pool, val_queries = [by_id[i] for i in record.val_pool_ids], [by_id[i] for i in record.val_query_ids]
    encoder = encoder if encoder is not None else InfluenceEncoder.from_pretrained(run.best, device=device)
    reference = build_reference(
        encoder,
        labelled,
        val_pool + val_queries,
        validation_pool=val_pool,
        validation_queries=val_queries,
        known=known,
        query_vectors=query_vectors,
    )
    reference.save(run.best)
    return reference
