"""Labelling beyond one process: the gradient job as a picklable factory for `run_shards_on_ray`.

The job carries a path, not the samples: the driver writes the samples once as JSONL beside the store (on the
filesystem every node shares, as the store itself must be), and each actor streams it (`JsonlSamples`), so
neither the task sent to an actor nor an actor's memory holds the pool's texts — one shard's at a time, as in
the local path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from influcoder.core.ray import RayOptions, run_shards_on_ray
from influcoder.data.records import Sample
from influcoder.labels.settings import LabelSettings

SHARED_SAMPLES = "samples.jsonl"
"""The samples of a store, written into it for Ray actors to stream."""


@dataclass
class GradientShardJob:
    """Picklable factory of the labelling job: load the decoder + LoRA once, then featurize shards."""

    settings: LabelSettings
    samples_path: str
    store_path: str
    batch_tokens: int
    """The driver's token budget per batch (--batch-tokens, or what --max-memory measured on the longest
    sample of the whole pool: an actor sees one shard at a time, so it cannot measure that itself)."""

    def __call__(self) -> Callable[[int], None]:
        from influcoder.core.store import FeatureStore
        from influcoder.data.stream import JsonlSamples
        from influcoder.labels.featurizer import GradientFeaturizer

        featurizer = GradientFeaturizer(self.settings)
        featurizer.batch_tokens = self.batch_tokens
        store = FeatureStore(self.store_path)
        samples = JsonlSamples(self.samples_path, allow_empty_response=True)

        def job(shard: int) -> None:
            rows = store.shard_rows(shard)
            tokenized = featurizer.tokenize([samples[i] for i in rows])
            store.write_shard(shard, featurizer.featurize_tokenized(tokenized))

        return job


def ray_shard_runner(
    settings: LabelSettings, ray: RayOptions
) -> Callable[[Sequence[Sample], str, list[int], int], None]:
    """A `run_shards` for `GradientFeaturizer.featurize_to_store`: the missing shards on Ray Data actors."""

    def run(samples: Sequence[Sample], store_path: str, missing: list[int], batch_tokens: int) -> None:
        from influcoder.data.formats import write_samples

        shared = Path(store_path) / SHARED_SAMPLES
        write_samples(samples, shared)
        job = GradientShardJob(settings, str(shared), store_path, batch_tokens)
        run_shards_on_ray(job, missing, ray.address, ray.num_actors, ray.gpus_per_actor)
        shared.unlink()  # label keeps its own pool.jsonl / queries.jsonl; a rerun writes this again

    return run
