"""The durable alert outbox: one SQLite row per ``alert_key``, committed before a signal is accepted.

Table ``alert_outbox`` (schema version :data:`OUTBOX_SCHEMA_VERSION`, ``PRAGMA user_version``):
``alert_key`` (primary key), ``status`` (:data:`OUTBOX_STATUSES`), ``attempts``, ``payload``
(the signal as JSON), ``channels`` (per-channel outcome, JSON), ``accepted_at``/``updated_at``
(ISO 8601 UTC). One process owns a file at a time (``flock`` on a claim file beside it).
See :mod:`sinks.alerts` for the lifecycle of a row.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from models.errors import SinkFatalError

try:
    import fcntl
except ImportError:  # Windows: no outbox lock (one dispatcher per file is then up to the caller)
    fcntl = None  # type: ignore[assignment]

OUTBOX_STATUSES = ("pending", "in_flight", "delivered", "failed", "rate_limited", "jsonl_only")
"""Every ``alert_outbox.status`` value; the last four are final."""

FINAL_STATUSES = frozenset(OUTBOX_STATUSES[2:])
"""Statuses a row never leaves on its own (see "Not retried" in the module docstring)."""

OUTBOX_SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the outbox file this module writes."""

OUTBOX_BUSY_TIMEOUT_S = 5.0
"""Longest wait for a locked outbox database before an insert or update fails, in seconds."""



def now_iso() -> str:
    """Return the current time as ISO 8601 UTC (the outbox's timestamps)."""
    return datetime.now(UTC).isoformat()


_OUTBOX_DDL = (
    """
    CREATE TABLE IF NOT EXISTS alert_outbox (
        alert_key   TEXT PRIMARY KEY,
        status      TEXT NOT NULL CHECK (status IN
                        ('pending', 'in_flight', 'delivered', 'failed', 'rate_limited', 'jsonl_only')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        payload     TEXT NOT NULL,
        channels    TEXT NOT NULL DEFAULT '{}',
        accepted_at TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS alert_outbox_by_status ON alert_outbox (status)",
)
_SET_SCHEMA_VERSION = "PRAGMA user_version = 1"  # = OUTBOX_SCHEMA_VERSION


class AlertOutbox:
    """Durable alert queue: one SQLite row per ``alert_key`` (table in the module docstring).

    Thread-safe: one connection, guarded by a lock, serves the caller's thread
    (:meth:`add`) and the dispatcher's worker. Every write is its own
    transaction, committed before the method returns.

    Parameters
    ----------
    path : Path | None
        Database file (parents created); None keeps the outbox in memory.
    busy_timeout_s : float
        Longest wait for a lock held by another connection, in seconds.

    Raises
    ------
    SinkFatalError
        The file cannot be opened or is not an outbox of a known schema
        version, or another dispatcher holds its lock file (``<path>.lock``).
    """

    def __init__(self, path: Path | None, *, busy_timeout_s: float = OUTBOX_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._claim: IO[str] | None = None
        if path is not None:
            self._claim = self._claim_file(path)
        try:
            self._conn = sqlite3.connect(
                ":memory:" if path is None else str(path),
                timeout=busy_timeout_s,  # sqlite3_busy_timeout
                isolation_level=None,  # autocommit: each statement is one committed transaction
                check_same_thread=False,
            )
            self.created = self._prepare()
        except sqlite3.Error as exc:
            self._release()
            msg = f"cannot open the alert outbox {path}: {exc}"
            raise SinkFatalError(msg) from exc
        except SinkFatalError:
            self._release()
            raise

    @staticmethod
    def _claim_file(path: Path) -> IO[str] | None:
        """Take the exclusive, non-blocking ``flock`` that makes this the file's only dispatcher."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return None
        handle = path.with_name(path.name + ".lock").open("a", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            msg = (
                f"the alert outbox {path} is in use by another dispatcher (one per file: give each "
                "flow process its own IFD_ALERT_OUTBOX_PATH; notice senders use notices_only=True)"
            )
            raise SinkFatalError(msg) from None
        return handle

    def _prepare(self) -> bool:
        """Set the journal, create the table; ``True`` when the table is new."""
        conn = self._conn
        conn.execute("PRAGMA journal_mode = WAL")  # 'memory' for an in-memory database
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: commits survive a killed process
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > OUTBOX_SCHEMA_VERSION:
            msg = (
                f"alert outbox {self.path} has schema version {version}; this version of "
                f"this version writes {OUTBOX_SCHEMA_VERSION}"
            )
            raise SinkFatalError(msg)
        exists = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alert_outbox'"
        ).fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _OUTBOX_DDL:
                conn.execute(statement)
            conn.execute(_SET_SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return not exists

    def add(self, key: str, payload: str) -> bool:
        """Insert a ``pending`` row and commit it.

        Parameters
        ----------
        key : str
            ``signal.alert_key``.
        payload : str
            ``signal.model_dump_json()``.

        Returns
        -------
        bool
            ``True`` when inserted; ``False`` when ``key`` is already in the outbox.

        Raises
        ------
        sqlite3.Error
            The row could not be written (the signal is not in the outbox).
        """
        now = now_iso()
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO alert_outbox (alert_key, status, attempts, payload, channels,"
                " accepted_at, updated_at) VALUES (?, 'pending', 0, ?, '{}', ?, ?)",
                (key, payload, now, now),
            )
        return cursor.rowcount == 1

    def add_many(self, rows: list[tuple[str, str]]) -> list[bool]:
        """Insert ``(key, payload)`` rows as ``pending`` in one committed transaction.

        Returns
        -------
        list of bool
            Per row, ``True`` when inserted, ``False`` when its key is already in the outbox
            (or earlier in ``rows``).

        Raises
        ------
        sqlite3.Error
            Nothing was written (the transaction is rolled back).
        """
        now = now_iso()
        inserted: list[bool] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for key, payload in rows:
                    cursor = self._conn.execute(
                        "INSERT OR IGNORE INTO alert_outbox (alert_key, status, attempts, payload,"
                        " channels, accepted_at, updated_at) VALUES (?, 'pending', 0, ?, '{}', ?, ?)",
                        (key, payload, now, now),
                    )
                    inserted.append(cursor.rowcount == 1)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return inserted

    def add_finished(self, key: str, status: str, payload: str, at: str) -> bool:
        """Insert a row in a final status (JSONL import); ``False`` when ``key`` exists."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO alert_outbox (alert_key, status, attempts, payload, channels,"
                " accepted_at, updated_at) VALUES (?, ?, 0, ?, '{}', ?, ?)",
                (key, status, payload, at, at),
            )
        return cursor.rowcount == 1

    def requeue(self) -> tuple[int, int]:
        """Make every ``in_flight`` row ``pending`` again (start of a dispatcher).

        Returns
        -------
        tuple of int
            ``(pending, in_flight)`` rows found: all of them will be sent.
        """
        with self._lock:
            counts = dict(self._conn.execute(
                "SELECT status, count(*) FROM alert_outbox"
                " WHERE status IN ('pending', 'in_flight') GROUP BY status"
            ).fetchall())
            self._conn.execute(
                "UPDATE alert_outbox SET status = 'pending', updated_at = ? WHERE status = 'in_flight'",
                (now_iso(),),
            )
        return counts.get("pending", 0), counts.get("in_flight", 0)

    def pending(self, limit: int) -> list[tuple[int, str, str]]:
        """Return up to ``limit`` ``(rowid, alert_key, payload)`` of pending rows in acceptance order."""
        with self._lock:
            return self._conn.execute(
                "SELECT rowid, alert_key, payload FROM alert_outbox"
                " WHERE status = 'pending' ORDER BY rowid LIMIT ?",
                (limit,),
            ).fetchall()

    def mark_in_flight(self, *keys: str) -> None:
        """``pending`` → ``in_flight`` for ``keys``, counting the attempt, before anything is sent.

        One committed transaction.
        """
        now = now_iso()
        with self._lock:
            self._conn.executemany(
                "UPDATE alert_outbox SET status = 'in_flight', attempts = attempts + 1, updated_at = ?"
                " WHERE alert_key = ?",
                [(now, key) for key in keys],
            )

    def finish(self, key: str, status: str, channels: dict[str, bool], *more: str) -> None:
        """Record a final status and the per-channel outcome (labels only, never URLs).

        For ``key`` and the ``more`` keys, in one committed transaction.
        """
        if status not in FINAL_STATUSES:
            msg = f"not a final outbox status: {status!r}"
            raise ValueError(msg)
        outcome, now = json.dumps(channels, separators=(",", ":")), now_iso()
        with self._lock:
            self._conn.executemany(
                "UPDATE alert_outbox SET status = ?, channels = ?, updated_at = ? WHERE alert_key = ?",
                [(status, outcome, now, k) for k in (key, *more)],
            )

    def counts(self) -> dict[str, int]:
        """Rows per status (every status in :data:`OUTBOX_STATUSES`, zeros included)."""
        with self._lock:
            found = dict(self._conn.execute(
                "SELECT status, count(*) FROM alert_outbox GROUP BY status"
            ).fetchall())
        return {status: found.get(status, 0) for status in OUTBOX_STATUSES}

    def close(self) -> None:
        """Close the connection and release the lock file. Idempotent."""
        with self._lock:
            try:
                self._conn.close()
            finally:
                self._release()

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.close()  # closing the descriptor drops the flock
            self._claim = None
