"""The LoRA adapter whose gradients are the influence features.

Either a fresh adapter (rank 8, alpha 2*rank, on every linear layer of the transformer blocks) or a user's
trained peft adapter directory (e.g. a model fine-tuned on the pool, as in DATE-LM). The vocabulary
embeddings and the LM head are never adapted, so they never enter the gradient.

A fresh adapter has B = 0, as peft initialises it. Then the gradient of every A is exactly zero and the
features are the gradients of the B matrices: for a layer with input x_t and output-gradient g_t, the
gradient of B is sum_t g_t (A x_t)^T, i.e. the layer gradient g x^T compressed on its input side by the
random matrix A (LoGRA's factorised projection). The A blocks then add nothing but zeros to the sketch;
with a trained adapter (B != 0) both A and B carry signal. Fresh A matrices are drawn from the explicit
hash stream (`hashing`), not from torch's RNG, so the same seed gives the same adapter everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from influcoder.core.errors import InflucoderError
from influcoder.core.hashing import hash_uniform, stream_key

FORBIDDEN_TARGETS = ("lm_head", "embed_tokens", "wte", "wpe", "embed_out")


@dataclass
class LoraSettings:
    """How the adapter is made; recorded in every gradient store's manifest."""

    rank: int = 8
    """LoRA rank r of a fresh adapter."""
    alpha: float | None = None
    """LoRA alpha (default 2 * rank)."""
    targets: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt; 'all-linear' means every linear layer of the blocks (never the LM head)."""
    seed: int = 0
    """Seed of a fresh adapter's A matrices."""
    adapter: str | None = None
    """A trained peft adapter directory to use instead of a fresh adapter."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alpha"] = self.alpha if self.alpha is not None else 2 * self.rank
        return d


def _init_a_from_hash(model: torch.nn.Module, seed: int) -> None:
    """Kaiming-uniform-like A (bound 1/sqrt(in_features)) from the hash stream, per parameter name."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                bound = 1.0 / math.sqrt(param.shape[1])
                u = hash_uniform(stream_key(seed, f"lora_A:{name}"), param.numel())
                param.copy_(torch.from_numpy((u * 2.0 - 1.0) * bound).reshape(param.shape).to(param.dtype))


def attach_lora(model: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """Wrap `model` in a peft model whose only trainable parameters are the LoRA adapters."""
    from peft import LoraConfig, PeftModel, get_peft_model

    for p in model.parameters():
        p.requires_grad_(False)
    if settings.adapter:
        peft_model = PeftModel.from_pretrained(model, settings.adapter, is_trainable=True)
    else:
        bad = [t for t in settings.targets if t in FORBIDDEN_TARGETS]
        if bad:
            raise InflucoderError(f"LoRA targets {bad} are embeddings or the LM head, which are never adapted")
        targets: str | list[str] = "all-linear" if settings.targets == ["all-linear"] else list(settings.targets)
        config = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha if settings.alpha is not None else 2 * settings.rank,
            target_modules=targets,
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, config)
        _init_a_from_hash(peft_model, settings.seed)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    leaked = [n for n in trainable if "lora_" not in n or any(f".{t}." in n for t in FORBIDDEN_TARGETS)]
    if leaked:
        raise InflucoderError(f"non-LoRA or embedding/LM-head parameters would enter the gradient: {leaked[:3]}")
    if not trainable:
        raise InflucoderError("the adapter has no trainable LoRA parameters (no target module matched)")
    peft_model.eval()
    return peft_model


def lora_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The gradient parameters, by name, in model order."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
