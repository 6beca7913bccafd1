"""`InfluenceEncoder`: text -> L2-normalised influence embedding; cosine of two embeddings = predicted influence.

A Hugging Face encoder backbone, a pooling (``mean`` by default, ``cls``, ``attention``: a learned query
vector attending over the tokens, as AirRep; ``response``: the mean over the response's tokens only, read in
the context of the prompt; ``mean+response``: both means side by side) and an optional head (linear, or a
kernel one: `influcoder.encoder.heads`). The *text view* (prompt and response as one string) is in the config,
so queries are encoded as the pool was. Long texts lose the start of the prompt: the response is kept.

A saved encoder is a directory::

    config.json           influcoder's EncoderConfig (backbone name, pooling, head, max length, text view,
                          and the label settings it was distilled from; `influcoder.encoder.config`)
    backbone/             the HF backbone and its tokenizer (save_pretrained)
    head.safetensors      pooling and head weights (absent when there are none)
    coverage.npz          the coverage reference (`influcoder.encoder.coverage`; distill writes it)
    length_prior.json     optional per-pool-sample prior added to the cosine (`influcoder.encoder.length_prior`)

Pool and queries are encoded by `encode_pool` / `encode_queries` wherever the two sides are scored against
each other: without a length prior both are `encode`; with one, the pool vector carries the prior in one more
column and the query vector a 1 there, so their inner product is the cosine plus the pool sample's prior.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from influcoder.core.devices import resolve_device
from influcoder.core.errors import DamagedFileError, InflucoderError, NonFiniteValueError
from influcoder.core.progress import progress_bar, progress_bars, renamed_keyword
from influcoder.data.models import keep_blocks
from influcoder.data.records import Sample
from influcoder.encoder.backends import BACKENDS, INT8_SCHEME, quantized
from influcoder.encoder.config import (  # noqa: F401 - CONFIG_NAME, FORMAT: also importable from here
    CHAT_TEMPLATE,
    CONFIG_NAME,
    ENCODER_FILES,
    FORMAT,
    EncoderConfig,
    encoder_directory,
    read_config,
    write_config,
)
from influcoder.encoder.heads import make_head
from influcoder.encoder.interop import write_sentence_transformers_files
from influcoder.encoder.length_prior import LengthPrior
from influcoder.encoder.pooling import N_LENGTH_FEATURES, pool_hidden, text_length_features
from influcoder.encoder.saved_files import load_parts, record_checksums
from influcoder.encoder.settings import RESPONSE_POOLINGS
from influcoder.encoder.states_cache import pooled_states

ENCODE_CHUNK = 4096
"""Texts tokenized and length-sorted together by `encode`."""


class InfluenceEncoder(torch.nn.Module):
    """Backbone + pooling + optional head -> unit-norm embeddings (or, with ``unit_norm=False``, the head's
    output as it is)."""

    def __init__(self, backbone: torch.nn.Module, tokenizer, config: EncoderConfig):
        super().__init__()
        keep_blocks(backbone, config.backbone_layers)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.config = config
        self.backend = "torch"
        self._fingerprint: str | None = None
        self.length_prior: LengthPrior | None = None
        self.states_cache = None  # a `states_cache.PooledStatesCache` that `encode` reads states through
        hidden = backbone.config.hidden_size
        self.attention_query = torch.nn.Parameter(torch.zeros(hidden)) if config.pooling == "attention" else None
        pooled = hidden * config.pooled_dim_factor + (N_LENGTH_FEATURES if config.length_features else 0)
        if config.length_features and not config.head_dim:
            raise InflucoderError("length_features need a head (head_dim) to weigh them")
        self.head = make_head(pooled, config)
        if config.standardise_head_input:
            if not config.head_dim:
                raise InflucoderError("standardise_head_input needs a head (head_dim)")
            self.register_buffer("head_shift", torch.zeros(pooled))
            self.register_buffer("head_scale", torch.ones(pooled))
        if config.pooling in RESPONSE_POOLINGS and not getattr(tokenizer, "is_fast", False):
            raise InflucoderError(
                f"pooling {config.pooling!r} locates the response by character offsets, which needs a fast "
                "(Rust) tokenizer; this backbone's tokenizer is a slow one"
            )

    # ------------------------------------------------------------------ construction and persistence
    @classmethod
    def from_backbone(
        cls, backbone: str = "minilm-l6", seed: int = 0, device: str | None = None, **config: Any
    ) -> InfluenceEncoder:
        """A fresh encoder on an embedded or local backbone (head initialised from `seed`), on `device`.

        The seed applies to a forked random state: the caller's global torch RNG is left as it was."""
        from influcoder.data.models import load_encoder_backbone

        model, tokenizer = load_encoder_backbone(backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = cls(model, tokenizer, EncoderConfig(backbone=backbone, **config))
        return encoder.to(resolve_device(device)) if device else encoder

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | None = None, backend: str = "torch"
    ) -> InfluenceEncoder:
        """Load a saved encoder (or the ``best`` checkpoint of a `distill` output directory) onto `device`
        (None: the CPU; ``auto``: CUDA when present), running on `backend` (see `BACKENDS`)."""
        directory = encoder_directory(directory)  # a `distill` output directory: its best checkpoint
        config = read_config(directory)
        backbone, tokenizer, head = load_parts(directory)
        encoder = cls(backbone, tokenizer, config)
        if head is not None:
            try:
                missing, unexpected = encoder.load_state_dict(head, strict=False)
            except RuntimeError as exc:  # shapes other than config.json's (e.g. another number of kernel landmarks)
                raise DamagedFileError(f"{directory}/head.safetensors does not fit config.json: {exc}") from None
            if unexpected or any(not k.startswith("backbone.") for k in missing):
                raise InflucoderError(f"{directory}/head.safetensors does not match the config ({unexpected})")
        encoder.length_prior = LengthPrior.load(directory)
        encoder.eval()
        encoder = encoder.to(resolve_device(device)) if device else encoder
        return encoder.to_backend(backend)

    def fingerprint(self) -> str:
        """sha256 over the config and the float weights, plus the backend: an index answers only queries
        embedded by the same encoder on the same backend (int8 embeddings differ slightly from float ones)."""
        if self.backend != "torch":
            return f"{self._fingerprint}+{INT8_SCHEME}"  # of the float weights, taken before quantising
        import hashlib

        digest = hashlib.sha256(json.dumps(self.config.fingerprint_fields(), sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        if self.length_prior is not None:  # it changes every pool vector; none leaves older fingerprints as they were
            digest.update(json.dumps(asdict(self.length_prior), sort_keys=True).encode())
        return digest.hexdigest()

    def to_backend(self, backend: str) -> InfluenceEncoder:
        """Run the backbone on `backend`, in place (inference only: an int8 encoder cannot be trained or
        saved). ``int8``: torch's dynamic quantisation of the linear layers with one weight scale per output
        channel (one outlier channel no longer sets the step of a whole matrix); docs/results/scale.md."""
        if backend not in BACKENDS:
            raise InflucoderError(f"unknown encoder backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if backend == self.backend:
            return self
        if self.backend != "torch":
            raise InflucoderError(f"this encoder already runs on {self.backend}; load it again for {backend}")
        if self.device.type != "cpu":
            raise InflucoderError(f"the {backend} backend runs on the CPU only; this encoder is on {self.device}")
        self._fingerprint = self.fingerprint()  # of the float weights, before they are replaced
        self.eval()
        self.backbone = quantized(self.backbone)
        self.requires_grad_(False)
        self.backend = backend
        return self

    def save_pretrained(self, directory: str | Path, replace: bool = False) -> None:
        """Write the encoder into `directory` (beside what it holds, as Hugging Face does). `replace=True`
        swaps the whole directory atomically instead (`core.atomic.atomic_directory`): a reader sees the old
        encoder or the new one, never a mix; distillation saves its best/ and last/ checkpoints this way."""
        from safetensors.torch import save_file

        if self.backend != "torch":
            raise InflucoderError(f"an encoder running on {self.backend} is not saved; save the float encoder")
        if replace:
            from influcoder.core.atomic import atomic_directory

            Path(directory).parent.mkdir(parents=True, exist_ok=True)
            with atomic_directory(directory, ours=ENCODER_FILES) as tmp:
                self.save_pretrained(tmp)
            return
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory / "backbone")
        self.tokenizer.save_pretrained(directory / "backbone")
        extra = {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        if extra:
            save_file(extra, str(directory / "head.safetensors"))
        write_config(directory, self.config)
        if self.length_prior is not None:
            self.length_prior.save(directory)
        if not (self.config.length_features or self.config.standardise_head_input or self.config.head_kind != "linear"):
            write_sentence_transformers_files(directory, self.config.pooling, self.backbone.config.hidden_size,
                                              self.config.max_length, self.head, self.config.unit_norm)  # fmt: skip
        record_checksums(directory)

    # ------------------------------------------------------------------ text and forward
    @property
    def device(self) -> torch.device:
        """Where the encoder's parameters live; its inputs are moved there."""
        return next(self.parameters()).device

    @property
    def dim(self) -> int:
        return self.config.head_dim or self.backbone.config.hidden_size * self.config.pooled_dim_factor

    @property
    def score_dim(self) -> int:
        """Width of `encode_pool` / `encode_queries` vectors: `dim`, plus one column for a length prior."""
        return self.dim + (self.length_prior is not None)

    def text_of(self, item: Sample | str) -> str:
        return self._view(item)[0]

    def response_span(self, item: Sample | str) -> tuple[int, int]:
        """Character span of the response inside `text_of(item)`; a plain string is all response.

        The decoder's gradient comes from the response tokens only (the prompt is masked), and most responses
        are a few tokens after a long prompt: a mean over the whole text dilutes them to a few percent. The
        response pooling reads those tokens, contextualised by the prompt through attention.
        """
        return self._view(item)[1]

    def _view(self, item: Sample | str) -> tuple[str, tuple[int, int]]:
        """The text the encoder reads and the response's character span in it, from one rendering (the chat
        template's is the labels' own: `SampleFormatter.render`)."""
        if isinstance(item, str):
            return item, (0, len(item))
        if self.config.text_view == CHAT_TEMPLATE:
            from influcoder.data.formatting import SampleFormatter

            formatter = SampleFormatter(self.tokenizer, self.config.max_length, use_chat_template=True)
            before, response = formatter.render(item)
            return before + response, (len(before), len(before) + len(response))
        before = self.config.text_view.split("{response}", 1)[0].format(prompt=item.prompt)
        text = self.config.text_view.format(prompt=item.prompt, response=item.response)
        return text, (len(before), len(before) + len(item.response))

    def tokenize_unpadded(self, items: Sequence[Sample | str]) -> dict[str, list]:
        """Token ids (left-truncated) and a 0/1 `response_mask` per text where the pooling needs one; `pad` batches."""
        views = [self._view(x) for x in items]
        texts = [text for text, _ in views]
        needs_mask = self.config.pooling in RESPONSE_POOLINGS
        encoded = dict(
            self.tokenizer(texts, truncation=True, max_length=self.config.max_length, return_offsets_mapping=needs_mask)
        )
        if needs_mask:
            masks = []
            for (_, (start, end)), offsets in zip(views, encoded.pop("offset_mapping")):
                masks.append([int(a < b and start <= a < end) for a, b in offsets])  # (0, 0): special tokens
            encoded["response_mask"] = masks
        if self.config.length_features:
            encoded["length_features"] = [text_length_features(item) for item in items]
        return encoded

    def pad(self, encoded: dict[str, list], index: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the texts at `index` into one batch (the response mask is padded like the attention mask)."""
        rows = {k: [v[i] for i in index] for k, v in encoded.items() if k not in ("response_mask", "length_features")}
        batch = dict(self.tokenizer.pad(rows, return_tensors="pt"))
        if "length_features" in encoded:
            batch["length_features"] = torch.tensor([encoded["length_features"][i] for i in index])
        if "response_mask" in encoded:
            width = batch["input_ids"].shape[1]
            mask = torch.zeros(len(index), width, dtype=torch.long)
            for row, i in enumerate(index):
                values = torch.tensor(encoded["response_mask"][i], dtype=torch.long)
                if self.tokenizer.padding_side == "left":
                    mask[row, width - len(values) :] = values
                else:
                    mask[row, : len(values)] = values
            batch["response_mask"] = mask
        return {k: v.to(self.device) for k, v in batch.items()}

    def tokenize(self, items: Sequence[Sample | str]) -> dict[str, torch.Tensor]:
        """One padded batch: the backbone's inputs, plus `response_mask` for the response poolings."""
        encoded = self.tokenize_unpadded(items)
        return self.pad(encoded, range(len(items)))

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch from `tokenize` (its tensors by name: `pool` reads them): unit vectors, or the
        head's output as it is for a subspace encoder."""
        return self.head_output(self.pool(**batch))

    def head_output(self, pooled: torch.Tensor) -> torch.Tensor:
        """Embeddings from pooled states (`pool`'s output), as `forward` gives them: no second backbone pass."""
        if self.config.standardise_head_input:
            pooled = (pooled - self.head_shift) / self.head_scale
        if self.head is not None:
            pooled = self.head(pooled)
        return F.normalize(pooled, dim=-1) if self.config.unit_norm else pooled

    def pool(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor | None = None,
        length_features: torch.Tensor | None = None,
        **kw: torch.Tensor,
    ) -> torch.Tensor:
        """The pooled backbone states (and length features, where configured), before the head: what a head
        is fitted on."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        pooled = pool_hidden(hidden, attention_mask, self.config.pooling, response_mask, self.attention_query)
        if self.config.length_features:
            if length_features is None:
                raise InflucoderError("this encoder reads length features: batch its inputs with tokenize()")
            pooled = torch.cat([pooled, length_features.to(pooled.dtype)], dim=-1)
        return pooled

    def embed(self, items: Sequence[Sample | str], max_tokens: int | None = 1024) -> torch.Tensor:
        """Embeddings with gradients (for training), in input order.

        A training step mixes short queries with long pool texts; padding them all to the longest wastes most
        of the compute. So texts are sorted by token length and run in groups of at most `max_tokens` padded
        tokens (None: one group). An embedding depends only on its own text, so grouping changes nothing but
        float rounding (and which dropout mask a text draws).
        """
        if max_tokens is None or len(items) <= 1:
            return self(**self.tokenize(items))
        encoded = self.tokenize_unpadded(items)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        groups: list[list[int]] = [[]]
        for i in order:
            if groups[-1] and (len(groups[-1]) + 1) * lengths[groups[-1][0]] > max_tokens:
                groups.append([])
            groups[-1].append(i)
        parts = [self(**self.pad(encoded, group)) for group in groups]
        inverse = torch.empty(len(items), dtype=torch.long)
        inverse[torch.tensor([i for group in groups for i in group])] = torch.arange(len(items))
        return torch.cat(parts, dim=0)[inverse]

    @renamed_keyword("show_progress", "show_progress_bar")
    @torch.inference_mode()
    def encode(
        self, items: Sequence[Sample | str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """(n, dim) float32 unit-norm embeddings in input order.

        Texts are tokenized once, sorted by token count and padded per batch only to the batch's longest, so
        a pool mixing 20-token and 256-token texts pays for the tokens it has. On the torch backend sorting
        changes which texts share a batch, never an embedding (beyond float rounding); on int8 the activations
        are quantised per batch, so an embedding moves slightly with its batch-mates (`encode_queries` therefore
        encodes int8 queries one at a time). `show_progress_bar` (sentence-transformers' keyword): the bar on
        or off for this call; None leaves it to the switch in `influcoder.core.progress`.
        """
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        if self.states_cache is not None and self.backend == "torch":
            with progress_bars(show_progress_bar):
                states = torch.as_tensor(pooled_states(self, items, batch_size), device=self.device)
            out = self.head_output(states).float().cpu().numpy()
        else:
            out = self._encode_batches(items, batch_size, show_progress_bar)
        self.train(was_training)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):  # a NaN embedding would sort anywhere in a FAISS search: say which text it is
            names = [getattr(items[i], "id", f"text #{i}") for i in bad[:5]]
            raise NonFiniteValueError(f"non-finite (NaN/Inf) embedding for {len(bad)} text(s): {', '.join(names)}")
        return out

    def _encode_batches(self, items: Sequence[Sample | str], batch_size: int, bar_on: bool | None) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        with progress_bars(bar_on), progress_bar(total=len(items), desc="encode", unit="text") as bar:
            for chunk in range(0, len(items), ENCODE_CHUNK):  # bounded memory: token ids of one chunk at a time
                part = items[chunk : chunk + ENCODE_CHUNK]
                encoded = self.tokenize_unpadded(part)
                order = sorted(range(len(part)), key=lambda i: -len(encoded["input_ids"][i]))
                for start in range(0, len(order), batch_size):
                    index = order[start : start + batch_size]
                    embeddings = self(**self.pad(encoded, index)).float().cpu().numpy()
                    out[[chunk + i for i in index]] = embeddings
                    bar.update(len(index))
        return out

    @renamed_keyword("show_progress", "show_progress_bar")
    def encode_pool(
        self, items: Sequence[Sample], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """Pool-side vectors (n, score_dim): the embeddings, and with a length prior its value per sample."""
        embeddings = self.encode(items, batch_size, show_progress_bar)
        if self.length_prior is None:
            return embeddings
        return np.hstack([embeddings, self.length_prior.offsets(items)[:, None]])

    @renamed_keyword("show_progress", "show_progress_bar")
    def encode_queries(
        self, items: Sequence[Sample | str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """Query-side vectors (n, score_dim): the embeddings, and with a length prior a column of ones, so that
        a query vector's inner product with a pool vector is cosine + the pool sample's prior. On the int8
        backend each query is encoded alone: its activations' quantisation step would otherwise depend on the
        queries it happens to share a call with (a server's micro-batch, a file's neighbours), and the same
        query would get different hits from `serve` and `attribute`."""
        embeddings = self.encode(items, 1 if self.backend == "int8" else batch_size, show_progress_bar)
        if self.length_prior is None:
            return embeddings
        return np.hstack([embeddings, np.ones((len(embeddings), 1), dtype=np.float32)])
