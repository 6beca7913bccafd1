"""Cost meters: FLOPs a method spends per scored sample.

`torch.utils.flop_counter.FlopCounterMode` counts matmuls; it does not see scaled-dot-product attention on
the CPU (measured: a tiny BERT counted only `addmm` with SDPA, `addmm` + `bmm` with eager attention). So the
counted models switch to eager attention for the count and back afterwards. Methods that run no torch
model (TF-IDF, pool-mean) are not counted (None), not reported as free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.flop_counter import FlopCounterMode


@contextlib.contextmanager
def eager_attention(models: Sequence[Any]) -> Iterator[None]:
    """Run `models` with eager attention inside the block (their implementation is restored after)."""
    before = []
    for model in models:
        current = getattr(model.config, "_attn_implementation", None)
        if current not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
            before.append((model, current))
    try:
        yield
    finally:
        for model, current in before:
            model.set_attn_implementation(current)


def count_flops(fn: Callable[[], Any], models: Sequence[Any]) -> tuple[Any, int]:
    """(fn's result, FLOPs it spent), attention included."""
    with eager_attention(models), FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())
