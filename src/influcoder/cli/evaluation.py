"""`influcoder evaluate` and `influcoder demo`: fidelity against the gradient labels, and the whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from influcoder.cli.options import Command, Device, Quiet
from influcoder.evaluation.baselines.registry import method_names

if TYPE_CHECKING:
    from influcoder.experiments.demo import DemoReport

BaselineName = Literal[
    tuple(n for n in method_names(aliases=True) if n not in ("influcoder", "distilled", "less-ckpts"))
]
"""What --baselines accepts: every registered method but the distilled encoder itself (always scored), the
toxicity experiment's LESS variants (warm-up checkpoints; SGD, which `less` is without a fine-tuned adapter)
and gradsim (the labels' own features: the ground truth itself)."""
TEXT_ONLY = {"semantic", "untrained", "tfidf", "pool-mean", "lengths", "airrep"}
"""Baselines that run no decoder: the label settings are read only when another one is asked for."""


@dataclass(kw_only=True)
class Evaluate(Command):
    """Spearman of encoders' predicted influence against ground-truth labels, beside baselines.

    Per-anchor Spearman (per query over the pool, mean +- std), mean-aggregated Spearman (scores averaged
    over queries) and query-specific per-anchor Spearman (each pool sample's mean over the queries removed
    first) of an encoder and of --baselines against a labels directory, on the held-out split its distill run
    wrote (eval_split.json, which names its protocol) or on all labels; refuses to score items it was trained
    on. Several --encoder runs (e.g. one distill per seed and protocol) are each scored on their own split,
    baselines included, and the report gives the mean and spread over seeds per protocol.
    """

    encoder: list[Path]
    """Encoder directories (or distill output directories): one run each, on its own held-out split."""
    labels: Path
    """A directory written by `influcoder label`."""
    split: Path | None = None
    """A JSON file with pool_ids and query_ids (default: each encoder's eval_split.json)."""
    baselines: list[BaselineName] = field(default_factory=list)
    """Also score these on the same split: semantic, the untrained backbone (older name: untrained), TF-IDF
    cosine, pool-mean (each pool sample's mean true influence over the training queries: needs every pool
    gradient), lengths (that
    offset predicted from length features by a ridge on the training pool: text-only), and the labelling
    decoder's last-layer states: mean (repsim), position-weighted mean (rds+), mean over the response tokens
    (repsim-response) or the last token's (repsim-last); less: the labels' LoRA
    gradients, Rademacher 8,192 (pool gradients as Adam updates when the labels' adapter was written by
    `influcoder finetune`, which keeps its optimizer.pt; SGD otherwise); datainf: exact LoRA gradients with DataInf's
    closed-form inverse Fisher; logra: base-linear gradients projected k x k per layer (16 x 16), logra-fisher
    the same whitened by each layer's empirical Fisher; airrep: an encoder trained on the same training split
    with the encoder's own settings but attention pooling and AirRep's group-wise ranking loss (a second learned
    method; it trains during the evaluation)."""
    untrained: bool = False
    """Shorthand for --baselines semantic (its row keeps the name `untrained`)."""
    by: str | None = None
    """Also report per-anchor rho per group of queries sharing this meta field (e.g. task)."""
    other_labels: bool = False
    """Evaluate on labels made with other gradient features than the encoder was distilled from (another
    decoder, adapter, projection or text view); refused otherwise."""
    flops: bool = False
    """Also count each method's FLOPs per scored sample (FlopCounterMode, eager attention; scores once more)."""
    json: Path | None = None
    """Also write the rows as JSON here (with several encoders: {encoder: rows})."""
    report: Path | None = None
    """Write results.json, results.md and an offline report.html (figures, top-5 examples) into this directory."""
    verify: bool = False
    """Check every file of the artifacts it reads before reading, each against its recorded sha256 (as
    `influcoder verify`); the check on every read compares sizes (and hashes only small files read whole)."""
    states_cache: bool = False
    """Read the encoder's pooled backbone states through the states cache (`distill` fills it for a frozen
    backbone): a second evaluation of the same texts skips the backbone pass. Its rows then say so
    (``states_cache``), and their encode times leave out the pass: not a cost figure (refused with `flops`)."""
    quiet: Quiet = False
    device: Device = "auto"

    def config_path(self) -> Path | None:
        if self.report:
            return self.report / "config.yaml"
        return self.json.with_name(self.json.name + ".config.yaml") if self.json else None

    def default_split(self, encoder: Path) -> Path | None:
        """The held-out split the encoder's distill run wrote, when it was drawn from these labels."""
        from influcoder.encoder.run_record import DistillRun

        run = DistillRun.around(encoder, DistillRun.EVAL_SPLIT)
        if run is None:
            return None
        recorded = run.eval_split().labels
        return run.eval_split_path if recorded in (None, str(self.labels.resolve())) else None

    def scorers(self, encoder, encoder_dir: Path, record=None) -> dict:
        """The distilled encoder and each --baselines method, built by the method registry (rows keyed by the
        name asked for; an old name is accepted with a deprecation note). `record`: the encoder's run's
        `TrainingRecord`, whose settings the airrep baseline trains with (None: the defaults)."""
        from influcoder.encoder.settings import DistillSettings
        from influcoder.evaluation.baselines.registry import MethodContext, build_scorer

        names = list(dict.fromkeys([*(["semantic"] if self.untrained else []), *self.baselines]))
        decoder = any(n not in TEXT_ONLY for n in names)
        settings = self.label_settings() if decoder else None
        state = Path(settings.adapter) / "optimizer.pt" if settings and settings.adapter else None
        ctx = MethodContext(
            labels=settings, encoder_dir=encoder_dir, encoder=encoder, labels_dir=self.labels,
            optimizer_state=state if state and state.exists() else None, device=self.device,
            distill_settings=DistillSettings(**(record.settings if record else {})),
        )  # fmt: skip
        scorers = {"distilled": build_scorer("influcoder", ctx)}
        for name in names:
            scorers["untrained" if name == "semantic" and self.untrained else name] = build_scorer(name, ctx)
        return scorers

    def label_settings(self):
        """The settings the labels were made with (same decoder and text view), on this run's device."""

        from influcoder.core.errors import InflucoderError
        from influcoder.labels.labels_dir import LabelsDir
        from influcoder.labels.settings import LabelSettings

        labels = LabelsDir(self.labels)
        recorded = labels.record().settings
        if recorded is None:
            raise InflucoderError(
                f"{labels.record_path} records no label settings (merged by an older influcoder): the decoder "
                "baselines cannot rerun its decoder; score text-only baselines, or relabel"
            )
        return LabelSettings(**{**recorded, "device": self.device})

    def evaluate_one(self, encoder_dir: Path) -> dict:
        """One run: the encoder and the baselines on the encoder's split, with a few top-5 examples."""
        from influcoder.encoder.model import InfluenceEncoder
        from influcoder.evaluation.evaluate import (
            check_same_features,
            evaluate_scorers,
            evaluation_data,
            training_record,
        )
        from influcoder.evaluation.report import coverage_flag_report, top_examples

        split = self.split or self.default_split(encoder_dir)
        encoder = InfluenceEncoder.from_pretrained(encoder_dir, device=self.device)
        if self.states_cache:
            from influcoder.encoder.states_cache import PooledStatesCache

            encoder.states_cache = PooledStatesCache.for_encoder(encoder)
        if not self.other_labels:
            check_same_features(encoder, self.labels)  # before any other model is loaded
        data = evaluation_data(self.labels, split)
        record = training_record(encoder_dir)
        predictions: dict = {}
        scorers = self.scorers(encoder, encoder_dir, record)
        rows = evaluate_scorers(scorers, data, record, self.by, self.flops, predictions)
        if encoder.states_cache is not None and "distilled" in rows:  # its encode time leaves out the pass
            rows["distilled"]["states_cache"] = True
        seed = record.seed if record else None
        return {
            "encoder": str(encoder_dir),
            "split": str(split) if split else None,
            "protocol": data.protocol,
            "seed": seed,
            "rows": rows,
            "coverage": coverage_flag_report(
                encoder, encoder_dir, data, record, rows["distilled"]["per_anchor"], scorers["distilled"].scored
            ),  # fmt: skip
            "examples": top_examples(data, predictions),
        }

    def run(self) -> int:
        import shlex
        import sys

        from influcoder.attribution.verify import require_intact
        from influcoder.core.atomic import write_json_atomic
        from influcoder.core.errors import SettingError

        if self.states_cache and self.flops:  # before any work: one of the two would be dropped silently
            raise SettingError("states_cache", "cannot go with `flops`: counting FLOPs needs the backbone pass that "
                               "the cache skips; evaluate once with each")  # fmt: skip
        if self.verify:
            require_intact([self.labels])
        from influcoder.evaluation.evaluate import per_group_table
        from influcoder.evaluation.report import markdown_tables, summarize, write_report

        runs = []
        meaning = {"task": "tasks never seen in distillation", "random": "held-out samples of training tasks"}
        for encoder_dir in self.encoder:
            run = self.evaluate_one(encoder_dir)
            runs.append(run)
            rows, protocol = run["rows"], run["protocol"]
            where = f"the split {run['split']} (protocol: {protocol}, {meaning.get(protocol, 'unrecorded')})"
            print(f"{encoder_dir} evaluated on {where if run['split'] else 'all labels'}:")
            print(self.table(rows))
            if self.by:
                print(f"\nper-anchor rho by query {self.by} (weakest first):")
                print("\n".join(per_group_table(rows, self.by)))
        if len(runs) > 1:
            print("\nover all runs:\n" + markdown_tables(summarize(runs)))
        if self.json:
            write_json_atomic(self.json, runs[0]["rows"] if len(runs) == 1 else {r["encoder"]: r["rows"] for r in runs})
        if self.report:
            write_report(self.report, runs, shlex.join(["influcoder", *sys.argv[1:]]))
            print(f"report: {self.report / 'report.html'} (and results.json, results.md)")
        return 0

    def table(self, rows: dict) -> str:
        flops = " GFLOP/sample |" if self.flops else ""
        lines = [
            "| method | per-anchor rho (mean +- std) | mean-aggregated rho | query-specific rho | pool x queries "
            f"| ms/sample | bytes/sample |{flops}",
            "|---|---|---|---|---|---|---|" + ("---|" if self.flops else ""),
        ]
        for name, r in rows.items():
            counted = r.get("flops_per_sample")
            cell = (f" {counted / 1e9:.3g} |" if counted is not None else " not counted |") if self.flops else ""
            stored = "-" if r["bytes_per_sample"] is None else format(r["bytes_per_sample"], ",.0f")
            lines.append(
                f"| {name} | {r['per_anchor_mean']:.4f} +- {r['per_anchor_std']:.4f} | {r['mean_aggregated']:.4f} | "
                f"{r['query_specific_mean']:.4f} | {r['n_pool']} x {r['n_queries']} | "
                f"{r['encode_ms_per_sample']:.1f} | {stored} |{cell}"
            )
        return "\n".join(lines)


@dataclass(kw_only=True)
class Demo(Command):
    """Run the whole pipeline on the embedded defaults, with a short report.

    label (SmolLM2-135M gradients of `evals` pool x `bbh` queries) -> distill (a ridge on the decoder's own
    response states, queries scored by their exact gradients) -> evaluate on a held-out split -> index ->
    attribute -> filter, then a short report. Minutes on 2 CPU cores at the
    default sizes (docs/results/demo.md); every figure is computed in the run; stages resume.
    """

    positive = ("pool_size", "query_size", "max_length", "proj_dim")

    out: Path = Path("runs/demo")
    """Where the demo writes."""
    pool_size: int = 200
    """Pool samples."""
    query_size: int = 60
    """Query samples."""
    objective: Literal["subspace", "influcoder"] = "subspace"
    """What the encoder learns (`distill --objective`): subspace, the default, or the paper's cosine objective."""
    encoder: str | None = None
    """The encoder's backbone (`distill --encoder`; default: distill's, the labels' decoder for subspace)."""
    epochs: int | None = None
    """Distillation epochs (default: the objective's demo setting: none for subspace, whose default backbone,
    the labels' decoder, stays frozen; 4 for influcoder)."""
    lr: float | None = None
    """Distillation learning rate (default: the objective's demo setting, 5e-5 for subspace, 1e-4 for influcoder)."""
    max_length: int = 256
    """Tokens per sample."""
    proj_dim: int = 32768
    """CountSketch dim."""
    seed: int = 0
    """Seed of the data draw, the adapter, the sketch and the training."""
    quiet: Quiet = False
    device: Device = "auto"

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> DemoReport:
        """The demo's report: `main` prints its summary on stdout (the stages log to stderr)."""
        from influcoder.experiments.demo import run_demo

        return run_demo(
            self.out,
            self.pool_size,
            self.query_size,
            self.epochs,
            self.lr,
            self.max_length,
            self.proj_dim,
            self.seed,
            self.device,
            objective=self.objective,
            encoder=self.encoder,
        )
