"""The compared methods behind one Scorer interface, and the query-specific metric, against references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from influcoder.core.errors import InflucoderError
from influcoder.core.progress import progress_bars
from influcoder.encoder.model import InfluenceEncoder
from influcoder.evaluation.baselines.base import EvaluationData
from influcoder.evaluation.baselines.reference import PoolMean
from influcoder.evaluation.baselines.text import Semantic, TfIdf
from influcoder.evaluation.evaluate import evaluate_scorers
from influcoder.labels.settings import LabelSettings
from influcoder.metrics import query_specific_per_anchor, spearman_report

from .test_labels import samples


def test_query_specific_spearman_matches_a_loop_and_is_zero_for_a_query_agnostic_prediction():
    rng = np.random.default_rng(0)
    offsets = rng.normal(size=(30, 1)) * 3
    true = offsets + rng.normal(size=(30, 6))
    pred = true + rng.normal(size=(30, 6)) * 0.5
    centred_true = true - true.mean(axis=1, keepdims=True)
    centred_pred = pred - pred.mean(axis=1, keepdims=True)
    reference = [spearmanr(centred_pred[:, j], centred_true[:, j]).statistic for j in range(6)]
    np.testing.assert_allclose(query_specific_per_anchor(pred, true), reference, atol=1e-12)
    agnostic = np.repeat(offsets, 6, axis=1)  # knows the offsets exactly, nothing per query
    report = spearman_report(agnostic, true)
    assert report.per_anchor_mean > 0.8  # the offset alone earns a high per-anchor figure...
    assert report.query_specific_mean == 0.0  # ...and nothing query-specific (0, not NaN)


def data_for(pool, queries, scores, eval_pool, eval_queries) -> EvaluationData:
    train_pool = np.setdiff1d(np.arange(len(pool)), eval_pool)
    train_queries = np.setdiff1d(np.arange(len(queries)), eval_queries)
    return EvaluationData(scores, pool, queries, train_pool, eval_pool, train_queries, eval_queries, "random")


def test_pool_mean_reads_only_training_queries():
    pool, queries = samples(12), samples(8, seed=1, prefix="q")
    scores = np.random.default_rng(2).normal(size=(12, 8))
    data = data_for(pool, queries, scores, np.arange(8, 12), np.arange(5, 8))
    scorer = PoolMean()
    scorer.fit(data)
    first = scorer.score(*data.eval_samples())
    assert first.shape == (4, 3) and np.all(first == first[:, :1])
    np.testing.assert_allclose(first[:, 0], scores[8:12, :5].mean(axis=1))
    scores[:, 5:] += 100.0  # evaluation queries' truth must not leak into the reference
    scorer.fit(data)
    np.testing.assert_array_equal(scorer.score(*data.eval_samples()), first)


def test_lengths_learns_a_length_driven_offset_from_training_rows_only():
    """The offset of these labels grows with response length; the ridge, fitted on training rows and
    queries only, ranks the held-out pool by it, the same for every query."""
    from influcoder.evaluation.baselines.reference import LengthOffset

    pool = samples(40, seed=4)
    queries = samples(8, seed=1, prefix="q")
    words = np.log1p([len(s.response.split()) for s in pool])
    scores = words[:, None] + np.random.default_rng(3).normal(scale=0.05, size=(40, 8))
    data = data_for(pool, queries, scores, np.arange(30, 40), np.arange(5, 8))
    scorer = LengthOffset()
    scorer.fit(data)
    predicted = scorer.score(*data.eval_samples())
    assert predicted.shape == (10, 3) and np.all(predicted == predicted[:, :1])
    from scipy.stats import spearmanr

    assert spearmanr(predicted[:, 0], words[30:])[0] > 0.95
    scores[30:] += 100.0  # held-out rows' truth must not leak into the fit
    again = LengthOffset()
    again.fit(data)
    np.testing.assert_allclose(again.score(*data.eval_samples()), predicted)


def test_text_baselines_have_the_right_shape_and_are_deterministic(tiny_bert_dir):
    pool, queries = samples(9), samples(4, seed=3, prefix="q")
    tfidf = TfIdf().score(pool, queries)
    assert tfidf.shape == (9, 4) and np.all(tfidf >= 0) and np.all(tfidf <= 1 + 1e-9)
    np.testing.assert_array_equal(tfidf, TfIdf().score(pool, queries))
    assert TfIdf().score([queries[0]], queries)[0, 0] == pytest.approx(1.0)  # a text is closest to itself
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    semantic = Semantic(encoder).score(pool, queries)
    assert semantic.shape == (9, 4)
    np.testing.assert_array_equal(semantic, Semantic(encoder).score(pool, queries))


def test_evaluate_scorers_reports_every_method_with_its_protocol():
    pool, queries = samples(20), samples(8, seed=1, prefix="q")
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(20, 1)) * 2 + rng.normal(size=(20, 8))
    data = data_for(pool, queries, scores, np.arange(12, 20), np.arange(4, 8))
    rows = evaluate_scorers({"pool-mean": PoolMean(), "tfidf": TfIdf()}, data)
    assert set(rows) == {"pool-mean", "tfidf"} and rows["pool-mean"]["protocol"] == "random"
    assert rows["pool-mean"]["query_specific_mean"] == 0.0 and rows["pool-mean"]["n_pool"] == 8
    assert rows["pool-mean"]["per_anchor_mean"] > 0.5  # the offsets carry most of the per-anchor figure


def test_position_weighted_pooling_matches_a_hand_computed_mean_and_ignores_padding():
    import torch

    from influcoder.evaluation.baselines.representations import pooled_hidden

    hidden = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding in the first row
    got = pooled_hidden(hidden, mask, "position")
    first = (1 * hidden[0, 2] + 2 * hidden[0, 3] + 3 * hidden[0, 4]) / 6
    second = sum((i + 1) * hidden[1, i] for i in range(5)) / 15
    expected = torch.nn.functional.normalize(torch.stack([first, second]), dim=-1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        pooled_hidden(hidden, mask, "mean")[0], torch.nn.functional.normalize(hidden[0, 2:].mean(0), dim=0)
    )
    hidden[0, :2] = 1e6  # what padding holds must not matter
    torch.testing.assert_close(pooled_hidden(hidden, mask, "position"), expected)


def test_response_and_last_token_poolings_match_hand_computed_states_and_ignore_padding():
    import torch

    from influcoder.data.formatting import IGNORE_INDEX
    from influcoder.evaluation.baselines.representations import pooled_hidden

    hidden = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding in the first row
    ignore = IGNORE_INDEX
    labels = torch.tensor([[ignore, ignore, ignore, 7, 8], [ignore, ignore, 5, 6, 7]])  # responses: 2 and 3 tokens
    unit = torch.nn.functional.normalize
    response = torch.stack([hidden[0, 3:].mean(0), hidden[1, 2:].mean(0)])
    torch.testing.assert_close(pooled_hidden(hidden, mask, "response", labels), unit(response, dim=-1))
    torch.testing.assert_close(pooled_hidden(hidden, mask, "last"), unit(hidden[:, -1], dim=-1))
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # padded on the right, the last real token moves
    torch.testing.assert_close(pooled_hidden(hidden, right, "last")[0], unit(hidden[0, 2], dim=-1))
    hidden[0, :2] = 1e6  # what padding (and the prompt, for "response") holds must not matter
    hidden[1, :2] = 1e6
    torch.testing.assert_close(pooled_hidden(hidden, mask, "response", labels), unit(response, dim=-1))
    with pytest.raises(ValueError, match="labels"):
        pooled_hidden(hidden, mask, "response")
    with pytest.raises(ValueError, match="unknown pooling"):
        pooled_hidden(hidden, mask, "max")


@pytest.mark.parametrize("kind", ["repsim", "rds+", "repsim-response", "repsim-last"])
def test_decoder_representations_are_the_same_batched_and_one_by_one(tiny_model_dir, kind):
    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.representations import REPRESENTATIONS
    from influcoder.labels.settings import LabelSettings

    model, tokenizer = load_decoder(str(tiny_model_dir))
    settings = LabelSettings(model=str(tiny_model_dir), max_length=24, batch_size=4, batch_tokens=256, device="cpu")
    scorer = REPRESENTATIONS[kind](settings, model, tokenizer)
    data = samples(7)
    batched = scorer.embed(data)
    alone = np.concatenate([scorer.embed([s]) for s in data])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    scores = scorer.score(data, samples(3, seed=2, prefix="q"))
    assert scores.shape == (7, 3) and np.all(np.abs(scores) <= 1 + 1e-6)

    # the scorer asks for one position's logits only; the states are those of a plain full forward
    import torch

    from influcoder.data.formatting import collate_left_padded
    from influcoder.evaluation.baselines.representations import pooled_hidden

    inputs = collate_left_padded(scorer.formatter.encode_all(data), scorer.pad_id)
    labels = inputs.pop("labels")
    with torch.no_grad():
        full = model(**inputs, output_hidden_states=True)
    assert full.logits.shape[1] == inputs["input_ids"].shape[1]
    expected = pooled_hidden(full.hidden_states[-1], inputs["attention_mask"], scorer.weighting, labels).numpy()
    np.testing.assert_allclose(batched, expected, atol=1e-5)


def test_last_token_pooling_warns_when_responses_were_cut_at_max_length(tiny_model_dir):
    import warnings

    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.representations import RepSim, RepSimLast
    from influcoder.labels.settings import LabelSettings

    model, tokenizer = load_decoder(str(tiny_model_dir))
    short = LabelSettings(model=str(tiny_model_dir), max_length=6, batch_size=4, batch_tokens=256, device="cpu")
    data = samples(3)
    scorer = RepSimLast(short, model, tokenizer)
    cut = sum(t.response_truncated for t in scorer.formatter.encode_all(data))
    assert cut > 0
    with pytest.warns(UserWarning, match=f"{cut} of 3 samples have responses longer than max_length 6"):
        scorer.embed(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the other poolings read every response token kept: no warning
        RepSim(short, model, tokenizer).embed(data)
        long = LabelSettings(model=str(tiny_model_dir), max_length=64, batch_size=4, batch_tokens=256, device="cpu")
        RepSimLast(long, model, tokenizer).embed(data)


def test_one_decoder_pass_scores_every_pooling_as_the_separate_scorers_do(tiny_model_dir):
    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.representations import REPRESENTATIONS, RepSim
    from influcoder.labels.settings import LabelSettings

    model, tokenizer = load_decoder(str(tiny_model_dir))
    settings = LabelSettings(model=str(tiny_model_dir), max_length=24, batch_size=4, batch_tokens=256, device="cpu")
    pool, queries = samples(6), samples(3, seed=2, prefix="q")
    joint = RepSim(settings, model, tokenizer).score_all(pool, queries)
    assert sorted(joint) == ["rds+", "repsim", "repsim-last", "repsim-response"]
    for name, cls in REPRESENTATIONS.items():
        np.testing.assert_allclose(joint[name], cls(settings, model, tokenizer).score(pool, queries), atol=1e-6)
    for a, b in [("repsim", "rds+"), ("repsim", "repsim-response"), ("repsim", "repsim-last")]:
        assert not np.allclose(joint[a], joint[b])  # the poolings differ
    some = RepSim(settings, model, tokenizer).score_all(pool, queries, ["repsim-last", "rds+"])
    assert list(some) == ["repsim-last", "rds+"]  # only the asked ones: a scored method keeps its record
    np.testing.assert_allclose(some["repsim-last"], joint["repsim-last"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown representation"):
        RepSim(settings, model, tokenizer).score_all(pool, queries, ["gradsim"])


def test_less_with_sgd_gradients_ranks_like_the_exact_labels(tiny_model_dir):
    """On a fresh adapter LESS differs from the ground truth only by its projection (Rademacher 8,192 vs
    the labels' features): per-anchor rho against exact (unprojected) gradient cosines must be high."""
    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.less import Less
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.influence import normalize_rows
    from influcoder.labels.settings import LabelSettings

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24, device="cpu", projector="identity")
    pool, queries = samples(24), samples(6, seed=4, prefix="q")
    exact_featurizer = GradientFeaturizer(settings, *load_decoder(str(tiny_model_dir)))
    exact = normalize_rows(exact_featurizer.featurize(pool)) @ normalize_rows(exact_featurizer.featurize(queries)).T
    less = Less(settings, *load_decoder(str(tiny_model_dir)))
    predicted = less.score(pool, queries)
    assert predicted.shape == (24, 6) and less.preconditioner == "sgd"
    assert spearman_report(predicted, exact).per_anchor_mean > 0.9
    np.testing.assert_array_equal(predicted, less.score(pool, queries))


def test_the_flop_meter_sees_attention_and_restores_the_model(tiny_bert_dir):
    from torch.utils.flop_counter import FlopCounterMode

    from influcoder.evaluation.costs import count_flops
    from influcoder.evaluation.evaluate import evaluate_scorers

    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=64)
    backbone = encoder.backbone
    before = backbone.config._attn_implementation
    texts = ["a b c d e f g h " * 6]
    with FlopCounterMode(display=False) as plain:
        encoder.encode(texts)
    _, counted = count_flops(lambda: encoder.encode(texts), [backbone])
    assert counted > plain.get_total_flops()  # attention's matmuls are counted only under eager attention
    assert backbone.config._attn_implementation == before
    pool, queries = samples(6), samples(3, seed=1, prefix="q")
    scores = np.random.default_rng(0).normal(size=(6, 3))
    data = data_for(pool, queries, scores, np.arange(3, 6), np.arange(1, 3))
    rows = evaluate_scorers({"semantic": Semantic(encoder), "tfidf": TfIdf()}, data, count_flops=True)
    assert rows["semantic"]["flops_per_sample"] > 0 and rows["tfidf"]["flops_per_sample"] is None


def test_every_method_reports_what_it_stores_per_sample(tiny_bert_dir):
    pool, queries = samples(6), samples(3, seed=1, prefix="q")
    data = data_for(pool, queries, np.random.default_rng(1).normal(size=(6, 3)), np.arange(3, 6), np.arange(1, 3))
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    rows = evaluate_scorers({"semantic": Semantic(encoder), "tfidf": TfIdf(), "pool-mean": PoolMean()}, data)
    assert rows["semantic"]["bytes_per_sample"] == 2 * encoder.dim
    assert rows["pool-mean"]["bytes_per_sample"] == 8
    tfidf = TfIdf()
    tfidf.score(pool[3:], queries[1:])
    assert rows["tfidf"]["bytes_per_sample"] == tfidf.bytes_per_sample() > 0


def test_datainf_matches_the_explicit_sherman_morrison_average_block_by_block():
    """The Gram-matrix form equals q^T H^-1 g with H^-1 = 1/(n lam) sum_i (I - g_i g_i^T / (lam + |g_i|^2)),
    built as a matrix per block; an all-zero block (a fresh adapter's A) contributes nothing."""
    from influcoder.evaluation.baselines.gradients import datainf_scores

    rng = np.random.default_rng(0)
    blocks = [5, 3, 4]
    pool, queries = rng.normal(size=(9, 12)), rng.normal(size=(4, 12))
    pool[:, 5:8] = 0.0
    expected = np.zeros((9, 4))
    start = 0
    for size in blocks:
        p, q = pool[:, start : start + size], queries[:, start : start + size]
        start += size
        lam = 0.1 * (p**2).sum(axis=1).mean() / size
        if lam == 0:
            continue
        inverse = sum(np.eye(size) - np.outer(g, g) / (lam + g @ g) for g in p) / (len(p) * lam)
        expected += p @ inverse @ q.T
    np.testing.assert_allclose(datainf_scores(pool, queries, blocks), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="blocks cover"):
        datainf_scores(pool, queries, [5, 3])


def test_datainf_on_a_tiny_model_is_deterministic_and_tends_to_inner_products_when_damped_hard(
    tiny_model_dir, tmp_path, capsys
):
    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.gradients import DataInf, datainf_scores

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24, device="cpu", projector="identity")
    pool, queries = samples(12), samples(4, seed=4, prefix="q")
    scorer = DataInf(settings, *load_decoder(str(tiny_model_dir)))
    got = scorer.score(pool, queries)
    assert got.shape == (12, 4) and scorer.preconditioner == "datainf" and np.isfinite(got).all()
    np.testing.assert_array_equal(got, scorer.score(pool, queries))
    exact_pool, exact_queries = scorer.exact(pool).astype(np.float64), scorer.exact(queries)
    # the pool's gradients go through a disk-backed array (they are ~10 MB per sample for real decoders): the
    # scores equal those of the same gradients held in memory, and the scratch folder is left empty
    scratch = tmp_path / "scratch"  # made when needed
    scorer.scratch = scratch
    np.testing.assert_array_equal(scorer.score(pool, queries), got)
    np.testing.assert_array_equal(datainf_scores(exact_pool.astype(np.float32), exact_queries, scorer.blocks), got)
    scorer.rows_per_pass = 5  # passes of 5, 5 and 2 rows: other batches, the same gradients to float32 rounding
    capsys.readouterr()
    with progress_bars(True):  # one bar over the pool and the queries, every sample counted once
        np.testing.assert_allclose(scorer.score(pool, queries), got, rtol=1e-5, atol=1e-6 * np.abs(got).max())
    bar = capsys.readouterr().err
    assert "datainf gradients" in bar and "16/16" in bar and "17/16" not in bar
    assert list(scratch.iterdir()) == []
    scorer.rows_per_pass = 128
    scorer.damping = 1e8  # H_l^-1 -> I / lam_l: inner products, each block weighted by 1 / lam_l
    expected, start = np.zeros((12, 4)), 0
    for size in scorer.blocks:
        p, q = exact_pool[:, start : start + size], exact_queries[:, start : start + size]
        start += size
        lam = (p**2).sum(axis=1).mean() / size
        expected += p @ q.T / lam if lam > 0 else 0.0
    np.testing.assert_allclose(scorer.score(pool, queries) * 1e8, expected, rtol=1e-5)


def test_logra_features_are_the_two_sided_projection_of_exact_base_weight_gradients(tiny_model_dir):
    """Batched LoGRA features equal P_out G P_in^T per layer, G each sample's own weight gradient from autograd."""
    import torch

    from influcoder.data.formatting import collate_left_padded
    from influcoder.data.models import load_decoder
    from influcoder.evaluation.baselines.logra import LoGra
    from influcoder.labels.gradients import forward_response_loss

    settings = LabelSettings(model=str(tiny_model_dir), max_length=24, batch_size=4, batch_tokens=256, device="cpu")
    scorer = LoGra(settings, *load_decoder(str(tiny_model_dir)), rank=3)
    assert "lm_head" not in scorer.linears and len(scorer.linears) == 2 * 7
    data = samples(5)
    batched = scorer.features(data)
    reference_model, _ = load_decoder(str(tiny_model_dir))
    names = list(scorer.linears)
    for i, tokenized in enumerate(scorer.formatter.encode_all(data)):
        weights = [reference_model.get_submodule(n).weight for n in names]
        for w in weights:
            w.requires_grad_(True)
            w.grad = None
        forward_response_loss(reference_model, collate_left_padded([tokenized], scorer.pad_id)).sum().backward()
        expected = torch.cat(
            [(scorer.projections[n][1] @ w.grad @ scorer.projections[n][0].T).flatten() for n, w in zip(names, weights)]
        )
        np.testing.assert_allclose(batched[i], expected.numpy(), rtol=1e-4, atol=1e-6)
    fisher = LoGra(settings, *load_decoder(str(tiny_model_dir)), rank=3, fisher=True)
    scores = fisher.score(data, samples(2, seed=1, prefix="q"))
    assert fisher.name == "logra-fisher" and scores.shape == (5, 2) and np.all(np.abs(scores) <= 1 + 1e-6)
    np.testing.assert_array_equal(scores, fisher.score(data, samples(2, seed=1, prefix="q")))


def test_fisher_whitening_gives_the_damped_inverse_fisher_inner_product():
    from influcoder.evaluation.baselines.logra import whiten

    rng = np.random.default_rng(1)
    pool, queries = rng.normal(size=(20, 6)) * [1, 2, 3, 4, 5, 6], rng.normal(size=(3, 6))
    fisher = pool.T @ pool / 20
    lam = 0.1 * np.trace(fisher) / 6
    expected = queries @ np.linalg.inv(fisher + lam * np.eye(6)) @ pool.T
    np.testing.assert_allclose(whiten(queries, pool, 0.1) @ whiten(pool, pool, 0.1).T, expected, rtol=1e-8)


def test_group_ranking_loss_is_a_pairwise_loss_over_attention_pooled_groups():
    """Groups of one are plain pairwise RankNet over candidates; larger groups pool by attention and rank by
    summed truth; a perfect ordering with a wide margin costs almost nothing, the reversed one a lot."""
    import torch
    import torch.nn.functional as F

    from influcoder.encoder.losses import group_ranking_loss

    pred = torch.tensor([[0.9, 0.1, 0.5, -0.2]])
    true = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    singles = torch.arange(4).unsqueeze(1)
    pairs = [(i, j) for i in range(4) for j in range(4) if true[0, i] > true[0, j]]
    expected = torch.stack([F.softplus(-(pred[0, i] - pred[0, j]) / 0.1) for i, j in pairs]).mean()
    torch.testing.assert_close(group_ranking_loss(pred, true, singles, 0.1), expected)
    groups = torch.tensor([[0, 1], [2, 3]])  # true sums 4 > 2
    attention = torch.softmax(pred[0, groups] / 0.1, dim=-1)
    scores = (attention * pred[0, groups]).sum(-1)
    torch.testing.assert_close(group_ranking_loss(pred, true, groups, 0.1), F.softplus(-(scores[0] - scores[1]) / 0.1))
    assert group_ranking_loss(true, true, singles, 0.01) < 1e-6 < 10 < group_ranking_loss(-true, true, singles, 0.01)
    assert group_ranking_loss(pred, torch.zeros_like(true), singles) == 0.0  # ties: nothing to rank


def test_airrep_trains_on_the_training_split_only_and_scores_like_an_encoder(tiny_bert_dir):
    from influcoder.encoder.settings import DistillSettings
    from influcoder.evaluation.baselines.learned import AirRep

    pool, queries = samples(24), samples(8, seed=1, prefix="q")
    scores = np.random.default_rng(3).normal(size=(24, 8))
    data = data_for(pool, queries, scores, np.arange(18, 24), np.arange(6, 8))
    settings = DistillSettings(encoder=str(tiny_bert_dir), max_length=16, epochs=1, candidates_per_batch=6)
    scorer = AirRep(settings, device="cpu")
    scorer.fit(data)
    assert scorer.encoder.config.pooling == "attention" and scorer.settings.objective == "airrep"
    first = scorer.score(*data.eval_samples())
    assert first.shape == (6, 2) and np.all(np.abs(first) <= 1 + 1e-5)
    scores[18:, :] = 1e3  # evaluation rows and columns must not reach the training
    scores[:, 6:] = -1e3
    again = AirRep(settings, device="cpu")
    again.fit(data)
    np.testing.assert_allclose(again.score(*data.eval_samples()), first, atol=1e-6)
    with pytest.raises(InflucoderError, match="training part of a split"):
        AirRep(settings).fit(
            EvaluationData(scores, pool, queries, np.arange(0), np.arange(24), np.arange(0), np.arange(8))
        )


def test_auroc_matches_the_pairwise_definition_with_ties_counting_half():
    from influcoder.metrics import auroc

    rng = np.random.default_rng(2)
    scores = np.round(rng.normal(size=40), 1)  # rounded: ties
    positive = rng.random(40) < 0.3
    pairs = [(p, n) for p in scores[positive] for n in scores[~positive]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert auroc(scores, positive) == pytest.approx(expected)
    assert auroc(scores, np.zeros(40, dtype=bool)) is None


def test_pooled_coverage_flag_ranks_all_runs_queries_together():
    from influcoder.evaluation.report import pooled_coverage_flag

    def run(coverage, rho):
        return {"coverage": {"query_coverage": coverage}, "rows": {"distilled": {"per_anchor": rho}}}

    seen = run([0.9, 0.8, 0.85], [0.7, 0.6, None])  # covered queries, ranked well (one undefined)
    unseen = run([0.3, 0.5], [0.1, 0.2])
    pooled = pooled_coverage_flag([seen, unseen])
    assert pooled["auroc_low_rho"] == 1.0 and pooled["n_queries"] == 4 and pooled["n_low_rho"] == 2
    assert pooled["auroc_low_rho_spread"] is None  # these runs measured no spread
    assert pooled_coverage_flag([seen]) is None  # no low-rho query: undefined
    assert pooled_coverage_flag([{"coverage": None, "rows": {}}]) is None
    seen["coverage"]["query_spread"] = [0.02, 0.03, 0.01]
    unseen["coverage"]["query_spread"] = [0.025, 0.005]  # one failing query spreads more than a good one
    assert pooled_coverage_flag([seen, unseen])["auroc_low_rho_spread"] == 0.75
