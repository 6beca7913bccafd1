"""Opening an index's files only when they agree with each other and with their checksum records.

The manifest (`IndexManifest`, which checks its own fields' types when read) says how many rows of which width
the index holds; FAISS and the segment stores hold them. An edited manifest (``dim`` changed, a segment's ``n``
lowered) or a truncated ``index.faiss`` used to be accepted and answered with fewer hits or crashed inside
FAISS: each is now one line naming the file.
``index.faiss`` (size on every open, sha256 under --verify), ``coverage.npy`` and the spread-sample cache
(sha256 on every read: both are small and read whole) carry checksum records (`influcoder.core.checksums`);
a damaged cache is drawn again, never answered from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from influcoder.attribution.index_manifest import MANIFEST, REBUILD, IndexManifest, IndexSegment
from influcoder.core import checksums
from influcoder.core.arrayfile import read_npy
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.store import FeatureStore

log = logging.getLogger(__name__)


def check_segments(path: Path, manifest: IndexManifest) -> int:
    """The index's row count, after checking each segment's `n` against its store; refuses an index without
    segments (an interrupted first build that was never resumed). The entries' types are checked when the
    manifest is read (`IndexManifest.load`)."""
    if not manifest.segments:
        raise InflucoderError(f"{path / MANIFEST}: the index holds no segment; {REBUILD}")
    for segment in manifest.segments:
        stored = len(FeatureStore(path / segment.name).ids)
        if segment.n != stored:
            raise InflucoderError(
                f"{path / MANIFEST}: segment {segment.name} lists n = {segment.n} but its store holds {stored} "
                f"rows; {REBUILD}"
            )
    return manifest.rows


def open_faiss(path: Path, manifest: IndexManifest, read):
    """`read(file)` of ``index.faiss`` (memory-mapped by the caller's reader), checked against the manifest."""
    rows = check_segments(path, manifest)
    file = path / "index.faiss"
    index = _read_faiss(file, read)
    if index.d != manifest.dim or index.ntotal != rows:
        raise InflucoderError(
            f"{path / MANIFEST}: says {rows} rows of dim {manifest.dim}, but {file.name} holds "
            f"{index.ntotal} of dim {index.d}; {REBUILD}"
        )
    return index


def _read_faiss(file: Path, read):
    """`read(file)`, refused naming the file when it is missing, empty, of another size than recorded or not
    readable by FAISS."""
    if not file.exists() or file.stat().st_size == 0:
        raise InflucoderError(f"{file}: missing or empty; {REBUILD}")
    checksums.check(file, REBUILD)  # the size only: its sha256 is read under --verify (gigabytes at scale)
    try:
        return read(file)
    except RuntimeError as exc:  # FAISS raises RuntimeError on a truncated or foreign file
        reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        raise InflucoderError(f"{file}: not a readable FAISS index ({reason}); {REBUILD}") from None


def readable_faiss(file: Path, read):
    """`read(file)` for an index build to add to, or None when there is none or it is damaged: a rerun of
    `influcoder index` then rebuilds it from the segments (said in a warning) instead of crashing in FAISS."""
    if not file.exists():
        return None
    try:
        return _read_faiss(file, read)
    except InflucoderError:
        log.warning("%s is damaged; rebuilding it from the stored embeddings", file)
        return None


def read_cache(path: Path, width: int) -> np.ndarray | None:
    """A cached spread sample, or None when there is none or it is damaged (cut, altered, without its record,
    of another width): a cache is drawn again from the shards, never answered from when in doubt."""
    try:
        if checksums.recorded(path) is None or checksums.problem_of(path) is not None:
            return None
        return read_npy(path, REBUILD, shape=(None, width), finite=True)
    except InflucoderError:
        return None


def check_segment_samples(path: Path, segment: IndexSegment, ids: list[str]) -> None:
    """Refuse a segment whose samples file lists other ids than its store (cut at a line, or replaced)."""
    if ids != FeatureStore(path / segment.name).ids:
        raise DamagedFileError(
            f"{path / (segment.name + '.jsonl')}: its {len(ids)} samples are not the {segment.n} the segment "
            f"{segment.name} holds embeddings of; {REBUILD}"
        )
