"""Where tensors live: one resolver for every stage's ``--device auto|cpu|cuda``."""

from __future__ import annotations

from typing import Any

from influcoder.core.errors import InflucoderError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = "auto") -> Any:
    """A `torch.device`: ``auto`` (or None) is CUDA when one is present, else the CPU.

    Any torch device string (``cuda:1``, ``mps``) passes through, so a machine with several GPUs can pick one;
    one that this machine does not have is refused here, before a stage has written anything, instead of
    failing inside torch half-way through a run.
    """
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InflucoderError(f"device {device!r}: not a torch device; use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InflucoderError(f"device {device!r}: torch sees no CUDA device on this machine; use cpu or auto")
        if resolved.index is not None and resolved.index >= count:
            raise InflucoderError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InflucoderError(f"device {device!r}: MPS is not available on this machine; use cpu or auto")
    return resolved
