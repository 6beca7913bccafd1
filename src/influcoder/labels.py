"""Step 1 of the paper ("stocking"): gradient features of pool and queries, and their influence matrix.

`GradientFeaturizer` turns samples into projected per-example LoRA gradients; `label` runs it on a pool and
a query set into two resumable `FeatureStore`s and writes the pool x query cosine matrix, the ground truth
that the encoder is distilled from. A labels directory is self-contained::

    labels/
      labels.json          settings, sizes, timings
      pool.jsonl           the pool samples (ids, texts), in store order
      queries.jsonl        the query samples
      pool/  queries/      feature stores (manifest + shards)
      influence/           scores.npy (pool x queries) + ids.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Sample, fingerprint, write_samples
from .errors import InflucoderError, NonFiniteGradientError
from .formatting import SampleFormatter, TokenizedSample
from .influence import InfluenceMatrix
from .store import FeatureStore, write_json_atomic


@dataclass
class LabelSettings:
    """Everything that shapes the gradient features; recorded in every store's manifest."""

    model: str = "smollm2-135m-instruct"
    """Decoder: an embedded model name or a local Hugging Face directory."""
    adapter: str | None = None
    """A trained peft LoRA adapter directory; default: a fresh seeded adapter."""
    rank: int = 8
    """Rank of a fresh LoRA adapter."""
    alpha: float | None = None
    """LoRA alpha of a fresh adapter (default 2 * rank)."""
    targets: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules a fresh adapter wraps; 'all-linear' = every linear layer of the blocks."""
    projector: str = "countsketch"
    """Projection of the gradients: countsketch (paper), rademacher (LESS/TRAK) or identity (exact)."""
    proj_dim: int = 32768
    """Projected feature dimension (paper: 32,768 or 65,536)."""
    seed: int = 0
    """Seed of the adapter's A matrices and of the projection."""
    max_length: int = 256
    """Token budget per sample; the prompt is cut from the left first."""
    chat_template: bool | None = None
    """Render with the tokenizer's chat template (default: when it has one)."""
    batch_size: int = 8
    """Most samples per forward/backward (samples are bucketed by length)."""
    batch_tokens: int = 2048
    """Most padded tokens per forward/backward."""
    shard_size: int = 64
    """Samples per store shard (the unit of resumption)."""
    dtype: str = "float32"
    """Stored feature dtype (float32 or float16)."""
    device: str = "auto"
    """Where the decoder runs: cpu, cuda, or auto (cuda when available)."""

    def lora(self):
        from .decoder.lora import LoraSettings

        return LoraSettings(self.rank, self.alpha, list(self.targets), self.seed, self.adapter)


def make_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Group sample indices into length-sorted batches under both caps (limits padding)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and (len(current) >= batch_size or (len(current) + 1) * width > batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class GradientFeaturizer:
    """Samples -> projected per-example LoRA gradients of the response-only loss."""

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None):
        from .decoder.gradients import BatchedLoraGradients
        from .decoder.lora import attach_lora, lora_parameters
        from .models import load_decoder
        from .sketch import make_projector

        self.settings = settings
        if model is None:
            model, tokenizer = load_decoder(settings.model)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = attach_lora(model.to(device), settings.lora())
        self.tokenizer = tokenizer
        self.formatter = SampleFormatter(tokenizer, settings.max_length, settings.chat_template)
        params = lora_parameters(self.model)
        self.in_dim = sum(p.numel() for p in params.values())
        dim = self.in_dim if settings.projector == "identity" else settings.proj_dim
        self.projector = make_projector(settings.projector, dim, settings.seed)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.gradients = BatchedLoraGradients(self.model, pad_id if pad_id is not None else 0)

    def config(self) -> dict[str, Any]:
        """The manifest's description of these features."""
        s = self.settings
        return {
            "kind": "lora-gradients",
            "model": s.model,
            "lora": s.lora().to_dict(),
            "lora_in_dim": self.in_dim,
            "projector": self.projector.config(),
            "max_length": s.max_length,
            "text_view": self.formatter.view,
            "loss": "mean token cross-entropy on response tokens (prompt masked)",
        }

    def tokenize(self, samples: Sequence[Sample]) -> list[TokenizedSample]:
        return self.formatter.encode_all(samples)

    def featurize_tokenized(self, tokenized: Sequence[TokenizedSample], progress: tqdm | None = None) -> np.ndarray:
        """(n, dim) features in input order; batches are formed inside this call only."""
        out = np.empty((len(tokenized), self.projector.out_dim), dtype=np.float32)
        for batch in make_batches(
            [len(t.input_ids) for t in tokenized], self.settings.batch_size, self.settings.batch_tokens
        ):
            blocks = self.gradients([tokenized[i] for i in batch])
            with torch.no_grad():
                features = self.projector.project(blocks)
            finite = torch.isfinite(features).all(dim=1)
            if not bool(finite.all()):
                bad = [tokenized[batch[j]].id for j in torch.nonzero(~finite).flatten().tolist()]
                raise NonFiniteGradientError(f"non-finite (NaN/Inf) gradient for sample(s) {', '.join(bad)}")
            out[batch] = features.float().cpu().numpy()
            if progress is not None:
                progress.update(len(batch))
        return out

    def featurize(self, samples: Sequence[Sample]) -> np.ndarray:
        return self.featurize_tokenized(self.tokenize(samples))

    def featurize_to_store(
        self,
        samples: Sequence[Sample],
        path: str | Path,
        overwrite: bool = False,
        progress: bool = True,
        desc: str = "gradients",
        ray=None,
    ) -> FeatureStore:
        """Write the features of `samples` to a resumable store at `path` (skips finished shards)."""
        tokenized = self.tokenize(samples)  # fail on a bad sample before any compute
        config = {**self.config(), "data_fingerprint": fingerprint(samples)}
        store = FeatureStore.create_or_resume(
            path,
            config,
            [s.id for s in samples],
            self.projector.out_dim,
            self.settings.shard_size,
            self.settings.dtype,
            overwrite,
        )
        missing = store.missing_shards()
        if ray is not None and missing:
            from .distributed import GradientShardJob, run_shards_on_ray

            job = GradientShardJob(self.settings, list(samples), str(Path(path).resolve()))
            run_shards_on_ray(job, missing, ray.address, ray.num_actors, ray.gpus_per_actor)
            store = FeatureStore(path)
            if store.missing_shards():
                raise InflucoderError(f"Ray run left shards {store.missing_shards()[:5]} of {path} unwritten; rerun")
            return store
        done = len(samples) - sum(len(store.shard_rows(i)) for i in missing)
        with tqdm(
            total=len(samples), initial=done, desc=desc, unit="sample", disable=not progress, smoothing=0.1
        ) as bar:
            for index in missing:
                rows = store.shard_rows(index)
                store.write_shard(index, self.featurize_tokenized([tokenized[i] for i in rows], bar))
        return store


def label(
    pool: Sequence[Sample],
    queries: Sequence[Sample],
    out: str | Path,
    settings: LabelSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    featurizer: GradientFeaturizer | None = None,
    ray=None,
) -> InfluenceMatrix:
    """Gradient stores of pool and queries plus their cosine influence matrix, under `out`."""
    settings = settings or LabelSettings()
    out = Path(out)
    if not pool or not queries:
        raise InflucoderError("label needs at least one pool sample and one query")
    overlap = {s.id for s in pool} & {s.id for s in queries}
    out.mkdir(parents=True, exist_ok=True)
    featurizer = featurizer or GradientFeaturizer(settings)
    started = time.perf_counter()
    pool_store = featurizer.featurize_to_store(pool, out / "pool", overwrite, progress, "pool gradients", ray)
    pool_seconds = time.perf_counter() - started
    query_store = featurizer.featurize_to_store(queries, out / "queries", overwrite, progress, "query gradients", ray)
    write_samples(pool, out / "pool.jsonl")
    write_samples(queries, out / "queries.jsonl")
    matrix = InfluenceMatrix.from_stores(pool_store, query_store)
    matrix.save(out / "influence")
    write_json_atomic(
        out / "labels.json",
        {
            "settings": asdict(settings),
            "ray": ray is not None,
            "features": featurizer.config(),
            "n_pool": len(pool),
            "n_queries": len(queries),
            "ids_in_both": len(overlap),
            "seconds_total": round(time.perf_counter() - started, 2),
            "seconds_pool_this_run": round(pool_seconds, 2),
            "bytes_per_sample": round(pool_store.bytes_per_sample(), 1),
        },
    )
    return matrix


def load_labels(directory: str | Path) -> tuple[InfluenceMatrix, list[Sample], list[Sample], dict]:
    """The influence matrix, pool and query samples (in matrix order) and the settings of a labels dir."""
    from .data import load_file

    directory = Path(directory)
    if not (directory / "labels.json").exists():
        raise InflucoderError(f"{directory} is not a labels directory (no labels.json); run `influcoder label`")
    info = json.loads((directory / "labels.json").read_text(encoding="utf-8"))
    matrix = InfluenceMatrix.load(directory / "influence")
    pool = load_file(directory / "pool.jsonl")
    queries = load_file(directory / "queries.jsonl")
    if [s.id for s in pool] != matrix.pool_ids or [s.id for s in queries] != matrix.query_ids:
        raise InflucoderError(f"{directory}: sample files and influence matrix disagree on ids")
    return matrix, pool, queries, info
