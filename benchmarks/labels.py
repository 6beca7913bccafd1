"""Benchmark of step 1 (labels): per-example LoRA gradients of SmolLM2-135M-Instruct on CPU.

Compares, on the same N samples of the `evals` source at max length L:
  * batched  - influcoder's path: one forward/backward per padded batch, per-example gradients from hooks,
               CountSketch to the projection dim;
  * loop     - the reference: one example at a time, `.backward()`, then the same CountSketch;
  * hooks    - the batched path with peft's own LoRA layers, read through module hooks (`fused=False`: what
               `batched` was before the fused LoRA layers of `labels/fused_lora.py`);
  * plain    - a batched forward+backward of the summed loss with no per-example work, through peft's
               LoRA layers (the floor of the hooked path).
and reports samples/s, GFLOP per sample (torch.utils.flop_counter.FlopCounterMode, eager attention), achieved
GFLOP/s, the ceiling implied by this machine's measured fp32 matmul GFLOP/s, peak RSS per mode (each mode runs
in its own process), and bytes stored per sample.

    python benchmarks/labels.py --n 64 --max-length 256 --repeats 3

writes benchmarks/results/labels.json and benchmarks/results/labels.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times) / 1e9


def setup(args):
    from influcoder.data.loading import load_samples
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    settings = LabelSettings(
        max_length=args.max_length,
        proj_dim=args.proj_dim,
        batch_size=args.batch_size,
        batch_tokens=args.batch_tokens,
        max_memory=args.max_memory,
        attention=args.attention,
    )
    featurizer = GradientFeaturizer(settings)
    samples = load_samples("evals", limit=args.n, seed=args.seed)
    return featurizer, featurizer.tokenize(samples)


def run_mode(args) -> dict:
    """One mode in this process: warm-up batch, then time the whole set `repeats` times; count FLOPs once."""
    from torch.utils.flop_counter import FlopCounterMode

    from influcoder.data.formatting import collate_left_padded
    from influcoder.labels.featurizer import make_batches
    from influcoder.labels.gradients import BatchedLoraGradients, forward_response_loss, loop_gradients

    featurizer, tokenized = setup(args)
    pad = featurizer.gradients.pad_id
    if args.mode == "hooks":
        featurizer.gradients = BatchedLoraGradients(featurizer.model, pad, fused=False)
    batches = make_batches([len(t.input_ids) for t in tokenized], args.batch_size, args.batch_tokens)

    def batched(items):
        return featurizer.featurize_tokenized(items)

    def loop(items):
        for t in items:
            blocks = loop_gradients(featurizer.model, [t], pad)
            with torch.no_grad():
                featurizer.projector.project(blocks)

    def plain(items):
        for b in make_batches([len(t.input_ids) for t in items], args.batch_size, args.batch_tokens):
            loss = forward_response_loss(featurizer.model, collate_left_padded([items[i] for i in b], pad)).sum()
            loss.backward()
        for p in featurizer.model.parameters():
            p.grad = None

    fn = {"batched": batched, "hooks": batched, "loop": loop, "plain": plain}[args.mode]
    fn([tokenized[i] for i in batches[0]])  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fn(tokenized)
        times.append(time.perf_counter() - t)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the FLOP meter's own use
    flop_items = [tokenized[i] for i in batches[len(batches) // 2]]
    with FlopCounterMode(display=False) as counter:
        fn(flop_items)
    gflop_per_sample = counter.get_total_flops() / len(flop_items) / 1e9
    seconds = statistics.median(times)
    result = {
        "mode": args.mode,
        "label": args.label or args.mode,
        "batch_tokens": featurizer.batch_tokens if args.mode in ("batched", "hooks") else args.batch_tokens,
        "max_memory_gb": args.max_memory,
        "attention": args.attention,
        "samples_per_s": len(tokenized) / seconds,
        "seconds_median": seconds,
        "seconds_all": times,
        "gflop_per_sample": gflop_per_sample,
        "achieved_gflops": gflop_per_sample * len(tokenized) / seconds,
        "mean_tokens": sum(len(t.input_ids) for t in tokenized) / len(tokenized),
        "mean_response_tokens": sum(t.n_response for t in tokenized) / len(tokenized),
        "peak_rss_mb": peak_rss_mb,
    }
    if args.mode == "batched":
        from influcoder.core.store import FeatureStore

        head = tokenized[: args.shard_size]
        features = featurizer.featurize_tokenized(head)
        sizes = {}
        for dtype in ("float32", "float16"):
            with tempfile.TemporaryDirectory() as tmp:
                store = FeatureStore.create_or_resume(
                    tmp, {}, [t.id for t in head], features.shape[1], len(head), dtype
                )
                store.write_shard(0, features)
                sizes[dtype] = store.bytes_per_sample()
        result["bytes_per_sample"] = sizes
        result["lora_in_dim"] = featurizer.in_dim
    return result


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `setup` reads: which samples, and the labeller's settings."""
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--proj-dim", type=int, default=32768)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(parser)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["batched", "loop", "plain"])
    parser.add_argument("--max-memory", type=float, default=None, help="GB budget of the batched mode")
    parser.add_argument(
        "--sweep-batch-tokens", nargs="*", type=int, default=[], help="also run batched at these --batch-tokens"
    )
    parser.add_argument("--sweep-max-memory", nargs="*", type=float, default=[], help="also run batched at these GB")
    parser.add_argument("--attention", choices=["eager", "sdpa"], default="eager", help="the decoder's attention")
    parser.add_argument(
        "--sweep-sdpa", action="store_true", help="also run every batched sweep point with sdpa attention"
    )
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "labels"))
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    peak = matmul_gflops()
    rows = []
    runs = [(mode, mode, []) for mode in args.modes]
    runs += [(f"batched@{t} tokens", "batched", ["--batch-tokens", str(t)]) for t in args.sweep_batch_tokens]
    runs += [(f"batched@{gb:g} GB", "batched", ["--max-memory", str(gb)]) for gb in args.sweep_max_memory]
    if args.sweep_sdpa:
        runs += [
            (f"{label} sdpa", mode, [*extra, "--attention", "sdpa"]) for label, mode, extra in runs if mode == "batched"
        ]
    for label, mode, extra in runs:  # later flags win over the same flags in sys.argv
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode, "--label", label, *extra]
        print(f"[bench] {label} ...", file=sys.stderr, flush=True)
        output = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    by_mode = {r["label"]: r for r in rows}
    gflop = by_mode.get("batched", rows[0])["gflop_per_sample"]
    for r in rows:  # FlopCounterMode does not see SDPA's attention on CPU: count those rows' work as eager's
        if r.get("attention") == "sdpa" and "batched" in by_mode:
            r["gflop_per_sample"] = gflop
            r["achieved_gflops"] = gflop * r["samples_per_s"]
    report = {
        "benchmark": "labels",
        "command": "python benchmarks/labels.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "matmul_gflops_fp32": peak,
        "ceiling_samples_per_s": peak / gflop,
        "n": args.n,
        "max_length": args.max_length,
        "proj_dim": args.proj_dim,
        "repeats": args.repeats,
        "modes": rows,
    }
    if "batched" in by_mode:
        report["batched_fraction_of_ceiling"] = by_mode["batched"]["samples_per_s"] / report["ceiling_samples_per_s"]
        if "loop" in by_mode:
            report["batched_over_loop"] = by_mode["batched"]["samples_per_s"] / by_mode["loop"]["samples_per_s"]
        if "hooks" in by_mode:
            report["batched_over_hooks"] = by_mode["batched"]["samples_per_s"] / by_mode["hooks"]["samples_per_s"]
        if "plain" in by_mode:
            report["batched_over_plain"] = by_mode["batched"]["samples_per_s"] / by_mode["plain"]["samples_per_s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"# labels benchmark ({args.n} `evals` samples, max length {args.max_length}, CountSketch {args.proj_dim})",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['torch_threads']} torch threads, torch "
        f"{torch.__version__}; fp32 matmul {peak:.0f} GFLOP/s, so the ceiling at {gflop:.1f} GFLOP/sample is "
        f"{report['ceiling_samples_per_s']:.2f} samples/s.",
        f"Command: `{report['command']}` (median of {args.repeats} timed pass(es) after a warm-up batch).",
        "",
        "| mode | batch tokens | samples/s | GFLOP/sample | achieved GFLOP/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('label', r['mode'])} | {r.get('batch_tokens', '-')} | {r['samples_per_s']:.3f} | "
            f"{r['gflop_per_sample']:.1f} | {r['achieved_gflops']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    if "batched" in by_mode:
        b = by_mode["batched"]
        lines += [
            "",
            f"Batched path: {report['batched_fraction_of_ceiling']:.2f} of the ceiling"
            + (f", {report['batched_over_loop']:.2f}x the loop" if "loop" in by_mode else "")
            + (f", {report['batched_over_hooks']:.2f}x the hooked peft layers" if "hooks" in by_mode else "")
            + (f", {report['batched_over_plain']:.2f}x plain forward+backward" if "plain" in by_mode else "")
            + f". Stored bytes/sample: {b['bytes_per_sample']}. LoRA gradient dim {b['lora_in_dim']:,}.",
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
