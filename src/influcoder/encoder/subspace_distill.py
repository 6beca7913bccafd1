"""`distill --objective subspace`: fit a subspace encoder (`influcoder.encoder.subspace`) on a labels directory.

The training pool's stored gradients give the top-k directions (saved as ``subspace.npz`` beside the encoder)
and every training pool sample's target coordinates; the training queries' gradients give their exact
coordinates for the score term. The encoder starts at the ridge solution on its frozen pooled states (epoch
0) and is fine-tuned for `epochs`; after each epoch the validation split (pool and queries apart from
training, as in `Distiller.fit`) is scored with the pool side predicted and the query side exact, as
`attribute` scores, and the best epoch (0 included) is kept in ``best/``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic
from influcoder.core.devices import resolve_device
from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.data.records import Sample, sample_groups
from influcoder.encoder.epoch_log import EpochLog
from influcoder.encoder.resume import load_state, run_key
from influcoder.encoder.settings import DistillSettings
from influcoder.encoder.splits import validation_split
from influcoder.encoder.subspace import CoordinateFitSettings, GradientSubspace, fit_coordinates, subspace_encoder
from influcoder.metrics import spearman_report

MAX_FIT_GRADIENTS = 20_000
"""The directions are fitted on at most this many training gradients (a seeded sample): beyond, they change
little and the fit's memory grows with n x the gradient width."""


def stored_gradients(labels_dir: Path, ids: Sequence[str]) -> np.ndarray:
    """The projected gradients of `ids`, from the labels directory's pool or query store (all-pairs labels
    keep only the pool store)."""
    from influcoder.core.store import FeatureStore

    stores = [FeatureStore(labels_dir / side) for side in ("pool", "queries") if (labels_dir / side).exists()]
    where = {}
    for number, store in enumerate(stores):
        for row, sample_id in enumerate(store.ids):
            where.setdefault(sample_id, (number, row))
    missing = [i for i in ids if i not in where]
    if missing:
        raise InflucoderError(f"{labels_dir}: no stored gradient for {len(missing)} sample(s), e.g. {missing[0]!r}; "
                              "the subspace objective needs the gradient stores `label` writes")  # fmt: skip
    out = np.empty((len(ids), stores[0].dim), dtype=np.float32)
    wanted: dict[int, dict[int, list[int]]] = {}
    for position, sample_id in enumerate(ids):
        number, row = where[sample_id]
        wanted.setdefault(number, {}).setdefault(row, []).append(position)
    for number, rows in wanted.items():
        store = stores[number]
        for shard in range(store.n_shards):
            span = store.shard_rows(shard)
            needed = [r for r in span if r in rows]
            if needed:
                block = store.read_shard(shard)
                for store_row in needed:
                    out[rows[store_row]] = block[store_row - span.start]
    return out


def coordinates_of(labels_dir: Path, ids: Sequence[str], subspace: GradientSubspace, chunk: int = 4096) -> np.ndarray:
    """(len(ids), k) coordinates of stored gradients, read `chunk` at a time (a 100K pool's gradients are
    13 GB at 32,768 dims; its coordinates 100 MB at k = 256)."""
    parts = [subspace.coordinates(stored_gradients(labels_dir, ids[i : i + chunk])) for i in range(0, len(ids), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, subspace.k), dtype=np.float32)


def distill_subspace(
    labels_dir: Path,
    out: Path,
    settings: DistillSettings,
    scores: np.ndarray,
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    label_config: dict,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
) -> list[EpochLog]:
    """Fit on the training `pool` x `queries` (`scores` their labels); write ``out/best``, ``out/last`` and
    ``out/training.json`` as `Distiller.fit` does. A finished identical run is returned as it is."""
    s = settings
    if len(pool) < 6 or len(queries) < 4:
        raise InflucoderError("distillation needs at least 6 pool samples and 4 queries")
    key = run_key(s, scores, pool, queries)
    state = load_state(out, key, overwrite)
    if state is not None:
        return [EpochLog(**x) for x in state["logs"]]
    rng = np.random.default_rng(s.seed)
    groups = (sample_groups(pool, s.val_group), sample_groups(queries, s.val_group)) if s.val_group else None
    train_p, val_p, train_q, val_q = validation_split(len(pool), len(queries), s.val_fraction, rng, groups)
    started = time.perf_counter()
    # every training text with a gradient is a regression target: the training pool, then the training queries
    # (with all-pairs labels the same texts: each once), none of the validation split's
    held = {pool[i].id for i in val_p} | {queries[j].id for j in val_q}
    train_samples = [pool[i] for i in train_p if pool[i].id not in held]
    seen = {x.id for x in train_samples}
    train_samples += [queries[j] for j in train_q if queries[j].id not in seen | held]
    ids = [x.id for x in train_samples]
    fit_rows = np.sort(rng.choice(len(ids), size=min(MAX_FIT_GRADIENTS, len(ids)), replace=False))
    subspace = GradientSubspace.fit(stored_gradients(labels_dir, [ids[i] for i in fit_rows]), s.subspace_k, seed=s.seed)
    targets = coordinates_of(labels_dir, ids, subspace)
    query_coords = coordinates_of(labels_dir, [queries[j].id for j in (*train_q, *val_q)], subspace)
    train_qc, val_qc = query_coords[: len(train_q)], query_coords[len(train_q) :]
    encoder = subspace_encoder(s.encoder, subspace.k, seed=s.seed, pooling=s.pooling, max_length=s.max_length)
    encoder.config.label_config = label_config
    encoder.to(resolve_device(device))
    val_pool = [pool[i] for i in val_p]
    val_truth = scores[np.ix_(val_p, val_q)]
    # the score term: each training pool row's labels against the training queries (query-only rows and a
    # text against itself are left out)
    row_of = {pool[i].id: i for i in train_p}
    labels = np.zeros((len(train_samples), len(train_q)), dtype=np.float32)
    exclude = np.ones(labels.shape, dtype=bool)
    query_ids = np.array([queries[j].id for j in train_q])
    for r, sample in enumerate(train_samples):
        if sample.id in row_of:
            labels[r] = scores[row_of[sample.id], train_q]
            exclude[r] = query_ids == sample.id
    fit = CoordinateFitSettings(epochs=s.epochs, lr=s.lr, head_lr=s.lr * s.head_lr_scale,
                                weight_decay=s.weight_decay, batch_size=s.subspace_batch, score_weight=s.alpha,
                                ridge=s.subspace_ridge, seed=s.seed)  # fmt: skip
    logs: list[EpochLog] = []
    best = -np.inf
    clock = [started]

    def finish_epoch(record: dict[str, float]) -> None:
        nonlocal best
        report = spearman_report(encoder.encode(val_pool) @ val_qc.T, val_truth)
        trained = record["epoch"] > 0
        log = EpochLog(int(record["epoch"]),
                       record["mse"] + s.alpha * (1.0 - record["pearson"]) if trained else None,
                       1.0 - record["pearson"] if trained else None, None, report.per_anchor_mean,
                       report.mean_aggregated, round(time.perf_counter() - clock[0], 2),
                       coordinate_error=record["mse"] if trained else None)  # fmt: skip
        clock[0] = time.perf_counter()
        logs.append(log)
        if progress:
            error = f"coordinate error {record['mse']:.4f}" if trained else "ridge start"
            print(f"epoch {log.epoch}: {error}, val per-anchor rho "
                  f"{log.val_per_anchor:.4f}, mean-aggregated rho {log.val_mean_aggregated:.4f} [{log.seconds:.0f} s]",
                  flush=True)  # fmt: skip
        if log.val_per_anchor > best:
            best = log.val_per_anchor
            _save(encoder, subspace, out / "best")

    fit_coordinates(encoder, train_samples, targets, CoordinateFitSettings(epochs=0, ridge=s.subspace_ridge))
    finish_epoch({"epoch": 0})  # the ridge start
    fit_coordinates(encoder, train_samples, targets, fit, query_labels=labels,
                    show_progress=progress, start_at_ridge=False, query_coords=train_qc, exclude=exclude,
                    on_epoch=finish_epoch)  # fmt: skip
    _save(encoder, subspace, out / "last")
    record = {
        "objective": "subspace",
        "settings": s.key(),
        "epochs": [asdict(x) for x in logs],
        "best_val_per_anchor": best,
        "complete": True,
        "data": key["data"],
        "subspace": {
            "k": subspace.k,
            "fitted_on": int(len(fit_rows)),
            "targets": len(train_samples),
            "singular_values": [round(float(v), 6) for v in subspace.singular_values],
        },  # fmt: skip
        "train_pool_ids": [pool[i].id for i in train_p],
        "val_pool_ids": [p.id for p in val_pool],
        "train_query_ids": [queries[j].id for j in train_q],
        "val_query_ids": [queries[j].id for j in val_q],
    }
    write_json_atomic(out / "training.json", record)
    return logs


def _save(encoder, subspace: GradientSubspace, directory: Path) -> None:
    """The encoder and its subspace, swapped in together (a reader never sees one without the other)."""
    from influcoder.core.atomic import atomic_directory
    from influcoder.encoder.model import ENCODER_FILES

    directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(directory, ours=ENCODER_FILES) as tmp:
        encoder.save_pretrained(tmp)
        subspace.save(tmp)


def is_subspace_run(out: Path) -> bool:
    """Whether a `distill` output directory holds a subspace run (its training.json says so)."""
    path = Path(out) / "training.json"
    return path.exists() and read_json(path).get("objective") == "subspace"
