"""Random projections of per-example gradients, behind one `Projector` interface.

Implementations:

* `CountSketch` (the paper's, Charikar et al. 2002): each gradient coordinate is hashed to one of
  ``out_dim`` buckets with a random sign and added there. Linear, O(in_dim) per example, never builds a
  matrix, and unbiased for inner products: E[<Sx, Sy>] = <x, y>.
* `Rademacher` (LESS / TRAK): a dense matrix of i.i.d. ±1/sqrt(out_dim) entries, generated chunk by chunk
  from the hash stream. O(in_dim * out_dim) per example: fine on a GPU or for small adapters; slow for
  millions of LoRA coordinates on a CPU.
* `Identity`: the exact gradient (concatenated blocks), for fidelity checks and tests.

Gradients arrive as *blocks*: a mapping from parameter name to a (batch, n) tensor, projected block by block
so the full per-example gradient never needs to exist as one tensor. Hashes are keyed by (seed, parameter
name, coordinate index) through `hashing`, so the same seed gives the same projection on every machine
and torch version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from influcoder.core.errors import InflucoderError
from influcoder.core.hashing import hash_stream, stream_key


class Projector(ABC):
    """Maps gradient blocks {name: (batch, n)} to (batch, out_dim) features; linear in the gradient."""

    kind: str = ""

    def __init__(self, out_dim: int, seed: int = 0):
        if out_dim < 1:
            raise InflucoderError(f"projection dim must be positive, got {out_dim}")
        self.out_dim = int(out_dim)
        self.seed = int(seed)

    def project(self, blocks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the blocks' projections: a linear map never needs the concatenated gradient."""
        out: torch.Tensor | None = None
        offset = 0
        for name, block in blocks.items():
            flat = block.reshape(block.shape[0], -1)
            if out is None:
                out = flat.new_zeros(flat.shape[0], self.out_dim)
            self.add_block(out, name, flat, offset)
            offset += flat.shape[1]
        if out is None:
            raise InflucoderError("nothing to project: no gradient blocks")
        return out

    @abstractmethod
    def add_block(self, out: torch.Tensor, name: str, flat: torch.Tensor, offset: int) -> None:
        """Add the projection of block `name` ((batch, n) coordinates, starting at `offset` of the
        concatenated gradient) into `out` in place."""

    def project_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """Project a plain (batch, in_dim) matrix, as one block named ``x``."""
        return self.project({"x": x})

    def config(self) -> dict[str, Any]:
        """What a manifest records to recreate this projector."""
        return {"kind": self.kind, "dim": self.out_dim, "seed": self.seed}


class CountSketch(Projector):
    """Hash each coordinate to a bucket with a sign; sum per bucket (the paper's projection, section 3.1)."""

    kind = "countsketch"

    def __init__(self, out_dim: int, seed: int = 0):
        super().__init__(out_dim, seed)
        self._cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def buckets_and_signs(self, name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bucket index (int64) and sign (±1 float32) of the `n` coordinates of block `name`."""
        cached = self._cache.get((name, n))
        if cached is None:
            h = hash_stream(stream_key(self.seed, f"countsketch:{name}"), 0, n)
            buckets = torch.from_numpy(((h >> np.uint64(1)) % np.uint64(self.out_dim)).astype(np.int64))
            signs = torch.from_numpy(np.where(h & np.uint64(1), 1.0, -1.0).astype(np.float32))
            cached = self._cache[(name, n)] = (buckets, signs)
        return cached

    def add_block(self, out: torch.Tensor, name: str, flat: torch.Tensor, offset: int) -> None:
        buckets, signs = self.buckets_and_signs(name, flat.shape[1])
        out.index_add_(1, buckets.to(flat.device), flat * signs.to(flat.device, flat.dtype))


class Rademacher(Projector):
    """Dense ±1/sqrt(out_dim) projection (LESS, TRAK), its rows generated in chunks from the hash stream."""

    kind = "rademacher"

    def __init__(self, out_dim: int, seed: int = 0, chunk_rows: int = 4096):
        super().__init__(out_dim, seed)
        self.chunk_rows = chunk_rows
        self._words = (self.out_dim + 63) // 64
        bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
        self._signs = torch.from_numpy((bits.astype(np.float32) * 2.0 - 1.0) / np.float32(np.sqrt(self.out_dim)))
        """The 8 entries each byte of the hash stream stands for (bit i of the byte -> entry i): one table
        lookup per byte builds the matrix in one pass. Unpacking bits, then converting and scaling them, made
        four passes over each 134 MB chunk (4,096 x 8,192 float32), for more time and more peak memory; the
        matrix is the same bit for bit. The lookup is torch's `index_select`, which runs on every thread: numpy's
        fancy indexing runs on one and took longer than the matmul the chunk feeds (same matrix)."""

    def matrix_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of block `name`'s (n, out_dim) projection matrix."""
        key = stream_key(self.seed, f"rademacher:{name}")
        words = hash_stream(key, start * self._words, (stop - start) * self._words)
        entries = self._signs.index_select(0, torch.from_numpy(words.view(np.uint8)).long())
        return entries.reshape(stop - start, -1)[:, : self.out_dim]

    def add_block(self, out: torch.Tensor, name: str, flat: torch.Tensor, offset: int) -> None:
        for start in range(0, flat.shape[1], self.chunk_rows):
            stop = min(start + self.chunk_rows, flat.shape[1])
            out += flat[:, start:stop] @ self.matrix_rows(name, start, stop).to(flat.device, flat.dtype)


class Identity(Projector):
    """No projection: the blocks concatenated in order (exact gradients; `out_dim` is checked)."""

    kind = "identity"

    def add_block(self, out: torch.Tensor, name: str, flat: torch.Tensor, offset: int) -> None:
        out[:, offset : offset + flat.shape[1]] = flat

    def project(self, blocks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = sum(b[0].numel() for b in blocks.values())
        if total != self.out_dim:
            raise InflucoderError(f"identity projector expects {self.out_dim} coordinates, got {total}")
        return super().project(blocks)


PROJECTORS: dict[str, type[Projector]] = {"countsketch": CountSketch, "rademacher": Rademacher, "identity": Identity}


def make_projector(kind: str, dim: int, seed: int = 0) -> Projector:
    try:
        return PROJECTORS[kind](dim, seed)
    except KeyError:
        raise InflucoderError(f"unknown projector {kind!r}; choose from {', '.join(PROJECTORS)}") from None
