"""`--max-memory`: the batch token budget measured from the decoder's saved activations."""

from __future__ import annotations

import numpy as np
import pytest

from influcoder.core.errors import InflucoderError
from influcoder.labels.memory import GB, batch_tokens_for_budget, resident_bytes, saved_activation_bytes

from .test_gradients import lora_model, random_samples


def in_a_fresh_process(script: str) -> list[str]:
    """What `script` prints, split, run by a new interpreter (whose allocator holds nothing freed yet)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_saved_activations_grow_with_the_tokens_and_exclude_the_weights():
    model = lora_model(trained_b=False)
    short, long = random_samples([(8, 3), (32, 10)])
    one = saved_activation_bytes(model, [short], pad_id=0)
    assert 0 < one < saved_activation_bytes(model, [long], pad_id=0)
    two = saved_activation_bytes(model, [short, random_samples([(8, 3)], seed=1)[0]], pad_id=0)
    assert two == pytest.approx(2 * one, rel=0.25)  # about linear in the padded tokens of a batch
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert one < weights  # a tiny model: the weights would dominate had they been counted


def test_a_larger_budget_gives_larger_batches_and_a_too_small_one_says_what_one_sample_needs():
    model = lora_model(trained_b=False)
    samples = random_samples([(32, 10), (20, 5), (12, 4)])
    now = resident_bytes() / GB
    small = batch_tokens_for_budget(model, samples, 0, now + 0.05, 4096, batch_size=8)
    large = batch_tokens_for_budget(model, samples, 0, now + 0.5, 4096, batch_size=8)
    assert 32 <= small < large
    with pytest.raises(InflucoderError, match="too small.*longest sample .*s0, 32 tokens"):
        batch_tokens_for_budget(model, samples, 0, now * 0.5, 4096, batch_size=8)


def test_features_under_a_memory_budget_equal_the_default_batching(tiny_model_dir, tmp_path):
    from influcoder.data.records import Sample
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.settings import LabelSettings

    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    rng = np.random.default_rng(0)
    pool = [
        Sample(f"p{i}", " ".join(rng.choice(words, 3 + i % 5)), " ".join(rng.choice(words, 2 + i % 4)))
        for i in range(10)
    ]
    base = dict(model=str(tiny_model_dir), rank=2, proj_dim=64, max_length=24, device="cpu")
    reference = GradientFeaturizer(LabelSettings(**base, batch_tokens=4096)).featurize(pool)
    budgeted = GradientFeaturizer(LabelSettings(**base, max_memory=resident_bytes() / GB + 0.01))
    features = budgeted.featurize(pool)
    assert budgeted.batch_tokens != 4096
    np.testing.assert_allclose(features, reference, rtol=1e-5, atol=1e-7)
    with pytest.raises(InflucoderError, match="max_memory must be a positive"):
        LabelSettings(max_memory=0)


def test_the_peak_measurement_sees_memory_touched_and_freed_inside_the_run():
    """Linux lets a process reset its high-water mark: what a run touches and frees again still counts. In a
    fresh process (a long-lived one may serve the run from memory it freed earlier and holds: no rise)."""
    script = (
        "import numpy as np\n"
        "from influcoder.labels.memory import measured_peak_bytes\n"
        "def touch_and_free():\n"
        "    block = np.ones(64 * 1024 * 1024 // 8)\n"
        "    del block\n"
        "print(measured_peak_bytes(touch_and_free), measured_peak_bytes(lambda: None))\n"
    )
    out = in_a_fresh_process(script)
    if out[0] == "None":
        pytest.skip("this kernel does not let a process reset its peak resident memory")
    touched, idle = int(out[0]), int(out[1])
    assert 60 * 1024 * 1024 <= touched < 256 * 1024 * 1024 and idle < 16 * 1024 * 1024


def test_the_budget_divides_what_is_left_by_the_measured_cost_per_token(monkeypatch):
    """The resident memory is taken before the measurement (whose own graph is freed after), and the measured
    rise per token of the longest sample prices a token, with its saved activations as the floor."""
    import influcoder.labels.memory as memory

    model = lora_model(trained_b=False)
    samples = random_samples([(32, 10), (20, 5)])
    monkeypatch.setattr(memory, "resident_bytes", lambda: 1 * GB)
    monkeypatch.setattr(memory, "measured_peak_bytes", lambda run: run() or 32 * 1024 * 1024)  # 1 MB per token
    tokens = batch_tokens_for_budget(model, samples, 0, 2.0, block_bytes_per_sample=1024 * 1024, batch_size=8)
    assert tokens == (1 * GB - 16 * 1024 * 1024) // (1024 * 1024)
    monkeypatch.setattr(memory, "measured_peak_bytes", lambda run: 0)  # served from memory already held
    saved = saved_activation_bytes(model, [samples[0]], 0)
    tokens = batch_tokens_for_budget(model, samples, 0, 2.0, block_bytes_per_sample=1024 * 1024, batch_size=8)
    assert tokens == int((1 * GB - 16 * 1024 * 1024) // (saved / 32))
    monkeypatch.setattr(memory, "measured_peak_bytes", lambda run: None)  # elsewhere: the estimate
    estimate = memory.BACKWARD_MARGIN * saved_activation_bytes(model, [samples[0]], 0) / 32
    tokens = batch_tokens_for_budget(model, samples, 0, 2.0, block_bytes_per_sample=1024 * 1024, batch_size=8)
    assert tokens == int((1 * GB - 16 * 1024 * 1024) // estimate)


def test_freed_memory_goes_back_to_the_system_between_shards():
    """In a fresh process: 190 MB freed in 64 KB pieces below a live one stays resident under glibc (its heap
    cannot shrink past the live piece) until `release_freed_memory` hands the free pages back."""
    script = (
        "import os, numpy as np\n"
        "from influcoder.core.allocator import release_freed_memory\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "pieces = [np.ones(8192) for _ in range(3000)]\n"
        "last = pieces[-1]\n"
        "del pieces\n"
        "held = rss()\n"
        "print(release_freed_memory(), held - rss())\n"
    )
    out = in_a_fresh_process(script)
    if out[0] == "False":
        pytest.skip("no glibc malloc_trim here")
    assert int(out[1]) > 150 * 1024 * 1024


def test_a_fixed_mmap_threshold_returns_large_freed_blocks_at_once():
    """glibc raises its mmap threshold to the size of the first large block freed, so the next 4 MB blocks come
    from the heap and stay resident once freed (one live block above them pins it); with the threshold fixed at
    1 MB each is its own mapping and its memory leaves the process when it is freed."""
    script = (
        "import os, sys, numpy as np\n"
        "from influcoder.core.allocator import fix_mmap_threshold\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "fixed = fix_mmap_threshold(1 << 20) if sys.argv[1] == 'fix' else True\n"
        "first = np.ones(1 << 19)\n"
        "del first\n"
        "before = rss()\n"
        "blocks = [np.ones(1 << 19) for _ in range(50)]\n"
        "last = blocks[-1]\n"
        "del blocks\n"
        "print(fixed, rss() - before)\n"
    )
    import subprocess
    import sys

    def held(mode: str) -> tuple[str, int]:
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        fixed, grown = run.stdout.split()
        return fixed, int(grown)

    fixed, with_fix = held("fix")
    if fixed == "False":
        pytest.skip("no glibc mallopt here")
    _, without = held("plain")
    assert without > 150 * 1024 * 1024  # 49 freed 4 MB blocks kept by the heap
    assert with_fix < 16 * 1024 * 1024  # only the live block
