"""Atomic file output: write beside the target under a unique temporary name, then rename into place.

Readers (a resumed run, a second process, a user) then see either the old file or the whole new one, never half
a file. The temporary name is unique per call: two writers of one target (Ray workers finishing the last shards
of a store together) each rename their own file, and a writer killed mid-way leaves no fixed-name leftover that
a later writer would append to or trip over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique path in `path`'s directory (same file system, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{12}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporaries (`temporary_sibling`) in `directory` left by writers that died (SIGKILL, power
    loss: no exception handler ran); returns them. A temporary whose process still runs is another writer's
    and stays. A resumed run calls this once, so that what a killed run left half-written is neither kept
    forever beside the output nor mistaken for it."""
    import shutil

    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or int(match[1]) == os.getpid() or _alive(int(match[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on an exception it is removed.

    `fsync=True` flushes the file to disk before the rename, for shards a resumed run trusts by their existence.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            tmp.unlink(missing_ok=True)
        if exc.filename is not None and Path(exc.filename).name == tmp.name:  # name what the user asked for
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path, ours: Sequence[str] | None = None) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it replaces the directory `path` (two renames: the old
    one aside, the new one in, then the old one deleted), on an exception it is deleted. A reader sees the
    old directory or the whole new one (a saved encoder is a dozen files: written in place, a kill mid-save
    left a mix of two epochs' weights).

    `ours` (fnmatch patterns) names what the project writes there: anything else in the old directory (a
    user's notes) is copied into the new one before the swap, with a warning, instead of being deleted."""
    import shutil

    path = Path(path)
    tmp = temporary_sibling(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if ours is not None and path.is_dir():
            _keep_foreign(path, tmp, ours)
        old = temporary_sibling(path) if path.exists() else None
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _keep_foreign(old: Path, new: Path, ours: Sequence[str]) -> None:
    """Copy the entries of `old` that match none of `ours` into `new` (copies: the old directory stays whole
    until the swap), and say which."""
    import fnmatch
    import logging
    import shutil

    foreign = sorted(e.name for e in old.iterdir() if not any(fnmatch.fnmatch(e.name, p) for p in ours))
    for name in foreign:
        if not (new / name).exists():
            (shutil.copytree if (old / name).is_dir() else shutil.copy2)(old / name, new / name)
    if foreign:
        logging.getLogger(__name__).warning("kept files that influcoder did not write in %s: %s", old,
                                            ", ".join(foreign))  # fmt: skip


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and a rename, so readers never see half a file.

    The temporary name is unique per call: Ray workers finishing the last shards of a store at the same time
    both mark its manifest complete, and a shared temporary name let one rename away the other's file.
    """
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text via a temporary file and a rename (a report or table is never seen half-written)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
