"""A development set for the toxicity encoder: choose its settings without looking at any reported replicate.

A replicate's AUPRC rests on 15 unsafe pairs, so two encoders' figures on one seed differ by chance as much as
by design, and choosing settings on the reported seeds would flatter them. This builds, from the embedded
sources, a pool that shares **no text** with the tasks of the given replicates (evaluation and distillation
sides, queries, held-out requests): every benign `evals` / `bbh-cot` pair left (at most 10 per `evals` task)
and every unsafe `harmful-pairs` pair left, with 10 other unsafe pairs as queries. An encoder scores the pool
(mean cosine over the queries); the figure is the AUPRC at the replicate's base rate, **averaged over --draws
random draws of the positives** (each draw: all benign pairs plus as many unsafe as the evaluation pool
holds), so it rests on ~200 unsafe pairs instead of 15; beside it, the share of the unsafe pairs a filter dropping the
top 5% removes (same draws: the issue's >= 80% target) and their median percentile rank.

It needs no decoder and no gradient: only encoders run (a minute each). Settings chosen on it are then
applied to every replicate alike.

    python benchmarks/toxicity_dev.py --runs runs/tox/het-seed0 runs/tox-random/het-seed0 \\
        --encoders runs/tox/het-seed0/encoder/best runs/tox-random/het-seed0/encoder/best \\
        --out benchmarks/results/toxicity_dev

Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from influcoder.data.records import Sample
from influcoder.metrics import auprc, recall_when_dropping, resampled, resampled_auprc
from influcoder.tasks.toxicity import ToxicityTask, development_set


def _recall_at_5(scores: np.ndarray, positive: np.ndarray) -> float:
    """Share of the unsafe pairs a filter dropping the top 5% of the pool removes (the issue's >= 80% target)."""
    return recall_when_dropping(scores, positive, [0.05])["0.05"]


def evaluate(encoder_dir: Path, pool: list[Sample], queries: list[Sample], n_positive: int, draws: int) -> dict:
    from influcoder.encoder.model import InfluenceEncoder

    started = time.perf_counter()
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    scores = (encoder.encode_pool(pool, 32) @ encoder.encode_queries(queries, 32).T).mean(axis=1)
    positive = np.array([s.meta["type"] == "unsafe" for s in pool])
    values = resampled_auprc(scores, positive, n_positive, draws, seed=0)
    recall = resampled(_recall_at_5, scores, positive, n_positive, draws, seed=0)  # the filter target's figure
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return {
        "encoder": str(encoder_dir),
        "auprc_mean": float(values.mean()),
        "auprc_std": float(values.std()),
        "auprc_all_unsafe": auprc(scores, positive),
        "recall_at_5pct_mean": float(recall.mean()),
        "median_unsafe_percentile": float(np.median(rank[positive]) / len(pool) * 100),
        "seconds": time.perf_counter() - started,
    }


def table(rows: list[dict]) -> list[str]:
    """The markdown table of `evaluate` rows."""
    lines = [
        "| encoder | AUPRC (resampled) | unsafe removed at 5% dropped (resampled) | AUPRC, all unsafe | "
        "median unsafe rank (percentile) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['encoder']} | {r['auprc_mean']:.3f} ± {r['auprc_std']:.3f} | {r['recall_at_5pct_mean']:.0%} | "
            f"{r['auprc_all_unsafe']:.3f} | {r['median_unsafe_percentile']:.1f} |"
        )
    return lines


def write(out: Path, result: dict, lines: list[str]) -> None:
    """OUT.json and OUT.md, and the markdown on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        required=True,
        help="replicates whose texts the set must avoid: every task an encoder compared here was trained on",
    )
    parser.add_argument("--encoders", type=Path, nargs="+", required=True, help="encoder directories to compare")
    parser.add_argument("--draws", type=int, default=200, help="random draws of the positives per AUPRC")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "toxicity_dev")
    args = parser.parse_args()
    tasks = [ToxicityTask.load(run / "task") for run in args.runs]
    task = tasks[0]
    pool, queries = development_set(tasks)
    n_positive = task.counts["pool"]["unsafe"]
    rate = n_positive / (sum(s.meta["type"] == "benign" for s in pool) + n_positive)
    rows = [evaluate(e, pool, queries, n_positive, args.draws) for e in args.encoders]
    command = "python benchmarks/toxicity_dev.py " + shlex.join(sys.argv[1:])
    counts = {t: sum(s.meta["type"] == t for s in pool) for t in ("benign", "unsafe")}
    result = {"command": command, "machine": f"{platform.platform()}", "pool": counts, "rows": rows}
    lines = [
        "# Toxicity encoder on the development set (no text shared with the replicates' tasks)",
        "",
        f"Command: `{command}`. Machine: {platform.platform()}.",
        "",
        f"Pool: {counts['benign']} benign + {counts['unsafe']} unsafe pairs, 10 unsafe queries. AUPRC at "
        f"{n_positive} positives per draw ({rate:.2%}, the replicate's rate), mean ± sd over {args.draws} draws.",
        "",
        *table(rows),
    ]
    write(args.out, result, lines)


if __name__ == "__main__":
    main()
