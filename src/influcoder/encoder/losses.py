"""Distillation losses (the paper's section 3.2).

Both take matrices of shape (queries, candidates): `pred` the encoder's cosines, `true` the gradient
influence. Pearson over the flattened batch matrix aligns the *values*; the tempered-softmax KL aligns each
query's *ranking* of its candidates, weighting the top more (as a listwise ranking loss). They are combined
as alpha * Pearson + (1 - alpha) * KL.

`PEARSON_CENTERINGS`: the paper's Pearson ("none") also rewards matching each query's mean influence over the
pool, which neither use of the scores needs: a query's top-k and a filter's mean over queries are both
unchanged when a constant is added to one query's scores. "query" centres each query's row of both matrices
before the flattened Pearson, so the loss spends nothing on those per-query offsets (about a quarter of the
variance of SmolLM2 labels on `evals` x `bbh`) and keeps one scale across queries. The KL is shift-invariant
per query already.

`group_ranking_loss` is the objective of AirRep (Sun et al. 2025), the compared learned representation,
adapted to per-sample labels: AirRep ranks *groups* of training samples by their measured joint effect on a
query and scores a group by attention-pooling its members' representations with the query. Here a group's
true effect is the sum of its members' gradient influence (first-order influence is additive), its predicted
score the attention-weighted mean of its members' cosines with the query, and the loss a pairwise logistic
(RankNet) loss over the groups each query ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from influcoder.encoder.settings import PEARSON_CENTERINGS


def pearson_loss(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-8, center: str = "none") -> torch.Tensor:
    """1 - Pearson correlation of the flattened matrices (0 when perfectly linearly related).

    `center="query"` first subtracts each row's (query's) mean from both matrices (see the module docstring).
    """
    if center not in PEARSON_CENTERINGS:
        raise ValueError(f"center must be one of {PEARSON_CENTERINGS}, got {center!r}")
    pred, true = pred.float(), true.float()
    if center == "query":
        pred = pred - pred.mean(dim=-1, keepdim=True)
        true = true - true.mean(dim=-1, keepdim=True)
    p = pred.reshape(-1)
    t = true.reshape(-1)
    p = p - p.mean()
    t = t - t.mean()
    return 1.0 - (p * t).sum() / (p.norm() * t.norm() + eps)


def softmax_kl_loss(pred: torch.Tensor, true: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Mean over queries (rows) of KL(softmax(true / T) || softmax(pred / T)) over the candidates."""
    log_p_true = F.log_softmax(true.float() / temperature, dim=-1)
    log_p_pred = F.log_softmax(pred.float() / temperature, dim=-1)
    return (log_p_true.exp() * (log_p_true - log_p_pred)).sum(dim=-1).mean()


def distillation_loss(
    pred: torch.Tensor, true: torch.Tensor, alpha: float = 0.5, temperature: float = 0.1, center: str = "none"
) -> tuple[torch.Tensor, dict[str, float]]:
    """alpha * pearson_loss + (1 - alpha) * softmax_kl_loss, and both parts for logging."""
    pearson = pearson_loss(pred, true, center=center)
    kl = softmax_kl_loss(pred, true, temperature)
    total = alpha * pearson + (1.0 - alpha) * kl
    return total, {"pearson": float(pearson.detach()), "kl": float(kl.detach())}


def group_ranking_loss(
    pred: torch.Tensor, true: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Pairwise logistic loss over candidate groups, per query (see the module docstring).

    `pred`, `true`: (queries, candidates); `groups`: (n_groups, group_size) candidate indices. A group's
    predicted score is sum_i a_i pred_i with a = softmax(pred_group / temperature) (the query's attention over
    the members), its true score the sum of the members' true influence. Each ordered pair with a higher true
    score costs softplus(-(score_hi - score_lo) / temperature); ties cost nothing.
    """
    member_pred, member_true = pred.float()[:, groups], true.float()[:, groups]  # (queries, groups, size)
    attention = torch.softmax(member_pred / temperature, dim=-1)
    group_pred = (attention * member_pred).sum(dim=-1)
    group_true = member_true.sum(dim=-1)
    ahead = (group_true.unsqueeze(2) - group_true.unsqueeze(1)) > 0  # (queries, groups, groups): i ranks above j
    margins = (group_pred.unsqueeze(2) - group_pred.unsqueeze(1)) / temperature
    if not bool(ahead.any()):
        return pred.sum() * 0.0  # every group tied: nothing to rank, but keep the graph
    return F.softplus(-margins[ahead]).mean()
