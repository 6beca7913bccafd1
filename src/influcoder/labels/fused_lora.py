"""A LoRA linear layer computed in one autograd node that hands out per-example gradients as it goes back.

peft computes an adapted layer as `base(x) + lora_B(lora_A(x)) * scaling`: four more autograd nodes, each of
which reads or writes a (tokens, out_features) tensor in both directions (the B product, the scaling, the
sum; backward: the scaling again, the accumulation of `lora_B.weight.grad` and `lora_A.weight.grad`, which
labelling never reads, and the branch's share of the input gradient, added on). On a CPU those passes over
memory cost more than their arithmetic: profiled on SmolLM2-135M (fp32), the LoRA products, the scalar
multiplications and the sums took a share of a labelling batch's time far above their share of its FLOPs
(docs/labels.md).

`LoraLinear.apply` computes the same layer, y = x W^T + s (x A^T) B^T, and its input gradient,
dL/dx = G W + s (G B) A, with the two LoRA terms folded into the base products (`addmm_`, accumulated by the
GEMM itself) and skipped entirely while B = 0 (a fresh adapter: y = x W^T exactly). Its backward writes each
example's exact gradients into `sink`:

    dL/dB_b = s sum_t g_t h_t^T      (h_t = A x_t: r numbers per token)
    dL/dA_b = s sum_t (B^T g_t) x_t^T

masking padded tokens on the r-wide side (h, B^T g) instead of the out-wide one, and returns no gradient for
the LoRA weights themselves. Without a sink (`fused_training`, for `finetune`) it returns the LoRA weights'
batch gradients instead, as two rank-r products: dL/dB = s G^T H, dL/dA = s (G B)^T X. `fusable` says when a
peft layer is plain LoRA that this reproduces exactly; other layers (DoRA, dropout, merged or several
adapters) keep peft's forward, and `BatchedLoraGradients` reads them through module hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
import torch.nn.functional as F

Sink = Callable[[str, torch.Tensor], None]
"""Receives (parameter name, (batch, *parameter shape) per-example gradient); None: batch gradients of A, B."""


def fusable(module: torch.nn.Module) -> str | None:
    """The adapter name when `module` is a peft LoRA `Linear` running plain LoRA on one adapter; else None."""
    try:
        from peft.tuners.lora.layer import Linear as PeftLoraLinear
    except ImportError:  # pragma: no cover - peft is a dependency
        return None
    if type(module) is not PeftLoraLinear or module.merged or module.disable_adapters:
        return None
    active = [a for a in module.active_adapters if a in module.lora_A]
    if len(active) != 1 or active[0] in getattr(module, "lora_variant", {}):
        return None
    name = active[0]
    base = module.base_layer
    dropout = module.lora_dropout[name]
    if not isinstance(base, torch.nn.Linear) or base.weight.requires_grad:
        return None
    if base.bias is not None and base.bias.requires_grad:
        return None
    if not (isinstance(dropout, torch.nn.Identity) or (isinstance(dropout, torch.nn.Dropout) and dropout.p == 0)):
        return None
    lora_a, lora_b = module.lora_A[name], module.lora_B[name]
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    if not (lora_a.weight.dtype == lora_b.weight.dtype == base.weight.dtype):  # peft would cast between them
        return None
    return name


class LoraLinear(torch.autograd.Function):
    """y = x W^T + bias + s (x A^T) B^T in one node; per-example dL/dA, dL/dB to `sink` in backward."""

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        a: torch.Tensor,
        b: torch.Tensor,
        scaling: float,
        b_is_zero: bool,
        names: tuple[str, str],
        mask: torch.Tensor | None,
        sink: Sink,
    ) -> torch.Tensor:
        out = F.linear(x, weight, bias)
        h = F.linear(x, a)  # (..., r): A x_t for every token, needed by dL/dB
        if not b_is_zero:
            out.view(-1, out.shape[-1]).addmm_(h.reshape(-1, h.shape[-1]), b.t(), alpha=scaling)
        ctx.save_for_backward(x, weight, a, b, h)
        ctx.scaling, ctx.b_is_zero, ctx.names, ctx.mask, ctx.sink = scaling, b_is_zero, names, mask, sink
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, a, b, h = ctx.saved_tensors
        s, mask = ctx.scaling, ctx.mask
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g2 @ weight).view(*grad.shape[:-1], weight.shape[1])
        gb = None if ctx.b_is_zero else g2 @ b  # (tokens, r): B^T g_t, the gradient reaching A's output, over s
        if grad_x is not None and gb is not None:
            grad_x.view(-1, grad_x.shape[-1]).addmm_(gb, a, alpha=s)
        if ctx.sink is None:  # training: the batch gradients of A and B, returned to autograd
            grad_b = (g2.t() @ h.reshape(-1, h.shape[-1])).mul_(s) if ctx.needs_input_grad[4] else None
            grad_a = None
            if ctx.needs_input_grad[3] and gb is not None:
                grad_a = (gb.t() @ x.reshape(-1, x.shape[-1])).mul_(s)
            return grad_x, None, None, grad_a, grad_b, None, None, None, None, None
        # per example: (batch, tokens, .); an unbatched call counts each row as one example of one token
        x3, g3, h3 = (t.unsqueeze(1) if t.dim() == 2 else t for t in (x, grad, h))
        if mask is not None and mask.shape[:2] == h3.shape[:2]:
            h3 = h3 * mask.to(h3.dtype)
        name_a, name_b = ctx.names
        ctx.sink(name_b, torch.einsum("bto,btr->bor", g3, h3).mul_(s))
        if gb is not None:
            gb3 = gb.view(*g3.shape[:-1], gb.shape[-1])
            if mask is not None and mask.shape[:2] == gb3.shape[:2]:
                gb3 = gb3 * mask.to(gb3.dtype)
            ctx.sink(name_a, torch.einsum("btr,bti->bri", gb3, x3).mul_(s))
        return grad_x, None, None, None, None, None, None, None, None, None


def fused_forward(module: torch.nn.Module, adapter: str, names: tuple[str, str], b_is_zero: bool, state) -> Callable:
    """A replacement for `module.forward` (a fusable peft LoRA Linear) that runs `LoraLinear`; `state`
    provides the batch's `mask` and the `sink` at call time."""
    base, lora_a, lora_b = module.base_layer, module.lora_A[adapter], module.lora_B[adapter]
    scaling = float(module.scaling[adapter])

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs:  # nothing in a decoder's linear layers passes more; refuse rather than drop it
            raise TypeError(f"fused LoRA forward takes one tensor, got {len(args)} more and {sorted(kwargs)}")
        return LoraLinear.apply(
            x, base.weight, base.bias, lora_a.weight, lora_b.weight, scaling, b_is_zero, names, state.mask, state.sink
        )

    return forward


@contextmanager
def fused_training(model: torch.nn.Module) -> Iterator[int]:
    """Run `model`'s plain peft LoRA layers as `LoraLinear` nodes (batch gradients of A and B, as peft's) while
    in the block; yields how many layers are fused. B is never assumed zero: it changes at every step."""
    state = SimpleNamespace(mask=None, sink=None)
    layers = [(module, adapter) for module in model.modules() if (adapter := fusable(module)) is not None]
    for module, adapter in layers:
        module.forward = fused_forward(module, adapter, ("", ""), False, state)
    try:
        yield len(layers)
    finally:
        for module, _ in layers:
            module.__dict__.pop("forward", None)
