"""CLI commands of step 3 (`index`, `attribute`, `filter`): parse, call `Influcoder`, print or write."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def _load(source: str, args: argparse.Namespace, limit: int | None = None):
    from influcoder.cli.pipeline import _load as load

    return load(source, limit, getattr(args, "data_seed", 0), args)


def _cmd_index(args: argparse.Namespace) -> int:
    import time

    from influcoder.attribution.index import EmbeddingIndex
    from influcoder.encoder.model import InfluenceEncoder

    encoder = InfluenceEncoder.from_pretrained(args.encoder)
    pool = _load(args.pool, args, args.limit)
    started = time.perf_counter()
    index = EmbeddingIndex.build(
        encoder,
        pool,
        args.out,
        append=args.append,
        dtype=args.dtype,
        index_factory=args.index_factory,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        progress=not args.quiet,
        overwrite=args.overwrite,
        encoder_path=args.encoder,
    )
    seconds = time.perf_counter() - started
    print(
        f"{args.out}: {len(index):,} samples ({'+' if args.append else ''}{len(pool):,} this run, "
        f"{seconds:.1f} s), dim {index.dim}, {index.manifest['dtype']}, FAISS '{index.manifest['index_factory']}', "
        f"{index.bytes_per_sample():.0f} bytes/sample"
    )
    return 0


def _open(args: argparse.Namespace):
    from influcoder.attribution.influcoder import Influcoder

    return Influcoder.from_index(args.index, args.encoder)


def _cmd_attribute(args: argparse.Namespace) -> int:
    ic = _open(args)
    queries = _load(args.queries, args, args.limit)
    results = ic.attribute(queries, k=args.k, nprobe=args.nprobe)
    rows = [
        {
            "query_id": a.query_id,
            "rank": a.rank,
            "score": round(a.score, 6),
            "pool_id": a.sample.id,
            "prompt": a.sample.prompt,
            "response": a.sample.response,
        }
        for hits in results
        for a in hits
    ]
    out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout
    fmt = args.format or ("table" if out.isatty() or not args.out else Path(args.out).suffix.lstrip(".") or "jsonl")
    try:
        if fmt == "jsonl":
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["query_id"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            texts = {q.id: q for q in queries}
            for hits in results:
                if not hits:
                    continue
                q = texts[hits[0].query_id]
                out.write(f"\nquery {q.id}: {_clip(q.prompt, 100)}\n")
                for a in hits:
                    out.write(
                        f"  {a.rank:>3}. {a.score:+.4f}  {a.sample.id}: {_clip(a.sample.prompt, 60)} -> "
                        f"{_clip(a.sample.response, 40)}\n"
                    )
    finally:
        if args.out:
            out.close()
    if args.audit:
        from influcoder.attribution.audit import audit_attribution

        report = audit_attribution(ic, queries, results, args.audit, seed=args.data_seed, progress=not args.quiet)
        print(
            f"\nfidelity audit: Spearman(encoder, exact gradient influence) over {report['n_pool']} pool samples "
            f"x {report['n_queries']} queries: per-anchor {report['per_anchor_mean']:.3f} +- "
            f"{report['per_anchor_std']:.3f}, mean-aggregated {report['mean_aggregated']:.3f}"
        )
    return 0


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _cmd_filter(args: argparse.Namespace) -> int:
    from influcoder.core.atomic import atomic_output, write_json_atomic
    from influcoder.data.formats import detect_format, write_samples_as

    ic = _open(args)
    queries = _load(args.queries, args, args.limit)
    for target in (args.kept, args.dropped):
        detect_format(Path(target))  # refuse an unknown output type before any work
    result = ic.filter(queries, drop_fraction=args.drop_fraction, drop_top=args.drop_top, aggregate=args.aggregate)
    write_samples_as(result.kept, args.kept)
    write_samples_as(result.dropped, args.dropped)
    dropped = {s.id for s in result.dropped}
    scores_path = (
        Path(args.scores) if args.scores else Path(args.kept).with_name(Path(args.kept).stem + ".scores.jsonl")
    )
    with atomic_output(scores_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for sid, score in zip(result.ids, result.scores):
            handle.write(json.dumps({"id": sid, "score": float(score), "dropped": sid in dropped}) + "\n")
    write_json_atomic(
        scores_path.with_suffix(".summary.json"),
        {
            "queries": args.queries,
            "n_queries": len(queries),
            "aggregate": args.aggregate,
            "n_pool": len(result.ids),
            "n_kept": len(result.kept),
            "n_dropped": len(result.dropped),
        },
    )
    print(
        f"kept {len(result.kept):,} -> {args.kept}; dropped {len(result.dropped):,} -> {args.dropped}; "
        f"scores -> {scores_path}"
    )
    return 0


def add_commands(sub) -> None:
    from influcoder.cli.main import EPILOG_SOURCES, _add_data_options

    p = sub.add_parser(
        "index",
        help="step 3: encode a pool once and build a FAISS index over it",
        description="Streams the pool through a distilled encoder in resumable shards, stores the embeddings "
        "(float16 by default) with the sample ids, and builds a FAISS inner-product index (exact by default; "
        "any FAISS factory string, e.g. IVF1024,PQ32, for large pools). --append adds samples to an existing "
        "index without touching what is there.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("--encoder", required=True, help="a distilled encoder directory")
    p.add_argument("--pool", required=True, metavar="DATA", help="the samples to index")
    p.add_argument("--out", required=True, help="index directory")
    p.add_argument("--limit", type=int, help="seeded random subset of the pool")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--append", action="store_true", help="add to an existing index (ids must be new)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="stored embedding dtype")
    p.add_argument("--index-factory", default="Flat", help="FAISS index factory string (default Flat: exact)")
    p.add_argument("--shard-size", type=int, default=1024, help="samples per resumable shard")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch size")
    p.add_argument("--quiet", action="store_true")
    _add_data_options(p)
    from influcoder.cli.pipeline import add_ray_options

    add_ray_options(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser(
        "attribute",
        help="top-k most influential pool samples for each query",
        description="Encodes the queries and retrieves the k pool samples with the highest predicted influence "
        "(cosine of influence embeddings) from an index; prints a table, or writes JSONL/CSV. --audit N "
        "recomputes exact gradient influence on N pool samples (the top-k included) with the decoder the "
        "encoder was distilled from, and reports how well the encoder agrees on this data.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("--index", required=True, help="an index directory")
    p.add_argument("--queries", required=True, metavar="DATA")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--encoder", help="encoder directory (default: the one recorded in the index)")
    p.add_argument("--limit", type=int, help="seeded random subset of the queries")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--nprobe", type=int, help="IVF lists probed per query (IVF indexes only)")
    p.add_argument(
        "--format", choices=["table", "jsonl", "csv"], help="default: table on a terminal, else by --out's suffix"
    )
    p.add_argument("--out", help="write results here instead of standard output")
    p.add_argument("--audit", type=int, default=0, metavar="N", help="fidelity audit on N pool samples")
    p.add_argument("--quiet", action="store_true")
    _add_data_options(p)
    p.set_defaults(func=_cmd_attribute)

    p = sub.add_parser(
        "filter",
        help="score a whole indexed pool against a query set and drop the most influential part",
        description="Scores every pool sample by its mean (DATE-LM) or max predicted influence on the query set, "
        "drops the top --drop-fraction or --drop-top, and writes the kept and dropped samples (format by file "
        "suffix: .jsonl, .csv, .parquet) plus a scores file. kept + dropped = the pool, disjoint.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("--index", required=True, help="an index directory")
    p.add_argument("--queries", required=True, metavar="DATA", help="examples of the behaviour to filter out")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--drop-fraction", type=float, help="fraction of the pool to drop")
    group.add_argument("--drop-top", type=int, help="number of pool samples to drop")
    p.add_argument("--kept", required=True, help="output file of the kept samples")
    p.add_argument("--dropped", required=True, help="output file of the dropped samples")
    p.add_argument("--scores", help="scores JSONL (default: beside --kept)")
    p.add_argument("--aggregate", choices=["mean", "max"], default="mean", help="over the queries (default mean)")
    p.add_argument("--encoder", help="encoder directory (default: the one recorded in the index)")
    p.add_argument("--limit", type=int, help="seeded random subset of the queries")
    p.add_argument("--data-seed", type=int, default=0)
    _add_data_options(p)
    p.set_defaults(func=_cmd_filter)
