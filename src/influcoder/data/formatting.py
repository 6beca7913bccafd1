"""How a `Sample` becomes decoder tokens, and which of them carry the loss.

This is the one place users customise (a chat template of their own, another masking rule): subclass
`SampleFormatter` and override `render`. Everything downstream only sees `TokenizedSample`s.

Rules (the paper's step 1 measures influence on response tokens only):
* the tokenizer's chat template when it has one, else ``prompt + "\\n"`` then ``response + eos``;
* every prompt token's label is -100 (ignored by the loss);
* on truncation the prompt is cut from the *left* (its end, next to the response, is what conditions the
  response); if the response alone does not fit, its tail is cut and ``response_truncated`` is set; at least
  one prompt token is kept so the first response token is predicted from something;
* a sample with an empty response is refused with its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedSample:
    """Token ids of one sample; ``input_ids[n_prompt:]`` are the response tokens that carry the loss."""

    id: str
    input_ids: tuple[int, ...]
    n_prompt: int
    prompt_truncated: bool = False
    response_truncated: bool = False

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * self.n_prompt + list(self.input_ids[self.n_prompt :])

    @property
    def n_response(self) -> int:
        return len(self.input_ids) - self.n_prompt


class SampleFormatter:
    """Render and tokenize samples for a causal LM with prompt masking and left truncation."""

    def __init__(self, tokenizer, max_length: int = 256, use_chat_template: bool | None = None):
        if max_length < 2:
            raise InflucoderError(
                f"max_length must be at least 2 (one prompt and one response token), got {max_length}"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_template:
            raise InflucoderError("use_chat_template=True but the tokenizer has no chat template")
        self.use_chat_template = has_template if use_chat_template is None else use_chat_template

    @property
    def view(self) -> str:
        """A short name of the rendering, recorded in manifests."""
        return "chat-template" if self.use_chat_template else "plain"

    def render(self, sample: Sample) -> tuple[str, str]:
        """(prompt text, response text); their concatenation is the full training string.

        In the chat view a sample's ``meta["messages"]`` (a chat record's turns, system included) is rendered
        instead of its `prompt`, which holds the same turns joined as text (docs/labels.md: the text view)."""
        if self.use_chat_template:
            messages = sample.meta.get("messages") or [{"role": "user", "content": sample.prompt}]
            prompt_text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            full_text = self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": sample.response}], tokenize=False
            )
            if not full_text.startswith(prompt_text):
                raise InflucoderError(
                    f"sample {sample.id}: the chat template does not render the prompt as a prefix of the full "
                    "conversation, so the response tokens cannot be located; set `chat_template` False"
                )
            return prompt_text, full_text[len(prompt_text) :]
        eos = self.tokenizer.eos_token or ""
        return sample.prompt + "\n", sample.response + eos

    def encode(self, sample: Sample) -> TokenizedSample:
        if not sample.response.strip():
            hint = (
                " (a prompt-only source: it needs responses before labelling)" if sample.meta.get("prompt_only") else ""
            )
            raise InflucoderError(f"sample {sample.id}: empty response{hint}; influence is measured on response tokens")
        prompt_text, response_text = self.render(sample)
        # The chat template already writes BOS-like tokens; the plain view asks the tokenizer for them.
        prompt_ids = self.tokenizer(prompt_text, add_special_tokens=not self.use_chat_template)["input_ids"]
        response_ids = self.tokenizer(response_text, add_special_tokens=False)["input_ids"]
        if not response_ids:
            raise InflucoderError(f"sample {sample.id}: the response has no tokens")
        prompt_truncated = response_truncated = False
        if len(response_ids) > self.max_length - 1:
            response_ids = response_ids[: self.max_length - 1]
            response_truncated = True
        room = self.max_length - len(response_ids)
        if len(prompt_ids) > room:
            prompt_ids = prompt_ids[len(prompt_ids) - room :]
            prompt_truncated = True
        if not prompt_ids:
            raise InflucoderError(f"sample {sample.id}: the prompt has no tokens, so no response token is predicted")
        return TokenizedSample(
            sample.id, tuple(prompt_ids + response_ids), len(prompt_ids), prompt_truncated, response_truncated
        )

    def encode_all(self, samples: Sequence[Sample]) -> list[TokenizedSample]:
        return [self.encode(s) for s in samples]


def collate_left_padded(batch: Sequence[TokenizedSample], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad a batch so every response ends at the last position (what `logits_to_keep` needs).

    Position ids count from each sample's first real token, so a padded sample sees exactly the positions
    it would see alone.
    """
    length = max(len(t.input_ids) for t in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
    for row, t in enumerate(batch):
        start = length - len(t.input_ids)
        input_ids[row, start:] = torch.tensor(t.input_ids)
        labels[row, start:] = torch.tensor(t.labels)
        attention_mask[row, start:] = 1
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "position_ids": position_ids}
