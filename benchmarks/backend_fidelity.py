"""Does the int8 backend keep a decoder encoder's ranking? One `distill` run's held-out split scored twice.

`index --backend int8` quantises the encoder's linear layers (per output channel, activations per batch). On a
text encoder that kept rho (docs/results/scale.md); on the labels' decoder read as the encoder it was not
measured. This scores the run's held-out pool against its held-out queries as `evaluate` does (pool vectors
from the encoder, each query's exact gradient coordinates from the labels) with the float and the int8
encoder, and times both encodes in the same process.

    python benchmarks/backend_fidelity.py --encoder runs/transfer/b20-task-s0 --labels runs/transfer/labels \\
        --out benchmarks/results/backend_fidelity

Writes backend_fidelity.json and backend_fidelity.md into --out.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic, write_text_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, type=Path, help="a `distill` output directory")
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from scipy.stats import spearmanr

    from influcoder.core.progress import disable_progress_bars
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.encoder.run_record import DistillRun
    from influcoder.encoder.subspace import GradientSubspace
    from influcoder.evaluation.baselines.text import SubspaceDistilled
    from influcoder.evaluation.evaluate import evaluation_data
    from influcoder.metrics import per_anchor_spearman

    disable_progress_bars()
    data = evaluation_data(args.labels, DistillRun(args.encoder).eval_split_path)
    pool, queries = data.eval_samples()
    truth = data.eval_truth()
    subspace = GradientSubspace.load(DistillRun(args.encoder).best)
    rows, scores = {}, {}
    for backend in ("torch", "int8"):
        encoder = InfluenceEncoder.from_pretrained(args.encoder, device="cpu", backend=backend)
        scorer = SubspaceDistilled(encoder, subspace, args.labels)
        started = time.perf_counter()
        pool_vectors = encoder.encode_pool(pool, scorer.batch_size)
        seconds = time.perf_counter() - started
        scores[backend] = pool_vectors @ scorer.query_vectors(queries).T
        rows[backend] = {
            "per_anchor_mean": float(np.nanmean(per_anchor_spearman(scores[backend], truth))),
            "encode_seconds_per_sample": seconds / len(pool),
        }
        print(backend, rows[backend], flush=True)
    agreement = [spearmanr(scores["torch"][:, j], scores["int8"][:, j])[0] for j in range(len(queries))]
    record = {
        "command": shlex.join(["python", *sys.argv]),
        "encoder": str(args.encoder),
        "held_out": {"pool": len(pool), "queries": len(queries)},
        "backends": rows,
        "float_int8_rank_agreement_mean": float(np.mean(agreement)),
        "float_over_int8_time": rows["torch"]["encode_seconds_per_sample"] / rows["int8"]["encode_seconds_per_sample"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "backend_fidelity.json", record)
    write_text_atomic(args.out / "backend_fidelity.md", markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        f"command: `{record['command']}`",
        "",
        f"held out: {record['held_out']['pool']} pool x {record['held_out']['queries']} queries; float vs int8 "
        f"per-query rank agreement (Spearman): {record['float_int8_rank_agreement_mean']:.3f}",
        "",
        "| backend | per-anchor | encode s/sample |",
        "|---|---|---|",
    ]
    for name, row in record["backends"].items():
        lines.append(f"| {name} | {row['per_anchor_mean']:.3f} | {row['encode_seconds_per_sample']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
