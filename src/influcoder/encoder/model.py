"""`InfluenceEncoder`: text -> L2-normalised influence embedding; cosine of two embeddings = predicted influence.

A Hugging Face encoder backbone, a pooling (``mean`` by default, ``cls``, ``attention``: a learned query
vector attending over the tokens, as AirRep; ``response``: the mean over the response's tokens only, read in
the context of the prompt; ``mean+response``: both means side by side) and an optional linear head. The
*text view* (how prompt and response become one string) is part of the model's config, so queries are encoded
at attribution time exactly as the pool was during training. Long texts are cut from the left: the response,
whose tokens carry the gradient influence, is kept.

A saved encoder is a directory::

    config.json           influcoder's EncoderConfig (backbone name, pooling, head, max length, text view,
                          and the label settings it was distilled from)
    backbone/             the HF backbone and its tokenizer (save_pretrained)
    head.safetensors      pooling and head weights (absent when there are none)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from influcoder.core.devices import resolve_device
from influcoder.core.errors import InflucoderError, NonFiniteValueError
from influcoder.data.records import Sample
from influcoder.encoder.settings import POOLINGS, RESPONSE_POOLINGS

CONFIG_NAME = "config.json"
FORMAT = "influcoder.encoder"


@dataclass
class EncoderConfig:
    backbone: str = "minilm-l6"
    """Where the backbone came from (embedded name or directory); informational once saved."""
    pooling: str = "mean"
    """Token pooling: mean, cls, attention (learned), response (mean over response tokens), mean+response."""
    head_dim: int | None = None
    """Output dim of a linear head on the pooled vector; None for no head."""
    max_length: int = 256
    """Encoder token budget per text; longer texts lose the start of the prompt."""
    text_view: str = "{prompt}\n\n{response}"
    """How a sample becomes one string; placeholders {prompt} and {response}."""
    label_config: dict[str, Any] = field(default_factory=dict)
    """The gradient-label settings this encoder was distilled from (for audits and checks)."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InflucoderError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        if "{prompt}" not in self.text_view and "{response}" not in self.text_view:
            raise InflucoderError("text_view must contain {prompt} and/or {response}")
        if self.pooling in RESPONSE_POOLINGS and self.text_view.count("{response}") != 1:
            raise InflucoderError(f"pooling {self.pooling!r} needs a text_view with exactly one {{response}}")

    @property
    def pooled_dim_factor(self) -> int:
        """How many hidden-size vectors the pooling puts side by side."""
        return 2 if self.pooling == "mean+response" else 1


class InfluenceEncoder(torch.nn.Module):
    """Backbone + pooling + optional head -> unit-norm embeddings."""

    def __init__(self, backbone: torch.nn.Module, tokenizer, config: EncoderConfig):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.config = config
        hidden = backbone.config.hidden_size
        self.attention_query = torch.nn.Parameter(torch.zeros(hidden)) if config.pooling == "attention" else None
        pooled = hidden * config.pooled_dim_factor
        self.head = torch.nn.Linear(pooled, config.head_dim) if config.head_dim else None
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
    def from_pretrained(cls, directory: str | Path, device: str | None = None) -> InfluenceEncoder:
        """Load a saved encoder (or the ``best`` checkpoint of a `distill` output directory) onto `device`
        (None: the CPU; ``auto``: CUDA when present)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        directory = Path(directory)
        if not (directory / CONFIG_NAME).exists() and (directory / "best" / CONFIG_NAME).exists():
            directory = directory / "best"  # a `distill` output directory: its best checkpoint
        path = directory / CONFIG_NAME
        if not path.exists():
            raise InflucoderError(f"{directory} is not a saved influcoder encoder (no {CONFIG_NAME})")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.pop("format", None) != FORMAT:
            raise InflucoderError(f"{path}: not an influcoder encoder config")
        config = EncoderConfig(**raw)
        backbone = AutoModel.from_pretrained(directory / "backbone", dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory / "backbone")
        encoder = cls(backbone, tokenizer, config)
        if (directory / "head.safetensors").exists():
            missing, unexpected = encoder.load_state_dict(load_file(directory / "head.safetensors"), strict=False)
            if unexpected or any(not k.startswith("backbone.") for k in missing):
                raise InflucoderError(f"{directory}/head.safetensors does not match the config ({unexpected})")
        encoder.eval()
        return encoder.to(resolve_device(device)) if device else encoder

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory / "backbone")
        self.tokenizer.save_pretrained(directory / "backbone")
        extra = {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        if extra:
            save_file(extra, str(directory / "head.safetensors"))
        (directory / CONFIG_NAME).write_text(
            json.dumps({"format": FORMAT, **asdict(self.config)}, indent=1) + "\n", encoding="utf-8"
        )

    # ------------------------------------------------------------------ text and forward
    @property
    def device(self) -> torch.device:
        """Where the encoder's parameters live; its inputs are moved there."""
        return next(self.parameters()).device

    @property
    def dim(self) -> int:
        return self.config.head_dim or self.backbone.config.hidden_size * self.config.pooled_dim_factor

    def text_of(self, item: Sample | str) -> str:
        if isinstance(item, str):
            return item
        return self.config.text_view.format(prompt=item.prompt, response=item.response)

    def response_span(self, item: Sample | str) -> tuple[int, int]:
        """Character span of the response inside `text_of(item)`; a plain string is all response.

        The decoder's gradient comes from the response tokens only (the prompt is masked), and most responses
        are a few tokens after a long prompt: a mean over the whole text dilutes them to a few percent. The
        response pooling reads those tokens, contextualised by the prompt through attention.
        """
        if isinstance(item, str):
            return 0, len(item)
        before = self.config.text_view.split("{response}", 1)[0].format(prompt=item.prompt)
        return len(before), len(before) + len(item.response)

    def _tokenize_unpadded(self, items: Sequence[Sample | str]) -> dict[str, list]:
        """Token ids (left-truncated), plus a 0/1 `response_mask` per text when the pooling needs one."""
        texts = [self.text_of(x) for x in items]
        needs_mask = self.config.pooling in RESPONSE_POOLINGS
        encoded = dict(
            self.tokenizer(texts, truncation=True, max_length=self.config.max_length, return_offsets_mapping=needs_mask)
        )
        if needs_mask:
            masks = []
            for item, offsets in zip(items, encoded.pop("offset_mapping")):
                start, end = self.response_span(item)
                masks.append([int(a < b and start <= a < end) for a, b in offsets])  # (0, 0): special tokens
            encoded["response_mask"] = masks
        return encoded

    def _pad(self, encoded: dict[str, list], index: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the texts at `index` into one batch (the response mask is padded like the attention mask)."""
        rows = {k: [v[i] for i in index] for k, v in encoded.items() if k != "response_mask"}
        batch = dict(self.tokenizer.pad(rows, return_tensors="pt"))
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
        encoded = self._tokenize_unpadded(items)
        return self._pad(encoded, range(len(items)))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor | None = None,
        **kw: torch.Tensor,
    ) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        pooling = self.config.pooling
        if pooling == "cls":
            pooled = hidden[:, 0]
        elif pooling == "attention":
            scores = (hidden @ self.attention_query) / hidden.shape[-1] ** 0.5
            scores = scores.masked_fill(attention_mask == 0, torch.finfo(hidden.dtype).min)
            pooled = (scores.softmax(dim=1).unsqueeze(-1) * hidden).sum(dim=1)
        elif pooling in RESPONSE_POOLINGS:
            if response_mask is None:
                raise InflucoderError(f"pooling {pooling!r} needs a response_mask (use tokenize())")
            # a text whose response was cut away entirely falls back to all of its tokens
            empty = response_mask.sum(dim=1, keepdim=True) == 0
            pooled = masked_mean(hidden, torch.where(empty, attention_mask, response_mask))
            if pooling == "mean+response":
                pooled = torch.cat([masked_mean(hidden, attention_mask), pooled], dim=-1)
        else:
            pooled = masked_mean(hidden, attention_mask)
        if self.head is not None:
            pooled = self.head(pooled)
        return F.normalize(pooled, dim=-1)

    def embed(self, items: Sequence[Sample | str], max_tokens: int | None = 1024) -> torch.Tensor:
        """Embeddings with gradients (for training), in input order.

        A training step mixes short queries with long pool texts; padding them all to the longest wastes most
        of the compute (measured 2.7x on evals x bbh at 256 tokens). So texts are sorted by token length and
        run in groups of at most `max_tokens` padded tokens (None: one group). An embedding depends only on its
        own text, so grouping changes nothing but float rounding (and which dropout mask a text draws).
        """
        if max_tokens is None or len(items) <= 1:
            return self(**self.tokenize(items))
        encoded = self._tokenize_unpadded(items)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        groups: list[list[int]] = [[]]
        for i in order:
            if groups[-1] and (len(groups[-1]) + 1) * lengths[groups[-1][0]] > max_tokens:
                groups.append([])
            groups[-1].append(i)
        parts = [self(**self._pad(encoded, group)) for group in groups]
        inverse = torch.empty(len(items), dtype=torch.long)
        inverse[torch.tensor([i for group in groups for i in group])] = torch.arange(len(items))
        return torch.cat(parts, dim=0)[inverse]

    @torch.no_grad()
    def encode(self, items: Sequence[Sample | str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit-norm embeddings in input order (batches sorted by length internally)."""
        texts = [self.text_of(x) for x in items]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                out[index] = self(**self.tokenize([items[i] for i in index])).float().cpu().numpy()
                bar.update(len(index))
        self.train(was_training)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):  # a NaN embedding would sort anywhere in a FAISS search: say which text it is
            names = [getattr(items[i], "id", f"text #{i}") for i in bad[:5]]
            raise NonFiniteValueError(f"non-finite (NaN/Inf) embedding for {len(bad)} text(s): {', '.join(names)}")
        return out


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` (batch, tokens, dim) over the tokens where `mask` is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
