"""Give freed memory back to the operating system between shards of long jobs.

glibc's malloc keeps memory that tensors freed inside the process (its heap cannot shrink around fragments, and
its mmap threshold rises after the first large free), so a job that encodes a million texts batch after batch
holds more and more resident memory without leaking anything; with `malloc_trim(0)` after every shard it stays
flat (docs/results/scale.md). Trimming once per shard costs one call per shard's encoding, little beside it.
Elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the operating system; whether anything could be asked."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameter number for the mmap threshold (malloc.h)."""


def fix_mmap_threshold(size: int = 1 << 20) -> bool:
    """Serve every allocation of `size` bytes or more by its own mmap, for the rest of the process.

    glibc starts with a 128 KB threshold but raises it to the size of each large block freed, up to 32 MB, so
    after the first training steps a model's activations come from the heap, where blocks of ever-different sizes
    (each batch its own length) leave fragments it cannot return. A fixed threshold gives each large tensor its
    own mapping, returned to the operating system the moment it is freed. Whether it could be set."""
    libc = _glibc()
    return libc is not None and hasattr(libc, "mallopt") and bool(libc.mallopt(M_MMAP_THRESHOLD, int(size)))
