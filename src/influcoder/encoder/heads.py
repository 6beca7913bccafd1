"""The heads a subspace encoder can put on its pooled states, and their closed-form fits.

A subspace encoder regresses each text's gradient coordinates from its pooled backbone states. A linear map
(`ridge_head`) was the first answer; a Gaussian-kernel map (`KernelHead`, fitted by kernel ridge regression
in `kernel_head`) reads the same frozen states better on every protocol measured, unseen tasks and sources
included (docs/results/transfer.md, "Kernel head"), for a few megabytes of stored landmarks and a negligible
share of the scoring pass. Both fits work on standardised states (the shift and scale stored in the encoder)
and leave the intercept unpenalised.
"""

from __future__ import annotations

import numpy as np
import torch

from influcoder.core.errors import InflucoderError
from influcoder.encoder.settings import KERNEL_GAMMA, KERNEL_RIDGE, LINEAR_RIDGE

_CHUNK = 4096


class KernelHead(torch.nn.Module):
    """phi(z) = exp(-gamma * |z - l|^2 / d) against m stored landmark states l, then a linear map to k outputs.

    The landmarks are standardised training states kept as a buffer (saved with the head, never trained)."""

    def __init__(self, in_features: int, out_features: int, landmarks: int, gamma: float = KERNEL_GAMMA):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("landmarks", torch.zeros(landmarks, in_features))
        self.linear = torch.nn.Linear(landmarks, out_features)

    @property
    def in_features(self) -> int:
        return self.landmarks.shape[1]

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """(n, m) kernel values of standardised states `z` (n, d) against the landmarks."""
        land = self.landmarks.to(z.dtype)
        squared = (z * z).sum(-1, keepdim=True) + (land * land).sum(-1)[None] - 2.0 * z @ land.T
        return torch.exp(-self.gamma * squared.clamp(min=0.0) / z.shape[-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(z))


def gaussian_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """(len(a), len(b)) float64 kernel values, as `KernelHead.features` computes them."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.exp(-gamma * np.maximum(squared, 0.0) / a.shape[1])


def standardisation(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature shift and scale of the head's input. A feature constant in training gets scale 1: a tiny
    scale would blow up any later variation of it and push every such text out of the kernel's reach."""
    spread = states.std(0)
    return states.mean(0), np.where(spread < 1e-6, 1.0, spread + 1e-6)


def ridge_head(encoder, states: np.ndarray, targets: np.ndarray, ridge: float) -> None:
    """Set the encoder's linear head to the ridge regression of `targets` on standardised `states` (the bias is
    not penalised); the standardisation is stored in the encoder, so training steps in that well-scaled space."""
    mu, sd = standardisation(states)
    Z = np.hstack([(states - mu) / sd, np.ones((len(states), 1), dtype=np.float32)]).astype(np.float64)
    penalty = ridge * np.eye(Z.shape[1])
    penalty[-1, -1] = 0.0
    W = np.linalg.solve(Z.T @ Z + penalty, Z.T @ targets.astype(np.float64))
    _set(encoder, mu, sd, encoder.head, W[:-1].T, W[-1])


def kernel_rows(n: int, landmarks: int, seed: int) -> np.ndarray:
    """Which of n training rows become the landmarks: all of them up to `landmarks`, a seeded sample beyond."""
    if n <= landmarks:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=landmarks, replace=False))


def kernel_head(encoder, states: np.ndarray, targets: np.ndarray, ridge: float, seed: int = 0) -> None:
    """Set the encoder's `KernelHead` to the kernel ridge regression of `targets` on standardised `states`.

    With every training state a landmark this is exact kernel ridge regression, (K + ridge I)^-1 (Y - mean);
    with m < n landmarks the subset-of-regressors solution (K_nm^T K_nm + ridge K_mm)^-1 K_nm^T (Y - mean),
    which equals it when m = n. The intercept is the targets' mean (unpenalised)."""
    head = encoder.head
    mu, sd = standardisation(states)
    Z = ((states - mu) / sd).astype(np.float64)
    rows = kernel_rows(len(Z), head.landmarks.shape[0], seed)
    if len(rows) != head.landmarks.shape[0]:
        raise InflucoderError(f"the kernel head keeps {head.landmarks.shape[0]} landmarks but is fitted on {len(Z)} "
                              "texts: build it with kernel_landmarks at most the number of training texts")  # fmt: skip
    land = Z[rows]
    Y = targets.astype(np.float64)
    mean = Y.mean(0)
    try:
        alpha = kernel_weights(Z, land, Y - mean, head.gamma, ridge)
    except np.linalg.LinAlgError:
        raise InflucoderError(f"the kernel fit is singular at penalty {ridge:g} (texts with equal states, e.g. "
                              "duplicates): give a positive --subspace-ridge") from None  # fmt: skip
    with torch.no_grad():
        head.landmarks.copy_(torch.as_tensor(land, dtype=torch.float32))
    _set(encoder, mu, sd, head.linear, alpha.T, mean)


def kernel_weights(Z: np.ndarray, land: np.ndarray, Y: np.ndarray, gamma: float, ridge: float) -> np.ndarray:
    """(m, k) weights on the landmarks' kernel values for centred targets `Y` of the standardised states `Z`
    (see `kernel_head`; `land` is `Z` itself for exact kernel ridge regression)."""
    if len(land) == len(Z):
        return np.linalg.solve(gaussian_kernel(Z, Z, gamma) + ridge * np.eye(len(Z)), Y)
    gram, right = ridge * gaussian_kernel(land, land, gamma), np.zeros((len(land), Y.shape[1]))
    for start in range(0, len(Z), _CHUNK):  # K_nm in row chunks: n x m float64 need not fit at once
        block = gaussian_kernel(Z[start : start + _CHUNK], land, gamma)
        gram += block.T @ block
        right += block.T @ Y[start : start + _CHUNK]
    return np.linalg.solve(gram + 1e-8 * np.trace(gram) / len(gram) * np.eye(len(gram)), right)


def fit_head(encoder, states: np.ndarray, targets: np.ndarray, ridge: float | None = None, seed: int = 0) -> None:
    """The closed-form fit of whichever head the encoder has (`kernel_head` or `ridge_head`); `ridge` None:
    that head's default penalty (the two penalties act on different scales)."""
    if isinstance(encoder.head, KernelHead):
        kernel_head(encoder, states, targets, KERNEL_RIDGE if ridge is None else ridge, seed)
    else:
        ridge_head(encoder, states, targets, LINEAR_RIDGE if ridge is None else ridge)


def _set(encoder, mu, sd, linear: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        encoder.head_shift.copy_(torch.as_tensor(mu, dtype=torch.float32))
        encoder.head_scale.copy_(torch.as_tensor(sd, dtype=torch.float32))
        linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def make_head(in_features: int, config) -> torch.nn.Module | None:
    """The head an `EncoderConfig` describes (None without `head_dim`), its weights still to be fitted or
    loaded."""
    if not config.head_dim:
        return None
    if config.head_kind == "kernel":
        return KernelHead(in_features, config.head_dim, config.kernel_landmarks, config.kernel_gamma)
    return torch.nn.Linear(in_features, config.head_dim)
