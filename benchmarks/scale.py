"""How label, distil, index and attribute grow with the pool: wall time and peak memory from 1K to 100K samples.

Each step is the `influcoder` command a user runs, in its own process, so its peak resident memory is that
process's alone (`os.wait4` rusage). Pools are seeded draws of N samples from the `evals` source (937K
real samples), written as JSONL, so `index` streams them. Per size N:

- `index` of N samples with a distilled encoder, then `attribute` of --queries bbh queries (top 10) on it;
- `label` of N pool samples against --label-queries queries for N <= --label-max and at the extra
  --label-sizes (gradients are the slow part: ~0.5-1 s per sample on 2 cores; larger sizes are extrapolated
  from the fitted exponent, and the table says so);
- `distill` of one epoch on those labels (one epoch deals every pool sample once, so an epoch grows with the
  labelled pool, not with N beyond --label-max);
- at --distill-sizes, one `distill` epoch on *stand-in* labels: the pool x --label-queries matrix filled with
  seeded random scores. Distillation's cost depends on the matrix's shape, not on its values, so this times
  distillation at pool sizes whose real labels would take a day (its fidelity means nothing and is not
  reported). Row "distill-epoch (stand-in labels)"; a run with `--sizes` empty and no --encoder does only this:

    python benchmarks/scale.py --sizes --label-max 0 --distill-sizes 1000 10000 --out benchmarks/results/scale-distill

The stand-in epoch resumes across sittings (`distill --checkpoint-minutes 10`; the benchmark adds the
sittings up): rerun the same command after a stop. Then a log-log fit per step (exponent, time = a * N^b
over the measured sizes) and a plot:

    python benchmarks/scale.py --encoder runs/rank/experiment/enc-random-s0/best --sizes 1000 10000 100000 \\
        --label-max 1000 --label-sizes 250 --index-backend int8 --out benchmarks/results/scale

writes OUT.json, OUT.md and OUT.png. Work files go under --work (kept: a rerun reuses finished steps and their
measurements).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def run(command: list[str], log: Path, resumes: Path | None = None) -> dict:
    """Run one influcoder command; its wall seconds and peak RSS (MB) from the kernel's accounting.

    A step that finished before (its measurement is kept in LOG.json) is not run again, so a benchmark stopped
    at 100K resumes there instead of redoing the hour before it.

    `resumes`: the output directory of a command that resumes its own partial work (`distill`, which saves
    inside epochs), for a step longer than one sitting (a 100K-sample epoch: hours). Each sitting's seconds
    and peak anonymous memory go to LOG.partial.json every PARTIAL_EVERY_S; a rerun of the benchmark finding
    them and the command's saved state continues the command and adds its segments up (a killed segment counts
    up to its last write: up to PARTIAL_EVERY_S less). Without either, the directory is cleared first.
    """
    record = log.with_suffix(".json")
    if record.exists():
        kept = json.loads(record.read_text(encoding="utf-8"))
        if kept.get("command") == shlex.join(command):
            return kept
    partial, segments = log.with_suffix(".partial.json"), []
    if resumes is not None:
        kept = json.loads(partial.read_text(encoding="utf-8")) if partial.exists() else {}
        if kept.get("command") == shlex.join(command) and (resumes / "resume.pt").exists():
            segments = kept["segments"]
        else:
            shutil.rmtree(resumes, ignore_errors=True)

    def save_partial(segment: dict) -> None:
        if resumes is not None:
            body = {"command": shlex.join(command), "segments": [*segments, segment]}
            partial.write_text(json.dumps(body) + "\n", encoding="utf-8")

    started = time.perf_counter()
    peak_anon, written = 0.0, started
    with log.open("a" if segments else "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_anon = max(peak_anon, anonymous_mb(process.pid))
            time.sleep(ANON_POLL_S)
            if time.perf_counter() - written >= PARTIAL_EVERY_S:
                save_partial({"seconds": time.perf_counter() - started, "peak_anon_mb": peak_anon})
                written = time.perf_counter()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {shlex.join(command)}; see {log}")
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    measured = {"seconds": seconds, "peak_rss_mb": peak, "command": shlex.join(command)}
    if peak_anon:
        measured["peak_anon_mb"] = peak_anon
    if segments:  # earlier sittings: their kernel peaks died with them, their sampled anonymous peaks did not
        measured["seconds"] += sum(s["seconds"] for s in segments)
        measured["peak_anon_mb"] = max([peak_anon, *(s["peak_anon_mb"] for s in segments)])
        measured["segments"] = len(segments) + 1
        measured["peak_rss_mb_note"] = "of the last segment only"
    record.write_text(json.dumps(measured) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    return measured


ANON_POLL_S = 0.05
PARTIAL_EVERY_S = 60.0


def anonymous_mb(pid: int) -> float:
    """The process's anonymous resident memory (MB; Linux `RssAnon`), 0 where unreadable.

    Peak RSS also counts pages of files the process maps, such as a memory-mapped FAISS index: those sit in the
    page cache, shared and reclaimable, and are not what a larger pool costs the process itself. The kernel keeps
    no peak of the anonymous part, so it is sampled every ANON_POLL_S seconds (a shorter spike can be missed)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def write_pool(n: int, path: Path, seed: int) -> None:
    """The first n of a seeded draw of `evals`, as JSONL (skipped when already written)."""
    if path.exists():
        return
    from influcoder.data.formats import write_samples
    from influcoder.data.loading import load_samples

    write_samples(load_samples("evals", limit=n, seed=seed), path)


STAND_IN = "distill-epoch (stand-in labels)"


def write_stand_in_labels(pool: Path, queries: Path, n_queries: int, directory: Path, seed: int) -> None:
    """A labels directory `distill` reads, for the pool file against the first `n_queries` queries, whose scores
    are seeded random numbers (skipped when already written). Only for timing: a distillation's cost is set by
    the matrix's shape (how many pool texts each epoch encodes), never by the scores in it."""
    from influcoder.labels.labels_dir import LabelsDir, LabelsRecord

    labels = LabelsDir(directory)
    if labels.exists():
        return
    from influcoder.data.formats import load_file, write_samples
    from influcoder.labels.influence import InfluenceMatrix

    pool_samples, query_samples = load_file(pool), load_file(queries)[:n_queries]
    scores = np.random.default_rng(seed).normal(0.0, 0.1, (len(pool_samples), len(query_samples)))
    directory.mkdir(parents=True, exist_ok=True)
    write_samples(pool_samples, labels.pool_samples)
    write_samples(query_samples, labels.query_samples)
    matrix = InfluenceMatrix(scores.astype(np.float32), [s.id for s in pool_samples], [s.id for s in query_samples])
    matrix.save(labels.influence)
    note = "stand-in labels for timing distill: seeded random scores, not gradients"
    record = LabelsRecord(n_pool=len(pool_samples), n_queries=len(query_samples), features={}, extra={"stand_in": note})
    record.save(labels.record_path)


def fit(sizes: list[int], seconds: list[float]) -> dict | None:
    """time = a * N^b by least squares in log-log (None with fewer than two sizes)."""
    if len(sizes) < 2:
        return None
    b, log_a = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return {"exponent": float(b), "a": float(np.exp(log_a))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, help="a distilled encoder directory (for index and attribute)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[1000, 10000, 100000], help="index/attribute sizes")
    parser.add_argument("--label-max", type=int, default=1000, help="largest pool labelled for real")
    parser.add_argument("--label-sizes", nargs="*", type=int, default=[], help="extra pool sizes labelled only")
    parser.add_argument("--label-queries", type=int, default=32)
    parser.add_argument(
        "--distill-sizes", nargs="*", type=int, default=[], help="sizes of one distill epoch on stand-in labels"
    )
    parser.add_argument("--low-memory", action="store_true", help="the stand-in distill runs with --low-memory")
    parser.add_argument("--index-backend", choices=["torch", "int8"], default="torch", help="index --backend")
    parser.add_argument("--queries", type=int, default=100, help="bbh queries for attribute")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/scale"))
    parser.add_argument("--out", type=Path, default=RESULTS / "scale")
    args = parser.parse_args()
    if args.sizes and args.encoder is None:
        parser.error("--encoder is needed for index and attribute (--sizes); pass --sizes with no value to skip them")
    args.work.mkdir(parents=True, exist_ok=True)
    influcoder = [sys.executable, "-m", "influcoder.cli.main"]
    queries = args.work / "queries.jsonl"
    if not queries.exists():
        from influcoder.data.formats import write_samples
        from influcoder.data.loading import load_samples

        write_samples(load_samples("bbh", limit=args.queries, seed=args.seed), queries)
    rows: dict[str, dict[int, dict]] = {"index": {}, "attribute": {}, "label": {}, "distill-epoch": {}}
    rows[STAND_IN] = {}
    for n in sorted({*args.sizes, *args.label_sizes, *args.distill_sizes}):
        pool = args.work / f"pool-{n}.jsonl"
        write_pool(n, pool, args.seed)
        if n in args.distill_sizes:
            labels = args.work / f"stand-in-labels-{n}"
            write_stand_in_labels(pool, queries, args.label_queries, labels, args.seed)
            encoder = args.work / f"stand-in-enc-{n}"
            distill = [*influcoder, "distill", "--labels", str(labels), "--out", str(encoder), "--epochs", "1"]
            distill += ["--checkpoint-minutes", "10", "--quiet", *(["--low-memory"] if args.low_memory else [])]
            rows[STAND_IN][n] = run(distill, args.work / f"stand-in-distill-{n}.log", resumes=encoder)
        if n not in args.sizes and n not in args.label_sizes:
            continue
        if n in args.sizes:
            index_and_attribute(influcoder, args, n, pool, queries, rows)
        if n > args.label_max and n not in args.label_sizes:
            continue
        labels = args.work / f"labels-{n}"
        label = [*influcoder, "label", "--pool", str(pool), "--queries", str(queries), "--query-limit"]
        label += [str(args.label_queries), "--max-length", str(args.max_length), "--out", str(labels), "--quiet"]
        rows["label"][n] = run([*label, "--overwrite"], args.work / f"label-{n}.log")
        distill = [*influcoder, "distill", "--labels", str(labels), "--out", str(args.work / f"encoder-{n}")]
        distill += ["--epochs", "1", "--overwrite", "--quiet"]
        rows["distill-epoch"][n] = run(distill, args.work / f"distill-{n}.log")
    report = {
        "benchmark": "scale",
        "command": shlex.join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "steps": {
            name: {
                "by_size": {str(n): r for n, r in sorted(measured.items())},
                "fit": fit(sorted(measured), [measured[n]["seconds"] for n in sorted(measured)]),
            }
            | ({"marginal": marginal({"by_size": {str(n): r for n, r in measured.items()}})} if measured else {})
            for name, measured in rows.items()
            if measured
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    sizes = sorted({*args.sizes, *args.label_sizes, *args.distill_sizes})
    args.out.with_suffix(".md").write_text(markdown(report, sizes), encoding="utf-8")
    plot(report, args.out.with_suffix(".png"))
    print(args.out.with_suffix(".md").read_text(encoding="utf-8"))


def index_and_attribute(influcoder: list[str], args, n: int, pool: Path, queries: Path, rows: dict) -> None:
    """Index N samples, then attribute the queries against them (top 10)."""
    index = args.work / f"index-{n}"
    step = [*influcoder, "index", "--encoder", str(args.encoder), "--pool", str(pool), "--out", str(index)]
    step += ["--backend", args.index_backend]
    rows["index"][n] = run([*step, "--overwrite", "--quiet"], args.work / f"index-{n}.log")
    attribute = [*influcoder, "attribute", "--index", str(index), "--queries", str(queries), "-k", "10"]
    attribute += ["--format", "jsonl", "--out", str(args.work / f"hits-{n}.jsonl"), "--quiet"]
    rows["attribute"][n] = run(attribute, args.work / f"attribute-{n}.log")


def marginal(step: dict) -> dict | None:
    """Cost of more samples between the two largest measured sizes: wall ms per sample and the change of peak MB.
    The fitted exponent over whole commands includes each process's fixed start (loading torch and the
    model, ~5-20 s), which flatters it at small sizes; the marginal cost is what a larger pool adds."""
    sizes = sorted(int(n) for n in step["by_size"])
    if len(sizes) < 2:
        return None
    small, large = step["by_size"][str(sizes[-2])], step["by_size"][str(sizes[-1])]
    extra = sizes[-1] - sizes[-2]
    change = {
        "ms_per_sample": 1000 * (large["seconds"] - small["seconds"]) / extra,
        "peak_mb_change": large["peak_rss_mb"] - small["peak_rss_mb"],
        "between": [sizes[-2], sizes[-1]],
    }
    if "peak_anon_mb" in small and "peak_anon_mb" in large:
        change["peak_anon_mb_change"] = large["peak_anon_mb"] - small["peak_anon_mb"]
    return change


def markdown(report: dict, sizes: list[int]) -> str:
    lines = [
        "# Scale: wall time and peak memory against pool size",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs. "
        f"Command: `{report['command']}`. Each step is its own process; peak RSS is that process's "
        "(with its mapped files' pages: `anon` is the anonymous part alone, sampled every 50 ms).",
        "",
        "| step | " + " | ".join(f"N = {n:,}" for n in sizes) + " | exponent | marginal ms/sample | peak MB change |",
        "|---|" + "---|" * (len(sizes) + 3),
    ]
    for name, step in report["steps"].items():
        cells = []
        measured = [int(n) for n in step["by_size"]]
        for n in sizes:
            r = step["by_size"].get(str(n))
            if r is not None:
                anon = f" (anon {r['peak_anon_mb']:.0f})" if "peak_anon_mb" in r else ""
                sittings = f" ({r['segments']} sittings; RSS of the last)" if r.get("segments") else ""
                cells.append(f"{r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB{anon}{sittings}")
            elif step["fit"] is not None and n > max(measured):
                cells.append(f"~{step['fit']['a'] * n ** step['fit']['exponent']:.0f} s (extrapolated)")
            else:
                cells.append("-")
        exponent = f"{step['fit']['exponent']:.2f}" if step["fit"] else "-"
        m = step.get("marginal")
        extra = " | - | -"
        if m:
            anon = f", anon {m['peak_anon_mb_change']:+.0f}" if "peak_anon_mb_change" in m else ""
            between = f"{m['between'][0]:,} to {m['between'][1]:,}"
            extra = f" | {m['ms_per_sample']:.1f} | {m['peak_mb_change']:+.0f}{anon} ({between})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {exponent}{extra} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, step in report["steps"].items():
        sizes = [int(n) for n in step["by_size"]]
        if not sizes:
            continue
        label = name + (f" (b = {step['fit']['exponent']:.2f})" if step["fit"] else "")
        left.loglog(sizes, [r["seconds"] for r in step["by_size"].values()], "o-", label=label)
        right.semilogx(sizes, [r["peak_rss_mb"] for r in step["by_size"].values()], "o-", label=name)
    left.set(xlabel="pool samples", ylabel="wall seconds", title="time")
    right.set(xlabel="pool samples", ylabel="peak RSS (MB)", title="memory")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
