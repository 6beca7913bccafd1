"""One writer per output directory: a second `label`, `index` or `distill` into the same place is refused.

Two runs writing one labels store, index or encoder directory would interleave shards and manifests: each
resumes "after the last finished shard" that the other is still writing. The lock is an advisory `flock` on
``DIR/.influcoder.lock``, held for the whole run. The kernel releases it when the process ends, however it
ends, so a lock left by a killed run is never stale: the next run simply takes it. The file records the
holder's pid and command so the refusal can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from influcoder.core.errors import InflucoderError

LOCK_NAME = ".influcoder.lock"


class LockedError(InflucoderError):
    """Another live process is writing the same output directory."""


@contextlib.contextmanager
def exclusive_directory(directory: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold the write lock of `directory` (created if missing) for the duration of the block."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InflucoderError(f"{directory} is a file; the {what} output must be a directory (new, or one of ours)")
    created_directory = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    created_lock = not path.exists()
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
    failed = True
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(
                f"{directory} is being written by {holder}; two runs into one {what} directory would mix their "
                "shards. Wait for that run to finish (or stop it), or write to another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        handle.write(f"pid {os.getpid()} ({command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        yield directory
        failed = False
    finally:
        handle.close()  # releases the lock; the file stays (harmless, it only names the last holder)
        if failed and created_lock:  # a refused or failed run leaves nothing of its own behind
            with contextlib.suppress(OSError):
                path.unlink()
                if created_directory:
                    directory.rmdir()  # only when empty
