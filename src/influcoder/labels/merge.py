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

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.store import FeatureStore
from influcoder.data.formats import write_samples
from influcoder.data.records import Sample, fingerprint
from influcoder.labels.influence import InfluenceMatrix
from influcoder.labels.labelling import load_labels


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
    parts = [Path(p) for p in parts]
    if len(parts) < 2:
        raise InflucoderError("merging needs at least two labels directories")
    out = Path(out)
    if out.resolve() in {p.resolve() for p in parts}:
        raise InflucoderError(f"--out {out} must differ from the directories being merged")
    loaded = [load_labels(p) for p in parts]  # checks each is a whole labels directory
    matrices = [m for m, _, _, _ in loaded]
    infos = [info for _, _, _, info in loaded]
    for part, info, matrix in zip(parts[1:], infos[1:], matrices[1:]):
        if info["features"] != infos[0]["features"]:
            raise ArtifactMismatchError(f"{part} was labelled with other feature settings than {parts[0]}")
        if matrix.query_ids != matrices[0].query_ids:
            raise ArtifactMismatchError(f"{part} has other queries (ids or order) than {parts[0]}")
    pool_ids = [i for m in matrices for i in m.pool_ids]
    if len(set(pool_ids)) != len(pool_ids):
        dup = next(i for i, count in Counter(pool_ids).items() if count > 1)
        raise InflucoderError(f"pool id {dup!r} is in more than one of the directories being merged")

    stores = [FeatureStore(p / "pool") for p in parts]
    for part, store, matrix in zip(parts, stores, matrices):
        if store.ids != matrix.pool_ids:
            raise InflucoderError(f"{part}: pool store and influence matrix disagree on ids")
    out.mkdir(parents=True, exist_ok=True)
    merged_pool = [s for _, pool, _, _ in loaded for s in pool]
    _write_concatenated(stores, out / "pool", merged_pool)
    if (out / "queries").exists():
        shutil.rmtree(out / "queries")
    shutil.copytree(parts[0] / "queries", out / "queries")
    write_samples(merged_pool, out / "pool.jsonl")
    shutil.copyfile(parts[0] / "queries.jsonl", out / "queries.jsonl")
    merged = InfluenceMatrix(
        np.concatenate([np.asarray(m.scores) for m in matrices], axis=0), pool_ids, list(matrices[0].query_ids)
    )
    merged.save(out / "influence")
    write_json_atomic(
        out / "labels.json",
        {
            **{k: infos[0][k] for k in ("settings", "features") if k in infos[0]},
            "merged_from": [str(p.resolve()) for p in parts],
            "n_pool": len(pool_ids),
            "n_queries": len(merged.query_ids),
            "ids_in_both": len(set(pool_ids) & set(merged.query_ids)),
            "seconds_total": round(sum(i.get("seconds_total", 0.0) for i in infos), 2),
            "bytes_per_sample": infos[0].get("bytes_per_sample"),
        },
    )
    return merged
