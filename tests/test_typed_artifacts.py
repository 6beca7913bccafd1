"""Typed artifact records (`LabelsRecord`, `TrainingRecord`, `EvalSplit`) and the directories that hold them
(`LabelsDir`, `DistillRun`): round trips, files written before records were versioned, newer versions refused
by name, unknown keys kept, and real tiny runs read through them as the raw files read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.encoder.run_record import DistillRun, EvalSplit, TrainingRecord
from influcoder.labels.labelling import label, load_labels
from influcoder.labels.labels_dir import LabelsDir, LabelsRecord
from influcoder.labels.settings import LabelSettings

from .test_labels import samples

LABELS = LabelsRecord(
    settings={"model": "m", "rank": 2}, ray=False, features={"proj_dim": 32}, n_pool=4, n_queries=2,
    ids_in_both=0, all_pairs=False, seconds_total=1.5, seconds_pool_this_run=1.0, bytes_per_sample=128.0,
    batch_tokens_used=64,
)  # fmt: skip
TRAINING = TrainingRecord(
    settings={"seed": 3, "val_group": "task", "objective": "influcoder"}, complete=True, data="abc",
    epochs=[{"epoch": 1, "loss": 0.5, "pearson_loss": 0.4, "kl_loss": 0.1, "val_per_anchor": 0.3,
             "val_mean_aggregated": 0.2, "seconds": 1.0, "coordinate_error": None}],
    best_val_per_anchor=0.3, train_pool_ids=["p0", "p1"], val_pool_ids=["p2"], train_query_ids=["q0"],
    val_query_ids=["q1"],
)  # fmt: skip
SPLIT = EvalSplit(labels="/x/labels", protocol="task", group_field="task", pool_ids=["p3"], query_ids=["q2"])
RECORDS = [LABELS, TRAINING, SPLIT]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_saved_record_loads_equal_and_names_its_format_and_version(record, tmp_path):
    path = tmp_path / "record.json"
    record.save(path)
    raw = json.loads(path.read_text())
    assert raw["format"] == type(record).FORMAT and raw["version"] == 1
    assert type(record).load(path) == record


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_legacy_file_without_format_and_version_reads_as_version_1(record, tmp_path):
    path = tmp_path / "record.json"
    legacy = {k: v for k, v in record.to_dict().items() if k not in ("format", "version")}
    path.write_text(json.dumps(legacy))
    assert type(record).load(path) == record


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_newer_version_is_refused_naming_the_file_and_the_version(record, tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({**record.to_dict(), "version": 2}))
    with pytest.raises(InflucoderError, match=rf"{path}: {type(record).FORMAT} version 2 is newer"):
        type(record).load(path)
    path.write_text(json.dumps({**record.to_dict(), "format": "something.else"}))
    with pytest.raises(DamagedFileError, match=rf"{path}: holds a record of format 'something.else'"):
        type(record).load(path)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_unknown_keys_survive_a_load_and_save(record, tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({**record.to_dict(), "added_later": {"a": [1, 2]}, "note": "mine"}))
    loaded = type(record).load(path)
    assert loaded.extra == {"added_later": {"a": [1, 2]}, "note": "mine"}
    loaded.save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["added_later"] == {"a": [1, 2]} and again["note"] == "mine"
    assert type(record).load(tmp_path / "again.json") == loaded


def test_a_mistyped_or_missing_field_is_refused_naming_the_file_and_field(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({**LABELS.to_dict(), "settings": [1]}))
    with pytest.raises(DamagedFileError, match=rf"{path}: the field 'settings' holds array, expected object"):
        LabelsRecord.load(path)
    path.write_text(json.dumps({"n_queries": 2}))
    with pytest.raises(DamagedFileError, match=rf"{path}: the field 'n_pool' is missing"):
        LabelsRecord.load(path)
    path.write_text(json.dumps({"pool_ids": ["a"]}))
    assert EvalSplit.load(path).query_ids == []  # a hand-written split may list one side only
    with pytest.raises(DamagedFileError, match="the field 'query_ids' is missing"):
        EvalSplit.load(path, require=("pool_ids", "query_ids"))  # what `verify` asks of a run's split


def test_a_legacy_training_record_without_objective_means_the_cosine_objective(tmp_path):
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"settings": {"lr": 1e-4}, "epochs": [], "complete": True}))
    record = TrainingRecord.load(path)
    assert record.trained_objective == "influcoder" and not record.is_subspace and not DistillRun(tmp_path).is_subspace
    subspace = TrainingRecord(objective="subspace", settings={"objective": "subspace"})
    subspace.save(path)
    assert DistillRun(tmp_path).is_subspace and DistillRun(tmp_path).record().trained_objective == "subspace"
    assert TRAINING.ids("val", "pool") == ["p2"] and TRAINING.ids("train", "query") == ["q0"]
    assert TRAINING.val_group == "task" and TRAINING.seed == 3 and TRAINING.trained_ids() == {"p0", "p1", "q0"}
    assert [x.val_per_anchor for x in TRAINING.epoch_logs()] == [0.3]


def test_distill_run_names_its_files_and_finds_the_run_of_its_encoder(tmp_path):
    run = DistillRun(tmp_path / "out")
    assert (run.training_path.name, run.eval_split_path.name, run.resume_path.name) == (
        "training.json", "eval_split.json", "resume.pt"
    )  # fmt: skip
    assert run.best == tmp_path / "out" / "best" and run.last == tmp_path / "out" / "last"
    with pytest.raises(InflucoderError, match="is not a distill run"):
        run.record()
    (tmp_path / "out" / "best").mkdir(parents=True)
    assert DistillRun.around(run.best) is None
    TRAINING.save(run.training_path)
    assert DistillRun.around(run.best) == run == DistillRun.around(run.path)
    assert DistillRun.around(run.best, DistillRun.EVAL_SPLIT) is None


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tiny_bert_dir, tmp_path_factory):
    """Tiny labels and a 1-epoch cosine distillation of them with a held-out split."""
    from influcoder.encoder.distill import distill_labels
    from influcoder.encoder.settings import DistillSettings

    root = tmp_path_factory.mktemp("typed")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    pool, queries = samples(16), samples(8, seed=7, prefix="q")
    label(pool, queries, root / "labels", settings, progress=False)
    distill = DistillSettings(encoder=str(tiny_bert_dir), epochs=1, max_length=16, head_dim=8, objective="influcoder")
    distill_labels(root / "labels", root / "enc", distill, eval_pool=4, eval_queries=2, progress=False)
    return root, pool, queries


def test_a_real_labels_directory_loads_through_labels_dir(tiny_run):
    root, pool, queries = tiny_run
    matrix, pool2, queries2, record = LabelsDir.load(root / "labels")
    raw = json.loads((root / "labels" / "labels.json").read_text())
    assert raw["format"] == "influcoder.labels" and raw["version"] == 1
    assert record.n_pool == raw["n_pool"] == len(pool) and record.n_queries == len(queries)
    assert record.features == raw["features"] and record.settings == raw["settings"] and record.merged_from is None
    assert [s.id for s in pool2] == matrix.pool_ids == [s.id for s in pool] and queries2 == queries
    old = load_labels(root / "labels")  # the thin wrapper: the record as a dict
    assert old[3]["n_pool"] == len(pool) and np.array_equal(np.asarray(old[0].scores), np.asarray(matrix.scores))
    assert LabelsDir(root / "labels").gradient_stores() == [root / "labels" / "pool", root / "labels" / "queries"]


def test_a_distill_run_gives_the_ids_of_its_raw_files(tiny_run):
    root, _, _ = tiny_run
    run = DistillRun(root / "enc")
    raw_training = json.loads(run.training_path.read_text())
    raw_split = json.loads(run.eval_split_path.read_text())
    record, split = run.record(), run.eval_split()
    for part in ("train", "val"):
        for side in ("pool", "query"):
            assert record.ids(part, side) == raw_training[f"{part}_{side}_ids"]
    assert split.pool_ids == raw_split["pool_ids"] and split.query_ids == raw_split["query_ids"]
    assert split.protocol == raw_split["protocol"] == "random" and split.labels == str((root / "labels").resolve())
    assert record.complete and not run.is_subspace and record.trained_objective == "influcoder"
    assert raw_training["format"] == "influcoder.training" and raw_split["format"] == "influcoder.eval-split"
    assert not set(split.pool_ids) & record.trained_ids() and not set(split.query_ids) & record.trained_ids()
    assert not run.resume_path.exists() and (run.best / "coverage.npz").exists()
