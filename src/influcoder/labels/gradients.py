"""Per-example gradients of the response-only loss with respect to the LoRA parameters.

The batched path (`BatchedLoraGradients`) runs one forward and one backward for a left-padded batch and
recovers every example's gradient exactly from hooks: for a linear layer y = x W^T, the gradient of W for
example b is sum over b's tokens of g_t x_t^T (g the gradient at the layer output). Forward hooks keep a
reference to each LoRA linear's input (the tensor autograd saves anyway: no copy) and attach a *tensor* hook
to its output (module backward hooks break torch.func and fire in odd orders). The tensor hook reduces the
layer's (batch, tokens, ...) input and output gradient to the small (batch, out, in) per-example gradient the
moment that gradient arrives and drops both, so memory holds the autograd graph and the per-example blocks,
never every layer's token-level inputs and gradients at once. Padded positions are masked out of the output
gradient, so they contribute nothing.

The loss of a batch is the sum over examples of each example's mean token loss on its response, so the
per-example gradients are exactly those of one example run alone; `loop_gradients` is that slow reference
(one example at a time, `.backward()`), kept in the code so tests hold the two equal.

Left padding puts every response at the end of the sequence, so `logits_to_keep` runs the LM head only on
the last (longest response + 1) positions instead of the whole sequence. That slice is a strided view of the
hidden states, which the head's product does not fold into one matrix product: it ran as a batch of small
(positions x hidden) @ (hidden x vocab) products, each far slower than one product of all the positions
(benchmarks/labels_gemm_bound.py, docs/labels.md), so the head's input is made contiguous first (a copy of a
few hundred KB).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from influcoder.data.formatting import IGNORE_INDEX, TokenizedSample, collate_left_padded
from influcoder.labels.fused_lora import fusable, fused_forward
from influcoder.labels.lora import lora_parameters


def response_loss_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over each example's response tokens; `logits` cover the last K positions.

    ``logits[:, j]`` predicts the token after position ``L - K + j``, so they align with
    ``labels[:, L - K + 1 :]`` once the last logit (which predicts past the end) is dropped.
    """
    keep = logits.shape[1]
    targets = labels[:, labels.shape[1] - keep + 1 :]
    token_loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(targets.shape)
    counts = (targets != IGNORE_INDEX).sum(dim=1)
    return token_loss.sum(dim=1) / counts.clamp(min=1)


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def forward_response_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each example's mean loss on its response tokens, the LM head run on the response positions only."""
    labels = batch["labels"]
    n_response = (labels != IGNORE_INDEX).sum(dim=1)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    handle = head.register_forward_pre_hook(_contiguous_input) if isinstance(head, torch.nn.Module) else None
    try:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=int(n_response.max()) + 1,
            use_cache=False,
        )
    finally:
        if handle is not None:
            handle.remove()
    return response_loss_per_example(out.logits, labels)


class BatchedLoraGradients:
    """Exact per-example LoRA gradients from one forward/backward of a padded batch.

    Call it on a batch of `TokenizedSample`s; it returns {parameter name: (batch, *param.shape)}, in the
    order of `lora_parameters(model)`. When a layer's B is all zeros (a fresh adapter) the gradient of its
    A is exactly zero and is returned as zeros without computing it.

    Plain peft LoRA layers run fused during the call (`fused_lora`: one autograd node per adapted layer that
    writes the per-example gradients itself, with no weight gradients accumulated); any other LoRA linear
    (or every one, with `fused=False`) is read through module hooks as described above.
    """

    def __init__(self, model: torch.nn.Module, pad_id: int, fused: bool = True):
        self.model = model
        self.pad_id = pad_id
        self.params = lora_parameters(model)
        self._fused: dict[str, tuple[torch.nn.Module, str, tuple[str, str]]] = {}
        """Fused peft layers by module name: (layer, adapter, (A parameter name, B parameter name))."""
        for prefix, module in model.named_modules() if fused else ():
            adapter = fusable(module)
            names = (f"{prefix}.lora_A.{adapter}.weight", f"{prefix}.lora_B.{adapter}.weight")
            if adapter is not None and all(n in self.params for n in names):
                self._fused[prefix] = (module, adapter, names)
        fused_names = {n for _, _, names in self._fused.values() for n in names}
        owner = {id(p): n for n, p in self.params.items() if n not in fused_names}
        self._linears: dict[str, torch.nn.Linear] = {}
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and id(module.weight) in owner:
                if module.bias is not None and module.bias.requires_grad:
                    raise ValueError("LoRA linears with trainable bias are not supported")
                self._linears[owner[id(module.weight)]] = module
        missing = set(self.params) - set(self._linears) - fused_names
        if missing:
            raise ValueError(f"gradient parameters that are not linear weights: {sorted(missing)[:3]}")
        self._inputs: dict[str, torch.Tensor] = {}
        self._grads: dict[str, torch.Tensor] = {}
        self._mask: torch.Tensor | None = None
        self._skip: set[str] = set()

    def _hook(self, name: str):
        def forward_hook(module, args, output):
            self._inputs[name] = args[0].detach()

            def grad_hook(grad: torch.Tensor) -> None:
                x, g = self._inputs.pop(name), grad.detach()
                if self._mask is not None and g.dim() == 3:
                    g = g * self._mask.to(g.dtype)
                if x.dim() == 2:  # unbatched call shapes: treat as one token per example
                    x, g = x.unsqueeze(1), g.unsqueeze(1)
                self._grads[name] = torch.einsum("bto,bti->boi", g, x)

            if output.requires_grad:
                output.register_hook(grad_hook)

        return forward_hook

    @property
    def mask(self) -> torch.Tensor | None:
        """(batch, tokens, 1): 1 on the batch's real tokens, 0 on padding (during a call)."""
        return self._mask

    def sink(self, name: str, grad: torch.Tensor) -> None:
        """Where fused layers hand in a parameter's per-example gradient."""
        self._grads[name] = grad

    def _zero_a_blocks(self) -> set[str]:
        """A parameters whose B is all zeros: their gradient is exactly zero."""
        skip = set()
        for name in self.params:
            if ".lora_A." in name:
                b_name = name.replace(".lora_A.", ".lora_B.")
                if b_name in self.params and not bool(self.params[b_name].detach().any()):
                    skip.add(name)
        return skip

    def __call__(self, batch: Sequence[TokenizedSample]) -> dict[str, torch.Tensor]:
        device = next(iter(self.params.values())).device
        tensors = {k: v.to(device) for k, v in collate_left_padded(batch, self.pad_id).items()}
        self._mask = tensors["attention_mask"].unsqueeze(-1).float()
        self._skip = self._zero_a_blocks()
        handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in self._linears.items()
            if name not in self._skip
        ]
        for module, adapter, names in self._fused.values():
            module.forward = fused_forward(module, adapter, names, names[0] in self._skip, self)
        try:
            with torch.enable_grad():
                loss = forward_response_loss(self.model, tensors).sum()
                loss.backward()
            out = {}
            for name, param in self.params.items():
                if name in self._skip:
                    out[name] = param.new_zeros((len(batch), *param.shape))
                    continue
                out[name] = self._grads[name]
            return out
        finally:
            for module, _, _ in self._fused.values():
                module.__dict__.pop("forward", None)  # back to the class's (peft's) forward
            for handle in handles:
                handle.remove()
            self._inputs.clear()
            self._grads.clear()
            self._mask = None
            for param in self.params.values():
                param.grad = None


def loop_gradients(model: torch.nn.Module, samples: Sequence[TokenizedSample], pad_id: int) -> dict[str, torch.Tensor]:
    """Slow reference: each example alone, `.backward()`, read `.grad`. Same output layout as the batched path."""
    params = lora_parameters(model)
    device = next(iter(params.values())).device
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in params}
    for sample in samples:
        for p in params.values():
            p.grad = None
        with torch.enable_grad():
            batch = {k: v.to(device) for k, v in collate_left_padded([sample], pad_id).items()}
            forward_response_loss(model, batch).sum().backward()
        for n, p in params.items():
            rows[n].append(p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
    for p in params.values():
        p.grad = None
    return {n: torch.stack(r) for n, r in rows.items()}
