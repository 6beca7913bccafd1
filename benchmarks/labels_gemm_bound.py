"""How close to the matmul ceiling can labelling get on this machine? Replay its matrix products alone.

The labels target (issue 16) asks for >= 0.85 of the fp32 matmul ceiling, the rate of one 2048^3 product.
A labelling pass is matrix products (the decoder's, the LM head's, attention's, the per-example LoRA
gradients) plus element-wise work. This benchmark records every matrix product one labelling pass issues
(`aten.mm`, `addmm`, `addmm_`, `bmm`, `baddbmm`, with their shapes and strides, under a TorchDispatchMode),
then times each distinct product alone on fresh inputs of the same layout (median of `--repeats`), and sums
them over the pass. Their FLOPs over their time is the best rate *any* labeller issuing these products could
reach if everything else in the pass took no time at all: an upper bound on the fraction of the ceiling,
measured rather than argued.

    python benchmarks/labels_gemm_bound.py --n 64 --max-length 256

writes benchmarks/results/labels-gemm-bound.{json,md}. Run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).parent))
from labels import RESULTS, add_setup_arguments, matmul_gflops, setup  # noqa: E402

aten = torch.ops.aten
PRODUCTS = {
    aten.mm.default,
    aten.addmm.default,
    aten.addmm_.default,
    aten.bmm.default,
    aten.baddbmm.default,
}


def layout(t: torch.Tensor) -> tuple:
    return tuple(t.shape), tuple(t.stride())


class RecordProducts(TorchDispatchMode):
    """Counts every matrix product by (op, input layouts, scalar arguments)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS:
            tensors = tuple(layout(a) if isinstance(a, torch.Tensor) else a for a in args)
            self.calls[(func, tensors, tuple(sorted(kwargs.items())))] += 1
        return func(*args, **kwargs)


def flops(func, tensors: tuple) -> int:
    """2 m k n (times the batch for bmm) from the operand shapes: the first two tensors of mm/bmm, the last two
    of addmm/baddbmm."""
    shapes = [t[0] for t in tensors if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], tuple)]
    a, b = shapes[-2], shapes[-1]
    if len(a) == 2:
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


def kind(shapes: list[tuple], rank: int, vocab: int, head_dim: int) -> str:
    """Which part of labelling issues a product, told by its operand shapes."""
    dims = {d for shape in shapes for d in shape}
    if vocab in dims:
        return "LM head (response positions)"
    if rank in dims:
        return "LoRA and per-example gradients (rank-r side)"
    if len(shapes[0]) == 3 and head_dim in dims:
        return "attention (scores and values)"
    return "decoder linear layers"


def materialise(spec) -> object:
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], tuple):
        shape, stride = spec
        extent = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
        storage = torch.randn(max(extent, 1))
        return storage.as_strided(shape, stride)
    return spec


def time_product(func, tensors: tuple, kwargs: tuple, repeats: int) -> float:
    """Median seconds of one call on fresh inputs of the recorded layout (in-place ops get a fresh output)."""
    times = []
    for _ in range(repeats + 1):  # the first call warms the allocator and the kernel's code paths
        args = [materialise(t) for t in tensors]
        start = time.perf_counter()
        func(*args, **dict(kwargs))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(parser)
    parser.add_argument("--max-memory", type=float, default=None)
    parser.add_argument("--attention", choices=["eager", "sdpa"], default="eager")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "labels-gemm-bound"))
    args = parser.parse_args()

    ceilings = [matmul_gflops(repeats=1) for _ in range(10)]  # the machine's speed drifts: sampled both ends
    featurizer, tokenized = setup(args)
    config = featurizer.model.config
    sizes = {
        "rank": featurizer.settings.rank,
        "vocab": config.vocab_size,
        "head_dim": getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
    }
    featurizer.featurize_tokenized(tokenized[: args.batch_size])  # warm-up
    passes = []
    for _ in range(2):
        start = time.perf_counter()
        featurizer.featurize_tokenized(tokenized)
        passes.append(time.perf_counter() - start)
    pass_seconds = statistics.median(passes)
    recorder = RecordProducts()
    with recorder:
        featurizer.featurize_tokenized(tokenized)
    del featurizer

    rows = []
    for (func, tensors, kwargs), count in recorder.calls.items():
        seconds = time_product(func, tensors, kwargs, args.repeats)
        operands = [t for t in tensors if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], tuple)]
        rows.append(
            {
                "op": str(func),
                "count": count,
                "flop": flops(func, tensors),
                "seconds": seconds,
                "kind": kind([shape for shape, _ in operands], **sizes),
                "shapes": [list(shape) for shape, _ in operands],
                "strides": [list(stride) for _, stride in operands],
            }
        )
    gemm_flop = sum(r["flop"] * r["count"] for r in rows)
    gemm_seconds = sum(r["seconds"] * r["count"] for r in rows)
    ceilings += [matmul_gflops(repeats=1) for _ in range(10)]
    peak = statistics.median(ceilings)
    by_op: dict[str, dict] = {}
    for r in rows:
        op = by_op.setdefault(r["kind"], {"calls": 0, "gflop": 0.0, "seconds": 0.0})
        op["calls"] += r["count"]
        op["gflop"] += r["flop"] * r["count"] / 1e9
        op["seconds"] += r["seconds"] * r["count"]
    report = {
        "benchmark": "labels-gemm-bound",
        "command": "python benchmarks/labels_gemm_bound.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "n": args.n,
        "max_length": args.max_length,
        "matmul_gflops_fp32": peak,
        "matmul_gflops_samples": ceilings,
        "pass_seconds": pass_seconds,
        "pass_seconds_all": passes,
        "gemm_gflop": gemm_flop / 1e9,
        "gemm_seconds_alone": gemm_seconds,
        "gemm_gflops_alone": gemm_flop / gemm_seconds / 1e9,
        "pass_fraction_of_ceiling": gemm_flop / pass_seconds / 1e9 / peak,
        "bound_fraction_of_ceiling": gemm_flop / gemm_seconds / 1e9 / peak,
        "gemm_share_of_pass": gemm_seconds / pass_seconds,
        "distinct_products": len(rows),
        "by_kind": by_op,
        "products": sorted(rows, key=lambda r: -r["seconds"] * r["count"]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"# Labels' matrix products alone ({args.n} `evals` samples, max length {args.max_length})",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['torch_threads']} torch threads, torch "
        f"{torch.__version__}; fp32 matmul ceiling {peak:.0f} GFLOP/s (one 2048^3 product, median of 10 before and "
        f"10 after: {min(ceilings):.0f}-{max(ceilings):.0f}).",
        f"Command: `{report['command']}`.",
        "",
        "| | seconds | GFLOP | GFLOP/s | fraction of ceiling |",
        "|---|---|---|---|---|",
        f"| labelling pass (median of 2) | {pass_seconds:.1f} | {gemm_flop / 1e9:.0f} (its products) | "
        f"{gemm_flop / pass_seconds / 1e9:.0f} | {report['pass_fraction_of_ceiling']:.2f} |",
        f"| its {sum(r['count'] for r in rows):,} products alone ({len(rows)} distinct) | {gemm_seconds:.1f} | "
        f"{gemm_flop / 1e9:.0f} | {report['gemm_gflops_alone']:.0f} | **{report['bound_fraction_of_ceiling']:.2f}** |",
        "",
        "| products of | calls | GFLOP | seconds alone | GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for name, op in sorted(by_op.items(), key=lambda kv: -kv[1]["seconds"]):
        rate = op["gflop"] / op["seconds"] if op["seconds"] else 0.0
        lines.append(f"| {name} | {op['calls']:,} | {op['gflop']:.1f} | {op['seconds']:.2f} | {rate:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
