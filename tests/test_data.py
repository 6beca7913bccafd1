"""Loaders on small files written by the tests: every format, chat records, ids, and located errors."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from influcoder.core.errors import DataError
from influcoder.data.formats import load_file, write_samples
from influcoder.data.loading import load_samples
from influcoder.data.records import Sample, content_id, fingerprint, subsample


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


RECORDS = [
    {"prompt": "what is two and two?", "response": "four", "label": 1},
    {"prompt": "name a bird", "response": "a blue bird", "label": 0},
]


def test_jsonl_loads_fields_meta_and_content_ids(tmp_path):
    samples = load_file(write_jsonl(tmp_path / "d.jsonl", RECORDS))
    assert [(s.prompt, s.response) for s in samples] == [(r["prompt"], r["response"]) for r in RECORDS]
    assert samples[0].meta == {"label": 1}
    assert samples[0].id == content_id("what is two and two?", "four")
    assert load_file(tmp_path / "d.jsonl")[1].id == samples[1].id  # stable across loads


def test_csv_parquet_and_hf_dir_match_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "response", "label"])
        writer.writeheader()
        writer.writerows(RECORDS)
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "hf"))
    expected = [(s.id, s.prompt, s.response) for s in load_file(write_jsonl(tmp_path / "d.jsonl", RECORDS))]
    for path in ("d.csv", "d.parquet", "hf"):
        got = [(s.id, s.prompt, s.response) for s in load_file(tmp_path / path)]
        assert got == expected, path


def test_chat_records_last_assistant_turn_is_response(tmp_path):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "sum of one and one?"},
        {"role": "assistant", "content": "two"},
    ]
    evals = {"input": [{"role": "user", "content": "capital of france?"}], "ideal": ["Paris", "paris"]}
    a, b = load_file(write_jsonl(tmp_path / "c.jsonl", [{"messages": messages, "id": 7}, evals]))
    assert a.id == "7" and a.response == "two" and a.meta["messages"] == messages[:-1]
    assert b.response == "Paris" and b.prompt == "capital of france?"


def test_custom_fields_and_round_trip(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"q": "why?", "a": "because", "id": "x1"}])
    (s,) = load_file(path, prompt_field="q", response_field="a")
    assert (s.id, s.prompt, s.response) == ("x1", "why?", "because")
    write_samples([s], tmp_path / "out.jsonl")
    assert load_file(tmp_path / "out.jsonl") == [s]


@pytest.mark.parametrize(
    "content, line, needle",
    [
        ('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": \n', 2, "malformed JSON"),
        ('{"prompt": "a", "response": "b"}\n\n{"prompt": "c"}\n', 3, "missing response field"),
        ('{"response": "b"}\n', 1, "missing prompt field"),
        ('{"prompt": 3, "response": "b"}\n', 1, "must be a string, got int"),
        ('{"prompt": "a", "response": "  "}\n', 1, "empty response"),
        ("[1, 2]\n", 1, "expected a JSON object"),
        ('{"messages": [{"role": "user", "content": "x"}]}\n', 1, "not an assistant turn"),
        ('{"messages": [{"role": "user"}]}\n', 1, "'role' and 'content'"),
        ('{"id": 1, "prompt": "a", "response": "b"}\n{"id": 1, "prompt": "c", "response": "d"}\n', 2, "duplicate id"),
    ],
)
def test_bad_records_name_file_line_and_expectation(tmp_path, content, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_file(path)
    assert info.value.line == line and info.value.path == str(path)
    assert needle in str(info.value) and str(info.value).startswith(f"{path}:{line}: ")


def test_bad_encoding_and_csv_row_are_located(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "b"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:2: not valid UTF-8"):
        load_file(path)
    path = tmp_path / "bad.csv"
    path.write_text("prompt,response\nok,fine\nonly-prompt,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:2: empty response"):
        load_file(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_samples(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match=r"unknown file type '\.txt': expected .* \.csv, \.tsv, \.parquet"):
        load_file(tmp_path / "x.txt")


def test_repeated_text_gets_distinct_ids_and_subsample_is_seeded(tmp_path):
    samples = load_file(write_jsonl(tmp_path / "d.jsonl", [RECORDS[0]] * 3))
    assert len({s.id for s in samples}) == 3 and samples[1].id.endswith("-2")
    items = list(range(100))
    assert subsample(items, 10, seed=1) == subsample(items, 10, seed=1) != subsample(items, 10, seed=2)
    assert subsample(items, 10, seed=1) == sorted(subsample(items, 10, seed=1))


def test_fingerprint_sees_order_and_text():
    a, b = Sample("1", "p", "r"), Sample("2", "p", "s")
    assert fingerprint([a, b]) == fingerprint([a, b]) != fingerprint([b, a])
    assert fingerprint([a]) != fingerprint([Sample("1", "p", "r2")])


def test_jsonl_round_trips_every_unicode_line_separator(tmp_path):
    """json.dumps(ensure_ascii=False) leaves U+2028 and friends raw; the reader split lines on them, so
    influcoder could not read back its own files (data --out, pool.jsonl, index segments)."""
    from influcoder.data.formats import load_file, write_samples
    from influcoder.data.records import Sample

    separators = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"]
    samples = [Sample(f"s{i}", f"before{sep}after", f"answer{sep}end") for i, sep in enumerate(separators)]
    path = tmp_path / "out.jsonl"
    write_samples(samples, path)
    loaded = load_file(path)
    assert [(s.id, s.prompt, s.response) for s in loaded] == [(s.id, s.prompt, s.response) for s in samples]
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"prompt": "p", "response": "r"}\r\n{"prompt": "q", "response": "s"}\r\n')
    assert [s.prompt for s in load_file(crlf)] == ["p", "q"]


def test_csv_keeps_hash_lines_that_are_data_and_reads_tsv_as_tabs(tmp_path):
    """'#' lines were stripped before parsing: a quoted multi-line field lost its markdown heading and a row
    starting with '#' vanished; a .tsv file was read as comma-separated."""
    from influcoder.data.formats import load_file

    path = tmp_path / "data.csv"
    path.write_text('# dataset_version=1\nprompt,response\n"why?","# Heading\nbody"\n#tag,kept\n', encoding="utf-8")
    assert [(s.prompt, s.response) for s in load_file(path)] == [("why?", "# Heading\nbody"), ("#tag", "kept")]
    tsv = tmp_path / "data.tsv"
    tsv.write_text("prompt\tresponse\na, b\tc, d\n", encoding="utf-8")
    assert [(s.prompt, s.response) for s in load_file(tsv)] == [("a, b", "c, d")]


@pytest.mark.assets
def test_refusals_keep_a_markdown_heading_inside_a_response():
    from influcoder.data.loading import load_samples

    samples = load_samples("refusals")
    assert len(samples) == 105
    assert "### Character's Perspective" in next(s for s in samples if s.id == "refusals/69").response


def test_a_list_valued_prompt_or_response_is_refused_not_cut_to_its_first_element(tmp_path):
    from influcoder.core.errors import DataError
    from influcoder.data.formats import load_file

    path = tmp_path / "lists.jsonl"
    path.write_text('{"prompt": "p", "response": "r"}\n{"prompt": ["a", "b"], "response": "r"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"lists.jsonl:2: field 'prompt' must be a string, got list"):
        load_file(path)
    path.write_text('{"prompt": "p", "response": ["x", "y"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match="field 'response' must be a string"):
        load_file(path)
    path.write_text('{"prompt": "p", "ideal": ["x", "y"]}\n', encoding="utf-8")  # evals: acceptable answers
    assert load_file(path)[0].response == "x"


def test_a_misspelt_source_and_a_csv_row_cut_by_an_unclosed_quote_say_so(tmp_path):
    from influcoder.data.loading import load_samples

    with pytest.raises(DataError, match="nor a built-in source .*evals"):
        load_samples("evalz")
    path = tmp_path / "bad.csv"
    path.write_text('prompt,response\na,b\n"unclosed,c\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:2: row has 1 field\(s\), the header 2 \(an unclosed quote\?\)"):
        load_file(path)


def test_an_evals_draw_beyond_the_per_task_cap_is_filled_from_every_record(tmp_path, monkeypatch):
    """`evals` samples at most 10 pairs per task; a draw larger than that allows (a 100K-sample pool) takes a
    seeded uniform sample of every pair instead of returning the capped ~4,400 silently, and a draw larger
    than the source says so."""
    import warnings

    from influcoder.data import assets, sources

    for t in range(3):
        lines = [
            json.dumps({"input": [{"role": "user", "content": f"q{t}-{i}"}], "ideal": f"a{t}-{i}"}) for i in range(15)
        ]
        (tmp_path / f"task{t}").mkdir()
        (tmp_path / f"task{t}" / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(assets, "fetch", lambda name, *a, **k: tmp_path)
    capped = sources._load_evals(None, 20, seed=1)
    assert len(capped) == 20 and max(Counter(s.meta["task"] for s in capped).values()) <= 10
    beyond = sources._load_evals(None, 40, seed=1)
    assert len(beyond) == 40 == len({s.id for s in beyond}) and len({s.meta["task"] for s in beyond}) == 3
    assert [s.id for s in sources._load_evals(None, 40, seed=1)] == [s.id for s in beyond]  # seeded
    assert [s.id for s in sources._load_evals(None, 40, seed=2)] != [s.id for s in beyond]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        everything = sources._load_evals(None, 100, seed=1)
    assert len(everything) == 45 and "holds 45 pairs; asked for 100" in str(caught[0].message)
    diverse = sources.evals_per_task(seed=1)  # the capped draw of every task, for tasks that need diversity
    assert len(diverse) == 30 and set(Counter(s.meta["task"] for s in diverse).values()) == {10}
    assert [s.id for s in diverse] == [s.id for s in sources._load_evals(None, 30, seed=1)]  # same pairs, order


def test_a_boolean_id_is_refused_not_turned_into_the_string_true(tmp_path):
    from influcoder.core.errors import DataError
    from influcoder.data.formats import load_file

    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": 7, "prompt": "p", "response": "r"}\n{"id": true, "prompt": "q", "response": "s"}\n')
    with pytest.raises(DataError, match=r"ids\.jsonl:2: field 'id' must be a string or integer, got true"):
        load_file(path)
