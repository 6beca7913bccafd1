"""`logra` (LoGRA, Choe et al. 2024): per-example gradients of the decoder's *base* linear layers, projected
on both sides, with and without an empirical-Fisher preconditioner.

A linear layer's per-example gradient is sum_t g_t x_t^T (g: gradient at the layer output, x: its input).
LoGRA never forms it: it projects the input and the output gradient first, x_t -> P_in x_t and
g_t -> P_out g_t (k x d each), and keeps sum_t (P_out g_t)(P_in x_t)^T = P_out G P_in^T, a k x k matrix per
layer. The cost is a forward and a backward through the activations (no weight gradient is ever formed), and
the stored feature is k^2 per layer instead of d_out x d_in.

Unlike the labels and LESS, which differentiate a LoRA adapter, this reads the gradients of the frozen base
weights themselves, of every linear layer of the blocks (the LM head and the embeddings excluded, as for the
labels). Same decoder, text view and response-only loss as the labels.

- `logra`: cosine of the projected gradients (concatenated over layers).
- `logra-fisher`: each layer's features whitened by its damped empirical Fisher (F + lam I)^-1/2,
  F = mean over the scored pool of g g^T (k^2 x k^2), lam = 0.1 x mean eigenvalue, then cosine: the
  preconditioned inner product g_q^T (F + lam I)^-1 g_p, normalised.
Projections are Gaussian, seeded, with variance 1/k, so that inner products are preserved in expectation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from influcoder.core.progress import progress_bar
from influcoder.data.formatting import SampleFormatter, collate_left_padded
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.featurizer import make_batches
from influcoder.labels.gradients import forward_response_loss
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings


def block_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every linear layer of the decoder but the LM head (the vocabulary projections are excluded)."""
    head = model.get_output_embeddings()
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}


def whiten(features: np.ndarray, fisher_from: np.ndarray, damping: float) -> np.ndarray:
    """`features` times (F + lam I)^-1/2, F the second moment of `fisher_from`'s rows, lam = damping x mean
    eigenvalue of F (a symmetric inverse square root, so whitened inner products are g^T (F + lam I)^-1 h)."""
    fisher = fisher_from.T @ fisher_from / len(fisher_from)
    values, vectors = np.linalg.eigh(fisher)
    lam = damping * max(float(values.mean()), 1e-30)
    return features @ (vectors * (1.0 / np.sqrt(np.clip(values, 0, None) + lam))) @ vectors.T


class LoGra(Scorer):
    name = "logra"
    description = "base-linear gradients, two-sided Gaussian projection k x k per layer, cosine"
    preconditioner = "none"

    def __init__(
        self,
        settings: LabelSettings,
        model=None,
        tokenizer=None,
        rank: int = 16,
        fisher: bool = False,
        damping: float = 0.1,
    ):
        from influcoder.core.devices import resolve_device
        from influcoder.data.models import load_decoder

        if model is None:
            model, tokenizer = load_decoder(settings.model)
        self.settings, self.rank, self.fisher, self.damping = settings, rank, fisher, damping
        if fisher:
            self.name, self.preconditioner = "logra-fisher", "empirical-fisher"
            self.description = "LoGRA features whitened by each layer's damped empirical Fisher, cosine"
        self.model = model.to(resolve_device(settings.device)).eval().requires_grad_(False)
        self.formatter = SampleFormatter(tokenizer, settings.max_length, settings.chat_template)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0
        self.linears = block_linears(self.model)
        device = next(self.model.parameters()).device
        generator = torch.Generator().manual_seed(settings.seed)
        self.projections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, linear in self.linears.items():  # in module order: the same matrices for the same seed
            p_in = torch.randn(rank, linear.in_features, generator=generator) / rank**0.5
            p_out = torch.randn(rank, linear.out_features, generator=generator) / rank**0.5
            self.projections[name] = (p_in.to(device), p_out.to(device))

    def models(self) -> list:
        return [self.model]

    def bytes_per_sample(self) -> float:
        return 4.0 * len(self.linears) * self.rank**2

    def _batch_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, layers * k^2) projected per-example gradients of one left-padded batch."""
        mask = inputs["attention_mask"].unsqueeze(-1).to(torch.float32)
        projected_in: dict[str, torch.Tensor] = {}
        projected_out: dict[str, torch.Tensor] = {}

        def hook_for(name: str):
            p_in, p_out = self.projections[name]

            def forward_hook(module, args, output):
                projected_in[name] = (args[0].detach().float() * mask) @ p_in.T  # padding contributes nothing
                if output.requires_grad:
                    output.register_hook(lambda g: projected_out.__setitem__(name, g.detach().float() @ p_out.T))

            return forward_hook

        def track_grad(module, args, output):  # frozen weights: let the activations carry the backward pass
            return output.requires_grad_(True)

        handles = [self.model.get_input_embeddings().register_forward_hook(track_grad)]
        handles += [m.register_forward_hook(hook_for(n)) for n, m in self.linears.items()]
        try:
            with torch.enable_grad():
                forward_response_loss(self.model, inputs).sum().backward()
            blocks = [torch.einsum("bto,bti->boi", projected_out[n], projected_in[n]).flatten(1) for n in self.linears]
            return torch.cat(blocks, dim=1)
        finally:
            for handle in handles:
                handle.remove()

    def features(self, samples: Sequence[Sample]) -> np.ndarray:
        """(n, layers * k^2) projected gradients in input order, unnormalised."""
        tokenized = self.formatter.encode_all(samples)
        device = next(self.model.parameters()).device
        out = np.empty((len(samples), len(self.linears) * self.rank**2), dtype=np.float32)
        lengths = [len(t.input_ids) for t in tokenized]
        with progress_bar(total=len(samples), desc=self.name, unit="sample") as bar:
            for batch in make_batches(lengths, self.settings.batch_size, self.settings.batch_tokens):
                inputs = {
                    k: v.to(device) for k, v in collate_left_padded([tokenized[i] for i in batch], self.pad_id).items()
                }
                out[batch] = self._batch_features(inputs).cpu().numpy()
                bar.update(len(batch))
        return out

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        p = self.features(list(pool)).astype(np.float64)
        q = self.features(list(queries)).astype(np.float64)
        if self.fisher:
            size = self.rank**2
            for start in range(0, p.shape[1], size):  # the Fisher is that of the pool being scored
                layer = slice(start, start + size)
                pool_layer = p[:, layer].copy()
                p[:, layer] = whiten(pool_layer, pool_layer, self.damping)
                q[:, layer] = whiten(q[:, layer], pool_layer, self.damping)
        return normalize_rows(p) @ normalize_rows(q).T
