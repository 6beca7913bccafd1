"""Reading the project's JSON files (manifests, records, splits) so that a damaged one is named, not crashed on.

Every artifact of a run keeps its description in JSON; a truncated write from another tool, a hand edit or a
disk error must end in one line that says which file and what was expected, never a `JSONDecodeError`
traceback from deep inside a stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from influcoder.core.errors import DamagedFileError

__all__ = ["DamagedFileError", "field", "read_json"]


def read_json(path: str | Path, expect: type = dict) -> Any:
    """The parsed content of `path`, which must be valid JSON of type `expect` (an object by default)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected JSON") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        raise DamagedFileError(
            f"{path}: {what}; the file is damaged: restore it or rerun the step that wrote it"
        ) from None
    if not isinstance(value, expect):
        raise DamagedFileError(
            f"{path}: expected a JSON {_name(expect)}, found {_name(type(value))}; restore it or rerun the step that "
            "wrote it"
        )
    return value


def field(record: dict, key: str, path: str | Path, expect: type | tuple[type, ...] = object) -> Any:
    """`record[key]`, or a `DamagedFileError` naming the file and the missing or mistyped field."""
    if key not in record:
        raise DamagedFileError(
            f"{path}: the field {key!r} is missing; restore the file or rerun the step that wrote it"
        )
    value = record[key]
    if not isinstance(value, expect):
        raise DamagedFileError(f"{path}: the field {key!r} holds {_name(type(value))}, expected {_name(expect)}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)
