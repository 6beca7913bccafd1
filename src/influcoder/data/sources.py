"""Built-in text sets, read from the embedded assets (see `assets`) or shipped with the package (`bundled`),
as `Sample` lists.

Each source is addressed by name, optionally with one option after a colon:

| name | what | option |
|---|---|---|
| ``evals`` | OpenAI evals chat records; the pool | a task-name prefix, e.g. ``evals:2d_movement`` |
| ``bbh`` | BIG-Bench Hard: 27 tasks, 6,511 items, gold answers (shipped); queries | a task, e.g. ``bbh:navigate`` |
| ``bbh-cot`` | 81 BBH few-shot items with chain-of-thought answers | a task |
| ``harmful-pairs`` | 400 harmful user->assistant pairs | |
| ``refusals`` | objectives with an assistant response and a human refusal score | |
| ``adv-bench``, ``donotanswer``, ``harmbench`` | harmful prompts *without responses* | |

Prompt-only sources load with an empty response (``meta["prompt_only"] = True``); labelling refuses such
samples by id, since influence is defined on response tokens. Ids name the source and position
(``bbh/navigate/17``), so they are stable across runs. (The ``bbh`` ids changed once, on 2026-12-07, when
``bbh`` moved from BIG-bench 1.0.0's task files, no longer served by the registry, to the shipped BBH files.)

`evals` holds about a million records over hundreds of tasks; reading all of it for a few hundred samples
would be slow, so it is sampled task by task: tasks in a seeded order, at most ``per_task`` records each.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from influcoder.core.errors import DataError, InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.data import assets, bundled
from influcoder.data.formats import strip_leading_comments
from influcoder.data.records import Sample, record_to_sample, subsample

EVALS_PER_TASK = 10


def _task_filter(option: str | None, names: list[str], source: str) -> list[str]:
    if option is None:
        return names
    chosen = [n for n in names if n == option or n.startswith(option)]
    if not chosen:
        raise InflucoderError(f"{source}: no task matches {option!r}; tasks: {', '.join(names[:30])}...")
    return chosen


def _load_evals(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    root = assets.fetch("evals")
    order, rng = _evals_task_order(root, option, seed)
    per_task = EVALS_PER_TASK if limit is not None else None
    out: list[Sample] = []
    for task in order:
        out += _evals_task_draw(root, task, per_task, rng)
        if limit is not None and len(out) >= limit:
            return subsample(out, limit, seed)
    if limit is not None and len(out) < limit and per_task is not None:
        return _evals_beyond_per_task(root, order, limit, seed)
    return subsample(out, limit, seed)


def evals_per_task(seed: int = 0, option: str | None = None) -> list[Sample]:
    """Every task of `evals`, at most ``EVALS_PER_TASK`` pairs each (~4,400 pairs over ~470 tasks), tasks in
    a seeded order: a draw as diverse as the source allows. A plain ``load_source("evals", limit)`` larger
    than that is a uniform sample of every pair instead, where a few huge tasks (diabetes, formal_logic) make
    over half of it; a task that needs many distinct tasks (the toxicity task's benign pairs) asks for this."""
    root = assets.fetch("evals")
    order, rng = _evals_task_order(root, option, seed)
    return [s for task in order for s in _evals_task_draw(root, task, EVALS_PER_TASK, rng)]


def _evals_task_order(root: Path, option: str | None, seed: int) -> tuple[list[str], np.random.Generator]:
    """The tasks in the draw's seeded order, and the generator that then picks each task's records."""
    files = sorted(p for p in root.rglob("*.jsonl"))
    tasks = _task_filter(option, sorted({str(p.relative_to(root).parts[0]) for p in files}), "evals")
    rng = np.random.default_rng(seed)
    return [tasks[i] for i in rng.permutation(len(tasks))], rng


def _evals_task_draw(root: Path, task: str, per_task: int | None, rng: np.random.Generator) -> list[Sample]:
    """At most `per_task` seeded pairs of `task` (all when None); draws one seed from `rng` either way."""
    picked = subsample(_evals_task_records(root, task), per_task, int(rng.integers(2**31)))
    return [s for s in (_evals_sample(task, *r) for r in picked) if s is not None]


def _evals_task_records(root: Path, task: str) -> list[tuple[str, int, dict]]:
    """(file, line, record) of every chat record of a task that has an ideal answer."""
    records = []
    for path in sorted((root / task).rglob("*.jsonl")):
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")  # JSON Lines: "\n" only
        for number, text in enumerate(lines, 1):
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("input"), list) and record.get("ideal"):
                records.append((str(path.relative_to(root)), number, record))
    return records


def _evals_sample(task: str, rel: str, number: int, record: dict) -> Sample | None:
    try:
        sample = record_to_sample(record, rel, number)
    except DataError:
        return None  # a curated source: records of other layouts (model-graded evals) are not pairs
    meta = {"task": task, **{k: v for k, v in sample.meta.items() if k == "messages"}}
    return Sample(f"evals/{rel.removesuffix('.jsonl')}/{number}", sample.prompt, sample.response, meta)


def _evals_beyond_per_task(root: Path, order: list[str], limit: int, seed: int) -> list[Sample]:
    """A draw larger than ``EVALS_PER_TASK`` x tasks (a 100K-sample pool): a seeded uniform sample of every
    pair of every task, in bounded memory (a reservoir of `limit` pairs; reading all of `evals` into memory
    takes gigabytes). It used to return the ~4,400 per-task pairs silently instead."""
    rng = np.random.default_rng([seed, limit])
    reservoir: list[Sample] = []
    seen = 0
    for task in order:
        for r in _evals_task_records(root, task):
            sample = _evals_sample(task, *r)
            if sample is None:
                continue
            seen += 1
            if len(reservoir) < limit:
                reservoir.append(sample)
            else:
                slot = int(rng.integers(seen))
                if slot < limit:
                    reservoir[slot] = sample
    if len(reservoir) < limit:
        warnings.warn(f"evals holds {len(reservoir):,} pairs; asked for {limit:,}: all are returned", stacklevel=3)
    return reservoir


def _load_bbh(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    """BIG-Bench Hard as published (suzgunmirac/BIG-Bench-Hard, shipped with the package): the input already
    lists its options, the target is the gold answer; ids ``bbh/<task>/<i>`` with `i` the item's position
    in the task's upstream file."""
    tasks = bundled.bbh_tasks()
    out = []
    for task in _task_filter(option, list(tasks), "bbh"):
        out += [Sample(f"bbh/{task}/{i}", x, y, {"task": task}) for i, (x, y) in enumerate(tasks[task])]
    return subsample(out, limit, seed)


def _load_bbh_cot(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    import yaml

    root = assets.fetch("bbh-cot")
    names = sorted(p.stem for p in root.glob("*.yaml") if not p.name.startswith("_"))
    out = []
    for task in _task_filter(option, names, "bbh-cot"):
        spec = yaml.safe_load((root / f"{task}.yaml").read_text(encoding="utf-8"))
        for i, item in enumerate(spec.get("fewshot_config", {}).get("samples", [])):
            prompt = f"Q: {item['input'].strip()}\nA: Let's think step by step."
            out.append(Sample(f"bbh-cot/{task}/{i}", prompt, item["target"].strip(), {"task": task}))
    return subsample(out, limit, seed)


def _load_harmful_pairs(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    path = assets.fetch("harmful-pairs") / "many_shot_examples.json"
    items = read_json(path, list)
    out = [Sample(f"harmful-pairs/{i}", x["user"], x["assistant"], {"harmful": True}) for i, x in enumerate(items)]
    return subsample(out, limit, seed)


def _load_refusals(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    path = assets.fetch("refusals") / "refusal.csv"
    text = strip_leading_comments(path.read_text(encoding="utf-8"))
    out = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text, newline=""))):
        meta = {"human_score": float(row["human_score"]), "data_type": row["data_type"]}
        out.append(Sample(f"refusals/{i}", row["objective"], row["assistant_response"], meta))
    return subsample(out, limit, seed)


def _prompt_only(name: str, prompts: list[str], meta: list[dict] | None = None) -> list[Sample]:
    meta = meta or [{} for _ in prompts]
    return [Sample(f"{name}/{i}", p, "", {"prompt_only": True, **m}) for i, (p, m) in enumerate(zip(prompts, meta))]


def _load_adv_bench(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    import yaml

    spec = yaml.safe_load((assets.fetch("adv-bench") / "adv_bench.prompt").read_text(encoding="utf-8"))
    seeds = spec["seeds"]
    out = _prompt_only(
        "adv-bench", [s["value"] for s in seeds], [{"harm_categories": s.get("harm_categories")} for s in seeds]
    )
    return subsample(out, limit, seed)


def _load_donotanswer(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    root = assets.fetch("donotanswer")
    prompts, meta = [], []
    for path in sorted(root.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                prompts.append(record["prompt"])
                meta.append({"category": path.stem, "intents": record.get("intents")})
    return subsample(_prompt_only("donotanswer", prompts, meta), limit, seed)


def _load_harmbench(option: str | None, limit: int | None, seed: int) -> list[Sample]:
    text = (assets.fetch("harmbench") / "harmbench_prompts.txt").read_text(encoding="utf-8")
    return subsample(_prompt_only("harmbench", [ln for ln in text.splitlines() if ln.strip()]), limit, seed)


SOURCES: dict[str, Callable[[str | None, int | None, int], list[Sample]]] = {
    "evals": _load_evals,
    "bbh": _load_bbh,
    "bbh-cot": _load_bbh_cot,
    "harmful-pairs": _load_harmful_pairs,
    "refusals": _load_refusals,
    "adv-bench": _load_adv_bench,
    "donotanswer": _load_donotanswer,
    "harmbench": _load_harmbench,
}


def is_source(name: str) -> bool:
    """True for a built-in source name (with or without ``:option``) that is not also an existing path."""
    return name.split(":", 1)[0] in SOURCES and not Path(name).exists()


def load_source(name: str, limit: int | None = None, seed: int = 0) -> list[Sample]:
    base, _, option = name.partition(":")
    if base not in SOURCES:
        raise InflucoderError(f"unknown source {base!r}; built-in sources: {', '.join(SOURCES)}")
    return SOURCES[base](option or None, limit, seed)
