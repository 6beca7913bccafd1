"""Step 2 of the paper: distil a pool x query influence matrix into an `InfluenceEncoder`.

Each step samples B queries and C pool candidates (paper: 12 x 15), optionally mixing in *hard* candidates
(the top of a query's true ranking), encodes all B + C texts, predicts the B x C cosines and fits them to the
true sub-matrix with alpha * Pearson + (1 - alpha) * tempered-softmax KL (`losses`). AdamW with linear
warm-up then linear decay, gradient clipping, fixed seeds.

A validation part of the pool *and* of the queries (disjoint from training) is split off here and used for
model selection: after every epoch the per-anchor and mean-aggregated Spearman on it are logged and the best
checkpoint is kept. An evaluation split is the caller's to hold out: pass only training rows and columns
(`split_labels` makes such a split, and the encoder records which ids it saw).

Training resumes: after every epoch, and inside an epoch every `checkpoint_seconds` of training (an epoch
over a 100K-sample pool takes hours on a CPU), the whole training state (weights, optimizer, schedule, both
random generators, logs, and inside an epoch its order of the pool, the steps done and their loss sums) goes
to ``out/resume.pt``, and a rerun with the same settings and labels continues from the step after it, reaching
the same weights as an uninterrupted run. The state file is removed when the run completes; a finished or
partial run with other settings or labels in ``out`` is refused unless overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from influcoder.core.devices import resolve_device
from influcoder.core.errors import ArtifactMismatchError, InflucoderError, SettingError
from influcoder.core.locks import exclusive_directory
from influcoder.core.progress import progress_bars
from influcoder.data.models import decoder_blocks
from influcoder.data.records import Sample, sample_groups
from influcoder.encoder.coverage import CoverageReference, write_coverage_reference
from influcoder.encoder.epoch_log import EpochLog
from influcoder.encoder.length_prior import LengthPrior
from influcoder.encoder.losses import PEARSON_CENTERINGS
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.prior_fit import fit_length_prior
from influcoder.encoder.resume import (
    CHECKPOINT_SECONDS,
    load_state,
    refuse_foreign_record,
    run_key,
)
from influcoder.encoder.run_record import DistillRun, EvalSplit
from influcoder.encoder.settings import DECODER_READ_DEPTH, DistillSettings
from influcoder.encoder.splits import split_all_pairs, split_from_file, split_labels, split_labels_by_group
from influcoder.encoder.subspace import GradientSubspace
from influcoder.encoder.training_run import TrainingRun

if TYPE_CHECKING:
    from influcoder.labels.labels_dir import Labels

log = logging.getLogger(__name__)


class Distiller:
    """Trains an encoder on one label matrix; `fit` returns the per-epoch logs."""

    def __init__(
        self,
        settings: DistillSettings,
        encoder: InfluenceEncoder | None = None,
        device: str = "auto",
        activation_checkpointing: bool = False,
    ):
        """`activation_checkpointing` keeps only each backbone layer's input for the backward pass and recomputes
        the rest there (the random dropout masks replayed): the same training, less memory per step, more time."""
        settings = settings.resolved()  # a default backbone of a cosine objective: the text encoder
        if settings.pearson_center not in PEARSON_CENTERINGS:
            raise InflucoderError(
                f"pearson_center must be one of {PEARSON_CENTERINGS}, got {settings.pearson_center!r}"
            )
        if settings.objective == "subspace":
            raise InflucoderError(
                "Distiller trains the cosine objectives (influcoder, airrep); `objective` subspace is trained by "
                "distill_labels (influcoder.encoder.subspace_distill), which reads the labels' stored gradients"
            )
        self.settings = settings
        torch.manual_seed(settings.seed)
        self.encoder = encoder or InfluenceEncoder.from_backbone(
            settings.encoder,
            seed=settings.seed,
            pooling=settings.pooling,
            head_dim=settings.head_dim,
            max_length=settings.max_length,
            text_view=settings.text_view,
            backbone_layers=settings.backbone_layers,
        )
        self.device = resolve_device(device)
        self.encoder.to(self.device)
        self.encoder.length_prior = None  # an --init encoder's prior fits its old weights; refitted after training
        if activation_checkpointing:
            self._checkpoint_activations()

    def _checkpoint_activations(self) -> None:
        backbone = self.encoder.backbone
        if not getattr(backbone, "supports_gradient_checkpointing", False):
            raise InflucoderError(
                f"the backbone {self.settings.encoder!r} ({type(backbone).__name__}) does not support activation "
                "checkpointing; run without `activation_checkpointing`"
            )
        enable = getattr(backbone, "activation_checkpointing_enable", None)  # the name from transformers 5.x on
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # pragma: no cover - earlier transformers 5 releases
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def candidates(
        self,
        rng: np.random.Generator,
        fresh: np.ndarray,
        train_pool: np.ndarray,
        query_cols: np.ndarray,
        scores: np.ndarray,
    ) -> np.ndarray:
        """A step's candidates: `hard_candidates` from the top of the sampled queries' true rankings, then this
        step's share `fresh` of the epoch's permutation of the pool, topped up at random when short (the last
        step of an epoch, or a fresh sample already taken as a hard one)."""
        s = self.settings
        c = min(s.candidates_per_batch, len(train_pool))
        hard = min(s.hard_candidates, c)
        chosen: list[int] = []
        if hard:  # round-robin over the sampled queries, each contributing its next-best pool sample
            sub = scores[np.ix_(train_pool, query_cols)]
            orders = [np.argsort(-sub[:, j], kind="stable") for j in rng.permutation(len(query_cols))]
            depth = 0
            while len(chosen) < hard and depth < len(train_pool):
                for order in orders:
                    candidate = int(train_pool[order[depth]])
                    if candidate not in chosen and len(chosen) < hard:
                        chosen.append(candidate)
                depth += 1
        chosen += [int(i) for i in fresh if int(i) not in chosen][: c - len(chosen)]
        if len(chosen) < c:
            chosen += [int(i) for i in rng.permutation(train_pool) if int(i) not in chosen][: c - len(chosen)]
        return np.array(chosen)

    def parameter_groups(self) -> list[dict]:
        """The pretrained backbone at `lr`; the new parameters (attention query, head) at `lr * head_lr_scale`.

        A zero-initialised attention query trained at the backbone's lr stays near zero, i.e. attention pooling
        stays mean pooling (on SmolLM2 labels its validation figures matched mean pooling's epoch after epoch).
        New parameters need a larger step than a pretrained network's fine-tuning.
        """
        backbone = [p for n, p in self.encoder.named_parameters() if n.startswith("backbone.")]
        new = [p for n, p in self.encoder.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": backbone}]
        if new:
            groups.append({"params": new, "lr": self.settings.lr * self.settings.head_lr_scale})
        return groups

    def fit(
        self,
        scores: np.ndarray,
        pool: Sequence[Sample],
        queries: Sequence[Sample],
        out: str | Path | None = None,
        progress: bool | None = None,
        overwrite: bool = False,
        checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    ) -> list[EpochLog]:
        """Train on `scores` (pool x queries); save best (validation) and last checkpoints under `out`.

        With `out`, a rerun resumes from the last saved state (see the module docstring): the end of every epoch
        and, inside an epoch, the first step ending `checkpoint_seconds` or more after the last save (None: at
        epoch ends only; 0: after every step). `overwrite` discards a run of other settings or labels found
        there instead of refusing it. The steps themselves are `TrainingRun`'s. `progress`: the epoch bars on
        (True) or off (False); None leaves them to the switch in `influcoder.core.progress`.
        """
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(pool), len(queries)):
            raise InflucoderError(f"scores {scores.shape} do not match {len(pool)} pool x {len(queries)} queries")
        if len(pool) < 6 or len(queries) < 4:
            raise InflucoderError("distillation needs at least 6 pool samples and 4 queries")
        out = Path(out) if out is not None else None
        run = TrainingRun(self, scores, pool, queries, out, run_key(self.settings, scores, pool, queries))
        state = load_state(out, run.key, overwrite) if out is not None else None
        if state is not None:
            if state.get("complete"):
                log.info("%s already holds this finished run; nothing to do", out)
                return [EpochLog(**x) for x in state["logs"]]
            run.restore(state)
            log.info("resuming %s after %s of %d", out, run.where(), self.settings.epochs)
        with progress_bars(progress):
            for epoch in range(len(run.logs) + 1, self.settings.epochs + 1):
                run.run_epoch(epoch, checkpoint_seconds)
        return run.logs


def continued_from(settings: DistillSettings, features: dict) -> tuple[InfluenceEncoder, DistillSettings]:
    """The encoder `settings.init` names, and settings whose architecture fields are that encoder's.

    Continued distillation adds labels to what an encoder learned, so both sets of labels must describe the
    same gradient features (decoder, adapter, projection, text view): refused otherwise, naming the field.
    """
    encoder = InfluenceEncoder.from_pretrained(settings.init)
    learned = encoder.config.label_config
    differ = sorted(k for k in set(learned) | set(features) if learned and learned.get(k) != features.get(k))
    if differ:
        raise ArtifactMismatchError(
            f"`init` {settings.init} was distilled from other gradient features than these labels "
            f"({differ[0]}: {learned.get(differ[0])!r} there, {features.get(differ[0])!r} here)"
        )
    c = encoder.config
    objective = settings.objective
    if objective == "subspace" and GradientSubspace.load(settings.init) is None:
        objective = "influcoder"  # a cosine encoder continues with the cosine objective it was trained with
    return encoder, replace(
        settings, encoder=c.backbone, pooling=c.pooling, head_dim=c.head_dim, max_length=c.max_length,
        objective=objective, backbone_layers=c.backbone_layers,
    )  # fmt: skip


@dataclass(frozen=True)
class HoldOut:
    """How `distill_labels` holds out an evaluation split (the `distill` flags --eval-pool, --eval-queries,
    --eval-split, --eval-protocol and --group-field): drawn (`protocol` random or task) or given (`split`)."""

    pool: int = 0
    """Pool samples to hold out (at least this many under the task protocol)."""
    queries: int = 0
    """Queries to hold out."""
    split: str | Path | None = None
    """A JSON file of pool_ids and query_ids to hold out instead (e.g. an earlier run's eval_split.json)."""
    protocol: str = "random"
    """random: random samples (of tasks training also sees); task: whole groups of `group_field`. With
    all-pairs labels (the same texts as pool and queries) both sides hold out one set of texts, split into a
    disjoint evaluation pool and queries (`split_all_pairs`)."""
    group_field: str = "task"

    def draw(self, labels: Labels, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train pool, eval pool, train queries, eval queries) row and column indices of the labels."""
        matrix, pool, queries = labels.matrix, labels.pool, labels.queries
        if self.split is not None:
            if self.pool or self.queries:
                raise InflucoderError(
                    "give either an evaluation split file (`eval_split`) or `eval_pool` / `eval_queries`, not both"
                )
            train_pool, eval_pool, train_queries, eval_queries = split_from_file(
                self.split, matrix.pool_ids, matrix.query_ids
            )
            if list(matrix.pool_ids) != list(matrix.query_ids):
                return train_pool, eval_pool, train_queries, eval_queries
            return all_pairs_from(eval_pool, eval_queries, len(pool), self.split)
        if (self.pool or self.queries) and list(matrix.pool_ids) == list(matrix.query_ids):
            groups = sample_groups(pool, self.group_field) if self.protocol == "task" else None
            return split_all_pairs(len(pool), self.pool, self.queries, seed, groups)
        if (self.pool or self.queries) and self.protocol == "task":
            pool_groups, query_groups = sample_groups(pool, self.group_field), sample_groups(queries, self.group_field)
            return split_labels_by_group(pool_groups, query_groups, self.pool, self.queries, seed)
        if self.pool or self.queries:
            return split_labels(len(pool), len(queries), self.pool, self.queries, seed)
        return np.arange(len(pool)), np.arange(0), np.arange(len(queries)), np.arange(0)

    def protocol_recorded(self) -> str | None:
        """The protocol the split follows: drawn ones say theirs, a given file keeps its own."""
        if self.split is not None:
            return EvalSplit.load(Path(self.split)).protocol
        if self.protocol not in ("random", "task"):
            raise InflucoderError(f"unknown evaluation protocol {self.protocol!r}: random or task")
        return self.protocol if self.pool or self.queries else None

    def record(
        self, labels_dir: str | Path, protocol: str | None, pool_ids: list[str], query_ids: list[str]
    ) -> EvalSplit:
        """The run's ``eval_split.json``."""
        return EvalSplit(labels=str(Path(labels_dir).resolve()), protocol=protocol,
                         group_field=self.group_field if self.protocol == "task" else None, pool_ids=pool_ids,
                         query_ids=query_ids)  # fmt: skip


def all_pairs_from(
    eval_pool: np.ndarray, eval_queries: np.ndarray, n: int, source: str | Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A given split of all-pairs labels: every held-out text, pool or query, is kept out of training on both
    sides (a held-out query's text would otherwise train as a pool sample); a text held out on both sides is
    named in a warning (its own label tops its ranking)."""
    both = np.intersect1d(eval_pool, eval_queries)
    if len(both):
        log.warning("%s holds %d texts out as both pool samples and queries: each is ranked against itself",
                    source, len(both))  # fmt: skip
    train = np.setdiff1d(np.arange(n), np.union1d(eval_pool, eval_queries))
    return train, eval_pool, train.copy(), eval_queries


def distill_labels(
    labels_dir: str | Path,
    out: str | Path,
    settings: DistillSettings | None = None,
    eval_pool: int = 0,
    eval_queries: int = 0,
    progress: bool | None = None,
    eval_split: str | Path | None = None,
    overwrite: bool = False,
    device: str = "auto",
    eval_protocol: str = "random",
    group_field: str = "task",
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    activation_checkpointing: bool = False,
) -> list[EpochLog]:
    """Train an encoder from a labels directory, holding out an evaluation split it never sees.

    The split is either drawn or given. Drawn, `eval_protocol` says how: ``random`` holds out `eval_pool` /
    `eval_queries` random samples (of tasks the training also sees); ``task`` holds out whole groups of
    ``meta[group_field]`` (at least that many samples), so the evaluation measures tasks never seen in
    training. Given, `eval_split` is a JSON file with ``pool_ids`` and ``query_ids`` (e.g. the
    ``eval_split.json`` of an earlier run, so that runs on grown labels are compared on the same held-out
    items). (`HoldOut` holds these five arguments.)

    Writes ``out/best`` and ``out/last`` (encoders), ``out/training.json`` (logs, ids per split) and
    ``out/eval_split.json`` (the held-out pool and query ids, for `influcoder evaluate`); ``out/resume.pt``
    while the run is unfinished (`checkpoint_seconds`: `Distiller.fit`). `progress`: the bars on (True) or off
    (False); None leaves them to the switch in `influcoder.core.progress`.
    """
    from influcoder.labels.labels_dir import LabelsDir

    hold_out = HoldOut(eval_pool, eval_queries, eval_split, eval_protocol, group_field)
    labels = LabelsDir.load(labels_dir)
    features = labels.record.features or {}
    init, settings = _starting_point(settings or DistillSettings(), out, features, activation_checkpointing)
    train_p, eval_p, train_q, eval_q = hold_out.draw(labels, settings.seed)
    protocol = hold_out.protocol_recorded()
    pool, queries = labels.pool, labels.queries
    scores = np.asarray(labels.matrix.scores)
    train = scores[np.ix_(train_p, train_q)], [pool[i] for i in train_p], [queries[j] for j in train_q]
    run = DistillRun(out)
    with exclusive_directory(run.path, "encoder"), progress_bars(progress):  # one writer per run directory
        if not overwrite:  # a run of other settings or labels in `out` is refused before anything is written
            load_state(run.path, run_key(settings, *train), overwrite)
        else:
            refuse_foreign_record(run.path)
        split = hold_out.record(labels_dir, protocol, [pool[i].id for i in eval_p], [queries[j].id for j in eval_q])
        split.save(run.eval_split_path)
        if settings.objective == "subspace":
            from influcoder.encoder.subspace_distill import distill_subspace

            logs = distill_subspace(Path(labels_dir), run.path, settings, *train, features, overwrite, device)
        else:
            distiller = Distiller(settings, init, device, activation_checkpointing)
            distiller.encoder.config.label_config = features
            logs = distiller.fit(*train, out=run.path, overwrite=overwrite, checkpoint_seconds=checkpoint_seconds)
        _finish(run, settings, [*pool, *queries], train, device)
        return logs


def _starting_point(
    settings: DistillSettings, out: str | Path, features: dict, activation_checkpointing: bool
) -> tuple[InfluenceEncoder | None, DistillSettings]:
    """The encoder --init continues (None: a fresh one) and the settings to train with; settings the
    subspace objective does not take are refused here, before anything is written."""
    init = None
    settings = settings.resolved(features)
    if settings.init:
        start = Path(settings.init).resolve()
        if start == Path(out).resolve() or Path(out).resolve() in start.parents:
            raise SettingError("out", f"{out} would overwrite the encoder `init` starts from; pick another `out`")
        init, settings = continued_from(settings, features)
    if settings.objective == "subspace":
        if settings.backbone_layers is None and settings.encoder == features.get("model"):
            blocks = decoder_blocks(settings.encoder)  # the labels' decoder: read it two thirds deep
            settings = replace(settings, backbone_layers=max(1, round(DECODER_READ_DEPTH * blocks)))
        if settings.init or activation_checkpointing:
            raise SettingError("objective", "subspace (the default) takes neither `init` from a subspace encoder nor "
                               "`activation_checkpointing` yet; set `objective` influcoder for the cosine "
                               "objective")  # fmt: skip
        if settings.length_prior:  # its encoder reads length features itself (EncoderConfig.length_features)
            raise SettingError(
                "length_prior",
                "applies to the cosine objectives (`objective` influcoder); `objective` subspace, "
                "the default, predicts from length features itself",
            )
    return init, settings


def _finish(run: DistillRun, settings: DistillSettings, labelled, train, device: str) -> None:
    """After training: the coverage reference (the out-of-coverage flag of index and attribute) and, when
    asked for, the length prior, both from the run's training record (read once, for both)."""
    needs_coverage = CoverageReference.load(run.best) is None
    needs_prior = settings.length_prior and LengthPrior.load(run.best) is None
    if not (needs_coverage or needs_prior):
        return
    record = run.record()
    if needs_coverage:
        write_coverage_reference(run.path, labelled, device=device, record=record)
    if needs_prior:
        fit_length_prior(run.path, *train, record=record)
