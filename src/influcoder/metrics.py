"""Agreement of predicted with ground-truth influence (the paper's section 4 metrics).

Both matrices are pool x queries. *Per-anchor* Spearman ranks the pool for each query separately and
averages over queries (how well one query's attribution is recovered). *Mean-aggregated* Spearman first
averages scores over the query set per pool sample, then ranks (how well a filtering score is recovered).
*Query-specific* per-anchor Spearman removes each pool sample's mean over the queries first (what is left
when a query-independent pool offset cannot help).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata, spearmanr


@dataclass
class SpearmanReport:
    per_anchor_mean: float
    per_anchor_std: float
    per_anchor_median: float
    mean_aggregated: float
    query_specific_mean: float
    n_pool: int
    n_queries: int

    def to_dict(self) -> dict:
        return asdict(self)


def _check(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"need two pool x query matrices of one shape, got {pred.shape} and {true.shape}")
    if pred.shape[0] < 2:
        raise ValueError("Spearman needs at least two pool samples")
    return pred, true


def per_anchor_spearman(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Spearman over the pool for each query (column): one value per query."""
    pred, true = _check(pred, true)
    rp = rankdata(pred, axis=0)
    rt = rankdata(true, axis=0)
    rp -= rp.mean(axis=0)
    rt -= rt.mean(axis=0)
    denom = np.sqrt((rp**2).sum(axis=0) * (rt**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rp * rt).sum(axis=0) / denom, np.nan)


def mean_aggregated_spearman(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman between pool scores averaged over the queries."""
    pred, true = _check(pred, true)
    return float(spearmanr(pred.mean(axis=1), true.mean(axis=1)).statistic)


def query_specific_per_anchor(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-anchor Spearman after removing each pool sample's mean over the evaluated queries from both.

    On the project's labels about half of the variance is a query-independent pool offset (see
    docs/results/generalization.md): a method can rank well per query by knowing only which pool samples
    influence everything. With the row means removed, only the query-specific part is left to rank. A
    prediction without such a part (constant per pool sample, e.g. the pool-mean reference) ranks nothing: 0,
    not NaN.
    """
    pred, true = _check(pred, true)
    pred_part = pred - pred.mean(axis=1, keepdims=True)
    true_part = true - true.mean(axis=1, keepdims=True)
    values = per_anchor_spearman(pred_part, true_part)
    scale = max(float(np.abs(pred).max()), 1e-30)
    flat = np.ptp(pred_part, axis=0) <= 1e-9 * scale
    return np.where(flat, 0.0, values)


def spearman_report(pred: np.ndarray, true: np.ndarray) -> SpearmanReport:
    per_anchor = per_anchor_spearman(pred, true)
    return SpearmanReport(
        per_anchor_mean=float(np.nanmean(per_anchor)),
        per_anchor_std=float(np.nanstd(per_anchor)),
        per_anchor_median=float(np.nanmedian(per_anchor)),
        mean_aggregated=mean_aggregated_spearman(pred, true),
        query_specific_mean=float(np.nanmean(query_specific_per_anchor(pred, true))),
        n_pool=int(pred.shape[0]),
        n_queries=int(pred.shape[1]),
    )


def per_anchor_by_group(pred: np.ndarray, true: np.ndarray, groups: Sequence[str]) -> dict[str, dict]:
    """Per-anchor Spearman averaged within each group of queries (e.g. the query's task).

    A mean over all queries hides where a method fails: one weak task among many strong ones barely moves it.
    Returns {group: {"n_queries", "per_anchor_mean", "per_anchor_std"}}, groups in first-seen order.
    """
    pred, true = _check(pred, true)
    if len(groups) != pred.shape[1]:
        raise ValueError(f"need one group per query column: {len(groups)} groups for {pred.shape[1]} queries")
    per_anchor = per_anchor_spearman(pred, true)
    columns: dict[str, list[int]] = {}
    for j, group in enumerate(groups):
        columns.setdefault(group, []).append(j)
    return {
        group: {
            "n_queries": len(js),
            "per_anchor_mean": float(np.nanmean(per_anchor[js])),
            "per_anchor_std": float(np.nanstd(per_anchor[js])),
        }
        for group, js in columns.items()
    }


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for the boolean labels `positive` (ties count half), via the
    Mann-Whitney rank sum; None when one class is empty (the area is undefined)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) at every distinct score threshold, highest threshold last, with the point
    (recall 0, precision 1) appended: the curve scikit-learn's `precision_recall_curve` draws, which DATE-LM's
    AUPRC integrates. Tied scores are one threshold (a tie cannot be ordered, so it is not)."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {positive.shape} must be equal-length vectors")
    if not positive.any():
        raise ValueError("no positive sample: precision-recall is undefined")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positive[order]
    last_of_tie = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    true_pos = np.cumsum(hits)[last_of_tie]
    flagged = last_of_tie + 1
    precision = true_pos / flagged
    recall = true_pos / true_pos[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def auprc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve by the trapezoidal rule, as DATE-LM computes it
    (`sklearn.metrics.auc(recall, precision)` over `precision_recall_curve`)."""
    precision, recall = precision_recall_curve(scores, positive)
    return float(-np.trapezoid(precision, recall))


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mean precision at each recall step, sum (R_n - R_n-1) P_n: the step-wise area, which unlike the
    trapezoid never interpolates optimistically between thresholds."""
    precision, recall = precision_recall_curve(scores, positive)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def recall_when_dropping(scores: np.ndarray, positive: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """Share of the positives among the top `fraction` of the pool by score, per fraction: what a filter
    that drops that share of the pool removes of the harmful samples."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    out = {}
    for fraction in fractions:
        dropped = order[: int(round(fraction * len(scores)))]
        out[f"{fraction:g}"] = float(positive[dropped].sum() / max(1, positive.sum()))
    return out


def resampled(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: np.ndarray,
    positive: np.ndarray,
    n_positive: int,
    draws: int,
    seed: int = 0,
) -> np.ndarray:
    """`metric(scores, positive)` over every negative plus `n_positive` positives drawn at random (without
    replacement), `draws` times: a pool's figure at a rare base rate (0.7% in DATE-LM's toxicity pools)
    measured on many more positives than one such pool holds, so two scorers compare on hundreds of positives,
    not 15."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    negatives, positives = np.where(~positive)[0], np.where(positive)[0]
    if not 0 < n_positive <= len(positives):
        raise ValueError(f"n_positive must be in 1..{len(positives)}, got {n_positive}")
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for i in range(draws):
        keep = np.concatenate([negatives, rng.choice(positives, size=n_positive, replace=False)])
        out[i] = metric(scores[keep], positive[keep])
    return out


def resampled_auprc(scores: np.ndarray, positive: np.ndarray, n_positive: int, draws: int, seed: int = 0) -> np.ndarray:
    """`auprc` under `resampled` draws of the positives."""
    return resampled(auprc, scores, positive, n_positive, draws, seed)
