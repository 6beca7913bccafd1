"""`label`: featurize a pool and a query set into resumable stores and write their influence matrix.
See `influcoder.labels` for the layout of a labels directory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.jsonfile import field, read_json
from influcoder.core.locks import exclusive_directory
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample
from influcoder.data.stream import sample_ids
from influcoder.labels.distributed import ray_shard_runner
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.influence import InfluenceMatrix
from influcoder.labels.settings import LabelSettings


def label(
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    out: str | Path,
    settings: LabelSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    featurizer: GradientFeaturizer | None = None,
    ray=None,
) -> InfluenceMatrix:
    """Gradient stores of pool and queries plus their cosine influence matrix, under `out` (one writer at a
    time: a second run into the same `out` is refused while the first lives).

    With the same samples in the same order on both sides (`all pairs`), the gradients are computed once and
    the matrix is N x N: every labelled sample is a query too, for the cost of N gradients."""
    settings = settings or LabelSettings()
    out = Path(out)
    if not pool or not queries:
        raise InflucoderError("label needs at least one pool sample and one query")
    with exclusive_directory(out, "labels"):
        return _label(pool, queries, out, settings, overwrite, progress, featurizer, ray)


def _label(pool, queries, out: Path, settings: LabelSettings, overwrite, progress, featurizer, ray) -> InfluenceMatrix:
    overlap = set(sample_ids(pool)) & set(sample_ids(queries))
    out.mkdir(parents=True, exist_ok=True)
    featurizer = featurizer or GradientFeaturizer(settings)
    started = time.perf_counter()
    run_shards = ray_shard_runner(settings, ray) if ray is not None else None
    pool_store = featurizer.featurize_to_store(pool, out / "pool", overwrite, progress, "pool gradients", run_shards)
    pool_seconds = time.perf_counter() - started
    all_pairs = sample_ids(pool) == sample_ids(queries)
    # the same samples on both sides (every labelled sample is a query too): each gradient is computed once
    query_store = (
        pool_store
        if all_pairs
        else featurizer.featurize_to_store(queries, out / "queries", overwrite, progress, "query gradients", run_shards)
    )
    write_samples(pool, out / "pool.jsonl")
    write_samples(queries, out / "queries.jsonl")
    matrix = InfluenceMatrix.from_stores(pool_store, query_store)
    matrix.save(out / "influence")
    write_json_atomic(
        out / "labels.json",
        {
            "settings": asdict(settings),
            "ray": ray is not None,
            "features": featurizer.config(),
            "n_pool": len(pool),
            "n_queries": len(queries),
            "ids_in_both": len(overlap),
            "all_pairs": all_pairs,
            "seconds_total": round(time.perf_counter() - started, 2),
            "seconds_pool_this_run": round(pool_seconds, 2),
            "bytes_per_sample": round(pool_store.bytes_per_sample(), 1),
            "batch_tokens_used": featurizer.batch_tokens,  # --batch-tokens, or what --max-memory measured
        },
    )
    return matrix


def load_labels(directory: str | Path) -> tuple[InfluenceMatrix, list[Sample], list[Sample], dict]:
    """The influence matrix, pool and query samples (in matrix order) and the settings of a labels dir."""
    from influcoder.data.formats import load_file

    directory = Path(directory)
    if not (directory / "labels.json").exists():
        raise InflucoderError(f"{directory} is not a labels directory (no labels.json); run `influcoder label`")
    info = read_json(directory / "labels.json")
    for key in ("settings", "features"):  # merged labels of older runs may lack them; present, they are objects
        if key in info:
            field(info, key, directory / "labels.json", dict)
    matrix = InfluenceMatrix.load(directory / "influence")
    pool = load_file(directory / "pool.jsonl")
    queries = load_file(directory / "queries.jsonl")
    for name, samples, ids in (("pool.jsonl", pool, matrix.pool_ids), ("queries.jsonl", queries, matrix.query_ids)):
        if [s.id for s in samples] != ids:
            raise DamagedFileError(
                f"{directory / name}: its {len(samples)} samples are not the {len(ids)} the influence matrix "
                f"({directory / 'influence' / 'ids.json'}) lists; restore the file or rerun `influcoder label`"
            )
    return matrix, pool, queries, info
