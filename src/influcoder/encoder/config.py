"""An encoder's configuration and its ``config.json``: what a saved encoder directory is, and how it is read.

`EncoderConfig` holds everything that makes two encoders embed alike besides their weights (backbone, pooling,
head, token budget, text view, the label settings it was distilled from). A saved encoder writes it as
``config.json`` with ``"format": "influcoder.encoder"`` (`write_config`); `read_config` refuses any other file.
The encoder itself: `influcoder.encoder.model`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.encoder.settings import HEAD_KINDS, KERNEL_GAMMA, POOLINGS, RESPONSE_POOLINGS, TEXT_ENCODER, TEXT_VIEW

CONFIG_NAME = "config.json"
ENCODER_FILES = (CONFIG_NAME, "backbone", "head.safetensors*", "coverage.npz*", "length_prior.json", "modules.json",
                 "1_Pooling", "2_Dense", "3_Normalize", "subspace.npz*")  # fmt: skip
"""What a saved encoder directory holds that influcoder wrote: a replacing save keeps anything else."""
FORMAT = "influcoder.encoder"


CHAT_TEMPLATE = "chat-template"
"""The `EncoderConfig.text_view` that renders a sample with the backbone tokenizer's chat template."""


@dataclass
class EncoderConfig:
    backbone: str = TEXT_ENCODER
    """Where the backbone came from (embedded name or directory); informational once saved."""
    pooling: str = "mean"
    """Token pooling: mean, cls, attention (learned), response (mean over response tokens), mean+response."""
    head_dim: int | None = None
    """Output dim of a head on the pooled vector; None for no head."""
    head_kind: str = "linear"
    """linear, or kernel: a Gaussian kernel against `kernel_landmarks` stored training states, then linear
    (`influcoder.encoder.heads.KernelHead`, what a subspace encoder fits by default)."""
    kernel_landmarks: int = 0
    """kernel head: how many landmark states it keeps."""
    kernel_gamma: float = KERNEL_GAMMA
    """kernel head: the kernel's width, exp(-gamma * squared distance / dimension)."""
    max_length: int = 256
    """Encoder token budget per text; longer texts lose the start of the prompt."""
    backbone_layers: int | None = None
    """Read the backbone cut after its first this-many blocks (None: all of them): a decoder backbone's
    forward pass then costs about that share of the whole (`influcoder.data.models.keep_blocks`)."""
    text_view: str = TEXT_VIEW
    """How a sample becomes one string: a format with placeholders {prompt} and {response}, or `CHAT_TEMPLATE`
    (the backbone's chat template, as `label` renders a sample for a decoder: for a decoder used as the
    backbone, so that it reads each text as the labels' gradients did)."""
    label_config: dict[str, Any] = field(default_factory=dict)
    """The gradient-label settings this encoder was distilled from (for audits and checks)."""
    length_features: bool = False
    """Append four log-length features (characters and words of prompt and response) to the pooled vector
    before the head: a mean over tokens does not say how many there were, and the query-independent part of
    gradient influence follows length closely (see `length_features`)."""
    standardise_head_input: bool = False
    """Shift and scale the head's input by stored per-feature constants (`head_shift`, `head_scale`), so a
    head fitted on standardised features trains well-conditioned (set by `influcoder.encoder.subspace`)."""
    unit_norm: bool = True
    """L2-normalise the output (cosine scoring). False for a subspace encoder, whose output is a pool sample's
    predicted coordinates on the training gradients' top singular directions (`influcoder.encoder.subspace`):
    their norm is the share of the gradient the subspace holds, which the inner product with a query needs."""

    def __post_init__(self) -> None:
        if self.head_kind not in HEAD_KINDS:
            raise InflucoderError(f"unknown head_kind {self.head_kind!r}; choose from {', '.join(HEAD_KINDS)}")
        if self.head_kind == "kernel" and (not self.head_dim or self.kernel_landmarks < 1):
            raise InflucoderError("a kernel head needs head_dim and at least one landmark (kernel_landmarks)")
        if self.pooling not in POOLINGS:
            raise InflucoderError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        if self.text_view == CHAT_TEMPLATE:
            return
        if "{prompt}" not in self.text_view and "{response}" not in self.text_view:
            raise InflucoderError("text_view must contain {prompt} and/or {response}")
        if self.pooling in RESPONSE_POOLINGS and self.text_view.count("{response}") != 1:
            raise InflucoderError(f"pooling {self.pooling!r} needs a text_view with exactly one {{response}}")

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields an encoder's fingerprint hashes: all of them, less the kernel head's while the head is
        linear, so that the encoders (and the indexes) made before those fields existed keep their fingerprints."""
        fields = dict(self.__dict__)
        if self.head_kind == "linear":
            for name in ("head_kind", "kernel_landmarks", "kernel_gamma"):
                fields.pop(name)
        return fields

    @property
    def pooled_dim_factor(self) -> int:
        """How many hidden-size vectors the pooling puts side by side."""
        return 2 if self.pooling == "mean+response" else 1


def encoder_directory(directory: str | Path) -> Path:
    """`directory`, or the ``best`` checkpoint of a `distill` output directory given instead."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).exists() and (directory / "best" / CONFIG_NAME).exists():
        return directory / "best"
    return directory


def read_config(directory: Path) -> EncoderConfig:
    """The `EncoderConfig` of the saved encoder in `directory`; refuses a directory without one, another
    format's config, or one with settings this influcoder does not know."""
    path = directory / CONFIG_NAME
    if not path.exists():
        raise InflucoderError(f"{directory} is not a saved influcoder encoder (no {CONFIG_NAME})")
    raw = read_json(path)
    if raw.pop("format", None) != FORMAT:
        raise InflucoderError(f"{path}: not an influcoder encoder config")
    try:
        return EncoderConfig(**raw)
    except TypeError as exc:
        raise DamagedFileError(f"{path}: not an encoder config this influcoder reads ({exc})") from None


def write_config(directory: Path, config: EncoderConfig) -> None:
    """`config` as ``config.json`` in `directory`, with its format name."""
    (directory / CONFIG_NAME).write_text(
        json.dumps({"format": FORMAT, **asdict(config)}, indent=1) + "\n", encoding="utf-8"
    )
