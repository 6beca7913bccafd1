"""`finetune` (a LoRA adapter trained on a pool, with its Adam state) and LESS's Adam preconditioning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from influcoder.core.errors import ArtifactMismatchError
from influcoder.data.models import load_decoder
from influcoder.labels.adam import AdamPreconditioner, read_adam_state
from influcoder.labels.finetune import FinetuneSettings, finetune, read_manifest, step_order
from influcoder.labels.lora import LoraSettings, attach_lora, lora_parameters
from influcoder.labels.settings import LabelSettings

from .test_labels import samples

FAST = dict(lr=1e-2, batch_size=4, max_length=24, checkpoint_every=2, warmup_ratio=0.0)


def train(model_dir, out, pool, **kw):
    return finetune(pool, out, str(model_dir), LoraSettings(rank=2), FinetuneSettings(**{**FAST, **kw}), progress=False)


def adapter_weights(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_finetune_lowers_the_loss_and_its_adapter_loads_back(tiny_model_dir, tmp_path):
    from influcoder.data.formatting import SampleFormatter, collate_left_padded
    from influcoder.labels.gradients import forward_response_loss

    pool = samples(16)
    result = train(tiny_model_dir, tmp_path / "adapter", pool, epochs=4)
    assert result.steps == 16 and len(result.losses) == 16 and result.resumed_from == 0
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4]) - 0.1
    assert read_manifest(tmp_path / "adapter")["done"]

    def loss_with(lora: LoraSettings) -> float:
        model, tokenizer = load_decoder(str(tiny_model_dir))
        model = attach_lora(model, lora)
        batch = collate_left_padded(SampleFormatter(tokenizer, 24).encode_all(pool), 0)
        with torch.no_grad():
            return float(forward_response_loss(model, batch).mean())

    assert loss_with(LoraSettings(rank=2, adapter=str(tmp_path / "adapter"))) < loss_with(LoraSettings(rank=2)) - 0.1
    # `label --adapter DIR` reads it: both LoRA matrices now carry gradient signal
    from influcoder.labels.featurizer import GradientFeaturizer

    featurizer = GradientFeaturizer(
        LabelSettings(
            model=str(tiny_model_dir),
            adapter=str(tmp_path / "adapter"),
            rank=2,
            proj_dim=32,
            max_length=24,
            device="cpu",
        )
    )
    assert np.abs(featurizer.featurize(pool[:3])).sum() > 0
    # Rep-Sim reads the fine-tuned model's hidden states (DATE-LM's Rep-Sim), not the base model's
    from influcoder.evaluation.baselines.representations import RepSim

    base = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24, device="cpu")
    tuned = LabelSettings(**{**base.__dict__, "adapter": str(tmp_path / "adapter")})
    tuned_states = RepSim(tuned).embed(pool[:4])
    assert not np.allclose(tuned_states, RepSim(base).embed(pool[:4]), atol=1e-4)
    np.testing.assert_allclose(tuned_states, RepSim(tuned).embed(pool[:4]), atol=1e-6)  # deterministic


def test_fused_lora_layers_train_the_adapter_peft_trains(tiny_model_dir, tmp_path):
    """`finetune` runs its LoRA layers fused (one autograd node each): the losses and the trained adapter are
    peft's own, to float rounding, over steps where B moves away from zero."""
    pool = samples(12)
    settings = FinetuneSettings(**{**FAST, "epochs": 2})
    fused = finetune(pool, tmp_path / "fused", str(tiny_model_dir), LoraSettings(rank=2), settings, progress=False)
    plain = finetune(
        pool, tmp_path / "peft", str(tiny_model_dir), LoraSettings(rank=2), settings, progress=False, fused_layers=False
    )
    np.testing.assert_allclose(fused.losses, plain.losses, rtol=1e-5)
    a, b = adapter_weights(tmp_path / "fused"), adapter_weights(tmp_path / "peft")
    assert a.keys() == b.keys() and any("lora_B" in n and b[n].abs().sum() > 0 for n in b)
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_an_interrupted_finetune_resumes_to_the_same_adapter(tiny_model_dir, tmp_path, monkeypatch):
    import influcoder.labels.finetune as module

    pool = samples(16, seed=2)
    whole = train(tiny_model_dir, tmp_path / "whole", pool, epochs=2)
    calls = {"n": 0}
    real = module._batch_loss

    def dies_at_step_6(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(module, "_batch_loss", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_dir, tmp_path / "cut", pool, epochs=2)
    monkeypatch.setattr(module, "_batch_loss", real)
    assert read_manifest(tmp_path / "cut") is None  # nothing claims to be finished
    resumed = train(tiny_model_dir, tmp_path / "cut", pool, epochs=2)
    assert resumed.resumed_from == 4  # the last checkpoint (every 2 steps) before step 6
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-5)
    a, b = adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ArtifactMismatchError, match="other settings"):
        train(tiny_model_dir, tmp_path / "cut", pool, epochs=3)


def test_batches_group_similar_lengths_and_cover_every_sample_once_per_epoch():
    lengths = list(np.random.default_rng(0).integers(5, 200, size=203))
    settings = FinetuneSettings(batch_size=8, epochs=2, seed=3)
    steps = step_order(lengths, settings)
    assert steps == step_order(lengths, settings)
    per_epoch = len(steps) // 2
    for epoch in (steps[:per_epoch], steps[per_epoch:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(203))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in steps)
    assert padded < 0.8 * sum(len(b) * 200 for b in steps)  # far less padding than random batches would need


def test_adam_preconditioning_is_lesss_update_formula():
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    m, v = torch.randn(4, 5, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64)
    state = {"betas": (0.9, 0.999), "eps": 1e-8, "moments": {"w": {"exp_avg": m, "exp_avg_sq": v, "step": 5.0}}}
    out = AdamPreconditioner(state, ["w"])({"w": g})["w"]
    for row in range(3):
        expected = (0.9 * m + 0.1 * g[row]) / torch.sqrt(0.999 * v + 0.001 * g[row] ** 2 + 1e-8)
        torch.testing.assert_close(out[row], expected)
    with pytest.raises(ArtifactMismatchError, match="another adapter"):
        AdamPreconditioner(state, ["w", "other"])


def test_less_with_the_adapters_adam_state_matches_a_per_example_reference(tiny_model_dir, tmp_path):
    """Pool gradients become Adam updates (per-example loop, moments by name, flattened in parameter order,
    then the same Rademacher projection); query gradients stay plain."""
    from influcoder.data.formatting import SampleFormatter
    from influcoder.evaluation.baselines.less import Less
    from influcoder.labels.gradients import loop_gradients
    from influcoder.labels.influence import normalize_rows

    pool, queries = samples(12), samples(3, seed=5, prefix="q")
    train(tiny_model_dir, tmp_path / "adapter", pool, epochs=2)
    settings = LabelSettings(
        model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), rank=2, max_length=24, device="cpu"
    )
    less = Less(settings, dim=256, optimizer_state=tmp_path / "adapter" / "optimizer.pt")
    assert less.preconditioner == "adam"
    got_pool = less.features(pool, precondition=True)
    got_queries = less.features(queries)

    model, tokenizer = load_decoder(str(tiny_model_dir))
    model = attach_lora(model, settings.lora())
    names = list(lora_parameters(model))
    state = read_adam_state(tmp_path / "adapter" / "optimizer.pt")
    beta1, beta2 = state["betas"]

    def reference(batch, precondition):
        blocks = loop_gradients(model, SampleFormatter(tokenizer, 24).encode_all(batch), 0)
        flat = []
        for name in names:
            g = blocks[name].double()
            if precondition:
                m, v = (state["moments"][name][k].double() for k in ("exp_avg", "exp_avg_sq"))
                g = (beta1 * m + (1 - beta1) * g) / torch.sqrt(beta2 * v + (1 - beta2) * g**2 + state["eps"])
            flat.append(g.reshape(len(batch), -1))
        projected = less.projector.project_matrix(torch.cat(flat, dim=1).float())
        return normalize_rows(projected.numpy())

    np.testing.assert_allclose(got_pool, reference(pool, True), atol=2e-4)
    np.testing.assert_allclose(got_queries, reference(queries, False), atol=2e-4)
    assert np.abs(got_pool - less.features(pool)).max() > 1e-2  # the preconditioner changes the features
    # score() projects queries and pool in shared passes (5 rows: queries + 2 pool rows, then 5, 5); each row
    # still gets its own plain or Adam features
    less.rows_per_pass = 5
    np.testing.assert_allclose(less.score(pool, queries), got_pool @ got_queries.T, atol=2e-4)


@pytest.mark.parametrize("methods", [("gradsim", "less", "less-sgd"), ("gradsim", "less"), ("less-sgd",)])
def test_one_gradient_pass_scores_gradsim_and_both_less_variants_as_the_separate_scorers_do(
    tiny_model_dir, tmp_path, methods
):
    """Whichever kinds of rows a pass projects (plain gradients, Adam updates, both), in full and short passes."""
    from influcoder.evaluation.baselines.gradients import GradientSuite, GradSim
    from influcoder.evaluation.baselines.less import Less

    pool, queries = samples(10), samples(3, seed=5, prefix="q")
    train(tiny_model_dir, tmp_path / "adapter", pool, epochs=1)
    settings = LabelSettings(
        model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), rank=2, max_length=24, proj_dim=64, device="cpu"
    )
    state = tmp_path / "adapter" / "optimizer.pt"
    suite = GradientSuite(settings, list(methods), optimizer_state=state, dim=128, rows_per_pass=4)
    together = suite.score_all(pool, queries)
    separate = {
        "gradsim": lambda: GradSim(settings).score(pool, queries),
        "less": lambda: Less(settings, dim=128, optimizer_state=state).score(pool, queries),
        "less-sgd": lambda: Less(settings, dim=128).score(pool, queries),
    }
    assert sorted(together) == sorted(methods)
    for method in methods:
        np.testing.assert_allclose(together[method], separate[method](), atol=1e-5, err_msg=method)
    if "less" in methods and "less-sgd" in methods:
        assert np.abs(together["less"] - together["less-sgd"]).max() > 1e-3
    assert suite.bytes_per_sample("gradsim") == 4 * 64 and suite.bytes_per_sample("less") == 4 * 128


def test_snapshots_keep_the_adapter_and_learning_rate_of_each_part_of_training(tiny_model_dir, tmp_path):
    """`snapshots` keeps K adapters with their Adam state: the last is the finished adapter, each records the
    mean learning rate of its part, and a resumed run rewrites none differently."""
    from influcoder.labels.adam import read_adam_state
    from influcoder.labels.finetune import learning_rate, read_snapshots, snapshot_steps

    assert snapshot_steps(16, 4) == [4, 8, 12, 16] and snapshot_steps(5, 2) == [2, 5] and snapshot_steps(9, 0) == []
    pool = samples(16, seed=4)
    settings = FinetuneSettings(**{**FAST, "epochs": 4, "snapshots": 2, "warmup_ratio": 0.25})
    finetune(pool, tmp_path / "run", str(tiny_model_dir), LoraSettings(rank=2), settings, progress=False)
    found = read_snapshots(tmp_path / "run")
    assert [p.name for p, _ in found] == ["step-000008", "step-000016"]
    for (path, lr), (first, last) in zip(found, [(0, 8), (8, 16)]):
        assert lr == pytest.approx(np.mean([learning_rate(s, 16, settings) for s in range(first, last)]))
        assert read_adam_state(path / "optimizer.pt")["moments"]
    final, last = adapter_weights(tmp_path / "run"), adapter_weights(found[-1][0])
    first = adapter_weights(found[0][0])
    for name in final:
        torch.testing.assert_close(last[name], final[name])
    assert any(not torch.allclose(first[n], final[n]) for n in final)  # the first half's adapter, not the end's
    with pytest.raises(Exception, match="keeps 0 snapshots"):
        read_snapshots(train(tiny_model_dir, tmp_path / "plain", pool).out)


def test_less_over_checkpoints_is_the_lr_weighted_mean_of_each_checkpoints_less(tiny_model_dir, tmp_path):
    from influcoder.evaluation.baselines.less import Less, LessCheckpoints
    from influcoder.labels.finetune import read_snapshots

    pool, queries = samples(8, seed=6), samples(3, seed=7, prefix="q")
    settings = FinetuneSettings(**{**FAST, "epochs": 2, "snapshots": 2})
    finetune(pool, tmp_path / "warm", str(tiny_model_dir), LoraSettings(rank=2), settings, progress=False)
    labels = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24, device="cpu")
    scorer = LessCheckpoints(labels, tmp_path / "warm", dim=64, parts=tmp_path / "parts")
    combined = scorer.score(pool, queries)
    kept = sorted((tmp_path / "parts").glob("*.npy"))
    assert len(kept) == 2  # each checkpoint's matrix, kept as it finished
    # the method's cost is each checkpoint pass's own time, also when a resumed run only read the kept parts
    first, _ = scorer.cost_seconds()
    assert first == sum(scorer.checkpoint_seconds) and all(s > 0 for s in scorer.checkpoint_seconds)
    resumed = LessCheckpoints(labels, tmp_path / "warm", dim=64, parts=tmp_path / "parts")
    resumed.score(pool, queries)
    assert resumed.checkpoint_seconds == scorer.checkpoint_seconds and resumed.cost_seconds() == (first, None)
    record = kept[1].with_suffix(".json")
    untimed = json.loads(record.read_text())
    del untimed["seconds"]  # a part kept by a version that did not time it still resumes
    record.write_text(json.dumps(untimed))
    resumed.score(pool, queries)
    seconds, note = resumed.cost_seconds()
    assert seconds == 2 * scorer.checkpoint_seconds[0] and note.startswith("1 of 2 checkpoint passes timed")
    np.save(kept[0], np.load(kept[0]) + 1.0)  # a resumed run reads the kept part instead of recomputing it
    rates = [lr for _, lr in read_snapshots(tmp_path / "warm")]
    shift = rates[0] / sum(rates)

    def rescored(pool_part):
        return LessCheckpoints(labels, tmp_path / "warm", dim=64, parts=tmp_path / "parts").score(pool_part, queries)

    np.testing.assert_allclose(rescored(pool) - combined, shift, rtol=1e-6)
    np.testing.assert_allclose(rescored(pool[:5]), combined[:5], rtol=1e-5, atol=1e-6)  # not these samples' parts

    parts = []
    for path, lr in read_snapshots(tmp_path / "warm"):
        at = LabelSettings(**{**labels.__dict__, "adapter": str(path)})
        parts.append((lr, Less(at, dim=64, optimizer_state=path / "optimizer.pt").score(pool, queries)))
    assert parts[0][0] != parts[1][0] and not np.allclose(parts[0][1], parts[1][1])
    expected = sum(lr * m for lr, m in parts) / sum(lr for lr, _ in parts)
    np.testing.assert_allclose(combined, expected, rtol=1e-6, atol=1e-9)
    assert scorer.bytes_per_sample() == 2 * 4 * 64 and scorer.preconditioner == "adam"


def test_pass_layout_fills_each_projection_pass_across_lists():
    from influcoder.evaluation.baselines.less import pass_layout

    assert pass_layout([3, 12], 5) == [[(0, 0, 3), (1, 0, 2)], [(1, 2, 7)], [(1, 7, 12)]]
    assert pass_layout([0, 4], 5) == [[(1, 0, 4)]] and pass_layout([], 5) == []


def test_a_stopped_less_scoring_redoes_only_the_projection_passes_it_had_not_finished(tiny_model_dir, tmp_path):
    """Each finished pass is kept with its seconds; a rerun computes only the missing ones and gets the same
    scores; kept passes of other samples are dropped, never read."""
    from influcoder.evaluation.baselines.less import Less

    pool, queries = samples(12), samples(3, seed=5, prefix="q")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, max_length=24, device="cpu")
    passes = tmp_path / "passes"
    first = Less(settings, dim=64, rows_per_pass=5, passes=passes)
    expected = first.score(pool, queries)
    assert sorted(p.name for p in passes.glob("pass-*.npy")) == ["pass-00000.npy", "pass-00001.npy", "pass-00002.npy"]
    assert first.kept_seconds == 0.0
    for stale in passes.glob("pass-00002.*"):  # as if stopped during the last pass
        stale.unlink()

    resumed = Less(settings, dim=64, rows_per_pass=5, passes=passes)
    featurized = []
    real = resumed.featurizer.featurize_tokenized
    resumed.featurizer.featurize_tokenized = lambda tokenized, *a, **k: (
        featurized.append(len(tokenized)) or real(tokenized, *a, **k)
    )
    np.testing.assert_allclose(resumed.score(pool, queries), expected, atol=1e-6)
    assert sum(featurized) == 5 and resumed.kept_seconds > 0  # only pool rows 7..11 ran again

    other = Less(settings, dim=64, rows_per_pass=5, passes=passes)
    other.score(pool[:6], queries)  # other samples: the kept passes are not theirs
    assert other.kept_seconds == 0.0 and len(list(passes.glob("pass-*.npy"))) == 2


def test_a_stopped_shared_gradient_pass_redoes_only_its_unfinished_passes(tiny_model_dir, tmp_path):
    from influcoder.evaluation.baselines.gradients import GradientSuite

    pool, queries = samples(10), samples(3, seed=5, prefix="q")
    train(tiny_model_dir, tmp_path / "adapter", pool, epochs=1)
    settings = LabelSettings(
        model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"), rank=2, max_length=24, proj_dim=64, device="cpu"
    )
    state, passes = tmp_path / "adapter" / "optimizer.pt", tmp_path / "passes"

    def suite():
        return GradientSuite(
            settings, ["gradsim", "less"], optimizer_state=state, dim=128, rows_per_pass=4, passes=passes
        )

    expected = suite().score_all(pool, queries)
    for stale in passes.glob("pool/less/pass-00002.*"):  # the last pool pass: stopped before its LESS rows
        stale.unlink()
    resumed, featurized = suite(), []
    real = resumed.featurizer.featurize_tokenized
    resumed.featurizer.featurize_tokenized = lambda tokenized, *a, **k: (
        featurized.append(len(tokenized)) or real(tokenized, *a, **k)
    )
    got = resumed.score_all(pool, queries)
    for method in expected:
        np.testing.assert_allclose(got[method], expected[method], atol=1e-6, err_msg=method)
    assert featurized == [2] and resumed.kept_seconds > 0  # pool rows 8, 9 only; the queries' pass was kept
