"""The index's manifest.json as a typed record (`IndexManifest`): it reads and writes what the index always
wrote, key by key, keeps keys it does not know, reads files without a version as version 1, refuses a newer
version naming the file; and `EmbeddingIndex.build`'s keyword arguments are `IndexBuildOptions`' fields."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from influcoder.attribution.index import EmbeddingIndex
from influcoder.attribution.index_build import IndexBuildOptions
from influcoder.attribution.index_manifest import (
    FORMAT,
    MANIFEST,
    VERSION,
    CoverageRecord,
    IndexManifest,
    IndexSegment,
    ScoringRecord,
)
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.encoder.coverage import CoverageReference
from influcoder.encoder.model import InfluenceEncoder

from .test_labels import samples


@pytest.fixture(scope="module")
def encoder_dir(tiny_bert_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("encoder")
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), head_dim=16, max_length=24).save_pretrained(directory)
    return directory


def a_manifest(**changes) -> IndexManifest:
    manifest = IndexManifest(
        encoder_fingerprint="ab" * 32,
        dim=17,
        dtype="float16",
        index_factory="Flat",
        encoder_backend="int8",
        encoder_config={"backbone": "tiny", "text_view": "{prompt} => {response}"},
        label_config={"rank": 4},
        prior_columns=1,
        segments=[IndexSegment("segment-00000", 12), IndexSegment("segment-00001", 5)],
        encoder_path="/somewhere/enc",
        scoring=ScoringRecord(objective="subspace", query_side="exact", subspace_k=6),
        coverage=CoverageRecord(threshold=0.25, k=8, rows=17, share_covered=0.5),
    )
    return dataclasses.replace(manifest, **changes)


def write(directory: Path, record: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).write_text(json.dumps(record), encoding="utf-8")
    return directory / MANIFEST


def test_a_manifest_round_trips(tmp_path):
    manifest = a_manifest()
    manifest.save(tmp_path)
    again = IndexManifest.load(tmp_path)
    assert again == manifest
    assert (again.text_view, again.rows, again.embedding_dim) == ("{prompt} => {response}", 17, 16)
    record = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert record["format"] == FORMAT and record["version"] == VERSION
    assert record["scoring"] == {"objective": "subspace", "subspace_k": 6, "query_side": "exact"}
    assert list(record["scoring"]) == ["objective", "subspace_k", "query_side"]  # as the index always wrote it
    assert record["coverage"] == {"threshold": 0.25, "k": 8, "rows": 17, "share_covered": 0.5}
    assert record["segments"] == [{"name": "segment-00000", "n": 12}, {"name": "segment-00001", "n": 5}]
    # readers of the raw JSON (outside the index module) see the same values
    assert again["dtype"] == "float16" and again.get("encoder_path") == "/somewhere/enc"
    assert again.get("nothing", "default") == "default" and again["segments"] == record["segments"]


def test_unknown_keys_are_kept_on_a_round_trip(tmp_path):
    record = {**a_manifest().to_record(), "from_a_newer_release": {"nested": [1, 2]}, "note": "kept"}
    write(tmp_path, record)
    manifest = IndexManifest.load(tmp_path)
    assert manifest.extra == {"from_a_newer_release": {"nested": [1, 2]}, "note": "kept"}
    manifest.segments.append(IndexSegment("segment-00002", 3))
    manifest.save(tmp_path)
    again = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert again == {**record, "segments": [*record["segments"], {"name": "segment-00002", "n": 3}]}


def test_a_manifest_without_a_version_reads_as_version_1(tmp_path):
    """The first manifests: no version, no backend, no length-prior column, no scoring record."""
    legacy = {
        "format": FORMAT,
        "encoder_fingerprint": "cd" * 32,
        "encoder_config": {"backbone": "minilm-l6"},
        "label_config": {},
        "dim": 384,
        "dtype": "float16",
        "index_factory": "Flat",
        "segments": [{"name": "segment-00000", "n": 10}],
        "encoder_path": None,
    }
    write(tmp_path, legacy)
    manifest = IndexManifest.load(tmp_path)
    assert manifest.version == 1 and manifest.encoder_backend == "torch" and manifest.prior_columns == 0
    assert manifest.scoring is None and manifest.coverage is None and manifest.extra == {}
    assert manifest.get("encoder_backend", "torch") == "torch"


def test_a_newer_version_is_refused_naming_the_file(tmp_path):
    file = write(tmp_path, {**a_manifest().to_record(), "version": VERSION + 1})
    with pytest.raises(InflucoderError, match=rf"{file}: index manifest version {VERSION + 1} is newer"):
        IndexManifest.load(tmp_path)
    with pytest.raises(InflucoderError, match=f"{file}: index manifest version"):
        EmbeddingIndex(tmp_path)


@pytest.mark.parametrize(
    "edit, error, said",
    [
        (lambda m: {**m, "format": "influcoder.feature-store"}, InflucoderError, "not an influcoder index manifest"),
        (lambda m: {**m, "dim": "17"}, DamagedFileError, "the field 'dim' holds string, expected integer"),
        (lambda m: {k: v for k, v in m.items() if k != "dtype"}, DamagedFileError, "the field 'dtype' is missing"),
        (lambda m: {**m, "segments": {"name": "segment-00000"}}, DamagedFileError, "the index holds no segment"),
        (lambda m: {**m, "segments": [{"n": 3}]}, DamagedFileError, "a segment entry is not {name, n}"),
        (lambda m: {**m, "segments": [{"name": "s", "n": "3"}]}, DamagedFileError, "a segment entry is not"),
        (lambda m: {**m, "scoring": {"objective": 1}}, DamagedFileError, "the field 'scoring' is not"),
        (lambda m: {**m, "coverage": {"k": 2}}, DamagedFileError, "the field 'coverage' is not"),
        (lambda m: {**m, "version": "2"}, DamagedFileError, "the field 'version' holds '2', expected a whole number"),
    ],
)
def test_a_mistyped_manifest_is_refused_naming_the_file(tmp_path, edit, error, said):
    file = write(tmp_path, edit(a_manifest().to_record()))
    with pytest.raises(error) as caught:
        IndexManifest.load(tmp_path)
    assert str(caught.value).startswith(f"{file}: ") and said in str(caught.value)


def test_a_missing_manifest_is_named(tmp_path):
    with pytest.raises(InflucoderError, match=f"{tmp_path} is not an influcoder index"):
        IndexManifest.load(tmp_path)
    assert not IndexManifest.names_an_index(tmp_path)
    write(tmp_path, {"format": FORMAT, "dim": "damaged elsewhere"})
    assert IndexManifest.names_an_index(tmp_path)  # --overwrite may replace it


def test_a_built_index_writes_the_manifest_it_always_wrote(encoder_dir, tmp_path):
    """Key by key (and in the same order) what `EmbeddingIndex.build` wrote before the manifest was typed."""
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    EmbeddingIndex.build(encoder, samples(12), tmp_path / "idx", shard_size=8, progress=False, encoder_path=encoder_dir)
    index = EmbeddingIndex.build(
        encoder, samples(5, prefix="n"), tmp_path / "idx", append=True, progress=False, encoder_path=encoder_dir
    )
    before = {
        "format": "influcoder.index",
        "version": 1,
        "encoder_fingerprint": encoder.fingerprint(),
        "encoder_backend": encoder.backend,
        "encoder_config": {k: v for k, v in encoder.config.__dict__.items() if k != "label_config"},
        "label_config": encoder.config.label_config,
        "dim": encoder.score_dim,
        "prior_columns": encoder.score_dim - encoder.dim,
        "dtype": "float16",
        "index_factory": "Flat",
        "segments": [{"name": "segment-00000", "n": 12}, {"name": "segment-00001", "n": 5}],
        "encoder_path": str(Path(encoder_dir).resolve()),
        "scoring": {"objective": "cosine", "query_side": "encoded"},
    }
    written = json.loads((tmp_path / "idx" / MANIFEST).read_text(encoding="utf-8"))
    assert list(written) == list(before)
    for key, value in before.items():
        assert written[key] == value, key
    assert index.manifest.to_record() == written and index.manifest.text_view == encoder.config.text_view

    reference = CoverageReference(index.embeddings()[:4], k=2, threshold=0.1, quantile=0.05)
    record = index.write_coverage(reference)
    written = json.loads((tmp_path / "idx" / MANIFEST).read_text(encoding="utf-8"))
    assert list(written) == [*before, "coverage"] and written["coverage"] == record
    assert list(record) == ["threshold", "k", "rows", "share_covered"] and record["rows"] == 17
    assert EmbeddingIndex(tmp_path / "idx").manifest == index.manifest


def test_a_build_without_an_encoder_directory_records_no_scoring(encoder_dir, tmp_path):
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    index = EmbeddingIndex.build(encoder, samples(6), tmp_path / "idx", dtype="float32", progress=False)
    written = json.loads((tmp_path / "idx" / MANIFEST).read_text(encoding="utf-8"))
    assert written["scoring"] is None and written["encoder_path"] is None and written["dtype"] == "float32"
    assert index.manifest.scoring is None


def test_build_takes_the_build_options_as_keyword_arguments():
    """`build`'s keywords and `IndexBuildOptions`' fields are the same names with the same defaults, but for
    `progress` (the bars, `influcoder.core.progress`), which no option record carries."""
    parameters = list(inspect.signature(EmbeddingIndex.build).parameters.values())[3:]  # after encoder, samples, path
    keywords = {p.name: p.default for p in parameters}
    assert keywords.pop("progress") is None
    assert keywords == {f.name: f.default for f in dataclasses.fields(IndexBuildOptions)}
