"""How much a held-out query's own text in the held-out pool moves its per-anchor rho.

With all-pairs labels (every text both pool and query), the `task` protocol of `distill` holds out whole tasks
on each side, so a text of a task held out on both sides sits in the evaluation pool *and* among the
evaluation queries: against itself its label is the top one, and `evaluate` ranks it with the rest. This
scores one run's split as `evaluate` does (pool vectors from the encoder, each query's exact gradient
coordinates) and again with each query's own text left out of its ranking.

    python benchmarks/self_pairs.py --encoder runs/transfer/cmd-s1 --labels runs/transfer/labels \\
        --out benchmarks/results/self_pairs

Writes self_pairs.json into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic


def per_anchor(pred: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Spearman per query column over the pool rows `keep` marks for it."""
    from scipy.stats import spearmanr

    return np.array([spearmanr(pred[keep[:, j], j], truth[keep[:, j], j])[0] for j in range(pred.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, type=Path)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from influcoder.attribution.influcoder import Influcoder
    from influcoder.encoder.run_record import DistillRun
    from influcoder.evaluation.baselines.text import SubspaceDistilled
    from influcoder.evaluation.evaluate import evaluation_data

    ic = Influcoder.from_pretrained(args.encoder, device="cpu")
    data = evaluation_data(args.labels, DistillRun(args.encoder).eval_split_path)
    pool, queries = data.eval_samples()
    truth = data.eval_truth()
    pred = SubspaceDistilled(ic.encoder, ic.subspace, args.labels).score(pool, queries)
    own = np.array([[p.id == q.id for q in queries] for p in pool])
    everything, without_self = per_anchor(pred, truth, np.ones_like(own)), per_anchor(pred, truth, ~own)
    affected = own.any(axis=0)
    record = {
        "command": shlex.join(["python", *sys.argv]),
        "encoder": str(args.encoder),
        "held_out": {"pool": len(pool), "queries": len(queries)},
        "queries_with_their_text_in_the_pool": int(affected.sum()),
        "per_anchor_mean": {"as_evaluated": float(np.mean(everything)), "without_self": float(np.mean(without_self))},
        "largest_change_of_an_affected_query": float(np.max(np.abs(everything - without_self)[affected]))
        if affected.any()
        else 0.0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "self_pairs.json", record)
    print(record)


if __name__ == "__main__":
    main()
