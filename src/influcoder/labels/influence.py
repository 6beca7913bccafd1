"""First-order influence between two feature stores: cosine similarity, computed block by block.

influence(pool_i, query_j) = cos(grad_i, grad_j) (the paper's eq. 1; no inverse Hessian, as LESS). The pool
x query matrix is computed one pool shard at a time against one query shard at a time, so neither store is
ever fully in memory; the result is written as a memory-mapped .npy, with both id lists beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from influcoder.core import checksums
from influcoder.core.arrayfile import read_npy
from influcoder.core.atomic import atomic_output, write_json_atomic
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.jsonfile import field, read_json
from influcoder.core.store import FeatureStore, npy_bytes

REBUILD = "rerun `influcoder label` with the same `out` (the matrix is rebuilt from the stores)"


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_matrix(pool: FeatureStore, queries: FeatureStore, out: np.ndarray | None = None) -> np.ndarray:
    """(n_pool, n_query) cosine similarities, filled shard pair by shard pair into `out` (or a new array)."""
    if pool.dim != queries.dim:
        raise InflucoderError(f"feature dims differ: pool {pool.dim}, queries {queries.dim}")
    n_pool, n_query = len(pool.ids), len(queries.ids)
    if out is None:
        out = np.empty((n_pool, n_query), dtype=np.float32)
    for p_start, p_block in pool.iter_blocks():
        p_norm = normalize_rows(p_block)
        for q_start, q_block in queries.iter_blocks():
            out[p_start : p_start + len(p_norm), q_start : q_start + len(q_block)] = p_norm @ normalize_rows(q_block).T
    return out


def top_k(scores: np.ndarray, k: int, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores along `axis`, best first (ties by index)."""
    moved = np.moveaxis(scores, axis, -1)
    k = min(k, moved.shape[-1])
    order = np.argsort(-moved, axis=-1, kind="stable")[..., :k]
    return order, np.take_along_axis(moved, order, axis=-1)


def aggregate(scores: np.ndarray, how: str = "mean") -> np.ndarray:
    """One score per pool sample over the query set: mean (DATE-LM) or max."""
    if how == "mean":
        return scores.mean(axis=1)
    if how == "max":
        return scores.max(axis=1)
    raise InflucoderError(f"unknown aggregation {how!r}: use mean or max")


@dataclass
class InfluenceMatrix:
    """A pool x query score matrix with the ids of its rows and columns."""

    scores: np.ndarray
    pool_ids: list[str]
    query_ids: list[str]

    def save(self, directory: str | Path, extra: dict | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = npy_bytes(self.scores, "float32")
        with atomic_output(directory / "scores.npy", fsync=True) as tmp:
            tmp.write_bytes(data)
        record = {"scores_bytes": len(data), "scores_sha256": hashlib.sha256(data).hexdigest()}
        write_json_atomic(
            directory / "ids.json",
            {"pool_ids": self.pool_ids, "query_ids": self.query_ids, **record, **(extra or {})},
        )

    @classmethod
    def load(cls, directory: str | Path) -> InfluenceMatrix:
        """The matrix saved in `directory`, refused naming the file when it is cut, altered (its sha256: every
        reader reads it whole, so the hash costs less than the read), holds NaN or Inf, or does not fit its ids."""
        directory = Path(directory)
        path = directory / "scores.npy"
        if not path.exists():
            raise InflucoderError(f"{directory} holds no influence matrix (scores.npy)")
        ids = read_json(directory / "ids.json")
        pool_ids, query_ids = (field(ids, key, directory / "ids.json", list) for key in ("pool_ids", "query_ids"))
        size = path.stat().st_size
        if ids.get("scores_bytes") is not None and size != ids["scores_bytes"]:
            raise InflucoderError(
                f"{path} is {size} bytes but was written with {ids['scores_bytes']}: truncated or replaced; {REBUILD}"
            )
        scores = read_npy(path, REBUILD, mmap=True, shape=(len(pool_ids), len(query_ids)))
        finite = np.isfinite(scores)
        if not finite.all():  # named by its cell before the checksum, which would only say "changed"
            row, col = (int(x[0]) for x in np.nonzero(~finite))
            raise InflucoderError(
                f"{path}: {int((~finite).sum())} non-finite value(s), the first at pool {pool_ids[row]!r} x query "
                f"{query_ids[col]!r} ({scores[row, col]}); {REBUILD}"
            )
        if ids.get("scores_sha256") is not None and checksums.digest_of(path) != ids["scores_sha256"]:
            raise DamagedFileError(f"{path}: content differs from what was written (sha256 mismatch); {REBUILD}")
        return cls(scores, pool_ids, query_ids)

    @classmethod
    def from_stores(cls, pool: FeatureStore, queries: FeatureStore) -> InfluenceMatrix:
        return cls(cosine_matrix(pool, queries), list(pool.ids), list(queries.ids))
