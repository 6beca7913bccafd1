"""The length prior: the ridge recovers a planted length effect, the weight is chosen by validation rho (zero
when the prior only adds noise), and every scoring path (predict, index search, filter scores, audit) adds the
same per-pool-sample term to the cosine, while coverage stays in the embedding space."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from influcoder import Influcoder
from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.encoder.coverage import CoverageReference
from influcoder.encoder.length_prior import LengthPrior, choose_weight, length_features
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.predict import predict_matrix
from influcoder.encoder.settings import DistillSettings
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples


def sized(n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [
        Sample(f"s{seed}-{i}", " ".join(["w"] * int(rng.integers(1, 60))), " ".join(["v"] * int(rng.integers(1, 90))))
        for i in range(n)
    ]


def test_the_ridge_recovers_a_planted_length_effect_and_drops_the_intercept():
    train, test = sized(300, 0), sized(100, 1)

    def truth(items):
        x = length_features(items)
        return 0.3 * x[:, 1] - 0.1 * x[:, 0] + 5.0  # response raises, prompt lowers the offset; a constant

    noise = np.random.default_rng(2).normal(scale=0.02, size=300)
    prior = LengthPrior.fit(train, truth(train) + noise)
    assert spearmanr(prior.predict(test), truth(test))[0] > 0.98
    assert abs(prior.predict(train).mean()) < 1e-9  # the constant is dropped: it changes no ranking
    prior.weight = 0.5
    np.testing.assert_allclose(prior.offsets(test), 0.5 * prior.predict(test), rtol=1e-6)


def test_the_weight_is_chosen_by_validation_rho():
    rng = np.random.default_rng(0)
    cosine = rng.normal(size=(60, 8))
    offset = rng.normal(size=60)
    noise_only = choose_weight(cosine, rng.normal(size=60), cosine)  # the cosine is already the truth
    assert noise_only[0] == 0.0 and noise_only[1]["0"] == pytest.approx(1.0)
    weight, figures = choose_weight(cosine, offset, cosine + 2.0 * offset[:, None])
    assert weight > 0 and figures["0"] < max(figures.values())


def test_plain_text_is_refused_where_a_prior_needs_prompt_and_response():
    with pytest.raises(InflucoderError, match="plain text at position 1"):
        length_features([Sample("a", "p", "r"), "just text"])


@pytest.fixture(scope="module")
def prior_encoder_dir(tiny_bert_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("encoder-prior")
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=16, max_length=24)
    encoder.length_prior = LengthPrior.fit(samples(40, seed=9), np.random.default_rng(1).normal(size=40))
    encoder.length_prior.weight = 0.3
    encoder.save_pretrained(directory)
    return directory


def test_every_scoring_path_adds_the_prior_and_coverage_ignores_it(prior_encoder_dir, tmp_path):
    encoder = InfluenceEncoder.from_pretrained(prior_encoder_dir)
    assert encoder.length_prior is not None and encoder.length_prior.weight == 0.3
    pool, queries = samples(50), samples(5, seed=3, prefix="q")
    cosine = encoder.encode(pool) @ encoder.encode(queries).T
    expected = cosine + encoder.length_prior.offsets(pool)[:, None]
    np.testing.assert_allclose(predict_matrix(encoder, pool, queries), expected, atol=1e-6)
    plain = InfluenceEncoder.from_pretrained(prior_encoder_dir)
    plain.length_prior = None
    assert plain.fingerprint() != encoder.fingerprint()  # an index built with the prior needs it

    ic = Influcoder(encoder, coverage=CoverageReference(encoder.encode(pool[:20]), 3, 0.5, 0.05))
    index = ic.index(pool, tmp_path / "idx", progress=False)
    assert index.dim == encoder.dim + 1 and index.manifest["prior_columns"] == 1
    hits = ic.attribute(queries, k=6)
    stored = index.embeddings() @ encoder.encode_queries(queries).T  # float16 pool vectors, as searched
    np.testing.assert_allclose(stored, expected, atol=2e-3)
    for j, per_query in enumerate(hits):
        assert [a.sample.id for a in per_query] == [pool[i].id for i in np.argsort(-stored[:, j], kind="stable")[:6]]
    np.testing.assert_allclose(ic.score(queries), stored.mean(axis=1), atol=1e-5)
    coverage_alone = ic.coverage_reference.score(encoder.encode(pool))
    np.testing.assert_allclose(index.coverage(), coverage_alone, atol=2e-3)  # the prior column plays no part


def test_distill_length_prior_fits_and_saves_it_without_touching_the_run_key(tiny_model_dir, tiny_bert_dir, tmp_path):
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    pool = [Sample(s.id, s.prompt, s.response, {"task": f"t{i % 5}"}) for i, s in enumerate(samples(30))]
    queries = [Sample(s.id, s.prompt, s.response, {"task": f"q{i % 3}"}) for i, s in enumerate(samples(12, 7, "q"))]
    label(pool, queries, tmp_path / "labels", settings, progress=False)
    out = tmp_path / "enc"
    args = ["distill", "--objective", "influcoder", "--labels", str(tmp_path / "labels"), "--out", str(out)]
    args += ["--encoder", str(tiny_bert_dir)]
    args += ["--epochs", "1", "--max-length", "16", "--quiet", "--val-group", "task", "--val-fraction", "0.3"]
    assert main(args) == 0 and LengthPrior.load(out / "best") is None  # off unless asked
    assert main([*args, "--length-prior"]) == 0  # the finished run is kept; only the prior is added
    prior = LengthPrior.load(out / "best")
    assert prior is not None and "whole groups of 'task'" in prior.chosen_on
    assert InfluenceEncoder.from_pretrained(out).length_prior == prior
    assert "length_prior" not in DistillSettings(objective="influcoder", length_prior=True).key()
    record = json.loads((out / "training.json").read_text())
    assert record["complete"] and record["settings"]["val_group"] == "task"


def test_a_validation_split_too_small_to_rank_keeps_the_prior_off():
    cosine, prior = np.ones((3, 2)), np.arange(3.0)  # constant predictions: every rho is NaN
    weight, figures = choose_weight(cosine, prior, np.random.default_rng(0).normal(size=(3, 2)))
    assert weight == 0.0 and all(np.isnan(v) for v in figures.values())
