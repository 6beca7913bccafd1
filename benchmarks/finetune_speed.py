"""Fine-tuning speed with fused LoRA layers (`labels/fused_lora.fused_training`) against peft's own layers.

Each repeat fine-tunes a fresh rank-8 adapter of SmolLM2-135M-Instruct on the same --n `evals` samples
(`influcoder.labels.finetune.finetune`, batches of 8, max length 192, one epoch: the toxicity task's
settings), once fused and once through peft's layers, alternating so both see the same machine state; the
decoder is loaded outside the timed call. Reports the median seconds per optimizer step of each and their
ratio, and the largest difference between the two runs' losses.

    python benchmarks/finetune_speed.py --n 64 --repeats 2

writes benchmarks/results/finetune-speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune-speed")
    args = parser.parse_args()

    from influcoder.data.loading import load_samples
    from influcoder.data.models import DEFAULT_DECODER, load_decoder
    from influcoder.labels.finetune import FinetuneSettings, finetune
    from influcoder.labels.lora import LoraSettings

    samples = load_samples("evals", limit=args.n, seed=0)
    settings = FinetuneSettings(batch_size=8, max_length=192, epochs=1)
    seconds: dict[str, list[float]] = {"fused": [], "peft": []}
    losses: dict[str, list[float]] = {}
    steps = 0
    for _ in range(args.repeats):
        for mode in ("fused", "peft"):
            model, tokenizer = load_decoder(DEFAULT_DECODER)
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                result = finetune(
                    samples,
                    out,
                    DEFAULT_DECODER,
                    LoraSettings(),
                    settings,
                    model=model,
                    tokenizer=tokenizer,
                    progress=False,
                    fused_layers=mode == "fused",
                )
                seconds[mode].append((time.perf_counter() - started) / result.steps)
            steps, losses[mode] = result.steps, result.losses
            print(f"{mode}: {seconds[mode][-1]:.2f} s per step", file=sys.stderr, flush=True)
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    report = {
        "benchmark": "finetune_speed",
        "command": "python benchmarks/finetune_speed.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "n": args.n,
        "steps": steps,
        "seconds_per_step": seconds,
        "median_seconds_per_step": median,
        "fused_speedup": median["peft"] / median["fused"],
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["fused"], losses["peft"])),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    table = "\n".join(
        [
            f"# fine-tune speed ({args.n} `evals` samples, {steps} steps of 8, max length 192, SmolLM2-135M, rank 8)",
            "",
            f"Machine: {report['machine']['platform']}, {report['machine']['torch_threads']} torch threads, torch "
            f"{torch.__version__}. Command: `{report['command']}` (median of {args.repeats}, alternating).",
            "",
            "| LoRA layers | s per step |",
            "|---|---|",
            f"| fused | {median['fused']:.2f} |",
            f"| peft | {median['peft']:.2f} |",
            "",
            f"Fused: {report['fused_speedup']:.2f}x; largest loss difference between the two runs "
            f"{report['max_loss_difference']:.1e}.",
        ]
    )
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
