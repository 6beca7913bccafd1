"""Why LESS ranks the unsafe pairs of the toxicity task worse than plain gradient cosine: Adam's momentum.

LESS scores a pool sample by the Adam update its gradient would cause, (b1 m + (1 - b1) g) / sqrt(b2 v +
(1 - b2) g^2 + eps), with the fine-tuning run's moments m, v (`influcoder.labels.adam`). The first term is the
same for every sample. On a seeded subset of a toxicity replicate's pool (every unsafe pair plus --others
random other pairs) and its queries, this measures with the replicate's fine-tuned adapter, on exact
(unprojected) LoRA gradients:

- the AUPRC of the mean-over-queries cosine, plain gradients against Adam updates, in all and per kind of
  LoRA block (A, B), with each kind's share of the squared norm;
- the cosine of each sample's Adam update with the shared part b1 m / sqrt(b2 v + eps) (median, quartiles).

    python benchmarks/less_momentum.py --run runs/tox/het-seed0 --out benchmarks/results/less_momentum

Writes OUT.json and OUT.md. The subset's base rate is far above the pool's (15 of 100 against 15 of 2,045), so
its AUPRCs compare the two features with each other, not with the pool-level figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from influcoder.data.formats import load_file
from influcoder.labels.adam import AdamPreconditioner
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.lora import lora_parameters
from influcoder.labels.settings import LabelSettings
from influcoder.metrics import auprc


def mean_cosine(pool: np.ndarray, queries: np.ndarray) -> np.ndarray:
    pool = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return (pool @ queries.T).mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a toxicity replicate directory (het-seed0, ...)")
    parser.add_argument(
        "--adapter",
        type=Path,
        help="adapter with its optimizer.pt (default: the run's fine-tuned one); e.g. a LESS "
        "warm-up checkpoint, RUN/less-warmup/snapshots/step-N",
    )
    parser.add_argument("--others", type=int, default=85, help="non-unsafe pool pairs drawn beside the unsafe ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "less_momentum")
    args = parser.parse_args()
    started = time.perf_counter()

    pool, queries = load_file(args.run / "task" / "pool.jsonl"), load_file(args.run / "task" / "queries.jsonl")
    kinds = np.array([s.meta.get("type") for s in pool])
    others = np.where(kinds != "unsafe")[0]
    chosen = np.concatenate(
        [np.where(kinds == "unsafe")[0], np.random.default_rng(args.seed).choice(others, args.others, replace=False)]
    )
    subset, positive = [pool[i] for i in chosen], kinds[chosen] == "unsafe"

    adapter = args.adapter or args.run / "adapter"
    settings = LabelSettings(max_length=args.max_length, adapter=str(adapter), projector="identity", device="cpu")
    featurizer = GradientFeaturizer(settings)
    params = lora_parameters(featurizer.model)
    adam = AdamPreconditioner.from_file(adapter / "optimizer.pt", list(params))
    plain, query = featurizer.featurize(subset), featurizer.featurize(queries)
    featurizer.preconditioner = adam
    update = featurizer.featurize(subset)

    ends = np.cumsum([0] + [p.numel() for p in params.values()])
    columns = {
        kind: np.concatenate([np.arange(ends[i], ends[i + 1]) for i, name in enumerate(params) if kind in name])
        for kind in ("lora_A", "lora_B")
    }
    beta1, beta2 = adam.beta1, adam.beta2
    shared = np.concatenate(
        [(beta1 * m / torch.sqrt(beta2 * v + adam.eps)).reshape(-1).numpy() for m, v in adam.moments.values()]
    )
    alignment = update @ shared / np.linalg.norm(update, axis=1) / np.linalg.norm(shared)
    report = {
        "benchmark": "less_momentum",
        "command": "python benchmarks/less_momentum.py " + shlex.join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "subset": {"n": len(subset), "unsafe": int(positive.sum()), "chance": float(positive.mean())},
        "auprc": {
            "all": {
                "plain": auprc(mean_cosine(plain, query), positive),
                "adam": auprc(mean_cosine(update, query), positive),
            },
            **{
                kind: {
                    "plain": auprc(mean_cosine(plain[:, c], query[:, c]), positive),
                    "adam": auprc(mean_cosine(update[:, c], query[:, c]), positive),
                    "share_of_update_norm2": float((update[:, c] ** 2).sum() / (update**2).sum()),
                    "share_of_gradient_norm2": float((plain[:, c] ** 2).sum() / (plain**2).sum()),
                }
                for kind, c in columns.items()
            },
        },
        "cosine_update_vs_shared_momentum": {
            "median": float(np.median(alignment)),
            "quartiles": [float(np.quantile(alignment, 0.25)), float(np.quantile(alignment, 0.75))],
        },
        "seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    a, c = report["auprc"], report["cosine_update_vs_shared_momentum"]
    lines = [
        "# LESS's Adam update against the plain gradient (toxicity replicate subset)",
        "",
        f"Machine: {report['machine']['platform']}. Command: `{report['command']}` ({report['seconds']:.0f} s).",
        f"Subset: {report['subset']['unsafe']} unsafe of {report['subset']['n']} pool pairs (chance AUPRC "
        f"{report['subset']['chance']:.2f}); exact LoRA gradients of the adapter `{adapter}` with its Adam state.",
        "",
        "| features | AUPRC plain gradient | AUPRC Adam update | share of update norm^2 | share of gradient norm^2 |",
        "|---|---|---|---|---|",
        f"| all LoRA blocks | {a['all']['plain']:.3f} | {a['all']['adam']:.3f} | 1 | 1 |",
    ]
    for kind in columns:
        k = a[kind]
        lines.append(
            f"| {kind} only | {k['plain']:.3f} | {k['adam']:.3f} | {k['share_of_update_norm2']:.3f} | "
            f"{k['share_of_gradient_norm2']:.3f} |"
        )
    lines += [
        "",
        f"Cosine of each sample's Adam update with the shared b1 m / sqrt(b2 v + eps): median {c['median']:.3f} "
        f"(quartiles {c['quartiles'][0]:.3f}, {c['quartiles'][1]:.3f}).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
