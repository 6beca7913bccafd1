"""A JSONL or Parquet file as a sequence of `Sample`s that holds no text: pools of millions in bounded memory.

`load_file` keeps every sample's text in memory (~1-3 KB of Python objects each, gigabytes at a million).
`JsonlSamples` reads the file once, line by line, to check every record (the same located errors as
`load_file`) and to keep what indexing needs — each record's byte offset and its final id — and reads a
sample's text from disk only when it is asked for. The index encodes one shard at a time
(`[samples[j] for j in rows]`), so at most one shard of texts is alive; `fingerprint` and `write_samples`
iterate one sample at a time. Samples are exactly those `load_file` returns (ids assigned the same way).
`ParquetSamples` does the same for a Parquet file a row group at a time (one group cached), and
`HfDatasetSamples` for a saved Hugging Face dataset directory (memory-mapped Arrow, read a row at a time).
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from influcoder.core.errors import DataError
from influcoder.data.records import IdAssigner, Sample, record_to_sample


def _item(sequence: Sequence[Sample], i, read):
    """Sequence indexing (negative indices, slices as lists) over `read(position)`."""
    if isinstance(i, slice):
        return [read(j) for j in range(*i.indices(len(sequence)))]
    position = i + len(sequence) if i < 0 else i
    if not 0 <= position < len(sequence):
        raise IndexError(i)
    return read(position)


class LazySamples(Sequence[Sample], ABC):
    """Samples of a file whose texts stay on disk: `ids` (final, as `load_file` assigns them) are in memory,
    a sample is read when asked for. Subclasses scan the file in order and read one record back."""

    def __init__(
        self,
        path: str | Path,
        prompt_field: str | None = None,
        response_field: str | None = None,
        id_field: str = "id",
        allow_empty_response: bool = False,
    ):
        self.path = Path(path)
        self._fields = (prompt_field, response_field, id_field, allow_empty_response)
        self.ids: list[str] = []
        self._rows = None  # a subset's rows of the file (None: every record)
        if not self.path.exists():
            raise DataError(str(self.path), None, "no such file or directory")
        ids = IdAssigner()
        for offset, number, record in self._scan():
            self.ids.append(ids.take(self._sample(record, number), str(self.path), number))
            self._remember(offset, number)
        if not self.ids:
            raise DataError(str(self.path), None, "no records")

    @abstractmethod
    def _scan(self) -> Iterator[tuple[int, int, object]]:
        """(byte offset or row, line or row number, parsed record) of every record, in file order, in bounded
        memory."""

    def _remember(self, offset: int, number: int) -> None:
        """Keep what `_record` needs to read a record back (construction's scan calls it for each)."""

    @abstractmethod
    def _record(self, row: int) -> tuple[int, object]:
        """(line or row number, parsed record) of the file's `row`-th record."""

    def _sample(self, record, number: int) -> Sample:
        prompt_field, response_field, id_field, allow_empty = self._fields
        return record_to_sample(record, str(self.path), number, prompt_field, response_field, id_field, allow_empty)

    def _with_id(self, sample: Sample, i: int) -> Sample:
        """`sample` under the id `load_file` gives it (assigned ids and content hashes live in `ids`)."""
        return sample if sample.id == self.ids[i] else Sample(self.ids[i], sample.prompt, sample.response, sample.meta)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return _item(self, i, self._read)

    def _read(self, i: int) -> Sample:
        row = i if self._rows is None else int(self._rows[i])
        number, record = self._record(row)
        return self._with_id(self._sample(record, number), i)

    def __iter__(self) -> Iterator[Sample]:
        if self._rows is not None:
            for i in range(len(self)):
                yield self[i]
            return
        for i, (_, number, record) in enumerate(self._scan()):  # the whole file in order: one sequential read
            yield self._with_id(self._sample(record, number), i)

    def subset(self, rows: Sequence[int]) -> LazySamples:
        """The samples at `rows` (in that order), still read from disk on access."""
        view = copy.copy(self)
        base = np.arange(len(self)) if self._rows is None else np.asarray(self._rows)
        view._rows = base[np.asarray(rows, dtype=np.int64)]
        view.ids = [self.ids[int(r)] for r in rows]
        return view


class JsonlSamples(LazySamples):
    """The samples of a JSONL file: byte offsets in memory, a line read (one seek) per sample."""

    def __init__(self, path: str | Path, *args, **kwargs):
        self._offsets = array("q")
        self._lines = array("q")
        super().__init__(path, *args, **kwargs)

    def _scan(self) -> Iterator[tuple[int, int, object]]:
        with open(self.path, "rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                yield from ((start, number, record) for record in self._parse(raw, number))

    def _remember(self, offset: int, number: int) -> None:
        self._offsets.append(offset)
        self._lines.append(number)

    def _parse(self, raw: bytes, number: int) -> list:
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise DataError(str(self.path), number, "not valid UTF-8: save the file as UTF-8") from None
        if not text.strip():
            return []
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise DataError(str(self.path), number, f"malformed JSON ({exc.msg} at column {exc.colno})") from None

    def _record(self, row: int) -> tuple[int, object]:
        with open(self.path, "rb") as handle:
            handle.seek(self._offsets[row])
            raw = handle.readline()
        number = int(self._lines[row])
        return number, self._parse(raw, number)[0]


class ParquetSamples(LazySamples):
    """The samples of a Parquet file, read a row group at a time (the group being read is cached): memory
    holds one row group, so write pools of millions with row groups of at most ~100K rows (pyarrow's
    ``row_group_size``). Row numbers (1-based, as `load_file` reports them) locate bad records."""

    def __init__(self, path: str | Path, *args, **kwargs):
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except FileNotFoundError:
            raise DataError(str(path), None, "no such file or directory") from None
        except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
            raise DataError(str(path), None, f"not a readable Parquet file: {exc}") from None
        groups = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._starts = np.cumsum([0, *groups])
        self._cached: tuple[int, list] = (-1, [])
        super().__init__(path, *args, **kwargs)

    def _group(self, g: int) -> list:
        if self._cached[0] != g:
            self._cached = (g, self._file.read_row_group(g).to_pylist())
        return self._cached[1]

    def _scan(self) -> Iterator[tuple[int, int, object]]:
        for g in range(len(self._starts) - 1):
            for k, record in enumerate(self._group(g)):
                row = int(self._starts[g]) + k
                yield row, row + 1, record

    def _record(self, row: int) -> tuple[int, object]:
        g = int(np.searchsorted(self._starts, row, side="right")) - 1
        return row + 1, self._group(g)[row - int(self._starts[g])]


class HfDatasetSamples(LazySamples):
    """The samples of a saved Hugging Face dataset directory (`Dataset.save_to_disk`): the dataset is
    memory-mapped Arrow, so a row is read from disk when asked for. Row numbers (1-based) locate bad records."""

    def __init__(self, path: str | Path, *args, **kwargs):
        from influcoder.data.formats import open_hf_dataset

        self._dataset = open_hf_dataset(Path(path))
        super().__init__(path, *args, **kwargs)

    def _scan(self) -> Iterator[tuple[int, int, object]]:
        for row, record in enumerate(self._dataset):
            yield row, row + 1, record

    def _record(self, row: int) -> tuple[int, object]:
        return row + 1, self._dataset[row]


def stream_subsample(samples: LazySamples, limit: int | None, seed: int) -> LazySamples:
    """`records.subsample` for a streamed file: the same seeded rows, still read on access."""
    if limit is None or limit >= len(samples):
        return samples
    return samples.subset(np.sort(np.random.default_rng(seed).choice(len(samples), size=limit, replace=False)))


class ConcatSamples(Sequence[Sample]):
    """Several sample sequences as one (an index's segments), without copying them."""

    def __init__(self, parts: Sequence[Sequence[Sample]]):
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])

    @property
    def ids(self) -> list[str]:
        return [i for part in self.parts for i in sample_ids(part)]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i):
        return _item(self, i, self._read)

    def _read(self, i: int) -> Sample:
        part = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.parts[part][i - int(self._starts[part])]

    def __iter__(self) -> Iterator[Sample]:
        for part in self.parts:
            yield from part


class SelectedSamples(Sequence[Sample]):
    """The rows `rows` (ascending) of a sample sequence, without reading or copying them: iteration is one
    sequential pass over the source that yields the selected rows (a streamed pool is read once, in order)."""

    def __init__(self, source: Sequence[Sample], rows: Sequence[int]):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        if len(self.rows) > 1 and not bool(np.all(np.diff(self.rows) > 0)):
            raise ValueError("SelectedSamples needs strictly ascending rows")

    @property
    def ids(self) -> list[str]:
        every = sample_ids(self.source)
        return [every[int(r)] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return _item(self, i, lambda j: self.source[int(self.rows[j])])

    def __iter__(self) -> Iterator[Sample]:
        if not len(self.rows):
            return
        wanted = np.zeros(int(self.rows[-1]) + 1, dtype=bool)
        wanted[self.rows] = True
        for i, sample in enumerate(self.source):
            if i >= len(wanted):
                return
            if wanted[i]:
                yield sample


def sample_ids(samples: Sequence[Sample]) -> list[str]:
    """The ids of `samples` without reading a streamed file's texts again."""
    lazy = (LazySamples, ConcatSamples, SelectedSamples)
    return list(samples.ids) if isinstance(samples, lazy) else [s.id for s in samples]
