"""Batched per-example LoRA gradients equal the one-example-at-a-time reference (1e-5 relative)."""

from __future__ import annotations

import pytest
import torch

from influcoder.core.errors import InflucoderError
from influcoder.data.formatting import TokenizedSample, collate_left_padded
from influcoder.labels.gradients import BatchedLoraGradients, loop_gradients, response_loss_per_example
from influcoder.labels.lora import LoraSettings, attach_lora, lora_parameters

from .conftest import make_tiny_llama

RTOL = 1e-5


def random_samples(shapes, vocab=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        TokenizedSample(f"s{i}", tuple(torch.randint(4, vocab, (length,), generator=g).tolist()), n_prompt)
        for i, (length, n_prompt) in enumerate(shapes)
    ]


def lora_model(trained_b: bool, seed: int = 0):
    model = attach_lora(make_tiny_llama(seed=seed), LoraSettings(rank=4, seed=seed))
    if trained_b:  # as after fine-tuning: B != 0, so the A gradients are non-zero too
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def max_relative_error(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).norm() / b[n].norm().clamp(min=1e-12)) for n in b)


@pytest.mark.parametrize("trained_b", [False, True])
def test_batched_equals_loop(trained_b):
    model = lora_model(trained_b)
    samples = random_samples([(12, 5), (7, 3), (20, 15), (9, 1), (20, 2)])
    batched = BatchedLoraGradients(model, pad_id=0)(samples)
    loop = loop_gradients(model, samples, pad_id=0)
    assert list(batched) == list(lora_parameters(model))
    assert max_relative_error(batched, loop) < RTOL
    nonzero = [n for n in loop if loop[n].abs().sum() > 0]
    assert any(".lora_B." in n for n in nonzero)
    assert any(".lora_A." in n for n in nonzero) == trained_b  # fresh adapter: B = 0 => grad A = 0


@pytest.mark.parametrize("trained_b", [False, True])
def test_fused_lora_layers_give_the_hooked_gradients_and_leave_the_model_as_it_was(trained_b):
    """Every adapted layer of a plain peft model runs fused (`fused_lora`); its per-example gradients equal the
    module-hook path's and the loop's, the input gradient through a trained B included (it reaches the earlier
    layers' gradients), no LoRA weight gradient is accumulated, and peft's forward is back after the call."""
    model = lora_model(trained_b)
    samples = random_samples([(12, 5), (7, 3), (20, 15), (9, 1)], seed=2)
    fused = BatchedLoraGradients(model, pad_id=0)
    assert {n for _, _, names in fused._fused.values() for n in names} == set(lora_parameters(model))
    assert fused._linears == {}
    got = fused(samples)
    hooked = BatchedLoraGradients(model, pad_id=0, fused=False)
    assert hooked._fused == {} and len(hooked._linears) == len(lora_parameters(model))
    assert max_relative_error(got, hooked(samples)) < 1e-6
    assert max_relative_error(got, loop_gradients(model, samples, pad_id=0)) < RTOL
    assert all(p.grad is None for p in lora_parameters(model).values())
    assert all("forward" not in module.__dict__ for module, _, _ in fused._fused.values())


@pytest.mark.parametrize("trained_b", [False, True])
def test_fused_training_gives_peft_s_batch_gradients(trained_b):
    """`fused_training`: the LoRA weights' batch gradients (and so every earlier layer's) are peft's own."""
    from influcoder.labels.fused_lora import fused_training

    model = lora_model(trained_b)
    samples = random_samples([(12, 5), (7, 3), (20, 15)], seed=3)
    batch = collate_left_padded(samples, 0)
    params = lora_parameters(model)

    def gradients() -> dict[str, torch.Tensor]:
        for p in params.values():
            p.grad = None
        from influcoder.labels.gradients import forward_response_loss

        forward_response_loss(model, batch).mean().backward()
        return {n: p.grad.clone() for n, p in params.items()}

    reference = gradients()
    with fused_training(model) as fused_layers:
        got = gradients()
    assert fused_layers == len(params) // 2
    assert max_relative_error(got, reference) < 1e-6  # a fresh adapter's A gradients: exactly zero in both
    assert all(reference[n].abs().sum() > 0 for n in reference if ".lora_B." in n or trained_b)


@pytest.mark.parametrize("fused", [True, False])
def test_a_bfloat16_decoder_gives_its_per_example_gradients_in_bfloat16(fused):
    """Half-precision decoders (GPUs): the padding mask takes the gradients' dtype instead of promoting them to
    float32, which made the per-example product refuse mixed dtypes; bf16 keeps ~3 significant digits."""
    model = lora_model(trained_b=True).to(torch.bfloat16)
    samples = random_samples([(12, 5), (7, 3), (20, 15)], seed=2)
    got = BatchedLoraGradients(model, pad_id=0, fused=fused)(samples)
    assert all(g.dtype == torch.bfloat16 for g in got.values())
    loop = loop_gradients(model, samples, pad_id=0)
    assert max_relative_error({n: g.float() for n, g in got.items()}, {n: g.float() for n, g in loop.items()}) < 0.05


def test_lora_layers_peft_computes_otherwise_are_not_fused():
    """Dropout, DoRA or a cast between dtypes change what the layer computes: those layers keep the hooks."""
    from peft import LoraConfig, get_peft_model

    from influcoder.labels.fused_lora import fusable

    for config in (
        LoraConfig(r=2, target_modules="all-linear", lora_dropout=0.1),
        LoraConfig(r=2, target_modules="all-linear", use_dora=True),
    ):
        model = get_peft_model(make_tiny_llama(), config)
        layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
        assert layers and all(fusable(m) is None for m in layers)
    model = lora_model(trained_b=False)
    layer = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    assert fusable(layer) == "default"
    layer.lora_B["default"].to(torch.float64)
    assert fusable(layer) is None


def test_padding_contributes_nothing():
    model = lora_model(trained_b=True)
    short = random_samples([(6, 2), (5, 4)], seed=3)
    long = random_samples([(30, 10)], seed=4)
    compute = BatchedLoraGradients(model, pad_id=0)
    alone = compute(short)
    padded = compute(short + long)  # the short ones are now heavily left-padded
    assert max_relative_error({n: g[:2] for n, g in padded.items()}, alone) < RTOL


def test_logits_to_keep_matches_full_sequence_loss():
    model = make_tiny_llama()
    samples = random_samples([(10, 4), (6, 5)])
    batch = collate_left_padded(samples, 0)
    with torch.no_grad():
        full = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).logits
    keep = 7  # longest response (6) + 1
    per_example = response_loss_per_example(full[:, -keep:], batch["labels"])
    shifted = torch.nn.functional.cross_entropy(full[:, :-1].transpose(1, 2), batch["labels"][:, 1:], reduction="none")
    mask = batch["labels"][:, 1:] != -100
    reference = (shifted * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(per_example, reference, rtol=1e-6, atol=1e-6)


def test_the_lm_head_runs_as_one_matrix_product_each_way():
    """The head sees the response positions (a strided slice of the hidden states); made contiguous, its forward
    and its input gradient are one `mm` each, not a batch of small products (4-8x slower on CPU), and the
    loss is the full-sequence one (previous test) to float rounding."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from influcoder.labels.gradients import forward_response_loss

    model = lora_model(trained_b=False)  # a frozen head, as in labelling (a trainable one is folded anyway)
    vocab = model.config.vocab_size
    products: list[tuple] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            if func in (torch.ops.aten.mm.default, torch.ops.aten.bmm.default) and any(vocab in s for s in shapes):
                products.append((func, shapes))
            return func(*args, **(kwargs or {}))

    batch = collate_left_padded(random_samples([(10, 4), (6, 5), (14, 3)]), 0)
    with Record():
        forward_response_loss(model, batch).sum().backward()
    assert [func for func, _ in products].count(torch.ops.aten.bmm.default) == 0
    assert len(products) >= 2  # the forward and the input gradient (the head's weight gradient is not asked for)
    head = model.get_output_embeddings()
    assert not any(h.__name__ == "_contiguous_input" for h in head._forward_pre_hooks.values())


def test_lora_never_touches_embeddings_or_head_and_is_seeded():
    a = lora_parameters(lora_model(False, seed=5))
    b = lora_parameters(lora_model(False, seed=5))
    assert all("lora_" in n and "embed" not in n and "lm_head" not in n for n in a)
    assert all(torch.equal(a[n], b[n]) for n in a)
    c = lora_parameters(lora_model(False, seed=6))
    assert not all(torch.equal(a[n], c[n]) for n in a if "lora_A" in n)
    with pytest.raises(InflucoderError, match="never adapted"):
        attach_lora(make_tiny_llama(), LoraSettings(targets=["lm_head"]))


def test_sdpa_attention_gives_the_eager_per_example_gradients(monkeypatch):
    """`label --attention sdpa`: PyTorch's fused attention under the left-padding mask gives the gradients eager
    attention gives (float rounding apart), heavily padded rows included."""
    model = lora_model(trained_b=True)
    samples = random_samples([(30, 10), (6, 2), (17, 9), (3, 1)], seed=5)
    eager = BatchedLoraGradients(model, pad_id=0)(samples)
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k)
    )
    model.config._attn_implementation = "sdpa"
    sdpa = BatchedLoraGradients(model, pad_id=0)(samples)
    assert len(calls) == 2  # one per layer: the fused kernel really ran
    assert max_relative_error(sdpa, eager) < RTOL
    assert max_relative_error(sdpa, loop_gradients(model, samples, pad_id=0)) < RTOL
