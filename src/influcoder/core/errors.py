"""Exceptions users see.

Every error the CLI can raise on bad input derives from `InflucoderError`, so the CLI prints one clear line
and exits non-zero instead of a traceback, and library users can catch one base class.
"""

from __future__ import annotations


class InflucoderError(Exception):
    """Base class for every error caused by input, configuration or artifacts (not by bugs)."""


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
