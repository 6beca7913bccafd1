"""The transfer winner as a user runs it: `distill` at its defaults on the all-pairs transfer labels, held-out
tasks (`--eval-protocol task`), one run per seed, each scored by `evaluate` beside TF-IDF on its own split.

`benchmarks/transfer.py` measured the designs from cached features with cross-validated settings; this
collects what the commands themselves wrote (each run's training.json and its `evaluate --report`
results.json) into one record, so the page quotes the default path and not a re-implementation of it:

    influcoder distill --labels runs/transfer/labels --out runs/transfer/cmd-s0 --eval-protocol task \\
        --eval-pool 600 --eval-queries 200 --seed 0
    influcoder evaluate --encoder runs/transfer/cmd-s0 --labels runs/transfer/labels --baselines tfidf \\
        --report runs/transfer/cmd-s0-report
    python benchmarks/transfer_command.py --runs runs/transfer/cmd-s0 ... --reports runs/transfer/cmd-s0-report ... \\
        --out docs/results/transfer-command

Writes transfer-command.json and transfer-command.md into --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic, write_text_atomic
from influcoder.encoder.run_record import DistillRun

FIGURES = ("per_anchor_mean", "per_anchor_median", "mean_aggregated", "query_specific_mean")
SETTINGS = ("objective", "encoder", "pooling", "text_view", "epochs", "subspace_k", "subspace_ridge", "seed",
            "backbone_layers", "subspace_head", "kernel_gamma", "kernel_landmarks")  # fmt: skip
PROTOCOLS = {"task": "unseen tasks on both sides", "random": "seen tasks: random texts held out",
             "source": "unseen source: one whole source held out on both sides, one run per source"}  # fmt: skip


def one_run(run_dir: Path, report_dir: Path, protocol: str | None = None, name: str | None = None) -> dict:
    """What one seed's distill and evaluate recorded; `protocol` names a run held out by `--eval-split` (whose
    evaluation records none), `name` what the run held out (shown instead of the seed)."""
    record = DistillRun(run_dir).record()
    evaluation = json.loads((report_dir / "results.json").read_text(encoding="utf-8"))
    run = evaluation["runs"][0]
    rows = run["rows"]
    distilled = [x for x in rows["distilled"]["per_anchor"] if x is not None]
    flag = run.get("coverage") or {}
    return {
        "seed": record.settings["seed"],
        "protocol": run["protocol"] or protocol,
        **({"name": name} if name else {}),
        "settings": {key: record.settings.get(key) for key in SETTINGS},
        "evaluate_command": evaluation["command"],
        "ridge_seconds": record.epochs[0]["seconds"],
        "validation_per_anchor": record.epochs[0]["val_per_anchor"],
        "held_out": {"pool": rows["distilled"]["n_pool"], "queries": rows["distilled"]["n_queries"]},
        **({"states_cache": True} if rows["distilled"].get("states_cache") else {}),
        "methods": {
            name: {key: row[key] for key in FIGURES} | {"encode_ms_per_sample": row["encode_ms_per_sample"]}
            for name, row in rows.items()
        },  # fmt: skip
        "lowest_per_anchor": float(min(distilled)),
        "queries_below_0.3": int(sum(x < 0.3 for x in distilled)),
        "flag": {key: flag.get(key) for key in ("auroc_low_rho", "auroc_low_rho_spread", "n_low_rho")},
    }


def summary(runs: list[dict]) -> dict:
    """Mean and sample sd (ddof 1) over the seeds, per method and figure."""
    out: dict = {}
    for name in runs[0]["methods"]:
        for key in FIGURES:
            values = np.array([r["methods"][name][key] for r in runs], dtype=np.float64)
            spread = float(values.std(ddof=1)) if len(values) > 1 else None
            out.setdefault(name, {})[key] = {"mean": float(values.mean()), "sd": spread}
    return out


def first_cell(name: str, record: dict) -> str:
    """A table's first header cell, with the record's title where it has one (so that two records' tables on
    one page have headers of their own)."""
    return f"{name} ({record['title']})" if record.get("title") else name


def markdown(record: dict) -> str:
    runs, mean = record["runs"], record["summary"]
    protocol = runs[0]["protocol"]
    over = "runs" if runs[0].get("name") else "seeds"
    kernel = any(r["settings"].get("subspace_head") == "kernel" for r in runs)
    cached = any(r.get("states_cache") for r in runs)  # evaluate --states-cache: no backbone pass in the time
    lines = [
        f"command: `{record['command']}`",
        "",
        f"`{protocol}` protocol ({PROTOCOLS[protocol]}), {len(runs)} {over}; mean (sample sd) over the {over}.",
        "",
        f"| {first_cell('method', record)} | per-anchor | median per-anchor | mean-aggregated | query-specific |",
        "|---|---|---|---|---|",
    ]
    for name, figures in mean.items():
        cells = [f"{figures[k]['mean']:.3f}" + (f" ({figures[k]['sd']:.3f})" if figures[k]["sd"] else "")
                 for k in FIGURES]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| {first_cell('held out' if over == 'runs' else 'seed', record)} | held out | distilled per-anchor | "
        f"lowest | below 0.3 | tfidf | {'head fit s' if kernel else 'ridge s'} | "
        f"encode ms/sample{' (states cached)' * cached} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.get('name', r['seed'])} | {r['held_out']['pool']} x {r['held_out']['queries']} | "
            f"{r['methods']['distilled']['per_anchor_mean']:.3f} | {r['lowest_per_anchor']:.3f} | "
            f"{r['queries_below_0.3']} | {r['methods']['tfidf']['per_anchor_mean']:.3f} | {r['ridge_seconds']:.0f} | "
            f"{r['methods']['distilled']['encode_ms_per_sample']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="distill output directories")
    parser.add_argument("--reports", nargs="+", required=True, type=Path, help="their `evaluate --report` dirs")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--name", default="transfer-command", help="the written files' name, before .json / .md")
    parser.add_argument("--title", help="a title for the tables' first header cells (e.g. the protocol)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), help="the protocol of runs held out by --eval-split")
    parser.add_argument("--run-names", nargs="+", help="what each run held out (e.g. the source), shown for the seed")
    args = parser.parse_args()
    if len(args.runs) != len(args.reports):
        parser.error("give one --reports directory per --runs directory")
    names = args.run_names or [None] * len(args.runs)
    if len(names) != len(args.runs):
        parser.error("give one --run-names name per --runs directory")
    runs = [one_run(run, report, args.protocol, name)
            for run, report, name in zip(args.runs, args.reports, names, strict=True)]  # fmt: skip
    if len({r["protocol"] for r in runs}) != 1:
        parser.error("the runs follow different protocols: one record per protocol")
    record = {"command": shlex.join(["python", *sys.argv]), "runs": runs, "summary": summary(runs)}
    if args.title:
        record["title"] = args.title
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"{args.name}.json", record)
    write_text_atomic(args.out / f"{args.name}.md", markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
