"""CLI commands of the pipeline stages (`label`, `fidelity`, `demo`): parse, call the library, print."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from influcoder.encoder.losses import PEARSON_CENTERINGS
from influcoder.encoder.model import POOLINGS
from influcoder.labels.settings import LabelSettings


def _field_help(cls, name: str) -> str:
    """A settings field's docstring, so the dataclass is the single source of the CLI help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                return str(following.value.value)
    return ""


def add_settings_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the settings dataclass `cls`, help text from the field's docstring."""
    defaults = cls()
    choices = {
        "projector": ["countsketch", "rademacher", "identity"],
        "dtype": ["float32", "float16"],
        "pooling": list(POOLINGS),
        "pearson_center": list(PEARSON_CENTERINGS),
    }
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{_field_help(cls, f.name)} (default: {default})"
        if f.name == "chat_template":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="+", default=default, help=help_text)
        elif f.name in ("alpha", "head_dim", "adapter"):
            kind = {"alpha": float, "head_dim": int, "adapter": str}[f.name]
            parser.add_argument(flag, type=kind, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, choices=choices.get(f.name), help=help_text)


def add_label_settings(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser, LabelSettings)


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the shards on Ray Data actors: a cluster ADDRESS, or a local Ray when omitted",
    )
    parser.add_argument(
        "--ray-actors", type=int, help="number of model-holding actors (default: one per GPU, else one per CPU)"
    )
    parser.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="GPUs per actor (default 0)")


def ray_options(args: argparse.Namespace):
    if not getattr(args, "ray", None):
        return None
    from influcoder.core.ray import RayOptions

    return RayOptions(None if args.ray == "local" else args.ray, args.ray_actors, args.ray_gpus_per_actor)


def settings_of(cls, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _load(source: str, limit: int | None, seed: int, args: argparse.Namespace):
    from influcoder.data.loading import load_samples

    return load_samples(
        source, limit=limit, seed=seed, prompt_field=args.prompt_field, response_field=args.response_field
    )


def _print_top(matrix, pool, queries, k: int = 3, n_queries: int = 3) -> None:
    from influcoder.labels.influence import top_k

    texts = {s.id: s for s in pool}
    order, values = top_k(matrix.scores, k, axis=0)
    for j, query in enumerate(queries[:n_queries]):
        print(f"\nquery {query.id}: {query.prompt[:90]!r}")
        for rank, (i, v) in enumerate(zip(order[j], values[j]), 1):
            sample = texts[matrix.pool_ids[i]]
            print(f"  {rank}. {v:+.3f}  {sample.id}: {sample.prompt[:70]!r} -> {sample.response[:40]!r}")


def _cmd_label(args: argparse.Namespace) -> int:
    from influcoder.labels.labelling import label

    settings = settings_of(LabelSettings, args)
    pool = _load(args.pool, args.pool_limit, args.data_seed, args)
    queries = _load(args.queries, args.query_limit, args.data_seed, args)
    print(
        f"labelling {len(pool)} pool x {len(queries)} queries with {settings.model} "
        f"(LoRA r={settings.rank}, {settings.projector} {settings.proj_dim}) -> {args.out}"
    )
    started = time.perf_counter()
    matrix = label(
        pool, queries, args.out, settings, overwrite=args.overwrite, progress=not args.quiet, ray=ray_options(args)
    )
    seconds = time.perf_counter() - started
    print(f"wrote {args.out}/influence (pool x queries = {matrix.scores.shape}) in {seconds:.0f} s")
    if not args.quiet:
        _print_top(matrix, pool, queries)
    return 0


def _cmd_merge_labels(args: argparse.Namespace) -> int:
    from influcoder.labels.merge import merge_labels

    matrix = merge_labels(args.parts, args.out)
    print(f"wrote {args.out} (pool x queries = {matrix.scores.shape}) from {len(args.parts)} labels directories")
    return 0


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from influcoder.labels.fidelity import projection_fidelity

    settings = settings_of(LabelSettings, args)
    samples = _load(args.data, args.limit, args.data_seed, args)
    rows = projection_fidelity(samples, settings, args.dims, progress=not args.quiet)
    print(
        f"\nprojection fidelity on {len(samples)} samples ({len(samples) * (len(samples) - 1) // 2} pairs), "
        f"LoRA dim {rows[0]['in_dim']:,}"
    )
    print("| projector | dim | Spearman vs exact | Pearson | max abs error | mean abs error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['projector']} | {r['dim']:,} | {r['spearman']:.4f} | {r['pearson']:.4f} | "
            f"{r['max_abs_error']:.4f} | {r['mean_abs_error']:.4f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from influcoder.encoder.distill import distill_labels
    from influcoder.encoder.settings import DistillSettings

    settings = settings_of(DistillSettings, args)
    logs = distill_labels(
        args.labels,
        args.out,
        settings,
        args.eval_pool,
        args.eval_queries,
        progress=not args.quiet,
        eval_split=args.eval_split,
        overwrite=args.overwrite,
    )
    best = max(logs, key=lambda log: log.val_per_anchor)
    print(
        f"best epoch {best.epoch}: validation per-anchor rho {best.val_per_anchor:.4f}, mean-aggregated rho "
        f"{best.val_mean_aggregated:.4f}; encoder saved to {args.out}/best (last epoch: {args.out}/last)"
    )
    if args.eval_pool or args.eval_queries or args.eval_split:
        print(f"held-out split for `influcoder evaluate`: {args.out}/eval_split.json")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.evaluation.evaluate import evaluate_encoder, per_group_table, training_record

    split = args.split
    if split is None and (Path(args.encoder) / "eval_split.json").exists():
        split = str(Path(args.encoder) / "eval_split.json")
    if split is None and (Path(args.encoder).parent / "eval_split.json").exists():
        split = str(Path(args.encoder).parent / "eval_split.json")
    encoder = InfluenceEncoder.from_pretrained(args.encoder)
    rows = {"distilled": evaluate_encoder(encoder, args.labels, split, training_record(args.encoder), args.by)}
    if args.untrained:
        fresh = InfluenceEncoder.from_backbone(
            encoder.config.backbone, pooling=encoder.config.pooling, max_length=encoder.config.max_length
        )
        rows["untrained"] = evaluate_encoder(fresh, args.labels, split, group_by=args.by)
    print(f"evaluation on {'the split ' + split if split else 'all labels'}:")
    print("| model | per-anchor rho (mean +- std) | mean-aggregated rho | pool x queries | encode ms/sample |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['per_anchor_mean']:.4f} +- {r['per_anchor_std']:.4f} | {r['mean_aggregated']:.4f} | "
            f"{r['n_pool']} x {r['n_queries']} | {r['encode_ms_per_sample']:.1f} |"
        )
    if args.by:
        print(f"\nper-anchor rho by query {args.by} (weakest first):")
        print("\n".join(per_group_table(rows, args.by)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from influcoder.demo import run_demo

    return run_demo(args)


def add_commands(sub) -> None:
    from influcoder.cli.main import EPILOG_SOURCES, _add_data_options

    p = sub.add_parser(
        "label",
        help="step 1: gradient influence labels (pool x queries) of a decoder",
        description="Computes per-example LoRA gradients of the response-only loss for the pool and the queries "
        "(batched, exact), compresses them (CountSketch by default), stores them in resumable shards, and writes "
        "the pool x query cosine influence matrix. Rerunning with the same --out resumes.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("--pool", required=True, metavar="DATA", help="training samples to attribute")
    p.add_argument("--queries", required=True, metavar="DATA", help="query samples (test behaviour)")
    p.add_argument("--out", required=True, help="labels directory to write (resumed when it exists)")
    p.add_argument("--pool-limit", type=int, help="seeded random subset of the pool")
    p.add_argument("--query-limit", type=int, help="seeded random subset of the queries")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the subsets (default 0)")
    p.add_argument("--overwrite", action="store_true", help="discard stores made with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars or preview")
    _add_data_options(p)
    add_label_settings(p)
    add_ray_options(p)
    p.set_defaults(func=_cmd_label)

    p = sub.add_parser(
        "merge-labels",
        help="join labels directories of disjoint pools labelled against the same queries",
        description="Label a large pool in parts (several runs or machines, same settings, same --queries), "
        "then join them into one labels directory. Refuses parts whose feature settings or queries differ, or "
        "whose pools share an id.",
    )
    p.add_argument("parts", nargs="+", metavar="LABELS_DIR", help="directories written by `influcoder label`")
    p.add_argument("--out", required=True, help="the merged labels directory to write")
    p.set_defaults(func=_cmd_merge_labels)

    p = sub.add_parser(
        "fidelity",
        help="how well a projection preserves gradient cosines (paper appendix A.1)",
        description="Computes exact LoRA gradients of DATA and their projections at each --dims, and reports "
        "Spearman / Pearson / max abs error of sketched vs exact pairwise cosines.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("--data", default="evals", metavar="DATA", help="samples to compare on (default evals)")
    p.add_argument("--limit", type=int, default=32, help="number of samples (default 32)")
    p.add_argument("--dims", type=int, nargs="+", default=[8192, 32768, 65536], help="projection dims to check")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the subset")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--quiet", action="store_true")
    _add_data_options(p)
    add_label_settings(p)
    p.set_defaults(func=_cmd_fidelity)

    from influcoder.encoder.settings import DistillSettings

    p = sub.add_parser(
        "distill",
        help="step 2: distil a labels directory into an influence encoder",
        description="Trains an encoder (default: the embedded MiniLM-L6) so that cosines of its embeddings "
        "reproduce the gradient influence of a labels directory: alpha * (1 - Pearson) + (1 - alpha) * "
        "tempered-softmax KL over B queries x C candidates per step. A validation part of the training pool and "
        "queries selects the best epoch; --eval-pool/--eval-queries hold out a test split it never sees. "
        "Rerunning the same command after an interruption resumes after the last finished epoch.",
    )
    p.add_argument("--labels", required=True, help="a directory written by `influcoder label`")
    p.add_argument("--out", required=True, help="output directory (best/, last/, training.json)")
    p.add_argument("--overwrite", action="store_true", help="discard a run of other settings or labels found in --out")
    p.add_argument("--eval-pool", type=int, default=0, help="pool samples held out for evaluation (default 0)")
    p.add_argument("--eval-queries", type=int, default=0, help="queries held out for evaluation (default 0)")
    p.add_argument(
        "--eval-split",
        metavar="JSON",
        help="hold out exactly these items: a file with pool_ids and query_ids (e.g. an earlier eval_split.json)",
    )
    p.add_argument("--quiet", action="store_true")
    add_settings_options(p, DistillSettings)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser(
        "evaluate",
        help="Spearman of an encoder's predicted influence against ground-truth labels",
        description="Per-anchor Spearman (per query over the pool, mean +- std) and mean-aggregated Spearman "
        "(scores averaged over queries) of an encoder against a labels directory, on the held-out split its "
        "distill run wrote (eval_split.json) or on all labels; refuses to score items it was trained on.",
    )
    p.add_argument("--encoder", required=True, help="an encoder directory (or a distill output directory)")
    p.add_argument("--labels", required=True, help="a directory written by `influcoder label`")
    p.add_argument("--split", help="a JSON file with pool_ids and query_ids (default: the encoder's eval_split.json)")
    p.add_argument("--untrained", action="store_true", help="also score the untrained backbone (Semantic baseline)")
    p.add_argument(
        "--by",
        metavar="META_KEY",
        help="also report per-anchor rho per group of queries sharing this meta field (e.g. task)",
    )
    p.add_argument("--json", help="also write the rows as JSON here")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded defaults, with a short report",
        description="label (SmolLM2-135M gradients of `evals` pool x `bbh` queries) -> distill MiniLM-L6 -> "
        "evaluate on a held-out split -> index -> attribute -> filter, then a short report. About 15 minutes "
        "on 2 CPU cores at the default sizes; every figure is computed in the run; stages resume.",
    )
    p.add_argument("--out", default="runs/demo", help="where the demo writes (default runs/demo)")
    p.add_argument("--pool-size", type=int, default=200, help="pool samples (default 200)")
    p.add_argument("--query-size", type=int, default=60, help="query samples (default 60)")
    p.add_argument("--epochs", type=int, default=4, help="distillation epochs (default 4)")
    p.add_argument("--lr", type=float, default=1e-4, help="distillation learning rate (default 1e-4)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per sample (default 256)")
    p.add_argument("--proj-dim", type=int, default=32768, help="CountSketch dim (default 32768)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
