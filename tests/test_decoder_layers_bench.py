"""benchmarks/decoder_layers.py: the states it keeps for block L are what an encoder cut after L blocks pools,
so its block-by-block table measures what `distill --backbone-layers L` would fit."""

from __future__ import annotations

import numpy as np

from influcoder.encoder.subspace import pooled_states, subspace_encoder

from .conftest import load_benchmark
from .test_labels import samples


def test_every_blocks_states_equal_the_pooled_states_of_the_decoder_cut_there(tiny_model_dir):
    bench = load_benchmark("decoder_layers")
    items = samples(6, seed=3)
    config = dict(pooling="response", max_length=24, text_view="{prompt}\n{response}")
    states = bench.layer_states(subspace_encoder(str(tiny_model_dir), 1, **config).eval(), items)
    assert states.shape[:2] == (2, len(items))
    for blocks in (1, 2):
        cut = subspace_encoder(str(tiny_model_dir), 1, backbone_layers=blocks, **config)
        reference = pooled_states(cut, items)[:, : states.shape[2]]  # then the four length features
        np.testing.assert_allclose(states[blocks - 1], reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(states[0], states[1], atol=1e-3)
    both = bench.layer_states(subspace_encoder(str(tiny_model_dir), 1, **config).eval(), items, pooling="mean+response")
    wide = {**config, "pooling": "mean+response"}
    reference = pooled_states(subspace_encoder(str(tiny_model_dir), 1, backbone_layers=1, **wide), items)
    np.testing.assert_allclose(both[0], reference[:, : both.shape[2]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(both[:, :, states.shape[2] :], states, rtol=1e-5, atol=1e-6)  # response: 2nd half


def test_the_sweeps_kernel_variant_predicts_what_distills_kernel_head_encodes(tiny_bert_dir):
    """kernel_predict on pooled states (numpy) against the fitted kernel head's encode of other texts (torch)."""
    from influcoder.encoder.settings import KERNEL_GAMMA, KERNEL_RIDGE
    from influcoder.encoder.subspace import CoordinateFitSettings, fit_coordinates

    bench = load_benchmark("decoder_layers")
    train, other = samples(24, seed=1), samples(8, seed=2, prefix="o")
    targets = np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
    encoder = subspace_encoder(str(tiny_bert_dir), 3, max_length=32, head_kind="kernel", kernel_landmarks=24,
                               kernel_gamma=KERNEL_GAMMA)  # fmt: skip
    fit_coordinates(encoder, train, targets, CoordinateFitSettings(epochs=0, ridge=KERNEL_RIDGE))
    states, other_states = pooled_states(encoder, train), pooled_states(encoder, other)
    expected = bench.kernel_predict(states.astype(np.float64), targets.astype(np.float64), other_states)
    np.testing.assert_allclose(encoder.encode(other), expected, atol=1e-4)


def test_a_prompt_window_keeps_the_opening_the_prompts_last_tokens_and_the_whole_response():
    bench = load_benchmark("prompt_window")
    encoded = {
        "input_ids": [list(range(100, 112)), [7, 8, 9]],
        "attention_mask": [[1] * 12, [1] * 3],
        "response_mask": [[0] * 9 + [1, 1, 0], [1, 1, 1]],  # a closing token after the response is kept too
    }
    cut = bench.cut_prompt(encoded, window=3, sink=2)
    assert cut["input_ids"][0] == [100, 101, 106, 107, 108, 109, 110, 111]
    assert cut["response_mask"][0] == [0, 0, 0, 0, 0, 1, 1, 0]
    assert cut["attention_mask"][0] == [1] * 8
    assert cut["input_ids"][1] == [7, 8, 9]  # no prompt: nothing to cut
    assert bench.cut_prompt(encoded, window=20, sink=2)["input_ids"][0] == list(range(100, 112))  # short: whole
    assert bench.cut_prompt(encoded, None) is encoded
