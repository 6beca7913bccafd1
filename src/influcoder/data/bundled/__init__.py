"""Data sets shipped inside the package: read with no network and no cache.

A data set lives here when the package registry can no longer be trusted to serve it: `bbh` (BIG-Bench
Hard) came from the `bigbench==1.0.0` sdist until the registry stopped serving it. Each set is a gzip JSON
file with its licence (`<name>.LICENSE`) and its provenance (`<name>.source.json`: repository, commit, item
counts, sha256), written by a committed script (`scripts/build_bbh_data.py`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import cache
from importlib import resources

from influcoder.core.errors import AssetError


def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


@cache
def source_info(name: str) -> dict:
    """The provenance record of shipped data set `name` (repository, commit, counts, sha256)."""
    return json.loads(_read(f"{name}.source.json"))


@cache
def bbh_tasks() -> dict[str, list[tuple[str, str]]]:
    """BIG-Bench Hard: {task: [(input, target), ...]}, 27 tasks in upstream order; checked against its sha256
    so that a damaged installation is named instead of read."""
    data = _read("bbh.json.gz")
    expected = source_info("bbh")["sha256"]
    if hashlib.sha256(data).hexdigest() != expected:
        path = resources.files(__name__).joinpath("bbh.json.gz")
        raise AssetError(f"{path}: sha256 does not match bbh.source.json ({expected}); reinstall influcoder")
    tasks = json.loads(gzip.decompress(data))["tasks"]
    return {task: [(x, y) for x, y in items] for task, items in tasks.items()}
