"""Distillation hyper-parameters; torch-free so the CLI can build its flags from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Pooling = Literal["mean", "cls", "attention", "response", "mean+response"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
RESPONSE_POOLINGS = ("response", "mean+response")
PearsonCentering = Literal["none", "query"]
PEARSON_CENTERINGS: tuple[str, ...] = get_args(PearsonCentering)


@dataclass
class DistillSettings:
    """Training hyper-parameters (paper defaults where the paper gives them)."""

    encoder: str = "minilm-l6"
    """Backbone: an embedded encoder name or a local HF encoder directory."""
    pooling: Pooling = "mean"
    """Pooling: mean, cls, attention, response (mean over the response tokens) or mean+response."""
    head_dim: int | None = None
    """Linear head output dim (None: no head)."""
    max_length: int = 256
    """Encoder tokens per text."""
    epochs: int = 10
    """Passes; one epoch offers every training pool sample once as a candidate."""
    lr: float = 5e-5
    """AdamW learning rate of the backbone."""
    head_lr_scale: float = 20.0
    """Learning rate of the new pooling/head parameters, as a multiple of lr (at lr they barely move)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup: float = 0.1
    """Fraction of steps of linear learning-rate warm-up."""
    alpha: float = 0.5
    """Weight of the Pearson loss; 1 - alpha weighs the KL."""
    temperature: float = 0.1
    """Softmax temperature of the KL loss, on cosine scales."""
    pearson_center: PearsonCentering = "none"
    """Pearson over the raw batch matrix (none, the paper's) or after centring each query's row (query)."""
    queries_per_batch: int = 12
    """B: queries per step."""
    candidates_per_batch: int = 15
    """C: pool candidates per step."""
    hard_candidates: int = 0
    """Of the C candidates, how many come from the top of a sampled query's true ranking."""
    val_fraction: float = 0.1
    """Fraction of training pool and queries held out for model selection."""
    grad_clip: float = 1.0
    """Max gradient norm."""
    seed: int = 0
    """Seed of splits, sampling, and head initialisation."""
