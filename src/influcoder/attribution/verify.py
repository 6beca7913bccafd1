"""`influcoder verify` and every reading command's `--verify`: each file of each artifact under some directories.

An artifact directory is recognised by the file that defines it: a feature store or an index by its
``manifest.json``, an influence matrix by ``ids.json`` / ``scores.npy``, a labels directory by ``labels.json``,
a saved encoder by ``config.json`` beside ``backbone/``, a `distill` run by ``training.json`` /
``eval_split.json``. Every file under one is checked by what its suffix says it holds, with its checksum
record's size and sha256 (`influcoder.core.filecheck`); then each artifact's files are checked against each
other by the artifact's own reader (a store's shards against their records, an index's manifest against
``index.faiss`` and its segments, a labels directory's samples against its matrix, an encoder's config,
coverage reference and length prior). Each problem is reported once, under the artifact directory that holds
the file it names.

It sits in the attribution layer because an index is the highest artifact it checks; it reads the lower ones
(encoders, labels, stores) through their own readers, so a file is judged as the command reading it would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from influcoder.core.errors import InflucoderError
from influcoder.core.filecheck import artifact_files, file_problem
from influcoder.core.jsonfile import read_json
from influcoder.encoder.run_record import DistillRun, EvalSplit
from influcoder.labels.labels_dir import LabelsDir

MANIFESTS = {"influcoder.index": "index", "influcoder.feature-store": "store"}
"""The ``format`` of each kind's manifest.json."""


def kind_of(directory: Path) -> str | None:
    """Which artifact `directory` is (by the files that define each kind, damaged or not), or None."""
    manifest = directory / "manifest.json"
    if manifest.is_file():
        try:
            kind = MANIFESTS.get(str(read_json(manifest).get("format")))
        except InflucoderError:  # damaged: judged by what lies beside it
            kind = None
        if kind is None and ((directory / "index.faiss").exists() or any(directory.glob("segment-*"))):
            kind = "index"
        if kind is None and any(directory.glob("shard-*.npy")):
            kind = "store"
        if kind is not None:
            return kind  # else another tool's manifest.json, not an artifact of ours
    if (directory / LabelsDir.RECORD).is_file():
        return "labels"
    if (directory / "ids.json").is_file() or (directory / "scores.npy").is_file():
        return "matrix"
    if (directory / "config.json").is_file() and (directory / "backbone").is_dir():
        return "encoder"
    if (directory / DistillRun.TRAINING).is_file() or (directory / DistillRun.EVAL_SPLIT).is_file():
        return "run"
    return None


def find_artifacts(root: Path) -> dict[Path, str]:
    """Every artifact directory under `root` (itself included) with its kind, in path order."""
    found = {}
    for directory in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if any(part.startswith(".") for part in directory.relative_to(root).parts):
            continue  # the temporary directory of an atomic save, or a user's hidden folder
        kind = kind_of(directory)
        if kind is not None:
            found[directory] = kind
    return found


def verify_paths(paths: Sequence[str | Path]) -> dict[Path, list[str]]:
    """{artifact directory: problems} for every artifact under `paths` (an empty list: intact)."""
    found: dict[Path, list[str]] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise InflucoderError(f"{root} does not exist")
        found.update(_verify_root(root))
    return found


def require_intact(paths: Sequence[str | Path]) -> None:
    """`verify_paths`, raising with the problems found: what reading commands do under --verify."""
    problems = [p for found in verify_paths(paths).values() for p in found]
    if problems:
        raise InflucoderError(
            f"{len(problems)} integrity problem(s): {'; '.join(problems[:5])}; delete what is named and rerun the "
            "command that wrote it"
        )


def _verify_root(root: Path) -> dict[Path, list[str]]:
    artifacts = find_artifacts(root)
    found: dict[Path, list[str]] = {directory: [] for directory in artifacts}
    files = [f for f in artifact_files(root) if _owner(f, artifacts) is not None]
    names = sorted((str(f) for f in files), key=len, reverse=True)
    reported: set[str] = set()

    def add(problem: str, checker: Path) -> None:
        subject = next((n for n in names if problem.startswith((n + ":", n + " "))), None)
        if subject is None or subject not in reported:
            found[_owner(Path(subject), artifacts) if subject else checker].append(problem)
            reported.add(subject or problem)

    for file in files:
        problem = file_problem(file)
        if problem is not None:
            add(problem, _owner(file, artifacts))
    for directory, kind in artifacts.items():
        for problem in _problems(CHECKS[kind], directory):
            add(problem, directory)
    return found


def _owner(file: Path, artifacts: dict[Path, str]) -> Path | None:
    """The nearest artifact directory holding `file`."""
    return next((parent for parent in file.parents if parent in artifacts), None)


def _problems(check: Callable[[Path], list[str] | None], directory: Path) -> list[str]:
    try:
        return check(directory) or []
    except InflucoderError as exc:
        return [str(exc)]


def _store(directory: Path) -> list[str]:
    from influcoder.core.store import FeatureStore

    return FeatureStore(directory).verify()


def _matrix(directory: Path) -> None:
    from influcoder.labels.influence import InfluenceMatrix

    InfluenceMatrix.load(directory)


def _labels(directory: Path) -> None:
    LabelsDir.load(directory)


def _index(directory: Path) -> None:
    from influcoder.attribution.index import EmbeddingIndex

    index = EmbeddingIndex(directory)
    _ = index.faiss_index  # the manifest against index.faiss and the segments' stores
    index.samples()  # each segment's samples file against its store
    index.coverage()


def _encoder(directory: Path) -> None:
    from influcoder.encoder.coverage import CoverageReference
    from influcoder.encoder.length_prior import LengthPrior
    from influcoder.encoder.model import FORMAT, EncoderConfig
    from influcoder.encoder.saved_files import check_before_loading
    from influcoder.encoder.subspace import GradientSubspace

    path = directory / "config.json"
    raw = read_json(path)
    if raw.pop("format", None) != FORMAT:
        raise InflucoderError(f"{path}: not an influcoder encoder config")
    try:
        EncoderConfig(**raw)
    except TypeError as exc:
        raise InflucoderError(f"{path}: not an encoder config this influcoder reads ({exc})") from None
    check_before_loading(directory)
    CoverageReference.load(directory)
    LengthPrior.load(directory)
    GradientSubspace.load(directory)


def _run(directory: Path) -> None:
    run = DistillRun(directory)
    if run.has_record():
        run.record()
    if run.eval_split_path.exists():
        EvalSplit.load(run.eval_split_path, require=("pool_ids", "query_ids"))


CHECKS: dict[str, Callable[[Path], list[str] | None]] = {
    "store": _store,
    "matrix": _matrix,
    "labels": _labels,
    "index": _index,
    "encoder": _encoder,
    "run": _run,
}
"""Each kind's consistency check: its problems, or an `InflucoderError` for the first one found."""
