"""`influcoder label`, `merge-labels` and `fidelity`: step 1, gradient influence labels of a decoder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from influcoder.cli.options import Command, Distributed, Input, InputOptions, Quiet, RayFlags
from influcoder.labels.finetune import FinetuneSettings
from influcoder.labels.settings import LabelSettings

Settings = Annotated[LabelSettings, tyro.conf.OmitArgPrefixes]


@dataclass(kw_only=True)
class Label(Command):
    """Step 1: gradient influence labels (pool x queries) of a decoder.

    Computes per-example LoRA gradients of the response-only loss for the pool and the queries (batched,
    exact), compresses them (CountSketch by default), stores them in resumable shards, and writes the pool x
    query cosine influence matrix. Rerunning with the same --out resumes.
    """

    positive = ("pool_limit", "query_limit")

    pool: str
    """Training samples to attribute (DATA)."""
    queries: str
    """Query samples, the test behaviour (DATA)."""
    out: Path
    """Labels directory to write (resumed when it exists)."""
    pool_limit: int | None = None
    """Seeded random subset of the pool."""
    query_limit: int | None = None
    """Seeded random subset of the queries."""
    data_seed: int = 0
    """Seed of the subsets."""
    overwrite: bool = False
    """Discard stores made with other settings."""
    settings: Settings = field(default_factory=LabelSettings)
    quiet: Quiet = False
    input: Input = field(default_factory=InputOptions)
    distributed: Distributed = field(default_factory=RayFlags)

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> int:
        from influcoder.labels.labelling import label
        from influcoder.labels.labels_dir import LabelsDir

        pool = self.input.load(self.pool, self.pool_limit, self.data_seed, stream=True)  # JSONL: texts stay on disk
        queries = self.input.load(self.queries, self.query_limit, self.data_seed)
        s = self.settings
        print(
            f"labelling {len(pool)} pool x {len(queries)} queries with {s.model} "
            f"(LoRA r={s.rank}, {s.projector} {s.proj_dim}) -> {self.out}"
        )
        started = time.perf_counter()
        matrix = label(
            pool,
            queries,
            self.out,
            s,
            overwrite=self.overwrite,
            ray=self.distributed.options(),
        )
        seconds = time.perf_counter() - started
        print(f"wrote {self.out}/influence (pool x queries = {matrix.scores.shape}) in {seconds:.0f} s")
        if s.max_memory is not None:
            used = LabelsDir(self.out).record().batch_tokens_used
            print(f"batches of at most {used} tokens fit --max-memory {s.max_memory:g} GB")
        if not self.quiet:
            _print_top(matrix, pool, queries)
        return 0


def _print_top(matrix, pool, queries, k: int = 3, n_queries: int = 3) -> None:
    from influcoder.labels.influence import top_k

    texts = {s.id: s for s in pool}
    order, values = top_k(matrix.scores, k, axis=0)
    for j, query in enumerate(queries[:n_queries]):
        print(f"\nquery {query.id}: {query.prompt[:90]!r}")
        for rank, (i, v) in enumerate(zip(order[j], values[j]), 1):
            sample = texts[matrix.pool_ids[i]]
            print(f"  {rank}. {v:+.3f}  {sample.id}: {sample.prompt[:70]!r} -> {sample.response[:40]!r}")


@dataclass(kw_only=True)
class MergeLabels(Command):
    """Join labels directories of disjoint pools labelled against the same queries.

    Label a large pool in parts (several runs or machines, same settings, same --queries), then join them
    into one labels directory. Refuses parts whose feature settings or queries differ, or whose pools share
    an id.
    """

    parts: tyro.conf.Positional[list[Path]]
    """Labels directories written by `influcoder label` (LABELS_DIR ...)."""
    out: Path
    """The merged labels directory to write."""

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> int:
        from influcoder.labels.merge import merge_labels

        matrix = merge_labels(self.parts, self.out)
        print(f"wrote {self.out} (pool x queries = {matrix.scores.shape}) from {len(self.parts)} labels directories")
        return 0


@dataclass(kw_only=True)
class Fidelity(Command):
    """How well a projection preserves gradient cosines (paper appendix A.1).

    Computes exact LoRA gradients of DATA and their projections at each --dims, and reports Spearman /
    Pearson / max abs error of sketched vs exact pairwise cosines.
    """

    positive = ("limit",)

    data: str = "evals"
    """Samples to compare on (DATA)."""
    limit: int = 32
    """Number of samples."""
    dims: list[int] = field(default_factory=lambda: [8192, 32768, 65536])
    """Projection dims to check."""
    data_seed: int = 0
    """Seed of the subset."""
    json: Path | None = None
    """Also write the rows as JSON here."""
    settings: Settings = field(default_factory=LabelSettings)
    quiet: Quiet = False
    input: Input = field(default_factory=InputOptions)

    def config_path(self) -> Path | None:
        return self.json.with_name(self.json.name + ".config.yaml") if self.json else None

    def run(self) -> int:
        from influcoder.core.atomic import write_json_atomic
        from influcoder.labels.fidelity import projection_fidelity

        samples = self.input.load(self.data, self.limit, self.data_seed)
        rows = projection_fidelity(samples, self.settings, self.dims)
        n_pairs = len(samples) * (len(samples) - 1) // 2
        print(f"\nprojection fidelity on {len(samples)} samples ({n_pairs} pairs), LoRA dim {rows[0]['in_dim']:,}")
        print("| projector | dim | Spearman vs exact | Pearson | max abs error | mean abs error |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['projector']} | {r['dim']:,} | {r['spearman']:.4f} | {r['pearson']:.4f} | "
                f"{r['max_abs_error']:.4f} | {r['mean_abs_error']:.4f} |"
            )
        if self.json:
            write_json_atomic(self.json, rows)
        return 0


@dataclass(kw_only=True)
class Finetune(Command):
    """Fine-tune a LoRA adapter of the decoder on a pool (response-only loss), keeping its Adam state.

    The model a filtering run attributes is the one trained on the pool (DATE-LM); its adapter directory is
    what `label --adapter DIR` and the gradient baselines load, and its optimizer.pt is what LESS
    preconditions with. Checkpoints every --checkpoint-every steps; rerunning the same command continues.
    """

    positive = ("limit",)

    data: str
    """Samples to train on (DATA)."""
    out: Path
    """Adapter directory to write (adapter_config.json, adapter_model.safetensors, optimizer.pt,
    finetune.json)."""
    limit: int | None = None
    """Seeded random subset of DATA."""
    data_seed: int = 0
    """Seed of the subset."""
    model: str = "smollm2-135m-instruct"
    """Decoder: an embedded model name or a local Hugging Face directory."""
    rank: int = 8
    """LoRA rank."""
    alpha: float | None = None
    """LoRA alpha (default 2 * rank)."""
    lora_seed: int = 0
    """Seed of the adapter's A matrices (as `label` draws them)."""
    chat_template: bool | None = None
    """Render with the tokenizer's chat template (default: when it has one)."""
    settings: Annotated[FinetuneSettings, tyro.conf.OmitArgPrefixes] = field(default_factory=FinetuneSettings)
    quiet: Quiet = False
    input: Input = field(default_factory=InputOptions)

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> int:
        from influcoder.labels.finetune import finetune
        from influcoder.labels.lora import LoraSettings

        samples = self.input.load(self.data, self.limit, self.data_seed)
        lora = LoraSettings(rank=self.rank, alpha=self.alpha, seed=self.lora_seed)
        print(f"fine-tuning {self.model} (LoRA r={self.rank}) on {len(samples)} samples -> {self.out}")
        result = finetune(
            samples,
            self.out,
            self.model,
            lora,
            self.settings,
            chat_template=self.chat_template,
        )
        first, last = result.losses[0], sum(result.losses[-10:]) / len(result.losses[-10:])
        resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
        print(f"wrote {self.out}: {result.steps} steps{resumed}, loss {first:.3f} -> {last:.3f} (mean of last 10)")
        return 0
