"""The one entry point users and commands load data through: a built-in source name or a file path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from influcoder.core.errors import DataError
from influcoder.data.formats import detect_format, load_file
from influcoder.data.records import Sample, subsample


def load_samples(
    source: str | Path,
    limit: int | None = None,
    seed: int = 0,
    prompt_field: str | None = None,
    response_field: str | None = None,
    id_field: str = "id",
    allow_empty_response: bool = False,
    stream: bool = False,
) -> Sequence[Sample]:
    """Samples from a built-in source name (see `influcoder.data.sources`) or a file path, seeded-subsampled.

    Built-in names take the form ``name`` or ``name:option`` (e.g. ``bbh:navigate``). With `stream`, a JSONL
    or Parquet file comes back as a `JsonlSamples` / `ParquetSamples` sequence that reads texts from disk on
    access (the same samples in bounded memory, for pools of millions); other formats (CSV, HF dataset
    directories) and built-in sources are loaded whole.
    """
    from influcoder.data import sources

    name = str(source)
    if sources.is_source(name):
        return sources.load_source(name, limit=limit, seed=seed)
    path = Path(source)
    if not path.exists() and not path.suffix and len(path.parts) == 1:  # a bare word: a misspelt source?
        raise DataError(name, None, f"no such file or directory, nor a built-in source ({', '.join(sources.SOURCES)})")
    if stream and path.exists() and detect_format(path) in ("jsonl", "parquet", "hf"):
        from influcoder.data.stream import HfDatasetSamples, JsonlSamples, ParquetSamples, stream_subsample

        reader = {"jsonl": JsonlSamples, "parquet": ParquetSamples, "hf": HfDatasetSamples}[detect_format(path)]
        lazy = reader(path, prompt_field, response_field, id_field, allow_empty_response)
        return stream_subsample(lazy, limit, seed)
    samples = load_file(source, prompt_field, response_field, id_field, allow_empty_response)
    return subsample(samples, limit, seed)
