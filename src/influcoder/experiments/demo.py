"""`influcoder demo`: the whole pipeline on the embedded defaults, reporting only what this run measured.

label (SmolLM2-135M gradients, `evals` pool x `bbh` queries) -> distil MiniLM-L6 on a training split ->
evaluate distilled vs untrained on a held-out split -> index the pool -> attribute held-out queries ->
filter the pool against them. Every stage resumes, so an interrupted demo picks up where it stopped. Each
stage logs what it does and measures (``logging``, shown on stderr by the CLI); the run returns a `DemoReport`
whose `summary()` is the closing table the CLI prints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influcoder.core.atomic import write_json_atomic
from influcoder.core.progress import progress_bars
from influcoder.data.loading import load_samples
from influcoder.encoder.run_record import DistillRun

log = logging.getLogger(__name__)

DEMO_DISTILL = {"subspace": (None, 5e-5), "influcoder": (4, 1e-4)}
"""(epochs, lr) of the demo's distillation per objective. The subspace objective's epochs: its default (the
ridge on the labels' frozen decoder: no epoch); the cosine objective's: those benchmarks/objective_compare.py
compares."""

_SPEARMAN = ("per_anchor_mean", "per_anchor_std", "mean_aggregated")


@dataclass(frozen=True)
class DemoReport:
    """What one demo run measured: `record` is its ``report.json`` (under `out`)."""

    out: Path
    record: dict[str, Any]

    def summary(self) -> str:
        """The closing table: every figure is one this run measured (and `record` holds)."""
        r, out = self.record, self.out
        sizes, seconds, stored = r["sizes"], r["seconds"], r["bytes_per_sample"]
        distilled, untrained = r["spearman"]["distilled"], r["spearman"]["untrained"]
        n_labelled = sizes["pool"] + sizes["queries"]
        return "\n".join(
            [
                "[demo] report (every figure measured in this run)",
                f"  Spearman vs gradient labels (held-out {sizes['held_out_pool']} x {sizes['held_out_queries']}): "
                f"per-anchor {distilled['per_anchor_mean']:.3f} distilled vs {untrained['per_anchor_mean']:.3f} "
                f"untrained; mean-aggregated {distilled['mean_aggregated']:.3f} vs "
                f"{untrained['mean_aggregated']:.3f}",
                f"  time per sample: labels {1000 * seconds['labels'] / n_labelled:.0f} ms (decoder gradients, incl. "
                f"load) vs encode+index {1000 * seconds['index'] / sizes['pool']:.0f} ms (distilled encoder)",
                f"  bytes per sample: gradient store {stored['gradient_store']:,.0f} vs embedding index "
                f"{stored['embedding_index']:,.0f}",
                f"  distillation: {seconds['distill']:.0f} s; whole demo {seconds['total']:.0f} s",
                f"  wrote: {out}/labels, {out}/encoder (best/, last/, eval_split.json), {out}/index, "
                f"{out}/kept.jsonl, {out}/dropped.jsonl, {out}/report.json",
            ]
        )


def _stage(title: str) -> float:
    log.info(f"\n[demo] {title}")
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
    progress: bool | None = None,
    objective: str = "subspace",
    encoder: str | None = None,
) -> DemoReport:
    """Run every stage at these sizes under `out`, logging what each measured; stages resume on a rerun.
    `epochs` and `lr` default to the `objective`'s demo settings (`DEMO_DISTILL`); `encoder` to distill's
    backbone (`DistillSettings.encoder`). `progress`: the stages'
    bars on (True) or off (False); None leaves them to the switch in `influcoder.core.progress`."""
    from influcoder.core.store import FeatureStore
    from influcoder.encoder.settings import DistillSettings

    out = Path(out)
    started = time.perf_counter()
    pool = load_samples("evals", limit=pool_size, seed=seed)
    queries = load_samples("bbh", limit=query_size, seed=seed)
    epochs = epochs if epochs is not None else DEMO_DISTILL[objective][0]
    lr = lr or DEMO_DISTILL[objective][1]
    distill = DistillSettings(
        encoder=encoder, epochs=epochs, lr=lr, seed=seed, max_length=max_length, objective=objective
    )
    with progress_bars(progress):
        label_seconds = _label(out, pool, queries, max_length, proj_dim, seed, device)
        distill_seconds = _distill(out, len(pool), len(queries), distill, device)
        ic, distilled, untrained = _evaluate(out, max_length, device)
        index, index_seconds = _index(ic, pool, out)
        kept, dropped = _attribute_and_filter(ic, queries, out)
    report = {
        "protocol": "random (held-out samples of the tasks seen in distillation)",
        "sizes": {"pool": len(pool), "queries": len(queries), "held_out_pool": distilled["n_pool"],
                  "held_out_queries": distilled["n_queries"], "kept": kept, "dropped": dropped},
        "spearman": {name: {k: r[k] for k in _SPEARMAN} for name, r in (("distilled", distilled),
                                                                          ("untrained", untrained))},
        "seconds": {"labels": label_seconds, "distill": distill_seconds, "index": index_seconds,
                    "total": time.perf_counter() - started},
        "bytes_per_sample": {"gradient_store": FeatureStore(out / "labels" / "pool").bytes_per_sample(),
                             "embedding_index": index.bytes_per_sample()},
        "settings": {**_backbone(out), "lr": lr, "max_length": max_length, "proj_dim": proj_dim, "seed": seed},
    }  # fmt: skip
    write_json_atomic(out / "report.json", report)
    return DemoReport(out, report)


def _label(out: Path, pool, queries, max_length: int, proj_dim: int, seed: int, device: str) -> float:
    """Stage 1: gradient influence labels of pool x queries; its seconds."""
    from influcoder.labels.labelling import label
    from influcoder.labels.settings import LabelSettings

    t = _stage(
        f"1/5 labels: gradients of {len(pool)} evals pool samples and {len(queries)} bbh queries "
        f"(SmolLM2-135M-Instruct, LoRA r=8, CountSketch {proj_dim})"
    )
    settings = LabelSettings(max_length=max_length, proj_dim=proj_dim, seed=seed, device=device)
    label(pool, queries, out / "labels", settings)
    return time.perf_counter() - t


def _distill(out: Path, n_pool: int, n_queries: int, distill, device: str) -> float:
    """Stage 2: distil the labels into an encoder, holding a fifth of the pool and a quarter of the queries
    out; its seconds."""
    from influcoder.encoder.distill import distill_labels

    eval_pool, eval_queries = max(10, n_pool // 5), max(4, n_queries // 4)
    backbone = distill.encoder or ("the labels' decoder" if distill.objective == "subspace" else "MiniLM-L6")
    t = _stage(
        f"2/5 distill {backbone}, objective {distill.objective} ({eval_pool} pool x {eval_queries} queries held out)"
    )
    distill_labels(out / "labels", out / "encoder", distill, eval_pool, eval_queries, device=device)
    return time.perf_counter() - t


def _backbone(out: Path) -> dict:
    """The distillation's settings that say what was trained, as its run recorded them (resolved defaults)."""
    settings = DistillRun(out / "encoder").record().settings
    return {key: settings.get(key) for key in ("objective", "encoder", "pooling", "text_view", "epochs")}


def _evaluate(out: Path, max_length: int, device: str):
    """Stage 3: Spearman against the gradient labels on the held-out split, of the distilled encoder (scored
    as attribute scores, with its subspace if it has one) and of the untrained backbone."""
    from influcoder.attribution.influcoder import Influcoder
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.evaluation.evaluate import evaluate_encoder, training_record

    _stage("3/5 evaluate on the held-out split: the distilled encoder vs untrained MiniLM-L6 (Spearman vs gradients)")
    split = DistillRun(out / "encoder").eval_split_path
    ic = Influcoder.from_pretrained(out / "encoder", device=device)  # with its subspace, for a subspace encoder
    distilled = evaluate_encoder(
        ic.encoder, out / "labels", split, training_record(out / "encoder"), subspace=ic.subspace
    )
    fresh = InfluenceEncoder.from_backbone(max_length=max_length, device=device)
    untrained = evaluate_encoder(fresh, out / "labels", split)
    for name, r in (("distilled", distilled), ("untrained", untrained)):
        log.info(
            f"  {name:<9}: per-anchor rho {r['per_anchor_mean']:.3f} +- {r['per_anchor_std']:.3f}, "
            f"mean-aggregated rho {r['mean_aggregated']:.3f}"
        )
    return ic, distilled, untrained


def _index(ic, pool, out: Path):
    """Stage 4: the embedding index of the pool, and its seconds."""
    t = _stage(f"4/5 index the {len(pool)} pool samples with the distilled encoder")
    index = ic.index(pool, out / "index", overwrite=True, encoder_path=out / "encoder")
    return index, time.perf_counter() - t


def _attribute_and_filter(ic, queries, out: Path) -> tuple[int, int]:
    """Stage 5: attribute two held-out queries (logged), filter the pool against all held-out queries into
    kept.jsonl and dropped.jsonl; the numbers kept and dropped."""
    from influcoder.data.formats import write_samples

    held = set(DistillRun(out / "encoder").eval_split().query_ids)
    held_queries = [q for q in queries if q.id in held]
    _stage(f"5/5 attribute and filter with the {len(held_queries)} held-out queries")
    for hits in ic.attribute(held_queries[:2], k=3):
        q = next(x for x in held_queries if x.id == hits[0].query_id)
        log.info(f"  query {q.id}: {' '.join(q.prompt.split())[:80]!r}")
        for a in hits:
            log.info(f"    {a.rank}. {a.score:+.3f} {a.sample.id}: {' '.join(a.sample.prompt.split())[:60]!r}")
    result = ic.filter(held_queries, drop_fraction=0.1)
    write_samples(result.kept, out / "kept.jsonl")
    write_samples(result.dropped, out / "dropped.jsonl")
    log.info(
        f"  filter: dropped the {len(result.dropped)} most influential pool samples -> {out / 'dropped.jsonl'}, "
        f"kept {len(result.kept)} -> {out / 'kept.jsonl'}"
    )
    return len(result.kept), len(result.dropped)
