"""A damaged JSON artifact ends in one line naming the file and what was expected (exit 2), never a traceback.

Each case damages one file of a real (tiny) run the way a truncated copy or a hand edit does, then runs the
command that reads it.
"""

from __future__ import annotations

import json
import shutil

import pytest

from influcoder.cli.main import main
from influcoder.core.jsonfile import DamagedFileError, field, read_json
from influcoder.encoder.model import InfluenceEncoder
from influcoder.labels.labelling import label

from .test_labels import samples, settings


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    pool, queries = samples(10), samples(4, seed=5, prefix="q")
    label(pool, queries, root / "labels", settings(model=str(tiny_model_dir)), progress=False)
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=16, max_length=24).save_pretrained(root / "encoder")
    (root / "pool.jsonl").write_text("".join(json.dumps(s.to_record()) + "\n" for s in pool))
    (root / "q.jsonl").write_text("".join(json.dumps(s.to_record()) + "\n" for s in queries))
    assert main(["index", "--encoder", str(root / "encoder"), "--pool", str(root / "pool.jsonl"),
                 "--out", str(root / "index"), "--quiet"]) == 0  # fmt: skip
    return root


DAMAGES = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "not an object": lambda text: "[1, 2, 3]\n",
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize(
    "target, command",
    [
        ("labels/labels.json", ["evaluate", "--encoder", "{root}/encoder", "--labels", "{work}/labels"]),
        ("labels/influence/ids.json", ["evaluate", "--encoder", "{root}/encoder", "--labels", "{work}/labels"]),
        ("index/manifest.json", ["attribute", "--index", "{work}/index", "--queries", "{root}/q.jsonl"]),
        ("encoder/config.json", ["index", "--encoder", "{work}/encoder", "--pool", "{root}/pool.jsonl",
                                 "--out", "{work}/new-index"]),
    ],
)  # fmt: skip
def test_a_damaged_json_file_is_named_with_exit_2(runs, tmp_path, capsys, target, command, damage):
    work = tmp_path / "work"
    top = target.split("/")[0]
    shutil.copytree(runs / top, work / top)
    path = work / target
    path.write_text(DAMAGES[damage](path.read_text(encoding="utf-8")), encoding="utf-8")
    argv = [a.format(root=runs, work=work) for a in command] + ["--quiet"]
    capsys.readouterr()
    assert main(argv) == 2
    said = capsys.readouterr().err.strip()
    assert str(path) in said and ("JSON" in said or "empty" in said) and "Traceback" not in said
    assert len(said.splitlines()) == 1


def test_read_json_and_field_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "training.json"
    path.write_text('{"epochs": 3}', encoding="utf-8")
    record = read_json(path)
    assert field(record, "epochs", path, int) == 3
    with pytest.raises(DamagedFileError, match=r"training\.json: the field 'best' is missing"):
        field(record, "best", path)
    with pytest.raises(DamagedFileError, match=r"the field 'epochs' holds integer, expected string"):
        field(record, "epochs", path, str)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(DamagedFileError, match="not UTF-8"):
        read_json(path)


def test_a_nan_in_the_label_matrix_is_named_by_its_cell(runs, tmp_path, capsys):
    """Same size, so the size check passes: the NaN must still be refused, naming the cell, before `distill`
    trains on it or `evaluate` scores it."""
    import numpy as np

    from influcoder.labels.influence import InfluenceMatrix

    shutil.copytree(runs / "labels", tmp_path / "labels")
    path = tmp_path / "labels" / "influence" / "scores.npy"
    scores = np.load(path)
    scores[3, 1] = np.nan
    np.save(path, scores)
    pool_id, query_id = InfluenceMatrix(scores, *_ids(tmp_path / "labels")).pool_ids[3], _ids(tmp_path / "labels")[1][1]
    for argv in (
        ["distill", "--labels", str(tmp_path / "labels"), "--out", str(tmp_path / "enc"), "--encoder",
         str(runs / "encoder"), "--epochs", "1"],
        ["evaluate", "--encoder", str(runs / "encoder"), "--labels", str(tmp_path / "labels")],
    ):  # fmt: skip
        assert main([*argv, "--quiet"]) == 2
        said = capsys.readouterr().err
        assert f"1 non-finite value(s), the first at pool {pool_id!r} x query {query_id!r}" in said


def _ids(labels):
    ids = read_json(labels / "influence" / "ids.json")
    return ids["pool_ids"], ids["query_ids"]


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda m: {**m, "dim": 999}, "of dim 999, but index.faiss holds 10 of dim"),
        (lambda m: {**m, "segments": [{**m["segments"][0], "n": 2}]}, "lists n = 2 but its store holds 10 rows"),
        (lambda m: {**m, "segments": []}, "the index holds no segment"),
    ],
)
def test_an_edited_index_manifest_is_refused_not_answered_from(runs, tmp_path, capsys, edit, said):
    shutil.copytree(runs / "index", tmp_path / "index")
    path = tmp_path / "index" / "manifest.json"
    path.write_text(json.dumps(edit(read_json(path))), encoding="utf-8")
    assert main(["attribute", "--index", str(tmp_path / "index"), "--queries", str(runs / "q.jsonl"), "-k", "5",
                 "--quiet"]) == 2  # fmt: skip
    assert said in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "index")]) == 1
    assert said in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_damaged_faiss_file_is_named_by_attribute_and_by_verify(runs, tmp_path, capsys, damage):
    shutil.copytree(runs / "index", tmp_path / "index")
    faiss_file = tmp_path / "index" / "index.faiss"
    data = faiss_file.read_bytes()
    faiss_file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    assert main(["attribute", "--index", str(tmp_path / "index"), "--queries", str(runs / "q.jsonl"), "--quiet"]) == 2
    assert f"{faiss_file}: " in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "index")]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'index'}: 1 problem(s)" in out and f"{faiss_file}: " in out


def test_verify_names_a_damaged_store_manifest_instead_of_crashing(runs, tmp_path, capsys):
    shutil.copytree(runs / "labels", tmp_path / "labels")
    manifest = tmp_path / "labels" / "pool" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40], encoding="utf-8")
    assert main(["verify", str(tmp_path / "labels")]) == 1
    assert f"{manifest}: not valid JSON" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_an_index_rerun_rebuilds_a_damaged_faiss_file_from_its_embeddings(runs, tmp_path, capsys, caplog, damage):
    """`index.faiss` is derived from the segments' embeddings: a rerun of the same build remakes a cut one (with
    a warning) instead of crashing in FAISS, byte for byte the original. A same-size change passes a rerun's
    size check (its sha256 is read under --verify only) and `verify` names it."""
    shutil.copytree(runs / "index", tmp_path / "index")
    faiss_file = tmp_path / "index" / "index.faiss"
    data = bytearray(faiss_file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # same size: the rerun sees no damage by size and keeps the file; only `verify` names it
        data[len(data) // 2] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    argv = ["index", "--encoder", str(runs / "encoder"), "--pool", str(runs / "pool.jsonl"), "--out",
            str(tmp_path / "index"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    if damage == "flip":
        assert main(["verify", str(tmp_path / "index")]) == 1
        assert f"{faiss_file}: content differs from what was written" in capsys.readouterr().out
        return
    assert "index.faiss is damaged; rebuilding it" in caplog.text
    assert faiss_file.read_bytes() == (runs / "index" / "index.faiss").read_bytes()
    assert main(["verify", str(tmp_path / "index")]) == 0
