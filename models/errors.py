"""Error hierarchy: one root, subclasses by cause.

Bad *records* never raise: they become counted dead letters (see
:mod:`flows.normalise`). These exceptions are for inputs or infrastructure
that cannot be processed at all, and every message names the file, record
or setting involved.
"""

from __future__ import annotations

import threading


class PipelineError(Exception):
    """Root of every error raised by the IFD pipeline.

    ``exit_code`` is the process exit status when the error ends a run
    (see README, "Exit codes").
    """

    exit_code = 1


class ConfigError(PipelineError):
    """A setting is missing or invalid; the message names the variable."""

    exit_code = 2


class DBNDecodeError(PipelineError):
    """A DBN input is not DBN, is truncated, or holds a malformed record.

    Parameters
    ----------
    path : str
        The file (or stream name) being decoded.
    offset : int
        Byte offset into the *decompressed* DBN stream where the problem starts.
    reason : str
        What is wrong, in words.
    """

    exit_code = 6

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: {reason} (at decompressed byte offset {offset})")


class SourceError(PipelineError):
    """An input cannot be opened or listed (missing file, empty glob), or a live feed gave up."""

    exit_code = 5


class SinkError(PipelineError):
    """Root of output failures."""


class SinkRetryableError(SinkError):
    """A transient output failure: the writer retries it with its own backoff.

    The delay is the writer's capped exponential backoff with jitter
    (:class:`sinks.clickhouse.IFDWriter`), not the error's.
    """


class SinkFatalError(SinkError):
    """An output failure that retrying cannot fix (bad schema, auth, SQL)."""


_fatal_lock = threading.Lock()
_fatal: list[PipelineError] = []


def record_fatal(exc: PipelineError) -> None:
    """Remember an error that ended a source cleanly (the run then exits with its ``exit_code``)."""
    with _fatal_lock:
        _fatal.append(exc)


def fatal_errors() -> list[PipelineError]:
    """Errors recorded by :func:`record_fatal` in this process, oldest first."""
    with _fatal_lock:
        return list(_fatal)


def clear_fatal_errors() -> None:
    """Forget recorded errors (tests run several flows in one process)."""
    with _fatal_lock:
        _fatal.clear()
