"""A toxicity replicate's compact record: what its report needs, small enough to keep in version control.

A replicate's directory holds gigabytes (adapters, labels, the encoder, pool x query score matrices) and
hours of CPU; the machine that ran it may not be the one that writes the report. The report needs only the
replicate's settings, its results and each method's pool scores (a sample's mean over the queries), so an
archived replicate keeps just those:

    run.json          the replicate's settings (as in its directory)
    results.json      its figures (as in its directory)
    pool-scores.npz   method -> the pool's filtering scores, float64
    archive.json      the pool's fingerprint (ids and texts) and the archive's format

The pool itself is not copied: the task is rebuilt from run.json's seeded settings and the embedded data, and
accepted only if its fingerprint matches the recorded one, so a changed builder or data set fails loudly
instead of attaching the scores to other samples.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np

from influcoder.core.atomic import atomic_output, write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.data.records import fingerprint
from influcoder.experiments.toxicity import pool_scores
from influcoder.tasks.toxicity import ToxicitySettings, ToxicityTask, build_toxicity_task

FORMAT = 1
SCORES = "pool-scores.npz"


def is_archived(directory: str | Path) -> bool:
    """Whether `directory` is an archived replicate (rather than a full one)."""
    return (Path(directory) / "archive.json").exists()


def archive_replicate(directory: str | Path, dest: str | Path) -> Path:
    """Write the compact record of the finished replicate in `directory` to `dest`; returns `dest`.

    Every method of its results.json must have its scores; the record is written to a sibling `.partial`
    folder first (never read as a replicate) and then moved into place, so `dest` never holds half a record."""
    directory, dest = Path(directory), Path(dest)
    results_path = directory / "results.json"
    if not results_path.exists():
        raise InflucoderError(f"{directory} has no results.json: the replicate has not finished scoring")
    results = read_json(results_path)
    scores = {}
    for method in results["methods"]:
        path = directory / "scores" / f"{method}.npy"
        if not path.exists():
            raise InflucoderError(f"{directory}: results.json names {method} but {path} is missing")
        scores[method] = pool_scores(np.load(path))
    task = ToxicityTask.load(directory / "task")
    if any(len(v) != len(task.pool) for v in scores.values()):
        raise ArtifactMismatchError(f"{directory}: a score matrix does not have the pool's {len(task.pool)} rows")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(directory / "run.json", staging / "run.json")
    shutil.copyfile(results_path, staging / "results.json")
    with atomic_output(staging / SCORES) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **scores)
    write_json_atomic(
        staging / "archive.json",
        {"format": FORMAT, "pool_fingerprint": fingerprint(task.pool), "n_pool": len(task.pool)},
    )
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def replicate_task(directory: str | Path, sources=None) -> ToxicityTask:
    """A replicate's task: its task/ folder, or for an archived replicate the task rebuilt and checked."""
    directory = Path(directory)
    if (directory / "task" / "task.json").exists():
        return ToxicityTask.load(directory / "task")
    if not is_archived(directory):
        raise InflucoderError(f"{directory} is neither a toxicity replicate nor an archived one")
    record = read_json(directory / "archive.json")
    task = build_toxicity_task(task_settings(directory), sources)
    if fingerprint(task.pool) != record["pool_fingerprint"]:
        raise ArtifactMismatchError(
            f"{directory}: the task rebuilt from run.json is not the pool its scores belong to (the builder or "
            "the embedded data changed since it was archived)"
        )
    return task


def task_settings(directory: Path) -> ToxicitySettings:
    """The task settings in run.json; every field must be there (a default filled in for a setting the run
    predates could name another task than the one it ran)."""
    stored = read_json(directory / "run.json")["task"]
    missing = [f.name for f in fields(ToxicitySettings) if f.name not in stored]
    if missing:
        raise InflucoderError(
            f"{directory}/run.json predates the task settings {', '.join(missing)}: its task cannot be rebuilt"
        )
    return ToxicitySettings(**{f.name: stored[f.name] for f in fields(ToxicitySettings)})


def replicate_pool_scores(directory: str | Path, method: str) -> np.ndarray:
    """A method's pool filtering scores in a full or archived replicate."""
    directory = Path(directory)
    matrix = directory / "scores" / f"{method}.npy"
    if matrix.exists():
        return pool_scores(np.load(matrix))
    with np.load(directory / SCORES) as archived:
        if method not in archived:
            raise InflucoderError(f"{directory} has no {method} scores")
        return np.asarray(archived[method], dtype=np.float64)


def replicate_directories(*roots: str | Path | None) -> list[Path]:
    """The finished replicate directories (full or archived: run.json and results.json) under `roots`, sorted by
    name; a name found under several roots is taken from the first (a full replicate over its archived copy)."""
    found: dict[str, Path] = {}
    for root in (Path(r) for r in roots if r is not None):
        if not root.is_dir():
            continue
        for directory in sorted(root.iterdir()):
            partial = directory.name.endswith(".partial")
            finished = (directory / "run.json").exists() and (directory / "results.json").exists()
            if directory.is_dir() and not partial and finished:
                found.setdefault(directory.name, directory)
    return [found[name] for name in sorted(found)]
