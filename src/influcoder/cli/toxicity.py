"""`influcoder toxicity`: the paper's second experiment, toxicity filtering (DATE-LM XSTest-response style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from influcoder.cli.options import Command, Device, Quiet


@dataclass(kw_only=True)
class Toxicity(Command):
    """Toxicity filtering: find the few unsafe pairs hidden in a fine-tuning pool, every method, AUPRC.

    Per variant and seed, in its own directory under --out and resumable step by step: builds the task (benign
    evals / bbh-cot pairs, unsafe harmful-pairs at DATE-LM's 0.65% rate, and in the het variant safety-aligned
    refusals), fine-tunes a LoRA adapter of the decoder on the pool (keeping its Adam state), labels a disjoint
    training pool against training queries with that adapter, distills an encoder from those labels, scores
    the evaluation pool against 10 unsafe queries with every method, and reports AUPRC (DATE-LM's trapezoid),
    average precision and the share of unsafe samples removed when dropping the top 1/2/5%; then fine-tunes
    again on the pool the encoder filtered and compares refusal rates on held-out harmful requests. The report
    (results.json, results.md, report.html, under --report) covers every replicate found under --out and
    --archive.

    A replicate's directory holds gigabytes and hours of CPU; --archive keeps each finished replicate's compact
    record (settings, results, every method's pool scores: ~100 KB) in a folder you can commit, from which
    --report-only rewrites the report on any machine (the task is rebuilt from its seed and checked).
    """

    positive = ("n_benign", "n_queries", "epochs", "batch_tokens", "train_unsafe")

    out: Path
    """Experiment directory: one sub-directory per variant and seed, and the report."""
    variants: list[Literal["het", "hom"]] = field(default_factory=lambda: ["het"])
    """het: benign + unsafe + safety-aligned pool; hom: benign + unsafe."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One replicate per seed (the task draw, the fine-tuning order and the encoder's training)."""
    methods: list[
        Literal[
            "influcoder",
            "semantic",
            "tfidf",
            "repsim",
            "rds+",
            "repsim-response",
            "repsim-last",
            "gradsim",
            "less",
            "less-ckpts",
            "less-sgd",
            "datainf",
            "logra",
            "logra-fisher",
        ]
    ] = field(
        default_factory=lambda: [
            "influcoder",
            "semantic",
            "tfidf",
            "repsim",
            "rds+",
            "repsim-response",
            "gradsim",
            "less",
        ]
    )
    """Methods to score: the distilled encoder, its untrained backbone, TF-IDF, decoder representations
    (repsim: mean of every token, rds+: position-weighted, repsim-response: the response tokens only,
    repsim-last: the last token; one decoder pass serves them all), gradient cosine with the labels'
    CountSketch (gradsim), LESS with the adapter's Adam state (less) or without (less-sgd), LESS as its
    authors run it (less-ckpts: a warm-up fine-tune on 5% of the pool for 4 epochs, the lr-weighted sum over
    its 4 checkpoints; ~4x less's time), DataInf, LoGRA. Decoder methods use the fine-tuned adapter."""
    n_benign: int = 2000
    """Benign pairs in the evaluation pool (unsafe: DATE-LM's rate, at least 15; safety: 2 per unsafe)."""
    n_queries: int = 10
    """Unsafe query pairs (never in the pool)."""
    model: str = "smollm2-135m-instruct"
    """Decoder that is fine-tuned and attributed (an embedded name or a local directory)."""
    encoder: str = "minilm-l6"
    """Encoder backbone to distill."""
    epochs: int = 5
    """Distillation epochs."""
    train_unsafe: int = 160
    """Unsafe pairs in the distillation pool (the encoder's only view of what to flag): 160 raised its AUPRC on
    the development set against the first replicates' 40, and the unsafe pairs a 5% filter removes
    (docs/results/toxicity.md). Part of a replicate: pass 40 to continue a run made before the change."""
    train_draw: Literal["random", "per-task"] = "random"
    """How the distillation's 600 benign pairs are drawn: random, or per-task (one pair of every task before a
    second of any: 465 of the evaluation pool's 466 benign tasks seen instead of 349; it raised the encoder's
    agreement with its teacher but lowered its AUPRC on the development set under both distillation seeds:
    docs/results/toxicity.md). Part of a replicate."""
    max_length: int = 192
    """Token budget per sample for fine-tuning and gradients."""
    refusal_check: bool = True
    """Fine-tune again on the filtered pool and compare refusal rates on held-out harmful requests."""
    batch_tokens: int = 512
    """Most padded tokens per decoder forward/backward of the labels and decoder methods (how the work is
    batched, not part of a replicate: a run resumes under another value)."""
    max_memory: float | None = None
    """Memory budget in GB for those passes' batches, as `label --max-memory` (the LESS methods also hold 256
    projected rows, 2.5 GB, per pass)."""
    archive: Path | None = None
    """Folder that receives the compact record (run.json, results.json, pool scores) of every finished
    replicate under --out, small enough to commit; the report also covers the replicates archived there."""
    report: Path | None = None
    """Where the report goes (results.json, results.md, report.html); default: --out."""
    report_only: bool = False
    """Run nothing: archive (with --archive) and report the replicates already under --out and --archive."""
    quiet: Quiet = False
    device: Device = "auto"

    def config_path(self) -> Path | None:
        return None if self.report_only else Path(self.out) / "config.yaml"  # a report changes no run

    def run(self) -> int:
        import sys
        from dataclasses import replace

        from influcoder.core.errors import InflucoderError
        from influcoder.experiments.toxicity import ToxicityRun, run_toxicity
        from influcoder.experiments.toxicity_archive import archive_replicate, is_archived, replicate_directories
        from influcoder.experiments.toxicity_report import load_replicates, markdown, write_toxicity_report

        base = ToxicityRun(refusal_check=self.refusal_check, methods=list(self.methods))
        base.labels = replace(
            base.labels,
            model=self.model,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens,
            max_memory=self.max_memory,
        )
        base.distill = replace(base.distill, encoder=self.encoder, epochs=self.epochs)
        for variant in self.variants if not self.report_only else ():
            for seed in self.seeds:
                run = replace(
                    base,
                    task=replace(
                        base.task,
                        variant=variant,
                        seed=seed,
                        n_benign=self.n_benign,
                        n_queries=self.n_queries,
                        train_draw=self.train_draw,
                        train_unsafe=self.train_unsafe,
                    ),
                    finetune=replace(base.finetune, seed=seed),
                    distill=replace(base.distill, seed=seed),
                )
                directory = self.out / f"{variant}-seed{seed}"
                print(f"== {variant}, seed {seed} -> {directory}")
                run_toxicity(directory, run, device=self.device)
        for directory in replicate_directories(self.out) if self.archive is not None else ():
            if not is_archived(directory):  # refreshed each time: a refusal check may have finished since
                print(f"archived -> {archive_replicate(directory, self.archive / directory.name)}")
        directories = replicate_directories(self.out, self.archive)
        if not directories:
            raise InflucoderError(f"no finished replicate (run.json and results.json) under {self.out} or --archive")
        replicates = load_replicates(directories)
        report = self.report if self.report is not None else self.out
        summary = write_toxicity_report(report, replicates, "influcoder " + " ".join(sys.argv[1:]))
        print(markdown(summary, replicates))
        print(f"wrote {report}/results.json, results.md, report.html")
        return 0
