"""`influcoder demo`: the pipeline on the embedded defaults, printing only what this run measured.

Today the demo runs step 1 (gradient labels of SmolLM2-135M on `evals` pool x `bbh` queries) and reports
its cost and the most influential pool samples per query; later stages extend it as they land.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .cli_pipeline import _print_top
from .data import load_samples
from .labels import LabelSettings, label


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    started = time.perf_counter()
    pool = load_samples("evals", limit=args.pool_size, seed=args.seed)
    queries = load_samples("bbh", limit=args.query_size, seed=args.seed)
    settings = LabelSettings(max_length=args.max_length, proj_dim=args.proj_dim, seed=args.seed)
    print(
        f"[demo] step 1: labelling {len(pool)} evals pool samples x {len(queries)} bbh queries "
        f"with {settings.model} -> {out / 'labels'}"
    )
    t0 = time.perf_counter()
    matrix = label(pool, queries, out / "labels", settings)
    label_seconds = time.perf_counter() - t0
    from .store import FeatureStore

    store = FeatureStore(out / "labels" / "pool")
    _print_top(matrix, pool, queries)
    n = len(pool) + len(queries)
    print("\n[demo] report (measured in this run)")
    print(f"  labelled samples           : {n} ({label_seconds / n:.2f} s per sample incl. model load)")
    print(
        f"  gradient feature dim       : {store.dim:,} ({store.config['projector']['kind']}, "
        f"LoRA dim {store.config['lora_in_dim']:,})"
    )
    print(f"  stored bytes per sample    : {store.bytes_per_sample():,.0f}")
    print(f"  influence range            : {float(matrix.scores.min()):+.3f} .. {float(matrix.scores.max()):+.3f}")
    print(f"  wall time                  : {time.perf_counter() - started:.0f} s")
    print(f"  wrote                      : {out / 'labels'} (labels.json, pool/, queries/, influence/)")
    print("  not yet in the demo        : distillation, index, attribute, filter (open issues)")
    return 0
