"""What one request may ask for, and how concurrent requests are gathered into one model call.

The limits keep one request from holding the model for long (every other request waits behind it on the one
worker thread) and a body from filling memory before it is even parsed; the CLI sets them from its flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from influcoder.core.errors import InflucoderError


@dataclass(frozen=True)
class ServeLimits:
    """Per-request limits and the micro-batching window of `influcoder serve`."""

    max_queries: int = 32
    """Queries per request (attribute, score, histogram)."""
    max_k: int = 100
    """Results per query of /v1/attribute."""
    max_ids: int = 1000
    """Pool ids per /v1/score request."""
    max_bins: int = 200
    """Bins of a /v1/histogram."""
    max_body_bytes: int = 1 << 20
    """Request bodies above this are refused (413) before they are parsed."""
    batch_window_s: float = 0.005
    """How long the first request of a batch waits for others to join it."""
    max_batch: int = 64
    """Most queries one model call takes (a request is never split across calls)."""

    def __post_init__(self) -> None:
        for name in ("max_queries", "max_k", "max_ids", "max_bins", "max_body_bytes", "max_batch"):
            if getattr(self, name) < 1:
                raise InflucoderError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_window_s < 0:
            raise InflucoderError(f"batch_window_s must be >= 0, got {self.batch_window_s}")
        if self.max_batch < self.max_queries:
            raise InflucoderError(
                f"max_batch ({self.max_batch}) must hold one whole request of max_queries ({self.max_queries})"
            )
