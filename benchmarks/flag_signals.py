"""Which query-level signal tells when the distilled encoder fails: coverage variants against the spread.

For each encoder of the ranking experiment (`benchmarks/ranking.py`: one per protocol and seed, each with its
evaluation run's per-query per-anchor rho), the AUROC of each signal for "per-anchor rho < 0.3", over all runs'
queries together (seen and unseen tasks, the question a user asks) and within each protocol:

- ``coverage``: the flag as evaluated (mean cosine to the 10 nearest labelled samples, `encoder.coverage`);
- ``query -> training queries (k)``: the same distance to the training queries only, for k = 1, 10, 50;
- ``query -> evaluated pool``: mean cosine to its 10 nearest evaluated pool samples;
- ``spread``: the standard deviation of the query's predicted influence over the evaluated pool
  (`encoder.coverage.query_spread`): low when the encoder scores every pool sample alike.

    python benchmarks/flag_signals.py --experiment runs/rank/experiment --labels runs/rank/labels \\
        --out benchmarks/results/flag_signals

Writes flag_signals.json and flag_signals.md into --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic
from influcoder.encoder.coverage import query_spread
from influcoder.metrics import auroc

LOW_RHO = 0.3


def nearest_mean(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per row of `a`, the mean cosine to its k nearest rows of `b` (unit vectors)."""
    similarity = a @ b.T
    k = min(k, similarity.shape[1])
    return np.sort(similarity, axis=1)[:, -k:].mean(axis=1)


def run_signals(experiment: Path, protocol: str, seed: int, pool_by_id: dict, query_by_id: dict) -> dict:
    """Every signal per evaluated query of one run, with the run's per-query rho."""
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.encoder.run_record import DistillRun

    evaluation = json.loads((experiment / f"eval-{protocol}-s{seed}" / "results.json").read_text(encoding="utf-8"))
    run = evaluation["runs"][0]
    distilled = DistillRun(experiment / f"enc-{protocol}-s{seed}")
    split, training = distilled.eval_split(), distilled.record()
    encoder = InfluenceEncoder.from_pretrained(distilled.best)
    queries = encoder.encode([query_by_id[i] for i in split.query_ids])
    pool = encoder.encode([pool_by_id[i] for i in split.pool_ids])
    train_queries = encoder.encode([query_by_id[i] for i in training.train_query_ids])
    signals = {"coverage": np.array(run["coverage"]["query_coverage"])}
    for k in (1, 10, 50):
        signals[f"query -> training queries (k={k})"] = nearest_mean(queries, train_queries, k)
    signals["query -> evaluated pool (k=10)"] = nearest_mean(queries, pool, 10)
    signals["spread"] = query_spread(queries, pool)
    rho = [np.nan if x is None else x for x in run["rows"]["distilled"]["per_anchor"]]
    return {"protocol": protocol, "seed": seed, "rho": rho, "signals": {k: v.tolist() for k, v in signals.items()}}


def aurocs(runs: list[dict], protocols: tuple[str, ...]) -> dict:
    """AUROC of each signal (low value flags) for rho < LOW_RHO over the queries of `protocols`' runs."""
    chosen = [r for r in runs if r["protocol"] in protocols]
    rho = np.concatenate([r["rho"] for r in chosen]).astype(np.float64)
    known = ~np.isnan(rho)
    out = {"n_queries": int(known.sum()), "n_low_rho": int((rho[known] < LOW_RHO).sum())}
    for name in chosen[0]["signals"]:
        values = np.concatenate([r["signals"][name] for r in chosen])
        out[name] = auroc(-values[known], rho[known] < LOW_RHO)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, type=Path, help="the --out of benchmarks/ranking.py")
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    from influcoder.labels.labelling import load_labels

    _, pool, queries, _ = load_labels(args.labels)
    pool_by_id, query_by_id = {s.id: s for s in pool}, {s.id: s for s in queries}
    runs = [
        run_signals(args.experiment, protocol, seed, pool_by_id, query_by_id)
        for protocol in ("task", "random")
        for seed in args.seeds
    ]
    table = {
        "all queries": aurocs(runs, ("task", "random")),
        "unseen tasks (task)": aurocs(runs, ("task",)),
        "seen tasks (random)": aurocs(runs, ("random",)),
    }
    command = shlex.join(["python", "benchmarks/flag_signals.py", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "flag_signals.json", {"command": command, "aurocs": table, "runs": runs})
    names = list(runs[0]["signals"])
    lines = [
        f"AUROC of each signal (low value flags) for per-anchor rho < {LOW_RHO}, {len(runs)} ranking runs:",
        "",
        "| queries | below / all | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for label, row in table.items():
        cells = " | ".join("-" if row[n] is None else f"{row[n]:.3f}" for n in names)
        lines.append(f"| {label} | {row['n_low_rho']} / {row['n_queries']} | {cells} |")
    text = "\n".join(lines) + f"\n\nCommand: `{command}`\n"
    (args.out / "flag_signals.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
