"""`distill --objective subspace`: fit a subspace encoder (`influcoder.encoder.subspace`) on a labels directory.

The training pool's stored gradients give the top-k directions (saved as ``subspace.npz`` beside the encoder)
and every training pool sample's target coordinates; the training queries' gradients give their exact
coordinates for the score term. The encoder starts at the ridge solution on its frozen pooled states (epoch
0) and is fine-tuned for `epochs`; after each epoch the validation split (pool and queries apart from
training, as in `Distiller.fit`) is scored with the pool side predicted and the query side exact, as
`attribute` scores, and the best epoch (0 included) is kept in ``best/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from influcoder.core.devices import resolve_device
from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample, sample_groups
from influcoder.encoder.coverage import CoverageReference, write_coverage_reference
from influcoder.encoder.epoch_log import EpochLog
from influcoder.encoder.heads import fit_head
from influcoder.encoder.resume import load_state, run_key, save_state
from influcoder.encoder.run_record import DistillRun, TrainingRecord
from influcoder.encoder.settings import DistillSettings
from influcoder.encoder.splits import validation_split
from influcoder.encoder.states_cache import PooledStatesCache
from influcoder.encoder.subspace import (
    CoordinateFitSettings,
    FitPosition,
    GradientSubspace,
    fit_coordinates,
    pooled_states,
    subspace_encoder,
)
from influcoder.metrics import spearman_report

log = logging.getLogger(__name__)

MAX_FIT_GRADIENTS = 20_000
"""The directions are fitted on at most this many training gradients (a seeded sample): beyond, they change
little and the fit's memory grows with n x the gradient width."""


def stored_gradients(labels_dir: Path, ids: Sequence[str]) -> np.ndarray:
    """The projected gradients of `ids`, from the labels directory's pool or query store (all-pairs labels
    keep only the pool store)."""
    from influcoder.core.store import FeatureStore
    from influcoder.labels.labels_dir import LabelsDir

    stores = [FeatureStore(path) for path in LabelsDir(labels_dir).gradient_stores()]
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


@dataclass
class SubspaceProblem:
    """What a subspace run fits and validates on, built from the labels and the split (`build`)."""

    subspace: GradientSubspace
    fitted_on: int
    """How many training gradients the directions were fitted on (at most `MAX_FIT_GRADIENTS`)."""
    train_samples: list[Sample]
    """Every training text with a gradient: the training pool, then the training queries not in it."""
    targets: np.ndarray
    """(len(train_samples), k) their coordinates."""
    labels: np.ndarray
    """(len(train_samples), training queries): each training pool row's labels (query-only rows: zeros)."""
    exclude: np.ndarray
    """Where `labels` holds nothing to fit: query-only rows, and a text against itself."""
    train_qc: np.ndarray
    val_qc: np.ndarray
    """Exact coordinates of the training and validation queries."""
    val_pool: list[Sample]
    val_truth: np.ndarray
    """The validation pool x validation queries labels."""

    @classmethod
    def build(cls, labels_dir: Path, s: DistillSettings, scores, pool, queries, split, rng) -> SubspaceProblem:
        train_p, val_p, train_q, val_q = split
        # every training text with a gradient is a regression target: the training pool, then the training
        # queries (with all-pairs labels the same texts: each once), none of the validation split's
        held = {pool[i].id for i in val_p} | {queries[j].id for j in val_q}
        train_samples = [pool[i] for i in train_p if pool[i].id not in held]
        seen = {x.id for x in train_samples}
        train_samples += [queries[j] for j in train_q if queries[j].id not in seen | held]
        ids = [x.id for x in train_samples]
        fit_rows = np.sort(rng.choice(len(ids), size=min(MAX_FIT_GRADIENTS, len(ids)), replace=False))
        fitted = stored_gradients(labels_dir, [ids[i] for i in fit_rows])
        subspace = GradientSubspace.fit(fitted, s.subspace_k, seed=s.seed)
        targets = coordinates_of(labels_dir, ids, subspace)
        query_coords = coordinates_of(labels_dir, [queries[j].id for j in (*train_q, *val_q)], subspace)
        labels, exclude = _score_term(train_samples, scores, pool, queries, train_p, train_q)
        return cls(subspace, int(len(fit_rows)), train_samples, targets, labels, exclude,
                   query_coords[: len(train_q)], query_coords[len(train_q) :], [pool[i] for i in val_p],
                   scores[np.ix_(val_p, val_q)])  # fmt: skip


def _score_term(train_samples, scores, pool, queries, train_p, train_q) -> tuple[np.ndarray, np.ndarray]:
    """The score term: each training pool row's labels against the training queries (query-only rows and a
    text against itself are left out, by the mask returned second)."""
    row_of = {pool[i].id: i for i in train_p}
    labels = np.zeros((len(train_samples), len(train_q)), dtype=np.float32)
    exclude = np.ones(labels.shape, dtype=bool)
    query_ids = np.array([queries[j].id for j in train_q])
    for r, sample in enumerate(train_samples):
        if sample.id in row_of:
            labels[r] = scores[row_of[sample.id], train_q]
            exclude[r] = query_ids == sample.id
    return labels, exclude


class EpochTracker:
    """Called after each epoch of `fit_coordinates` (and once for the ridge start, epoch 0): scores the
    validation split, logs the epoch, keeps the best encoder in ``out/best`` and the last in ``out/last``, and
    saves what a rerun needs to continue after this epoch (``resume.pt``) and training.json, as
    `Distiller.fit` does after each of its epochs."""

    def __init__(self, encoder, problem: SubspaceProblem, run: SubspaceRunFacts, started: float):
        self.encoder, self.problem, self.run = encoder, problem, run
        self.clock = started
        self.logs: list[EpochLog] = []
        self.best = -np.inf
        self.val_pool_embeddings: np.ndarray | None = None
        """The validation pool's embeddings as last scored."""

    def restore(self, state: dict) -> FitPosition:
        """Continue after the epoch a saved state holds; returns where the fit goes on."""
        self.encoder.load_state_dict(state["encoder"])
        self.logs = [EpochLog(**x) for x in state["logs"]]
        self.best = state["best"]
        return FitPosition(state["epochs_done"], state["optimizer"], state["batch_order"])

    def __call__(self, record: dict[str, float], position: FitPosition) -> None:
        p = self.problem
        self.val_pool_embeddings = self.encoder.encode(p.val_pool, show_progress_bar=False)
        report = spearman_report(self.val_pool_embeddings @ p.val_qc.T, p.val_truth)
        trained = record["epoch"] > 0
        done = EpochLog(int(record["epoch"]),
                        record["mse"] + self.run.settings.alpha * (1.0 - record["pearson"]) if trained else None,
                        1.0 - record["pearson"] if trained else None, None, report.per_anchor_mean,
                        report.mean_aggregated, round(time.perf_counter() - self.clock, 2),
                        coordinate_error=record["mse"] if trained else None)  # fmt: skip
        self.clock = time.perf_counter()
        self.logs.append(done)
        error = f"coordinate error {record['mse']:.4f}" if trained else "closed-form head start"
        log.info("epoch %d: %s, val per-anchor rho %.4f, mean-aggregated rho %.4f [%.0f s]", done.epoch, error,
                 done.val_per_anchor, done.val_mean_aggregated, done.seconds)  # fmt: skip
        self.save(done, position)

    def save(self, done: EpochLog, position: FitPosition) -> None:
        """Encoders first, then the state to resume from, then training.json (its epochs never run ahead of
        the state); the state goes once the last epoch is recorded."""
        out, final = DistillRun(self.run.out), position.epochs_done == self.run.settings.epochs
        _save(self.encoder, self.problem.subspace, out.last)
        if done.val_per_anchor > self.best:
            self.best = done.val_per_anchor
            _save(self.encoder, self.problem.subspace, out.best)
        if not final:
            parts = {"encoder": self.encoder.state_dict(), "optimizer": position.optimizer,
                     "batch_order": position.batch_order, "epochs_done": position.epochs_done,
                     "logs": [asdict(x) for x in self.logs], "best": self.best}  # fmt: skip
            save_state(self.run.out, self.run.key, parts, None)
        self.run.record(self.problem, self.logs, self.best, complete=final).save(out.training_path)
        if final:
            out.resume_path.unlink(missing_ok=True)


@dataclass
class SubspaceRunFacts:
    """What a subspace run's records name: its settings and key, where it writes, and its split."""

    settings: DistillSettings
    key: dict
    out: Path
    pool: Sequence[Sample]
    queries: Sequence[Sample]
    split: tuple

    def record(self, problem: SubspaceProblem, logs: list[EpochLog], best: float, complete: bool) -> TrainingRecord:
        train_p, val_p, train_q, val_q = self.split
        pool, queries = self.pool, self.queries
        return TrainingRecord(
            objective="subspace",
            settings=self.settings.key(),
            epochs=[asdict(x) for x in logs],
            best_val_per_anchor=best,
            complete=complete,
            data=self.key["data"],
            subspace={
                "k": problem.subspace.k,
                "fitted_on": problem.fitted_on,
                "targets": len(problem.train_samples),
                "singular_values": [round(float(v), 6) for v in problem.subspace.singular_values],
            },
            train_pool_ids=[pool[i].id for i in train_p],
            val_pool_ids=[pool[i].id for i in val_p],
            train_query_ids=[queries[j].id for j in train_q],
            val_query_ids=[queries[j].id for j in val_q],
        )


def distill_subspace(
    labels_dir: Path,
    out: Path,
    settings: DistillSettings,
    scores: np.ndarray,
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    label_config: dict,
    overwrite: bool = False,
    device: str = "auto",
) -> list[EpochLog]:
    """Fit on the training `pool` x `queries` (`scores` their labels); write ``out/best``, ``out/last`` and
    ``out/training.json`` as `Distiller.fit` does. A finished identical run is returned as it is; a killed one
    continues after its last saved epoch (``out/resume.pt``), ending where an uninterrupted run ends."""
    s = settings
    if len(pool) < 6 or len(queries) < 4:
        raise InflucoderError("distillation needs at least 6 pool samples and 4 queries")
    key = run_key(s, scores, pool, queries)
    state = load_state(out, key, overwrite)
    if state is not None and state.get("complete"):
        log.info("%s already holds this finished run; nothing to do", out)
        write_subspace_coverage(labels_dir, out, [*pool, *queries], device)  # killed before it was written
        return [EpochLog(**x) for x in state["logs"]]
    rng = np.random.default_rng(s.seed)
    groups = (sample_groups(pool, s.val_group), sample_groups(queries, s.val_group)) if s.val_group else None
    same = [p.id for p in pool] == [q.id for q in queries]  # all-pairs labels: one disjoint held-out set
    split = validation_split(len(pool), len(queries), s.val_fraction, rng, groups, same_texts=same)
    started = time.perf_counter()
    problem = SubspaceProblem.build(labels_dir, s, scores, pool, queries, split, rng)
    encoder = _fresh_encoder(s, problem, label_config, device)
    fit = CoordinateFitSettings(epochs=s.epochs, lr=s.lr, head_lr=s.lr * s.head_lr_scale,
                                weight_decay=s.weight_decay, batch_size=s.subspace_batch, score_weight=s.alpha,
                                ridge=s.subspace_ridge, seed=s.seed)  # fmt: skip
    tracker = EpochTracker(encoder, problem, SubspaceRunFacts(s, key, out, pool, queries, split), started)
    if state is None:
        states = pooled_states(encoder, problem.train_samples)
        fit_head(encoder, states, problem.targets, s.subspace_ridge, s.seed)
        tracker({"epoch": 0}, FitPosition())  # the closed-form start
        if s.epochs == 0:  # the backbone stays as it is: the states give the coverage reference its embeddings
            write_subspace_coverage(labels_dir, out, [*pool, *queries], device, encoder, _known(states, tracker),
                                    problem.val_qc)  # fmt: skip
            return tracker.logs
        position = FitPosition()
    else:
        position = tracker.restore(state)
        log.info("resuming %s after epoch %d of %d", out, position.epochs_done, s.epochs)
    fit_coordinates(encoder, problem.train_samples, problem.targets, fit, query_labels=problem.labels,
                    start_at_ridge=False, query_coords=problem.train_qc,
                    exclude=problem.exclude, on_epoch=tracker, start=position)  # fmt: skip
    write_subspace_coverage(labels_dir, out, [*pool, *queries], device, query_vectors=problem.val_qc)
    return tracker.logs


def _fresh_encoder(s: DistillSettings, problem: SubspaceProblem, label_config: dict, device: str):
    """The run's untrained encoder on `device`, reading through the states cache when its backbone stays frozen
    (its states are then the same in every run on these texts)."""
    encoder = subspace_encoder(
        s.encoder,
        problem.subspace.k,
        seed=s.seed,
        pooling=s.pooling,
        max_length=s.max_length,
        text_view=s.text_view,
        backbone_layers=s.backbone_layers,
        **head_config(s, problem),
    )
    encoder.config.label_config = label_config
    encoder.to(resolve_device(device))
    if s.states_cache and s.epochs == 0:
        encoder.states_cache = PooledStatesCache.for_encoder(encoder)
    return encoder


def head_config(s: DistillSettings, problem: SubspaceProblem) -> dict:
    """The `EncoderConfig` fields of the head `s` asks for; a kernel head keeps every training text as a
    landmark up to `kernel_landmarks`."""
    if s.subspace_head != "kernel":
        return {"head_kind": "linear"}
    landmarks = min(len(problem.train_samples), s.kernel_landmarks)
    return {"head_kind": "kernel", "kernel_landmarks": landmarks, "kernel_gamma": s.kernel_gamma}


def write_subspace_coverage(labels_dir: Path, out: Path, samples: Sequence[Sample], device: str = "auto",
                            encoder=None, known: dict | None = None, query_vectors: np.ndarray | None = None,
                            ) -> None:  # fmt: skip
    """The coverage reference of a finished subspace run (unless it has one and no `encoder` is given), its
    spread threshold calibrated on the validation queries as `attribute` scores a query: by the exact
    gradient coordinates (read from the labels), not by the encoder's prediction of them. `encoder`: the best
    encoder when the caller holds it, with `known` embeddings (`build_reference`); `query_vectors` the
    validation queries' exact coordinates when the caller holds them (read from the labels otherwise)."""
    run = DistillRun(out)
    if encoder is None and CoverageReference.load(run.best) is not None:
        return
    record = run.record()
    if query_vectors is None and record.val_query_ids:
        query_vectors = coordinates_of(labels_dir, record.val_query_ids, GradientSubspace.load(run.best))
    write_coverage_reference(out, samples, device, record, encoder, known, query_vectors)


@torch.no_grad()
def _known(states: np.ndarray, tracker: EpochTracker) -> dict:
    """The embeddings a run that ended at its ridge start already computed: the training samples' pooled
    states through the head, the validation pool's from its scoring. With a decoder backbone, a second
    forward pass over every training text would double the run."""
    encoder, problem = tracker.encoder, tracker.problem
    embeddings = encoder.head_output(torch.as_tensor(states, device=encoder.device)).float().cpu().numpy()
    known = dict(zip(problem.train_samples, embeddings, strict=True))
    known.update(zip(problem.val_pool, tracker.val_pool_embeddings, strict=True))
    return known


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
    return DistillRun(out).is_subspace
