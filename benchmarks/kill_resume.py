"""Crash safety, measured: SIGKILL `label`, `distill` and `index` mid-output, rerun, and check it resumed.

Each trial starts a command on tiny seeded models (built offline, as the tests do) and SIGKILLs it while its
output is partly written; only such kills count, and trials go on until every stage has `--kills` of them:

- `label`: some but not all gradient shards (pool and query stores) on disk;
- `distill` (`--objective influcoder`, saving its training state after every step): at least one epoch
  recorded in training.json, not the last;
- `distill-subspace` (the default objective, saving its state after the ridge start and each epoch): at
  least one trained epoch recorded, not the last;
- `index`: some but not all embedding shards on disk.

The trials go round the stages in turn, and the record is rewritten after each one: a run stopped early
(SIGTERM ends the command under test too) leaves a valid record of what it did, and its page says so.
(Before 2026-12-07's second session `distill-subspace` saved no training state and restarted after a kill,
which this check reported.)

Kill times are chosen adaptively: an uninterrupted reference run, polled every few milliseconds, gives when
each part of the output appeared; a trial draws a moment uniformly inside that mid-output window, waits until
the part written last before that moment appears on disk, then for the rest of the drawn delay (scaled by
how fast this run reached that part against the reference) or until the next part appears, whichever is
first, and SIGKILLs.
A kill that lands outside the window (the command finished first) is recorded and not counted.

The rerun of the same command must then

1. resume, not restart: every shard on disk at the kill (its `.npy` and `.sha256`) keeps its inode, mtime and
   sha256 through the rerun (`label`, `index`); a distill rerun says it resumes exactly where the state saved
   at the kill stopped (`resuming ... after step S of epoch E`, or `after epoch K`), and the epochs recorded at
   the kill keep their logs verbatim, their timings included (a restart would re-time them);
2. end bit for bit where an uninterrupted run ends: every output file byte-identical, JSON files identical once
   timing fields (seconds, dates) are removed; no temporary file left.

    python benchmarks/kill_resume.py --kills 20 --out runs/kills

writes benchmarks/results/kill_resume.json and .md (the table of docs/reliability.md); the exit status is 1
if any counted trial failed a check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TIMING_KEYS = ("seconds", "time", "date", "started", "elapsed", "per_s")
STAGES = ("label", "distill", "distill-subspace", "index")
POLL_SECONDS = 0.005
RUNNING: list[subprocess.Popen] = []  # the command under test now, for `stop`
RESUMING = re.compile(r"resuming \S+ after (?:step (\d+) of epoch (\d+)|epoch (\d+)) of (\d+)")


def influcoder(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from influcoder.cli.main import main; sys.exit(main())", *args]


def setup(work: Path, pool_size: int, query_size: int) -> dict[str, Path]:
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
    for name, n in (("pool", pool_size), ("queries", query_size)):
        with open(work / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for i in range(n):
                prompt = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 14))))
                response = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))
                out.write(json.dumps({"id": f"{name}{i}", "prompt": prompt, "response": response}) + "\n")
    return {"decoder": decoder, "encoder": encoder, "pool": work / "pool.jsonl", "queries": work / "queries.jsonl"}


def commands(paths: dict[str, Path], work: Path, epochs: int) -> dict[str, list[str]]:
    out = work / "out"
    distill = ["distill", "--labels", str(work / "labels-ref"), "--encoder", str(paths["encoder"])]
    distill += ["--epochs", str(epochs), "--max-length", "24", "--device", "cpu"]
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
            "8",
            "--device",
            "cpu",
            "--quiet",
        ),
        # progress on (no --quiet): a resumed run says where it resumes
        "distill": influcoder(
            *distill,
            "--out",
            str(out / "distill"),
            "--objective",
            "influcoder",
            "--checkpoint-minutes",
            "0",  # the training state is saved after every step too, so kills land inside epochs' saves
        ),
        "distill-subspace": influcoder(*distill, "--out", str(out / "distill-subspace")),
        "index": influcoder(
            "index",
            "--encoder",
            str(work / "ref-distill-subspace" / "best"),
            "--pool",
            str(paths["pool"]),
            "--out",
            str(out / "index"),
            "--shard-size",
            "8",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--quiet",
        ),
    }


# ------------------------------------------------------------------------------------------ what is on disk


def shard_files(stage: str, target: Path) -> list[Path]:
    """The finished shards of a `label` (pool and query stores) or `index` (every segment) directory."""
    if stage == "label":
        return sorted([*target.glob("pool/shard-*.npy"), *target.glob("queries/shard-*.npy")])
    if stage == "index":
        return sorted(target.glob("segment-*/shard-*.npy"))
    return []


def epochs_recorded(target: Path) -> list[dict]:
    """The trained epochs (1 and on) that a distill directory's training.json records."""
    try:
        record = json.loads((target / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in record.get("epochs", []) if e.get("epoch", 0) >= 1]


def progress(stage: str, target: Path) -> int:
    """How many parts of the stage's output are on disk: shards, or trained epochs recorded."""
    if stage in ("label", "index"):
        return len(shard_files(stage, target))
    return len(epochs_recorded(target))


def finished(stage: str, target: Path) -> bool:
    if stage == "label":
        return (target / "labels.json").exists()
    if stage == "index":
        return (target / "index.faiss").exists()
    try:
        return bool(json.loads((target / "training.json").read_text(encoding="utf-8")).get("complete"))
    except (OSError, ValueError):
        return False


def fingerprints(stage: str, target: Path) -> dict[str, list]:
    """inode, mtime (ns) and sha256 of every finished shard and its checksum file."""
    import hashlib

    out = {}
    for shard in shard_files(stage, target):
        for path in (shard, shard.with_name(shard.name + ".sha256")):
            if path.exists():
                st, digest = path.stat(), hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(target))] = [st.st_ino, st.st_mtime_ns, digest]
    return out


def saved_position(target: Path) -> list[int] | None:
    """[epoch, step] where the training state saved at the kill continues (step 0: at an epoch's start)."""
    path = target / "resume.pt"
    if not path.exists():
        return None
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    inside = state.get("inside")
    done = state.get("epochs_done", len(state["logs"]))  # the subspace objective also logs its ridge start
    return [done + 1, int(inside["step"])] if inside else [done + 1, 0]


def said_position(stdout: str) -> list[int] | None:
    """[epoch, step] where the rerun says it resumes (`resuming OUT after step S of epoch E of N` continues
    epoch E at step S; `after epoch K of N` starts epoch K + 1)."""
    match = RESUMING.search(stdout)
    if match is None:
        return None
    if match[1] is not None:
        return [int(match[2]), int(match[1])]
    return [int(match[3]) + 1, 0]


# ---------------------------------------------------------------------------------------------- comparison


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


def resume_problems(stage: str, target: Path, at_kill: dict, stdout: str) -> list[str]:
    """What shows the rerun recomputed more than the missing parts (empty: it resumed)."""
    problems = []
    if stage in ("label", "index"):
        after = fingerprints(stage, target)
        touched = [name for name, print_ in at_kill["fingerprints"].items() if after.get(name) != print_]
        problems += [f"rewrote {name}" for name in touched[:3]]
        if len(touched) > 3:
            problems.append(f"... {len(touched)} files rewritten in all")
        return problems
    said = said_position(stdout)
    if at_kill["position"] is None:
        problems.append("no training state saved at the kill")
    if said is None:
        problems.append("rerun did not resume (restarted from scratch)")
    elif said != at_kill["position"]:
        problems.append(f"resumed at epoch/step {said}, state saved at {at_kill['position']}")
    kept = epochs_recorded(target)[: len(at_kill["epochs"])]
    if kept != at_kill["epochs"]:
        problems.append("epochs recorded at the kill were recomputed (their logs changed)")
    return problems


# ------------------------------------------------------------------------------------------------- running


def reference_run(argv: list[str], stage: str, target: Path) -> dict:
    """An uninterrupted run, polled: when each part of the output appeared (seconds after the start)."""
    shutil.rmtree(target, ignore_errors=True)
    log = target.parent / f"{stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as errors:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=errors, stderr=errors)
    RUNNING[:] = [process]
    appeared: list[float] = []
    while process.poll() is None:
        count = progress(stage, target)
        now = time.perf_counter() - started
        while len(appeared) < count:
            appeared.append(now)
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"reference {stage} failed (rc {process.returncode}): {log.read_text()[-2000:]}")
    count = progress(stage, target)
    appeared += [seconds] * (count - len(appeared))
    return {"seconds": seconds, "parts": count, "appeared": appeared, "window": [appeared[0], appeared[-1]]}


def kill_plan(reference: dict, rng: random.Random) -> tuple[int, float]:
    """A moment drawn uniformly in the reference's mid-output window, as (parts to wait for, then seconds)."""
    moment = rng.uniform(*reference["window"])
    appeared = reference["appeared"]
    parts = max(1, sum(1 for t in appeared if t <= moment))
    return parts, max(0.0, moment - appeared[parts - 1])


def trial(stage: str, argv: list[str], target: Path, reference: dict, rng: random.Random) -> dict:
    shutil.rmtree(target, ignore_errors=True)
    wait_parts, then = kill_plan(reference, rng)
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    RUNNING[:] = [process]
    while process.poll() is None and progress(stage, target) < wait_parts:
        time.sleep(POLL_SECONDS)
    # the drawn delay at this run's own pace: a machine busier or idler than during the reference scales it
    then *= (time.perf_counter() - started) / max(reference["appeared"][wait_parts - 1], 1e-3)
    deadline = time.perf_counter() + then  # or the next part's appearance, whichever comes first: a run slower or
    while process.poll() is None and time.perf_counter() < deadline and progress(stage, target) <= wait_parts:
        time.sleep(POLL_SECONDS)  # faster than the reference (a busy machine) still dies between two parts
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kill_after = time.perf_counter() - started
    parts = progress(stage, target)
    mid_output = killed and parts >= 1 and parts < reference["parts"] and not finished(stage, target)
    at_kill = {
        "fingerprints": fingerprints(stage, target),
        "position": saved_position(target) if stage.startswith("distill") else None,
        "epochs": epochs_recorded(target) if stage.startswith("distill") else [],
    }
    rerun = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    RUNNING[:] = [rerun]
    stdout, stderr = rerun.communicate(timeout=3600)
    done = subprocess.CompletedProcess(argv, rerun.returncode, stdout, stderr)
    RUNNING.clear()
    if done.returncode == 0:
        identical = differences(reference["path"], target)
        resume = resume_problems(stage, target, at_kill, done.stdout + done.stderr)  # progress: stderr
    else:
        identical, resume = [f"rerun rc {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"], []
    return {
        "stage": stage,
        "wait_for_parts": wait_parts,
        "then_s": round(then, 3),
        "kill_after_s": round(kill_after, 2),
        "killed": killed,
        "parts_at_kill": parts,
        "parts_total": reference["parts"],
        "mid_output": mid_output,
        "position_at_kill": at_kill["position"],
        "kept_files": len(at_kill["fingerprints"]),
        "rerun_rc": done.returncode,
        "resumed": not resume and done.returncode == 0,
        "resume_problems": resume[:5],
        "identical": not identical,
        "problems": identical[:5],
        "temporaries_left": [str(p.relative_to(target)) for p in target.rglob("*.tmp*")] if target.exists() else [],
    }


# -------------------------------------------------------------------------------------------------- report


def passed(t: dict) -> bool:
    return t["rerun_rc"] == 0 and t["resumed"] and t["identical"] and not t["temporaries_left"]


COUNTS_AS = (
    "A kill counts when the stage's output was partly written (label, index: some but not all shards; distill, "
    "both objectives: 1 or more trained epochs recorded, not the last)."
)
COUNTS_AS_BEFORE = (  # how records written before the subspace objective kept a training state counted
    "A kill counts when the stage's output was partly written (label, index: some but not all shards; distill: "
    "1 or more epochs recorded, not the last; distill-subspace: best/ written, training.json not)."
)


def part_name(stage: str, result: dict) -> str:
    subspace_parts = "epochs" if "counts_as" in result else "files"
    return {"label": "shards", "index": "shards", "distill": "epochs", "distill-subspace": subspace_parts}[stage]


def markdown(result: dict) -> str:
    """The page: a line per stage, then every trial."""
    trials = result["trials"]
    counted = [t for t in trials if t["mid_output"]]
    good = [t for t in counted if passed(t)]
    seconds = result["reference"]
    wanted = f"{result['kills_wanted']} mid-output kills per stage"
    lines = [
        f"# Kill and resume: {len(good)} of {len(counted)} mid-output SIGKILLs resumed, recomputing only what was "
        "missing, to identical outputs",
        "",
        f"Asked for {wanted}; " + ("done." if result["finished"] else "**stopped early** after the trials below."),
        "",
        f"command: `{result['command']}` ({result['machine']}, {result['date']}); pool {result['pool']}, "
        f"queries {result['queries']}, distill epochs {result['epochs']}; uninterrupted: "
        + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in seconds.items()),
        "",
        result.get("counts_as", COUNTS_AS_BEFORE)
        + " Resumed: the shards on disk at the kill kept their inode, mtime and sha256 through the rerun (label, "
        "index), or "
        "the rerun said it resumed exactly where the saved state stopped and kept the recorded epochs' logs "
        "(distill). Identical: every output file equals the uninterrupted run's (bytes; JSON without timing "
        "fields).",
        "",
        "| stage | attempts | mid-output kills | resumed | identical | both, no temporary left | shards / epochs "
        "on disk at the kill (min-max of total) |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in result["stages"]:
        runs = [t for t in trials if t["stage"] == stage]
        mid = [t for t in runs if t["mid_output"]]
        span = "-"
        if mid:
            low, high = min(t["parts_at_kill"] for t in mid), max(t["parts_at_kill"] for t in mid)
            span = f"{low}-{high} of {mid[0]['parts_total']} {part_name(stage, result)}"
        lines.append(
            f"| {stage} | {len(runs)} | {len(mid)} | {sum(t['resumed'] for t in mid)} | "
            f"{sum(t['identical'] for t in mid)} | {sum(passed(t) for t in mid)} | {span} |"
        )
    lines += [
        "",
        "| # | stage | SIGKILL after (s) | on disk at kill | mid-output | saved state (epoch, step) | rerun rc | "
        "resumed | identical to uninterrupted | left over |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(trials, 1):
        when = f"{t['kill_after_s']}" if t["killed"] else f"{t['kill_after_s']} (had finished)"
        disk = f"{t['parts_at_kill']} of {t['parts_total']} {part_name(t['stage'], result)}"
        position = ", ".join(map(str, t["position_at_kill"])) if t["position_at_kill"] else "-"
        resumed = "yes" if t["resumed"] else "no: " + "; ".join(t["resume_problems"])
        if not t["mid_output"]:
            resumed = "(not counted)"  # nothing or everything was on disk: no resume to tell from a restart
        identical = "yes" if t["identical"] else "no: " + "; ".join(t["problems"])
        lines.append(
            f"| {i} | {t['stage']} | {when} | {disk} | {'yes' if t['mid_output'] else 'no'} | {position} | "
            f"{t['rerun_rc']} | {resumed} | {identical} | {', '.join(t['temporaries_left']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="mid-output kills to count per stage")
    parser.add_argument("--max-attempts", type=int, default=0, help="per stage (default: 3 x --kills)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--pool", type=int, default=96)
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("runs/kills"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="kill_resume", help="results file name (NAME.json, NAME.md)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where they are written")
    args = parser.parse_args()
    work = args.out.resolve()
    paths = setup(work, args.pool, args.queries)
    cmds = commands(paths, work, args.epochs)
    rng = random.Random(args.seed)
    signal.signal(signal.SIGTERM, stop)  # a stopped run keeps the record of every trial it finished

    # uninterrupted references, each written at the very path the trials write (paths inside manifests agree)
    references = {}
    shutil.rmtree(work / "out", ignore_errors=True)
    for stage in ("label", "distill", "distill-subspace", "index"):
        target = work / "out" / stage
        references[stage] = reference_run(cmds[stage], stage, target)
        reference = work / f"ref-{stage}"
        shutil.rmtree(reference, ignore_errors=True)
        shutil.copytree(target, reference)
        references[stage]["path"] = reference
        if stage == "label":
            shutil.rmtree(work / "labels-ref", ignore_errors=True)
            shutil.copytree(target, work / "labels-ref")
        r = references[stage]
        print(f"reference {stage}: {r['seconds']:.1f} s, {r['parts']} parts in {r['window']}", flush=True)

    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "pool": args.pool,
        "queries": args.queries,
        "epochs": args.epochs,
        "stages": args.stages,
        "counts_as": COUNTS_AS,
        "kills_wanted": args.kills,
        "finished": False,
        "reference": {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in references.items()},
        "trials": [],
    }
    trials, limit = result["trials"], args.max_attempts or 3 * args.kills
    # round robin over the stages, so that a run stopped early has covered each of them alike
    while True:
        due = [
            s
            for s in args.stages
            if sum(t["mid_output"] for t in trials if t["stage"] == s) < args.kills
            and sum(t["stage"] == s for t in trials) < limit
        ]
        if not due:
            break
        for stage in due:
            t = trial(stage, cmds[stage], work / "out" / stage, references[stage], rng)
            trials.append(t)
            print(
                f"{stage:<16} #{sum(x['stage'] == stage for x in trials):<3} kill at {t['kill_after_s']:5.1f} s "
                f"({t['parts_at_kill']} of {t['parts_total']} parts, mid-output {t['mid_output']}): resumed "
                f"{t['resumed']} {t['resume_problems'][:1]}, identical {t['identical']} {t['problems'][:1]}",
                flush=True,
            )
            write(result, args.results, args.name)
    result["finished"] = True
    page = write(result, args.results, args.name)
    print(page.split("\n", 1)[0])
    counted = [t for t in trials if t["mid_output"]]
    enough = all(sum(t["mid_output"] for t in trials if t["stage"] == s) >= args.kills for s in args.stages)
    return 0 if enough and all(passed(t) for t in counted) else 1


def write(result: dict, directory: Path, name: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    page = markdown(result)
    (directory / f"{name}.md").write_text(page, encoding="utf-8")
    return page


def stop(signum, frame) -> None:
    """SIGTERM: kill the command under test, if one runs, and end (the record holds the finished trials)."""
    if RUNNING:
        RUNNING[-1].kill()
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
