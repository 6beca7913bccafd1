"""Encoder scoring speed per backend, with the fidelity each keeps, against the gradient labels' speed.

For a distilled encoder and the labels it came from, on the held-out split its distill run wrote:
- encodes per second of the pool + query texts, median of `--repeats` passes, for
  `legacy` (the encode loop before length bucketing by token count: character-length order, per-batch
  tokenization, no_grad), `torch` (today's float path) and `int8` (dynamic int8 linear layers);
- per-anchor Spearman of each backend's predicted influence against the labels, and its ratio to float's;
- the gradient labels' samples per second on the same texts (same decoder and settings as the labels), so the
  encoder/gradient speed ratio comes from one run on one machine.

    python benchmarks/encoder_speed.py --encoder runs/rank/experiment/enc-random-s0 --labels runs/rank/labels

writes benchmarks/results/encoder_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def legacy_encode(encoder, items, batch_size: int = 32) -> np.ndarray:
    """The encode loop as it was before token-count bucketing (kept here only as the baseline)."""
    texts = [encoder.text_of(x) for x in items]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            out[index] = encoder(**encoder.tokenize([items[i] for i in index])).float().cpu().numpy()
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", type=int, default=600, help="labelled texts timed (pool then queries)")
    parser.add_argument("--gradient-samples", type=int, default=48)
    parser.add_argument("--name", default="encoder_speed")
    args = parser.parse_args()

    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.encoder.run_record import DistillRun
    from influcoder.evaluation.evaluate import evaluation_data
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.labels_dir import LabelsDir
    from influcoder.labels.settings import LabelSettings
    from influcoder.metrics import per_anchor_spearman

    torch.set_num_threads(torch.get_num_threads())
    split = DistillRun(args.encoder).eval_split_path
    data = evaluation_data(args.labels, split if split.exists() else None)
    pool, queries = data.eval_samples()
    truth = data.eval_truth()
    held_out = [*pool, *queries]
    texts = (data.pool + data.queries)[: args.texts]
    rows = {}
    for backend in ("legacy", "torch", "int8"):
        encoder = InfluenceEncoder.from_pretrained(
            args.encoder, device="cpu", backend="int8" if backend == "int8" else "torch"
        )
        encode = (
            (lambda e=encoder: legacy_encode(e, texts)) if backend == "legacy" else (lambda e=encoder: e.encode(texts))
        )
        encode()  # warm-up
        seconds, _ = timed(encode, args.repeats)
        embeddings = legacy_encode(encoder, held_out) if backend == "legacy" else encoder.encode(held_out)
        p, q = embeddings[: len(pool)], embeddings[len(pool) :]
        rho = float(np.nanmean(per_anchor_spearman(p @ q.T, truth)))
        rows[backend] = {"seconds": seconds, "encodes_per_s": len(texts) / seconds, "per_anchor_rho": rho}
        print(f"{backend}: {len(texts) / seconds:.1f} encodes/s, per-anchor rho {rho:.3f}", flush=True)
    for row in rows.values():
        row["rho_vs_float"] = row["per_anchor_rho"] / rows["torch"]["per_anchor_rho"]
        row["speed_vs_legacy"] = row["encodes_per_s"] / rows["legacy"]["encodes_per_s"]

    recorded = LabelsDir(args.labels).record().settings
    featurizer = GradientFeaturizer(LabelSettings(**{**recorded, "device": "cpu"}))
    tokenized = featurizer.tokenize(texts[: args.gradient_samples])
    featurizer.featurize_tokenized(tokenized[:4])
    gradient_s, _ = timed(lambda: featurizer.featurize_tokenized(tokenized), 1)
    gradient_rate = len(tokenized) / gradient_s
    for row in rows.values():
        row["vs_gradients"] = row["encodes_per_s"] / gradient_rate
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "encoder": str(args.encoder),
        "labels": str(args.labels),
        "n_texts": len(texts),
        "gradient_samples_per_s": gradient_rate,
        "gradient_samples": len(tokenized),
        "backends": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# Encoder scoring speed per backend ({len(texts)} texts timed, {result['machine']})",
        "",
        f"command: `{result['command']}`",
        "",
        "| backend | encodes/s | x legacy | x gradient labels | per-anchor rho | rho / float |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['encodes_per_s']:.1f} | {r['speed_vs_legacy']:.2f} | {r['vs_gradients']:.1f} | "
            f"{r['per_anchor_rho']:.3f} | {r['rho_vs_float']:.3f} |"
        )
    lines += [
        "",
        f"rho: per-anchor Spearman against the labels on the encoder's held-out split ({len(pool)} pool x "
        f"{len(queries)} queries; for an encoder distilled with the `random` protocol, as enc-random-s0 is, "
        "held-out samples and queries of tasks it trained on: a seen-task figure).",
        f"Gradient labels on the same machine: {gradient_rate:.2f} samples/s ({len(tokenized)} texts).",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
