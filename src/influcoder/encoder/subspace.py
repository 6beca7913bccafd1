"""Subspace encoders: a text's coordinates on the top singular directions of the training gradients.

A distilled cosine encoder learns which *texts* resemble each other in gradient space, and that does not
carry to tasks it never saw. The gradients themselves do: the top k singular directions V of a broad set of
training gradients hold nearly all of what an unseen task's gradients share with each other (the transfer
page's "subspace ceiling"). So the encoder here does not learn pairs; it regresses each training sample's
own coordinates c = V^T g (g its unit gradient) from the text, which every labelled sample provides, with or
without queries. A pool sample's predicted coordinates, dotted with a query's coordinates (exact ones, from
one query gradient, or the encoder's own prediction), estimate the cosine the labels hold.

`fit_coordinates` starts from the ridge regression of the targets on the frozen pooled states (the untrained
encoder's best linear answer) and fine-tunes backbone and head on the mean squared error of the coordinates,
plus, where query labels are given, one minus each training query's Pearson correlation between predicted
and labelled influence over the batch (the distillation loss's value term, with the query side fixed).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import DamagedFileError
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.records import Sample
from influcoder.encoder.heads import fit_head, ridge_head  # noqa: F401 - ridge_head: also importable from here
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.states_cache import pooled_states  # noqa: F401 - also importable from here

SUBSPACE_FILE = "subspace.npz"
EXACT_GRAM_LIMIT = 20_000
"""Up to this many gradients the directions come from the exact n x n Gram matrix; beyond, from a randomised
SVD (`torch.svd_lowrank`), whose cost grows linearly in n."""


def unit_rows(gradients: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit norm (a zero row stays zero): the labels are cosines."""
    rows = np.asarray(gradients, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@dataclass
class GradientSubspace:
    """The top-k right singular directions of a set of unit gradients; a sample's coordinates are its unit
    gradient's projections on them, and coordinates dotted together estimate the cosine of two gradients."""

    directions: np.ndarray
    """(k, d) float32, orthonormal rows, in order of decreasing singular value."""
    singular_values: np.ndarray
    """(k,) of the unit gradient matrix it was fitted on."""

    @classmethod
    def fit(cls, gradients: np.ndarray, k: int, exact_limit: int = EXACT_GRAM_LIMIT, seed: int = 0) -> GradientSubspace:
        """From (n, d) gradients (normalised here); k is capped at min(n, d)."""
        G = unit_rows(gradients)
        k = min(k, *G.shape)
        if len(G) <= exact_limit:
            values, vectors = np.linalg.eigh((G @ G.T).astype(np.float64))
            order = np.argsort(values)[::-1][:k]
            s = np.sqrt(np.clip(values[order], 1e-24, None))
            directions = (vectors[:, order].T / s[:, None]).astype(np.float32) @ G
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _, s_t, V = torch.svd_lowrank(torch.from_numpy(G), q=min(k + 16, *G.shape), niter=6)
            s, directions = s_t.numpy()[:k].astype(np.float64), V.numpy()[:, :k].T.copy()
        return cls(directions.astype(np.float32), s.astype(np.float32))

    @property
    def k(self) -> int:
        return len(self.directions)

    def coordinates(self, gradients: np.ndarray) -> np.ndarray:
        """(n, k) coordinates of (n, d) gradients (normalised here)."""
        return unit_rows(gradients) @ self.directions.T

    def save(self, directory: str | Path) -> None:
        """Write the subspace with its checksum record (`influcoder.core.checksums`)."""
        import io

        from influcoder.core import checksums

        buffer = io.BytesIO()
        np.savez(buffer, directions=self.directions, singular_values=self.singular_values)
        checksums.write_checked(Path(directory) / SUBSPACE_FILE, buffer.getvalue())

    @classmethod
    def load(cls, directory: str | Path) -> GradientSubspace | None:
        """The subspace saved in an encoder directory (or a `distill` output's `best/`), or None where there is
        none."""
        path = Path(directory) / SUBSPACE_FILE
        if not path.exists() and not (Path(directory) / "config.json").exists():
            path = Path(directory) / "best" / SUBSPACE_FILE
        if not path.exists():
            return None
        from influcoder.core import checksums

        checksums.check(path, "distil the encoder again", full=True)
        try:
            with np.load(path) as data:
                directions, values = data["directions"], data["singular_values"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DamagedFileError(f"{path}: not a readable subspace file ({exc}); distil the encoder again") from None
        if directions.ndim != 2 or values.shape != (len(directions),) or not np.isfinite(directions).all():
            raise DamagedFileError(f"{path}: directions {directions.shape} and singular values {values.shape} "
                                   "do not fit together or hold non-finite values")  # fmt: skip
        return cls(directions, values)


@dataclass
class CoordinateFitSettings:
    """How a subspace encoder is fitted (`fit_coordinates`)."""

    epochs: int = 3
    """Passes over the training samples."""
    lr: float = 5e-5
    """AdamW learning rate of the backbone."""
    head_lr: float = 1e-3
    """AdamW learning rate of the head (initialised at the ridge solution)."""
    weight_decay: float = 0.01
    batch_size: int = 32
    score_weight: float = 0.5
    """Weight of the per-query Pearson term (0: coordinates only)."""
    ridge: float | None = None
    """Penalty of the head's initial closed-form fit (`heads.fit_head`); None: the head's own default (1,000 on
    standardised pooled states for a linear head, 0.3 on the kernel for a kernel head)."""
    seed: int = 0


@dataclass
class FitPosition:
    """Where a coordinate fit stands after an epoch: what a fit continued in another process needs to go on
    exactly as an uninterrupted one would (the encoder's weights travel beside it)."""

    epochs_done: int = 0
    optimizer: dict | None = None
    """AdamW's state (None before the first trained epoch: a fresh optimizer)."""
    batch_order: dict | None = None
    """The batch-order generator's state (None: freshly seeded)."""


def subspace_encoder(backbone: str, k: int, seed: int = 0, **config) -> InfluenceEncoder:
    """A fresh subspace encoder: a k-wide head on standardised pooled states and length features, output as
    it is (coordinates, not unit vectors). Other `EncoderConfig` fields (pooling, max_length) pass through."""
    return InfluenceEncoder.from_backbone(backbone, seed=seed, head_dim=k, unit_norm=False, length_features=True,
                                          standardise_head_input=True, **config)  # fmt: skip


def _column_pearson(pred: torch.Tensor, true: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over columns (queries) of the weighted Pearson correlation over rows (pool samples)."""
    n = weight.sum(0).clamp(min=1.0)
    pc = pred - (weight * pred).sum(0) / n
    tc = true - (weight * true).sum(0) / n
    cov = (weight * pc * tc).sum(0)
    var = (weight * pc * pc).sum(0) * (weight * tc * tc).sum(0)
    return (cov / (var + 1e-12).sqrt()).mean()


def _length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar token length (little padding): shuffle, sort within chunks of 16 batches,
    cut, shuffle the batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 16
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches += [np.array(part[i : i + batch_size]) for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def fit_coordinates(
    encoder: InfluenceEncoder,
    samples: Sequence[Sample],
    targets: np.ndarray,
    settings: CoordinateFitSettings | None = None,
    query_rows: np.ndarray | None = None,
    query_labels: np.ndarray | None = None,
    show_progress: bool | None = None,
    start_at_ridge: bool = True,
    query_coords: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    on_epoch: Callable[[dict[str, float], FitPosition], None] | None = None,
    start: FitPosition | None = None,
) -> list[dict[str, float]]:
    """Fit `encoder` (from `subspace_encoder`, head width k) to regress `targets` (n, k) from `samples`.

    The score term's queries are either training samples, `query_rows` (m,) (a sample's own column is left
    out), or other texts given by their coordinates `query_coords` (m, k), with `exclude` (n, m) marking pairs
    to leave out (the same text on both sides); `query_labels` (n, m) holds each training sample's label
    against them. `start_at_ridge=False` continues from the head as it is; `start` continues a fit saved after
    its epoch `start.epochs_done` (the encoder already holding that epoch's weights); `on_epoch` sees each
    epoch's record (mean loss parts) and the position to save when the epoch ends. Returns the records.
    `show_progress`: the epoch bars on or off; None leaves them to the switch in `influcoder.core.progress`."""
    settings = settings or CoordinateFitSettings()
    _check_fit(encoder, samples, targets)
    if start_at_ridge:
        fit_head(encoder, pooled_states(encoder, samples), targets, settings.ridge, settings.seed)
    target = torch.as_tensor(targets, dtype=torch.float32)
    scale = float(target.var(0).sum()) + 1e-12
    score = None
    if query_labels is not None and settings.score_weight > 0:
        score = _ScoreTerm.of(targets, query_labels, query_rows, query_coords, exclude)
    encoded = encoder.tokenize_unpadded(samples)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    head = [p for n, p in encoder.named_parameters() if not n.startswith("backbone.")]
    optimizer = torch.optim.AdamW(
        [{"params": list(encoder.backbone.parameters()), "lr": settings.lr},
         {"params": head, "lr": settings.head_lr}], weight_decay=settings.weight_decay)  # fmt: skip
    rng = np.random.default_rng(settings.seed)
    start = start or FitPosition()
    if start.optimizer is not None:
        optimizer.load_state_dict(start.optimizer)
    if start.batch_order is not None:
        rng.bit_generator.state = start.batch_order
    history = []
    encoder.eval()  # no dropout: the fit starts exactly at the ridge solution
    for epoch in range(start.epochs_done, settings.epochs):
        batches = _length_batches(lengths, settings.batch_size, rng)
        with progress_bars(show_progress):
            bar = progress_bar(batches, desc=f"subspace epoch {epoch + 1}", unit="batch")
        totals = _fit_epoch(encoder, encoded, bar, target, scale, optimizer, score, settings.score_weight)
        history.append({"epoch": epoch + 1, **totals})
        if on_epoch is not None:
            on_epoch(history[-1], FitPosition(epoch + 1, optimizer.state_dict(), rng.bit_generator.state))
    return history


def _check_fit(encoder: InfluenceEncoder, samples: Sequence[Sample], targets: np.ndarray) -> None:
    """Refuse an encoder that is not a subspace encoder of the targets' width, or targets of other samples."""
    config = encoder.config
    if encoder.head is None or config.unit_norm or encoder.head.out_features != targets.shape[1] \
            or not config.standardise_head_input:  # fmt: skip
        raise InflucoderError(f"a subspace encoder needs a head of width {targets.shape[1]}, unit_norm=False and "
                              "standardise_head_input=True (`subspace_encoder`)")  # fmt: skip
    if len(samples) != len(targets):
        raise InflucoderError(f"{len(samples)} samples but {len(targets)} target rows")


@dataclass(frozen=True)
class _ScoreTerm:
    """The score term's query side: its queries' coordinates (m, k), each training sample's labels against them
    (n, m), and which of those pairs count (1) or are left out (0)."""

    coords: torch.Tensor
    labels: torch.Tensor
    keep: torch.Tensor

    @classmethod
    def of(cls, targets, query_labels, query_rows=None, query_coords=None, exclude=None) -> _ScoreTerm:
        """Queries given as training rows `query_rows` (a sample's own column left out) or as `query_coords`
        with `exclude` (n, m) marking the pairs to leave out."""
        if query_coords is None:
            query_coords, exclude = targets[query_rows], np.arange(len(targets))[:, None] == query_rows[None, :]
        labels = torch.as_tensor(query_labels, dtype=torch.float32)
        keep = (
            torch.ones(labels.shape) if exclude is None else torch.as_tensor(~np.asarray(exclude), dtype=torch.float32)
        )
        return cls(torch.as_tensor(query_coords, dtype=torch.float32), labels, keep)


def _fit_epoch(
    encoder: InfluenceEncoder,
    encoded: dict,
    batches,
    target: torch.Tensor,
    scale: float,
    optimizer: torch.optim.Optimizer,
    score: _ScoreTerm | None,
    score_weight: float,
) -> dict[str, float]:
    """One pass over `batches` (row index arrays): the coordinates' squared error relative to the targets'
    total variance, plus `score_weight` x (1 - Pearson) of the score term; the mean of each part."""
    totals = {"mse": 0.0, "pearson": 0.0}
    for rows in batches:
        pred = encoder(**encoder.pad(encoded, rows))
        mse = ((pred - target[rows]) ** 2).sum(1).mean() / scale
        loss = mse
        if score is not None:
            pearson = _column_pearson(pred @ score.coords.T, score.labels[rows], score.keep[rows])
            loss = loss + score_weight * (1.0 - pearson)
            totals["pearson"] += float(pearson.detach()) / len(batches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals["mse"] += float(mse.detach()) / len(batches)
    return totals
