"""Benchmark of step 3 (attribution at scale).

1. Featurization cost on the same texts: MiniLM-L6 encoding (influcoder's encoder) vs LESS-style gradient
   featurization of SmolLM2-135M (per-example LoRA gradients + projection), samples/s and FLOPs per sample
   (torch.utils.flop_counter, eager attention), and the speed ratio against the FLOP ratio.
2. FAISS search over N synthetic unit vectors of dim 384: exact flat vs IVF-Flat vs IVF-PQ, latency per query,
   recall@10 against exact, index memory.
3. Bytes stored per sample: influcoder's float16 embedding vs LESS's 8,192 float16 gradient features.

    python benchmarks/index.py --texts 200 --vectors 1000000

writes benchmarks/results/index.json and benchmarks/results/index.md.
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

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def featurization(n_texts: int, max_length: int, seed: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from influcoder.data.loading import load_samples
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    samples = load_samples("evals", limit=n_texts, seed=seed)
    encoder = InfluenceEncoder.from_backbone("minilm-l6", max_length=max_length)
    encoder.backbone.config._attn_implementation = "eager"
    encoder.encode(samples[:8])
    t = time.perf_counter()
    encoder.encode(samples, batch_size=32)
    encode_s = time.perf_counter() - t
    with FlopCounterMode(display=False) as counter:
        encoder.encode(samples[:32], batch_size=32)
    encode_gflop = counter.get_total_flops() / 32 / 1e9

    featurizer = GradientFeaturizer(LabelSettings(max_length=max_length, proj_dim=8192, projector="countsketch"))
    tokenized = featurizer.tokenize(samples)
    featurizer.featurize_tokenized(tokenized[:4])
    t = time.perf_counter()
    featurizer.featurize_tokenized(tokenized)
    grad_s = time.perf_counter() - t
    with FlopCounterMode(display=False) as counter:
        featurizer.featurize_tokenized(tokenized[:16])
    grad_gflop = counter.get_total_flops() / 16 / 1e9
    import tempfile

    from influcoder.attribution.index import EmbeddingIndex
    from influcoder.core.store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        stored = EmbeddingIndex.build(encoder, samples, Path(tmp) / "index", progress=False)
        index_bytes = stored.bytes_per_sample()
        features = featurizer.featurize_tokenized(tokenized[:64])
        store = FeatureStore.create_or_resume(
            Path(tmp) / "grads", {}, [t.id for t in tokenized[:64]], 8192, 64, "float16"
        )
        store.write_shard(0, features)
        gradient_bytes = store.bytes_per_sample()
    speed_ratio = (n_texts / encode_s) / (n_texts / grad_s)
    flop_ratio = grad_gflop / encode_gflop
    return {
        "n_texts": n_texts,
        "max_length": max_length,
        "encode_samples_per_s": n_texts / encode_s,
        "encode_gflop_per_sample": encode_gflop,
        "gradient_samples_per_s": n_texts / grad_s,
        "gradient_gflop_per_sample": grad_gflop,
        "speed_ratio": speed_ratio,
        "flop_ratio": flop_ratio,
        "speed_over_flop_ratio": speed_ratio / flop_ratio,
        "bytes_per_sample_measured": {"influcoder_index_fp16": index_bytes, "gradient_store_8192_fp16": gradient_bytes},
    }


def timed_search(
    faiss, index, queries: np.ndarray, nprobe: int | None, repeats: int = 3
) -> tuple[list[float], np.ndarray]:
    """Seconds of `repeats` top-10 searches of all `queries` after one warm-up search, and the rows found."""
    if nprobe is not None:
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    index.search(queries[:10], 10)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _, found = index.search(queries, 10)
        times.append(time.perf_counter() - t)
    return times, found


def search(n_vectors: int, dim: int, n_queries: int, seed: int, factories: list[str], nprobe: int) -> list[dict]:
    import faiss

    from influcoder.attribution.index import _faiss, read_mapped

    _faiss()  # sets the BLAS threshold exactly as the index does
    rng = np.random.default_rng(seed)
    # clustered data (as embeddings are), unit norm
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    base = centers[rng.integers(0, 1000, n_vectors)] + 0.5 * rng.standard_normal((n_vectors, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.integers(0, n_vectors, n_queries)] + 0.1 * rng.standard_normal((n_queries, dim)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows, truth = [], None
    for factory in factories:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        if not index.is_trained:
            index.train(base[rng.choice(n_vectors, min(n_vectors, 100_000), replace=False)])
        index.add(base)
        build_s = time.perf_counter() - t
        times, found = timed_search(faiss, index, queries, nprobe if "IVF" in factory else None)
        if truth is None:
            truth = found
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
        with tempfile.TemporaryDirectory() as tmp:  # as `attribute` reads it: memory-mapped from index.faiss
            faiss.write_index(index, str(Path(tmp) / "index.faiss"))
            memory = (Path(tmp) / "index.faiss").stat().st_size
            del index
            mapped = read_mapped(faiss, Path(tmp) / "index.faiss")
            mapped_times, found_mapped = timed_search(faiss, mapped, queries, nprobe if "IVF" in factory else None)
            del mapped
        rows.append(
            {
                "factory": factory,
                "build_s": build_s,
                "ms_per_query": 1000 * statistics.median(times) / n_queries,
                "ms_per_query_mapped": 1000 * statistics.median(mapped_times) / n_queries,
                "mapped_same_hits": bool(np.array_equal(found_mapped, found)),
                "recall_at_10": recall,
                "index_mb": memory / 2**20,
                "nprobe": nprobe if "IVF" in factory else None,
            }
        )
    return rows


def featurization_table(f: dict) -> list[str]:
    """The featurization table (scripts/check_docs.py re-renders it from index.json)."""
    return [
        "| featurizer | samples/s | GFLOP/sample |",
        "|---|---|---|",
        f"| MiniLM-L6 encoder | {f['encode_samples_per_s']:.2f} | {f['encode_gflop_per_sample']:.2f} |",
        f"| SmolLM2-135M LoRA gradients + CountSketch 8192 | {f['gradient_samples_per_s']:.3f} | "
        f"{f['gradient_gflop_per_sample']:.1f} |",
    ]


def search_table(search: list[dict]) -> list[str]:
    """The FAISS search table (scripts/check_docs.py re-renders it from index.json)."""
    lines = [
        "| index | build s | ms/query | ms/query memory-mapped (same hits) | recall@10 vs exact | index MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in search:
        name = r["factory"] + (f" (nprobe {r['nprobe']})" if r["nprobe"] else "")
        mapped = f"{r['ms_per_query_mapped']:.2f} ({'yes' if r['mapped_same_hits'] else 'NO'})"
        lines.append(
            f"| {name} | {r['build_s']:.1f} | {r['ms_per_query']:.2f} | {mapped} | {r['recall_at_10']:.3f} "
            f"| {r['index_mb']:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--factories", nargs="+", default=["Flat", "SQfp16", "IVF1024,Flat", "IVF1024,PQ32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-featurization", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "index"))
    args = parser.parse_args()
    report = {
        "benchmark": "index",
        "command": "python benchmarks/index.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
    }
    out = Path(args.out)
    if not args.skip_featurization:
        report["featurization"] = featurization(args.texts, args.max_length, args.seed)
    elif out.with_suffix(".json").exists():  # keep the last measured featurization, and say where it came from
        previous = json.loads(out.with_suffix(".json").read_text())
        if "featurization" in previous:
            report["featurization"] = previous["featurization"]
            report["featurization_command"] = previous.get("featurization_command", previous["command"])
    report["search"] = search(args.vectors, args.dim, args.queries, args.seed, args.factories, args.nprobe)
    report["bytes_per_sample"] = {"influcoder_embedding_fp16": 384 * 2, "less_8192_fp16": 8192 * 2}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# attribution-at-scale benchmark",
        "",
        f"Machine: {report['machine']['platform']}, "
        f"{report['machine']['torch_threads']} torch threads. Command: `{report['command']}`",
        "",
    ]
    if "featurization" in report:
        f = report["featurization"]
        lines += [
            f"## Featurization of the same {f['n_texts']} `evals` texts (max length {f['max_length']})",
            "",
            *featurization_table(f),
            "",
            f"Speed ratio {f['speed_ratio']:.1f}x vs FLOP ratio {f['flop_ratio']:.1f}x: the encoder reaches "
            f"{f['speed_over_flop_ratio']:.2f} of its FLOP advantage (target >= 0.8).",
            "",
        ]
        if "featurization_command" in report:
            lines[-1:-1] = ["", f"(Featurization kept from an earlier run: `{report['featurization_command']}`.)"]
    lines += [
        f"## FAISS search, {args.vectors:,} clustered unit vectors x {args.dim}, {args.queries} queries, k=10",
        "",
        *search_table(report["search"]),
    ]
    lines += [
        "",
        "`attribute` and `filter` read index.faiss memory-mapped (`read_mapped`), as the mapped column does, "
        "after one warm-up search; index MB is the file's size.",
    ]
    b = report["bytes_per_sample"]
    ratio = b["less_8192_fp16"] / b["influcoder_embedding_fp16"]
    lines += [
        "",
        f"Bytes per sample (array payload): influcoder float16 embedding {b['influcoder_embedding_fp16']:,} vs LESS "
        f"8,192 x fp16 gradient features {b['less_8192_fp16']:,} ({ratio:.0f}x).",
    ]
    if "featurization" in report:
        m = report["featurization"]["bytes_per_sample_measured"]
        lines.append(
            f"Measured on disk (with file headers): influcoder index {m['influcoder_index_fp16']:,.0f} B/sample, "
            f"gradient store 8,192 x fp16 {m['gradient_store_8192_fp16']:,.0f} B/sample."
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
