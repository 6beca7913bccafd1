"""More pool samples of the tasks a labels directory's pool already covers, for the distillation data sweep.

The held-out pool of `benchmarks/distill.py` comes from the `evals` tasks of the first labelled pool; extra
training pool samples of *those* tasks moved the held-out figure (other tasks did not), so this script draws,
for every `evals` task in `--labels`' pool, up to `--per-task` items that no given labels directory holds
(seeded per task: `--seed + task index`). Label them against the same queries, then merge:

    python benchmarks/same_task_pool.py --labels runs/labels --per-task 10 --seed 0 --out runs/extra1.jsonl
    influcoder label --pool runs/extra1.jsonl --queries runs/labels/queries.jsonl --out runs/labels-extra1
    python benchmarks/same_task_pool.py --labels runs/labels --exclude runs/labels-extra1 --per-task 15 \\
        --seed 1000 --out runs/extra2.jsonl
    influcoder label --pool runs/extra2.jsonl --queries runs/labels/queries.jsonl --out runs/labels-extra2
    influcoder merge-labels runs/labels runs/labels-extra1 runs/labels-extra2 --out runs/labels-grown

(copy `runs/labels/queries` into each new --out first: the query gradients then resume instead of being
recomputed). With `--labels` the 1200 x 500 `evals` x `bbh` labels, these are the draws of the 2057- and
3262-pool rows of `results/distill.md` (1057 and 1205 samples; checked id for id), except that those runs also
excluded the ids of an earlier 2000-sample `evals` pool of other tasks, which held one item of these tasks: add
that directory to both --exclude lists to reproduce them exactly.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from influcoder.data.formats import write_samples
from influcoder.data.loading import load_samples
from influcoder.data.records import subsample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, help="labels directory whose pool's tasks to extend")
    parser.add_argument("--exclude", nargs="*", default=[], help="more labels directories whose pool ids to skip")
    parser.add_argument("--per-task", type=int, default=10, help="items per task, at most (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first task (task i uses seed + i)")
    parser.add_argument("--out", required=True, help="JSONL file of the new pool samples")
    args = parser.parse_args()
    pool = load_samples(Path(args.labels) / "pool.jsonl")
    have = {s.id for s in pool}
    for directory in args.exclude:
        have |= {s.id for s in load_samples(Path(directory) / "pool.jsonl")}
    tasks = collections.Counter(s.meta["task"] for s in pool)
    drawn = []
    for i, task in enumerate(sorted(tasks)):
        fresh = [s for s in load_samples("evals:" + task) if s.id not in have and s.meta.get("task") == task]
        drawn += subsample(fresh, args.per_task, args.seed + i)
    write_samples(drawn, args.out)
    print(f"{len(drawn)} new pool samples of {len(tasks)} tasks -> {args.out}")


if __name__ == "__main__":
    main()
