"""Decoder-representation baselines: cosine of the labelling decoder's last-layer hidden states.

- `repsim` (Rep-Sim): the mean of the last layer over a sample's tokens.
- `rds+` (RDS+, as in DATE-LM): a position-weighted mean, weight proportional to the token's position in
  the sample (1, 2, ..., n), so later tokens, which have read more of the text, count more.

Both read the text exactly as the gradient labels do (same decoder, chat template, prompt truncation) and
with the same adapter: a trained one (`settings.adapter`, e.g. the model fine-tuned on the pool in the
toxicity task, whose hidden states DATE-LM's Rep-Sim reads) is applied; a fresh one is not, since its B = 0
leaves the decoder unchanged. They never count padding: batches are left-padded with per-sample position
ids, so a sample's representation is the same in any batch. One forward pass per sample, no backward: the
cheapest decoder-based method.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from influcoder.data.formatting import SampleFormatter, collate_left_padded
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.featurizer import make_batches
from influcoder.labels.settings import LabelSettings


def pooled_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, weighting: str) -> torch.Tensor:
    """(batch, dim) pooled last-layer states: a plain mean, or weights proportional to position ("position")."""
    mask = attention_mask.to(hidden.dtype)
    weights = mask.cumsum(dim=1) * mask if weighting == "position" else mask
    pooled = (hidden * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


class DecoderRepresentation(Scorer):
    """Cosine of pooled last-layer hidden states of the decoder the labels were made with."""

    name = "repsim"
    description = "cosine of mean last-layer decoder states"
    weighting = "mean"

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None, progress: bool = False):
        from influcoder.core.devices import resolve_device
        from influcoder.data.models import load_decoder

        if model is None:
            model, tokenizer = load_decoder(settings.model)
        if settings.adapter:
            from influcoder.labels.lora import attach_lora

            model = attach_lora(model, settings.lora())
        self.settings, self.progress = settings, progress
        self.model = model.to(resolve_device(settings.device)).eval()
        self.formatter = SampleFormatter(tokenizer, settings.max_length, settings.chat_template)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0

    def models(self) -> list:
        return [self.model]

    def bytes_per_sample(self) -> float:
        return 4.0 * self.model.config.hidden_size  # one float32 state vector

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """(n, hidden) unit-norm pooled states, in input order (batched by length, padding never counted)."""
        return self.embed_pooled(samples, (self.weighting,))[self.weighting]

    @torch.no_grad()
    def embed_pooled(self, samples: Sequence[Sample], weightings: Sequence[str]) -> dict[str, np.ndarray]:
        """Every pooling in `weightings` from ONE forward pass: Rep-Sim and RDS+ read the same hidden states,
        so scoring both costs the decoder pass once."""
        tokenized = self.formatter.encode_all(samples)
        device = next(self.model.parameters()).device
        dim = self.model.config.hidden_size
        out = {w: np.empty((len(samples), dim), dtype=np.float32) for w in weightings}
        lengths = [len(t.input_ids) for t in tokenized]
        with tqdm(total=len(samples), desc=self.name, unit="sample", disable=not self.progress) as bar:
            for batch in make_batches(lengths, self.settings.batch_size, self.settings.batch_tokens):
                inputs = collate_left_padded([tokenized[i] for i in batch], self.pad_id)
                inputs = {k: v.to(device) for k, v in inputs.items() if k != "labels"}
                # logits for the last position only: the states are what is read, and the LM head over every
                # position is 21% of SmolLM2-135M's linear FLOPs (576 x 49,152 against 30 blocks' 3.5M per token)
                outputs = self.model(**inputs, output_hidden_states=True, logits_to_keep=1)
                hidden = outputs.hidden_states[-1].float()
                for weighting, array in out.items():
                    array[batch] = pooled_hidden(hidden, inputs["attention_mask"], weighting).cpu().numpy()
                bar.update(len(batch))
        return out

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        return self.embed(pool).astype(np.float64) @ self.embed(queries).astype(np.float64).T

    def score_all(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> dict[str, np.ndarray]:
        """{"repsim": matrix, "rds+": matrix} from one pass over pool and queries."""
        weightings = tuple(WEIGHTINGS.values())
        pooled_pool, pooled_queries = self.embed_pooled(pool, weightings), self.embed_pooled(queries, weightings)
        return {
            name: pooled_pool[w].astype(np.float64) @ pooled_queries[w].astype(np.float64).T
            for name, w in WEIGHTINGS.items()
        }


class RepSim(DecoderRepresentation):
    name = "repsim"
    description = "cosine of mean last-layer decoder states"
    weighting = "mean"


class RdsPlus(DecoderRepresentation):
    name = "rds+"
    description = "cosine of position-weighted mean last-layer decoder states"
    weighting = "position"


WEIGHTINGS = {RepSim.name: RepSim.weighting, RdsPlus.name: RdsPlus.weighting}
DESCRIPTIONS = {RepSim.name: RepSim.description, RdsPlus.name: RdsPlus.description}
