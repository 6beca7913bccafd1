"""Exceptions users see.

Every error the CLI can raise on bad input derives from `InflucoderError`, so the CLI prints one clear line
and exits non-zero instead of a traceback, and library users can catch one base class.
"""

from __future__ import annotations

import re
from collections.abc import Collection


class InflucoderError(Exception):
    """Base class for every error caused by input, configuration or artifacts (not by bugs)."""


def flag(field: str) -> str:
    """The command-line flag of a settings field (``batch_tokens`` -> ``--batch-tokens``)."""
    return "--" + field.replace("_", "-")


FIELD_IN_MESSAGE = re.compile(r"`([a-z][a-z0-9_]*)`")
"""How a message names a settings field: in backticks (so that a path or a word is never taken for one)."""


def with_flags(message: str, fields: Collection[str] | None = None) -> str:
    """`message` with each backticked field written as its flag: every one, or only those in `fields` (the
    running command's, so that a backticked word that is no flag of it stays as it is)."""
    return FIELD_IN_MESSAGE.sub(lambda m: flag(m[1]) if fields is None or m[1] in fields else m[0], message)


class SettingError(InflucoderError):
    """A setting out of range, named by its field: ``batch_tokens must be at least 1, got 0``. The library
    speaks of fields, the CLI of flags: `as_flags` is the same message with the field and every other field
    the `problem` text names in backticks (``0 to `candidates_per_batch` ``) written as its flag, which is
    what the CLI prints (backticks, so that a path or a word in the message is never taken for a field)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")

    def as_flags(self) -> str:
        return f"{flag(self.field)} {with_flags(self.problem)}"


def cli_message(error: InflucoderError, fields: Collection[str] = ()) -> str:
    """What the CLI prints for `error`: a `SettingError` in flags; any other message with the backticked
    `fields` of the running command written as flags (library advice reads "pick another `out`", the CLI's
    "pick another --out")."""
    return error.as_flags() if isinstance(error, SettingError) else with_flags(str(error), fields)


class DataError(InflucoderError):
    """A record that cannot be turned into a `Sample`, located by file and line (or row).

    The message reads ``path:line: what was wrong (what was expected)`` so editors and terminals can
    jump to it.
    """

    def __init__(self, path: str, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class DamagedFileError(InflucoderError):
    """A file the project wrote (or was given) cannot be read as what it should be: truncated, emptied,
    altered or not of its kind. The message starts with the file's path and says what was expected."""


class AssetError(InflucoderError):
    """An embedded asset could not be fetched, verified or unpacked."""


class RegistryUnreachable(AssetError):
    """The package registry could not be reached (connection refused, DNS, timeout, proxy): the one asset
    failure that says nothing about the asset itself, so the one a test may skip on."""


class ArtifactMismatchError(InflucoderError):
    """An artifact on disk was produced with settings other than the ones requested."""


class NonFiniteGradientError(InflucoderError):
    """A per-example gradient contains NaN or Inf; names the sample so it can be inspected."""


class NonFiniteValueError(InflucoderError):
    """An embedding or a training loss is NaN or Inf; names the samples or the step where it happened."""
