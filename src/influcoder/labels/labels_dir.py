"""A labels directory as typed objects: `LabelsRecord` for its ``labels.json``, `LabelsDir` for its file names.

`label` and `merge-labels` write a labels directory (see `influcoder.labels` for the layout); `distill`,
`evaluate` and `verify` read it. Its names and its record's fields are spelled here once, so that no reader
keeps its own copy of a key to get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.versioned import NUMBER, VersionedRecord
from influcoder.data.records import Sample
from influcoder.labels.influence import InfluenceMatrix


@dataclass(kw_only=True)
class LabelsRecord(VersionedRecord):
    """``labels.json``: what made a labels directory (settings, features), its sizes and what it cost.

    Fields that only `label` writes (ray, all_pairs, timings of this run, batch_tokens_used) are None in a
    merged directory, whose `merged_from` lists its parts; labels merged by older versions may lack the
    settings and features too."""

    FORMAT: ClassVar[str] = "influcoder.labels"
    VERSION: ClassVar[int] = 1
    TYPES: ClassVar[dict[str, Any]] = {
        "settings": dict, "ray": bool, "features": dict, "merged_from": list, "n_pool": int, "n_queries": int,
        "ids_in_both": int, "all_pairs": bool, "seconds_total": NUMBER, "seconds_pool_this_run": NUMBER,
        "bytes_per_sample": NUMBER, "batch_tokens_used": int,
    }  # fmt: skip

    settings: dict[str, Any] | None = None
    """`LabelSettings` as a dict (the decoder, adapter, text view and batching the labels were made with)."""
    ray: bool | None = None
    """Whether the gradients were computed by Ray workers."""
    features: dict[str, Any] | None = None
    """The featurizer's config: what the gradient features are (an encoder distilled from them records it)."""
    merged_from: list[str] | None = None
    """The labels directories a merged one was joined from (absolute paths); None for a labelled one."""
    n_pool: int
    n_queries: int
    ids_in_both: int | None = None
    """How many ids are both pool and query samples."""
    all_pairs: bool | None = None
    """The same samples in the same order on both sides: one gradient store, an N x N matrix."""
    seconds_total: float | None = None
    seconds_pool_this_run: float | None = None
    """Seconds the pool's gradients took in this run (a resumed run counts only what it computed)."""
    bytes_per_sample: float | None = None
    """Bytes the pool store keeps per sample."""
    batch_tokens_used: int | None = None
    """--batch-tokens, or what --max-memory measured."""


class Labels(NamedTuple):
    """What a labels directory holds, as read (`LabelsDir.load`)."""

    matrix: InfluenceMatrix
    pool: list[Sample]
    queries: list[Sample]
    """Pool and query samples in the matrix's row and column order."""
    record: LabelsRecord


@dataclass(frozen=True)
class LabelsDir:
    """The files of a labels directory (`influcoder.labels`) under `path`, named in one place."""

    RECORD: ClassVar[str] = "labels.json"
    POOL_SAMPLES: ClassVar[str] = "pool.jsonl"
    QUERY_SAMPLES: ClassVar[str] = "queries.jsonl"
    INFLUENCE: ClassVar[str] = "influence"
    POOL_STORE: ClassVar[str] = "pool"
    QUERY_STORE: ClassVar[str] = "queries"

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def record_path(self) -> Path:
        return self.path / self.RECORD

    @property
    def pool_samples(self) -> Path:
        return self.path / self.POOL_SAMPLES

    @property
    def query_samples(self) -> Path:
        return self.path / self.QUERY_SAMPLES

    @property
    def influence(self) -> Path:
        return self.path / self.INFLUENCE

    @property
    def pool_store(self) -> Path:
        return self.path / self.POOL_STORE

    @property
    def query_store(self) -> Path:
        """The query gradients' store; all-pairs labels have none (their queries are the pool)."""
        return self.path / self.QUERY_STORE

    def gradient_stores(self) -> list[Path]:
        """The gradient stores present: the pool's, then the queries' when there is one."""
        return [p for p in (self.pool_store, self.query_store) if p.exists()]

    def exists(self) -> bool:
        return self.record_path.exists()

    def record(self) -> LabelsRecord:
        """The directory's ``labels.json``, refused naming the file when it is damaged or newer than this code."""
        if not self.exists():
            raise InflucoderError(f"{self.path} is not a labels directory (no labels.json); run `influcoder label`")
        return LabelsRecord.load(self.record_path)

    @classmethod
    def load(cls, directory: str | Path) -> Labels:
        """The influence matrix, the pool and query samples (in matrix order) and the record of a labels
        directory; samples files that do not list the matrix's ids are refused naming the file."""
        from influcoder.data.formats import load_file

        labels = cls(directory)
        record = labels.record()
        matrix = InfluenceMatrix.load(labels.influence)
        pool, queries = load_file(labels.pool_samples), load_file(labels.query_samples)
        for path, samples, ids in ((labels.pool_samples, pool, matrix.pool_ids),
                                   (labels.query_samples, queries, matrix.query_ids)):  # fmt: skip
            if [s.id for s in samples] != ids:
                raise DamagedFileError(
                    f"{path}: its {len(samples)} samples are not the {len(ids)} the influence matrix "
                    f"({labels.influence / 'ids.json'}) lists; restore the file or rerun `influcoder label`"
                )
        return Labels(matrix, pool, queries, record)
