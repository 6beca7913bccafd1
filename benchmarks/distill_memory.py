"""Resident memory of `distill` step by step: does it climb with the steps, and is it memory glibc keeps?

`scale.py` found a distillation epoch's peak anonymous memory 673 MB higher at 10K pool samples than at 1K,
though distillation holds ~2 KB per sample. This reads the process's anonymous resident memory (Linux
`RssAnon`) after every optimizer step, through torch's global optimizer step hook, for the first --steps
steps of one `influcoder distill` run in this process: as it is, with glibc's `malloc_trim` every
--trim-every steps (`influcoder.core.allocator`, which flattened `index`'s growth), or with glibc's mmap
threshold fixed at --mmap-mb. Labels: any labels directory, e.g. scale.py's stand-in labels:

    python benchmarks/distill_memory.py --labels runs/scale/stand-in-labels-10000 --steps 150 --mode plain
    python benchmarks/distill_memory.py --labels runs/scale/stand-in-labels-10000 --steps 150 --mode trim
    python benchmarks/distill_memory.py --labels runs/scale/stand-in-labels-1000 --epochs 3 --mode mmap --mmap-mb 1

Each run stores its trace in --out under --name (default: the mode), with its median seconds per step (JSON:
{"runs": {name: {..., "trace": [[step, MB], ...]}}}), rewrites the markdown table beside it and prints every
tenth step. `--mode mmap` fixes glibc's mmap threshold (`distill --low-memory`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

from influcoder.core.allocator import fix_mmap_threshold, release_freed_memory

RESULTS = Path(__file__).parent / "results"


class Enough(Exception):
    """Raised from the step hook once --steps steps are traced: the rest of the epoch is not needed."""


def anonymous_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--mode", choices=["plain", "trim", "mmap"], default="plain")
    parser.add_argument("--mmap-mb", type=float, default=1.0, help="--mode mmap: the fixed mmap threshold, MB")
    parser.add_argument("--name", help="key of this trace in --out (default: the mode)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs to run (a small pool's epoch has few steps)")
    parser.add_argument("--trim-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "distill-memory.json")
    args = parser.parse_args()
    trace: list[list[float]] = []
    times: list[float] = []
    if args.mode == "mmap" and not fix_mmap_threshold(int(args.mmap_mb * (1 << 20))):
        raise SystemExit("mallopt is not available here (glibc only)")

    def after_step(optimizer, *_):
        step = len(trace) + 1
        if args.mode == "trim" and step % args.trim_every == 0:
            release_freed_memory()
        trace.append([step, round(anonymous_mb(), 1)])
        times.append(time.perf_counter())
        if step % 10 == 0:
            print(f"step {step}: {trace[-1][1]:.0f} MB", flush=True)
        if step >= args.steps:
            raise Enough

    register_optimizer_step_post_hook(after_step)
    from influcoder.cli.main import main as influcoder

    with tempfile.TemporaryDirectory() as out:
        try:
            influcoder(["distill", "--labels", str(args.labels), "--out", out, "--epochs", str(args.epochs), "--quiet"])
        except Enough:
            pass
    name = args.name or args.mode
    gaps = [b - a for a, b in zip(times, times[1:])]
    run = {
        "labels": str(args.labels),
        "mode": args.mode,
        "mmap_mb": args.mmap_mb if args.mode == "mmap" else None,
        "epochs": args.epochs,
        "seconds_per_step": round(statistics.median(gaps), 3) if gaps else None,
        "trace": trace,
    }
    kept = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    kept.setdefault("runs", {})[name] = run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(kept) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(table(kept["runs"]), encoding="utf-8")
    print(table({name: run}), end="")


def table(runs: dict) -> str:
    """A markdown row per traced run: its last and peak anonymous memory and its median step time."""
    lines = [
        "Memory and time of distillation steps only: the stand-in labels are seeded random scores, so no fidelity",
        "is measured and no held-out tasks, seen or unseen in training, are involved. Readings are taken after each",
        "optimizer step, when the step's activations are freed: a step's own working set is not in them.",
        "",
        "| run | labels | mode | steps | anonymous MB after the last step | highest after-step reading "
        "| median s per step |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        memory = [mb for _, mb in run["trace"]]
        mode = f"mmap >= {run['mmap_mb']:g} MB" if run["mode"] == "mmap" else run["mode"]
        seconds = run.get("seconds_per_step")
        lines.append(
            f"| {name} | {Path(run['labels']).name} | {mode} | {len(memory)} | {memory[-1]:,.0f} | "
            f"{max(memory):,.0f} | {seconds if seconds is not None else 'not kept'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
