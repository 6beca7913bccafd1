"""A distillation run interrupted mid-epoch resumes after its last saved state (an epoch's end, or a step
inside one) and reaches exactly the weights of an uninterrupted run; a finished run is not redone; other
settings or labels are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import influcoder.encoder.training_run as distill_module
from influcoder.core.errors import InflucoderError
from influcoder.encoder.distill import Distiller
from influcoder.encoder.resume import RESUME_STATE
from influcoder.encoder.settings import DistillSettings

from .test_encoder import topic_data


def settings(tiny_bert_dir, **kw) -> DistillSettings:
    base = dict(encoder=str(tiny_bert_dir), epochs=3, lr=1e-3, max_length=12, queries_per_batch=4)
    base.update(candidates_per_batch=10, pooling="attention", head_dim=8, seed=3)
    return DistillSettings(objective="influcoder", **{**base, **kw})


@pytest.fixture
def data():
    pool, pool_bow = topic_data(30, seed=11)
    queries, query_bow = topic_data(12, seed=12)
    return pool_bow @ query_bow.T / 10.0, pool, queries


def crash_on_call(monkeypatch, n: int) -> None:
    """Make the n-th loss evaluation raise, as a kill in the middle of an epoch would."""
    real, calls = distill_module.distillation_loss, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distillation_loss", loss)


def strip_seconds(logs) -> list[tuple]:
    return [(x.epoch, x.loss, x.pearson_loss, x.kl_loss, x.val_per_anchor, x.val_mean_aggregated) for x in logs]


def test_resumed_run_matches_an_uninterrupted_one(tiny_bert_dir, tmp_path, data, monkeypatch):
    scores, pool, queries = data
    s = settings(tiny_bert_dir)
    whole = Distiller(s)
    whole_logs = whole.fit(scores, pool, queries, out=tmp_path / "whole", progress=False)

    crash_on_call(monkeypatch, 3 + 2)  # 3 steps per epoch (27 training pool / 10 candidates): inside epoch 2
    with pytest.raises(KeyboardInterrupt):
        Distiller(s).fit(scores, pool, queries, out=tmp_path / "cut", progress=False)
    record = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert (tmp_path / "cut" / RESUME_STATE).exists() and not record["complete"] and len(record["epochs"]) == 1
    monkeypatch.undo()

    resumed = Distiller(s)
    logs = resumed.fit(scores, pool, queries, out=tmp_path / "cut", progress=False)
    assert strip_seconds(logs) == strip_seconds(whole_logs)
    for (name, a), (_, b) in zip(whole.encoder.state_dict().items(), resumed.encoder.state_dict().items()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "cut" / RESUME_STATE).exists()
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["complete"]

    crash_on_call(monkeypatch, 1)  # a finished run is returned, not trained again
    again = Distiller(s).fit(scores, pool, queries, out=tmp_path / "cut", progress=False)
    assert strip_seconds(again) == strip_seconds(whole_logs)


def test_a_run_saved_inside_an_epoch_resumes_from_that_step(tiny_bert_dir, tmp_path, data, monkeypatch):
    """checkpoint_seconds=0 saves after every step: killed at step 2 of epoch 2, the rerun trains only the
    steps after the last save and ends on the uninterrupted run's weights and logs (loss sums included)."""
    scores, pool, queries = data
    s = settings(tiny_bert_dir)
    whole = Distiller(s)
    whole_logs = whole.fit(scores, pool, queries, out=tmp_path / "whole", progress=False, checkpoint_seconds=0)

    crash_on_call(monkeypatch, 3 + 2)  # 3 steps per epoch: the kill comes in step 2 of epoch 2
    with pytest.raises(KeyboardInterrupt):
        Distiller(s).fit(scores, pool, queries, out=tmp_path / "cut", progress=False, checkpoint_seconds=0)
    saved = torch.load(tmp_path / "cut" / RESUME_STATE, weights_only=True)
    assert len(saved["logs"]) == 1 and saved["inside"]["step"] == 1  # epoch 1 done, one step of epoch 2
    monkeypatch.undo()

    calls = {"n": 0}
    real = distill_module.distillation_loss

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distillation_loss", counting)
    resumed = Distiller(s)
    logs = resumed.fit(scores, pool, queries, out=tmp_path / "cut", progress=False, checkpoint_seconds=0)
    assert calls["n"] == 9 - 4  # 3 epochs x 3 steps, of which 4 were done before the kill
    assert strip_seconds(logs) == strip_seconds(whole_logs)
    for (name, a), (_, b) in zip(whole.encoder.state_dict().items(), resumed.encoder.state_dict().items()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "cut" / RESUME_STATE).exists()


def test_activation_checkpointing_trains_the_same_encoder(tiny_bert_dir, tmp_path, data):
    """With activation checkpointing each backbone layer runs again in the backward pass (its attention is
    called once more per training step), with the dropout masks replayed: the same weights and logs to float
    rounding; the saved encoder does not carry the setting."""
    from influcoder.encoder.model import InfluenceEncoder

    scores, pool, queries = data
    s = settings(tiny_bert_dir, epochs=2)

    def counted(distiller: Distiller) -> dict:
        calls = {"n": 0}
        attention = distiller.encoder.backbone.encoder.layer[0].attention  # inside the checkpointed forward
        attention.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
        return calls

    plain = Distiller(s)  # each run seeds torch when built: build, then train, one after the other
    plain_calls = counted(plain)
    plain_logs = plain.fit(scores, pool, queries, progress=False)
    checkpointed = Distiller(s, activation_checkpointing=True)
    checkpointed_calls = counted(checkpointed)
    logs = checkpointed.fit(scores, pool, queries, out=tmp_path / "ckpt", progress=False)
    assert checkpointed_calls["n"] == plain_calls["n"] + 2 * 3  # one recomputation per step: 2 epochs x 3 steps
    for a, b in zip(strip_seconds(plain_logs), strip_seconds(logs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for (name, x), y in zip(plain.encoder.state_dict().items(), checkpointed.encoder.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    saved = InfluenceEncoder.from_pretrained(tmp_path / "ckpt" / "last")
    assert not saved.backbone.is_gradient_checkpointing  # a training-time choice, not saved with the encoder


def test_other_settings_or_labels_are_refused_unless_overwritten(tiny_bert_dir, tmp_path, data, monkeypatch):
    scores, pool, queries = data
    s = settings(tiny_bert_dir, epochs=2)
    crash_on_call(monkeypatch, 4)  # inside epoch 2: a partial run
    with pytest.raises(KeyboardInterrupt):
        Distiller(s).fit(scores, pool, queries, out=tmp_path / "run", progress=False)
    monkeypatch.undo()
    with pytest.raises(InflucoderError, match="partial distillation run.*lr: stored 0.001, requested 0.002"):
        Distiller(settings(tiny_bert_dir, epochs=2, lr=2e-3)).fit(scores, pool, queries, out=tmp_path / "run")
    with pytest.raises(InflucoderError, match="labels .* differ"):
        Distiller(s).fit(np.flipud(scores).copy(), pool, queries, out=tmp_path / "run", progress=False)
    other = settings(tiny_bert_dir, epochs=2, lr=2e-3)
    logs = Distiller(other).fit(scores, pool, queries, out=tmp_path / "run", progress=False, overwrite=True)
    assert len(logs) == 2
    with pytest.raises(InflucoderError, match="already holds a distillation run"):
        Distiller(s).fit(scores, pool, queries, out=tmp_path / "run", progress=False)


def test_a_group_validation_split_holds_out_whole_groups(tiny_bert_dir, tmp_path, data):
    """--val-group: the best epoch is chosen on groups (tasks) that training never sees."""
    from dataclasses import replace as with_meta

    scores, pool, queries = data
    pool = [with_meta(p, meta={"task": f"t{i % 6}"}) for i, p in enumerate(pool)]
    queries = [with_meta(q, meta={"task": f"q{i % 4}"}) for i, q in enumerate(queries)]
    Distiller(settings(tiny_bert_dir, epochs=1, val_group="task", val_fraction=0.2)).fit(
        scores, pool, queries, out=tmp_path / "run", progress=False
    )
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    task = {s.id: s.meta["task"] for s in [*pool, *queries]}
    for side in ("pool", "query"):
        held = {task[i] for i in record[f"val_{side}_ids"]}
        trained = {task[i] for i in record[f"train_{side}_ids"]}
        assert held and trained and not held & trained, side
    assert record["settings"]["val_group"] == "task"
    with pytest.raises(InflucoderError, match="no meta field 'task'"):
        Distiller(settings(tiny_bert_dir, epochs=1, val_group="task")).fit(scores, *data[1:], progress=False)


def test_a_run_written_before_a_setting_was_added_still_resumes(tiny_bert_dir, tmp_path, data):
    """A run key written before a setting existed (val_group) matches while the setting is at its default."""
    from dataclasses import replace as with_meta

    scores, pool, queries = data
    pool = [with_meta(p, meta={"task": f"t{i % 6}"}) for i, p in enumerate(pool)]
    queries = [with_meta(q, meta={"task": f"q{i % 4}"}) for i, q in enumerate(queries)]
    s = settings(tiny_bert_dir, epochs=1)
    Distiller(s).fit(scores, pool, queries, out=tmp_path / "run", progress=False)
    path = tmp_path / "run" / "training.json"
    record = json.loads(path.read_text())
    del record["settings"]["val_group"]  # as an older influcoder wrote it
    path.write_text(json.dumps(record))
    assert Distiller(s).fit(scores, pool, queries, out=tmp_path / "run", progress=False)  # done: not refused
    with pytest.raises(InflucoderError, match="val_group: stored None, requested 'task'"):
        Distiller(settings(tiny_bert_dir, epochs=1, val_group="task")).fit(
            scores, pool, queries, out=tmp_path / "run", progress=False
        )
