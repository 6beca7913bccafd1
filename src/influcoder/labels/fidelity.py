"""Projection fidelity (paper appendix A.1): do sketched gradient cosines rank pairs like exact ones?

For a sample of texts, the exact per-example LoRA gradients are computed once; each projector is applied to
the same gradients, and the pairwise cosines (all pairs i < j) are compared with the exact ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.records import Sample
from influcoder.labels.featurizer import GradientFeaturizer, make_batches
from influcoder.labels.influence import normalize_rows
from influcoder.labels.projectors import Identity, Projector, make_projector
from influcoder.labels.settings import LabelSettings


def pair_cosines(features: np.ndarray) -> np.ndarray:
    normed = normalize_rows(features)
    sims = normed @ normed.T
    return sims[np.triu_indices(len(features), k=1)]


def projection_fidelity(
    samples: Sequence[Sample],
    settings: LabelSettings,
    dims: Sequence[int],
    progress: bool | None = None,
    featurizer: GradientFeaturizer | None = None,
) -> list[dict]:
    """One row per dim: Spearman/Pearson and max/mean abs error of projected vs exact pair cosines.
    `progress`: the gradient bar on (True) or off (False); None: the switch in `influcoder.core.progress`."""
    if len(samples) < 3:
        raise InflucoderError(f"a fidelity check needs at least 3 samples (pairs to compare), got {len(samples)}")
    featurizer = featurizer or GradientFeaturizer(settings)
    exact_proj = Identity(featurizer.in_dim)
    kind = settings.projector if settings.projector != "identity" else "countsketch"
    projectors: list[Projector] = [make_projector(kind, d, settings.seed) for d in dims]
    tokenized = featurizer.tokenize(samples)
    exact = np.empty((len(samples), featurizer.in_dim), dtype=np.float32)
    projected = [np.empty((len(samples), p.out_dim), dtype=np.float32) for p in projectors]
    batches = make_batches([len(t.input_ids) for t in tokenized], settings.batch_size, settings.batch_tokens)
    with progress_bars(progress):
        for batch in progress_bar(batches, desc="exact gradients", unit="batch"):
            blocks = featurizer.gradients([tokenized[i] for i in batch])
            with torch.no_grad():
                exact[batch] = exact_proj.project(blocks).cpu().numpy()
                for p, out in zip(projectors, projected):
                    out[batch] = p.project(blocks).cpu().numpy()
    reference = pair_cosines(exact)
    rows = []
    for p, feats in zip(projectors, projected):
        approx = pair_cosines(feats)
        err = np.abs(approx - reference)
        rows.append(
            {
                "projector": p.kind,
                "dim": p.out_dim,
                "in_dim": featurizer.in_dim,
                "n_samples": len(samples),
                "spearman": float(spearmanr(approx, reference).statistic),
                "pearson": float(pearsonr(approx, reference).statistic),
                "max_abs_error": float(err.max()),
                "mean_abs_error": float(err.mean()),
            }
        )
    return rows
