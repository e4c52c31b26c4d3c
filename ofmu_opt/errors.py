"""Exception hierarchy of ``ofmu_opt``.

Every exception subclasses :class:`OfmuError` and, where one fits, a builtin exception, so callers can
catch either ``OfmuError`` (everything this package raises on purpose) or the builtin they already
handle (``ValueError``, ``FileNotFoundError`` ...).

Examples:
    >>> from ofmu_opt.errors import ConfigError, OfmuError
    >>> issubclass(ConfigError, OfmuError) and issubclass(ConfigError, ValueError)
    True
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "IntegrityError",
    "OfmuError",
    "OracleError",
    "OutputLockedError",
    "ProblemSpecError",
    "UnsafeFileError",
]


class OfmuError(Exception):
    """Base class of every error raised on purpose by ``ofmu_opt``."""


class ConfigError(OfmuError, ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


class ProblemSpecError(OfmuError, ValueError):
    """A bi-level problem specification is inconsistent (shapes, missing oracles, unknown ids)."""


class OracleError(OfmuError, ValueError):
    """An oracle returned something of the wrong shape or type."""


class BackendError(OfmuError, RuntimeError):
    """A backend is missing (optional dependency not installed) or was misused (device mismatch)."""


class DataError(OfmuError, ValueError):
    """A data file or data set is missing, malformed, empty, or inconsistent."""


class CheckpointError(OfmuError, ValueError):
    """A checkpoint is missing, truncated, corrupt, or does not match the run it should resume."""


class UnsafeFileError(OfmuError, ValueError):
    """A file would execute code when loaded, or a path escapes its allowed directory."""


class OutputLockedError(OfmuError, RuntimeError):
    """An output directory is in use by another running ``ofmu`` process (see ``_io.output_lock``)."""


class IntegrityError(DataError):
    """A file the package wrote earlier (checkpoint, run record) was edited or damaged since: its content
    hash does not match, so it is not used."""
