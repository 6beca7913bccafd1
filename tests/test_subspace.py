"""Subspace encoders: the ridge start against a numpy least-squares reference, the per-query Pearson against
scipy, length features, persistence without normalisation, and that fine-tuning lowers its own objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import DamagedFileError
from influcoder.data.records import Sample
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.pooling import text_length_features
from influcoder.encoder.subspace import (
    CoordinateFitSettings,
    GradientSubspace,
    _column_pearson,
    fit_coordinates,
    pooled_states,
    subspace_encoder,
)

from .conftest import WORDS


def _samples(n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [
        Sample(
            id=f"s{i}",
            prompt=" ".join(rng.choice(WORDS, size=rng.integers(2, 8))),
            response=" ".join(rng.choice(WORDS, size=rng.integers(1, 6))),
        )  # fmt: skip
        for i in range(n)
    ]


def _encoder(tiny_bert_dir, k: int = 3) -> InfluenceEncoder:
    return subspace_encoder(str(tiny_bert_dir), k, max_length=32)


def test_ridge_start_is_the_least_squares_ridge_on_standardised_states(tiny_bert_dir):
    """Reference: the ridge solution by an augmented least-squares problem (sqrt(lambda) I rows under the
    standardised design, the bias unpenalised), predicted on the same states; tolerance 1e-4 absolute."""
    samples, k, lam = _samples(40), 3, 5.0
    targets = np.random.default_rng(1).normal(size=(40, k)).astype(np.float32)
    encoder = _encoder(tiny_bert_dir, k)
    fit_coordinates(encoder, samples, targets, CoordinateFitSettings(epochs=0, ridge=lam))
    states = pooled_states(encoder, samples).astype(np.float64)
    Z = (states - states.mean(0)) / (states.std(0) + 1e-6)
    design = np.vstack([np.hstack([Z, np.ones((40, 1))]),
                        np.hstack([np.sqrt(lam) * np.eye(Z.shape[1]), np.zeros((Z.shape[1], 1))])])  # fmt: skip
    W = np.linalg.lstsq(design, np.vstack([targets, np.zeros((Z.shape[1], k))]), rcond=None)[0]
    expected = np.hstack([Z, np.ones((40, 1))]) @ W
    np.testing.assert_allclose(encoder.encode(samples), expected, atol=1e-4)


def test_fine_tuning_lowers_the_coordinate_error_below_the_ridge_start(tiny_bert_dir):
    samples = _samples(48)
    targets = np.stack([[s.prompt.count(w) for w in WORDS[:4]] for s in samples]).astype(np.float32)
    encoder = _encoder(tiny_bert_dir, 4)
    fit_coordinates(encoder, samples, targets, CoordinateFitSettings(epochs=0, ridge=1.0))
    before = float(((encoder.encode(samples) - targets) ** 2).mean())
    settings = CoordinateFitSettings(epochs=6, lr=1e-4, head_lr=1e-4, score_weight=0.0, batch_size=16)
    history = fit_coordinates(encoder, samples, targets, settings, start_at_ridge=False)
    after = float(((encoder.encode(samples) - targets) ** 2).mean())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert after < 0.8 * before, (before, after)


def test_column_pearson_matches_scipy_with_own_pairs_left_out():
    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    weight = np.ones((9, 3))
    weight[[0, 4, 7], [0, 1, 2]] = 0.0  # a pool sample that is itself the query
    got = float(_column_pearson(*(torch.tensor(m) for m in (pred, true, weight))))
    keep = weight.astype(bool)
    expected = np.mean([pearsonr(pred[keep[:, j], j], true[keep[:, j], j]).statistic for j in range(3)])
    assert abs(got - expected) < 1e-9


def test_score_term_runs_and_is_recorded(tiny_bert_dir):
    samples = _samples(24)
    targets = np.random.default_rng(2).normal(size=(24, 2)).astype(np.float32)
    query_rows = np.array([1, 5, 9])
    labels = targets @ targets[query_rows].T
    history = fit_coordinates(_encoder(tiny_bert_dir, 2), samples, targets, CoordinateFitSettings(epochs=1),
                              query_rows, labels)  # fmt: skip
    assert -1.0 <= history[0]["pearson"] <= 1.0 and history[0]["pearson"] != 0.0


def test_length_features_and_persistence_without_normalisation(tiny_bert_dir, tmp_path):
    assert text_length_features(Sample(id="a", prompt="one two", response="three")) == pytest.approx(
        [np.log1p(7), np.log1p(5), np.log1p(2), np.log1p(1)]
    )
    assert text_length_features("just text") == pytest.approx([0.0, np.log1p(9), 0.0, np.log1p(2)])
    encoder = _encoder(tiny_bert_dir, 3)
    samples = _samples(6)
    out = encoder.encode(samples)
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)  # coordinates, not unit vectors
    encoder.save_pretrained(tmp_path / "enc")
    assert not (tmp_path / "enc" / "modules.json").exists()  # sentence-transformers cannot read length features
    again = InfluenceEncoder.from_pretrained(tmp_path / "enc")
    assert again.config.length_features and not again.config.unit_norm
    np.testing.assert_allclose(again.encode(samples), out, atol=1e-6)
    longer = Sample(id="b", prompt=samples[0].prompt + " " + samples[0].prompt, response=samples[0].response)
    assert not np.allclose(encoder.encode([longer]), out[:1])


def test_refuses_a_head_that_does_not_match_the_targets(tiny_bert_dir):
    with pytest.raises(InflucoderError, match="head of width 5"):
        fit_coordinates(_encoder(tiny_bert_dir, 3), _samples(4), np.zeros((4, 5), dtype=np.float32))
    unit = InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=2, max_length=32)
    with pytest.raises(InflucoderError, match="standardise_head_input"):
        fit_coordinates(unit, _samples(4), np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(InflucoderError, match="need a head"):
        InfluenceEncoder.from_backbone(str(tiny_bert_dir), length_features=True)


@pytest.mark.parametrize("exact_limit", [1000, 10])
def test_subspace_matches_numpy_svd(tmp_path, exact_limit):
    """Reference: numpy's SVD of the unit-normalised rows. The top-k directions span the same space (the
    projector V^T V agrees to 1e-4), and coordinates dotted together equal the projections' inner products.
    exact_limit 10 forces the randomised path; the matrix is rank 12, so k = 12 is exact there too."""
    rng = np.random.default_rng(0)
    G = (rng.normal(size=(60, 12)) * np.geomspace(10, 1, 12)) @ rng.normal(size=(12, 200))
    sub = GradientSubspace.fit(G, 12, exact_limit=exact_limit)
    U = G / np.linalg.norm(G, axis=1, keepdims=True)
    _, s, Vt = np.linalg.svd(U, full_matrices=False)
    np.testing.assert_allclose(sub.directions.T @ sub.directions, Vt[:12].T @ Vt[:12], atol=1e-4)
    np.testing.assert_allclose(sub.singular_values, s[:12], rtol=1e-4)
    x = rng.normal(size=(3, 200))
    c = sub.coordinates(x)
    ux = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(c @ c.T, (ux @ Vt[:12].T) @ (ux @ Vt[:12].T).T, atol=1e-4)
    sub.save(tmp_path)
    again = GradientSubspace.load(tmp_path)
    np.testing.assert_array_equal(again.directions, sub.directions)
    assert GradientSubspace.load(tmp_path / "nowhere") is None


def test_damaged_subspace_file_is_named(tmp_path):
    (tmp_path / "subspace.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DamagedFileError, match="subspace.npz"):
        GradientSubspace.load(tmp_path)
