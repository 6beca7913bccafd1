"""Reading the project's numpy files (``.npy``, ``.npz``) so that a damaged one is named, not crashed on.

numpy reports a cut, emptied or altered file as an `EOFError`, a `ValueError` about the header, a
`SyntaxError` from parsing it, or a `zipfile.BadZipFile`: none says which file, and each ends in a traceback.
These readers turn all of them into one `DamagedFileError` naming the file and what was expected (the shape,
finite values), as `influcoder.core.jsonfile` does for JSON.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from influcoder.core.errors import DamagedFileError

_UNREADABLE = (OSError, ValueError, EOFError, SyntaxError, KeyError, zipfile.BadZipFile)
"""What numpy raises on a damaged file (SyntaxError: a header whose Python literal was altered)."""


def read_npy(
    path: str | Path,
    remedy: str,
    mmap: bool = False,
    shape: Sequence[int | None] | None = None,
    finite: bool = False,
) -> np.ndarray:
    """The array in `path` (memory-mapped with `mmap`), refused naming the file when numpy cannot read it,
    when its shape is not `shape` (None: any length along that axis) or, with `finite`, when it holds NaN or
    Inf. `remedy` says what to do about it."""
    path = Path(path)
    if not path.exists():
        raise DamagedFileError(f"{path}: missing; {remedy}")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except _UNREADABLE as exc:
        raise DamagedFileError(f"{path}: not a readable .npy array ({_reason(exc)}); {remedy}") from None
    check_shape(path, array, shape, remedy)
    if finite and not np.isfinite(array).all():
        raise DamagedFileError(f"{path}: holds {_non_finite(array)} non-finite value(s); {remedy}")
    return array


def read_npz(path: str | Path, remedy: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays `names` (default: all) of the archive `path`, each read whole (so the archive's CRC of each
    is checked), refused naming the file when any is missing or unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in (data.files if names is None else names)}
    except _UNREADABLE as exc:
        raise DamagedFileError(f"{path}: not a readable .npz archive ({_reason(exc)}); {remedy}") from None


def check_shape(path: Path, array: np.ndarray, shape: Sequence[int | None] | None, remedy: str) -> None:
    """Refuse `array` (read from `path`) unless its shape is `shape` (None entries: any size)."""
    if shape is None:
        return
    fits = array.ndim == len(shape) and all(want is None or want == have for want, have in zip(shape, array.shape))
    if not fits:
        wanted = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise DamagedFileError(f"{path}: holds an array of shape {array.shape}, expected {wanted}; {remedy}")


def _non_finite(array: np.ndarray) -> int:
    return int((~np.isfinite(array)).sum())


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
