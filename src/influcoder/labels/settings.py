"""The settings that shape gradient features; torch-free so the CLI can build its flags from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from influcoder.core.errors import InflucoderError, SettingError


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
    projector: Literal["countsketch", "rademacher", "identity"] = "countsketch"
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
    batch_tokens: int = 512
    """Most padded tokens per forward/backward. On a CPU 512 costs no throughput and far less memory than larger batches
    (docs/labels.md); raise it on a GPU, or give --max-memory."""
    max_memory: float | None = None
    """Memory budget in GB of the labelling process: replaces --batch-tokens by the token budget measured to
    fit it (the longest sample's saved activations per token; see `influcoder.labels.memory`)."""
    attention: Literal["eager", "sdpa"] = "eager"
    """The decoder's attention kernel: eager (counted by the FLOP meter on CPU) or sdpa (PyTorch's fused
    attention: keeps no attention matrix for backward, so less memory per token; the same gradients to float
    rounding). Measured: benchmarks/results/labels.md."""
    shard_size: int = 64
    """Samples per store shard (the unit of resumption)."""
    dtype: Literal["float32", "float16"] = "float32"
    """Stored feature dtype (float32 or float16)."""
    device: str = "auto"
    """Where the decoder runs: auto (CUDA when present), cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        for name in ("rank", "proj_dim", "max_length", "batch_size", "batch_tokens", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, int) and value < 1:
                raise SettingError(name, f"must be at least 1, got {value}")
        if self.max_memory is not None and not self.max_memory > 0:
            raise SettingError("max_memory", f"must be a positive number of GB, got {self.max_memory}")

    def lora(self):
        from influcoder.labels.lora import LoraSettings

        return LoraSettings(self.rank, self.alpha, list(self.targets), self.seed, self.adapter)

    @classmethod
    def from_features(
        cls, features: dict, device: str = "auto", where: str = "the encoder's config.json"
    ) -> LabelSettings:
        """The settings that reproduce the gradient features a labels directory or an encoder records
        (`GradientFeaturizer.config()`, ``label_config`` of an encoder): the same decoder, seeded adapter,
        projection and text view, so a query's gradient here is comparable with the labelled ones."""
        from influcoder.core.jsonfile import field

        if not features or features.get("kind") != "lora-gradients":
            raise InflucoderError(
                f"{where} records no gradient labels it was distilled from; exact gradients (audits, a subspace "
                "encoder's queries) need an encoder trained by `influcoder distill`"
            )
        lora, projector = field(features, "lora", where, dict), field(features, "projector", where, dict)
        return cls(
            model=field(features, "model", where, str),
            adapter=lora.get("adapter"),
            rank=field(lora, "rank", where, int),
            alpha=lora.get("alpha"),
            targets=list(field(lora, "targets", where, list)),
            projector=field(projector, "kind", where, str),
            proj_dim=field(projector, "dim", where, int),
            seed=field(projector, "seed", where, int),
            max_length=field(features, "max_length", where, int),
            chat_template=features.get("text_view") == "chat-template",
            device=device,
        )
