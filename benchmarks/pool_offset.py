"""Why a distilled encoder falls short on unseen tasks: how much of the gradient labels is a query-independent
*pool offset*, where that offset varies (between tasks or within them), and whether anything cheap predicts it
for tasks never labelled.

The pool offset of a pool sample is its mean influence over the queries. Pool-mean (ranking every query's pool
by that offset) reaches a per-anchor rho of 0.6 on unseen tasks in `docs/results/ranking.md`, far above any
text method, so a method that cannot predict the offset of an unseen task's samples cannot come near it.
Measured here on a labels directory, with numpy only (seconds):

1. the share of the labels' variance that the pool offset and the query offset explain, and the share of the
   pool offset's variance that lies between groups (tasks) rather than within them;
2. for each task-protocol split (`split_labels_by_group`, as the ranking experiment's `task` runs draw them):
   how well a ridge regression on length features, fitted on the training tasks' offsets, ranks the held-out
   tasks' offsets (Spearman), and the per-anchor rho on the held-out pool x queries of scoring every query by
   that predicted offset (a text-only stand-in for pool-mean). Lengths are whitespace word counts of prompt
   and response: the gradient of a response-only loss is an average over response tokens, so its direction
   depends on how many tokens it averages;
3. other text-only predictors of the offset on the same splits: surface-form features of the response
   (`format_features`), both sets together, and with `--embeddings` the untrained MiniLM's embeddings of the
   response alone and of the prompt alone (ridge over 384 dimensions);
4. with `--encoders` (the ranking experiment's encoders, ``{protocol}`` and ``{seed}`` filled in): per-anchor
   rho of the distilled encoder's cosine plus w times the length-predicted offset (both z-scored), for a grid
   of w, on the `task` split (unseen tasks) and the `random` split (seen tasks) of each seed. A weight that
   helps unseen tasks must not cost the seen ones; choosing it needs validation tasks the encoder did not
   train on (`distill --val-group`), never the evaluation split.

    python benchmarks/pool_offset.py --labels runs/rank/labels --seeds 0 1 2 --out benchmarks/results/pool_offset \
        --encoders 'runs/rank/experiment/enc-{protocol}-s{seed}/best' --embeddings

Writes pool_offset.json and pool_offset.md into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from influcoder.core.atomic import write_json_atomic
from influcoder.data.records import Sample, sample_groups
from influcoder.encoder.length_prior import fit_ridge, length_features
from influcoder.encoder.splits import split_labels, split_labels_by_group
from influcoder.metrics import per_anchor_spearman


def variance_shares(scores: np.ndarray, groups: list[str]) -> dict:
    """Shares of the labels' total variance explained by the pool offset (row means) and the query offset
    (column means), and the share of the pool offset's variance that lies between groups."""
    centred = scores - scores.mean()
    total = float((centred**2).sum())
    rows, cols = centred.mean(axis=1), centred.mean(axis=0)
    names = np.array(groups)
    group_mean = {g: rows[names == g].mean() for g in set(groups)}
    between = np.array([group_mean[g] for g in groups])
    pool_share = float((rows**2).sum() * scores.shape[1] / total)
    query_share = float((cols**2).sum() * scores.shape[0] / total)
    return {
        "pool_offset_share": pool_share,
        "query_offset_share": query_share,
        # a query's own offset does not change its ranking: the share of what per-anchor rho sees
        "pool_offset_share_within_queries": pool_share / (1 - query_share),
        "between_group_share_of_pool_offset": float((between**2).sum() / (rows**2).sum()),
    }


def format_features(samples: list[Sample]) -> np.ndarray:
    """Surface form of the response (digits, capitals, punctuation, lines, a one-word / option-letter /
    yes-no answer) and character lengths: what might tell a gradient's direction beside its length."""
    import re

    rows = []
    for s in samples:
        r, n = s.response, max(len(s.response), 1)
        rows.append(
            [
                sum(c.isdigit() for c in r) / n,
                sum(c.isupper() for c in r) / n,
                sum(not c.isalnum() and not c.isspace() for c in r) / n,
                r.count("\n"),
                np.log1p(s.prompt.count("\n")),
                float(len(r.split()) <= 1),
                float(bool(re.match(r"^\(?[A-Ea-e]\)?\.?$", r.strip()))),
                float(r.strip().lower() in ("yes", "no", "true", "false")),
                np.log1p(len(r)),
                np.log1p(len(s.prompt)),
            ]
        )
    return np.array(rows, dtype=np.float64)


def ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, penalty: float = 1.0) -> np.ndarray:
    """`length_prior.fit_ridge` on any features, predicting `x_test`."""
    coefficients, mean, std = fit_ridge(x_train, y_train, penalty)
    return ((np.asarray(x_test, dtype=np.float64) - mean) / std) @ coefficients + np.mean(y_train)


def split_figures(scores, pool, queries, groups, query_groups, held: tuple[int, int], seed: int) -> dict:
    """Offset prediction on one task-protocol split: lengths (ridge) against the true offset (pool-mean)."""
    train_p, eval_p, train_q, eval_q = split_labels_by_group(groups, query_groups, *held, seed)
    offset = scores[:, train_q].mean(axis=1)  # what pool-mean knows: the training queries only
    features = length_features(pool)
    predicted = ridge_predict(features[train_p], offset[train_p], features[eval_p])
    true = scores[np.ix_(eval_p, eval_q)]
    response_words = np.array([len(pool[i].response.split()) for i in eval_p])

    def per_anchor(pool_scores: np.ndarray) -> float:
        return float(np.nanmean(per_anchor_spearman(np.repeat(pool_scores[:, None], len(eval_q), axis=1), true)))

    return {
        "seed": seed,
        "n_eval_pool": len(eval_p),
        "n_eval_queries": len(eval_q),
        "n_eval_tasks": len({groups[i] for i in eval_p}),
        "lengths_offset_spearman": float(spearmanr(predicted, offset[eval_p])[0]),
        "response_words_offset_spearman": float(spearmanr(response_words, offset[eval_p])[0]),
        "per_anchor_lengths": per_anchor(predicted),
        "per_anchor_pool_mean": per_anchor(offset[eval_p]),
    }


WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def predictor_figures(scores, feature_sets: dict, parts: tuple) -> dict:
    """Per-anchor rho on one task split of ranking every query's pool by the offset a ridge predicts from each
    feature set (fitted on the training tasks' offsets over the training queries)."""
    train_p, eval_p, train_q, eval_q = parts
    offset = scores[np.ix_(train_p, train_q)].mean(axis=1)
    true = scores[np.ix_(eval_p, eval_q)]
    out = {}
    for name, x in feature_sets.items():
        predicted = ridge_predict(x[train_p], offset, x[eval_p])
        out[name] = float(np.nanmean(per_anchor_spearman(np.repeat(predicted[:, None], len(eval_q), axis=1), true)))
    return out


def mixed_figures(encoder_dir: str, scores, pool, queries, parts: tuple, features: np.ndarray) -> dict:
    """Per-anchor rho of z(cosine) + w * z(length-predicted offset) on one split, per weight w."""
    from influcoder.encoder.model import InfluenceEncoder

    train_p, eval_p, train_q, eval_q = parts
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    cosine = encoder.encode([pool[i] for i in eval_p]) @ encoder.encode([queries[j] for j in eval_q]).T
    offset = ridge_predict(features[train_p], scores[np.ix_(train_p, train_q)].mean(axis=1), features[eval_p])
    z_cosine, z_offset = (cosine - cosine.mean()) / cosine.std(), (offset - offset.mean()) / offset.std()
    true = scores[np.ix_(eval_p, eval_q)]
    return {f"{w:g}": float(np.nanmean(per_anchor_spearman(z_cosine + w * z_offset[:, None], true))) for w in WEIGHTS}


def predictors_markdown(predictors: list[dict], seeds: list[int]) -> str:
    names = list(predictors[0])
    lines = [
        "",
        "Ranking unseen tasks' pools by the offset a ridge predicts from each feature set (per-anchor ρ):",
        "",
        "| features | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for name in names:
        values = [p[name] for p in predictors]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")
    return "\n".join(lines) + "\n"


def mixed_markdown(mixed: dict) -> str:
    lines = [
        "",
        "Distilled encoder's cosine + w x length-predicted offset (z-scored), per-anchor ρ, mean over seeds:",
        "",
        "| split | " + " | ".join(f"w = {w:g}" for w in WEIGHTS) + " |",
        "|---|" + "---|" * len(WEIGHTS),
    ]
    for protocol, label in (("task", "unseen tasks (task)"), ("random", "seen tasks (random)")):
        runs = mixed.get(protocol, [])
        if runs:
            means = [np.mean([r[f"{w:g}"] for r in runs]) for w in WEIGHTS]
            lines.append(f"| {label}, {len(runs)} seeds | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def markdown(shares: dict, splits: list[dict], command: str) -> str:
    lines = [
        f"Pool offset: {shares['pool_offset_share']:.1%} of the labels' variance (query offset "
        f"{shares['query_offset_share']:.1%}), {shares['pool_offset_share_within_queries']:.1%} of what is left "
        "once each query's own mean is removed (a query's mean does not change its ranking); "
        f"{shares['between_group_share_of_pool_offset']:.1%} of the pool offset's variance lies between tasks.",
        "",
        "| split seed | unseen tasks | pool x queries | lengths -> offset ρ | response words -> offset ρ "
        "| per-anchor ρ, lengths | per-anchor ρ, pool-mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in splits:
        lines.append(
            f"| {s['seed']} | {s['n_eval_tasks']} | {s['n_eval_pool']} x {s['n_eval_queries']} "
            f"| {s['lengths_offset_spearman']:.3f} | {s['response_words_offset_spearman']:.3f} "
            f"| {s['per_anchor_lengths']:.3f} | {s['per_anchor_pool_mean']:.3f} |"
        )
    return "\n".join(lines) + f"\n\nCommand: `{command}`\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--held-out", nargs=2, type=int, default=[100, 40], help="pool, queries of unseen tasks")
    parser.add_argument("--group-field", default="task")
    parser.add_argument("--encoders", help="encoder directory pattern with {protocol} and {seed} (see above)")
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also predict offsets from the untrained MiniLM's embeddings of the response and of the prompt",
    )
    args = parser.parse_args()
    from influcoder.labels.labelling import load_labels

    matrix, pool, queries, _ = load_labels(args.labels)
    scores = np.asarray(matrix.scores, dtype=np.float64)
    groups, query_groups = sample_groups(pool, args.group_field), sample_groups(queries, args.group_field)
    shares = variance_shares(scores, groups)
    splits = [split_figures(scores, pool, queries, groups, query_groups, tuple(args.held_out), s) for s in args.seeds]
    feature_sets = {"lengths": length_features(pool), "format": format_features(pool)}
    feature_sets["lengths+format"] = np.hstack([feature_sets["lengths"], feature_sets["format"]])
    if args.embeddings:
        from influcoder.encoder.model import InfluenceEncoder

        untrained = InfluenceEncoder.from_backbone("minilm-l6")
        feature_sets["response embedding"] = untrained.encode([s.response for s in pool], batch_size=64)
        feature_sets["prompt embedding"] = untrained.encode([s.prompt for s in pool], batch_size=64)
    predictors = [
        predictor_figures(scores, feature_sets, split_labels_by_group(groups, query_groups, *args.held_out, seed))
        for seed in args.seeds
    ]
    mixed: dict = {}
    if args.encoders:
        features = length_features(pool)
        for seed in args.seeds:
            task_parts = split_labels_by_group(groups, query_groups, *args.held_out, seed)
            random_parts = split_labels(len(pool), len(queries), *args.held_out, seed)
            for protocol, parts in (("task", task_parts), ("random", random_parts)):
                directory = args.encoders.format(protocol=protocol, seed=seed)
                mixed.setdefault(protocol, []).append(mixed_figures(directory, scores, pool, queries, parts, features))
    command = shlex.join(["python", "benchmarks/pool_offset.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "variance": shares, "splits": splits, "predictors": predictors, "mixed": mixed}
    write_json_atomic(args.out / "pool_offset.json", record)
    text = markdown(shares, splits, command) + predictors_markdown(predictors, args.seeds)
    text += mixed_markdown(mixed) if mixed else ""
    (args.out / "pool_offset.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
