"""influcoder: fast influence-based training-data attribution for LLMs.

Gradient influence labels of a decoder (LoRA gradients on response tokens, CountSketch-compressed,
cosine similarity) are distilled into a small text encoder that then scores pools at encoder speed.
"""

from .data import Sample, load_samples

__version__ = "0.1.0"
__all__ = ["Sample", "load_samples", "__version__"]
