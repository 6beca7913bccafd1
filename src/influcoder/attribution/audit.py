"""Fidelity audit: how far to trust the encoder on *this* data (the paper's stated limitation is
out-of-distribution data).

For the queries and N pool samples (every returned top-k hit, then samples outside the encoder's coverage, then
a seeded random remainder), the exact
gradient influence is recomputed with the decoder, adapter and projection the encoder was distilled from (as
recorded in its config), and compared with the encoder's predicted influence by Spearman.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.records import Sample
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings
from influcoder.metrics import spearman_report

log = logging.getLogger(__name__)


def label_settings_from_config(label_config: dict, device: str = "auto") -> LabelSettings:
    """Rebuild the labelling settings recorded by `GradientFeaturizer.config()` (`LabelSettings.from_features`)."""
    return LabelSettings.from_features(label_config, device)


def choose_audit_rows(
    n_pool: int, must: Sequence[int], n: int, seed: int = 0, prefer: Sequence[int] = ()
) -> np.ndarray:
    """Sorted pool rows: all of `must` (deduplicated), then `prefer` (e.g. rows outside the encoder's coverage,
    where its scores are least trustworthy) in a seeded order, then random others, up to `n` in total."""
    rng = np.random.default_rng(seed)
    chosen = list(dict.fromkeys(int(i) for i in must))
    for candidates in (rng.permutation(np.asarray(prefer, dtype=np.int64)), rng.permutation(n_pool)):
        taken = set(chosen)
        chosen += [int(i) for i in candidates if int(i) not in taken][: max(0, n - len(chosen))]
    return np.array(sorted(chosen))


def audit_scores(
    encoder,
    featurizer: GradientFeaturizer,
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    subspace=None,
) -> dict:
    """Spearman of encoder vs exact gradient influence on the given pool samples and queries. With a
    `subspace` (a subspace encoder scoring exact queries), the queries' side is their exact coordinates."""
    with progress_bar(total=len(pool) + len(queries), desc="audit gradients", unit="sample") as bar:
        pool_grads = featurizer.featurize_tokenized(featurizer.tokenize(pool), bar)
        query_grads = featurizer.featurize_tokenized(featurizer.tokenize(queries), bar)
    exact = normalize_rows(pool_grads) @ normalize_rows(query_grads).T
    with progress_bars(False):  # the audited rows only: a second bar after the gradients' would say little
        query_side = encoder.encode_queries(queries) if subspace is None else subspace.coordinates(query_grads)
        predicted = encoder.encode_pool(pool) @ query_side.T
    return spearman_report(predicted, exact).to_dict()


def audit_attribution(
    ic, queries: Sequence[Sample], results, n: int, seed: int = 0, progress: bool | None = None, device: str = "auto"
) -> dict:
    """Audit an `Influcoder.attribute` result on `n` pool samples including every returned hit; the decoder's
    gradients are computed on `device`. `progress`: the gradient bar on (True) or off (False); None: the switch
    in `influcoder.core.progress`."""
    index = ic.index_
    pool = index.samples()
    row_of = {sample_id: i for i, sample_id in enumerate(pool.ids)}
    hits = [row_of[a.sample.id] for per_query in results for a in per_query]
    coverage, reference = index.coverage(), ic.coverage_reference
    outside = np.flatnonzero(~reference.covered(coverage)) if coverage is not None and reference else []
    rows = choose_audit_rows(len(pool), hits, n, seed, prefer=outside)
    if len(rows) < 3:
        raise InflucoderError("an audit needs at least 3 pool samples")
    settings = label_settings_from_config(ic.encoder.config.label_config, device)
    log.info(f"[audit] exact gradients of {len(rows)} pool samples and {len(queries)} queries with {settings.model}")
    featurizer = GradientFeaturizer(settings)
    subspace = ic.subspace if ic.query_side == "exact" else None
    with progress_bars(progress):
        report = audit_scores(ic.encoder, featurizer, [pool[i] for i in rows], queries, subspace)
    report["n_outside_coverage"] = int(np.isin(rows, outside).sum()) if len(outside) else 0
    return report
