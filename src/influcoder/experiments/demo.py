"""`influcoder demo`: the whole pipeline on the embedded defaults, printing only what this run measured.

label (SmolLM2-135M gradients, `evals` pool x `bbh` queries) -> distil MiniLM-L6 on a training split ->
evaluate distilled vs untrained on a held-out split -> index the pool -> attribute held-out queries ->
filter the pool against them. Every stage resumes, so an interrupted demo picks up where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from influcoder.core.atomic import write_json_atomic
from influcoder.core.jsonfile import read_json
from influcoder.data.loading import load_samples

DEMO_DISTILL = {"subspace": (2, 5e-5), "influcoder": (4, 1e-4)}
"""(epochs, lr) of the demo's distillation per objective: those benchmarks/objective_compare.py compares."""


def _stage(title: str) -> float:
    print(f"\n[demo] {title}", flush=True)
    return time.perf_counter()


def run_demo(
    out: str | Path = "runs/demo",
    pool_size: int = 200,
    query_size: int = 60,
    epochs: int | None = None,
    lr: float | None = None,
    max_length: int = 256,
    proj_dim: int = 32768,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    objective: str = "subspace",
) -> int:
    """Run every stage at these sizes under `out`, printing what each measured; stages resume on a rerun.
    `epochs` and `lr` default to the `objective`'s demo settings (`DEMO_DISTILL`)."""
    from influcoder.attribution.influcoder import Influcoder
    from influcoder.core.store import FeatureStore
    from influcoder.encoder.distill import distill_labels
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.encoder.settings import DistillSettings
    from influcoder.evaluation.evaluate import evaluate_encoder, training_record
    from influcoder.labels.labelling import label
    from influcoder.labels.settings import LabelSettings

    out = Path(out)
    started = time.perf_counter()
    pool = load_samples("evals", limit=pool_size, seed=seed)
    queries = load_samples("bbh", limit=query_size, seed=seed)

    t = _stage(
        f"1/5 labels: gradients of {len(pool)} evals pool samples and {len(queries)} bbh queries "
        f"(SmolLM2-135M-Instruct, LoRA r=8, CountSketch {proj_dim})"
    )
    settings = LabelSettings(max_length=max_length, proj_dim=proj_dim, seed=seed, device=device)
    label(pool, queries, out / "labels", settings, progress=progress)
    label_seconds = time.perf_counter() - t
    gradient_store = FeatureStore(out / "labels" / "pool")

    epochs, lr = epochs or DEMO_DISTILL[objective][0], lr or DEMO_DISTILL[objective][1]
    eval_pool, eval_queries = max(10, len(pool) // 5), max(4, len(queries) // 4)
    t = _stage(
        f"2/5 distill MiniLM-L6, objective {objective} ({epochs} epochs; {eval_pool} pool x {eval_queries} queries "
        "held out)"
    )
    distill = DistillSettings(epochs=epochs, lr=lr, seed=seed, max_length=max_length, objective=objective)
    distill_labels(out / "labels", out / "encoder", distill, eval_pool, eval_queries, progress, device=device)
    distill_seconds = time.perf_counter() - t

    t = _stage("3/5 evaluate on the held-out split: distilled vs untrained MiniLM-L6 (Spearman vs gradients)")
    split = out / "encoder" / "eval_split.json"
    ic = Influcoder.from_pretrained(out / "encoder", device=device)  # with its subspace, for a subspace encoder
    encoder = ic.encoder
    distilled = evaluate_encoder(encoder, out / "labels", split, training_record(out / "encoder"), subspace=ic.subspace)
    fresh = InfluenceEncoder.from_backbone(max_length=max_length, device=device)
    untrained = evaluate_encoder(fresh, out / "labels", split)
    for name, r in (("distilled", distilled), ("untrained", untrained)):
        print(
            f"  {name:<9}: per-anchor rho {r['per_anchor_mean']:.3f} +- {r['per_anchor_std']:.3f}, "
            f"mean-aggregated rho {r['mean_aggregated']:.3f}"
        )

    t = _stage(f"4/5 index the {len(pool)} pool samples with the distilled encoder")
    index = ic.index(pool, out / "index", overwrite=True, encoder_path=out / "encoder", progress=progress)
    index_seconds = time.perf_counter() - t

    held = set(read_json(split)["query_ids"])
    held_queries = [q for q in queries if q.id in held]
    _stage(f"5/5 attribute and filter with the {len(held_queries)} held-out queries")
    for hits in ic.attribute(held_queries[:2], k=3):
        q = next(x for x in held_queries if x.id == hits[0].query_id)
        print(f"  query {q.id}: {' '.join(q.prompt.split())[:80]!r}")
        for a in hits:
            print(f"    {a.rank}. {a.score:+.3f} {a.sample.id}: {' '.join(a.sample.prompt.split())[:60]!r}")
    from influcoder.data.formats import write_samples

    result = ic.filter(held_queries, drop_fraction=0.1)
    write_samples(result.kept, out / "kept.jsonl")
    write_samples(result.dropped, out / "dropped.jsonl")
    print(
        f"  filter: dropped the {len(result.dropped)} most influential pool samples -> {out / 'dropped.jsonl'}, "
        f"kept {len(result.kept)} -> {out / 'kept.jsonl'}"
    )

    n_labelled = len(pool) + len(queries)
    print("\n[demo] report (every figure measured in this run)")
    print(
        f"  Spearman vs gradient labels (held-out {distilled['n_pool']} x {distilled['n_queries']}): per-anchor "
        f"{distilled['per_anchor_mean']:.3f} distilled vs {untrained['per_anchor_mean']:.3f} untrained; "
        f"mean-aggregated {distilled['mean_aggregated']:.3f} vs {untrained['mean_aggregated']:.3f}"
    )
    print(
        f"  time per sample: labels {1000 * label_seconds / n_labelled:.0f} ms (decoder gradients, incl. load) vs "
        f"encode+index {1000 * index_seconds / len(pool):.0f} ms (distilled encoder)"
    )
    print(
        f"  bytes per sample: gradient store {gradient_store.bytes_per_sample():,.0f} vs embedding index "
        f"{index.bytes_per_sample():,.0f}"
    )
    total_seconds = time.perf_counter() - started
    print(f"  distillation: {distill_seconds:.0f} s; whole demo {total_seconds:.0f} s")
    report = {
        "protocol": "random (held-out samples of the tasks seen in distillation)",
        "sizes": {"pool": len(pool), "queries": len(queries), "held_out_pool": distilled["n_pool"],
                  "held_out_queries": distilled["n_queries"], "kept": len(result.kept),
                  "dropped": len(result.dropped)},
        "spearman": {name: {k: r[k] for k in ("per_anchor_mean", "per_anchor_std", "mean_aggregated")}
                     for name, r in (("distilled", distilled), ("untrained", untrained))},
        "seconds": {"labels": label_seconds, "distill": distill_seconds, "index": index_seconds,
                    "total": total_seconds},
        "bytes_per_sample": {"gradient_store": gradient_store.bytes_per_sample(),
                             "embedding_index": index.bytes_per_sample()},
        "settings": {"objective": objective, "epochs": epochs, "lr": lr, "max_length": max_length,
                     "proj_dim": proj_dim, "seed": seed},
    }  # fmt: skip
    write_json_atomic(out / "report.json", report)
    print(
        f"  wrote: {out}/labels, {out}/encoder (best/, last/, eval_split.json), {out}/index, "
        f"{out}/kept.jsonl, {out}/dropped.jsonl, {out}/report.json"
    )
    return 0
