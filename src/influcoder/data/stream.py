"""A JSONL file as a sequence of `Sample`s that holds no text: pools of millions in bounded memory.

`load_file` keeps every sample's text in memory (~1-3 KB of Python objects each, gigabytes at a million).
`JsonlSamples` reads the file once, line by line, to check every record (the same located errors as
`load_file`) and to keep what indexing needs — each record's byte offset and its final id — and reads a
sample's text from disk only when it is asked for. The index encodes one shard at a time
(`[samples[j] for j in rows]`), so at most one shard of texts is alive; `fingerprint` and `write_samples`
iterate one sample at a time. Samples are exactly those `load_file` returns (ids assigned the same way).
"""

from __future__ import annotations

import json
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


class JsonlSamples(Sequence[Sample]):
    """The samples of a JSONL file, read from disk on access; `ids` are in memory."""

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
        self._offsets = array("q")
        self._lines = array("q")
        self.ids: list[str] = []
        self._rows = None  # a subset's rows of the file (None: every record)
        if not self.path.exists():
            raise DataError(str(self.path), None, "no such file or directory")
        ids = IdAssigner()
        for offset, number, record in self._scan():
            sid = ids.take(self._sample(record, number), str(self.path), number)
            self.ids.append(sid)
            self._offsets.append(offset)
            self._lines.append(number)
        if not self.ids:
            raise DataError(str(self.path), None, "no records")

    def _scan(self) -> Iterator[tuple[int, int, object]]:
        """(byte offset, line number, parsed record) per non-blank line, reading one line at a time."""
        with open(self.path, "rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                yield from ((start, number, record) for record in self._parse(raw, number))

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

    def _sample(self, record, number: int) -> Sample:
        prompt_field, response_field, id_field, allow_empty = self._fields
        return record_to_sample(record, str(self.path), number, prompt_field, response_field, id_field, allow_empty)

    def _row(self, i: int) -> int:
        return i if self._rows is None else int(self._rows[i])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return _item(self, i, self._read)

    def _read(self, i: int) -> Sample:
        row = self._row(i)
        with open(self.path, "rb") as handle:
            handle.seek(self._offsets[row])
            raw = handle.readline()
        sample = self._sample(self._parse(raw, int(self._lines[row]))[0], int(self._lines[row]))
        return sample if sample.id == self.ids[i] else Sample(self.ids[i], sample.prompt, sample.response, sample.meta)

    def __iter__(self) -> Iterator[Sample]:
        if self._rows is not None:
            for i in range(len(self)):
                yield self[i]
            return
        # the whole file in order: one sequential read instead of a seek per sample
        for i, (_, number, record) in enumerate(self._scan()):
            sample = self._sample(record, number)
            yield (
                sample if sample.id == self.ids[i] else Sample(self.ids[i], sample.prompt, sample.response, sample.meta)
            )

    def subset(self, rows: Sequence[int]) -> JsonlSamples:
        """The samples at `rows` (in that order), still read from disk on access."""
        view = object.__new__(JsonlSamples)
        view.path, view._fields, view._offsets, view._lines = self.path, self._fields, self._offsets, self._lines
        base = np.arange(len(self)) if self._rows is None else np.asarray(self._rows)
        view._rows = base[np.asarray(rows, dtype=np.int64)]
        view.ids = [self.ids[int(r)] for r in rows]
        return view


def stream_subsample(samples: JsonlSamples, limit: int | None, seed: int) -> JsonlSamples:
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


def sample_ids(samples: Sequence[Sample]) -> list[str]:
    """The ids of `samples` without reading a streamed file's texts again."""
    return list(samples.ids) if isinstance(samples, (JsonlSamples, ConcatSamples)) else [s.id for s in samples]
