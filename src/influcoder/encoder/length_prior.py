"""A per-sample *length prior* added to the encoder's cosine: what transfers to tasks the encoder never saw.

About half of what per-anchor rho sees in the gradient labels is a query-independent *pool offset* (a pool
sample's mean influence over the queries, most of it between tasks: `benchmarks/pool_offset.py`,
docs/results/generalization.md). On unseen tasks the distilled encoder barely predicts it, while a ridge
regression on five length features of the pool sample does better: the labels are cosines of the gradient of a
response-only loss, an average over the response's tokens, so their direction depends on how many tokens
(and how much prompt) they average. Added to the distilled cosine with a small weight (z-units), it raised
unseen-task per-anchor rho and left seen tasks level on the ranking experiment's encoders (figures by weight:
docs/results/generalization.md).

The prior is fitted after distillation (`influcoder.encoder.prior_fit`) on the training pool's offsets (over
the training queries) and its weight chosen on the validation split, which is only honest for unseen tasks
when that split holds out whole tasks (`distill --val-group task`). It is saved beside the encoder
(``length_prior.json``) and applied by `InfluenceEncoder.encode_pool` / `encode_queries`: a pool vector
[e_p, b(p)] and a query vector [e_q, 1] have the inner product cos(e_p, e_q) + b(p), so FAISS searches it as it
searches cosines. A query's own offset would not change its ranking, so the prior is on the pool side only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.data.records import Sample

FILE = "length_prior.json"
WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)
"""Candidate weights of the prior, in standard deviations of the cosine per standard deviation of the prior."""
PENALTY = 1.0
"""Ridge penalty on standardised features: 5 features, hundreds of samples; the fit is not sensitive to it."""


def length_features(samples: Sequence[Sample | str]) -> np.ndarray:
    """(n, 5): log(1 + words) of prompt p and response r, p * r, p^2, r^2. Words, not tokens: no tokenizer is
    needed at scoring time, and the prior is a ranking of samples, which a monotone change of unit keeps."""
    strings = [i for i, s in enumerate(samples) if not isinstance(s, Sample)]
    if strings:
        raise InflucoderError(
            f"the encoder's length prior needs prompt/response samples, got plain text at position {strings[0]}"
        )
    prompt = np.log1p([len(s.prompt.split()) for s in samples])
    response = np.log1p([len(s.response.split()) for s in samples])
    return np.stack([prompt, response, prompt * response, prompt**2, response**2], axis=1)


def fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float = PENALTY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression of `y` on standardised features `x`, intercept unpenalised: (coefficients, feature
    mean, feature std); predict with ((x - mean) / std) @ coefficients + mean of y."""
    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-12
    a = (x - mean) / std
    y = np.asarray(y, dtype=np.float64)
    coefficients = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (y - y.mean()))
    return coefficients, mean, std


@dataclass
class LengthPrior:
    """Ridge coefficients over standardised length features, and the weight (cosine units per unit of the
    standardised prediction) that `offsets` applies."""

    coefficients: list[float]
    feature_mean: list[float]
    feature_std: list[float]
    weight: float = 0.0
    chosen_on: str = ""
    """What chose the weight (validation split, figures per candidate), for the record."""

    @classmethod
    def fit(cls, pool: Sequence[Sample], offsets: np.ndarray, penalty: float = PENALTY) -> LengthPrior:
        """Ridge of the pool offsets on the length features (intercept unpenalised, then dropped: a constant
        added to every pool sample changes no ranking)."""
        coefficients, mean, std = fit_ridge(length_features(pool), offsets, penalty)
        return cls(coefficients.tolist(), mean.tolist(), std.tolist())

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """The standardised-feature prediction of each sample's pool offset (before the weight)."""
        x = (length_features(samples) - np.array(self.feature_mean)) / np.array(self.feature_std)
        return x @ np.array(self.coefficients)

    def offsets(self, samples: Sequence[Sample]) -> np.ndarray:
        """(n,) float32: what the prior adds to each pool sample's cosine with any query."""
        return (self.weight * self.predict(samples)).astype(np.float32)

    def save(self, directory: str | Path) -> None:
        write_json_atomic(Path(directory) / FILE, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> LengthPrior | None:
        path = Path(directory) / FILE
        if not path.exists():
            return None
        try:
            return cls(**read_json(path))
        except (TypeError, ValueError) as error:
            raise InflucoderError(f"{path} is not a length prior written by influcoder distill: {error}") from None


def choose_weight(cosine: np.ndarray, prior: np.ndarray, true: np.ndarray) -> tuple[float, dict[str, float]]:
    """The weight (cosine units) of `WEIGHTS` that maximises per-anchor rho of cosine + weight * prior on a
    validation matrix, ties to the smaller; with the figures per candidate (in z-units)."""
    from influcoder.metrics import per_anchor_spearman

    scale = float(np.std(cosine)) / max(float(np.std(prior)), 1e-12)
    figures = {}
    for w in WEIGHTS:
        rhos = per_anchor_spearman(cosine + w * scale * prior[:, None], true)
        figures[f"{w:g}"] = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")

    def rank(w: float) -> tuple[float, float]:  # NaN (a validation split too small to rank) never wins
        value = figures[f"{w:g}"]
        return (-np.inf if np.isnan(value) else round(value, 6), -w)

    return max(WEIGHTS, key=rank) * scale, figures
