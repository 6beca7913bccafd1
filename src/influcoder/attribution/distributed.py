"""The indexing (encode) job as a picklable factory, for `influcoder.core.ray.run_shards_on_ray`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from influcoder.data.records import Sample


@dataclass
class EncodeShardJob:
    """Picklable factory of the indexing job: load the encoder once, then encode shards."""

    encoder_dir: str
    samples: list[Sample]
    store_path: str
    batch_size: int = 32
    device: str = "auto"
    """Each actor's device: with GPUs per actor Ray makes one visible to it, so auto finds it."""
    backend: str = "torch"
    """The encoder backend of the index (`InfluenceEncoder.to_backend`)."""

    def __call__(self) -> Callable[[int], None]:
        from influcoder.core.store import FeatureStore
        from influcoder.encoder.model import InfluenceEncoder

        encoder = InfluenceEncoder.from_pretrained(self.encoder_dir, device=self.device, backend=self.backend)
        store = FeatureStore(self.store_path)

        def job(shard: int) -> None:
            rows = store.shard_rows(shard)
            store.write_shard(shard, encoder.encode_pool([self.samples[i] for i in rows], self.batch_size))

        return job
