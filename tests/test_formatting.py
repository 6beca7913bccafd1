"""Prompt masking and truncation, token by token, on the tiny tokenizer and on SmolLM2's real one."""

from __future__ import annotations

import pytest

from influcoder.core.errors import InflucoderError
from influcoder.data.formatting import IGNORE_INDEX, SampleFormatter, collate_left_padded
from influcoder.data.records import Sample

from .conftest import make_tokenizer


def test_plain_view_masks_every_prompt_token():
    tok = make_tokenizer()
    fmt = SampleFormatter(tok, max_length=64)
    assert fmt.view == "plain"
    t = fmt.encode(Sample("s", "what is one and one ?", "two ."))
    prompt_ids = tok("what is one and one ?\n")["input_ids"]
    response_ids = tok("two .</s>", add_special_tokens=False)["input_ids"]
    assert list(t.input_ids) == prompt_ids + response_ids
    assert t.labels == [IGNORE_INDEX] * len(prompt_ids) + response_ids


def test_truncation_cuts_prompt_from_left_then_response_tail():
    tok = make_tokenizer()
    sample = Sample("s", "one two three four five six seven eight", "red green blue")
    full = SampleFormatter(tok, max_length=64).encode(sample)
    cut = SampleFormatter(tok, max_length=6).encode(sample)
    assert cut.prompt_truncated and not cut.response_truncated
    assert cut.input_ids == full.input_ids[-6:]  # response kept whole, prompt's end kept
    assert cut.n_response == full.n_response
    tiny = SampleFormatter(tok, max_length=3).encode(sample)
    assert tiny.response_truncated and tiny.n_prompt == 1 and len(tiny.input_ids) == 3
    assert tiny.input_ids[1:] == full.input_ids[full.n_prompt : full.n_prompt + 2]


def test_empty_response_refused_with_id():
    fmt = SampleFormatter(make_tokenizer(), max_length=16)
    with pytest.raises(InflucoderError, match="sample adv-bench/3: empty response .*prompt-only"):
        fmt.encode(Sample("adv-bench/3", "do harm", "", {"prompt_only": True}))


def test_left_padding_collation():
    fmt = SampleFormatter(make_tokenizer(), max_length=32)
    a, b = fmt.encode(Sample("a", "one two three", "four")), fmt.encode(Sample("b", "one", "two"))
    batch = collate_left_padded([a, b], pad_id=0)
    width = batch["input_ids"].shape[1]
    assert width == len(a.input_ids)
    pad = width - len(b.input_ids)
    assert batch["attention_mask"][1].tolist() == [0] * pad + [1] * len(b.input_ids)
    assert batch["position_ids"][1, pad:].tolist() == list(range(len(b.input_ids)))
    assert batch["labels"][1].tolist() == [IGNORE_INDEX] * pad + b.labels


@pytest.mark.assets
def test_chat_template_mask_on_real_smollm2_tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm_dir)
    fmt = SampleFormatter(tok, max_length=256)
    assert fmt.view == "chat-template"
    t = fmt.encode(Sample("s", "What is the capital of France?", "Paris is the capital."))
    tokens = tok.convert_ids_to_tokens(list(t.input_ids))
    # The prompt ends with the assistant header; the response starts at its content and ends with <|im_end|>.
    assert tok.decode(t.input_ids[: t.n_prompt]).endswith("<|im_start|>assistant\n")
    assert tok.decode(t.input_ids[t.n_prompt :]).startswith("Paris is the capital.<|im_end|>")
    for position, (token, label) in enumerate(zip(tokens, t.labels)):
        if position < t.n_prompt:
            assert label == IGNORE_INDEX, (position, token)
        else:
            assert label == t.input_ids[position], (position, token)
    assert "<|im_start|>" not in tok.decode(t.input_ids[t.n_prompt :])
    multi = Sample(
        "m",
        "x",
        "four",
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]},
    )
    m = fmt.encode(multi)
    assert "Be terse." in tok.decode(m.input_ids[: m.n_prompt]) and tok.decode(m.input_ids[m.n_prompt :]).startswith(
        "four"
    )
    with pytest.raises(InflucoderError):
        SampleFormatter(make_tokenizer(), use_chat_template=True)
