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
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from influcoder.core.atomic import atomic_output, write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.jsonfile import read_json

MANIFEST = "manifest.json"


FORMAT = "influcoder.feature-store"


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
            existing = cls(path)
            stored = {k: v for k, v in existing.manifest.items() if k != "complete"}
            diffs = _diff(manifest, stored)
            if diffs:
                raise ArtifactMismatchError(
                    f"{path} holds a store made with other settings ({'; '.join(diffs[:5])}); "
                    "use another --out or pass --overwrite"
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
        data = npy_bytes(rows, self.manifest["dtype"])
        with atomic_output(self.checksum_path(index), fsync=True) as tmp:
            tmp.write_text(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n", encoding="utf-8")
        with atomic_output(self.shard_path(index), fsync=True) as tmp:
            tmp.write_bytes(data)
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
        return self.path / f"shard-{index:05d}.npy.sha256"

    def _recorded(self, index: int) -> tuple[int, str] | None:
        """(size, sha256) written with the shard; None for a store written before checksums existed."""
        path = self.checksum_path(index)
        if not path.exists():
            return None
        size, digest = path.read_text(encoding="utf-8").split()
        return int(size), digest

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
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def verify(self) -> list[str]:
        """Full check: every shard's sha256 against the one recorded at writing. Returns the problems found
        (empty: intact); shards of stores written before checksums existed are reported as unverifiable."""
        problems = []
        for index in range(self.n_shards):
            path, recorded = self.shard_path(index), self._recorded(index)
            if not path.exists():
                problems.append(f"{path}: missing")
            elif recorded is None:
                problems.append(f"{path}: no checksum recorded (written by an older version)")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != recorded[1]:
                problems.append(f"{path}: content differs from what was written (sha256 mismatch)")
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


def verify_directories(paths: Sequence[str | Path]) -> dict[Path, list[str]]:
    """Full integrity check of everything under `paths` that recorded checksums when it was written: every
    feature store's shards, and every influence matrix (``scores.npy`` with its size and sha256 in the
    ``ids.json`` beside it). Returns {directory: problems} (an empty list: intact)."""
    found: dict[Path, list[str]] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise InflucoderError(f"{root} does not exist")
        for manifest in sorted({root / MANIFEST, *root.rglob(MANIFEST)}):
            try:
                is_store = manifest.exists() and read_json(manifest).get("format") == FORMAT
            except InflucoderError as exc:  # a damaged manifest is a finding, not a crash of the check
                found[manifest.parent] = [str(exc)]
                continue
            if is_store:
                found[manifest.parent] = FeatureStore(manifest.parent).verify()
        for ids in sorted({root / "ids.json", *root.rglob("ids.json")}):
            record = read_json(ids) if ids.exists() else {}
            if "scores_sha256" in record:
                scores = ids.parent / "scores.npy"
                if not scores.exists():
                    found[ids.parent] = [f"{scores}: missing"]
                elif hashlib.sha256(scores.read_bytes()).hexdigest() != record["scores_sha256"]:
                    found[ids.parent] = [f"{scores}: content differs from what was written (sha256 mismatch)"]
                else:
                    found[ids.parent] = []
    return found


def require_intact(paths: Sequence[str | Path]) -> None:
    """`verify_directories`, raising with every problem found (what reading commands do under --verify)."""
    problems = [p for found in verify_directories(paths).values() for p in found]
    if problems:
        raise InflucoderError(
            f"{len(problems)} integrity problem(s): {'; '.join(problems[:5])}; delete what is named and rerun the "
            "command that wrote it"
        )
