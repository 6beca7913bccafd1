"""Does rescoring reach the labels' top 10 with 2% of the pool once the pool is larger? (transfer issue, design 3)

On the transfer labels' unseen-task split the held-out pool is ~600 texts, so 2% is 12 candidates for a top 10:
almost a perfect ranking. This asks whether the recall at a fixed share grows with the pool. Whole tasks are
held out (a fifth, then half of them, so that the held-out pool reaches ~2,000 texts); `distill`'s default
head (the kernel head on block 20's pooled states, k 256) is fitted on the rest; the held-out pool is
subsampled at several sizes (5 draws each) and each query's labels' top 10 is sought among the head's top K,
K a share of the subsample. Reads the block states `decoder_layers.py --features` keeps.

    python benchmarks/rescore_pool_size.py --labels /work/runs/transfer/labels \\
        --out benchmarks/results/rescore_pool_size
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decoder_layers import DEFAULT_K, STATES, kernel_predict  # noqa: E402
from influcoder.attribution.rescore import SECOND_ROUND_SHARE, first_round_size, nearest_rows  # noqa: E402
from influcoder.core.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from transfer import Subspace, load_square_labels, log_lengths, report, rescore_recall  # noqa: E402

SHARES = (0.02, 0.05, 0.1, 0.2)
SECOND_SHARES = (1 / 3, 1 / 2, 2 / 3)
"""Shares of the candidates a second round spends around the best exact hit (`attribute --rescore-rounds 2`
spends `SECOND_ROUND_SHARE`)."""
SIZES = (250, 500, 1000, 2000)
QUERIES = 200


def held_out_tasks(samples, share: float, seed: int) -> dict[str, np.ndarray]:
    """Rows: train, and a held-out set of whole tasks (`share` of the task names) cut into queries and pool."""
    rng = np.random.default_rng(seed)
    tasks = np.array([s.meta["task"] for s in samples])
    names = np.unique(tasks)
    held = np.isin(tasks, rng.choice(names, size=int(len(names) * share), replace=False))
    rows = np.flatnonzero(held)
    rng.shuffle(rows)
    return {"train": np.flatnonzero(~held), "queries": np.sort(rows[:QUERIES]), "pool": np.sort(rows[QUERIES:])}


def two_round_recall(pred: np.ndarray, truth: np.ndarray, stored: np.ndarray, K: int, second_share: float,
                     top: int = 10) -> float:  # fmt: skip
    """`Influcoder.rescore(rounds=2)` on arrays: the encoder's top candidates first, then the rows whose stored
    vectors lie nearest the best exact hit among them (`attribution.rescore.nearest_rows`, the library's own);
    recall of each query's exact top `top` among all K candidates, mean over queries."""
    first = first_round_size(K, 2, second_share)
    picked = [np.argsort(-pred[:, j], kind="stable")[:first] for j in range(pred.shape[1])]
    best = [rows[int(np.argmax(truth[rows, j]))] for j, rows in enumerate(picked)]
    near, _ = nearest_rows([stored], stored[best], [set(rows.tolist()) for rows in picked], K - first)
    recalls = []
    for j in range(pred.shape[1]):
        candidates = np.concatenate([picked[j], near[j]])
        chosen = candidates[np.argsort(-truth[candidates, j], kind="stable")[:top]]
        recalls.append(len(set(chosen) & set(np.argsort(-truth[:, j], kind="stable")[:top])) / top)
    return float(np.mean(recalls))


def measure(S, X, samples, share: float, seed: int, block: int, draws: int = 5) -> dict:
    rows = held_out_tasks(samples, share, seed)
    train, pool, queries = rows["train"], rows["pool"], rows["queries"]
    sub = Subspace(S, train, DEFAULT_K)
    stored = kernel_predict(X[train], sub.coordinates(train, DEFAULT_K), X[pool])  # what an index of the pool holds
    pred = stored @ sub.coordinates(queries, DEFAULT_K).T
    truth = S[np.ix_(pool, queries)].astype(np.float64)
    rng = np.random.default_rng(1000 + seed)
    by_size, two_rounds = {}, {f"{s:.3f}": {} for s in SECOND_SHARES}
    for size in (s for s in SIZES if s <= len(pool)):
        recalls, second = [], {key: [] for key in two_rounds}
        for _ in range(draws):
            pick = rng.choice(len(pool), size=size, replace=False)
            budgets = [max(10, int(np.ceil(f * size))) for f in SHARES]
            recalls.append([rescore_recall(pred[pick], truth[pick], K) for K in budgets])
            for s in SECOND_SHARES:
                second[f"{s:.3f}"].append([two_round_recall(pred[pick], truth[pick], stored[pick], K, s)
                                           for K in budgets])  # fmt: skip
        by_size[str(size)] = dict(zip([f"{f:.0%}" for f in SHARES], np.mean(recalls, 0).round(4).tolist()))
        for key, values in second.items():
            two_rounds[key][str(size)] = dict(zip([f"{f:.0%}" for f in SHARES], np.mean(values, 0).round(4).tolist()))
    return {"held_task_share": share, "seed": seed, "block": block, "train": len(train), "pool": len(pool),
            "queries": len(queries), "per_anchor": report(pred, truth)["per_anchor"], "recall@10": by_size,
            "recall@10, two rounds": two_rounds}  # fmt: skip


def recall_rows(runs: list[dict], recalls) -> list[str]:
    """One table row per held-out share and pool size: `recalls(run)` -> {size: {share of pool: recall}}."""
    lines = []
    for share in sorted({r["held_task_share"] for r in runs}):
        held = [r for r in runs if r["held_task_share"] == share]
        for size in SIZES:
            have = [recalls(r)[str(size)] for r in held if str(size) in recalls(r)]
            if have:
                cells = [f"{np.mean([h[f'{f:.0%}'] for h in have]):.3f}" for f in SHARES]
                lines.append(f"| {share:.0%}, {size} | " + " | ".join(cells) + f" | {len(have)} |")
    return lines


def markdown(record: dict) -> str:
    runs = record["runs"]
    header = " | ".join(f"rescore {f:.0%}" for f in SHARES) + " | runs |"
    rule = "|---|" + "---|" * (len(SHARES) + 1)
    lines = ["# Rescore recall against pool size (unseen tasks, kernel head at block "
             f"{runs[0]['block']})", "", f"command: `{record['command']}`", "",
             "Recall of the labels' top 10 among the encoder's top K, K a share of a random subsample of the "
             "held-out pool (mean over seeds and 5 draws).", "",
             "| held-out tasks, pool size | " + header, rule, *recall_rows(runs, lambda r: r["recall@10"])]  # fmt: skip
    anchors = {s: np.mean([r["per_anchor"] for r in runs if r["held_task_share"] == s])
               for s in sorted({r["held_task_share"] for r in runs})}  # fmt: skip
    lines += [
        "",
        "Per-anchor rho on the whole held-out pool: "
        + ", ".join(f"{v:.3f} with {s:.0%} of the tasks held out" for s, v in anchors.items())
        + ".",
    ]
    if "recall@10, two rounds" in runs[0]:
        shipped = f"{record['second_round_share']:.3f}"
        lines += ["", f"Two rounds (`attribute --rescore-rounds 2`): the same K candidates, the last "
                  f"{record['second_round_share']:.0%} of them the rows nearest the best exact hit of the first.", "",
                  "| held-out tasks, pool size (two rounds) | " + header, rule,
                  *recall_rows(runs, lambda r: r["recall@10, two rounds"][shipped])]  # fmt: skip
        lines += ["", "| share of K in round two | " + header, rule]
        for key in runs[0]["recall@10, two rounds"]:
            cells = [np.mean([size[f"{f:.0%}"] for r in runs for size in r["recall@10, two rounds"][key].values()])
                     for f in SHARES]  # fmt: skip
            lines.append(f"| {float(key):.0%} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {len(runs)} |")
        lines.append("| none (one round) | " + " | ".join(
            f"{np.mean([size[f'{f:.0%}'] for r in runs for size in r['recall@10'].values()]):.3f}" for f in SHARES)
            + f" | {len(runs)} |")  # fmt: skip
        lines += ["", "(That last table: mean over every held-out share, pool size and seed.)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--held", type=float, nargs="+", default=[0.2, 0.5], help="shares of the tasks held out")
    args = parser.parse_args(argv)
    S, samples = load_square_labels(args.labels)
    states = np.load(args.labels.parent / f"{STATES}.npy", mmap_mode="r")
    X = np.hstack([np.asarray(states[args.block - 1], dtype=np.float64), log_lengths(samples)])
    runs = []
    for share in args.held:
        for seed in args.seeds:
            runs.append(measure(S, X, samples, share, seed, args.block))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "recall@10"}), flush=True)
    command = "python benchmarks/rescore_pool_size.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {"command": command, "second_round_share": SECOND_ROUND_SHARE, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "rescore_pool_size.json", record)
    write_text_atomic(args.out / "rescore_pool_size.md", markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
