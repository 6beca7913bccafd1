"""The indexing (encode) job as a picklable factory, for `influcoder.core.ray.run_shards_on_ray`.

The job carries the path of the segment's samples (the JSONL copy every index keeps, on the filesystem the
nodes share), not the samples: each actor streams it, one shard's texts at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class EncodeShardJob:
    """Picklable factory of the indexing job: load the encoder once, then encode shards."""

    encoder_dir: str
    samples_path: str
    store_path: str
    batch_size: int = 32
    device: str = "auto"
    """Each actor's device: with GPUs per actor Ray makes one visible to it, so auto finds it."""
    backend: str = "torch"
    """The encoder backend of the index (`InfluenceEncoder.to_backend`)."""

    def __call__(self) -> Callable[[int], None]:
        from influcoder.core.allocator import release_freed_memory
        from influcoder.core.store import FeatureStore
        from influcoder.data.stream import JsonlSamples
        from influcoder.encoder.model import InfluenceEncoder

        encoder = InfluenceEncoder.from_pretrained(self.encoder_dir, device=self.device, backend=self.backend)
        store = FeatureStore(self.store_path)
        samples = JsonlSamples(self.samples_path, allow_empty_response=True)

        def job(shard: int) -> None:
            rows = store.shard_rows(shard)
            vectors = encoder.encode_pool([samples[i] for i in rows], self.batch_size, show_progress_bar=False)
            store.write_shard(shard, vectors)
            release_freed_memory()

        return job
