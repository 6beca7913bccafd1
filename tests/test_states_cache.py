"""The pooled-states cache: states read through it equal states read directly, a second read does not run the
backbone, another reading of the backbone (other weights, blocks, token budget) never meets them, a damaged
part is named and read around, and `encode` through the cache equals `encode` without it."""

from __future__ import annotations

import logging

import numpy as np
import torch

from influcoder.encoder.states_cache import PooledStatesCache, pooled_states, reader_digest
from influcoder.encoder.subspace import subspace_encoder

from .test_subspace import _samples


def _encoder(tiny_bert_dir, **config):
    return subspace_encoder(str(tiny_bert_dir), 3, **{"max_length": 32, **config}).eval()


def _count_backbone_calls(encoder) -> list[int]:
    calls = []
    encoder.backbone.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls


def test_states_read_through_the_cache_equal_direct_ones_and_are_not_read_twice(tiny_bert_dir, tmp_path):
    samples = _samples(12)
    encoder = _encoder(tiny_bert_dir)
    direct = pooled_states(encoder, samples)
    encoder.states_cache = PooledStatesCache.for_encoder(encoder, tmp_path)
    first = pooled_states(encoder, samples[:8], batch_size=3)
    np.testing.assert_allclose(first, direct[:8], atol=1e-5)  # batching changes rounding only
    again = _encoder(tiny_bert_dir)  # another process: a fresh encoder, the same backbone
    again.states_cache = PooledStatesCache.for_encoder(again, tmp_path)
    calls = _count_backbone_calls(again)
    mixed = pooled_states(again, samples, batch_size=4)  # 8 cached, 4 new
    np.testing.assert_allclose(mixed, direct, atol=1e-5)
    assert len(calls) == 1  # one batch: the 4 texts the cache did not hold
    calls.clear()
    np.testing.assert_allclose(pooled_states(again, list(reversed(samples))), direct[::-1], atol=1e-5)
    assert calls == []


def test_another_reading_of_the_backbone_gets_another_cache(tiny_bert_dir):
    base = _encoder(tiny_bert_dir)
    assert reader_digest(base) == reader_digest(_encoder(tiny_bert_dir))
    kernel = _encoder(tiny_bert_dir, head_kind="kernel", kernel_landmarks=4)
    assert reader_digest(base) == reader_digest(kernel)  # the head reads states, it does not shape them
    assert reader_digest(base) != reader_digest(_encoder(tiny_bert_dir, pooling="cls"))
    assert reader_digest(base) != reader_digest(_encoder(tiny_bert_dir, text_view="{response}"))
    assert reader_digest(base) != reader_digest(_encoder(tiny_bert_dir, max_length=16))
    assert reader_digest(base) != reader_digest(_encoder(tiny_bert_dir, backbone_layers=1))
    tuned = _encoder(tiny_bert_dir)
    with torch.no_grad():
        next(tuned.backbone.parameters()).add_(1e-3)
    assert reader_digest(base) != reader_digest(tuned)


def test_a_damaged_part_is_named_and_its_texts_read_again(tiny_bert_dir, tmp_path, caplog):
    samples = _samples(6)
    encoder = _encoder(tiny_bert_dir)
    encoder.states_cache = PooledStatesCache.for_encoder(encoder, tmp_path)
    expected = pooled_states(encoder, samples)
    (part,) = encoder.states_cache.directory.glob("part-*.npz")
    part.write_bytes(part.read_bytes()[:40])
    fresh = _encoder(tiny_bert_dir)
    fresh.states_cache = PooledStatesCache.for_encoder(fresh, tmp_path)
    calls = _count_backbone_calls(fresh)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(pooled_states(fresh, samples), expected, atol=1e-5)
    assert part.name in caplog.text and len(calls) == 1


def test_encode_through_the_cache_equals_encode_without(tiny_bert_dir, tmp_path):
    samples = _samples(10, seed=3)
    encoder = _encoder(tiny_bert_dir)
    plain = encoder.encode(samples)
    encoder.states_cache = PooledStatesCache.for_encoder(encoder, tmp_path)
    np.testing.assert_allclose(encoder.encode(samples), plain, atol=1e-5)
    np.testing.assert_allclose(encoder.encode(samples), plain, atol=1e-5)  # now all from the cache


def test_a_cache_that_cannot_be_written_warns_and_keeps_the_states(tiny_bert_dir, tmp_path, caplog):
    samples = _samples(5, seed=4)
    encoder = _encoder(tiny_bert_dir)
    expected = pooled_states(encoder, samples)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache's root should be")
    encoder.states_cache = PooledStatesCache.for_encoder(encoder, blocker)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(pooled_states(encoder, samples), expected, atol=1e-5)
    assert "could not keep 5 texts' states" in caplog.text
    calls = _count_backbone_calls(encoder)
    pooled_states(encoder, samples)  # the states stay known to this run
    assert calls == []


def test_a_backbone_changed_after_the_cache_was_attached_is_read_again(tiny_bert_dir, tmp_path, caplog):
    """A training step (or a loaded state) after attaching: the cache would hand back the old states."""
    samples = _samples(6, seed=5)
    encoder = _encoder(tiny_bert_dir)
    encoder.states_cache = PooledStatesCache.for_encoder(encoder, tmp_path)
    before = pooled_states(encoder, samples)
    with torch.no_grad():
        encoder.head.weight.add_(1.0)  # the head: states unchanged, the cache still serves
    assert encoder.states_cache.serves(encoder)
    with torch.no_grad():
        next(encoder.backbone.parameters()).mul_(1.5)
    with caplog.at_level(logging.WARNING):
        after = pooled_states(encoder, samples)
    assert "backbone changed" in caplog.text and not np.allclose(after, before, atol=1e-4)
    np.testing.assert_allclose(after, pooled_states(_with(encoder), samples), atol=1e-5)


def _with(encoder):
    encoder.states_cache = None
    return encoder


def test_evaluate_refuses_the_states_cache_with_flops_before_reading_anything(tmp_path, capsys):
    """Counting FLOPs needs the pass the cache skips: one of the two options would be dropped without a word."""
    from influcoder.cli.main import main

    argv = ["evaluate", "--encoder", str(tmp_path / "no-encoder"), "--labels", str(tmp_path / "no-labels"), "--quiet"]
    assert main([*argv, "--states-cache", "--flops"]) == 2
    err = capsys.readouterr().err
    assert "--states-cache cannot go with --flops" in err and "no-labels" not in err
