"""Benchmark of step 2 (distillation) on real SmolLM2-135M gradient labels.

Takes a labels directory (made by `influcoder label`), holds out a disjoint evaluation split of pool and
queries, distils MiniLM-L6 on the rest, and reports per-anchor and mean-aggregated Spearman of the distilled
encoder and of the untrained MiniLM-L6 ("Semantic" baseline) on the held-out split, with training time.

    influcoder label --pool evals --pool-limit 1200 --queries bbh --query-limit 500 --out runs/labels
    python benchmarks/distill.py --labels runs/labels --eval-pool 200 --eval-queries 200 --epochs 10

writes benchmarks/results/distill.json and benchmarks/results/distill.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from influcoder.encoder.distill import distill_labels
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.run_record import DistillRun
from influcoder.encoder.settings import DistillSettings
from influcoder.encoder.splits import split_from_file
from influcoder.evaluation.evaluate import evaluate_encoder, per_group_table, training_record
from influcoder.labels.labels_dir import LabelsDir

RESULTS = Path(__file__).parent / "results"


def pool_mean_reference(matrix, queries, split_path: Path, group_by: str | None) -> dict:
    """A query-agnostic oracle: every held-out query ranks the held-out pool by the pool's mean *true*
    influence over the training queries. It uses gradient labels of the evaluation pool (so it is a reference,
    not a method); an encoder above it has learned query-specific structure."""
    import numpy as np

    from influcoder.data.records import sample_groups
    from influcoder.metrics import per_anchor_by_group, spearman_report

    _, rows, train_cols, cols = split_from_file(split_path, matrix.pool_ids, matrix.query_ids)
    scores = np.asarray(matrix.scores)
    pool_mean = scores[np.ix_(rows, train_cols)].mean(axis=1)
    pred, true = np.repeat(pool_mean[:, None], len(cols), 1), scores[np.ix_(rows, cols)]
    report = spearman_report(pred, true).to_dict()
    if group_by:
        report["per_group"] = per_anchor_by_group(pred, true, sample_groups([queries[j] for j in cols], group_by))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--eval-pool", type=int, default=200)
    parser.add_argument("--eval-queries", type=int, default=200)
    parser.add_argument("--eval-split", help="hold out the ids of this JSON file instead (overrides the sizes)")
    parser.add_argument("--work", default="runs/bench-distill", help="where the encoder checkpoints go")
    parser.add_argument("--out", default=str(RESULTS / "distill"))
    parser.add_argument("--by", default="task", help="query meta field for the per-group table ('' for none)")
    cosine = DistillSettings(objective="influcoder")  # what this benchmark's committed results measured
    for f in dataclasses.fields(DistillSettings):
        default = getattr(cosine, f.name)
        kind = int if f.name == "head_dim" else type(default)
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default)
    args = parser.parse_args()
    settings = DistillSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillSettings)})
    matrix, pool, queries, record = LabelsDir.load(args.labels)
    features = record.features
    started = time.perf_counter()
    if args.eval_split:
        args.eval_pool = args.eval_queries = 0
    logs = distill_labels(
        args.labels, args.work, settings, args.eval_pool, args.eval_queries, eval_split=args.eval_split
    )
    train_seconds = time.perf_counter() - started
    run = DistillRun(args.work)
    split = run.eval_split_path
    held = run.eval_split()
    args.eval_pool, args.eval_queries = len(held.pool_ids), len(held.query_ids)
    rows = {}
    for name, path in (
        ("distilled (best on validation)", run.best),
        ("distilled (last epoch)", run.last),
    ):
        rows[name] = evaluate_encoder(
            InfluenceEncoder.from_pretrained(path), args.labels, split, training_record(args.work), args.by or None
        )
    untrained = InfluenceEncoder.from_backbone(
        settings.encoder, pooling=settings.pooling, max_length=settings.max_length
    )
    rows["untrained MiniLM-L6 (Semantic)"] = evaluate_encoder(untrained, args.labels, split, group_by=args.by or None)
    rows["reference: true pool-mean influence (oracle, query-agnostic)"] = pool_mean_reference(
        matrix, queries, split, args.by or None
    )
    report = {
        "benchmark": "distill",
        "command": "python benchmarks/distill.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "labels": {"dir": args.labels, "n_pool": len(pool), "n_queries": len(queries), "features": features},
        "train_pool": len(pool) - args.eval_pool,
        "train_queries": len(queries) - args.eval_queries,
        "eval_pool": args.eval_pool,
        "eval_queries": args.eval_queries,
        "settings": dataclasses.asdict(settings),
        "train_seconds": train_seconds,
        "epochs": [dataclasses.asdict(x) for x in logs],
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    s = settings
    lines = [
        f"# distillation benchmark: {s.encoder} on SmolLM2-135M gradient labels",
        "",
        f"Labels: {len(pool)} `evals` pool x {len(queries)} `bbh` queries ({features['projector']['kind']} "
        f"{features['projector']['dim']}, max length {features['max_length']}). Train "
        f"{report['train_pool']} x {report['train_queries']} (of which {s.val_fraction:.0%} validation), evaluation "
        f"{args.eval_pool} x {args.eval_queries}, disjoint in both pool and queries but drawn from the same tasks "
        "(the `random` protocol: seen-task figures; unseen tasks: docs/results/ranking.md).",
        f"Settings: {s.epochs} epochs, lr {s.lr}, wd {s.weight_decay}, alpha {s.alpha} (Pearson centring "
        f"{s.pearson_center}), T {s.temperature}, "
        f"B {s.queries_per_batch} x C {s.candidates_per_batch}, hard candidates {s.hard_candidates}, pooling "
        f"{s.pooling} (head lr x{s.head_lr_scale:g}), max length {s.max_length}. Training took "
        f"{train_seconds / 60:.1f} min on {platform.machine()} with {torch.get_num_threads()} threads.",
        f"Command: `{report['command']}`",
        "",
        "| model | per-anchor rho (mean +- std) | mean-aggregated rho |",
        "|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['per_anchor_mean']:.3f} +- {r['per_anchor_std']:.3f} | {r['mean_aggregated']:.3f} |"
        )
    lines += [
        "",
        "| epoch | loss | Pearson loss | KL loss | val per-anchor rho | val mean-agg rho | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in logs:
        lines.append(
            f"| {e.epoch} | {e.loss:.4f} | {e.pearson_loss:.4f} | {e.kl_loss:.4f} | {e.val_per_anchor:.3f} "
            f"| {e.val_mean_aggregated:.3f} | {e.seconds:.0f} |"
        )
    if args.by:
        shown = {"distilled (best)": "distilled (best on validation)", "untrained": "untrained MiniLM-L6 (Semantic)"}
        shown["oracle"] = "reference: true pool-mean influence (oracle, query-agnostic)"
        lines += ["", f"Held-out per-anchor rho by query {args.by} (weakest first for the distilled encoder):", ""]
        lines += per_group_table({column: rows[name] for column, name in shown.items()}, args.by)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
