"""Typed JSON records of artifacts: one dataclass per record file, which knows its format name and version.

A record file (``labels.json``, ``training.json``, ``eval_split.json``) holds ``"format"`` and ``"version"``
beside its fields. A file without them was written before records were versioned and reads as version 1; a
file of a newer version than this code knows is refused by name, since its fields may mean something else by
now. Keys this code does not know (a minor field a newer influcoder added, a user's note) are kept in `extra`
and written back on save, so reading and saving a record never drops what another version wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import DamagedFileError, InflucoderError
from influcoder.core.jsonfile import field, read_json

R = TypeVar("R", bound="VersionedRecord")
NUMBER = (int, float)
"""A JSON number: a field rounded to two places may still be written as a whole number."""
HEADER = ("format", "version")


def check_version(raw: dict, path: str | Path, kind: str, newest: int, name: str | None = None) -> int:
    """The version of the record `raw` read from `path`: 1 when it records none. Refused naming the file when
    it is of another format, when its version is not a whole number from 1, or when it is newer than
    `newest` (the version this code writes); `name` says what the record is in that last message (default:
    its format string)."""
    stored = raw.get("format", kind)
    if stored != kind:
        raise DamagedFileError(
            f"{path}: holds a record of format {stored!r}, expected {kind!r}; restore it or rerun the step that "
            "wrote it"
        )
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DamagedFileError(f"{path}: the field 'version' holds {version!r}, expected a whole number from 1")
    if version > newest:
        raise InflucoderError(
            f"{path}: {name or kind} version {version} is newer than this influcoder reads (version {newest} and "
            "older); "
            "upgrade influcoder to read it"
        )
    return version


@dataclass(kw_only=True)
class VersionedRecord:
    """Base of a typed record file: subclasses name their `FORMAT`, `VERSION` and each field's JSON `TYPES`.

    A field without a default is required; a present field of another JSON type is refused naming the file
    and the field (`influcoder.core.jsonfile.field`); a field whose default is None also reads null."""

    FORMAT: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {}
    """Each field's JSON type(s) (fields not listed take any value)."""
    WRITE_NULLS: ClassVar[bool] = False
    """Whether fields holding None are written as null (True) or left out of the file (False)."""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keys of the file this code does not know, kept as read and written back on save."""

    @classmethod
    def known_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls: type[R], raw: dict, path: str | Path, require: Sequence[str] = ()) -> R:
        """The record held by `raw` (read from `path`, which errors name); `require` names fields that must be
        present even where the record type has a default for them."""
        check_version(raw, path, cls.FORMAT, cls.VERSION)
        values: dict[str, Any] = {}
        for spec in cls.known_fields():
            required = spec.name in require or (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            )
            if spec.name not in raw and not required:
                continue
            if raw.get(spec.name, 0) is None and spec.default is None:
                values[spec.name] = None
                continue
            values[spec.name] = field(raw, spec.name, path, cls.TYPES.get(spec.name, object))
        known = {spec.name for spec in cls.known_fields()} | set(HEADER)
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The record as its file holds it: format and version first, then the fields, then `extra`."""
        out: dict[str, Any] = {"format": self.FORMAT, "version": self.VERSION}
        for spec in self.known_fields():
            value = getattr(self, spec.name)
            if value is not None or self.WRITE_NULLS:
                out[spec.name] = value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def load(cls: type[R], path: str | Path, require: Sequence[str] = ()) -> R:
        """Read the record file `path` (a damaged, foreign or newer one is refused naming the file)."""
        return cls.from_dict(read_json(path), path, require)

    def save(self, path: str | Path) -> None:
        """Write the record file `path` atomically (a reader sees the old file or the whole new one)."""
        write_json_atomic(Path(path), self.to_dict())
