"""Why the distilled encoder trails its teacher on the toxicity task: where its ranking departs from gradsim's.

The encoder imitates gradsim (the CountSketch gradient cosine of its training labels) but ranks the evaluation
pool's unsafe pairs worse. On each toxicity replicate directory this reads the scores already computed
(``scores/influcoder.npy``, ``scores/gradsim.npy``) and the task, and measures:

- agreement: Spearman of the two methods' pool scores (mean over the queries), over the pool and the benign
  pairs;
- what each method's top 100 holds, by type;
- training coverage of benign tasks: each benign evaluation pair's task counted in the distillation pool, the
  pairs grouped by that count (0, 1, 2+), and per group the encoder-teacher Spearman and the share of the
  group in each method's top 100 (benign pairs in a top 100 are false positives of the filter);
- the same encoder and teacher on the distillation side's own validation split (samples the encoder never
  trained on, at the training pool's enriched unsafe rate): AUPRC of each, so a gap that opens only on the
  evaluation pool shows as a shift, not as a failure to fit.

    python benchmarks/toxicity_encoder.py --runs runs/tox/het-seed0 --out benchmarks/results/toxicity_encoder

Writes OUT.json and OUT.md. It needs no decoder: only the distilled encoder runs (on the distillation pool).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from influcoder.metrics import auprc
from influcoder.tasks.toxicity import ToxicityTask

TOP = 100
GROUPS = ("0", "1", "2+")


def family(sample) -> str:
    """A benign pair's task (``meta['task']``); unsafe and safety pairs by type."""
    return sample.meta.get("task") or sample.meta["type"]


def coverage_group(count: int) -> str:
    return GROUPS[min(count, 2)]


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(spearmanr(a, b)[0]) if len(a) > 2 else None


def top_share(scores: np.ndarray, members: np.ndarray, k: int = TOP) -> float:
    """Share of the top `k` of `scores` that `members` (a boolean mask) holds."""
    return float(members[np.argsort(-scores, kind="stable")[:k]].mean())


def evaluation_side(run: Path, task: ToxicityTask) -> dict:
    encoder = np.load(run / "scores" / "influcoder.npy").mean(axis=1)
    teacher = np.load(run / "scores" / "gradsim.npy").mean(axis=1)
    types = np.array([s.meta["type"] for s in task.pool])
    benign = types == "benign"
    trained = Counter(family(s) for s in task.train_pool)
    groups = np.array(
        [coverage_group(trained.get(family(s), 0)) if t == "benign" else t for s, t in zip(task.pool, types)]
    )
    out: dict = {
        "pool": len(task.pool),
        "benign_tasks": len({family(s) for s in task.pool if s.meta["type"] == "benign"}),
        "benign_tasks_in_training": len({family(s) for s in task.train_pool if s.meta["type"] == "benign"}),
        "spearman_all": spearman(encoder, teacher),
        "spearman_benign": spearman(encoder[benign], teacher[benign]),
        "auprc": {"influcoder": auprc(encoder, types == "unsafe"), "gradsim": auprc(teacher, types == "unsafe")},
        "top": {
            name: {t: int(round(top_share(scores, types == t) * TOP)) for t in ("unsafe", "safety", "benign")}
            for name, scores in (("influcoder", encoder), ("gradsim", teacher))
        },
        "coverage_groups": {},
    }
    for group in GROUPS:
        members = groups == group
        out["coverage_groups"][group] = {
            "pairs": int(members.sum()),
            "spearman": spearman(encoder[members], teacher[members]),
            "top_share_influcoder": top_share(encoder, members),
            "top_share_gradsim": top_share(teacher, members),
        }
    return out


def training_side(run: Path) -> dict:
    """Encoder and teacher AUPRC on the distillation's validation pool (never trained on)."""
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.encoder.run_record import DistillRun
    from influcoder.labels.labelling import load_labels

    matrix, pool, queries, _ = load_labels(run / "train-labels")
    labels = np.asarray(matrix.scores, dtype=np.float64)
    distilled = DistillRun(run / "encoder")
    split = distilled.record()
    val = np.array([s.id in set(split.val_pool_ids) for s in pool])
    unsafe = np.array([s.meta.get("type") == "unsafe" for s in pool])
    encoder = InfluenceEncoder.from_pretrained(distilled.best)
    predicted = encoder.encode_pool([pool[i] for i in np.where(val)[0]], 32) @ encoder.encode_queries(queries, 32).T
    return {
        "val_pairs": int(val.sum()),
        "val_unsafe": int(unsafe[val].sum()),
        "auprc_influcoder": auprc(predicted.mean(axis=1), unsafe[val]),
        "auprc_teacher": auprc(labels[val].mean(axis=1), unsafe[val]),
        "spearman": spearman(predicted.mean(axis=1), labels[val].mean(axis=1)),
    }


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(rows: list[dict], command: str, machine: str) -> str:
    lines = [
        "# Where the distilled encoder departs from its teacher on the toxicity task",
        "",
        f"Machine: {machine}. Command: `{command}`.",
        "",
        "| replicate | AUPRC encoder / gradsim | Spearman enc-gradsim (all / benign) | top-100 encoder (u/s/b) "
        "| top-100 gradsim (u/s/b) | distillation val AUPRC encoder / teacher (unsafe of pairs) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, t = r["evaluation"], r["training"]
        tops = [
            " / ".join(str(e["top"][m][k]) for k in ("unsafe", "safety", "benign")) for m in ("influcoder", "gradsim")
        ]
        lines.append(
            f"| {r['replicate']} | {fmt(e['auprc']['influcoder'])} / {fmt(e['auprc']['gradsim'])} | "
            f"{fmt(e['spearman_all'])} / {fmt(e['spearman_benign'])} | {tops[0]} | {tops[1]} | "
            f"{fmt(t['auprc_influcoder'])} / {fmt(t['auprc_teacher'])} ({t['val_unsafe']} of {t['val_pairs']}) |"
        )
    lines += [
        "",
        "Benign evaluation pairs by how many distillation pairs share their task: pairs, encoder-teacher Spearman "
        "within the group, and the group's share of each method's top 100.",
        "",
        "| replicate | task pairs in training | pairs | Spearman | in encoder top 100 | in gradsim top 100 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for group, g in r["evaluation"]["coverage_groups"].items():
            lines.append(
                f"| {r['replicate']} | {group} | {g['pairs']} | {fmt(g['spearman'])} | "
                f"{g['top_share_influcoder']:.2f} | {g['top_share_gradsim']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="toxicity replicate directories")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "toxicity_encoder")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for run in args.runs:
        task = ToxicityTask.load(run / "task")
        rows.append(
            {
                "replicate": f"{run.parent.name}/{run.name}",
                "evaluation": evaluation_side(run, task),
                "training": training_side(run),
            }
        )
    command = "python benchmarks/toxicity_encoder.py " + shlex.join(sys.argv[1:])
    machine = f"{platform.platform()}, {platform.machine()}"
    result = {"command": command, "machine": machine, "seconds": time.perf_counter() - started, "replicates": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(rows, command, machine), encoding="utf-8")
    print(markdown(rows, command, machine))


if __name__ == "__main__":
    main()
