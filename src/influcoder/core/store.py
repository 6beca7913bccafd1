"""Sharded on-disk feature arrays with a manifest: the artifact every long stage writes.

Layout of a store directory::

    manifest.json        what produced it (`config`), the sample ids in order, shard size, dim, dtype
    shard-00000.npy      rows [0, shard_size) of the features, plain .npy (never pickle)
    shard-00000.npy.sha256   its size and sha256, written before the shard is renamed into place
    shard-00001.npy      ...

A shard is written to a temporary file and renamed into place, so after a crash (even kill -9) every shard
on disk is whole and a rerun resumes at the first missing one. Rows of a shard depend only on that shard's
samples (batches never straddle shards), so resumed stores are bit-identical to uninterrupted ones.

A shard whose size differs from its recorded one (truncated, replaced) is refused on read; `verify()` (and
`influcoder verify`) checks every sha256. The checksums sit beside the shards, not in the manifest, because
the manifest lists every sample id and rewriting it per shard would make writing quadratic.

Opening an existing store for a request whose config, ids or shape differ raises
`ArtifactMismatchError` naming the fields that differ, instead of silently mixing two runs.
"""

from __future__ import annotations

import collections
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from influcoder.core import checksums
from influcoder.core.arrayfile import read_npy
from influcoder.core.atomic import sweep_stale_temporaries, write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, DamagedFileError, InflucoderError
from influcoder.core.jsonfile import field, read_json

MANIFEST = "manifest.json"


FORMAT = "influcoder.feature-store"
REDO_SHARD = "delete it and rerun the command that wrote it (the shard is recomputed)"


def _diff(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            out += _diff(expected.get(key), actual.get(key), f"{prefix}{key}.")
        return out
    if expected != actual:
        return [f"{prefix.rstrip('.')}: stored {_brief(actual)}, requested {_brief(expected)}"]
    return []


def _brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 80 else text[:77] + "..."


def npy_bytes(array: np.ndarray, dtype: str) -> bytes:
    """`array` as the bytes of a .npy file (never pickled), so its size and sha256 can be recorded before writing."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
    return buffer.getvalue()


class FeatureStore:
    """A directory of row shards of an (n, dim) array, one row per sample id."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise InflucoderError(f"{self.path} is not a feature store (no {MANIFEST})")
        self.manifest = read_json(manifest_path)
        if self.manifest.get("format") != FORMAT:
            raise InflucoderError(f"{manifest_path}: not an influcoder feature store manifest")
        for key, kind in (("n", int), ("shard_size", int), ("dim", int), ("dtype", str), ("ids", list)):
            field(self.manifest, key, manifest_path, kind)
        if len(self.manifest["ids"]) != self.manifest["n"] or self.manifest["shard_size"] < 1:
            raise DamagedFileError(
                f"{manifest_path}: lists {len(self.manifest['ids'])} ids for n = {self.manifest['n']} rows in shards "
                f"of {self.manifest['shard_size']}; restore it or rerun the command that wrote the store"
            )
        # Shards this object has not yet seen on disk, lowest first; pruned from the front as they appear, so
        # writing n shards costs O(n) existence checks in all, even with other processes writing beside it.
        self._missing: collections.deque[int] | None = None

    # ------------------------------------------------------------------ creation and resumption
    @classmethod
    def create_or_resume(
        cls,
        path: str | Path,
        config: dict[str, Any],
        ids: Sequence[str],
        dim: int,
        shard_size: int = 256,
        dtype: str = "float32",
        overwrite: bool = False,
    ) -> FeatureStore:
        """Open the store at `path` for writing; resume it when it was made by the same request."""
        path = Path(path)
        if len(set(ids)) != len(ids):
            raise InflucoderError("sample ids must be unique within a store")
        manifest = {
            "format": FORMAT,
            "version": 1,
            "config": config,
            "dim": int(dim),
            "dtype": str(np.dtype(dtype)),
            "shard_size": int(shard_size),
            "n": len(ids),
            "ids": list(ids),
        }
        if (path / MANIFEST).exists() and not overwrite:
            sweep_stale_temporaries(path)  # shards a killed writer left half-written
            existing = cls(path)
            stored = {k: v for k, v in existing.manifest.items() if k != "complete"}
            diffs = _diff(manifest, stored)
            if diffs:
                raise ArtifactMismatchError(
                    f"{path} holds a store made with other settings ({'; '.join(diffs[:5])}); "
                    "use another `out` or set `overwrite`"
                )
            return existing
        if overwrite and path.exists():
            for old in path.glob("shard-*.npy*"):
                old.unlink()
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / MANIFEST, {**manifest, "complete": False})
        return cls(path)

    # ------------------------------------------------------------------ properties
    @property
    def ids(self) -> list[str]:
        return self.manifest["ids"]

    @property
    def dim(self) -> int:
        return self.manifest["dim"]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def n_shards(self) -> int:
        return (self.manifest["n"] + self.manifest["shard_size"] - 1) // self.manifest["shard_size"]

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete")) or not self.missing_shards()

    def shard_rows(self, index: int) -> range:
        size = self.manifest["shard_size"]
        return range(index * size, min((index + 1) * size, self.manifest["n"]))

    def shard_path(self, index: int) -> Path:
        return self.path / f"shard-{index:05d}.npy"

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.n_shards) if not self.shard_path(i).exists()]

    # ------------------------------------------------------------------ writing
    def write_shard(self, index: int, rows: np.ndarray) -> None:
        """Write shard `index`, with its checksum file first (`checksum_path`): a shard on disk always has
        the size and sha256 it was written with beside it."""
        expected = (len(self.shard_rows(index)), self.dim)
        if rows.shape != expected:
            raise ValueError(f"shard {index} must have shape {expected}, got {rows.shape}")
        checksums.write_checked(self.shard_path(index), npy_bytes(rows, self.manifest["dtype"]), fsync=True)
        if self._missing is None:  # one directory scan per store object, not one per shard written
            self._missing = collections.deque(self.missing_shards())
        # Other writers (Ray workers, a second resumed run) fill shards too: drop every leading shard that now
        # exists, stopping at the first still missing, so the writer of the last shard marks the store
        # complete whichever process that is.
        while self._missing and self.shard_path(self._missing[0]).exists():
            self._missing.popleft()
        if not self._missing:
            self._mark_complete()

    def _mark_complete(self) -> None:
        if not self.missing_shards():
            self.manifest["complete"] = True
            write_json_atomic(self.path / MANIFEST, self.manifest)

    # ------------------------------------------------------------------ reading
    def checksum_path(self, index: int) -> Path:
        return checksums.sidecar(self.shard_path(index))

    def _recorded(self, index: int) -> tuple[int, str] | None:
        """(size, sha256) written with the shard; None for a store written before checksums existed (a damaged
        record is refused naming it: `checksums.recorded`)."""
        return checksums.recorded(self.shard_path(index))

    def read_shard(self, index: int) -> np.ndarray:
        """Shard rows, memory-mapped; a shard whose size differs from the one recorded at writing (truncated,
        replaced) is refused instead of being trusted because it exists."""
        path = self.shard_path(index)
        recorded = self._recorded(index)
        if recorded is not None and path.stat().st_size != recorded[0]:
            raise InflucoderError(
                f"{path} is {path.stat().st_size} bytes but was written with {recorded[0]}: truncated or replaced; "
                "delete it and rerun the command that wrote it (the shard is recomputed)"
            )
        return read_npy(path, mmap=True, shape=(len(self.shard_rows(index)), self.dim), remedy=REDO_SHARD)

    def verify(self) -> list[str]:
        """Full check: every shard's sha256 against the one recorded at writing. Returns the problems found
        (empty: intact); shards of stores written before checksums existed are reported as unverifiable."""
        problems = []
        for index in range(self.n_shards):
            path = self.shard_path(index)
            try:
                recorded, problem = self._recorded(index), checksums.problem_of(path)
            except DamagedFileError as exc:
                problems.append(str(exc))
                continue
            if not path.exists():
                problems.append(f"{path}: missing")
            elif recorded is None:
                problems.append(f"{path}: no checksum recorded (written by an older version)")
            elif problem is not None:
                problems.append(problem)
        return problems

    def iter_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) per shard, memory-mapped: the whole array is never loaded at once."""
        if not self.complete:
            raise InflucoderError(f"{self.path} is incomplete (missing shards {self.missing_shards()[:5]}); rerun")
        for index in range(self.n_shards):
            yield self.shard_rows(index).start, self.read_shard(index)

    def load(self) -> np.ndarray:
        """All rows in one array (for small stores and tests)."""
        return np.concatenate([np.asarray(block) for _, block in self.iter_blocks()], axis=0)

    def bytes_per_sample(self) -> float:
        total = sum(self.shard_path(i).stat().st_size for i in range(self.n_shards) if self.shard_path(i).exists())
        return total / max(self.manifest["n"], 1)
