"""The kernel head: its closed-form fit against a slow kernel-ridge reference (every training state a landmark,
and fewer landmarks against the subset-of-regressors normal equations solved by least squares), what the
encoder outputs after the fit, persistence, and the settings that choose it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from influcoder.core.errors import InflucoderError, SettingError
from influcoder.encoder.config import EncoderConfig
from influcoder.encoder.heads import KernelHead, kernel_head, kernel_rows, ridge_head
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.settings import KERNEL_RIDGE, LINEAR_RIDGE, DistillSettings
from influcoder.encoder.subspace import CoordinateFitSettings, fit_coordinates, pooled_states, subspace_encoder

from .test_subspace import _samples


def _reference_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma |a_i - b_j|^2 / d), one pair at a time."""
    out = np.empty((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = np.exp(-gamma * np.sum((a[i] - b[j]) ** 2) / a.shape[1])
    return out


def _standardised(states: np.ndarray) -> np.ndarray:
    states = states.astype(np.float64)
    return (states - states.mean(0)) / (states.std(0) + 1e-6)


def _kernel_encoder(tiny_bert_dir, k: int, landmarks: int, gamma: float = 1.0) -> InfluenceEncoder:
    return subspace_encoder(str(tiny_bert_dir), k, max_length=32, head_kind="kernel", kernel_landmarks=landmarks,
                            kernel_gamma=gamma)  # fmt: skip


def test_kernel_head_with_every_state_a_landmark_is_kernel_ridge_regression(tiny_bert_dir):
    """Reference: (K + lambda I)^-1 (Y - mean Y) with K built pair by pair, predicted on the training states
    themselves; tolerance 1e-4 absolute on outputs of order 1."""
    samples, k, lam, gamma = _samples(30), 3, 0.3, 0.7
    targets = np.random.default_rng(2).normal(size=(30, k)).astype(np.float32)
    encoder = _kernel_encoder(tiny_bert_dir, k, landmarks=30, gamma=gamma)
    fit_coordinates(encoder, samples, targets, CoordinateFitSettings(epochs=0, ridge=lam))
    Z = _standardised(pooled_states(encoder, samples))
    K = _reference_kernel(Z, Z, gamma)
    alpha = np.linalg.solve(K + lam * np.eye(30), targets - targets.mean(0))
    np.testing.assert_allclose(encoder.encode(samples), K @ alpha + targets.mean(0), atol=1e-4)


def test_kernel_head_with_fewer_landmarks_solves_the_subset_of_regressors_problem(tiny_bert_dir):
    """With m < n landmarks the head minimises |K_nm a - (Y - mean)|^2 + lambda a^T K_mm a; reference: that
    problem as an augmented least squares (rows of lambda^(1/2) K_mm^(1/2) under K_nm), tolerance 1e-3."""
    samples, k, lam, m = _samples(40, seed=3), 2, 0.5, 12
    targets = np.random.default_rng(4).normal(size=(40, k)).astype(np.float32)
    encoder = _kernel_encoder(tiny_bert_dir, k, landmarks=m)
    fit_coordinates(encoder, samples, targets, CoordinateFitSettings(epochs=0, ridge=lam, seed=5))
    Z = _standardised(pooled_states(encoder, samples))
    land = Z[kernel_rows(40, m, seed=5)]
    K_nm, K_mm = _reference_kernel(Z, land, 1.0), _reference_kernel(land, land, 1.0)
    values, vectors = np.linalg.eigh(K_mm)
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    design = np.vstack([K_nm, np.sqrt(lam) * root])
    centred = targets - targets.mean(0)
    alpha = np.linalg.lstsq(design, np.vstack([centred, np.zeros((m, k))]), rcond=None)[0]
    np.testing.assert_allclose(encoder.encode(samples), K_nm @ alpha + targets.mean(0), atol=1e-3)
    np.testing.assert_allclose(encoder.head.landmarks.numpy(), land, atol=1e-5)


def test_kernel_head_fits_what_a_linear_head_cannot():
    """A target that is a bump in state space (no linear trend): kernel ridge fits it, a linear ridge
    predicts about its mean. Closed-form fits on a stand-in encoder that holds only the head."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(200, 4)).astype(np.float32)
    target = np.exp(-(states**2).sum(1, keepdims=True)).astype(np.float32)

    class Heads(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head
            self.register_buffer("head_shift", torch.zeros(4))
            self.register_buffer("head_scale", torch.ones(4))

        def __call__(self, x):
            return self.head((torch.as_tensor(x) - self.head_shift) / self.head_scale).detach().numpy()

    kernel, linear = Heads(KernelHead(4, 1, landmarks=200, gamma=1.0)), Heads(torch.nn.Linear(4, 1))
    kernel_head(kernel, states, target, ridge=0.1)
    ridge_head(linear, states, target, ridge=1.0)
    test = rng.normal(size=(200, 4)).astype(np.float32)
    truth = np.exp(-(test**2).sum(1, keepdims=True))
    kernel_error, linear_error = np.mean((kernel(test) - truth) ** 2), np.mean((linear(test) - truth) ** 2)
    assert kernel_error < 0.5 * linear_error


def test_kernel_encoder_round_trips_through_save_and_load(tiny_bert_dir, tmp_path):
    samples, k = _samples(20, seed=6), 2
    targets = np.random.default_rng(7).normal(size=(20, k)).astype(np.float32)
    encoder = _kernel_encoder(tiny_bert_dir, k, landmarks=20)
    fit_coordinates(encoder, samples, targets, CoordinateFitSettings(epochs=0, ridge=0.3))
    encoder.save_pretrained(tmp_path / "enc")
    loaded = InfluenceEncoder.from_pretrained(tmp_path / "enc")
    assert loaded.config.head_kind == "kernel" and loaded.config.kernel_landmarks == 20
    assert isinstance(loaded.head, KernelHead)
    np.testing.assert_allclose(loaded.encode(samples), encoder.encode(samples), atol=1e-5)
    assert not (tmp_path / "enc" / "modules.json").exists()  # no sentence-transformers stack can express it


def test_kernel_config_and_settings_refuse_nonsense_and_resolve_their_penalty():
    with pytest.raises(InflucoderError, match="head_kind"):
        EncoderConfig(head_dim=4, head_kind="forest")
    with pytest.raises(InflucoderError, match="landmark"):
        EncoderConfig(head_dim=4, head_kind="kernel", kernel_landmarks=0)
    with pytest.raises(SettingError, match="kernel_gamma"):
        DistillSettings(kernel_gamma=0)
    assert DistillSettings().resolved().subspace_ridge == KERNEL_RIDGE
    assert DistillSettings(subspace_head="linear").resolved().subspace_ridge == LINEAR_RIDGE
    assert DistillSettings(subspace_ridge=7.0).resolved().subspace_ridge == 7.0


def test_a_kernel_head_with_more_landmarks_than_texts_is_refused_with_what_to_do(tiny_bert_dir):
    encoder = _kernel_encoder(tiny_bert_dir, 2, landmarks=50)
    with pytest.raises(InflucoderError, match="kernel_landmarks at most the number of training texts"):
        fit_coordinates(encoder, _samples(10), np.zeros((10, 2), dtype=np.float32), CoordinateFitSettings(epochs=0))


def test_a_feature_constant_in_training_does_not_push_later_texts_out_of_the_kernel():
    """Standardisation gives a training-constant feature scale 1: a text that differs there by 1 stays near its
    training neighbours instead of a million standard deviations away (where every kernel value is 0)."""
    from influcoder.encoder.heads import standardisation

    states = np.random.default_rng(0).normal(size=(50, 3))
    states[:, 2] = 4.0
    mu, sd = standardisation(states)
    assert sd[2] == 1.0 and np.allclose(sd[:2], states[:, :2].std(0) + 1e-6)
    assert abs((5.0 - mu[2]) / sd[2]) == 1.0


def test_the_fit_picks_the_penalty_of_its_head_when_none_is_given(tiny_bert_dir):
    """CoordinateFitSettings(ridge=None): 0.3 on the kernel, 1,000 on a linear head (a kernel fitted at 1,000
    would predict about the mean of the targets)."""
    samples, k = _samples(20, seed=8), 2
    targets = np.random.default_rng(9).normal(size=(20, k)).astype(np.float32)
    default, explicit = _kernel_encoder(tiny_bert_dir, k, 20), _kernel_encoder(tiny_bert_dir, k, 20)
    fit_coordinates(default, samples, targets, CoordinateFitSettings(epochs=0))
    fit_coordinates(explicit, samples, targets, CoordinateFitSettings(epochs=0, ridge=KERNEL_RIDGE))
    np.testing.assert_allclose(default.encode(samples), explicit.encode(samples), atol=1e-6)
    assert np.std(default.encode(samples)) > 0.5 * np.std(targets)  # not the mean


def test_a_singular_kernel_fit_is_refused_with_what_to_do(tiny_bert_dir):
    same = _samples(1) * 6  # six copies of one text: equal states, a singular kernel at penalty 0
    encoder = _kernel_encoder(tiny_bert_dir, 2, 6)
    with pytest.raises(InflucoderError, match="positive --subspace-ridge"):
        fit_coordinates(encoder, same, np.eye(6, 2, dtype=np.float32), CoordinateFitSettings(epochs=0, ridge=0.0))


def test_a_head_file_of_other_shapes_than_its_config_is_named(tiny_bert_dir, tmp_path):
    from influcoder.core.errors import DamagedFileError
    from influcoder.encoder.config import read_config, write_config

    encoder = _kernel_encoder(tiny_bert_dir, 2, 10)
    fit_coordinates(encoder, _samples(10), np.zeros((10, 2), dtype=np.float32), CoordinateFitSettings(epochs=0))
    encoder.save_pretrained(tmp_path / "enc")
    config = read_config(tmp_path / "enc")
    config.kernel_landmarks = 12
    write_config(tmp_path / "enc", config)
    with pytest.raises(DamagedFileError, match="head.safetensors does not fit config.json"):
        InfluenceEncoder.from_pretrained(tmp_path / "enc")


def test_linear_encoders_keep_the_fingerprint_fields_they_had_before_the_kernel_head():
    """The fields hashed for a linear encoder are those of configs written before the kernel head existed, so
    indexes built then still accept their encoder; a kernel encoder's fields say it is one."""
    before = {"backbone", "pooling", "head_dim", "max_length", "backbone_layers", "text_view", "label_config",
              "length_features", "standardise_head_input", "unit_norm"}  # fmt: skip
    assert set(EncoderConfig(head_dim=4).fingerprint_fields()) == before
    kernel = EncoderConfig(head_dim=4, head_kind="kernel", kernel_landmarks=3).fingerprint_fields()
    assert kernel["head_kind"] == "kernel" and kernel["kernel_landmarks"] == 3


def test_runs_written_before_the_kernel_head_resume_as_they_were():
    """Run keys without the head's settings: a cosine-objective run resumes at today's defaults, a subspace run
    (then always linear, ridge 1,000) resumes with --subspace-head linear and is refused at the kernel default."""
    from influcoder.core.run_keys import same_run
    from influcoder.encoder.resume import _run_key_defaults

    def old(settings: DistillSettings) -> dict:
        key = settings.resolved().key()
        for name in ("subspace_head", "kernel_gamma", "kernel_landmarks"):
            key.pop(name)
        return {"settings": {**key, "subspace_ridge": LINEAR_RIDGE}}

    def now(settings: DistillSettings) -> dict:
        return {"settings": settings.resolved().key()}

    cosine = DistillSettings(objective="influcoder")
    assert same_run(old(cosine), now(cosine), _run_key_defaults())
    assert same_run(old(DistillSettings()), now(DistillSettings(subspace_head="linear")), _run_key_defaults())
    assert not same_run(old(DistillSettings()), now(DistillSettings()), _run_key_defaults())
