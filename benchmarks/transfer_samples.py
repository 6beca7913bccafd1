"""The broad sample set of the transfer experiment (issue: transfer, design 1): every embedded source that
has responses, many tasks, written as one JSONL whose ids name source and task.

    python benchmarks/transfer_samples.py --out runs/transfer/samples.jsonl
    influcoder label --pool runs/transfer/samples.jsonl --queries SAME --all-pairs --out runs/transfer/labels

Each sample's ``meta["task"]`` is ``<source>/<task>`` (a source without tasks is one task), the unit that the
`task` protocol holds out on both sides; ``meta["source"]`` is the unit of the `source` protocol.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from influcoder.data.formats import write_samples
from influcoder.data.loading import load_samples
from influcoder.data.records import Sample, subsample
from influcoder.data.sources import evals_per_task

PER_SOURCE = {"bbh": 30, "bbh-cot": None, "harmful-pairs": 200, "refusals": None}
"""Items drawn per task (bbh, bbh-cot) or per source (harmful-pairs, refusals); None keeps all."""


def tagged(sample: Sample, source: str) -> Sample:
    task = sample.meta.get("task") or source
    return Sample(sample.id, sample.prompt, sample.response, {"task": f"{source}/{task}", "source": source})


def build(evals_per: int = 6, seed: int = 0) -> list[Sample]:
    by_task: dict[str, list[Sample]] = collections.defaultdict(list)
    for s in evals_per_task(seed):
        by_task[s.meta["task"]].append(s)
    out = [tagged(s, "evals") for items in by_task.values() for s in subsample(items, evals_per, seed)]
    for source, limit in PER_SOURCE.items():
        samples = [tagged(s, source) for s in load_samples(source)]
        if source in ("bbh", "bbh-cot"):
            groups = collections.defaultdict(list)
            for s in samples:
                groups[s.meta["task"]].append(s)
            out += [s for items in groups.values() for s in subsample(items, limit, seed)]
        else:
            out += subsample(samples, limit, seed)
    return [s for s in out if s.response.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--evals-per-task", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    samples = build(args.evals_per_task, args.seed)
    write_samples(samples, args.out)
    tasks = collections.Counter(s.meta["task"] for s in samples)
    sources = collections.Counter(s.meta["source"] for s in samples)
    print(f"{len(samples)} samples, {len(tasks)} tasks, sources {dict(sources)} -> {args.out}")


if __name__ == "__main__":
    main()
