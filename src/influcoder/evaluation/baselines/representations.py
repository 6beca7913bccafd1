"""Decoder-representation baselines: cosine of the labelling decoder's last-layer hidden states.

- `repsim` (Rep-Sim): the mean of the last layer over a sample's tokens.
- `rds+` (RDS+, as in DATE-LM): a position-weighted mean, weight proportional to the token's position in
  the sample (1, 2, ..., n), so later tokens, which have read more of the text, count more.
- `repsim-response`: the mean over the response tokens only. A plain mean over a chat-formatted sample also
  averages the chat template and system prompt, the same few dozen tokens in every sample, which pulls all
  representations together; the response is where a harmful pair differs from a benign one.
- `repsim-last`: the state of the sample's last token, the one that has read all of it (the pooling of
  decoder embedding models).

DATE-LM does not say which pooling its Rep-Sim uses (its Rep-Sim probe script is not among the sources we
could read), so all four are offered; one decoder pass serves any set of them.

All four read the text exactly as the gradient labels do (same decoder, chat template, prompt truncation) and
with the same adapter: a trained one (`settings.adapter`, e.g. the model fine-tuned on the pool in the
toxicity task, whose hidden states DATE-LM's Rep-Sim reads) is applied; a fresh one is not, since its B = 0
leaves the decoder unchanged. They never count padding: batches are left-padded with per-sample position
ids, so a sample's representation is the same in any batch. One forward pass per sample, no backward: the
cheapest decoder-based method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.formatting import IGNORE_INDEX, SampleFormatter, collate_left_padded
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.featurizer import make_batches
from influcoder.labels.settings import LabelSettings


def pooled_hidden(
    hidden: torch.Tensor, attention_mask: torch.Tensor, weighting: str, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, dim) unit-norm pooled last-layer states, weighted over a sample's tokens: "mean" (all alike),
    "position" (in proportion to position), "response" (the response tokens alike: `labels` other than
    IGNORE_INDEX), "last" (the last real token only)."""
    mask = attention_mask.to(hidden.dtype)
    if weighting == "position":
        weights = mask.cumsum(dim=1) * mask
    elif weighting == "response":
        if labels is None:
            raise ValueError("response pooling needs the labels that mark the response tokens")
        weights = mask * (labels != IGNORE_INDEX).to(hidden.dtype)
    elif weighting == "last":
        last = mask.shape[1] - 1 - mask.flip(dims=(1,)).argmax(dim=1)  # the last attended position, any padding
        weights = torch.nn.functional.one_hot(last, mask.shape[1]).to(hidden.dtype) * mask
    elif weighting == "mean":
        weights = mask
    else:
        raise ValueError(f"unknown pooling {weighting!r}")
    pooled = (hidden * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


class DecoderRepresentation(Scorer):
    """Cosine of pooled last-layer hidden states of the decoder the labels were made with."""

    name = "repsim"
    description = "cosine of mean last-layer decoder states"
    weighting = "mean"

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None, progress: bool | None = None):
        """`progress`: the bar of `embed` on (True) or off (False), None: the switch in `influcoder.core.progress`
        (kept as a keyword because `embed` is also called on its own, as a feature extractor)."""
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
        """Every pooling in `weightings` from ONE forward pass: all read the same hidden states, so scoring any
        set of them costs the decoder pass once."""
        tokenized = self.formatter.encode_all(samples)
        cut = sum(t.response_truncated for t in tokenized)
        if "last" in weightings and cut:
            warnings.warn(
                f"{cut} of {len(samples)} samples have responses longer than max_length {self.formatter.max_length}:"
                " their last token is mid-text, and last-token pooling reads that state (measured on the toxicity"
                " task: every such unsafe pair ranked near the bottom); raise max_length or use another pooling",
                stacklevel=3,  # past torch.no_grad's wrapper: the method that asked for the pooling
            )
        device = next(self.model.parameters()).device
        dim = self.model.config.hidden_size
        out = {w: np.empty((len(samples), dim), dtype=np.float32) for w in weightings}
        lengths = [len(t.input_ids) for t in tokenized]
        with progress_bars(self.progress), progress_bar(total=len(samples), desc=self.name, unit="sample") as bar:
            for batch in make_batches(lengths, self.settings.batch_size, self.settings.batch_tokens):
                inputs = collate_left_padded([tokenized[i] for i in batch], self.pad_id)
                labels = inputs.pop("labels")
                inputs = {k: v.to(device) for k, v in inputs.items()}
                # logits for the last position only: the states are what is read, and the LM head over every
                # position is 21% of SmolLM2-135M's linear FLOPs (576 x 49,152 against 30 blocks' 3.5M per token)
                outputs = self.model(**inputs, output_hidden_states=True, logits_to_keep=1)
                hidden = outputs.hidden_states[-1].float()
                for weighting, array in out.items():
                    pooled = pooled_hidden(hidden, inputs["attention_mask"], weighting, labels.to(device))
                    array[batch] = pooled.cpu().numpy()
                bar.update(len(batch))
        return out

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        return self.embed(pool).astype(np.float64) @ self.embed(queries).astype(np.float64).T

    def score_all(
        self, pool: Sequence[Sample], queries: Sequence[Sample], names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """{method name: pool x query matrix} for the representation methods `names` (default: all of them)
        from one pass over pool and queries."""
        names = list(WEIGHTINGS) if names is None else list(names)
        unknown = [n for n in names if n not in WEIGHTINGS]
        if unknown:
            raise ValueError(f"unknown representation methods {unknown}; choose from {list(WEIGHTINGS)}")
        weightings = tuple(dict.fromkeys(WEIGHTINGS[n] for n in names))
        pooled_pool, pooled_queries = self.embed_pooled(pool, weightings), self.embed_pooled(queries, weightings)
        return {
            n: pooled_pool[WEIGHTINGS[n]].astype(np.float64) @ pooled_queries[WEIGHTINGS[n]].astype(np.float64).T
            for n in names
        }


class RepSim(DecoderRepresentation):
    name = "repsim"
    description = "cosine of mean last-layer decoder states"
    weighting = "mean"


class RdsPlus(DecoderRepresentation):
    name = "rds+"
    description = "cosine of position-weighted mean last-layer decoder states"
    weighting = "position"


class RepSimResponse(DecoderRepresentation):
    name = "repsim-response"
    description = "cosine of mean last-layer decoder states over the response tokens"
    weighting = "response"


class RepSimLast(DecoderRepresentation):
    name = "repsim-last"
    description = "cosine of the last token's last-layer decoder state"
    weighting = "last"


REPRESENTATIONS = {cls.name: cls for cls in (RepSim, RdsPlus, RepSimResponse, RepSimLast)}
"""Representation method name -> scorer class."""
WEIGHTINGS = {name: cls.weighting for name, cls in REPRESENTATIONS.items()}
DESCRIPTIONS = {name: cls.description for name, cls in REPRESENTATIONS.items()}
