"""Merge labels directories that share their queries: label a pool in parts (runs, machines), then join.

A pool row of the influence matrix depends only on that pool sample's gradient and on the query gradients,
so parts labelled with the same feature settings against the same queries concatenate exactly. The merge
checks that they do (same features config, same query ids, disjoint pool ids) and refuses otherwise, then
writes one self-contained labels directory: pool store rewritten in order, queries store copied, influence
rows concatenated.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from influcoder.core.errors import ArtifactMismatchError, InflucoderError, SettingError
from influcoder.core.store import FeatureStore
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample, fingerprint
from influcoder.labels.influence import InfluenceMatrix
from influcoder.labels.labels_dir import Labels, LabelsDir, LabelsRecord


def _rows(stores: Sequence[FeatureStore]) -> Iterator[np.ndarray]:
    for store in stores:
        for _, block in store.iter_blocks():
            yield np.asarray(block)


def _write_concatenated(stores: Sequence[FeatureStore], out: Path, samples: Sequence[Sample]) -> FeatureStore:
    """One store holding the rows of `stores` in order, re-sharded to the first store's shard size; its data
    fingerprint is that of the merged samples (the first part's would describe a pool the store no longer is)."""
    first = stores[0].manifest
    config = {**first["config"], "data_fingerprint": fingerprint(samples)}
    ids = [s.id for s in samples]
    merged = FeatureStore.create_or_resume(
        out, config, ids, first["dim"], first["shard_size"], first["dtype"], overwrite=True
    )
    buffer = np.zeros((0, first["dim"]), dtype=first["dtype"])
    index = 0
    for block in _rows(stores):
        buffer = np.concatenate([buffer, block], axis=0)
        while index < merged.n_shards and len(buffer) >= len(merged.shard_rows(index)):
            size = len(merged.shard_rows(index))
            merged.write_shard(index, buffer[:size])
            buffer, index = buffer[size:], index + 1
    if index != merged.n_shards:
        raise InflucoderError(f"merging into {out}: stores hold fewer rows than their manifests list")
    return merged


def merge_labels(parts: Sequence[str | Path], out: str | Path) -> InfluenceMatrix:
    """Join labels directories whose pools are disjoint and whose queries and feature settings agree."""
    parts = [LabelsDir(p) for p in parts]
    if len(parts) < 2:
        raise InflucoderError("merging needs at least two labels directories")
    out = LabelsDir(out)
    if out.path.resolve() in {p.path.resolve() for p in parts}:
        raise SettingError("out", f"{out.path} must differ from the directories being merged")
    loaded = [LabelsDir.load(p.path) for p in parts]  # checks each is a whole labels directory
    _refuse_unmergeable(parts, loaded)
    pool_ids = [i for labels in loaded for i in labels.matrix.pool_ids]
    stores = [FeatureStore(p.pool_store) for p in parts]
    for part, store, labels in zip(parts, stores, loaded):
        if store.ids != labels.matrix.pool_ids:
            raise InflucoderError(f"{part.path}: pool store and influence matrix disagree on ids")
    out.path.mkdir(parents=True, exist_ok=True)
    merged_pool = [s for labels in loaded for s in labels.pool]
    _write_concatenated(stores, out.pool_store, merged_pool)
    if out.query_store.exists():
        shutil.rmtree(out.query_store)
    shutil.copytree(parts[0].query_store, out.query_store)
    write_samples(merged_pool, out.pool_samples)
    shutil.copyfile(parts[0].query_samples, out.query_samples)
    first = loaded[0].matrix
    merged = InfluenceMatrix(
        np.concatenate([np.asarray(labels.matrix.scores) for labels in loaded], axis=0), pool_ids, list(first.query_ids)
    )
    merged.save(out.influence)
    records = [labels.record for labels in loaded]
    LabelsRecord(
        settings=records[0].settings,
        features=records[0].features,
        merged_from=[str(p.path.resolve()) for p in parts],
        n_pool=len(pool_ids),
        n_queries=len(merged.query_ids),
        ids_in_both=len(set(pool_ids) & set(merged.query_ids)),
        seconds_total=round(sum(r.seconds_total or 0.0 for r in records), 2),
        bytes_per_sample=records[0].bytes_per_sample,
    ).save(out.record_path)
    return merged


def _refuse_unmergeable(parts: Sequence[LabelsDir], loaded: Sequence[Labels]) -> None:
    """Parts merge only with the first part's feature settings and queries, and with disjoint pools."""
    first = loaded[0]
    for part, labels in zip(parts[1:], loaded[1:]):
        if labels.record.features != first.record.features:
            raise ArtifactMismatchError(f"{part.path} was labelled with other feature settings than {parts[0].path}")
        if labels.matrix.query_ids != first.matrix.query_ids:
            raise ArtifactMismatchError(f"{part.path} has other queries (ids or order) than {parts[0].path}")
    pool_ids = [i for labels in loaded for i in labels.matrix.pool_ids]
    if len(set(pool_ids)) != len(pool_ids):
        dup = next(i for i, count in Counter(pool_ids).items() if count > 1)
        raise InflucoderError(f"pool id {dup!r} is in more than one of the directories being merged")
