"""Exceptions that the console script turns into a one-line message and exit code 1."""

from __future__ import annotations

from pathlib import Path


class CephaloError(Exception):
    """A data, configuration or environment problem the user must fix (exit code 1).

    The message names the file (when there is one) and the problem, in one line.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class DataError(CephaloError):
    """Bad input data: unreadable image, malformed annotation, inconsistent index."""


class ConfigError(CephaloError):
    """Bad params/configuration value."""


class DownloadError(CephaloError):
    """A download failed, was not an archive, or did not match its checksum."""


class CheckpointError(CephaloError):
    """A checkpoint is unreadable, truncated, or does not match the requested model/config."""
