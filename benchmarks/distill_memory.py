"""Resident memory of `distill` step by step: does it climb with the steps, and is it memory glibc keeps?

`scale.py` found a distillation epoch's peak anonymous memory 673 MB higher at 10K pool samples than at 1K,
though distillation holds ~2 KB per sample. This reads the process's anonymous resident memory (Linux
`RssAnon`) after every optimizer step, through torch's global optimizer step hook, for the first --steps
steps of one `influcoder distill` run in this process, with or without glibc's `malloc_trim` every
--trim-every steps (`influcoder.core.allocator`, which flattened `index`'s growth). Labels: any labels
directory, e.g. scale.py's stand-in labels:

    python benchmarks/distill_memory.py --labels runs/scale/stand-in-labels-10000 --steps 150 --mode plain
    python benchmarks/distill_memory.py --labels runs/scale/stand-in-labels-10000 --steps 150 --mode trim

Each run stores its trace in --out under its mode (JSON: {mode: [[step, MB], ...]}) and prints every tenth step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

from influcoder.core.allocator import release_freed_memory

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
    parser.add_argument("--mode", choices=["plain", "trim"], default="plain")
    parser.add_argument("--trim-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "distill-memory.json")
    args = parser.parse_args()
    trace: list[list[float]] = []

    def after_step(optimizer, *_):
        step = len(trace) + 1
        if args.mode == "trim" and step % args.trim_every == 0:
            release_freed_memory()
        trace.append([step, round(anonymous_mb(), 1)])
        if step % 10 == 0:
            print(f"step {step}: {trace[-1][1]:.0f} MB", flush=True)
        if step >= args.steps:
            raise Enough

    register_optimizer_step_post_hook(after_step)
    from influcoder.cli.main import main as influcoder

    with tempfile.TemporaryDirectory() as out:
        try:
            influcoder(["distill", "--labels", str(args.labels), "--out", out, "--epochs", "1", "--quiet"])
        except Enough:
            pass
    kept = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    kept[args.mode] = trace
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(kept) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
