"""One artifact file checked by what its name says it holds: the per-file half of `influcoder verify`.

Each kind of artifact (a store, a matrix, an index, an encoder, a labels directory) has its own consistency
checks (one file against another); beneath them every file must at least be what its suffix promises: JSON
that parses, JSON Lines of objects, a numpy array numpy reads whole, a safetensors file whose header covers
it exactly, and a file with a checksum record (`influcoder.core.checksums`) of the size and sha256 recorded.
That alone sees every cut, emptied or byte-flipped file: a changed byte of UTF-8 text no longer decodes (a
byte x ^ 0xFF of ASCII is a lone lead or continuation byte), and binary files carry records.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from influcoder.core import checksums
from influcoder.core.arrayfile import read_npy, read_npz
from influcoder.core.errors import DamagedFileError
from influcoder.core.jsonfile import read_json

REMEDY = "restore it or rerun the command that wrote it"
NOT_ARTIFACTS = (".influcoder.lock", "config.yaml")
"""Files beside artifacts that are not read back as artifacts: the writers' advisory lock and a run's config
(read only by --config, which names a damaged one itself)."""


def artifact_files(directory: Path):
    """Every file under `directory` that a check applies to, sorted: hidden files (temporaries of atomic
    writes, the lock) and `NOT_ARTIFACTS` are left out."""
    for path in sorted(directory.rglob("*")):
        parts = path.relative_to(directory).parts
        if path.is_file() and not any(p.startswith(".") for p in parts) and path.name not in NOT_ARTIFACTS:
            yield path


def file_problem(path: Path) -> str | None:
    """The first thing wrong with the file `path` for what its suffix says it holds, or None."""
    name = path.name
    try:
        if name.endswith(checksums.SUFFIX):
            return checksums.problem_of(path.with_name(name[: -len(checksums.SUFFIX)]))
        if name.endswith(".json"):
            read_json(path, (dict, list))
        elif name.endswith(".jsonl"):
            return jsonl_problem(path)
        elif name.endswith(".npy"):
            read_npy(path, REMEDY, mmap=True)
        elif name.endswith(".npz"):
            read_npz(path, REMEDY)  # every member read whole: the zip's CRC of each is checked on the way
        elif name.endswith(".safetensors"):
            return safetensors_problem(path)
    except DamagedFileError as exc:
        return str(exc)
    return None


def jsonl_problem(path: Path) -> str | None:
    """Every non-blank line a JSON object, the whole file UTF-8 (lines split on ``\\n`` only, as read)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
                record = json.loads(line) if line.strip() else {}
            except UnicodeDecodeError as exc:
                return f"{path}:{number}: not UTF-8 text ({exc.reason}); {REMEDY}"
            except json.JSONDecodeError as exc:
                return f"{path}:{number}: not a JSON record ({exc.msg}); {REMEDY}"
            if not isinstance(record, dict):
                return f"{path}:{number}: expected a JSON object per line; {REMEDY}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes: the header must
    parse and its tensors' offsets must cover the rest of the file exactly (a cut or padded file does not)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > size - 8:
            return f"{path}: not a safetensors file (its header is cut); {REMEDY}"
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return f"{path}: not a safetensors file (its header is damaged); {REMEDY}"
    if max(ends, default=0) != size - 8 - length:
        return f"{path}: its tensors need {max(ends, default=0)} bytes after the header, the file holds " \
            f"{size - 8 - length}: truncated or padded; {REMEDY}"  # fmt: skip
    return None
