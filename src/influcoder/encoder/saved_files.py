"""A saved encoder's files: checksum records written with them, and each file checked before it is loaded.

transformers and safetensors report a cut, emptied or altered file of a saved encoder as a `JSONDecodeError`,
a `UnicodeDecodeError` or a `SafetensorError` traceback, and a weight file with one byte changed loads without
complaint and embeds every text differently. So `save_pretrained` writes a checksum record
(`influcoder.core.checksums`) beside every file that cannot check itself (weights, vocabularies: all but
JSON, which no longer parses when damaged), and `from_pretrained` checks every file it is about to read
first: sizes and sha256 (the weights are read whole anyway, and hashing them costs little beside that),
JSON by parsing it. An encoder saved before records existed is checked by structure only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from influcoder.core import checksums
from influcoder.core.errors import DamagedFileError
from influcoder.core.filecheck import safetensors_problem
from influcoder.core.jsonfile import read_json

REMEDY = "restore the encoder directory or distil it again"
WEIGHTS = ("head.safetensors", "2_Dense/model.safetensors")
"""Weights influcoder itself writes beside the backbone (pooling and head; sentence-transformers' Dense)."""


def _backbone_files(directory: Path) -> Iterator[Path]:
    for path in sorted((directory / "backbone").rglob("*")):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(checksums.SUFFIX):
            yield path


def record_checksums(directory: Path) -> None:
    """Write the checksum record of every file of the saved encoder in `directory` that is not JSON."""
    weights = [directory / name for name in WEIGHTS if (directory / name).exists()]
    for path in [*_backbone_files(directory), *weights]:
        if not path.name.endswith(".json"):
            checksums.record_file(path)


def check_before_loading(directory: Path) -> None:
    """Refuse, naming the file, a damaged file among those `from_pretrained` reads: the backbone's weights,
    configuration and tokenizer, and the head's weights."""
    head = directory / "head.safetensors"
    for path in [*_backbone_files(directory), *([head] if head.exists() else [])]:
        if path.name.endswith(".json"):
            read_json(path, (dict, list))
            continue
        checksums.check(path, REMEDY, full=True)
        problem = safetensors_problem(path) if path.name.endswith(".safetensors") else None
        if problem is not None:
            raise DamagedFileError(problem)


def load_parts(directory: Path) -> tuple[Any, Any, dict | None]:
    """The backbone (float32), tokenizer and head weights (None: no head) of the saved encoder in `directory`,
    each file checked first (`check_before_loading`); what transformers or safetensors still raise on an
    encoder saved without records is one line naming the directory, not a traceback."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    check_before_loading(directory)
    head = directory / "head.safetensors"
    try:
        backbone = AutoModel.from_pretrained(directory / "backbone", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory / "backbone")
        return backbone, tokenizer, load_file(head) if head.exists() else None
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise DamagedFileError(f"{directory}: a file of the saved encoder is unreadable ({reason}); {REMEDY}") from None
