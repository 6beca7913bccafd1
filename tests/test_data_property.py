"""Property: any JSON line either loads as a Sample or fails with a located DataError, never otherwise."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influcoder.core.errors import DataError
from influcoder.data.formats import load_file

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", 3]),
        "content": st.one_of(st.text(max_size=8), st.integers()),
    }
)
records = st.one_of(
    values,
    st.dictionaries(
        st.sampled_from(["prompt", "response", "id", "input", "ideal", "messages", "answer", "x"]), values, max_size=4
    ),
    st.fixed_dictionaries(
        {"prompt": st.one_of(st.text(max_size=10), scalars), "response": st.one_of(st.text(max_size=10), scalars)}
    ),
    st.fixed_dictionaries({"messages": st.lists(message, max_size=4)}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(records, min_size=1, max_size=4))
def test_random_records_load_or_fail_with_documented_error(tmp_path, lines):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    try:
        samples = load_file(path)
    except DataError as exc:
        assert exc.path == str(path)
        assert exc.line is None or 1 <= exc.line <= len(lines)
        assert str(exc).startswith(str(path))
        return
    assert len(samples) == len(lines)
    assert len({s.id for s in samples}) == len(samples)
    for s in samples:
        assert isinstance(s.prompt, str) and isinstance(s.response, str) and s.response.strip()


nonblank = st.text(max_size=12).filter(lambda t: t.strip() != "")
valid_records = st.one_of(
    st.tuples(st.just("fields"), nonblank, nonblank, st.sampled_from([None, "prompt/response", "instruction/output"])),
    st.tuples(st.just("chat"), nonblank, nonblank, st.sampled_from([None, "system"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(valid_records, min_size=1, max_size=5), with_ids=st.booleans())
def test_valid_records_load_with_their_exact_prompt_response_and_ids(tmp_path, rows, with_ids):
    """The success branch of the property above, always reached: whatever the texts, a record in one of the
    accepted layouts loads with exactly its prompt and response, in file order, with its own id (or a unique
    content id when it has none)."""
    lines, expected = [], []
    for i, (layout, prompt, response, variant) in enumerate(rows):
        if layout == "fields":
            p_key, r_key = (variant or "prompt/response").split("/")
            record: dict = {p_key: prompt, r_key: response}
            want = prompt
        else:
            turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            if variant == "system":
                turns.insert(0, {"role": "system", "content": "be brief"})
            record = {"messages": turns}
            want = prompt if variant is None else f"system: be brief\n\nuser: {prompt}"
        if with_ids:
            record["id"] = f"r{i}"
        lines.append(record)
        expected.append((want, response))
    path = tmp_path / "valid.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    samples = load_file(path)
    assert [(s.prompt, s.response) for s in samples] == expected
    if with_ids:
        assert [s.id for s in samples] == [f"r{i}" for i in range(len(rows))]
    assert len({s.id for s in samples}) == len(samples) and all(s.id for s in samples)


texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r"),  # CR: csv/text mode
    min_size=1,
    max_size=30,
).filter(lambda t: t.strip() != "")
sample_lists = st.lists(
    st.tuples(texts, texts, st.dictionaries(st.sampled_from(["task", "label", "n"]), st.text(max_size=5), max_size=2)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=sample_lists, suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]))
def test_whatever_data_out_writes_reads_back_identically(tmp_path, rows, suffix):
    """Round trip of every writable format, with any text: line separators (U+2028, U+0085...), a leading '#',
    quotes, commas, tabs, newlines."""
    from influcoder.data.formats import write_samples_as
    from influcoder.data.records import Sample

    samples = [Sample(f"id-{i}", prompt, response, meta) for i, (prompt, response, meta) in enumerate(rows)]
    path = tmp_path / f"out{suffix}"
    write_samples_as(samples, path)
    back = load_file(path)
    assert [(s.id, s.prompt, s.response) for s in back] == [(s.id, s.prompt, s.response) for s in samples]
    for written, read in zip(samples, back):
        for key, value in written.meta.items():
            assert str(read.meta.get(key)) == str(value) or suffix == ".csv" and value == ""
