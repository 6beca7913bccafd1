"""Crash safety, measured: SIGKILL `label`, `distill` and `index` at random moments, rerun, compare.

Each trial starts a command on tiny seeded models (built offline, as the tests do), kills it with SIGKILL
after a random share of an uninterrupted run's wall time, reruns the same command to completion and compares
every output file with the uninterrupted run's: byte-identical, or for JSON files identical once timing fields
(seconds, dates) are removed. Leftover temporary files and stale locks are reported too.

    python benchmarks/kill_resume.py --kills 24 --out runs/kills

writes benchmarks/results/kill_resume.json and .md (the table of docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TIMING_KEYS = ("seconds", "time", "date", "started", "elapsed", "per_s")


def influcoder(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from influcoder.cli.main import main; sys.exit(main())", *args]


def setup(work: Path) -> dict[str, Path]:
    """Tiny decoder and encoder directories and a pool / query file of their words."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from tests.conftest import WORDS, make_tiny_bert_dir, make_tiny_llama, make_tokenizer

    work.mkdir(parents=True, exist_ok=True)
    decoder = work / "tiny-llama"
    if not decoder.exists():
        tokenizer = make_tokenizer()
        make_tiny_llama(vocab_size=len(tokenizer)).save_pretrained(decoder)
        tokenizer.save_pretrained(decoder)
    encoder = work / "tiny-bert"
    if not encoder.exists():
        encoder.mkdir()
        make_tiny_bert_dir(encoder)
    rng = np.random.default_rng(0)
    for name, n in (("pool", 400), ("queries", 40)):
        with open(work / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for i in range(n):
                prompt = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 14))))
                response = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))
                out.write(json.dumps({"id": f"{name}{i}", "prompt": prompt, "response": response}) + "\n")
    return {"decoder": decoder, "encoder": encoder, "pool": work / "pool.jsonl", "queries": work / "queries.jsonl"}


def commands(paths: dict[str, Path], work: Path) -> dict[str, list[str]]:
    out = work / "out"
    return {
        "label": influcoder(
            "label",
            "--pool",
            str(paths["pool"]),
            "--queries",
            str(paths["queries"]),
            "--out",
            str(out / "label"),
            "--model",
            str(paths["decoder"]),
            "--rank",
            "2",
            "--proj-dim",
            "256",
            "--max-length",
            "24",
            "--shard-size",
            "16",
            "--device",
            "cpu",
            "--quiet",
        ),
        "distill": influcoder(
            "distill",
            "--labels",
            str(work / "labels-ref"),
            "--out",
            str(out / "distill"),
            "--encoder",
            str(paths["encoder"]),
            "--epochs",
            "6",
            "--checkpoint-minutes",
            "0",  # the training state is also saved after every step, so kills land inside epochs' saves too
            "--max-length",
            "24",
            "--device",
            "cpu",
            "--quiet",
        ),
        "index": influcoder(
            "index",
            "--encoder",
            str(work / "encoder-ref" / "best"),
            "--pool",
            str(paths["pool"]),
            "--out",
            str(out / "index"),
            "--shard-size",
            "16",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--quiet",
        ),
    }


def strip_timing(value):
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if not any(t in k.lower() for t in TIMING_KEYS)}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def differences(reference: Path, result: Path) -> list[str]:
    """Files that differ (bytes, or JSON without timing fields), are missing, or are left over."""
    skip = {"config.yaml", ".influcoder.lock"}
    ref_files = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file() and p.name not in skip}
    got_files = {p.relative_to(result) for p in result.rglob("*") if p.is_file() and p.name not in skip}
    problems = [f"missing {p}" for p in sorted(ref_files - got_files)]
    problems += [f"left over {p}" for p in sorted(got_files - ref_files)]
    for rel in sorted(ref_files & got_files):
        a, b = reference / rel, result / rel
        if rel.suffix == ".json":
            same = strip_timing(json.loads(a.read_text())) == strip_timing(json.loads(b.read_text()))
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            problems.append(f"differs {rel}")
    return problems


def run(argv: list[str], timeout: float = 600) -> tuple[int, float]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("runs/kills"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.out.resolve()
    paths = setup(work)
    cmds = commands(paths, work)
    rng = random.Random(args.seed)

    # uninterrupted references, each written at the very path the trials write (paths inside manifests agree)
    durations = {}
    shutil.rmtree(work / "out", ignore_errors=True)
    for stage in ("label", "distill", "index"):
        rc, seconds = run(cmds[stage])
        if rc != 0:
            raise SystemExit(f"reference {stage} failed (rc {rc})")
        durations[stage] = seconds
        reference = work / f"ref-{stage}"
        shutil.rmtree(reference, ignore_errors=True)
        shutil.copytree(work / "out" / stage, reference)
        if stage == "label":
            shutil.rmtree(work / "labels-ref", ignore_errors=True)
            shutil.copytree(work / "out" / "label", work / "labels-ref")
        if stage == "distill":
            shutil.rmtree(work / "encoder-ref", ignore_errors=True)
            shutil.copytree(work / "out" / "distill", work / "encoder-ref")
        print(f"reference {stage}: {seconds:.1f} s", flush=True)

    trials = []
    stages = ["label", "distill", "index"]
    for k in range(args.kills):
        stage = stages[k % 3]
        target = work / "out" / stage
        shutil.rmtree(target, ignore_errors=True)
        delay = rng.uniform(0.15, 0.95) * durations[stage]
        process = subprocess.Popen(cmds[stage], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished_before_kill = process.poll() is not None
        if not finished_before_kill:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        files_at_kill = sum(1 for p in target.rglob("*") if p.is_file()) if target.exists() else 0
        rc, _ = run(cmds[stage])
        problems = differences(work / f"ref-{stage}", target) if rc == 0 else [f"rerun rc {rc}"]
        temporaries = [str(p.relative_to(target)) for p in target.rglob("*.tmp*")] if target.exists() else []
        trials.append(
            {
                "stage": stage,
                "kill_after_s": round(delay, 2),
                "killed": not finished_before_kill,
                "files_at_kill": files_at_kill,
                "rerun_rc": rc,
                "identical": not problems,
                "problems": problems[:5],
                "temporaries_left": temporaries,
            }
        )
        print(
            f"{k + 1:>3} {stage:<8} kill at {delay:5.1f} s ({files_at_kill} files): "
            f"{'identical' if not problems else problems[:2]}",
            flush=True,
        )

    killed = [t for t in trials if t["killed"]]
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "reference_seconds": durations,
        "trials": trials,
        "killed": len(killed),
        "identical_after_kill": sum(t["identical"] for t in killed),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kill_resume.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# Kill and resume: {result['identical_after_kill']} of {len(killed)} SIGKILLed runs resumed to identical "
        "outputs",
        "",
        f"command: `{result['command']}` ({result['machine']}); uninterrupted: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in durations.items()),
        "",
        "| # | stage | SIGKILL after (s) | files on disk at kill | rerun rc | identical to uninterrupted | left over |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(trials, 1):
        when = f"{t['kill_after_s']}" if t["killed"] else f"{t['kill_after_s']} (had finished)"
        verdict = "yes" if t["identical"] else "; ".join(t["problems"])
        lines.append(
            f"| {i} | {t['stage']} | {when} | {t['files_at_kill']} | {t['rerun_rc']} | {verdict} | "
            f"{', '.join(t['temporaries_left']) or '-'} |"
        )
    (RESULTS / "kill_resume.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:2]))
    return 0 if result["identical_after_kill"] == len(killed) else 1


if __name__ == "__main__":
    sys.exit(main())
