"""`label`: featurize a pool and a query set into resumable stores and write their influence matrix.
See `influcoder.labels` for the layout of a labels directory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from influcoder.core.errors import InflucoderError
from influcoder.core.locks import exclusive_directory
from influcoder.core.progress import progress_bars
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample
from influcoder.data.stream import sample_ids
from influcoder.labels.distributed import ray_shard_runner
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.influence import InfluenceMatrix
from influcoder.labels.labels_dir import LabelsDir, LabelsRecord
from influcoder.labels.settings import LabelSettings


def label(
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    out: str | Path,
    settings: LabelSettings | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    featurizer: GradientFeaturizer | None = None,
    ray=None,
) -> InfluenceMatrix:
    """Gradient stores of pool and queries plus their cosine influence matrix, under `out` (one writer at a
    time: a second run into the same `out` is refused while the first lives).

    With the same samples in the same order on both sides (`all pairs`), the gradients are computed once and
    the matrix is N x N: every labelled sample is a query too, for the cost of N gradients.

    `progress`: show the gradient bars (True) or not (False); None leaves it to `influcoder.core.progress`."""
    settings = settings or LabelSettings()
    out = Path(out)
    if not pool or not queries:
        raise InflucoderError("label needs at least one pool sample and one query")
    with exclusive_directory(out, "labels"), progress_bars(progress):
        return _label(pool, queries, out, settings, overwrite, featurizer, ray)


def _label(pool, queries, out: Path, settings: LabelSettings, overwrite, featurizer, ray) -> InfluenceMatrix:
    overlap = set(sample_ids(pool)) & set(sample_ids(queries))
    directory = LabelsDir(out)
    out.mkdir(parents=True, exist_ok=True)
    featurizer = featurizer or GradientFeaturizer(settings)
    started = time.perf_counter()
    run_shards = ray_shard_runner(settings, ray) if ray is not None else None
    pool_store = featurizer.featurize_to_store(pool, directory.pool_store, overwrite, "pool gradients", run_shards)
    pool_seconds = time.perf_counter() - started
    all_pairs = sample_ids(pool) == sample_ids(queries)
    # the same samples on both sides (every labelled sample is a query too): each gradient is computed once
    query_store = (
        pool_store
        if all_pairs
        else featurizer.featurize_to_store(queries, directory.query_store, overwrite, "query gradients", run_shards)
    )
    write_samples(pool, directory.pool_samples)
    write_samples(queries, directory.query_samples)
    matrix = InfluenceMatrix.from_stores(pool_store, query_store)
    matrix.save(directory.influence)
    LabelsRecord(
        settings=asdict(settings),
        ray=ray is not None,
        features=featurizer.config(),
        n_pool=len(pool),
        n_queries=len(queries),
        ids_in_both=len(overlap),
        all_pairs=all_pairs,
        seconds_total=round(time.perf_counter() - started, 2),
        seconds_pool_this_run=round(pool_seconds, 2),
        bytes_per_sample=round(pool_store.bytes_per_sample(), 1),
        batch_tokens_used=featurizer.batch_tokens,  # --batch-tokens, or what --max-memory measured
    ).save(directory.record_path)
    return matrix


def load_labels(directory: str | Path) -> tuple[InfluenceMatrix, list[Sample], list[Sample], dict]:
    """The influence matrix, pool and query samples (in matrix order) and the record of a labels directory,
    the record as a plain dict (`LabelsDir.load` gives it typed)."""
    matrix, pool, queries, record = LabelsDir.load(directory)
    return matrix, pool, queries, record.to_dict()
