"""An index directory's ``manifest.json`` as a typed record: what the index holds and how it was built.

`IndexManifest` has one field per key the manifest holds (the encoder's fingerprint, backend and config, the
text view inside that config, the gradient-label settings, the row width, storage dtype, FAISS factory, the
segments in row order, how rows are scored and the coverage summary), plus the format string and a version.
`IndexManifest.load` refuses, in one line naming the file, a manifest of another kind, of a newer version than
this influcoder reads, or with a field of the wrong type; files without a version are version 1, the first
one written. Keys it does not know are kept in `IndexManifest.extra` and written back on save, so a manifest
written by a newer release keeps them when an older one appends to it.

The checks of the manifest against the index's other files (each segment's row count against its store, the
row count and width against ``index.faiss``) are `influcoder.attribution.index_integrity`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.jsonfile import field as json_field
from influcoder.core.jsonfile import read_json
from influcoder.core.versioned import check_version

MANIFEST = "manifest.json"
COVERAGE = "coverage.npy"
FORMAT = "influcoder.index"
VERSION = 1
"""The manifest version this influcoder writes and the newest it reads."""
REBUILD = "rebuild it (`influcoder index` with `overwrite`) or restore the file"

_ABSENT = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read(record: dict, key: str, file: Path, kind: type | tuple[type, ...], default: Any = _ABSENT) -> Any:
    """`record[key]` checked to be of `kind` (a `DamagedFileError` naming the file and the field), or
    `default` when the key is absent and there is one (a manifest written before the key existed)."""
    if key not in record and default is not _ABSENT:
        return default
    return json_field(record, key, file, kind)


@dataclass(frozen=True)
class IndexSegment:
    """One segment of an index: a `FeatureStore` of embeddings beside a JSON Lines file of its samples."""

    name: str
    """The store's directory in the index (``segment-00000``); its samples are in ``<name>.jsonl``."""
    n: int
    """Its rows (samples)."""

    @classmethod
    def from_record(cls, record: Any, file: Path) -> IndexSegment:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str) or not _is_int(record.get("n")):
            raise DamagedFileError(f"{file}: a segment entry is not {{name, n}}; {REBUILD}")
        return cls(record["name"], record["n"])

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n}


@dataclass(frozen=True)
class ScoringRecord:
    """How the index's rows are scored, for a reader of the manifest (`Influcoder.query_side`)."""

    objective: str
    """``cosine``: rows are unit embeddings scored against the encoded query; ``subspace``: rows are a pool
    sample's predicted gradient coordinates (`influcoder.encoder.subspace`)."""
    query_side: str
    """How a query is embedded by default: ``encoded`` by the encoder, or its ``exact`` gradient coordinates."""
    subspace_k: int | None = None
    """The subspace's dimension (the ``subspace`` objective only)."""

    @classmethod
    def from_record(cls, record: Any, file: Path) -> ScoringRecord:
        k = record.get("subspace_k") if isinstance(record, dict) else None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("objective"), str)
            or not isinstance(record.get("query_side"), str)
            or not (k is None or _is_int(k))
        ):
            raise DamagedFileError(f"{file}: the field 'scoring' is not {{objective, query_side[, subspace_k]}}")
        return cls(record["objective"], record["query_side"], k)

    def to_record(self) -> dict[str, Any]:
        k = {"subspace_k": self.subspace_k} if self.subspace_k is not None else {}
        return {"objective": self.objective, **k, "query_side": self.query_side}


@dataclass(frozen=True)
class CoverageRecord:
    """The coverage summary `EmbeddingIndex.write_coverage` records beside ``coverage.npy``."""

    threshold: float
    """The encoder's calibrated coverage threshold (`influcoder.encoder.coverage.CoverageReference`)."""
    k: int
    """How many nearest labelled samples a row's coverage averages over."""
    rows: int
    """The rows scored (fewer than the index's after an --append: the scores are then stale)."""
    share_covered: float
    """The share of those rows at or above the threshold."""

    @classmethod
    def from_record(cls, record: Any, file: Path) -> CoverageRecord:
        if (
            not isinstance(record, dict)
            or not all(_is_number(record.get(key)) for key in ("threshold", "share_covered"))
            or not all(_is_int(record.get(key)) for key in ("k", "rows"))
        ):
            raise DamagedFileError(f"{file}: the field 'coverage' is not {{threshold, k, rows, share_covered}}")
        return cls(record["threshold"], record["k"], record["rows"], record["share_covered"])

    def to_record(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "k": self.k, "rows": self.rows, "share_covered": self.share_covered}


@dataclass
class IndexManifest:
    """An index's ``manifest.json``. Readers written against the raw JSON (``manifest["dtype"]``,
    ``manifest.get("encoder_path")``) still work: item access reads `to_record`; new code reads the fields."""

    format: ClassVar[str] = FORMAT
    """What the file is (`FORMAT`): every manifest.json an index writes says so."""

    encoder_fingerprint: str
    """The encoder the rows were embedded with (`InfluenceEncoder.fingerprint`): queries must use the same."""
    dim: int
    """The width of a row: the encoder's score dimension (embedding plus any length-prior column)."""
    dtype: str
    """How the embeddings are stored (float16 or float32)."""
    index_factory: str
    """The FAISS index factory string of ``index.faiss``."""
    encoder_backend: str = "torch"
    """The backend the rows were embedded on (torch, int8); queries are embedded on the same one."""
    encoder_config: dict[str, Any] = field(default_factory=dict)
    """The encoder's `EncoderConfig` (less its label settings), text view included."""
    label_config: dict[str, Any] | None = None
    """The gradient-label settings the encoder was distilled from."""
    prior_columns: int = 0
    """Columns of a length prior after the embedding (`influcoder.encoder.length_prior`); coverage ignores them."""
    segments: list[IndexSegment] = field(default_factory=list)
    """The segments in row order; empty only while a first build has not registered its segment yet."""
    encoder_path: str | None = None
    """The encoder's directory, resolved (None when the build was not given one)."""
    scoring: ScoringRecord | None = None
    """How rows are scored (None when the encoder's directory was not known at build time)."""
    coverage: CoverageRecord | None = None
    """The coverage summary, once `EmbeddingIndex.write_coverage` has run."""
    version: int = VERSION
    """The manifest's version: 1 for files written before the key existed."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this influcoder does not know (a newer writer's), written back unchanged."""

    @property
    def text_view(self) -> str | None:
        """How a sample became the one string that was encoded (`EncoderConfig.text_view`)."""
        return self.encoder_config.get("text_view")

    @property
    def rows(self) -> int:
        """The index's rows: its segments' together."""
        return sum(segment.n for segment in self.segments)

    @property
    def embedding_dim(self) -> int:
        """The width of the embedding part of a row (coverage and the spread sample live there)."""
        return self.dim - self.prior_columns

    # ------------------------------------------------------------------ reading and writing
    @classmethod
    def load(cls, directory: str | Path) -> IndexManifest:
        """The manifest of the index at `directory`, refused in one line naming the file when it is missing,
        not an index's, newer than this influcoder reads or has a field of the wrong type."""
        directory = Path(directory)
        file = directory / MANIFEST
        if not file.exists():
            raise InflucoderError(f"{directory} is not an influcoder index (no {MANIFEST}); run `influcoder index`")
        return cls.from_record(read_json(file), file)

    @classmethod
    def from_record(cls, record: dict[str, Any], file: Path) -> IndexManifest:
        """The manifest of a parsed ``manifest.json`` (`file` names it in errors)."""
        if record.get("format") != FORMAT:
            raise InflucoderError(f"{file}: not an influcoder index manifest")
        version = check_version(record, file, FORMAT, VERSION, name="index manifest")
        segments = record.get("segments")
        if not isinstance(segments, list):
            raise DamagedFileError(f"{file}: the index holds no segment; {REBUILD}")
        scoring, coverage = record.get("scoring"), record.get("coverage")
        known = {f.name for f in fields(cls) if f.name != "extra"} | {"format"}
        return cls(
            encoder_fingerprint=_read(record, "encoder_fingerprint", file, str),
            dim=_read(record, "dim", file, int),
            dtype=_read(record, "dtype", file, str),
            index_factory=_read(record, "index_factory", file, str),
            encoder_backend=_read(record, "encoder_backend", file, str, "torch"),
            encoder_config=_read(record, "encoder_config", file, dict, {}),
            label_config=_read(record, "label_config", file, (dict, type(None)), None),
            prior_columns=_read(record, "prior_columns", file, int, 0),
            segments=[IndexSegment.from_record(segment, file) for segment in segments],
            encoder_path=_read(record, "encoder_path", file, (str, type(None)), None),
            scoring=ScoringRecord.from_record(scoring, file) if scoring is not None else None,
            coverage=CoverageRecord.from_record(coverage, file) if coverage is not None else None,
            version=version,
            extra={key: value for key, value in record.items() if key not in known},
        )

    def to_record(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (``coverage`` only once there is one)."""
        record = {
            "format": self.format,
            "version": self.version,
            "encoder_fingerprint": self.encoder_fingerprint,
            "encoder_backend": self.encoder_backend,
            "encoder_config": self.encoder_config,
            "label_config": self.label_config,
            "dim": self.dim,
            "prior_columns": self.prior_columns,
            "dtype": self.dtype,
            "index_factory": self.index_factory,
            "segments": [segment.to_record() for segment in self.segments],
            "encoder_path": self.encoder_path,
            "scoring": self.scoring.to_record() if self.scoring is not None else None,
        }
        if self.coverage is not None:
            record["coverage"] = self.coverage.to_record()
        return {**record, **self.extra}

    def save(self, directory: str | Path) -> None:
        """Write ``manifest.json`` into `directory` atomically (a reader never sees half a file)."""
        write_json_atomic(Path(directory) / MANIFEST, self.to_record())

    @staticmethod
    def names_an_index(directory: str | Path) -> bool:
        """Whether `directory` holds a manifest of an index (its ``format`` only, so a manifest damaged in its
        other fields still counts: --overwrite may replace it)."""
        try:
            return read_json(Path(directory) / MANIFEST).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    # ------------------------------------------------------------------ the raw JSON's readers
    def __getitem__(self, key: str) -> Any:
        return self.to_record()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_record().get(key, default)
