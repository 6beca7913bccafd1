"""Explicit integer hashing, so random structures (sketches, LoRA inits) are the same on every machine.

`torch.randint` and friends are not promised stable across versions; a gradient store made today must match
one made next year with the same seed. Everything random in influcoder that shapes features is therefore
derived from SplitMix64 (Steele, Lea, Flood 2014), a counter-based mixer: the value at index ``i`` of a
stream keyed by ``(seed, name)`` is ``splitmix64(key + (i + 1) * GOLDEN)``, computable for any index in any
order, in vectorized numpy with wrapping uint64 arithmetic.
"""

from __future__ import annotations

import hashlib

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def stream_key(seed: int, name: str) -> np.uint64:
    """A 64-bit key for the stream named `name` under `seed` (sha256, so any string works)."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{name}".encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function applied elementwise to a uint64 array."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def hash_stream(key: np.uint64, start: int, count: int) -> np.ndarray:
    """`count` uint64 values of the stream `key`, from index `start`."""
    index = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return splitmix64(key + index * GOLDEN)


def hash_uniform(key: np.uint64, count: int) -> np.ndarray:
    """`count` float64 values uniform in [0, 1) from the top 53 bits of the stream."""
    return (hash_stream(key, 0, count) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
