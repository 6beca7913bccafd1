"""How an encoder turns token states into one vector: the poolings, and the length features a subspace
encoder appends (`EncoderConfig.length_features`)."""

from __future__ import annotations

import math

import torch

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.encoder.settings import RESPONSE_POOLINGS

N_LENGTH_FEATURES = 4


def text_length_features(item: Sample | str) -> list[float]:
    """log(1 + n) of the characters and words of the prompt and the response (a plain string: all response).

    A mean over tokens does not say how many there were, and the query-independent part of gradient influence
    follows length closely."""
    prompt, response = ("", item) if isinstance(item, str) else (item.prompt, item.response)
    return [math.log1p(n) for n in (len(prompt), len(response), len(prompt.split()), len(response.split()))]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` (batch, tokens, dim) over the tokens where `mask` is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pool_hidden(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    pooling: str,
    response_mask: torch.Tensor | None = None,
    attention_query: torch.Tensor | None = None,
) -> torch.Tensor:
    """(batch, dim) from (batch, tokens, dim) by `pooling` (`influcoder.encoder.settings.POOLINGS`)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "attention":
        scores = (hidden @ attention_query) / hidden.shape[-1] ** 0.5
        scores = scores.masked_fill(attention_mask == 0, torch.finfo(hidden.dtype).min)
        return (scores.softmax(dim=1).unsqueeze(-1) * hidden).sum(dim=1)
    if pooling in RESPONSE_POOLINGS:
        if response_mask is None:
            raise InflucoderError(f"pooling {pooling!r} needs a response_mask (use tokenize())")
        # a text whose response was cut away entirely falls back to all of its tokens
        empty = response_mask.sum(dim=1, keepdim=True) == 0
        pooled = masked_mean(hidden, torch.where(empty, attention_mask, response_mask))
        if pooling == "mean+response":
            pooled = torch.cat([masked_mean(hidden, attention_mask), pooled], dim=-1)
        return pooled
    return masked_mean(hidden, attention_mask)
