"""One `Distiller.fit` run, in small steps: resume, step, checkpoint, validate, record.

`TrainingRun` holds what changes while a run trains (optimizer, schedule, the numpy generator, logs, the best
validation figure, where a resumed run stopped inside an epoch) and what it trains on (the split of the
pool and queries into training and validation parts, the steps of an epoch). Each method does one of the
things an epoch consists of, so that the order in which the random generators are drawn, which is what makes
a resumed run reach the same weights as an uninterrupted one, reads top to bottom in `run_epoch`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from influcoder.core.errors import NonFiniteValueError
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.records import Sample, sample_groups
from influcoder.encoder.epoch_log import EpochLog
from influcoder.encoder.losses import distillation_loss, group_ranking_loss
from influcoder.encoder.predict import predict_matrix
from influcoder.encoder.resume import save_state
from influcoder.encoder.run_record import DistillRun, TrainingRecord
from influcoder.encoder.splits import validation_split
from influcoder.metrics import spearman_report

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """What a run needs of its `Distiller` (typed here without importing it: the distiller imports this)."""

    settings: Any
    encoder: Any
    device: torch.device

    def candidates(self, rng, fresh, train_pool, query_cols, scores) -> np.ndarray: ...

    def parameter_groups(self) -> list[dict]: ...


def warmup_then_linear_decay(optimizer: torch.optim.Optimizer, warmup: int, total_steps: int):
    """transformers' linear warm-up and decay schedule, entered at its step 1.

    Its step 0 has learning rate 0, a step that trains nothing. Entered one step in (the helper's schedule
    over ``total_steps + 1`` steps), step s trains at lr * (s + 1) / warmup during warm-up and decays to
    lr / (total_steps - warmup + 1) on the last step. On a short distillation such as the demo's, entering at
    step 0 wastes a step that matters and lowered held-out per-anchor rho; entered one step in, the schedule
    matches the hand-written one this replaces.
    """
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])  # what a scheduler created at last_epoch >= 0 reads
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps + 1, last_epoch=0)


@dataclass(frozen=True)
class TrainingPlan:
    """Which rows and columns train and which validate, and how an epoch deals the training pool."""

    train_pool: np.ndarray
    val_pool: np.ndarray
    train_queries: np.ndarray
    val_queries: np.ndarray
    fresh_per_step: int
    """Pool samples of the epoch's permutation dealt to each step (the rest of a step's candidates are hard)."""
    steps_per_epoch: int
    """Enough steps for every training pool sample to be a candidate once per epoch."""

    @classmethod
    def draw(cls, settings, pool: Sequence[Sample], queries: Sequence[Sample], rng: np.random.Generator):
        groups = None
        if settings.val_group:
            groups = (sample_groups(pool, settings.val_group), sample_groups(queries, settings.val_group))
        same = [s.id for s in pool] == [q.id for q in queries]
        train_pool, val_pool, train_q, val_q = validation_split(
            len(pool), len(queries), settings.val_fraction, rng, groups, same_texts=same
        )
        per_batch = min(settings.candidates_per_batch, len(train_pool))
        fresh = max(1, per_batch - min(settings.hard_candidates, per_batch))
        steps = max(1, math.ceil(len(train_pool) / fresh))
        return cls(train_pool, val_pool, train_q, val_q, fresh, steps)


class TrainingRun:
    """The state of one fit of `distiller` on `scores` (pool x queries), saved under `out` when given."""

    def __init__(
        self,
        distiller: Trainer,
        scores: np.ndarray,
        pool: Sequence[Sample],
        queries: Sequence[Sample],
        out: Path | None,
        key: dict,
    ):
        s = distiller.settings
        self.distiller, self.settings, self.encoder = distiller, s, distiller.encoder
        self.scores, self.pool, self.queries, self.out, self.key = scores, pool, queries, out, key
        self.rng = np.random.default_rng(s.seed)
        self.plan = TrainingPlan.draw(s, pool, queries, self.rng)
        total_steps = self.plan.steps_per_epoch * s.epochs
        self.optimizer = torch.optim.AdamW(distiller.parameter_groups(), lr=s.lr, weight_decay=s.weight_decay)
        self.schedule = warmup_then_linear_decay(self.optimizer, max(1, int(total_steps * s.warmup)), total_steps)
        self.logs: list[EpochLog] = []
        self.best = -math.inf
        self.inside: dict | None = None
        """Where a resumed run stopped inside an epoch: the epoch's order, steps done, loss sums, seconds."""

    # ------------------------------------------------------------------------------------------ resume / save
    def restore(self, state: dict) -> None:
        """Continue exactly where a saved state stopped (weights, optimizer, schedule, both generators)."""
        self.logs = [EpochLog(**x) for x in state["logs"]]
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.best = state["best"]
        self.inside = state.get("inside")

    def where(self) -> str:
        """Where a restored run continues, for the user."""
        return f"step {self.inside['step']} of epoch {len(self.logs) + 1}" if self.inside else f"epoch {len(self.logs)}"

    def checkpoint(self, position: dict | None) -> None:
        """Everything a rerun needs to continue exactly here (`position`: inside an epoch)."""
        parts = {
            "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "logs": [asdict(x) for x in self.logs],
            "best": self.best,
        }
        save_state(self.out, self.key, parts, position)

    # ------------------------------------------------------------------------------------------------- epoch
    def run_epoch(self, epoch: int, checkpoint_seconds: float | None) -> EpochLog:
        """Train one epoch (from where a resumed run stopped inside it), validate, and record it."""
        self.encoder.train()
        started = time.perf_counter()
        if self.inside is not None:  # the epoch's order, steps done and loss sums, as saved
            first, deal, sums = self.inside["step"], self.inside["deal"].numpy(), np.array(self.inside["sums"])
            started -= self.inside["seconds"]
            self.inside = None
        else:
            first, sums = 0, np.zeros(3)
            deal = self.rng.permutation(self.plan.train_pool)  # this epoch's order: each pool sample once
        steps = self.plan.steps_per_epoch
        desc = f"epoch {epoch}/{self.settings.epochs}"
        bar = progress_bar(range(first, steps), initial=first, total=steps, desc=desc, unit="step")
        saved = time.perf_counter()
        for step in bar:
            sums += self.step(epoch, step, deal)
            bar.set_postfix(loss=f"{sums[0] / (step + 1):.4f}")
            now = time.perf_counter()
            due = checkpoint_seconds is not None and now - saved >= checkpoint_seconds
            if self.out is not None and due and step + 1 < steps:
                position = {"step": step + 1, "deal": torch.from_numpy(np.ascontiguousarray(deal)),
                            "sums": [float(x) for x in sums], "seconds": now - started}  # fmt: skip
                self.checkpoint(position)
                saved = time.perf_counter()
        done = self.validate(epoch, sums / steps, round(time.perf_counter() - started, 2))
        self.logs.append(done)
        log.info(
            "epoch %d: loss %.4f (pearson %.4f, kl %.4f) val per-anchor rho %.4f, mean-aggregated rho %.4f "
            "[%.0f s]", epoch, done.loss, done.pearson_loss, done.kl_loss, done.val_per_anchor,
            done.val_mean_aggregated, done.seconds,
        )  # fmt: skip
        if self.out is not None:
            self.record(epoch, done)
        return done

    def step(self, epoch: int, step: int, deal: np.ndarray) -> tuple[float, float, float]:
        """One optimizer step on B sampled queries x C candidates; returns (loss, pearson part, kl part)."""
        s, plan, rng = self.settings, self.plan, self.rng
        cols = rng.choice(plan.train_queries, size=min(s.queries_per_batch, len(plan.train_queries)), replace=False)
        fresh = deal[step * plan.fresh_per_step : (step + 1) * plan.fresh_per_step]
        rows = self.distiller.candidates(rng, fresh, plan.train_pool, cols, self.scores)
        device = self.distiller.device
        true = torch.from_numpy(self.scores[np.ix_(rows, cols)].T.copy()).to(device)  # (B, C)
        embeddings = self.encoder.embed([self.queries[j] for j in cols] + [self.pool[i] for i in rows])
        q, c = embeddings[: len(cols)], embeddings[len(cols) :]
        loss, parts = distillation_loss(q @ c.T, true, s.alpha, s.temperature, s.pearson_center)
        if s.objective == "airrep":  # the paper's parts are still logged, as a common yardstick
            size = min(s.group_size, len(rows))
            groups = np.stack([rng.choice(len(rows), size, replace=False) for _ in range(s.groups_per_batch)])
            loss = group_ranking_loss(q @ c.T, true, torch.from_numpy(groups).to(device), s.temperature)
        if not bool(torch.isfinite(loss)):  # an optimizer step on NaN would silently ruin every weight
            ids = [self.queries[j].id for j in cols[:3]] + [self.pool[i].id for i in rows[:3]]
            raise NonFiniteValueError(
                f"non-finite training loss at epoch {epoch}, step {step + 1} (batch of queries and "
                f"candidates e.g. {', '.join(ids)}); nothing after the last saved state was kept: lower "
                "`lr` or check those samples"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), s.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return float(loss.detach()), parts["pearson"], parts["kl"]

    def validate(self, epoch: int, means: np.ndarray, seconds: float) -> EpochLog:
        """The epoch's log: its mean losses and Spearman on the validation pool and queries."""
        plan = self.plan
        with progress_bars(False):  # a few hundred texts after every epoch: the epoch's bar is enough
            predicted = predict_matrix(self.encoder, [self.pool[i] for i in plan.val_pool],
                                       [self.queries[j] for j in plan.val_queries])  # fmt: skip
        report = spearman_report(predicted, self.scores[np.ix_(plan.val_pool, plan.val_queries)])
        return EpochLog(epoch, *map(float, means), report.per_anchor_mean, report.mean_aggregated, seconds)

    def record(self, epoch: int, done: EpochLog) -> None:
        """Save the epoch's encoders (last; best on validation), the resume state and training.json."""
        run, plan = DistillRun(self.out), self.plan
        self.encoder.save_pretrained(run.last, replace=True)
        if done.val_per_anchor > self.best:
            self.best = done.val_per_anchor
            self.encoder.save_pretrained(run.best, replace=True)
        record = TrainingRecord(
            settings=self.settings.key(),
            epochs=[asdict(x) for x in self.logs],
            best_val_per_anchor=self.best,
            complete=epoch == self.settings.epochs,
            data=self.key["data"],
            train_pool_ids=[self.pool[i].id for i in plan.train_pool],
            val_pool_ids=[self.pool[i].id for i in plan.val_pool],
            train_query_ids=[self.queries[j].id for j in plan.train_queries],
            val_query_ids=[self.queries[j].id for j in plan.val_queries],
        )
        if epoch < self.settings.epochs:
            self.checkpoint(None)
        record.save(run.training_path)
        if epoch == self.settings.epochs:
            run.resume_path.unlink(missing_ok=True)
