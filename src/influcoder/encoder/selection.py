"""Which samples to spend a label budget on: spread over the embedding space, not drawn at random.

Labels cost a decoder backward pass per sample, and a distilled encoder learns the
tasks its labels cover (on tasks it never saw, its fidelity drops: docs/results/ranking.md).
A random draw spends the budget where the candidates are dense: one large task can take most of it. These
choosers spread it over the untrained encoder's embedding space instead:

- ``kmeans``: k-means with `budget` centres (k-means++ seeding, Lloyd iterations, cosine geometry on unit
  vectors), then the candidate nearest each centre: representative points of every dense region.
- ``farthest``: greedy farthest-point (k-centre) selection: each next sample is the one farthest from all
  chosen so far, which reaches outliers and small tasks first.
- ``random``: the seeded random draw, the reference.

`per_group_cap` additionally caps how many samples one group (e.g. ``meta.task``) may take. All choosers are
deterministic for a seed (plain numpy, no threaded reductions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from influcoder.core.errors import InflucoderError, SettingError

Method = Literal["kmeans", "farthest", "random"]
METHODS: tuple[str, ...] = get_args(Method)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _allowed(groups: Sequence[str] | None, cap: int | None, taken: Counter, i: int) -> bool:
    return groups is None or cap is None or taken[groups[i]] < cap


def farthest_point(
    embeddings: np.ndarray, budget: int, seed: int = 0, groups: Sequence[str] | None = None, cap: int | None = None
) -> np.ndarray:
    """Greedy k-centre: start at a seeded random sample, then repeatedly take the farthest remaining one."""
    x = _unit(embeddings)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    taken: Counter = Counter()
    distance = np.full(len(x), np.inf)
    blocked = np.zeros(len(x), dtype=bool)
    current = int(rng.integers(len(x)))
    while len(chosen) < budget:
        chosen.append(current)
        blocked[current] = True
        if groups is not None:
            taken[groups[current]] += 1
            if cap is not None and taken[groups[current]] >= cap:
                blocked |= np.array([g == groups[current] for g in groups])
        distance = np.minimum(distance, 1.0 - x @ x[current])
        if blocked.all():
            break
        current = int(np.argmax(np.where(blocked, -np.inf, distance)))
    return np.array(chosen, dtype=np.int64)


def kmeans_representatives(
    embeddings: np.ndarray,
    budget: int,
    seed: int = 0,
    iterations: int = 20,
    groups: Sequence[str] | None = None,
    cap: int | None = None,
) -> np.ndarray:
    """k-means (k = budget, k-means++ seeding) on unit vectors; for each centre the nearest unchosen sample."""
    x = _unit(embeddings)
    rng = np.random.default_rng(seed)
    centres = [x[int(rng.integers(len(x)))]]
    closest = 1.0 - x @ centres[0]
    for _ in range(1, budget):  # k-means++: next centre drawn proportional to squared distance
        weights = np.clip(closest, 0, None) ** 2
        pick = int(rng.choice(len(x), p=weights / weights.sum())) if weights.sum() > 0 else int(rng.integers(len(x)))
        centres.append(x[pick])
        closest = np.minimum(closest, 1.0 - x @ x[pick])
    c = np.stack(centres)
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        for k in range(len(c)):
            members = x[assign == k]
            if len(members):
                c[k] = members.mean(axis=0) / max(np.linalg.norm(members.mean(axis=0)), 1e-12)
    similarity = x @ c.T
    chosen: list[int] = []
    used = np.zeros(len(x), dtype=bool)
    taken: Counter = Counter()
    for k in np.argsort(-similarity.max(axis=0), kind="stable"):  # tightest clusters pick first
        for i in np.argsort(-similarity[:, k], kind="stable"):
            if not used[i] and _allowed(groups, cap, taken, int(i)):
                chosen.append(int(i))
                used[i] = True
                if groups is not None:
                    taken[groups[i]] += 1
                break
    return np.array(chosen, dtype=np.int64)


def select_indices(
    n: int,
    budget: int,
    method: str = "kmeans",
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    per_group_cap: int | None = None,
) -> np.ndarray:
    """Indices of at most `budget` of `n` candidates, sorted; `embeddings` (n x d) for kmeans and farthest."""
    if method not in METHODS:
        raise InflucoderError(f"unknown selection method {method!r}; choose from {', '.join(METHODS)}")
    if budget < 1:
        raise SettingError("budget", f"{budget} is out of range: at least 1")
    if per_group_cap is not None and per_group_cap < 1:
        raise SettingError("per_group_cap", f"{per_group_cap} is out of range: at least 1")
    if budget >= n:
        return np.arange(n)
    if method == "random":
        order = np.random.default_rng(seed).permutation(n)
        taken: Counter = Counter()
        out = []
        for i in order:
            if _allowed(groups, per_group_cap, taken, int(i)):
                out.append(int(i))
                if groups is not None:
                    taken[groups[i]] += 1
            if len(out) == budget:
                break
        return np.sort(np.array(out, dtype=np.int64))
    if embeddings is None or len(embeddings) != n:
        raise InflucoderError(f"{method} selection needs one embedding per candidate")
    choose = farthest_point if method == "farthest" else kmeans_representatives
    return np.sort(choose(embeddings, budget, seed, groups=groups, cap=per_group_cap))
