"""The ranking experiment (the paper's Fig. 2 / Table 1): every method against gradient labels, both protocols,
several seeds, one report.

For each seed and protocol it distils an encoder that holds out its own evaluation split (`random`: held-out
samples of the training tasks; `task`: whole tasks never seen in training), then evaluates it and every
baseline on that split. Each step is its own `influcoder` command, run as a subprocess with its log beside its
output, and is skipped when its output exists, so a stopped run resumes where it stopped (distill resumes
mid-run by itself). Runs go seed by seed, both protocols per seed, so a partial experiment still compares the
two. Finally the runs are merged into one report (results.json, results.md, report.html):

    python benchmarks/ranking.py --labels runs/rank/labels --out runs/rank/experiment --seeds 0 1 2 \\
        --protocols task random --eval-pool 150 --eval-queries 50 --epochs 2 --lr 1e-4

With --flops, FLOPs are counted in the first run only (the meter scores everything once more; FLOPs per sample
do not depend on the seed); on a 2-core machine count them in a separate small evaluate instead. Reproduce
the committed figures with the command recorded in their results.md.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from influcoder.evaluation.report import load_runs, write_report

BASELINES = ["untrained", "tfidf", "pool-mean", "repsim", "rds+", "less", "datainf", "logra", "logra-fisher", "airrep"]


def run_step(command: list[str], log: Path) -> None:
    """Run one influcoder command, its output into `log`; stop the experiment if it fails."""
    print(f"$ {shlex.join(command)}  (log: {log})", flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"failed (exit {done.returncode}) after {time.perf_counter() - started:.0f} s; see {log}")
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", choices=["task", "random"], default=["task", "random"])
    parser.add_argument("--eval-pool", type=int, default=150)
    parser.add_argument("--eval-queries", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--baselines", nargs="*", default=BASELINES)
    parser.add_argument("--group-field", default="task")
    parser.add_argument("--flops", action="store_true", help="count FLOPs in the first run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    influcoder = [sys.executable, "-m", "influcoder.cli.main"]
    results = []
    for seed in args.seeds:
        for protocol in args.protocols:
            name = f"{protocol}-s{seed}"
            encoder, report = args.out / f"enc-{name}", args.out / f"eval-{name}"
            if not (encoder / "training.json").exists() or '"complete": true' not in (
                encoder / "training.json"
            ).read_text(encoding="utf-8"):
                distill = [*influcoder, "distill", "--labels", str(args.labels), "--out", str(encoder)]
                distill += ["--eval-pool", str(args.eval_pool), "--eval-queries", str(args.eval_queries)]
                distill += ["--eval-protocol", protocol, "--group-field", args.group_field, "--seed", str(seed)]
                distill += ["--epochs", str(args.epochs), "--lr", str(args.lr), "--quiet"]
                run_step(distill, args.out / f"distill-{name}.log")
            if not (report / "results.json").exists():
                evaluate = [*influcoder, "evaluate", "--encoder", str(encoder), "--labels", str(args.labels)]
                evaluate += ["--baselines", *args.baselines, "--by", args.group_field, "--report", str(report)]
                evaluate += ["--quiet", *(["--flops"] if args.flops and not results else [])]
                run_step(evaluate, args.out / f"evaluate-{name}.log")
            results.append(report / "results.json")
    runs = [run for path in results for run in load_runs(path)]
    command = shlex.join(["python", "benchmarks/ranking.py", *sys.argv[1:]])
    write_report(args.out / "report", runs, command)
    print((args.out / "report" / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
