"""`GradientFeaturizer`: samples -> projected per-example LoRA gradients (response tokens only).

It batches samples by length under a token budget, computes exact per-example gradients of the LoRA
parameters in one backward pass per batch (`influcoder.labels.gradients`), projects them (CountSketch by
default) and writes them shard by shard into a resumable `FeatureStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from influcoder.core.devices import resolve_device
from influcoder.core.errors import InflucoderError, NonFiniteGradientError
from influcoder.core.progress import progress_bar
from influcoder.core.store import FeatureStore
from influcoder.data.formatting import SampleFormatter, TokenizedSample
from influcoder.data.records import Sample, fingerprint
from influcoder.labels.settings import LabelSettings

if TYPE_CHECKING:
    from tqdm import tqdm


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
        from influcoder.data.models import load_decoder
        from influcoder.labels.gradients import BatchedLoraGradients
        from influcoder.labels.lora import attach_lora, lora_parameters
        from influcoder.labels.projectors import make_projector

        self.settings = settings
        if model is None:
            model, tokenizer = load_decoder(settings.model, settings.attention)
        self.model = attach_lora(model.to(resolve_device(settings.device)), settings.lora())
        self.tokenizer = tokenizer
        self.formatter = SampleFormatter(tokenizer, settings.max_length, settings.chat_template)
        params = lora_parameters(self.model)
        self.in_dim = sum(p.numel() for p in params.values())
        dim = self.in_dim if settings.projector == "identity" else settings.proj_dim
        self.projector = make_projector(settings.projector, dim, settings.seed)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.gradients = BatchedLoraGradients(self.model, pad_id if pad_id is not None else 0)
        self.preconditioner: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
        """Applied to the exact per-example blocks before projection (LESS's Adam update: `adam`)."""
        self.batch_tokens = settings.batch_tokens
        """Token budget of a batch: --batch-tokens, or measured to fit --max-memory (`fit_memory`)."""
        self._fitted_width = 0

    def fit_memory(self, tokenized: Sequence[TokenizedSample]) -> int:
        """With --max-memory, set `batch_tokens` to fit it, measured on the longest of `tokenized` (again only
        when a longer sample than the last measured one comes); returns the budget in use."""
        from influcoder.labels.memory import batch_tokens_for_budget

        width = max((len(t.input_ids) for t in tokenized), default=0)
        if self.settings.max_memory is None or width <= self._fitted_width:
            return self.batch_tokens
        self.batch_tokens = batch_tokens_for_budget(
            self.model,
            tokenized,
            self.gradients.pad_id,
            self.settings.max_memory,
            4 * (self.in_dim + self.projector.out_dim),
            self.settings.batch_size,
        )
        self._fitted_width = width
        return self.batch_tokens

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

    def featurize_tokenized(
        self, tokenized: Sequence[TokenizedSample], bar: tqdm | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, dim) features in input order; batches are formed inside this call only. `bar` (a `progress_bar`),
        when given, advances per sample. `out`, when given, is the (n, dim) float32 array to fill (a caller
        gathering many rows of exact gradients, 10 MB each for SmolLM2's LoRA, fills one buffer instead of
        concatenating copies)."""
        if out is None:
            out = np.empty((len(tokenized), self.projector.out_dim), dtype=np.float32)
        elif out.shape != (len(tokenized), self.projector.out_dim) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(len(tokenized), self.projector.out_dim)}, not {out.shape}")
        self.fit_memory(tokenized)
        for batch in make_batches([len(t.input_ids) for t in tokenized], self.settings.batch_size, self.batch_tokens):
            blocks = self.gradients([tokenized[i] for i in batch])
            with torch.no_grad():
                if self.preconditioner is not None:
                    blocks = self.preconditioner(blocks)
                features = self.projector.project(blocks)
            finite = torch.isfinite(features).all(dim=1)
            if not bool(finite.all()):
                bad = [tokenized[batch[j]].id for j in torch.nonzero(~finite).flatten().tolist()]
                raise NonFiniteGradientError(f"non-finite (NaN/Inf) gradient for sample(s) {', '.join(bad)}")
            out[batch] = features.float().cpu().numpy()
            if bar is not None:
                bar.update(len(batch))
        return out

    def featurize(self, samples: Sequence[Sample]) -> np.ndarray:
        return self.featurize_tokenized(self.tokenize(samples))

    def featurize_to_store(
        self,
        samples: Sequence[Sample],
        path: str | Path,
        overwrite: bool = False,
        desc: str = "gradients",
        run_shards: Callable[[Sequence[Sample], str, list[int], int], None] | None = None,
    ) -> FeatureStore:
        """Write the features of `samples` to a resumable store at `path` (skips finished shards).

        `run_shards(samples, store_path, missing, batch_tokens)`, when given, writes the missing shards elsewhere (e.g.
        `influcoder.labels.distributed.ray_shard_runner`); this process then only checks that all arrived.
        """
        self.fit_memory(self.longest(samples))  # fails on a bad sample before any compute
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
        if run_shards is not None and missing:
            run_shards(samples, str(Path(path).resolve()), missing, self.batch_tokens)
            store = FeatureStore(path)
            if store.missing_shards():
                raise InflucoderError(f"shards {store.missing_shards()[:5]} of {path} were left unwritten; rerun")
            return store
        done = len(samples) - sum(len(store.shard_rows(i)) for i in missing)
        with progress_bar(total=len(samples), initial=done, desc=desc, unit="sample", smoothing=0.1) as bar:
            for index in missing:  # one shard's token ids at a time: a pool streamed from disk stays there
                tokenized = self.tokenize([samples[i] for i in store.shard_rows(index)])
                store.write_shard(index, self.featurize_tokenized(tokenized, bar))
        return store

    def longest(self, samples: Sequence[Sample], chunk: int = 1024) -> list[TokenizedSample]:
        """Tokenize every sample, a chunk at a time (a bad one fails here, before any gradient is computed),
        keeping only the longest: it sets the memory budget for every shard (`fit_memory`)."""
        best: list[TokenizedSample] = []
        for start in range(0, len(samples), chunk):
            for t in self.tokenize([samples[i] for i in range(start, min(start + chunk, len(samples)))]):
                if not best or len(t.input_ids) > len(best[0].input_ids):
                    best = [t]
        return best
