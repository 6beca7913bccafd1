"""What scoring one pool sample costs, per input, in one process on the same texts: the labels' decoder as the
encoder (the default backbone of the subspace objective, float and int8), MiniLM-L6 (the text encoder), and
the exact projected LoRA gradient (what LESS-style scoring pays per pool sample, and what `attribute` pays
per query with a subspace encoder).

The rounds are interleaved (decoder, int8 decoder, MiniLM, gradients; again) so that a change in the machine's
load hits every input alike; the median round is reported, with the ratios between inputs from those medians.

    python benchmarks/scoring_cost.py --encoder runs/transfer/cmd-s0 --labels runs/transfer/labels \\
        --texts 64 --rounds 3 --out benchmarks/results/scoring_cost

Writes scoring_cost.json and scoring_cost.md into --out.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from influcoder.core.atomic import write_json_atomic, write_text_atomic


def inputs(encoder_dir: Path, labels_dir: Path, cuts: list[int]) -> dict:
    """Each input as a function of a list of samples; `cuts`: also the decoder cut after that many blocks
    (`distill --backbone-layers`), float and int8 (the cut encoder's head is the uncut one's: timing only)."""
    from influcoder.data.models import keep_blocks
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.labels_dir import LabelsDir
    from influcoder.labels.settings import LabelSettings

    decoder = InfluenceEncoder.from_pretrained(encoder_dir, device="cpu")
    quantized = InfluenceEncoder.from_pretrained(encoder_dir, device="cpu", backend="int8")
    text = InfluenceEncoder.from_backbone("minilm-l6", device="cpu", max_length=decoder.config.max_length)
    recorded = LabelsDir(labels_dir).record().settings
    featurizer = GradientFeaturizer(LabelSettings(**{**recorded, "device": "cpu"}))
    blocks = len(decoder.backbone.layers)
    runs = {
        f"decoder, {blocks} blocks (float32)" if cuts else "decoder (float32)": decoder,
        f"decoder, {blocks} blocks (int8)" if cuts else "decoder (int8)": quantized,
    }
    for cut in cuts:
        for backend in ("float32", "int8"):
            encoder = InfluenceEncoder.from_pretrained(encoder_dir, device="cpu")
            keep_blocks(encoder.backbone, cut)
            runs[f"decoder, {cut} blocks ({backend})"] = encoder.to_backend("int8") if backend == "int8" else encoder
    return {
        **{name: (lambda items, e=encoder: e.encode(items, show_progress_bar=False)) for name, encoder in runs.items()},
        "minilm-l6": lambda items: text.encode(items, show_progress_bar=False),
        "exact gradient": lambda items: featurizer.featurize(items),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, type=Path, help="a distilled encoder on the labels' decoder")
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--texts", type=int, default=64, help="pool samples timed (the labels' first)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, nargs="*", default=[], help="also the decoder cut after N blocks")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from influcoder.core.progress import disable_progress_bars
    from influcoder.labels.labels_dir import LabelsDir

    disable_progress_bars()
    items = LabelsDir.load(args.labels).pool[: args.texts]
    runs = inputs(args.encoder, args.labels, args.blocks)
    for run in runs.values():
        run(items[:4])  # warm-up: weights paged in, kernels chosen
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run(items)
            seconds[name].append(time.perf_counter() - started)
            print(f"round {round_ + 1}: {name} {seconds[name][-1]:.1f} s", flush=True)
    per_sample = {name: statistics.median(values) / len(items) for name, values in seconds.items()}
    gradient = per_sample["exact gradient"]  # what LESS-style scoring pays per pool sample
    record = {
        "command": shlex.join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "texts": len(items),
        "rounds": args.rounds,
        "seconds": seconds,
        "seconds_per_sample": per_sample,
        "gradient_over_input": {name: gradient / value for name, value in per_sample.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "scoring_cost.json", record)
    write_text_atomic(args.out / "scoring_cost.md", markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        f"# What scoring a pool sample costs ({record['texts']} pool samples, median of {record['rounds']} "
        f"interleaved rounds, {record['machine']})",
        "",
        f"command: `{record['command']}`",
        "",
        f"| {'input, decoder cut by block' if any('blocks' in n for n in record['seconds']) else 'input'} | "
        "seconds per sample | exact gradient / input |",
        "|---|---|---|",
    ]
    ratio = record["gradient_over_input"]
    lines += [f"| {name} | {value:.4f} | {ratio[name]:.1f} |" for name, value in record["seconds_per_sample"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
