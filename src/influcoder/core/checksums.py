"""Size and sha256 written beside a binary artifact file (``NAME.sha256``), so damage to it is seen.

A JSON file that is cut, emptied or has a byte changed no longer parses, and its reader names it; a binary
file (a feature-store shard, ``index.faiss``, an encoder's weights, a coverage array) would often still load,
with other numbers in it, and answer wrongly. So every binary file the project writes gets a one-line record
``<size> <sha256>`` beside it, written before the file itself is renamed into place: a file on disk always
has the record it was written with.

Readers compare the size on every read (free); the sha256 too wherever the file is read whole anyway (an
encoder's weights, a coverage array: hashing costs less than the read), and under ``--verify`` /
``influcoder verify`` for the files read in parts (store shards, the FAISS index, gigabytes at scale). A
record that is itself damaged is named as such, not taken for a changed file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from influcoder.core.atomic import atomic_output
from influcoder.core.errors import DamagedFileError

SUFFIX = ".sha256"
_RECORD = re.compile(r"(\d+) ([0-9a-f]{64})\n?")
_CHUNK = 1 << 22


def sidecar(path: str | Path) -> Path:
    """Where the record of `path` lives."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def digest_of(path: str | Path) -> str:
    """sha256 of a file, read in 4 MB chunks (a file of gigabytes is never held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_bytes(path: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write the record of `data`, the content `path` is about to get (call before writing `path`)."""
    with atomic_output(sidecar(path), fsync=fsync) as tmp:
        tmp.write_text(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n", encoding="utf-8")


def record_file(written: str | Path, path: str | Path | None = None) -> None:
    """Write the record of the file `written` for `path` (default: itself): a temporary file is recorded under
    its final name before it is renamed there."""
    written = Path(written)
    with atomic_output(sidecar(path or written)) as tmp:
        tmp.write_text(f"{written.stat().st_size} {digest_of(written)}\n", encoding="utf-8")


def write_checked(path: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to `path` atomically, its record first."""
    record_bytes(path, data, fsync)
    with atomic_output(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def recorded(path: str | Path) -> tuple[int, str] | None:
    """(size, sha256) recorded for `path`; None when there is no record (written before records existed)."""
    record = sidecar(path)
    if not record.exists():
        return None
    try:
        text = record.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = None
    match = _RECORD.fullmatch(text) if text is not None else None
    if match is None:
        raise DamagedFileError(
            f"{record}: not a checksum record (expected '<size> <sha256>'); the record is damaged: delete it and "
            f"{Path(path).name} with it, and rerun the command that wrote them"
        )
    return int(match.group(1)), match.group(2)


def check(path: str | Path, remedy: str, full: bool = False) -> None:
    """Refuse `path` when its size (and with `full`, its sha256) differs from its record; a file without a
    record passes (older versions wrote none). `remedy` says what to do, e.g. "distil the encoder again"."""
    problem = problem_of(path, full)
    if problem is not None:
        raise DamagedFileError(f"{problem}; {remedy}")


def problem_of(path: str | Path, full: bool = True) -> str | None:
    """What is wrong with `path` against its record, or None (intact, or nothing recorded)."""
    path = Path(path)
    wanted = recorded(path)
    if wanted is None:
        return None
    if not path.exists():
        return f"{path}: missing (its checksum record is there)"
    size = path.stat().st_size
    if size != wanted[0]:
        return f"{path}: {size} bytes, but it was written with {wanted[0]}: truncated or replaced"
    if full and digest_of(path) != wanted[1]:
        return f"{path}: content differs from what was written (sha256 mismatch)"
    return None
