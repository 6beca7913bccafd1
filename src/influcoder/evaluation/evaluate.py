"""Evaluate attribution methods (the distilled encoder, baselines) against ground-truth labels on a held-out split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.progress import progress_bars
from influcoder.data.records import sample_groups
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.run_record import DistillRun, EvalSplit, TrainingRecord
from influcoder.evaluation import costs
from influcoder.evaluation.baselines.base import EvaluationData, Scorer
from influcoder.evaluation.baselines.text import Distilled, SubspaceDistilled
from influcoder.labels.labels_dir import LabelsDir
from influcoder.metrics import per_anchor_by_group, per_anchor_spearman, spearman_report


def _select(ids: list[str], wanted: list[str] | None, what: str) -> np.ndarray:
    if wanted is None:
        return np.arange(len(ids))
    index = {x: i for i, x in enumerate(ids)}
    missing = [x for x in wanted if x not in index]
    if missing:
        raise InflucoderError(f"{len(missing)} {what} ids of the split are not in the labels (e.g. {missing[0]})")
    return np.array([index[x] for x in wanted], dtype=np.int64)


def evaluation_data(labels_dir: str | Path, split: str | Path | EvalSplit | None = None) -> EvaluationData:
    """The labels with their split (an ``eval_split.json`` or its record): the ids of `split` are evaluated,
    the rest is training (no split, or a side it lists no ids of: all items are evaluated and none is
    training)."""
    matrix, pool, queries, _ = LabelsDir.load(labels_dir)
    wanted = split if isinstance(split, EvalSplit) else EvalSplit.load(Path(split)) if split else EvalSplit()
    rows = _select(matrix.pool_ids, wanted.pool_ids or None, "pool")
    cols = _select(matrix.query_ids, wanted.query_ids or None, "query")
    train_rows = np.setdiff1d(np.arange(len(pool)), rows) if split else np.arange(0)
    train_cols = np.setdiff1d(np.arange(len(queries)), cols) if split else np.arange(0)
    return EvaluationData(np.asarray(matrix.scores), pool, queries, train_rows, rows, train_cols, cols, wanted.protocol)


def trained_ids(trained_on: TrainingRecord | dict | None) -> tuple[set[str], set[str]]:
    """The (pool, query) ids a run trained on, from its training record (or that record as a dict)."""
    if trained_on is None:
        return set(), set()
    if isinstance(trained_on, TrainingRecord):
        return set(trained_on.train_pool_ids), set(trained_on.train_query_ids)
    return set(trained_on.get("train_pool_ids", [])), set(trained_on.get("train_query_ids", []))


def evaluate_scorers(
    scorers: dict[str, Scorer],
    data: EvaluationData,
    trained_on: TrainingRecord | dict | None = None,
    group_by: str | None = None,
    count_flops: bool = False,
    predictions: dict[str, np.ndarray] | None = None,
    progress: bool | None = None,
) -> dict[str, dict]:
    """One report per method on `data`'s evaluation part: Spearman figures, protocol and cost per sample.

    `trained_on` (a run's `TrainingRecord`, or a dict of its "train_pool_ids" and "train_query_ids") makes
    evaluation on training items an error.
    `group_by` names a query meta field (e.g. "task"): reports then also hold per-anchor Spearman per group
    under "per_group", because a mean over all queries hides the tasks a method fails on. `count_flops` scores
    once more under the FLOP meter (`costs.count_flops`) and reports FLOPs per scored sample. `predictions`,
    when given, receives each method's predicted matrix (for the report's top-k examples). `progress`: the
    scorers' bars on (True) or off (False); None leaves them to the switch in `influcoder.core.progress`.
    """
    with progress_bars(progress):
        return _evaluate_scorers(scorers, data, trained_on, group_by, count_flops, predictions)


def _evaluate_scorers(scorers, data: EvaluationData, trained_on, group_by, count_flops, predictions) -> dict[str, dict]:
    pool, queries = data.eval_samples()
    trained_pool, trained_queries = trained_ids(trained_on)
    leak = (trained_pool & {s.id for s in pool}) | (trained_queries & {q.id for q in queries})
    if leak:
        raise InflucoderError(f"{len(leak)} evaluation ids were used in training (e.g. {sorted(leak)[0]})")
    true = data.eval_truth()
    groups = sample_groups(queries, group_by) if group_by else None
    reports = {}
    for name, scorer in scorers.items():
        started = time.perf_counter()
        scorer.fit(data)
        fitted = time.perf_counter()
        pred = scorer.score(pool, queries)
        seconds = time.perf_counter() - fitted
        if predictions is not None:
            predictions[name] = pred
        report = spearman_report(pred, true).to_dict()
        anchors = per_anchor_spearman(pred, true)
        report["per_anchor"] = [None if np.isnan(x) else float(x) for x in anchors]  # JSON has no NaN
        if groups is not None:
            report["group_by"] = group_by
            report["per_group"] = per_anchor_by_group(pred, true, groups)
        report["method"] = scorer.name
        if hasattr(scorer, "preconditioner"):
            report["preconditioner"] = scorer.preconditioner
        report["protocol"] = data.protocol  # random, task, or None: no recorded protocol / no split
        report["fit_seconds"] = fitted - started
        report["encode_seconds"] = seconds
        report["encode_ms_per_sample"] = 1000 * seconds / (len(pool) + len(queries))
        report["bytes_per_sample"] = scorer.bytes_per_sample()
        if count_flops:
            models = scorer.models()
            _, flops = costs.count_flops(lambda scorer=scorer: scorer.score(pool, queries), models)
            report["flops_per_sample"] = flops / (len(pool) + len(queries)) if models else None
        reports[name] = report
    return reports


def check_same_features(encoder: InfluenceEncoder, labels_dir: str | Path) -> None:
    """Refuse labels made with other gradient features (decoder, adapter, projection, text view) than the
    encoder was distilled from: its figures would compare it with a ground truth it never learned."""
    wanted = encoder.config.label_config
    if not wanted:
        return  # an untrained or hand-built encoder records no labels
    have = LabelsDir(labels_dir).record().features or {}
    differ = sorted(k for k in set(wanted) | set(have) if wanted.get(k) != have.get(k))
    if differ:
        key = differ[0]
        raise ArtifactMismatchError(
            f"{labels_dir} holds labels of other gradient features than the encoder was distilled from "
            f"({key}: {have.get(key)!r} there, {wanted.get(key)!r} in training); set `other_labels` to compare "
            "anyway"
        )


def evaluate_encoder(
    encoder: InfluenceEncoder,
    labels_dir: str | Path,
    split: str | Path | None = None,
    trained_on: TrainingRecord | dict | None = None,
    group_by: str | None = None,
    progress: bool | None = None,
    subspace=None,
) -> dict:
    """Spearman report of `encoder` on the labels (restricted to `split`'s ids when given), with timing. With
    the `subspace` of a subspace encoder, queries are scored as `attribute` scores them: by their exact gradient
    coordinates (read from the labels' stored gradients). `progress` as in `evaluate_scorers`."""
    scorer = Distilled(encoder) if subspace is None else SubspaceDistilled(encoder, subspace, labels_dir)
    data = evaluation_data(labels_dir, split)
    return evaluate_scorers({"encoder": scorer}, data, trained_on, group_by, progress=progress)["encoder"]


def per_group_table(columns: dict[str, dict], by: str) -> list[str]:
    """Markdown rows of per-anchor rho per query group, one column per report (each made with `group_by`),
    groups ordered weakest first by the first column."""
    groups = next(iter(columns.values()))["per_group"]
    lines = [f"| {by} | queries | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for group in sorted(groups, key=lambda g: groups[g]["per_anchor_mean"]):
        cells = " | ".join(f"{r['per_group'][group]['per_anchor_mean']:.3f}" for r in columns.values())
        lines.append(f"| {group} | {groups[group]['n_queries']} | {cells} |")
    return lines


def training_record(encoder_dir: str | Path) -> TrainingRecord | None:
    """The training record of the `distill` run of an encoder directory (its own training.json, or its
    parent's for ``out/best``), if any."""
    run = DistillRun.around(encoder_dir, DistillRun.TRAINING)
    return run.record() if run is not None else None
