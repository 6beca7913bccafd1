"""Today's objective (cosines distilled with Pearson + KL) against `--objective subspace`, on the demo's labels,
each pair on the same held-out split, as a user runs them (`distill` then `evaluate`).

    python benchmarks/objective_compare.py --run runs/objectives          # labels (the demo) + every pair
    python benchmarks/objective_compare.py --collect runs/objectives --out benchmarks/results/objectives.json

`--run` writes, under DIR: the demo (its labels: 200 `evals` pool samples x 60 `bbh` queries), then for each
protocol and seed `PROTOCOL-OBJECTIVE-sSEED/` (distill) and `PROTOCOL-OBJECTIVE-sSEED.json` (evaluate with the
untrained encoder, TF-IDF and pool-mean beside it). The split depends on the seed only, so both objectives of
a seed are scored on the same held-out pool and queries. `--collect` gathers those JSONs into one record and a
markdown table (mean and sample sd over seeds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

PLANS = [("task", seed) for seed in (0, 1, 2)] + [("random", 0)]
OBJECTIVES = {"influcoder": ["--epochs", "4", "--lr", "1e-4"], "subspace": ["--epochs", "2"]}
"""Each objective at its settings: the demo's for today's (4 epochs, lr 1e-4), two epochs for subspace."""
METRICS = ("per_anchor_mean", "mean_aggregated", "query_specific_mean")


def run(directory: Path) -> None:
    from influcoder.labels.labels_dir import LabelsDir

    influcoder = [str(Path(sys.executable).parent / "influcoder")]  # the console script of this environment
    labels = directory / "demo" / "labels"
    if not LabelsDir(labels).exists():
        subprocess.run([*influcoder, "demo", "--out", str(directory / "demo"), "--quiet"], check=True)
    for protocol, seed in PLANS:
        for objective, extra in OBJECTIVES.items():
            name = directory / f"{protocol}-{objective}-s{seed}"
            if name.with_suffix(".json").exists():
                continue
            subprocess.run([*influcoder, "distill", "--labels", str(labels), "--out", str(name), "--objective",
                            objective, "--seed", str(seed), "--eval-pool", "40", "--eval-queries", "15",
                            "--eval-protocol", protocol, *extra, "--quiet"], check=True)  # fmt: skip
            subprocess.run([*influcoder, "evaluate", "--encoder", str(name), "--labels", str(labels), "--baselines",
                            "semantic", "tfidf", "pool-mean", "--json", str(name.with_suffix(".json")),
                            "--quiet"], check=True)  # fmt: skip
            if not name.with_suffix(".json").exists():
                sys.exit(f"evaluate wrote no {name.with_suffix('.json')}")


def collect(directory: Path) -> dict:
    rows: dict[str, dict[str, list[dict]]] = {}
    for protocol, seed in PLANS:
        for objective in OBJECTIVES:
            path = directory / f"{protocol}-{objective}-s{seed}.json"
            if not path.exists():
                continue
            result = json.loads(path.read_text(encoding="utf-8"))
            for method, figures in result.items():
                label = f"{objective} (distilled)" if method == "distilled" else method
                if method != "distilled" and objective != "influcoder":
                    continue  # the baselines of a split once (both objectives' files hold the same ones)
                entry = {"seed": seed, **{m: figures[m] for m in METRICS}, "n_pool": figures.get("n_pool"),
                         "n_queries": figures.get("n_queries")}  # fmt: skip
                rows.setdefault(protocol, {}).setdefault(label, []).append(entry)
    summary = {
        protocol: {
            method: {m: {"mean": float(np.mean([r[m] for r in runs])),
                         "sd": float(np.std([r[m] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
                         "n": len(runs)} for m in METRICS}
            for method, runs in methods.items()
        }
        for protocol, methods in rows.items()
    }  # fmt: skip
    return {"plans": PLANS, "objectives": OBJECTIVES, "runs": rows, "summary": summary}


def markdown(record: dict) -> str:
    lines = [
        "Mean (sample sd, ddof 1, where there are several seeds) over seeds. Each seed: one held-out split of 40 pool "
        "x 15 queries.",
        "",
    ]
    for protocol, methods in record["summary"].items():
        lines += [f"### {protocol}", "", "| method | seeds | per-anchor | mean-aggregated | query-specific |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for method, m in methods.items():
            cells = [f"{m[x]['mean']:.3f}" + (f" ({m[x]['sd']:.3f})" if m[x]["n"] > 1 else "") for x in METRICS]
            lines.append(f"| {method} | {m[METRICS[0]]['n']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### per-anchor rho per split", "", "| protocol | seed | " + " | ".join(_methods(record)) + " |",
              "|---|---|" + "---|" * len(_methods(record))]  # fmt: skip
    for protocol, seed in record["plans"]:
        cells = []
        for method in _methods(record):
            run = next((r for r in record["runs"].get(protocol, {}).get(method, []) if r["seed"] == seed), None)
            cells.append("" if run is None else f"{run['per_anchor_mean']:.3f}")
        lines.append(f"| {protocol} | {seed} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _methods(record: dict) -> list[str]:
    """Every method of the record, in first-seen order."""
    return list(dict.fromkeys(m for methods in record["runs"].values() for m in methods))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run the demo and every distill/evaluate pair into this directory")
    parser.add_argument("--collect", type=Path, help="gather a --run directory's results")
    parser.add_argument("--out", type=Path, help="JSON to write with --collect (a .md table beside it)")
    args = parser.parse_args(argv)
    if args.run:
        run(args.run)
    if args.collect:
        if args.out is None:
            parser.error("--collect needs --out")
        record = collect(args.collect)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(markdown(record), encoding="utf-8")
        print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
