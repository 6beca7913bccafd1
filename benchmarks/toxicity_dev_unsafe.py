"""Does the toxicity encoder gain from more unsafe pairs in its distillation pool? Measured on the development set.

A replicate distills its encoder from 720 x 20 gradient labels holding 40 unsafe pairs (the first replicates'
`ToxicitySettings.train_unsafe`); they are its only view of what to flag. This grows that pool without
touching the replicate: `prepare` draws N extra unsafe pairs from the development set's positives (seeded;
the first 60 are the same for every N, so the sets nest), labels them against the replicate's training queries
with its adapter and label settings (the query gradients come out bit for bit those of the replicate), and
joins them to the replicate's labels with `merge_labels` (the `merge-labels` command). Distill it with the replicate's
settings (`influcoder distill --labels OUT ...`). `evaluate` scores encoders on the development set **minus
the N extra pairs**, so no encoder is scored on a pair it trained on, with the figures of
`toxicity_dev.py` (resampled AUPRC at the replicate's rate, share of unsafe pairs removed at 5% dropped).

    python benchmarks/toxicity_dev_unsafe.py prepare --run runs/tox-unsafe40/het-seed0 --extra 60 \\
        --out runs/dev/labels-unsafe100
    influcoder distill --labels runs/dev/labels-unsafe100 --out runs/dev/unsafe100-s0 --encoder minilm-l6 \\
        --epochs 5 --lr 1e-4 --seed 0
    python benchmarks/toxicity_dev_unsafe.py evaluate --run runs/tox-unsafe40/het-seed0 --extra 60 \\
        --encoders runs/tox-unsafe40/het-seed0/encoder/best runs/dev/unsafe100-s0/best \\
        --out benchmarks/results/toxicity_dev-unsafe

`--avoid` names further replicates whose texts the development set must leave out (as `toxicity_dev.py
--runs`). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from influcoder.data.records import Sample
from influcoder.labels.labelling import label
from influcoder.labels.labels_dir import LabelsDir
from influcoder.labels.merge import merge_labels
from influcoder.labels.settings import LabelSettings
from influcoder.tasks.toxicity import ToxicityTask, development_set
from toxicity_dev import evaluate, table, write

FIRST = 60
"""The first extras, drawn alone with seed 13: every larger N adds to them (seed 14), so its set holds them."""


def split(runs: list[Path], n_extra: int) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(extra unsafe pairs, development pool without them, development queries)."""
    pool, queries = development_set([ToxicityTask.load(r / "task") for r in runs])
    unsafe = [i for i, s in enumerate(pool) if s.meta["type"] == "unsafe"]
    chosen = set(np.random.default_rng(13).choice(unsafe, size=min(n_extra, FIRST), replace=False).tolist())
    if n_extra > FIRST:
        rest = [i for i in unsafe if i not in chosen]
        chosen |= set(np.random.default_rng(14).choice(rest, size=n_extra - FIRST, replace=False).tolist())
    extra = [pool[i] for i in sorted(chosen)]
    return extra, [s for i, s in enumerate(pool) if i not in chosen], queries


def prepare(run: Path, runs: list[Path], n_extra: int, out: Path) -> None:
    """Label the extras against the replicate's training queries, then join them to its labels (merge-labels
    checks the feature settings and queries agree and the pools are disjoint)."""
    extra, _, _ = split(runs, n_extra)
    _, _, queries, record = LabelsDir.load(run / "train-labels")
    extra_dir = out.with_name(out.name + "-extra")
    label(extra, queries, extra_dir, LabelSettings(**record.settings))
    matrix = merge_labels([run / "train-labels", extra_dir], out)
    print(f"{out}: {matrix.scores.shape[0]} x {matrix.scores.shape[1]} labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "evaluate"])
    parser.add_argument("--run", type=Path, required=True, help="the replicate whose training labels are grown")
    parser.add_argument("--avoid", type=Path, nargs="*", default=[], help="other replicates the set must avoid")
    parser.add_argument("--extra", type=int, required=True, help="extra unsafe pairs (evaluate: the most any grew by)")
    parser.add_argument("--encoders", type=Path, nargs="*", default=[], help="evaluate: encoder directories")
    parser.add_argument("--draws", type=int, default=200, help="random draws of the positives per figure")
    parser.add_argument("--out", type=Path, required=True, help="prepare: labels dir; evaluate: results stem")
    args = parser.parse_args()
    runs = [args.run, *args.avoid]
    if args.step == "prepare":
        prepare(args.run, runs, args.extra, args.out)
        return
    _, pool, queries = split(runs, args.extra)
    n_positive = ToxicityTask.load(args.run / "task").counts["pool"]["unsafe"]
    rows = [evaluate(e, pool, queries, n_positive, args.draws) for e in args.encoders]
    counts = {t: sum(s.meta["type"] == t for s in pool) for t in ("benign", "unsafe")}
    command = "python benchmarks/toxicity_dev_unsafe.py " + shlex.join(sys.argv[1:])
    lines = [
        "# Toxicity encoder: more unsafe distillation pairs, on the development set",
        "",
        f"Command: `{command}`. Machine: {platform.platform()}.",
        "",
        f"Pool: the development set minus the {args.extra} pairs added to distillation: {counts['benign']} benign + "
        f"{counts['unsafe']} unsafe pairs, 10 unsafe queries; {n_positive} positives per draw, {args.draws} draws.",
        "",
        *table(rows),
    ]
    result = {"command": command, "machine": platform.platform(), "pool": counts, "rows": rows}
    write(args.out, result, lines)


if __name__ == "__main__":
    main()
