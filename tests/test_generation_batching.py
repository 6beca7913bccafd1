"""Batched generation (`generate_responses`, the toxicity task's judge of refusals) pads prompts on the left;
its answers must be the ones each prompt gets alone, or the refusal rate would depend on the batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influcoder.data.records import Sample
from influcoder.tasks.refusal import generate_responses

from .conftest import WORDS, make_tiny_llama, make_tokenizer


def requests(n: int, seed: int = 0) -> list[Sample]:
    """Prompts of 1 to 14 words: a batch of them is padded, some rows by a dozen positions."""
    rng = np.random.default_rng(seed)
    return [Sample(f"r{i}", " ".join(rng.choice(WORDS, size=int(rng.integers(1, 15)))), "") for i in range(n)]


@pytest.fixture(scope="module")
def decoder():
    """The tiny seeded Llama with its weight matrices scaled up: at the default init its greedy answer is one
    token repeated whatever the prompt, which no padding fault could change."""
    tokenizer = make_tokenizer()
    model = make_tiny_llama(vocab_size=len(tokenizer), seed=3)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.mul_(10)
    return model, tokenizer


@pytest.mark.parametrize("template", [False, True], ids=["plain", "chat-template"])
def test_batched_left_padded_generation_equals_one_prompt_at_a_time(decoder, template):
    model, tokenizer = decoder
    if template:  # the branch chat models take: the prompt is wrapped, no special tokens added
        tokenizer = make_tokenizer()
        tokenizer.chat_template = "{% for m in messages %}question : {{ m['content'] }} ? answer :{% endfor %}"
    asked = requests(11)
    lengths = {len(tokenizer(r.prompt)["input_ids"]) for r in asked}
    assert max(lengths) - min(lengths) >= 8  # the batches really are padded
    alone = generate_responses(model, tokenizer, asked, max_new_tokens=12, batch_size=1)
    assert len(set(alone)) >= 5, alone  # answers depend on the prompt: a padding fault would show
    for batch_size in (4, 11):
        assert generate_responses(model, tokenizer, asked, max_new_tokens=12, batch_size=batch_size) == alone
