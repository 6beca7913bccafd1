"""A memory budget for labelling: derive the token budget of a batch from what the decoder really keeps.

Labelling memory is the autograd graph of one batch: every activation the backward pass needs, for every
padded token; with backward's buffers and the allocator's retention, peak memory grows with the batch's
tokens (the peaks of SmolLM2-135M at several batch sizes: docs/labels.md).
Per-example LoRA gradients are small beside it (reduced layer by layer as they arrive). A fixed
`batch_tokens` therefore either wastes a large machine or swaps a small one.

`--max-memory GB` measures instead of guessing. Where the kernel lets a process reset its high-water mark
(Linux: ``/proc/self/clear_refs``), the longest sample runs through a real forward, backward and per-example
reduction, and the rise of the peak resident memory above what the process held before, per token, is the
cost: it includes backward's transient buffers, the fused attention kernels' workspaces (invisible to the
graph) and the allocator's retention (glibc keeps freed tensor memory, so a batch's peak per token is well
above its saved activations per token). Elsewhere the longest sample runs forward once under
`torch.autograd.graph.saved_tensors_hooks`, whose distinct storages per token, times a margin, are the
estimate; they are also the floor of the measurement (a process that already holds freed memory may serve the
measured pass from it and see no rise at all). The batch budget is what remains of GB
after the process's resident memory (taken before that measurement) and the per-example gradient blocks,
divided by that cost. The batching changes nothing in the features (per-example gradients are exact in any
batch) and is not part of a store's settings, so a rerun with another budget resumes the same store.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Sequence

import torch

from influcoder.core.errors import InflucoderError
from influcoder.data.formatting import TokenizedSample, collate_left_padded

BACKWARD_MARGIN = 2.0
"""Activation bytes times this is budgeted per token: backward allocates gradients of the activations next to
the saved graph, and the allocator keeps freed blocks. On SmolLM2-135M a margin of 1.5 let a run peak above its
budget; 2.0 covers that peak, at the price of smaller batches than needed at large budgets."""

GB = 1024**3


def resident_bytes() -> int:
    """The process's resident memory now (Linux /proc; elsewhere its peak so far, an over-estimate)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


def _high_water_mark() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def measured_peak_bytes(run: Callable[[], object]) -> int | None:
    """How far the process's peak resident memory rises above its current resident memory while `run()`
    runs; None where the peak cannot be reset and read (it is reset first: Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return None
    before = resident_bytes()
    run()
    peak = _high_water_mark()
    return None if peak is None else max(0, peak - before)


def saved_activation_bytes(model: torch.nn.Module, batch: Sequence[TokenizedSample], pad_id: int) -> int:
    """Bytes of the distinct storages autograd saves for backward in a forward pass of `batch` (no backward
    runs; the graph is dropped after)."""
    from influcoder.labels.gradients import forward_response_loss

    storages: dict[int, int] = {}
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:  # weights are resident anyway
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(model.parameters()).device
    tensors = {k: v.to(device) for k, v in collate_left_padded(list(batch), pad_id).items()}
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = forward_response_loss(model, tensors).sum()
    del loss
    return sum(storages.values())


def one_sample_gradients(model: torch.nn.Module, sample: TokenizedSample, pad_id: int) -> None:
    """The labelling work for one sample (forward, backward, per-example reduction), results dropped."""
    from influcoder.labels.gradients import BatchedLoraGradients

    BatchedLoraGradients(model, pad_id)([sample])


def batch_tokens_for_budget(
    model: torch.nn.Module,
    tokenized: Sequence[TokenizedSample],
    pad_id: int,
    max_memory_gb: float,
    block_bytes_per_sample: int,
    batch_size: int,
) -> int:
    """Most padded tokens per batch that keep a labelling process under `max_memory_gb`; an error naming
    the memory one sample needs when even the longest sample alone does not fit."""
    longest = max(tokenized, key=lambda t: len(t.input_ids))
    width = len(longest.input_ids)
    resident = resident_bytes()  # before measuring: the measurement's own graph is freed, not held
    measured = measured_peak_bytes(lambda: one_sample_gradients(model, longest, pad_id))
    saved = saved_activation_bytes(model, [longest], pad_id)
    # The saved activations are a floor: a long-lived process may serve the measurement from memory it freed
    # earlier and still holds, so the peak rises less than the batch really needs (a test suite: by nothing).
    per_token = (max(measured, saved) if measured is not None else BACKWARD_MARGIN * saved) / width
    free = max_memory_gb * GB - resident - 2 * batch_size * block_bytes_per_sample
    tokens = int(free // per_token)
    if tokens < width:
        needed = (resident + 2 * block_bytes_per_sample + width * per_token) / GB
        raise InflucoderError(
            f"`max_memory` {max_memory_gb:g} GB is too small: the decoder and its adapter already take "
            f"{resident / GB:.2f} GB and the longest sample ({longest.id}, {width} tokens) needs about "
            f"{needed:.2f} GB in all; raise it, or lower `max_length`"
        )
    return tokens
