"""A real peer: bergson (EleutherAI) against `influcoder label` on the same texts, tokens, decoder and adapter.

Both tools differentiate the response-only loss of the same saved LoRA adapter: this script writes one fresh
seeded adapter (`influcoder label` draws it from --seed; bergson would draw a new random one per process) and
hands bergson the exact token ids and masked labels influcoder uses, as a pre-tokenized dataset, so the only
differences left are the tools' own numerics. Measured, each as a whole command in its own process (model load
included, as a user runs it):

- build throughput (samples/s) and bytes stored per sample: `influcoder label` (CountSketch 32,768, the
  paper's setting) and `bergson build` (unprojected, and with its per-module projection);
- agreement: Spearman per query between each tool's gradient cosines and influcoder's *exact* (unprojected)
  cosines. Unprojected bergson checks our gradients from outside (expect ~1); the projected rows compare two
  compressions against the same truth.

bergson needs its own environment (its pins pull CUDA torch): install torch==2.13.0 first, then
`pip install --no-deps bergson==2.5.1` and its pure-python dependencies, then `pip install -e .` of this
repository, and pass that environment's python:

    python benchmarks/peers.py --bergson-python runs/bvenv/bin/python --n-pool 64 --n-queries 16 --out runs/peers
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from influcoder.data.formats import write_samples
from influcoder.data.loading import load_samples
from influcoder.data.models import resolve_model_dir
from influcoder.labels.influence import normalize_rows
from influcoder.labels.labelling import load_labels
from influcoder.labels.labels_dir import LabelsDir
from influcoder.metrics import spearman_report


def timed(command: list[str], log: Path) -> float:
    """Seconds a whole command took; stops the benchmark if it fails."""
    print(f"$ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def save_adapter(model_name: str, seed: int, out: Path) -> Path:
    """influcoder's fresh seeded adapter, saved so that both tools load the very same weights."""
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    featurizer = GradientFeaturizer(LabelSettings(model=model_name, seed=seed, projector="identity", device="cpu"))
    featurizer.model.peft_config["default"].base_model_name_or_path = str(resolve_model_dir(model_name))
    featurizer.model.save_pretrained(out)
    return out


def pretokenized(samples, model_name: str, max_length: int, out: Path) -> Path:
    """The token ids and masked labels influcoder computes on, as a saved HF dataset bergson reads as is."""
    from datasets import Dataset

    from influcoder.data.formatting import SampleFormatter
    from influcoder.data.models import load_decoder

    _, tokenizer = load_decoder(model_name)
    tokenized = SampleFormatter(tokenizer, max_length, None).encode_all(samples)
    Dataset.from_dict(
        {"input_ids": [list(t.input_ids) for t in tokenized], "labels": [t.labels for t in tokenized]}
    ).save_to_disk(str(out))
    return out


def bergson_cosines(run: Path, bergson_python: str, n_pool: int) -> tuple[np.ndarray, int]:
    """(pool x queries cosines, bytes stored per sample) of a bergson index, read with bergson's own loader."""
    script = (
        "import sys, numpy as np, bergson; g = np.asarray(bergson.load_gradients(sys.argv[1]), dtype=np.float32); "
        "np.save(sys.argv[2], g)"
    )
    subprocess.run([bergson_python, "-c", script, str(run), str(run / "dense.npy")], check=True)
    grads = np.load(run / "dense.npy")
    unit = normalize_rows(grads)
    cosines = unit[:n_pool].astype(np.float64) @ unit[n_pool:].astype(np.float64).T
    return cosines, int(grads.shape[1] * grads.dtype.itemsize)


def stored_bytes(labels_dir: Path) -> int:
    return int(LabelsDir(labels_dir).record().bytes_per_sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bergson-python", required=True, help="python of an environment with bergson installed")
    parser.add_argument("--pool", default="evals")
    parser.add_argument("--queries", default="bbh")
    parser.add_argument("--n-pool", type=int, default=64)
    parser.add_argument("--n-queries", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projection-dim", type=int, default=16, help="bergson's per-module projection (k x k)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pool = load_samples(args.pool, limit=args.n_pool, seed=args.seed)
    queries = load_samples(args.queries, limit=args.n_queries, seed=args.seed)
    write_samples(pool, out / "pool.jsonl")
    write_samples(queries, out / "queries.jsonl")
    adapter = save_adapter(args.model, args.seed, out / "adapter")
    dataset = pretokenized([*pool, *queries], args.model, args.max_length, out / "tokens")
    n = len(pool) + len(queries)

    ours = [sys.executable, "-m", "influcoder.cli.main", "label", "--pool", str(out / "pool.jsonl")]
    ours += ["--queries", str(out / "queries.jsonl"), "--adapter", str(adapter), "--max-length", str(args.max_length)]
    ours += ["--device", "cpu", "--quiet", "--overwrite"]
    exact_seconds = timed([*ours, "--projector", "identity", "--out", str(out / "ours-exact")], out / "ours-exact.log")
    sketch_seconds = timed([*ours, "--out", str(out / "ours-countsketch")], out / "ours-countsketch.log")
    exact, _, _, _ = load_labels(out / "ours-exact")
    sketch, _, _, _ = load_labels(out / "ours-countsketch")
    truth = np.asarray(exact.scores)

    bergson = [args.bergson_python, "-m", "bergson", "build"]
    common = ["--model", str(adapter), "--tokenizer", str(resolve_model_dir(args.model)), "--dataset", str(dataset)]
    common += ["--precision", "fp32", "--loss_reduction", "mean"]
    common += ["--overwrite", "True"]
    rows = {}
    for name, projection in (
        ("bergson, unprojected", 0),
        (f"bergson, projection {args.projection_dim}", args.projection_dim),
    ):
        run = out / f"bergson-{projection}"
        seconds = timed(
            [*bergson, str(run), *common, "--projection_dim", str(projection)], out / f"bergson-{projection}.log"
        )
        cosines, stored = bergson_cosines(run, args.bergson_python, len(pool))
        rows[name] = {
            "seconds": seconds,
            "bytes_per_sample": stored,
            "vs_exact": spearman_report(cosines, truth).to_dict(),
        }
        rows[name]["max_abs_cosine_difference"] = float(np.abs(cosines - truth).max())
    rows["influcoder label, exact (identity)"] = {
        "seconds": exact_seconds,
        "bytes_per_sample": stored_bytes(out / "ours-exact"),
        "vs_exact": spearman_report(truth, truth).to_dict(),
        "max_abs_cosine_difference": 0.0,
    }
    rows["influcoder label, CountSketch 32768"] = {
        "seconds": sketch_seconds,
        "bytes_per_sample": stored_bytes(out / "ours-countsketch"),
        "vs_exact": spearman_report(np.asarray(sketch.scores), truth).to_dict(),
        "max_abs_cosine_difference": float(np.abs(np.asarray(sketch.scores) - truth).max()),
    }
    for row in rows.values():
        row["samples_per_second"] = n / row["seconds"]
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, Python {platform.python_version()}"
    command = shlex.join(["python", "benchmarks/peers.py", *sys.argv[1:]])
    result = {"command": command, "machine": machine, "n_pool": len(pool), "n_queries": len(queries), "rows": rows}
    (out / "peers.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"{len(pool)} pool x {len(queries)} queries ({args.pool} x {args.queries}), {args.model}, max length "
        f"{args.max_length}, one saved LoRA adapter (r=8, seed {args.seed}); machine: {machine}",
        "",
        "| tool | whole command s | samples/s | bytes/sample | per-anchor rho vs exact | max abs cosine diff |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['seconds']:.1f} | {row['samples_per_second']:.2f} | {row['bytes_per_sample']:,} | "
            f"{row['vs_exact']['per_anchor_mean']:.4f} | {row['max_abs_cosine_difference']:.2e} |"
        )
    (out / "peers.md").write_text("\n".join(lines) + f"\n\ncommand: `{command}`\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
