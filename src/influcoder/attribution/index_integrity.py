"""Opening an index's FAISS file only when it agrees with the manifest and the segments' own files.

The manifest says how many rows of which width the index holds; FAISS and the segment stores hold them. An
edited manifest (``dim`` changed, a segment's ``n`` lowered) or a truncated ``index.faiss`` used to be
accepted and answered with fewer hits or crashed inside FAISS: each is now one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

from influcoder.core.errors import InflucoderError
from influcoder.core.store import FeatureStore

REBUILD = "rebuild it with `influcoder index --overwrite` or restore the file"


def check_segments(path: Path, manifest: dict) -> int:
    """The index's row count, after checking each segment's `n` against its store; refuses an index without
    segments (an interrupted first build that was never resumed)."""
    segments = manifest.get("segments")
    if not isinstance(segments, list) or not segments:
        raise InflucoderError(f"{path / 'manifest.json'}: the index holds no segment; {REBUILD}")
    for segment in segments:
        stored = len(FeatureStore(path / segment["name"]).ids)
        if segment.get("n") != stored:
            raise InflucoderError(
                f"{path / 'manifest.json'}: segment {segment['name']} lists n = {segment.get('n')} but its store "
                f"holds {stored} rows; {REBUILD}"
            )
    return sum(s["n"] for s in segments)


def open_faiss(path: Path, manifest: dict, read):
    """`read(file)` of ``index.faiss`` (memory-mapped by the caller's reader), checked against the manifest."""
    rows = check_segments(path, manifest)
    file = path / "index.faiss"
    if not file.exists() or file.stat().st_size == 0:
        raise InflucoderError(f"{file}: missing or empty; {REBUILD}")
    try:
        index = read(file)
    except RuntimeError as exc:  # FAISS raises RuntimeError on a truncated or foreign file
        reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
        raise InflucoderError(f"{file}: not a readable FAISS index ({reason}); {REBUILD}") from None
    if index.d != manifest.get("dim") or index.ntotal != rows:
        raise InflucoderError(
            f"{path / 'manifest.json'}: says {rows} rows of dim {manifest.get('dim')}, but {file.name} holds "
            f"{index.ntotal} of dim {index.d}; {REBUILD}"
        )
    return index
