"""File formats: readers of JSONL / CSV / Parquet / HF dataset directories into `Sample`s, and
atomic writers back out. Every reader reports bad input as `DataError(file, line, what was expected)`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from influcoder.core.atomic import atomic_output
from influcoder.core.errors import DataError
from influcoder.data.records import Sample, assign_ids, record_to_sample

FILE_FORMATS = ("jsonl", "csv", "parquet", "hf")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(str(path), line, f"not valid UTF-8 (byte {exc.start}): save the file as UTF-8") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; malformed JSON raises with its line.

    Lines end at "\\n" only, as JSON Lines says: `str.splitlines` also splits at U+2028, U+2029, U+0085 and
    other separators that `json.dumps(ensure_ascii=False)` leaves raw inside strings, so files influcoder wrote
    itself failed to load on the next stage.
    """
    for number, text in enumerate(_read_text(path).split("\n"), start=1):
        text = text.removesuffix("\r")
        if not text.strip():
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), number, f"malformed JSON ({exc.msg} at column {exc.colno})") from None


def strip_leading_comments(text: str) -> str:
    """`text` without its leading block of '#' lines (e.g. ``# dataset_version=1.2`` before a CSV header).

    Only the block before the header: a '#' later in a file is data, the start of a row or a line inside a
    quoted multi-line field (a markdown heading in a response, as in PyRIT's refusal.csv). Dropping every
    '#' line lost both.
    """
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return "".join(lines[start:])


def iter_csv(path: Path) -> Iterator[tuple[int, dict]]:
    """(row number, row dict) with rows counted from 1 after the header; a leading '#' comment block is
    skipped. A ``.tsv`` file is tab-separated."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(strip_leading_comments(_read_text(path)), newline=""), delimiter=delimiter)
    for number, row in enumerate(reader, start=1):
        if None in row:
            raise DataError(str(path), number, f"row has more fields than the header ({len(reader.fieldnames)})")
        if None in row.values():
            short = sum(v is not None for v in row.values())
            raise DataError(
                str(path), number, f"row has {short} field(s), the header {len(reader.fieldnames)} (an unclosed quote?)"
            )
        yield number, {k: v for k, v in row.items()}


def iter_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise DataError(str(path), None, f"not a readable Parquet file: {exc}") from None
    yield from enumerate(table.to_pylist(), start=1)


def iter_hf_dataset(path: Path) -> Iterator[tuple[int, dict]]:
    yield from enumerate(open_hf_dataset(path), start=1)


def open_hf_dataset(path: Path):
    """A saved HF dataset directory as a `datasets.Dataset` (memory-mapped Arrow: rows are read on access);
    of a DatasetDict, the 'train' split or the only one."""
    try:
        from datasets import load_from_disk
    except ImportError:
        raise DataError(str(path), None, "reading a saved HF dataset needs `pip install datasets`") from None
    try:
        dataset = load_from_disk(str(path))
    except Exception as exc:
        raise DataError(str(path), None, f"not a saved HF dataset directory: {exc}") from None
    if hasattr(dataset, "keys"):  # a DatasetDict: take 'train' when present, else the only split
        splits = list(dataset.keys())
        if "train" not in splits and len(splits) != 1:
            raise DataError(str(path), None, f"DatasetDict with splits {splits}: pass one split's directory")
        dataset = dataset["train" if "train" in splits else splits[0]]
    return dataset


_READERS = {"jsonl": iter_jsonl, "csv": iter_csv, "parquet": iter_parquet, "hf": iter_hf_dataset}


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    expected = ".jsonl (.json, .ndjson), .csv, .tsv, .parquet (.pq) or a HF dataset dir"
    raise DataError(str(path), None, f"unknown file type {suffix!r}: expected {expected}")


def load_file(
    path: str | Path,
    prompt_field: str | None = None,
    response_field: str | None = None,
    id_field: str = "id",
    allow_empty_response: bool = False,
    file_format: str | None = None,
) -> list[Sample]:
    """Load every record of a JSONL/CSV/Parquet file or saved HF dataset directory as `Sample`s."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "no such file or directory")
    fmt = file_format or detect_format(path)
    samples, where = [], []
    for number, record in _READERS[fmt](path):
        samples.append(
            record_to_sample(record, str(path), number, prompt_field, response_field, id_field, allow_empty_response)
        )
        where.append((str(path), number))
    if not samples:
        raise DataError(str(path), None, "no records")
    return assign_ids(samples, where)


def write_samples(samples: Iterable[Sample], path: str | Path) -> None:
    """Write samples as JSONL (`Sample.to_record`), atomically: a temporary file renamed into place."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for s in samples:
            out.write(json.dumps(s.to_record(), ensure_ascii=False) + "\n")


def _flat_record(s: Sample) -> dict[str, Any]:
    """A flat row for tabular formats: id, prompt, response, then meta (non-scalars as JSON text)."""
    row: dict[str, Any] = {"id": s.id, "prompt": s.prompt, "response": s.response}
    for key, value in s.meta.items():
        if key not in row:
            ok = value is None or isinstance(value, (str, int, float, bool))
            row[key] = value if ok else json.dumps(value, ensure_ascii=False)
    return row


def _column_kinds(samples: Iterable[Sample]) -> dict[str, set[type]]:
    """Every column of the flat rows, in first-seen order, with the scalar types it holds: the schema pass of
    the tabular writers, which need every column before the first row is written (a meta field the first
    sample lacks must still get its column)."""
    kinds: dict[str, set[type]] = {"id": set(), "prompt": set(), "response": set()}
    for s in samples:
        for key, value in _flat_record(s).items():
            seen = kinds.setdefault(key, set())
            if value is not None:
                seen.add(type(value))
    return kinds


def _parquet_type(kinds: set[type]):
    """One Arrow type per column: a column holding several scalar types (3 here, "x" there) is written as JSON
    text throughout rather than refused; int with float is float."""
    import pyarrow as pa

    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    if not kinds:
        return pa.null()
    return pa.string()


def _parquet_value(value: Any, kinds: set[type]) -> Any:
    mixed = len(kinds) > 1 and not kinds <= {int, float}
    if mixed and value is not None:
        return json.dumps(value, ensure_ascii=False)
    return value


ROWS_PER_BATCH = 8192


def write_samples_as(samples: Sequence[Sample], path: str | Path) -> None:
    """Write samples in the format of `path`'s suffix (.jsonl, .csv, .parquet), atomically.

    Streams: tabular formats take two passes over `samples` (the columns, then the rows in batches), so a
    filtered view of a million-sample pool is written without holding its rows (read twice, never copied).
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "jsonl":
        write_samples(samples, path)
        return
    if fmt not in ("csv", "parquet"):
        raise DataError(str(path), None, "can only write .jsonl, .csv or .parquet")
    kinds = _column_kinds(samples)
    columns = list(kinds)
    with atomic_output(path) as tmp:
        if fmt == "csv":
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(_flat_record(s) for s in samples)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, _parquet_type(kinds[c])) for c in columns])
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict[str, Any]] = []
            for s in samples:
                batch.append(_flat_record(s))
                if len(batch) == ROWS_PER_BATCH:
                    writer.write_table(_parquet_batch(batch, columns, kinds, schema))
                    batch = []
            if batch or not len(samples):
                writer.write_table(_parquet_batch(batch, columns, kinds, schema))


def _parquet_batch(rows: list[dict[str, Any]], columns: list[str], kinds: dict[str, set[type]], schema):
    import pyarrow as pa

    values = {c: [_parquet_value(r.get(c), kinds[c]) for r in rows] for c in columns}
    return pa.table(values, schema=schema)
