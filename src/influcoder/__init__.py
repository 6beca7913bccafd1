"""influcoder: fast influence-based training-data attribution for LLMs.

Gradient influence labels of a decoder (LoRA gradients on response tokens, CountSketch-compressed,
cosine similarity) are distilled into a small text encoder that then scores pools at encoder speed.
Heavy submodules (torch, transformers) are imported lazily, so `influcoder --help` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Influcoder", "InfluenceEncoder", "Sample", "load_samples", "__version__"]

_LAZY = {
    "Influcoder": ("influcoder.attribution.influcoder", "Influcoder"),
    "InfluenceEncoder": ("influcoder.encoder.model", "InfluenceEncoder"),
    "Sample": ("influcoder.data.records", "Sample"),
    "load_samples": ("influcoder.data.loading", "load_samples"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'influcoder' has no attribute {name!r}")
