"""InfluenceEncoder persistence and order, losses against numpy/scipy references, and a real learning test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from scipy.stats import pearsonr, spearmanr

from influcoder.core.errors import InflucoderError
from influcoder.data.records import Sample
from influcoder.encoder.distill import Distiller
from influcoder.encoder.losses import distillation_loss, pearson_loss, softmax_kl_loss
from influcoder.encoder.model import EncoderConfig, InfluenceEncoder
from influcoder.encoder.predict import predict_matrix
from influcoder.encoder.settings import DistillSettings
from influcoder.metrics import mean_aggregated_spearman, per_anchor_by_group, per_anchor_spearman, spearman_report

from .conftest import WORDS


def test_losses_match_references():
    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    expected_pearson = 1 - pearsonr(pred.ravel(), true.ravel()).statistic
    assert abs(float(pearson_loss(torch.tensor(pred), torch.tensor(true))) - expected_pearson) < 1e-6
    t = 0.3
    lp, lq = log_softmax(true / t, axis=1), log_softmax(pred / t, axis=1)
    expected_kl = float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))
    assert abs(float(softmax_kl_loss(torch.tensor(pred), torch.tensor(true), t)) - expected_kl) < 1e-5
    p = torch.tensor(pred, requires_grad=True)
    total, parts = distillation_loss(p, torch.tensor(true), alpha=0.25, temperature=t)
    assert abs(float(total.detach()) - (0.25 * expected_pearson + 0.75 * expected_kl)) < 1e-5
    total.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_query_centred_pearson_matches_reference_and_ignores_query_offsets():
    """Reference: numpy Pearson of the row-centred, flattened matrices. Adding a constant to one query's
    predictions changes the paper's Pearson loss but not the centred one (nor the KL)."""
    rng = np.random.default_rng(5)
    pred, true = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    centred = [m - m.mean(axis=1, keepdims=True) for m in (pred, true)]
    expected = 1 - pearsonr(centred[0].ravel(), centred[1].ravel()).statistic
    got = float(pearson_loss(torch.tensor(pred), torch.tensor(true), center="query"))
    assert abs(got - expected) < 1e-6
    shifted = pred.copy()
    shifted[2] += 3.0
    p, s, t = torch.tensor(pred), torch.tensor(shifted), torch.tensor(true)
    assert abs(float(pearson_loss(s, t, center="query")) - got) < 1e-6
    assert abs(float(pearson_loss(s, t)) - float(pearson_loss(p, t))) > 0.05
    assert abs(float(softmax_kl_loss(s, t)) - float(softmax_kl_loss(p, t))) < 1e-6
    with pytest.raises(ValueError, match="center must be one of"):
        pearson_loss(p, t, center="pool")
    assert float(pearson_loss(torch.tensor(true), torch.tensor(2 * true + 1))) < 1e-6
    assert float(softmax_kl_loss(torch.tensor(true), torch.tensor(true))) < 1e-7


def test_metrics_match_scipy():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(30, 5))
    pred = true + rng.normal(size=(30, 5))
    per_anchor = per_anchor_spearman(pred, true)
    for j in range(5):
        assert abs(per_anchor[j] - spearmanr(pred[:, j], true[:, j]).statistic) < 1e-12
    assert abs(mean_aggregated_spearman(pred, true) - spearmanr(pred.mean(1), true.mean(1)).statistic) < 1e-12
    report = spearman_report(pred, true)
    assert report.n_pool == 30 and abs(report.per_anchor_mean - per_anchor.mean()) < 1e-12


def test_per_anchor_by_group_averages_within_groups():
    rng = np.random.default_rng(2)
    true = rng.normal(size=(20, 6))
    pred = true.copy()
    pred[:, [1, 4]] = -true[:, [1, 4]]  # group "b" is perfectly anti-ranked, "a" perfectly ranked
    by = per_anchor_by_group(pred, true, ["a", "b", "a", "c", "b", "c"])
    assert list(by) == ["a", "b", "c"]
    assert by["a"] == {"n_queries": 2, "per_anchor_mean": 1.0, "per_anchor_std": 0.0}
    assert abs(by["b"]["per_anchor_mean"] + 1.0) < 1e-12
    with pytest.raises(ValueError, match="one group per query"):
        per_anchor_by_group(pred, true, ["a"])


@pytest.mark.parametrize("pooling", ["mean", "cls", "attention", "response", "mean+response"])
def test_save_load_identical_and_order_preserved(tiny_bert_dir, tmp_path, pooling):
    enc = InfluenceEncoder.from_backbone(str(tiny_bert_dir), pooling=pooling, head_dim=8, max_length=16)
    texts = ["cat", "the red dog is big and the blue bird is small", "one two", Sample("x", "sky", "sea sun")]
    emb = enc.encode(texts, batch_size=2)
    assert emb.shape == (4, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    singles = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(emb, singles, atol=1e-5)  # order restored after length sorting
    enc.save_pretrained(tmp_path / "enc")
    again = InfluenceEncoder.from_pretrained(tmp_path / "enc")
    assert again.config == enc.config
    np.testing.assert_array_equal(again.encode(texts, batch_size=2), emb)


@pytest.mark.parametrize("pooling", ["mean", "mean+response"])
def test_embed_in_length_groups_equals_one_padded_batch(tiny_bert_dir, pooling):
    """Training embeds texts in token-budget groups; in eval mode that matches one padded batch, in input
    order, and gradients reach the backbone through every group."""
    enc = InfluenceEncoder.from_backbone(str(tiny_bert_dir), pooling=pooling, max_length=16)
    rng = np.random.default_rng(3)
    words = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(18)]
    texts = [Sample(f"s{i}", words[2 * i], words[2 * i + 1]) for i in range(9)]
    enc.eval()
    whole = enc.embed(texts, max_tokens=None)
    grouped = enc.embed(texts, max_tokens=24)  # forces several groups of 1-3 texts
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=0)
    grouped.sum().backward()
    assert all(p.grad is not None for p in enc.backbone.encoder.parameters())


def test_response_pooling_reads_exactly_the_response_tokens(tiny_bert_dir):
    """Reference: the response mask is where the tokens of the response alone sit at the end of the text (the
    tiny tokenizer splits on whitespace, so the response's tokens are its words); "response" pooling equals a
    hand-computed mean of the backbone's hidden states over those positions, also after left truncation."""
    enc = InfluenceEncoder.from_backbone(str(tiny_bert_dir), pooling="response", max_length=8)
    enc.eval()
    samples = [Sample("a", "the red dog", "is big"), Sample("b", "one two three four five six seven", "sky sea")]
    batch = enc.tokenize(samples)
    for row, sample in enumerate(samples):
        n_response = len(sample.response.split())
        ids = batch["input_ids"][row][batch["attention_mask"][row] == 1]
        expected = torch.zeros(len(ids), dtype=torch.long)
        specials_at_end = int(ids[-1] in enc.tokenizer.all_special_ids)
        expected[len(ids) - specials_at_end - n_response : len(ids) - specials_at_end] = 1
        torch.testing.assert_close(batch["response_mask"][row][: len(ids)], expected)
    assert batch["input_ids"].shape[1] == 8  # the second sample was cut from the left
    with torch.no_grad():
        hidden = enc.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        reference = torch.stack([hidden[r][batch["response_mask"][r] == 1].mean(0) for r in range(2)])
        torch.testing.assert_close(enc(**batch), torch.nn.functional.normalize(reference, dim=-1))
    # a plain string is all response: the same as mean pooling over its non-special tokens
    assert enc.response_span("cat dog") == (0, 7)
    with pytest.raises(InflucoderError, match="exactly one"):
        EncoderConfig(pooling="response", text_view="{prompt}")


def topic_data(n: int, seed: int) -> tuple[list[Sample], np.ndarray]:
    """Texts made of words; a hidden linear map of their bag of words defines influence (learnable)."""
    rng = np.random.default_rng(seed)
    vocab = WORDS[:24]
    samples, bows = [], []
    for i in range(n):
        words = rng.choice(vocab, size=int(rng.integers(3, 8)))
        samples.append(Sample(f"s{seed}-{i}", " ".join(words[:2]), " ".join(words[2:])))
        bows.append([list(words).count(w) for w in vocab])
    return samples, np.array(bows, dtype=np.float64)


def test_distillation_learns_a_learnable_ranking(tiny_bert_dir, tmp_path):
    hidden = np.random.default_rng(42).normal(size=(24, 3))

    def truth(a, b):
        x, y = a @ hidden, b @ hidden
        return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T

    pool, pool_bow = topic_data(60, seed=1)
    queries, query_bow = topic_data(24, seed=2)
    held_pool, held_pool_bow = topic_data(40, seed=3)
    held_queries, held_query_bow = topic_data(16, seed=4)
    settings = DistillSettings(
        objective="influcoder",
        encoder=str(tiny_bert_dir),
        epochs=12,
        lr=2e-3,
        max_length=16,
        temperature=0.3,
        queries_per_batch=8,
        candidates_per_batch=12,
        head_dim=16,
        seed=0,
    )
    distiller = Distiller(settings)
    held_truth = truth(held_pool_bow, held_query_bow)
    before = spearman_report(predict_matrix(distiller.encoder, held_pool, held_queries), held_truth)
    logs = distiller.fit(truth(pool_bow, query_bow), pool, queries, out=tmp_path / "enc", progress=False)
    after = spearman_report(predict_matrix(distiller.encoder, held_pool, held_queries), held_truth)
    assert len(logs) == 12 and logs[-1].loss < logs[0].loss
    print(before, after)
    assert after.per_anchor_mean > before.per_anchor_mean + 0.2, (before, after)
    assert after.per_anchor_mean > 0.5
    best = InfluenceEncoder.from_pretrained(tmp_path / "enc" / "best")
    assert best.encode(held_pool[:3]).shape == (3, 16)


def test_new_pooling_parameters_train_at_a_larger_rate(tiny_bert_dir):
    """The attention query starts at zero (= mean pooling); at the backbone's small lr it would stay there.
    Its optimizer group runs at lr * head_lr_scale, and after a few steps it has moved about that much more."""
    pool, pool_bow = topic_data(30, seed=1)
    queries, _ = topic_data(8, seed=2)
    scores = pool_bow[:, :8] @ np.random.default_rng(0).normal(size=(8, 8))
    moved = {}
    for scale in (1.0, 20.0):
        settings = DistillSettings(
            objective="influcoder",
            encoder=str(tiny_bert_dir), pooling="attention", lr=1e-4, head_lr_scale=scale, epochs=1,
            max_length=16, queries_per_batch=4, candidates_per_batch=6, warmup=0.0, seed=0,
        )  # fmt: skip
        distiller = Distiller(settings)
        groups = distiller.parameter_groups()
        assert [len(g["params"]) for g in groups][1] == 1 and groups[1]["lr"] == 1e-4 * scale
        distiller.fit(scores / np.abs(scores).max(), pool, queries, progress=False)
        moved[scale] = float(distiller.encoder.attention_query.detach().norm())
    assert moved[20.0] > 10 * moved[1.0] > 0, moved


def test_hard_candidates_come_from_the_top_of_the_true_ranking(tiny_bert_dir):
    settings = DistillSettings(
        objective="influcoder", encoder=str(tiny_bert_dir), candidates_per_batch=6, hard_candidates=3, max_length=8
    )
    distiller = Distiller(settings)
    scores = np.random.default_rng(0).normal(size=(40, 5))
    train_pool, cols = np.arange(40), np.array([1, 3])
    chosen = distiller.candidates(np.random.default_rng(1), np.arange(3), train_pool, cols, scores)
    assert len(chosen) == 6 and len(set(chosen.tolist())) == 6
    tops = {int(np.argmax(scores[:, 1])), int(np.argmax(scores[:, 3]))}
    second = {int(np.argsort(-scores[:, j])[1]) for j in (1, 3)}
    assert tops <= set(chosen[:3].tolist()) and chosen[2] in second  # 3 hard from 2 queries: round-robin
    plain = Distiller(
        DistillSettings(objective="influcoder", encoder=str(tiny_bert_dir), candidates_per_batch=6, max_length=8)
    )
    fresh = np.array([7, 8, 9, 10, 11, 12])
    assert plain.candidates(np.random.default_rng(1), fresh, train_pool, cols, scores).tolist() == fresh.tolist()
    short = plain.candidates(np.random.default_rng(1), fresh[:2], train_pool, cols, scores)  # an epoch's last step
    assert len(set(short.tolist())) == 6 and short[:2].tolist() == [7, 8]


def test_an_epoch_offers_every_training_pool_sample_as_a_candidate(tiny_bert_dir, monkeypatch):
    """What the docs call an epoch: before, candidates were drawn independently per step, so an epoch left
    about a third of the pool unseen."""
    settings = DistillSettings(
        objective="influcoder",
        encoder=str(tiny_bert_dir),
        candidates_per_batch=4,
        queries_per_batch=2,
        epochs=2,
        max_length=8,
        val_fraction=0.1,
    )
    distiller = Distiller(settings)
    seen: list[list[int]] = []
    real = Distiller.candidates

    def spy(self, *args):
        rows = real(self, *args)
        seen.append(rows.tolist())
        return rows

    monkeypatch.setattr(Distiller, "candidates", spy)
    rng = np.random.default_rng(0)
    pool = [Sample(f"p{i}", " ".join(rng.choice(WORDS, 3)), "a") for i in range(30)]
    queries = [Sample(f"q{j}", " ".join(rng.choice(WORDS, 3)), "b") for j in range(6)]
    distiller.fit(rng.normal(size=(30, 6)), pool, queries, progress=False)
    train_pool = 27  # 30 minus the 10% validation share
    per_epoch = len(seen) // 2
    assert per_epoch == -(-train_pool // 4)
    for epoch in (seen[:per_epoch], seen[per_epoch:]):
        assert len({i for rows in epoch for i in rows}) == train_pool


def test_learning_rate_schedule_warms_up_from_the_first_step_and_decays_linearly():
    """transformers' helper entered at its step 1: no step at learning rate 0 (measured to cost the demo's
    40-step distillation ~0.08 held-out rho), warm-up to the peak, then linear decay that ends above 0."""
    from influcoder.encoder.training_run import warmup_then_linear_decay

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=2.0)
    total, warmup = 40, 4
    schedule = warmup_then_linear_decay(optimizer, warmup, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [
        2.0 * (s + 1) / warmup if s + 1 < warmup else 2.0 * (total - s) / (total + 1 - warmup) for s in range(total)
    ]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[0] == 0.5 and max(rates) == 2.0 and rates[-1] > 0


def test_from_backbone_seeds_its_head_without_touching_the_global_rng(tiny_bert_dir):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = InfluenceEncoder.from_backbone(str(tiny_bert_dir), seed=7, head_dim=8, max_length=16)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream continues as if nothing happened
    b = InfluenceEncoder.from_backbone(str(tiny_bert_dir), seed=7, head_dim=8, max_length=16)
    c = InfluenceEncoder.from_backbone(str(tiny_bert_dir), seed=8, head_dim=8, max_length=16)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)


def test_nan_embeddings_and_a_nan_training_loss_are_refused_by_name(tiny_bert_dir, monkeypatch):
    from influcoder.core.errors import NonFiniteValueError
    from influcoder.encoder.distill import Distiller
    from influcoder.encoder.settings import DistillSettings

    from .test_labels import samples

    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    data = samples(4)
    real_forward = InfluenceEncoder.forward

    def poisoned(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        return torch.where(torch.arange(len(out)).unsqueeze(1) == 0, torch.nan, out)  # first of each batch

    monkeypatch.setattr(InfluenceEncoder, "forward", poisoned)
    with pytest.raises(NonFiniteValueError, match="non-finite \\(NaN/Inf\\) embedding for 1 text"):
        encoder.encode(data, batch_size=8)
    monkeypatch.undo()

    import influcoder.encoder.training_run as distill_module

    monkeypatch.setattr(distill_module, "distillation_loss", lambda *a, **k: (torch.tensor(float("nan")), {}))
    distiller = Distiller(
        DistillSettings(objective="influcoder", encoder=str(tiny_bert_dir), max_length=16, epochs=1), device="cpu"
    )
    scores = np.random.default_rng(0).normal(size=(12, 6))
    with pytest.raises(NonFiniteValueError, match="non-finite training loss at epoch 1, step 1"):
        distiller.fit(scores, samples(12), samples(6, seed=3, prefix="q"), progress=False)


def test_encode_sorts_by_token_count_and_restores_input_order_across_chunks(tiny_bert_dir, monkeypatch):
    import influcoder.encoder.model as module

    enc = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 14)))) for _ in range(23)]
    singles = np.concatenate([enc.encode([t]) for t in texts])
    monkeypatch.setattr(module, "ENCODE_CHUNK", 7)  # several chunks, each sorted on its own
    np.testing.assert_allclose(enc.encode(texts, batch_size=4), singles, atol=1e-5)


def test_the_int8_backend_ranks_like_float_and_is_told_apart(tiny_bert_dir, tmp_path):
    from scipy.stats import spearmanr

    float_enc = InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=16, max_length=24)
    float_enc.save_pretrained(tmp_path / "enc")
    rng = np.random.default_rng(6)
    pool = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 20)))) for _ in range(60)]
    queries = pool[:5]
    exact = float_enc.encode(pool) @ float_enc.encode(queries).T
    int8 = InfluenceEncoder.from_pretrained(tmp_path / "enc", backend="int8")
    assert int8.backend == "int8"
    quantized_layers = [
        m for m in int8.backbone.modules() if "quantized" in type(m).__module__ and hasattr(m, "weight")
    ]
    assert quantized_layers and all(m.weight().qscheme() == torch.per_channel_affine for m in quantized_layers)
    quantized = int8.encode(pool) @ int8.encode(queries).T
    assert not np.array_equal(quantized, exact)  # it really runs another computation
    rhos = [spearmanr(quantized[:, j], exact[:, j])[0] for j in range(len(queries))]
    assert min(rhos) > 0.99
    assert int8.fingerprint() == float_enc.fingerprint() + "+int8-per-channel"
    with pytest.raises(InflucoderError, match="not saved"):
        int8.save_pretrained(tmp_path / "other")
    with pytest.raises(InflucoderError, match="unknown encoder backend"):
        float_enc.to_backend("onnx")
    # int8 quantises activations per call: a query's vector would move with its batch-mates (serve's micro-batch
    # against attribute's file); queries are encoded alone, so each one's vector is the same in any company
    together = int8.encode_queries(pool[:8])
    alone = np.vstack([int8.encode_queries([text]) for text in pool[:8]])
    np.testing.assert_array_equal(together, alone)
    assert not np.array_equal(int8.encode(pool[:8]), alone)  # what a shared call gives instead
