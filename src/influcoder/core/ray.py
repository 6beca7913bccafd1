"""Beyond one machine: the same shard jobs, run as Ray Data `map_batches` over model-holding actors.

The unit of work is a store shard, exactly as in the local path: the driver creates the store (manifest,
ids), Ray Data feeds the missing shard indices to a pool of actors, each actor loads the model once
(one GPU each when asked) and writes whole shards atomically into the same directory. The result is the same
store, manifest and resumption behaviour as a local run, so every later command is unchanged. The store
directory must be visible to every node (a shared filesystem) when the cluster has several.

Ray is an optional dependency (``pip install "influcoder[ray]"``); on a 2-core machine it is pure overhead,
useful with several GPUs or nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from influcoder.core.errors import InflucoderError


class _ShardActor:
    """Ray Data callable class: builds its job once (model load), then writes one shard per row."""

    def __init__(self, job_factory: Callable[[], Callable[[int], None]]):
        self.job = job_factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for shard in batch["shard"]:
            self.job(int(shard))
        return {"shard": np.asarray(batch["shard"], dtype=np.int64)}


def run_shards_on_ray(
    job_factory: Callable[[], Callable[[int], None]],
    shards: Sequence[int],
    address: str | None = None,
    num_actors: int | None = None,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float = 1.0,
) -> list[int]:
    """Run `job(shard)` for every shard on a Ray cluster (a local one when `address` is None)."""
    try:
        import ray
    except ImportError:
        raise InflucoderError('running on Ray (`ray`) needs Ray: pip install "influcoder[ray]"') from None
    if not shards:
        return []
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    resources = ray.cluster_resources()
    if num_actors is None:
        gpus = int(resources.get("GPU", 0))
        num_actors = gpus if gpus_per_actor and gpus else max(1, int(resources.get("CPU", 1) // max(cpus_per_actor, 1)))
    num_actors = max(1, min(num_actors, len(shards)))
    dataset = ray.data.from_items([{"shard": int(s)} for s in shards], override_num_blocks=len(shards))
    done = dataset.map_batches(
        _ShardActor,
        fn_constructor_args=(job_factory,),
        batch_size=1,
        concurrency=num_actors,
        num_gpus=gpus_per_actor or None,
        num_cpus=cpus_per_actor,
    )
    return sorted(int(row["shard"]) for row in done.iter_rows())


@dataclass
class RayOptions:
    """Where and how wide to run: `address` None starts a local Ray; one actor per GPU when gpus_per_actor."""

    address: str | None = None
    num_actors: int | None = None
    gpus_per_actor: float = 0.0
