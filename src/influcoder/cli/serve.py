"""`influcoder serve`: an index kept warm behind a JSON API and an explorer page (`influcoder.serve`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from influcoder.cli.options import Command, Device, Quiet
from influcoder.core.errors import InflucoderError


@dataclass(kw_only=True)
class Serve(Command):
    """Serve an index over HTTP: a JSON API under /v1/ and an explorer page at /.

    Opens the index and its encoder once and keeps them warm. POST /v1/attribute (top-k per query, with the
    coverage and spread flags), /v1/score (queries against given pool ids), /v1/histogram (a query's scores
    over the whole pool); GET /v1/samples/ID, /v1/index, /v1/health; the OpenAPI schema at /v1/openapi.json.
    Requests arriving together share one encoder call. It listens on the loopback only unless --host says
    otherwise, and has no authentication: put it behind a proxy that has before exposing it. Needs the serve
    extra: pip install "influcoder[serve]".
    """

    positive = ("port", "max_queries", "max_k", "max_ids", "max_bins", "max_body_bytes", "max_batch")

    index: Path
    """An index directory (`influcoder index`)."""
    encoder: Path | None = None
    """Encoder directory (default: the one recorded in the index)."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = 8000
    """Port to listen on."""
    max_queries: int = 32
    """Most queries one request may send."""
    max_k: int = 100
    """Most results per query one request may ask for."""
    max_ids: int = 1000
    """Most pool ids one /v1/score request may send."""
    max_bins: int = 200
    """Most bins one /v1/histogram request may ask for."""
    max_body_bytes: int = 1 << 20
    """Request bodies above this many bytes are refused (413)."""
    batch_window_ms: float = 5.0
    """How long a request waits for others to share its encoder call."""
    max_batch: int | None = None
    """Most queries one encoder call takes (default: 64, or --max-queries when larger)."""
    verify: bool = False
    """Check the sha256 of every shard of the index before serving it (as `influcoder verify`); the fast check
    on every read compares sizes only."""
    query_side: Literal["exact", "encoded"] = "exact"
    """With a subspace encoder: score queries by their exact gradient (decoder pass) or by the encoder."""

    quiet: Quiet = False
    device: Device = "auto"

    def run(self) -> int:
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as exc:
            missing = f"serve needs the serve extra ({exc.name} is missing)"
            raise InflucoderError(f'{missing}: pip install "influcoder[serve]"') from None
        from influcoder.serve.app import run_server
        from influcoder.serve.limits import ServeLimits
        from influcoder.serve.service import IndexService

        logging.basicConfig(
            level=logging.WARNING if self.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        limits = ServeLimits(
            max_queries=self.max_queries,
            max_k=self.max_k,
            max_ids=self.max_ids,
            max_bins=self.max_bins,
            max_body_bytes=self.max_body_bytes,
            batch_window_s=self.batch_window_ms / 1000,
            max_batch=self.max_batch or max(64, self.max_queries),
        )
        if self.verify:
            from influcoder.attribution.verify import require_intact

            require_intact([self.index])
        service = IndexService.open(self.index, self.encoder, device=self.device, query_side=self.query_side)
        run_server(service, limits, self.host, self.port, quiet=self.quiet)
        return 0
