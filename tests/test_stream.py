"""Streamed JSONL pools: the same samples as `load_file`, texts read on access, one shard alive at a time."""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from influcoder.core.errors import DataError
from influcoder.data.formats import load_file
from influcoder.data.loading import load_samples
from influcoder.data.records import Sample, fingerprint, subsample
from influcoder.data.stream import ConcatSamples, JsonlSamples, sample_ids

from .test_attribution import encoder_dir  # noqa: F401 - the tiny encoder fixture
from .test_labels import samples


def write_lines(path, lines: list[str], bom: bool = False) -> None:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\n".join(lines).encode("utf-8") + b"\n")


def test_a_streamed_file_holds_the_same_samples_as_load_file(tmp_path):
    path = tmp_path / "pool.jsonl"
    records = [
        json.dumps({"id": "a", "prompt": "p1", "response": "r1", "task": "t"}),
        "",  # blank lines are skipped
        json.dumps({"prompt": "no id", "response": "gets a content hash"}),
        json.dumps({"prompt": "no id", "response": "gets a content hash"}),  # repeated text: -2
        json.dumps({"instruction": "line\u2028separator inside", "output": "x\r"}, ensure_ascii=False) + "\r",
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
    ]
    write_lines(path, records, bom=True)
    eager, lazy = load_file(path), JsonlSamples(path)
    assert list(lazy) == eager and [lazy[i] for i in range(len(lazy))] == eager
    assert lazy.ids == [s.id for s in eager] and lazy[-1] == eager[-1] and lazy[1:3] == eager[1:3]
    assert fingerprint(lazy) == fingerprint(eager) and sample_ids(lazy) == lazy.ids
    with pytest.raises(IndexError):
        lazy[len(eager)]
    chained = ConcatSamples([lazy, eager])
    assert list(chained) == eager + eager and chained[len(eager) + 1] == eager[1] and len(chained.ids) == 10


def test_a_streamed_subsample_draws_the_rows_the_loaded_one_does(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_lines(path, [json.dumps({"id": f"s{i}", "prompt": f"p{i}", "response": f"r{i}"}) for i in range(30)])
    streamed = load_samples(path, limit=7, seed=3, stream=True)
    assert isinstance(streamed, JsonlSamples)
    assert list(streamed) == subsample(load_file(path), 7, 3) == load_samples(path, limit=7, seed=3)
    assert streamed.subset([2, 0])[0] == streamed[2]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "jsonl:2: malformed JSON"),
        (
            json.dumps({"id": "s0", "prompt": "p", "response": "r"}),
            "jsonl:2: duplicate id .s0. .first seen at record 1",
        ),
        (json.dumps({"id": "x", "prompt": "p"}), "jsonl:2"),
    ],
)
def test_bad_records_are_located_as_load_file_locates_them(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [json.dumps({"id": "s0", "prompt": "p", "response": "r"}), line])
    with pytest.raises(DataError, match=expected):
        JsonlSamples(path)
    with pytest.raises(DataError, match="jsonl:2"):
        load_file(path)


def write_parquet(path, records: list[dict], row_group_size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)


def test_a_streamed_parquet_file_holds_the_same_samples_a_row_group_at_a_time(tmp_path):
    from influcoder.data.stream import ParquetSamples

    path = tmp_path / "pool.parquet"
    records = [{"id": f"s{i}", "prompt": f"prompt {i}", "response": f"r{i}", "task": f"t{i % 3}"} for i in range(23)]
    records[4]["id"] = None  # no id: the content hash load_file gives
    write_parquet(path, records, row_group_size=5)
    eager, lazy = load_file(path), load_samples(path, stream=True)
    assert isinstance(lazy, ParquetSamples) and len(lazy._starts) == 6  # 5 row groups
    assert list(lazy) == eager and [lazy[i] for i in range(len(lazy))] == eager and lazy.ids == [s.id for s in eager]
    assert lazy[-1] == eager[-1] and lazy[7].meta == {"task": "t1"} and fingerprint(lazy) == fingerprint(eager)
    assert lazy._cached[0] == 4 and len(lazy._cached[1]) == 3  # only the last group read is held
    streamed = load_samples(path, limit=6, seed=2, stream=True)
    assert list(streamed) == subsample(eager, 6, 2) and streamed.subset([1])[0] == streamed[1]


def test_a_bad_parquet_record_is_located_by_its_row(tmp_path):
    path = tmp_path / "pool.parquet"
    records = [{"id": f"s{i}", "prompt": f"p{i}", "response": f"r{i}"} for i in range(8)]
    records[6]["response"] = ""
    write_parquet(path, records, row_group_size=3)
    with pytest.raises(DataError, match=r"pool.parquet:7") as streamed:
        load_samples(path, stream=True)
    with pytest.raises(DataError) as loaded:
        load_file(path)
    assert str(streamed.value) == str(loaded.value)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_samples(tmp_path / "broken.parquet", stream=True)


class CountingSamples(JsonlSamples):
    """Tracks how many samples handed out are still alive."""

    alive: weakref.WeakSet

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        tracked = TrackedSample(sample.id, sample.prompt, sample.response, sample.meta)
        self.alive.add(tracked)
        return tracked


class TrackedSample(Sample):
    """A Sample that weak references can follow (Sample already supports them when it has no slots)."""


def test_indexing_a_streamed_pool_keeps_at_most_one_shard_of_texts_alive(encoder_dir, tmp_path, monkeypatch):  # noqa: F811
    from influcoder.attribution.index import EmbeddingIndex
    from influcoder.encoder.model import InfluenceEncoder

    path = tmp_path / "pool.jsonl"
    eager = samples(40)
    path.write_text("".join(json.dumps(s.to_record()) + "\n" for s in eager), encoding="utf-8")
    lazy = CountingSamples(path)
    lazy.alive = weakref.WeakSet()
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    peaks = []
    encode = encoder.encode

    def watched(texts, *args, **kwargs):
        gc.collect()
        peaks.append(len(lazy.alive))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", watched)
    streamed = EmbeddingIndex.build(encoder, lazy, tmp_path / "streamed", shard_size=8, progress=False)
    assert peaks and max(peaks) <= 8  # one shard's texts, never the pool
    loaded = EmbeddingIndex.build(encoder, eager, tmp_path / "loaded", shard_size=8, progress=False)
    np.testing.assert_array_equal(streamed.embeddings(), loaded.embeddings())
    assert streamed.ids() == loaded.ids() and list(streamed.samples()) == eager


def test_labelling_a_streamed_pool_keeps_at_most_one_shard_alive(tiny_model_dir, tmp_path, monkeypatch):
    """`label` tokenizes a shard at a time (only the longest sample is kept, for the memory budget), so neither
    the texts of a JSONL pool streamed from disk nor their token ids are held whole; the labels equal those of
    the loaded pool."""
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.labelling import label

    from .test_labels import settings

    path = tmp_path / "pool.jsonl"
    eager = samples(20)
    path.write_text("".join(json.dumps(s.to_record()) + "\n" for s in eager), encoding="utf-8")
    lazy = CountingSamples(path)
    lazy.alive = weakref.WeakSet()
    queries = samples(3, seed=5, prefix="q")
    featurizer = GradientFeaturizer(settings(model=str(tiny_model_dir), shard_size=4))
    tokens_alive, peaks = weakref.WeakSet(), []
    tokenize, featurize = featurizer.tokenize, featurizer.featurize_tokenized

    def tracked_tokenize(items):
        out = tokenize(items)
        tokens_alive.update(out)
        return out

    def watched(tokenized, *args, **kwargs):
        gc.collect()
        peaks.append((len(lazy.alive), len(tokens_alive)))
        return featurize(tokenized, *args, **kwargs)

    monkeypatch.setattr(featurizer, "tokenize", tracked_tokenize)
    monkeypatch.setattr(featurizer, "featurize_tokenized", watched)
    streamed = label(lazy, queries, tmp_path / "streamed", featurizer=featurizer, progress=False)
    assert len(peaks) == 5 + 1  # 5 pool shards of 4, then the query shard
    assert max(texts for texts, _ in peaks[:5]) <= 4 and max(tokens for _, tokens in peaks[:5]) <= 4 + 1
    monkeypatch.undo()
    loaded = label(
        eager, queries, tmp_path / "loaded", settings(model=str(tiny_model_dir), shard_size=4), progress=False
    )
    np.testing.assert_array_equal(streamed.scores, loaded.scores)
    assert load_file(tmp_path / "streamed" / "pool.jsonl") == eager


def test_filter_results_are_views_read_in_one_pass(encoder_dir, tmp_path):  # noqa: F811
    """`filter` returns the kept and dropped samples as views over the indexed pool: the same samples in pool
    order, their ids without reading texts, and iteration reading the segment file once, in order."""
    from influcoder import Influcoder
    from influcoder.data.stream import SelectedSamples

    pool, queries = samples(30), samples(3, seed=3, prefix="q")
    ic = Influcoder.from_pretrained(encoder_dir)
    ic.index(pool, tmp_path / "idx", shard_size=8, progress=False)
    result = ic.filter(queries, drop_top=5)
    assert isinstance(result.kept, SelectedSamples) and isinstance(result.dropped, SelectedSamples)
    dropped = set(result.dropped.ids)
    assert list(result.kept) == [s for s in pool if s.id not in dropped]
    assert (
        list(result.dropped) == [s for s in pool if s.id in dropped] and result.dropped[-1] == list(result.dropped)[-1]
    )
    view = SelectedSamples(pool, [2, 5, 7])
    assert (
        view.ids == ["p2", "p5", "p7"] and view[1] == pool[5] and view[-1] == pool[7] and list(view[0:2]) == pool[2:6:3]
    )
    with pytest.raises(ValueError, match="ascending"):
        SelectedSamples(pool, [3, 1])
    assert list(SelectedSamples(pool, [])) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_outputs_are_written_in_batches_with_every_column(tmp_path, monkeypatch, suffix):
    """CSV and Parquet outputs stream (a schema pass, then rows in batches): a meta field first met in a later
    batch still gets its column, a column mixing text and numbers becomes JSON text, int with float is float,
    and no more than one batch of rows is built at a time."""
    import influcoder.data.formats as formats

    monkeypatch.setattr(formats, "ROWS_PER_BATCH", 4)
    built = []
    flat = formats._flat_record
    monkeypatch.setattr(formats, "_flat_record", lambda s: built.append(s.id) or flat(s))
    pool = [Sample(f"s{i}", f"p{i}", f"r{i}", {"n": i if i % 2 else i + 0.5}) for i in range(10)]
    pool[9] = Sample("s9", "p9", "r9", {"n": 1, "late": "x", "mixed": 3})
    pool[3] = Sample("s3", "p3", "r3", {"n": 2.0, "mixed": "three"})
    path = tmp_path / f"out{suffix}"
    formats.write_samples_as(pool, path)
    back = load_file(path)
    assert [s.id for s in back] == [s.id for s in pool] and back[0].prompt == "p0"
    assert back[9].meta["late"] == "x" and back[0].meta.get("late") in (None, "")
    mixed = '"three"' if suffix == ".parquet" else "three"  # CSV cells are text anyway
    assert str(back[3].meta["mixed"]) == mixed and str(back[9].meta["mixed"]) == "3"
    assert float(back[0].meta["n"]) == 0.5 and float(back[1].meta["n"]) == 1.0
    assert built == [s.id for s in pool] * 2  # a schema pass, then a writing pass; nothing kept between
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 4 + 4 + 2 rows


def test_a_saved_hf_dataset_streams_the_samples_load_file_reads(tmp_path):
    """`--pool DIR` of a saved Hugging Face dataset is read a row at a time from its memory-mapped Arrow files
    (not loaded whole): the same samples, ids and located errors as `load_file`."""
    from datasets import Dataset

    from influcoder.data.stream import HfDatasetSamples

    records = [{"prompt": f"p{i}", "response": f"r{i}", "task": f"t{i % 3}"} for i in range(7)]
    records[4] = {"prompt": "p1", "response": "r1", "task": "t1"}  # repeated text: a suffixed content id
    Dataset.from_list(records).save_to_disk(str(tmp_path / "hf"))
    lazy, eager = load_samples(tmp_path / "hf", stream=True), load_file(tmp_path / "hf")
    assert isinstance(lazy, HfDatasetSamples)
    assert list(lazy) == eager and [lazy[i] for i in range(len(lazy))] == eager and lazy.ids == [s.id for s in eager]
    assert [s.id for s in load_samples(tmp_path / "hf", limit=3, seed=1, stream=True)] == [
        s.id for s in subsample(eager, 3, 1)
    ]
    Dataset.from_list([*records[:2], {"prompt": "p", "response": ""}]).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError) as streamed:
        load_samples(tmp_path / "bad", stream=True)
    with pytest.raises(DataError) as loaded:
        load_file(tmp_path / "bad")
    assert str(streamed.value) == str(loaded.value)
