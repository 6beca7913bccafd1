"""`EpochLog`: one epoch of a distillation run as `training.json` records it (`TrainingRecord.epochs`; every
objective writes it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpochLog:
    epoch: int
    loss: float | None
    """None for a subspace run's epoch 0 (the ridge start: nothing trained)."""
    pearson_loss: float | None
    kl_loss: float | None
    """None for a subspace run (it has no KL term)."""
    val_per_anchor: float
    val_mean_aggregated: float
    seconds: float
    coordinate_error: float | None = None
    """A subspace run's mean squared coordinate error, relative to the targets' variance."""
