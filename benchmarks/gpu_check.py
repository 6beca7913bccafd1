"""One command for the day a GPU is lent: correctness and speed of the CUDA path, into one JSON.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json   # <= 8 minutes on one H100

On a CUDA machine it measures, each step recorded even when another fails:
1. batched per-example LoRA gradients against the one-at-a-time loop on `cuda`, in float32 and bfloat16
   (real SmolLM2-135M, 12 `bbh` items, shipped with the package: no registry needed for the data);
2. labelling throughput (samples/s, peak GPU memory) at `--batch-tokens` 512, 4,096 and 16,384;
3. encoder throughput (encodes/s, MiniLM-L6);
4. `demo --device cuda` end to end at a small size (its report.json is embedded).

Where `torch.cuda.is_available()` is false it writes ``{"skipped": reason}`` and exits 0, so the same command
runs unchanged everywhere; that path is tested (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

BATCH_TOKENS = (512, 4096, 16384)
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}
"""Largest relative error (per LoRA block, norm-wise) of batched vs loop gradients; bf16 keeps 8 mantissa bits."""


def _step(results: dict, name: str, run: Callable[[], dict]) -> None:
    """Run one check, record its result or its error, never stop the others."""
    started = time.perf_counter()
    try:
        results[name] = {**run(), "seconds": round(time.perf_counter() - started, 2)}
    except Exception as exc:  # noqa: BLE001 - a failed step is a result to report, not a crash
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[gpu_check] {name}: {json.dumps(results[name])[:300]}", file=sys.stderr, flush=True)


def _texts(n: int, seed: int = 0):
    from influcoder.data.loading import load_samples

    return load_samples("bbh", limit=n, seed=seed)


def check_equality(dtype: str, device: str = "cuda", n: int = 12) -> dict:
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.gradients import BatchedLoraGradients, loop_gradients
    from influcoder.labels.settings import LabelSettings

    featurizer = GradientFeaturizer(LabelSettings(device=device, max_length=128, projector="identity"))
    model = featurizer.model.to(getattr(torch, dtype))
    tokenized = featurizer.tokenize(_texts(n))
    pad = featurizer.gradients.pad_id
    batched = BatchedLoraGradients(model, pad)(tokenized)
    loop = loop_gradients(model, tokenized, pad)
    errors = {n: float((batched[n].float() - loop[n].float()).norm() / loop[n].float().norm().clamp(min=1e-12))
              for n in loop}  # fmt: skip
    worst = max(errors.values())
    return {"dtype": dtype, "samples": len(tokenized), "blocks": len(errors), "max_relative_error": worst,
            "tolerance": TOLERANCE[dtype], "ok": worst <= TOLERANCE[dtype]}  # fmt: skip


def check_label_speed(batch_tokens: int, n: int) -> dict:
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    featurizer = GradientFeaturizer(LabelSettings(device="cuda", batch_tokens=batch_tokens, batch_size=256))
    tokenized = featurizer.tokenize(_texts(n, seed=1))
    featurizer.featurize_tokenized(tokenized[:8])  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    featurizer.featurize_tokenized(tokenized)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"batch_tokens": batch_tokens, "samples": n, "samples_per_s": n / seconds,
            "tokens": sum(len(t.input_ids) for t in tokenized),
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9}  # fmt: skip


def check_encoder_speed(n: int) -> dict:
    from influcoder.encoder.model import InfluenceEncoder

    encoder = InfluenceEncoder.from_backbone(device="cuda")
    samples = _texts(n, seed=2)
    encoder.encode(samples[:64], batch_size=64)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    encoder.encode(samples, batch_size=128)
    torch.cuda.synchronize()
    return {"samples": n, "encodes_per_s": n / (time.perf_counter() - started)}


def check_demo(work: Path) -> dict:
    from influcoder.experiments.demo import run_demo

    out = work / "demo"
    report = run_demo(out, pool_size=64, query_size=24, epochs=1, device="cuda", progress=False)
    return {"exit": 0, "report": report.record}


def run(out: Path, label_samples: int = 512, encode_samples: int = 4096) -> dict:
    results: dict = {"python": platform.python_version(), "torch": torch.__version__}
    if not torch.cuda.is_available():
        results["skipped"] = "torch.cuda.is_available() is false: no CUDA device here"
    else:
        results["device"] = torch.cuda.get_device_name(0)
        for dtype in ("float32", "bfloat16"):
            _step(results, f"equality_{dtype}", lambda d=dtype: check_equality(d))
        for tokens in BATCH_TOKENS:
            _step(results, f"labels_batch_tokens_{tokens}", lambda t=tokens: check_label_speed(t, label_samples))
        _step(results, "encoder", lambda: check_encoder_speed(encode_samples))
        with tempfile.TemporaryDirectory() as work:
            _step(results, "demo_cuda", lambda: check_demo(Path(work)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--label-samples", type=int, default=512, help="samples per labelling speed run")
    parser.add_argument("--encode-samples", type=int, default=4096, help="samples for the encoder speed run")
    args = parser.parse_args(argv)
    results = run(args.out, args.label_samples, args.encode_samples)
    print(f"wrote {args.out}" + (f" ({results['skipped']})" if "skipped" in results else ""))
    failed = [k for k, v in results.items() if isinstance(v, dict) and ("error" in v or v.get("ok") is False)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
