"""How far a text lies from what the encoder was distilled on: the out-of-coverage flag.

A distilled encoder is faithful on the tasks its labels covered and much less so elsewhere (per-anchor rho
0.68 on held-out samples of training tasks, 0.24 on unseen tasks, on the demo). A user cannot tell from a
score which case they are in, so every query and every returned sample gets a *coverage score*: the mean
cosine, in the encoder's own space, to its k nearest labelled training samples (pool and queries).

The threshold is calibrated on the distillation's validation split, samples held out of training but drawn
from its tasks: a text scoring below the `quantile` (default 5%) of the validation samples' scores lies
farther from the labelled data than nearly every in-coverage text does, and is flagged. The reference is
saved beside the encoder (`coverage.npz`, ~0.8 KB per labelled sample in float16) so `index` and `attribute`
can score without the labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from influcoder.core.atomic import atomic_output
from influcoder.data.records import Sample

FILE = "coverage.npz"


@dataclass
class CoverageReference:
    """Unit embeddings of the labelled training samples, k, and the calibrated threshold."""

    embeddings: np.ndarray
    k: int
    threshold: float
    quantile: float

    def score(self, embeddings: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Mean cosine to the k nearest reference samples, per row of `embeddings` (higher: better covered)."""
        reference = self.embeddings.astype(np.float32)
        k = min(self.k, len(reference))
        out = np.empty(len(embeddings), dtype=np.float64)
        for start in range(0, len(embeddings), batch):
            rows = np.asarray(embeddings[start : start + batch], dtype=np.float32)
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            similarity = rows @ reference.T
            nearest = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, -k:]
            out[start : start + batch] = nearest.mean(axis=1)
        return out

    def covered(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / FILE
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as handle:
                meta = json.dumps({"k": self.k, "threshold": self.threshold, "quantile": self.quantile})
                np.savez(handle, embeddings=self.embeddings.astype(np.float16), meta=np.array(meta))

    @classmethod
    def load(cls, directory: str | Path) -> CoverageReference | None:
        """The reference saved in an encoder directory (or its `best/`), or None when there is none."""
        for candidate in (Path(directory) / FILE, Path(directory) / "best" / FILE):
            if candidate.exists():
                with np.load(candidate, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    return cls(data["embeddings"].astype(np.float32), meta["k"], meta["threshold"], meta["quantile"])
        return None


def build_reference(
    encoder,
    labelled: Sequence[Sample],
    validation: Sequence[Sample],
    k: int = 10,
    quantile: float = 0.05,
    progress: bool = False,
) -> CoverageReference:
    """Embed the labelled training samples; calibrate the threshold on the validation samples' scores (with
    the reference rounded to float16 first, as it is saved)."""
    embeddings = encoder.encode(list(labelled), show_progress=progress).astype(np.float16).astype(np.float32)
    reference = CoverageReference(embeddings, k, float("-inf"), quantile)
    if len(validation):
        reference.threshold = float(np.quantile(reference.score(encoder.encode(list(validation))), quantile))
    return reference
