"""`influcoder index`, `attribute` and `filter`: step 3, attribution at encoder speed."""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from influcoder.cli.options import Command, Device, Distributed, Input, InputOptions, Quiet, RayFlags
from influcoder.core.atomic import atomic_output

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Index(Command):
    """Step 3: encode a pool once and build a FAISS index over it.

    Streams the pool through a distilled encoder in resumable shards, stores the embeddings (float16 by
    default) with the sample ids, and builds a FAISS inner-product index (exact by default; any FAISS factory
    string, e.g. IVF1024,PQ32, for large pools). --append adds samples to an existing index without touching
    what is there. With --ray the shards are encoded by Ray Data actors (the same embeddings).
    """

    positive = ("limit", "shard_size", "batch_size")

    encoder: Path
    """A distilled encoder directory."""
    pool: str
    """The samples to index (DATA)."""
    out: Path
    """Index directory."""
    limit: int | None = None
    """Seeded random subset of the pool."""
    data_seed: int = 0
    """Seed of the subset."""
    append: bool = False
    """Add to an existing index (ids must be new)."""
    overwrite: bool = False
    """Replace an existing index."""
    dtype: Literal["float16", "float32"] = "float16"
    """Stored embedding dtype."""
    index_factory: str = "Flat"
    """FAISS index factory string (Flat: exact)."""
    shard_size: int = 1024
    """Samples per resumable shard."""
    batch_size: int = 32
    """Encoder batch size."""
    backend: Literal["torch", "int8"] = "torch"
    """How the encoder runs: torch (float), or int8 (dynamic int8 linear layers, CPU only: faster, embeddings
    slightly different; attribute and filter then embed queries the same way). Measured speed and fidelity:
    benchmarks/results/encoder_speed.md."""

    quiet: Quiet = False
    device: Device = "auto"
    input: Input = field(default_factory=InputOptions)
    distributed: Distributed = field(default_factory=RayFlags)

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> int:
        from influcoder.attribution.index import EmbeddingIndex
        from influcoder.encoder.coverage import CoverageReference
        from influcoder.encoder.model import InfluenceEncoder

        device = "cpu" if self.backend != "torch" and self.device == "auto" else self.device
        encoder = InfluenceEncoder.from_pretrained(self.encoder, device=device, backend=self.backend)
        pool = self.input.load(self.pool, self.limit, self.data_seed, stream=True)  # JSONL: texts stay on disk
        started = time.perf_counter()
        index = EmbeddingIndex.build(
            encoder,
            pool,
            self.out,
            append=self.append,
            dtype=self.dtype,
            index_factory=self.index_factory,
            shard_size=self.shard_size,
            batch_size=self.batch_size,
            overwrite=self.overwrite,
            encoder_path=self.encoder,
            ray=self.distributed.options(),
        )
        seconds = time.perf_counter() - started
        print(
            f"{self.out}: {len(index):,} samples ({'+' if self.append else ''}{len(pool):,} this run, "
            f"{seconds:.1f} s), dim {index.dim}, {index.manifest.dtype}, FAISS "
            f"'{index.manifest.index_factory}', {index.bytes_per_sample():.0f} bytes/sample"
        )
        reference = CoverageReference.load(self.encoder)
        if reference is None:
            print("coverage: the encoder has no coverage reference (distilled before it existed); no flags")
        else:
            record = index.write_coverage(reference)
            print(
                f"coverage: {record['share_covered']:.1%} of the pool lies within what the encoder was distilled on "
                f"(mean cosine to its {record['k']} nearest labelled samples >= {record['threshold']:.3f})"
            )
        return 0


@dataclass(kw_only=True)
class Scoring(Command):
    """Options of the commands that score queries against an index."""

    index: Path
    """An index directory."""
    queries: str
    """Query samples (DATA)."""
    encoder: Path | None = None
    """Encoder directory (default: the one recorded in the index)."""
    limit: int | None = None
    """Seeded random subset of the queries."""
    data_seed: int = 0
    """Seed of the subset."""
    verify: bool = False
    """Check every file of the artifacts it reads before reading, each against its recorded sha256 (as
    `influcoder verify`); the check on every read compares sizes (and hashes only small files read whole)."""

    query_side: Literal["exact", "encoded"] = "exact"
    """With a subspace encoder (`distill --objective subspace`): score each query by its exact gradient's
    coordinates (one decoder pass and backward per query, with the decoder the labels used) or by the
    encoder's prediction from its text (no decoder). Other encoders always encode."""

    device: Device = "auto"
    input: Input = field(default_factory=InputOptions)

    def open(self):
        from influcoder.attribution.influcoder import Influcoder
        from influcoder.attribution.verify import require_intact

        if self.verify:
            require_intact([self.index])
        return Influcoder.from_index(self.index, self.encoder, device=self.device, query_side=self.query_side)


@dataclass(kw_only=True)
class Attribute(Scoring):
    """Top-k most influential pool samples for each query.

    Encodes the queries and retrieves the k pool samples with the highest predicted influence (cosine of
    influence embeddings) from an index; prints a table, or writes JSONL/CSV. --audit N recomputes exact
    gradient influence on N pool samples (the top-k included) with the decoder the encoder was distilled
    from, and reports how well the encoder agrees on this data.
    """

    positive = ("limit", "k", "nprobe")
    non_negative = ("audit", "rescore")

    k: Annotated[int, tyro.conf.arg(aliases=("-k",))] = 10
    """Results per query."""
    nprobe: int | None = None
    """IVF lists probed per query (IVF indexes only)."""
    format: Literal["table", "jsonl", "csv"] | None = None
    """Output format (default: table on a terminal, else by --out's suffix)."""
    out: Path | None = None
    """Write results here instead of standard output."""
    audit: int = 0
    """Fidelity audit on this many pool samples (0: none)."""
    rescore: int = 0
    """Retrieve, then rescore: take the encoder's top RESCORE per query and return the k of them with the highest
    *exact* gradient influence (one decoder pass and backward per candidate and query, with the decoder, adapter
    and projection the encoder was distilled from). 0: the encoder's own top-k. Rows then hold the exact cosine
    as `score` and the encoder's as `encoder_score`."""
    rescore_rounds: Literal[1, 2] = 2
    """How the RESCORE candidates are picked: 2 (default): the encoder's top two thirds, then the samples
    nearest (in the encoder's space) to the best exact hit among them; 1: the encoder's top RESCORE. Two rounds
    find more of the exact top-k for the same number of gradients (docs/results/transfer.md)."""
    report: Path | None = None
    """Also write DIR/index.html: the `influcoder serve` explorer page with these results (hits, flags, each
    query's whole-pool score histogram) embedded, which opens offline from the file."""

    quiet: Quiet = False

    def config_path(self) -> Path | None:
        return self.out.with_name(self.out.name + ".config.yaml") if self.out else None

    def run(self) -> int:
        ic = self.open()
        queries = self.input.load(self.queries, self.limit, self.data_seed)
        if self.rescore:
            results = ic.rescore(
                queries, k=self.k, candidates=self.rescore, nprobe=self.nprobe, rounds=self.rescore_rounds
            )
        else:
            results = ic.attribute(queries, k=self.k, nprobe=self.nprobe)
        rows = _result_rows(ic, results)
        if self.out:  # atomically: a failed run leaves no half-written results file
            fmt = self.format or self.out.suffix.lstrip(".") or "jsonl"
            with atomic_output(self.out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
                _write_results(out, fmt, rows, queries, results)
        else:
            _write_results(sys.stdout, self.format or "table", rows, queries, results)
        if ic.coverage_reference is not None:
            _warn_outside_coverage(ic, queries, results)
        if self.report:
            from influcoder.serve.report import write_report

            page = write_report(self.report, ic, queries, results, self.k)
            # where the page asked for is: a result, so shown under --quiet too (not a log message)
            print(f"report: {page} (open it in a browser; it needs no server)", file=sys.stderr)
        if self.audit:
            self._print_audit(ic, queries, results)
        return 0

    def _print_audit(self, ic, queries, results) -> None:
        """--audit: exact gradient influence on --audit pool samples against the encoder's scores."""
        from influcoder.attribution.audit import audit_attribution

        report = audit_attribution(ic, queries, results, self.audit, seed=self.data_seed, device=self.device)
        print(
            f"\nfidelity audit: Spearman(encoder, exact gradient influence) over {report['n_pool']} pool "
            f"samples x {report['n_queries']} queries: per-anchor {report['per_anchor_mean']:.3f} +- "
            f"{report['per_anchor_std']:.3f}, mean-aggregated {report['mean_aggregated']:.3f}"
        )


def _result_rows(ic, results) -> list[dict]:
    """One output row per hit; with a coverage reference, each hit's and its query's coverage and spread flags."""
    reference, query_coverage = ic.coverage_reference, ic.query_coverage

    def flags(a) -> dict:
        if reference is None:
            return {}
        return {
            "coverage": None if a.coverage is None else round(a.coverage, 4),
            "covered": a.covered,
            "query_coverage": round(query_coverage[a.query_id], 4),
            "query_covered": bool(reference.covered(query_coverage[a.query_id])),
            "query_spread": round(ic.query_spread[a.query_id], 4),
            "query_confident": bool(reference.confident(ic.query_spread[a.query_id])),
        }

    return [
        {
            "query_id": a.query_id,
            "rank": a.rank,
            "score": round(a.score, 6),
            "pool_id": a.sample.id,
            "prompt": a.sample.prompt,
            "response": a.sample.response,
            **({"encoder_score": round(a.encoder_score, 6)} if a.encoder_score is not None else {}),
            **flags(a),
        }
        for hits in results
        for a in hits
    ]


def _warn_outside_coverage(ic, queries, results) -> None:
    """How many queries and hits lie outside the encoder's coverage, and how many queries it cannot rank."""
    reference = ic.coverage_reference
    outside = sum(not reference.covered(v) for v in ic.query_coverage.values())
    hits = [a for h in results for a in h if a.covered is not None]
    log.warning(
        f"\ncoverage: {outside} of {len(queries)} queries and "
        f"{sum(not a.covered for a in hits)} of {len(hits)} results lie outside what the encoder was "
        "distilled on (their scores are less trustworthy; --audit checks them against exact gradients)"
    )
    if reference.spread_threshold is not None:
        unsure = sum(not reference.confident(v) for v in ic.query_spread.values())
        log.warning(
            f"spread: {unsure} of {len(queries)} queries get scores that hardly differ across the pool "
            f"(spread below {reference.spread_threshold:.4f}, the validation queries' "
            f"{reference.quantile:.0%} quantile): the encoder cannot rank the pool for them, their top-k "
            "is close to arbitrary"
        )


def _write_results(out, fmt: str, rows: list[dict], queries, results) -> None:
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["query_id"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        _write_table(out, queries, results)


def _write_table(out, queries, results) -> None:
    texts = {q.id: q for q in queries}
    for hits in results:
        if not hits:
            continue
        q = texts[hits[0].query_id]
        out.write(f"\nquery {q.id}: {_clip(q.prompt, 100)}\n")
        for a in hits:
            flag = "  [outside coverage]" if a.covered is False else ""
            out.write(
                f"  {a.rank:>3}. {a.score:+.4f}  {a.sample.id}: {_clip(a.sample.prompt, 60)} -> "
                f"{_clip(a.sample.response, 40)}{flag}\n"
            )


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


DropGroup = tyro.conf.create_mutex_group(required=True, title="how much to drop (one of)")


@dataclass(kw_only=True)
class Filter(Scoring):
    """Score a whole indexed pool against a query set and drop the most influential part.

    Scores every pool sample by its mean (DATE-LM) or max predicted influence on the query set, drops the
    top --drop-fraction or --drop-top, and writes the kept and dropped samples (format by file suffix:
    .jsonl, .csv, .parquet) plus a scores file. kept + dropped = the pool, disjoint.
    """

    positive = ("limit", "drop_top")

    drop_fraction: Annotated[float | None, DropGroup] = None
    """Fraction of the pool to drop."""
    drop_top: Annotated[int | None, DropGroup] = None
    """Number of pool samples to drop."""
    kept: Path
    """Output file of the kept samples."""
    dropped: Path
    """Output file of the dropped samples."""
    scores: Path | None = None
    """Scores JSONL (default: beside --kept)."""
    aggregate: Literal["mean", "max"] = "mean"
    """How a pool sample's scores over the queries combine."""

    quiet: Quiet = False

    def scores_path(self) -> Path:
        return self.scores or self.kept.with_name(self.kept.stem + ".scores.jsonl")

    def config_path(self) -> Path:
        return self.scores_path().with_suffix(".config.yaml")

    def run(self) -> int:
        from influcoder.core.atomic import atomic_output, write_json_atomic
        from influcoder.data.formats import detect_format, write_samples_as

        ic = self.open()
        queries = self.input.load(self.queries, self.limit, self.data_seed)
        for target in (self.kept, self.dropped):
            detect_format(target)  # refuse an unknown output type before any work
        result = ic.filter(queries, drop_fraction=self.drop_fraction, drop_top=self.drop_top, aggregate=self.aggregate)
        write_samples_as(result.kept, self.kept)
        write_samples_as(result.dropped, self.dropped)
        dropped = set(result.dropped.ids)
        scores_path = self.scores_path()
        with atomic_output(scores_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for sid, score in zip(result.ids, result.scores):
                handle.write(json.dumps({"id": sid, "score": float(score), "dropped": sid in dropped}) + "\n")
        write_json_atomic(
            scores_path.with_suffix(".summary.json"),
            {
                "queries": self.queries,
                "n_queries": len(queries),
                "aggregate": self.aggregate,
                "n_pool": len(result.ids),
                "n_kept": len(result.kept),
                "n_dropped": len(result.dropped),
            },
        )
        print(
            f"kept {len(result.kept):,} -> {self.kept}; dropped {len(result.dropped):,} -> {self.dropped}; "
            f"scores -> {scores_path}"
        )
        return 0
