"""How far apart a `distill` run's held-out split and its training really are, by text and by task.

A run on all-pairs labels (every text both pool sample and query) that drew its pool and query hold-outs
independently (before `split_all_pairs`) trained on texts of held-out tasks from the other side: a held-out
query's task among the training pool (its gradient directions in the subspace the ridge predicts), a
held-out pool sample's task among the training queries. This counts, per run, the held-out tasks on each side,
how many of them training saw on the other side, and the texts on both evaluation sides.

    python benchmarks/split_overlap.py --samples runs/transfer/samples.jsonl \\
        --runs runs/transfer/cmd-s0 runs/transfer/cmd-s1 --out benchmarks/results/split_overlap.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from influcoder.core.atomic import write_json_atomic
from influcoder.data.formats import load_file


def overlap(run: Path, task_of: dict[str, str]) -> dict:
    """Counts for one run directory (its eval_split.json and training.json)."""
    split = json.loads((run / "eval_split.json").read_text(encoding="utf-8"))
    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    trained_pool = {task_of[i] for i in training["train_pool_ids"] + training["val_pool_ids"]}
    trained_queries = {task_of[i] for i in training["train_query_ids"] + training["val_query_ids"]}
    held_pool = {task_of[i] for i in split["pool_ids"]}
    held_queries = {task_of[i] for i in split["query_ids"]}
    return {
        "run": str(run),
        "held_out_texts": {"pool": len(split["pool_ids"]), "queries": len(split["query_ids"])},
        "texts_on_both_evaluation_sides": len(set(split["pool_ids"]) & set(split["query_ids"])),
        "held_out_tasks": {"pool": len(held_pool), "queries": len(held_queries)},
        "held_out_query_tasks_in_the_training_pool": len(held_queries & trained_pool),
        "held_out_pool_tasks_among_training_queries": len(held_pool & trained_queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", required=True, type=Path, help="the labelled samples (their meta.task)")
    parser.add_argument("--runs", required=True, type=Path, nargs="+", help="`distill` output directories")
    parser.add_argument("--out", required=True, type=Path, help="JSON to write")
    args = parser.parse_args()
    task_of = {s.id: s.meta["task"] for s in load_file(args.samples)}
    record = {"command": shlex.join(["python", *sys.argv]), "runs": [overlap(r, task_of) for r in args.runs]}
    write_json_atomic(args.out, record)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
