"""Where tensors live: one resolver for every stage's ``--device auto|cpu|cuda``."""

from __future__ import annotations

from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = "auto") -> Any:
    """A `torch.device`: ``auto`` (or None) is CUDA when one is present, else the CPU.

    Any torch device string (``cuda:1``, ``mps``) passes through, so a machine with several GPUs can pick one.
    """
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
