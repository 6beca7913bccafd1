"""Labelling beyond one process: the gradient job as a picklable factory for `run_shards_on_ray`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from influcoder.core.ray import RayOptions, run_shards_on_ray
from influcoder.data.records import Sample
from influcoder.labels.settings import LabelSettings


@dataclass
class GradientShardJob:
    """Picklable factory of the labelling job: load the decoder + LoRA once, then featurize shards."""

    settings: LabelSettings
    samples: list[Sample]
    store_path: str

    def __call__(self) -> Callable[[int], None]:
        from influcoder.core.store import FeatureStore
        from influcoder.labels.featurizer import GradientFeaturizer

        featurizer = GradientFeaturizer(self.settings)
        store = FeatureStore(self.store_path)
        tokenized = featurizer.tokenize(self.samples)

        def job(shard: int) -> None:
            rows = store.shard_rows(shard)
            store.write_shard(shard, featurizer.featurize_tokenized([tokenized[i] for i in rows]))

        return job


def ray_shard_runner(settings: LabelSettings, ray: RayOptions) -> Callable[[list[Sample], str, list[int]], None]:
    """A `run_shards` for `GradientFeaturizer.featurize_to_store`: the missing shards on Ray Data actors."""

    def run(samples: list[Sample], store_path: str, missing: list[int]) -> None:
        job = GradientShardJob(settings, samples, store_path)
        run_shards_on_ray(job, missing, ray.address, ray.num_actors, ray.gpus_per_actor)

    return run
