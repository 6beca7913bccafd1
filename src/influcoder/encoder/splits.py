"""Held-out splits of a labels matrix: drawn (seeded) or read back from an earlier run's ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.encoder.run_record import EvalSplit


def split_indices(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) index arrays, sorted; at least 2 held out when fraction > 0 and n allows."""
    held = int(round(n * fraction))
    if fraction > 0:
        held = min(max(held, 2), n - 2)
    perm = rng.permutation(n)
    return np.sort(perm[held:]), np.sort(perm[:held])


def validation_split(
    n_pool: int,
    n_queries: int,
    fraction: float,
    rng: np.random.Generator,
    groups: tuple[Sequence[str], Sequence[str]] | None = None,
    same_texts: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, validation pool, train queries, validation queries): random samples, or, given each pool
    sample's and query's group, whole groups held out until `fraction` of each side is (see
    `split_labels_by_group`). `same_texts`: pool and queries are the same texts in the same order (all-pairs
    labels): `fraction` of the texts is held out once and halved into a disjoint validation pool and queries
    (`split_all_pairs`)."""
    if same_texts:
        held = max(4, int(round(n_pool * fraction)))
        try:
            return split_all_pairs(n_pool, held - held // 2, held // 2, int(rng.integers(2**31)),
                                   groups[0] if groups else None)  # fmt: skip
        except InflucoderError as error:
            raise InflucoderError(f"a validation split: {error}") from None
    if groups is None:
        return (*split_indices(n_pool, fraction, rng), *split_indices(n_queries, fraction, rng))
    wanted = [max(2, int(round(n * fraction))) for n in (n_pool, n_queries)]
    try:
        return split_labels_by_group(*groups, *wanted, int(rng.integers(2**31)))
    except InflucoderError as error:
        raise InflucoderError(f"a validation split of whole groups: {error}") from None


def split_labels(
    n_pool: int, n_queries: int, eval_pool: int, eval_queries: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, eval pool, train queries, eval queries) index arrays: disjoint, seeded, sorted."""
    if eval_pool >= n_pool - 5 or eval_queries >= n_queries - 3:
        raise InflucoderError(
            f"holding out {eval_pool} pool / {eval_queries} queries leaves too little of {n_pool} x {n_queries}"
        )
    rng = np.random.default_rng([seed, 7919])
    pool_perm, query_perm = rng.permutation(n_pool), rng.permutation(n_queries)
    return (
        np.sort(pool_perm[eval_pool:]),
        np.sort(pool_perm[:eval_pool]),
        np.sort(query_perm[eval_queries:]),
        np.sort(query_perm[:eval_queries]),
    )


def split_from_file(
    path: str | Path, pool_ids: Sequence[str], query_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, eval pool, train queries, eval queries) index arrays from a JSON file of held-out ids."""
    split = read_json(Path(path))
    out = []
    for kind, ids in (("pool", pool_ids), ("query", query_ids)):
        held = split.get(EvalSplit.ids_key(kind))
        if not isinstance(held, list):
            raise InflucoderError(f"{path}: expected a list under {EvalSplit.ids_key(kind)}")
        position = {x: i for i, x in enumerate(ids)}
        unknown = [x for x in held if x not in position]
        if unknown:
            raise InflucoderError(f"{path}: {len(unknown)} {kind} ids are not in the labels, e.g. {unknown[0]!r}")
        held_rows = np.sort(np.array([position[x] for x in held], dtype=np.int64))
        out.append((np.setdiff1d(np.arange(len(ids)), held_rows), held_rows))
    (train_p, eval_p), (train_q, eval_q) = out
    return train_p, eval_p, train_q, eval_q


def split_labels_by_group(
    pool_groups: Sequence[str],
    query_groups: Sequence[str],
    eval_pool: int,
    eval_queries: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The `task` protocol: (train pool, eval pool, train queries, eval queries) with whole groups held out.

    Groups (e.g. ``meta.task``) are drawn in a seeded order and held out whole until at least `eval_pool` pool
    samples / `eval_queries` queries are held out, so no group of the evaluation split is seen in training.
    A random split of samples from the training tasks flatters a learned attributor: users' pools are mostly
    made of tasks it never saw.
    """
    rng = np.random.default_rng([seed, 7919, 1])
    out = []
    for kind, groups, wanted in (("pool", pool_groups, eval_pool), ("query", query_groups, eval_queries)):
        groups = list(groups)
        names = sorted(set(groups))
        held_names: set[str] = set()
        held = 0
        sizes = {name: groups.count(name) for name in names}
        for i in rng.permutation(len(names)):
            if held >= wanted:
                break
            held_names.add(names[i])
            held += sizes[names[i]]
        if wanted and (held_names == set(names) or len(groups) - held < 2):
            raise InflucoderError(
                f"holding out whole {kind} groups for {wanted} samples leaves too little to train on "
                f"({len(names)} groups, {len(groups)} samples); hold out fewer"
            )
        mask = np.array([g in held_names for g in groups], dtype=bool)
        out.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
    (train_p, eval_p), (train_q, eval_q) = out
    return train_p, eval_p, train_q, eval_q


def split_all_pairs(
    n: int, eval_pool: int, eval_queries: int, seed: int = 0, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, eval pool, train queries, eval queries) for all-pairs labels (every text is both a pool
    sample and a query, in the same order): one held-out set of texts, split into a disjoint evaluation pool
    and evaluation queries; training keeps the other texts on both sides.

    Drawing the two sides independently, as `split_labels` and `split_labels_by_group` do for separate pool and
    query files, would put some texts on both evaluation sides (a query ranked against its own text, whose
    label is the top one) and, under the task protocol, let a task held out on one side train on the other.
    `groups` (one per text, e.g. ``meta.task``): held-out texts are whole groups, drawn in a seeded order until
    at least `eval_pool + eval_queries` are held out; None: random texts.
    """
    wanted = eval_pool + eval_queries
    rng = np.random.default_rng([seed, 7919, 2])
    if groups is None:
        if wanted >= n - 5 or eval_queries < 0 or eval_pool < 0:
            raise InflucoderError(
                f"holding out {eval_pool} pool / {eval_queries} queries leaves too little of {n} texts"
            )
        held = rng.permutation(n)[:wanted]
    else:
        groups = list(groups)
        names = sorted(set(groups))
        rows_of: dict[str, list[int]] = {name: [] for name in names}
        for row, name in enumerate(groups):
            rows_of[name].append(row)
        held_rows: list[int] = []
        for i in rng.permutation(len(names)):
            if len(held_rows) >= wanted:
                break
            held_rows += rows_of[names[i]]
        if len(held_rows) == n or n - len(held_rows) < 5:
            raise InflucoderError(
                f"holding out whole groups for {wanted} texts leaves too little to train on ({len(names)} groups, "
                f"{n} texts); hold out fewer"
            )
        held = rng.permutation(np.array(held_rows, dtype=np.int64))
    if eval_queries and len(held) - eval_queries < 2:
        raise InflucoderError(f"{len(held)} held-out texts cannot give {eval_queries} queries and a pool")
    queries, pool = np.sort(held[:eval_queries]), np.sort(held[eval_queries:])
    train = np.setdiff1d(np.arange(n), held)
    return train, pool, train.copy(), queries
