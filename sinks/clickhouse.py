"""ClickHouse storage: embedded chdb or a server, same DDL and SQL.

- :func:`open_store` picks :class:`ChdbStore` (``IFD_CLICKHOUSE_URL`` unset;
  data in ``IFD_CHDB_PATH``; one process per directory) or
  :class:`ServerStore` (clickhouse-connect over HTTP).
- :func:`apply_schema` runs ``sinks/schema.sql`` (idempotent), once per run, at flow build.
- Queries bind their values server-side (``{name:Type}`` placeholders: chdb ``params=``,
  clickhouse-connect ``parameters=``); no value is ever formatted into SQL.
- :data:`TABLES` registers every table the dataflow writes (item type, Arrow
  encoding, dedup token); :class:`IFDWriter` buffers items per table and
  writes them as columnar Arrow inserts with explicit column names, an
  ``insert_deduplication_token`` per block and retries with exponential
  backoff on retryable errors (decided by ClickHouse error code).

Idempotency: every row has an identity in its table's ``ORDER BY``
(ReplacingMergeTree), so retries, replays of the same files and bytewax's
partial re-emissions never change the numbers read through
``ifd.pressure_metrics``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
from filelock import FileLock, Timeout
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from models.errors import SinkError, SinkFatalError, SinkRetryableError
from models.latency import LatencyMeter, LatencyRow
from models.records import (
    FIXED_PRICE_SCALE,
    UNDEF_PRICE,
    AbsorptionRows,
    BackfillRow,
    BatchStats,
    DeadLetters,
    FootprintRows,
    IcebergRows,
    OpenInterestRows,
    PartBlock,
    UsageRow,
)
from models.settings import Settings
from models.signals import Signal
from models.window_rules import sql_dominance_confidence, sql_dominant_side

log = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({159, 164, 202, 209, 210, 241, 252, 285, 319, 425, 999})
"""TIMEOUT_EXCEEDED, READONLY, TOO_MANY_SIMULTANEOUS_QUERIES, SOCKET_TIMEOUT,
NETWORK_ERROR, MEMORY_LIMIT_EXCEEDED, TOO_MANY_PARTS, TOO_FEW_LIVE_REPLICAS,
UNKNOWN_STATUS_OF_INSERT, SYSTEM_ERROR, KEEPER_EXCEPTION."""
_CODE_RE = re.compile(r"Code:\s*(\d+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _classify(exc: Exception, what: str) -> SinkError:
    """Map a driver exception to a retryable or fatal sink error (by error code)."""
    code = getattr(exc, "code", None)
    if code is None:
        match = _CODE_RE.search(str(exc))
        code = int(match.group(1)) if match else None
    name = type(exc).__name__
    if code in RETRYABLE_CODES or name in {"OperationalError", "ConnectionError", "TimeoutError"}:
        return SinkRetryableError(f"{what} failed (code {code}): {exc}")
    return SinkFatalError(f"{what} failed (code {code}): {exc}")


class ClickHouseStore(Protocol):
    """The three operations the pipeline needs from ClickHouse."""

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing."""

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Run a query and return its result as an Arrow table.

        ``parameters`` are bound server-side to ``{name:Type}`` placeholders in ``sql``.
        """

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str) -> None:
        """Insert ``data`` (column names = Arrow field names) into ``table``."""

    def close(self) -> None:
        """Release the connection/session."""


_CHDB_THREAD: ThreadPoolExecutor | None = None
_CHDB_THREAD_LOCK = threading.Lock()
_T = TypeVar("_T")


_ON_CHDB_THREAD = threading.local()


def _mark_chdb_thread() -> None:
    _ON_CHDB_THREAD.active = True


def on_chdb_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on the process's one chdb thread (a Python-created thread) and return its result.

    Every chdb call of the process goes through here: opening and closing sessions, statements,
    queries and ``Python()`` inserts, so the engine is used from one thread whichever bytewax
    worker (``-w N`` workers are threads bytewax creates) the sink partition lands on. This is a
    safeguard, not a proven fix: the hang seen at e0b2abf (stuck in ``Session.query`` on worker 1)
    came from opening chdb and running DDL while a worker-thread partition was built, which the
    flow no longer does (the schema is applied once at build). Exceptions propagate.
    """
    global _CHDB_THREAD
    if getattr(_ON_CHDB_THREAD, "active", False):
        return fn()  # already on it (a call made by a function running there)
    with _CHDB_THREAD_LOCK:
        if _CHDB_THREAD is None:
            _CHDB_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb",
                                              initializer=_mark_chdb_thread)
        executor = _CHDB_THREAD
    return executor.submit(fn).result()


CHDB_LOCK_TIMEOUT_S = 300.0
"""Longest wait for another process of the run to release the chdb data directory."""


class ChdbStore:
    """Embedded ClickHouse (chdb) with data in ``path``; every call runs on :func:`on_chdb_thread`.

    chdb allows one process per data directory. The store holds an advisory file lock
    (``<path>.lock``, the ``filelock`` library: ``flock`` on POSIX) from open to :meth:`close`, so
    processes of one multi-process run (``-i/-a``) take turns instead of failing: each applies the
    schema and reads its history at flow build, then only the process holding the sink partition
    opens it while the flow runs.

    Parameters
    ----------
    path : Path
        The chdb data directory (created when missing).
    lock_timeout_s : float
        Longest wait in seconds for another process to release the directory.

    Raises
    ------
    SinkFatalError
        The directory stayed locked by another process for ``lock_timeout_s``, or cannot be opened.
    """

    def __init__(self, path: Path, *, lock_timeout_s: float = CHDB_LOCK_TIMEOUT_S) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(path.with_name(path.name + ".lock"), thread_local=False)
        try:
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                log.info("waiting up to %.0f s for another process to release %s", lock_timeout_s, path)
                waited = time.perf_counter()
                self._lock.acquire(timeout=lock_timeout_s)
                log.info("%s: the other process released it after %.1f s", path,
                         time.perf_counter() - waited)
        except Timeout as exc:
            msg = (f"embedded ClickHouse at {path} stayed in use by another process for "
                   f"{lock_timeout_s:.0f} s (lock {self._lock.lock_file}); stop it or use another "
                   "IFD_DATA_DIR")
            raise SinkFatalError(msg) from exc

        def open_session() -> Any:
            from chdb import session  # imported lazily: it loads a large engine

            return session.Session(str(path))

        try:
            self._session = on_chdb_thread(open_session)
        except Exception as exc:  # chdb raises plain RuntimeError
            self._lock.release()
            msg = f"cannot open embedded ClickHouse at {path} (one process per directory): {exc}"
            raise SinkFatalError(msg) from exc
        self.path = path

    def command(self, sql: str) -> None:
        """Run one statement."""
        try:
            on_chdb_thread(lambda: self._session.query(sql))
        except Exception as exc:
            raise _classify(exc, "chdb statement") from exc

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Run a query; result as Arrow; ``parameters`` bound to ``{name:Type}`` placeholders."""
        try:
            data = on_chdb_thread(lambda: self._session.query(sql, "ArrowStream", params=parameters).bytes())
        except Exception as exc:
            raise _classify(exc, "chdb query") from exc
        if not data:
            return pa.table({})
        return pa.ipc.open_stream(pa.BufferReader(data)).read_all()

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str) -> None:
        """Insert an Arrow table through chdb's ``Python()`` table function.

        ClickHouse cannot bind identifiers or ``SETTINGS`` values, so the table, column
        names and token are checked first (plain identifiers; token of ``[A-Za-z0-9_.:-]``).

        Raises
        ------
        SinkFatalError
            A name or the token has a character outside those sets.
        """
        names = [table, *data.column_names]
        if not all(_IDENTIFIER.fullmatch(n) for n in names) or not _TOKEN.fullmatch(dedup_token):
            msg = f"refusing insert into {table!r}: table, columns and token must be plain identifiers"
            raise SinkFatalError(msg)
        cols = ", ".join(data.column_names)
        sql = (
            f"INSERT INTO {table} ({cols}) "  # noqa: S608 - identifiers checked above
            f"SETTINGS insert_deduplication_token = '{dedup_token}' "
            f"SELECT {cols} FROM Python(data)"
        )

        def insert(data: pa.Table = data) -> None:
            self._session.query(sql)  # chdb resolves `data` in this frame

        try:
            on_chdb_thread(insert)
        except Exception as exc:
            raise _classify(exc, f"insert into {table}") from exc

    def close(self) -> None:
        """Close the session, then release the directory lock (idempotent)."""
        if self._lock.is_locked:
            try:
                on_chdb_thread(self._session.close)
            finally:
                self._lock.release()


class ServerStore:
    """A ClickHouse server over HTTP(S) via clickhouse-connect.

    Parameters
    ----------
    url : str
        ``http(s)://user:password@host:port/database``; never logged.
        User and password are percent-decoded (a ``@`` or ``:`` in a password
        is written ``%40``/``%3A``); the path, when given, is the session's
        default database (the project's tables are always named ``ifd.*``).
    """

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                username=unquote(parts.username) if parts.username else "default",
                password=unquote(parts.password) if parts.password else "",
                secure=parts.scheme == "https",
                database=unquote(parts.path.strip("/")) or "default",
            )
        except Exception as exc:
            where = f"{parts.scheme}://{parts.hostname}:{parts.port}"
            msg = f"cannot connect to ClickHouse at {where}: {type(exc).__name__}"
            raise SinkRetryableError(msg) from None

    def command(self, sql: str) -> None:
        """Run one statement."""
        try:
            self._client.command(sql)
        except Exception as exc:
            raise _classify(exc, "ClickHouse statement") from exc

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Run a query; result as Arrow; ``parameters`` bound to ``{name:Type}`` placeholders."""
        try:
            return self._client.query_arrow(sql, parameters=parameters)
        except Exception as exc:
            raise _classify(exc, "ClickHouse query") from exc

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str) -> None:
        """Columnar insert with a deduplication token."""
        try:
            self._client.insert_arrow(
                table, data, settings={"insert_deduplication_token": dedup_token}
            )
        except Exception as exc:
            raise _classify(exc, f"insert into {table}") from exc

    def close(self) -> None:
        """Close the HTTP pool."""
        self._client.close()


TOOL_LOCK_TIMEOUT_S = 5.0
"""How long a command-line reader waits for embedded chdb held by a running flow."""


def open_store(settings: Settings, *, lock_timeout_s: float = CHDB_LOCK_TIMEOUT_S) -> ClickHouseStore:
    """Open the configured store (server when ``IFD_CLICKHOUSE_URL`` is set).

    ``lock_timeout_s`` bounds the wait for another process holding embedded chdb (see
    :class:`ChdbStore`); command-line readers pass :data:`TOOL_LOCK_TIMEOUT_S`.
    """
    if settings.clickhouse_url is not None:
        return ServerStore(settings.clickhouse_url.get_secret_value())
    return ChdbStore(settings.effective_chdb_path, lock_timeout_s=lock_timeout_s)


def schema_statements() -> list[str]:
    """Return the DDL of ``sinks/schema.sql`` with the shared formulas rendered in."""
    text = resources.files("sinks").joinpath("schema.sql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    text = text.replace("{{DOMINANT_SIDE}}", sql_dominant_side("bid_volume", "ask_volume"))
    text = text.replace(
        "{{DOMINANCE_CONFIDENCE}}",
        sql_dominance_confidence("bid_volume", "ask_volume", "total_volume", "total_trades"),
    )
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


PARTS_SORTING_KEY = "window_start, source, batch_seq, instrument_id, first_trade_ts"
"""Identity of a stored part (``sinks/schema.sql``)."""


def apply_schema(store: ClickHouseStore) -> None:
    """Create database, tables and views if missing (views are replaced).

    A ``ifd.pressure_parts`` written by an older version (parts identified by
    contract key and file name) is renamed aside to
    ``ifd.pressure_parts_legacy`` with a warning: its rows would otherwise be
    counted beside the re-identified rows of a re-run.
    """
    found = store.query_arrow(
        "SELECT sorting_key FROM system.tables WHERE database = 'ifd' AND name = 'pressure_parts'")
    if found.num_rows and found.column(0)[0].as_py() != PARTS_SORTING_KEY:
        store.command("DROP TABLE IF EXISTS ifd.pressure_parts_legacy")
        store.command("RENAME TABLE ifd.pressure_parts TO ifd.pressure_parts_legacy")
        log.warning("ifd.pressure_parts had the old part identity (%s); renamed to "
                    "ifd.pressure_parts_legacy: replay the inputs to rebuild it",
                    found.column(0)[0].as_py())
    for statement in schema_statements():
        store.command(statement)


def _ts(values: list[int] | np.ndarray, unit: str = "ns") -> pa.Array:
    """int64 ns since epoch → Arrow UTC timestamp (``unit`` ns or ms).

    Built as int64 and re-typed with ``view`` (zero-copy): pyarrow's direct
    int → timestamp conversion goes element by element, and ``cast`` to a
    coarser unit checks every value (~5 ms per 20 k rows, 250× the view).
    """
    arr = np.asarray(values, dtype=np.int64)
    if unit == "ms":
        arr = arr // 1_000_000
    return pa.array(arr, type=pa.int64()).view(pa.timestamp(unit, tz="UTC"))


def _strings(values: np.ndarray) -> pa.Array:
    """Arrow strings from an object array of ``str``.

    ``from_pandas=True`` takes pyarrow's pandas conversion path, ~25x faster than the default
    on object arrays (0.8 vs 23 ms for 21,000 keys, measured here); it would read NaN as null,
    which these columns never hold.
    """
    return pa.array(values, pa.string(), from_pandas=True)


def parts_table(block: PartBlock) -> pa.Table:
    """Arrow block for ``ifd.pressure_parts`` (column names = table columns), zero-copy where possible."""
    c = block.cols
    expiration = c["expiration_ns"]
    strike = c["strike_price"]
    return pa.table(
        {
            "window_start": _ts(c["window_start_ns"], "ms"),
            "window_end": _ts(c["window_start_ns"] + block.window_ns, "ms"),
            "contract_key": _strings(c["contract_key"]),
            "source": _strings(c["source"]),
            "batch_seq": pa.array(c["seq"], pa.uint64()),
            "instrument_id": pa.array(c["instrument_id"], pa.uint32()),
            "symbol": _strings(c["symbol"]),
            "underlying": _strings(c["underlying"]),
            "expiration": pa.array(expiration // 1_000_000, pa.int64(), mask=expiration < 0)
            .view(pa.timestamp("ms", tz="UTC")),
            "strike": pa.array(strike / FIXED_PRICE_SCALE, pa.float64(),
                               mask=strike == UNDEF_PRICE),
            "option_type": _strings(c["option_type"]),
            "defined": pa.array(c["defined"].astype(np.uint8), pa.uint8()),
            **{name: pa.array(c[name], pa.uint64()) for name in _VOLUME_COLUMNS},
            "notional": pa.array(c["notional"], pa.float64()),
            "max_trade_size": pa.array(c["max_trade_size"], pa.uint64()),
            "first_trade_ts": _ts(c["first_ts_ns"]),
            "last_trade_ts": _ts(c["last_ts_ns"]),
            "late": pa.array(c["late"].astype(np.uint8), pa.uint8()),
            "multiplier": pa.array(c["multiplier"], pa.float64(), mask=np.isnan(c["multiplier"])),
        }
    )


_VOLUME_COLUMNS = (
    "bid_volume", "ask_volume", "unknown_volume", "buy_trades", "sell_trades",
    "unknown_trades", "flag_volume", "quote_volume", "tick_volume", "spread_volume",
    "sweep_volume", "block_volume", "block_trades",
)


def _map(dicts: list[dict[str, int]]) -> pa.Array:
    return pa.array([list(d.items()) for d in dicts], type=pa.map_(pa.string(), pa.uint64()))


def stats_table(stats: list[BatchStats]) -> pa.Table:
    """Arrow block for ``ifd.ingest_batches``."""
    return pa.table(
        {
            "source": pa.array([s.source for s in stats], pa.string()),
            "batch_seq": pa.array([s.seq for s in stats], pa.uint64()),
            "records": pa.array([s.records for s in stats], pa.uint64()),
            "trades": pa.array([s.trades for s in stats], pa.uint64()),
            "undefined_instrument_trades": pa.array(
                [s.undefined_instrument_trades for s in stats], pa.uint64()
            ),
            "dead_letters": pa.array([sum(s.dead_letters.values()) for s in stats], pa.uint64()),
            "dead_letter_reasons": _map([s.dead_letters for s in stats]),
            "skipped": _map([s.skipped for s in stats]),
            "bytes_read": pa.array([s.bytes_read for s in stats], pa.uint64()),
            "total_bytes": pa.array([s.total_bytes for s in stats], pa.uint64()),
            "max_ts_event": _ts([s.max_ts_event for s in stats]),
            "file": pa.array([s.path for s in stats], pa.string()),
            "error": pa.array([s.error for s in stats], pa.string()),
            "live": pa.array([int(s.live) for s in stats], pa.uint8()),
            "processed_at": _ts([s.processed_ns or time.time_ns() for s in stats], "ms"),
        }
    )


def dead_letters_table(blocks: list[DeadLetters]) -> pa.Table:
    """Arrow block for ``ifd.dead_letters``."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    sources = [b.source for b in blocks for _ in range(len(b))]
    return pa.table(
        {
            "source": pa.array(sources, pa.string()),
            "record_index": pa.array(cat("position"), pa.uint64()),
            "reason": pa.array(cat("reason").astype(str), pa.string()),
            "rtype": pa.array(cat("rtype"), pa.uint8()),
            "instrument_id": pa.array(cat("instrument_id"), pa.uint32()),
            "ts_event": _ts(cat("ts_event")),
            "price_raw": pa.array(cat("price"), pa.int64()),
            "size": pa.array(cat("size"), pa.int64()),
        }
    )


def usage_table(rows: list[UsageRow]) -> pa.Table:
    """Arrow block for ``ifd.usage``."""
    return pa.table({
        "minute": pa.array([r.minute_s for r in rows], pa.int64()).view(pa.timestamp("s", tz="UTC")),
        "source": pa.array([r.source for r in rows], pa.string()),
        "records": pa.array([r.records for r in rows], pa.uint64()),
        "bytes": pa.array([r.bytes for r in rows], pa.uint64()),
        "est_cost_usd": pa.array([r.est_cost_usd for r in rows], pa.float64()),
        "reconnects": pa.array([r.reconnects for r in rows], pa.uint32()),
        "lag_ms": pa.array([r.lag_ms for r in rows], pa.float64()),
        "last_error": pa.array([r.last_error for r in rows], pa.string()),
        "mode": pa.array([r.mode for r in rows], pa.string()),
    })


def backfills_table(rows: list[BackfillRow]) -> pa.Table:
    """Arrow block for ``ifd.backfills``."""
    def ns(values: list[int], unit: str) -> pa.Array:
        return pa.array(values, pa.int64()).view(pa.timestamp(unit, tz="UTC"))

    return pa.table({
        "requested_at": ns([r.requested_ns // 1_000_000 for r in rows], "ms"),
        "source": pa.array([r.source for r in rows], pa.string()),
        "dataset": pa.array([r.dataset for r in rows], pa.string()),
        "schema": pa.array([r.schema for r in rows], pa.string()),
        "symbols": pa.array([r.symbols for r in rows], pa.string()),
        "range_start": ns([r.start_ns for r in rows], "ns"),
        "range_end": ns([r.end_ns for r in rows], "ns"),
        "cost_usd": pa.array([r.cost_usd for r in rows], pa.float64()),
        "budget_usd": pa.array([r.budget_usd for r in rows], pa.float64()),
        "outcome": pa.array([r.outcome for r in rows], pa.string()),
        "records": pa.array([r.records for r in rows], pa.uint64()),
        "duplicates": pa.array([r.duplicates for r in rows], pa.uint64()),
        "seconds": pa.array([r.seconds for r in rows], pa.float64()),
        "error": pa.array([r.error for r in rows], pa.string()),
        "kind": pa.array([r.kind for r in rows], pa.string()),
    })


def signals_table(signals: list[Signal]) -> pa.Table:
    """Arrow block for ``ifd.ifd_signals`` (field names = table columns)."""
    rows = [sig.model_dump(mode="python") for sig in signals]
    columns = {name: [r[name] for r in rows] for name in Signal.model_fields}
    for name in ("window_start", "window_end", "expiration"):
        columns[name] = pa.array(columns[name], pa.timestamp("ms", tz="UTC"))
    for name in ("direction", "signal_class", "sentiment"):
        columns[name] = [str(v) for v in columns[name]]
    return pa.table(columns)


HISTORY_SQL = """
SELECT contract_key, toUnixTimestamp(window_start) AS window_start_s, total_volume,
       total_trades, abs(toInt64(ask_volume) - toInt64(bid_volume)) AS abs_imbalance
FROM ifd.pressure_metrics
WHERE window_start >= fromUnixTimestamp({since_s:Int64}) AND window_start < fromUnixTimestamp({until_s:Int64})
"""


def load_history(store: ClickHouseStore, since_s: int, until_s: int) -> pa.Table:
    """Read closed windows in ``[since_s, until_s)`` (s since epoch UTC) for baselines.

    Returns
    -------
    pyarrow.Table
        contract_key, window_start_s, total_volume, total_trades, abs_imbalance.
    """
    return store.query_arrow(HISTORY_SQL, {"since_s": int(since_s), "until_s": int(until_s)})


def _token(table: str, *identity: np.ndarray | pa.ChunkedArray | Sequence[object]) -> str:
    """Deduplication token from the identities of a block's rows (arrays, Arrow columns or lists).

    Arrow columns are hashed through their buffers (validity, offsets, bytes) without a
    round trip to Python strings.
    """
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    for part in identity:
        if isinstance(part, np.ndarray) and part.dtype != object:
            digest.update(part.tobytes())
        elif isinstance(part, pa.ChunkedArray):
            for chunk in part.chunks:
                for buffer in chunk.buffers():
                    if buffer is not None:
                        digest.update(buffer)
        else:
            digest.update("\x1f".join(map(str, part)).encode())
    return digest.hexdigest()


def _encode_parts(blocks: list[PartBlock]) -> tuple[pa.Table, str]:
    block = PartBlock.concat(blocks)
    c = block.cols
    # identity + resolution: a retry is dropped, a re-resolved row replaces the old one
    table = parts_table(block)
    token = _token("ifd.pressure_parts", c["window_start_ns"], c["seq"], c["instrument_id"],
                   c["first_ts_ns"], table.column("source"), table.column("contract_key"))
    return table, token


def _encode_stats(stats: list[BatchStats]) -> tuple[pa.Table, str]:
    return stats_table(stats), _token("ifd.ingest_batches", [(s.source, s.seq) for s in stats])


def _encode_dead_letters(blocks: list[DeadLetters]) -> tuple[pa.Table, str]:
    token = _token("ifd.dead_letters", [(b.source, int(b.position[0]), len(b)) for b in blocks])
    return dead_letters_table(blocks), token


def open_interest_table(blocks: list[OpenInterestRows]) -> pa.Table:
    """Arrow block for ``ifd.open_interest``."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    return pa.table({
        "session_day": pa.array(cat("session_day").astype(np.int32), pa.int32()).cast(pa.date32()),
        "contract_key": pa.array(cat("contract_key").tolist(), pa.string()),
        "instrument_id": pa.array(cat("instrument_id"), pa.uint32()),
        "symbol": pa.array(cat("symbol").tolist(), pa.string()),
        "ts_event": _ts(cat("ts_event")),
        "open_interest": pa.array(cat("open_interest"), pa.uint64()),
        "source": pa.array([b.source for b in blocks for _ in range(len(b))], pa.string()),
    })


def _encode_open_interest(blocks: list[OpenInterestRows]) -> tuple[pa.Table, str]:
    token = _token("ifd.open_interest", [(b.source, int(b.ts_event[0]), len(b)) for b in blocks])
    return open_interest_table(blocks), token


def footprint_table(blocks: list[FootprintRows]) -> pa.Table:
    """Arrow block for ``ifd.footprint_parts``."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    return pa.table({
        "window_start": _ts(cat("window_start_ns"), unit="ms"),
        "contract_key": pa.array(cat("contract_key").tolist(), pa.string()),
        "instrument_id": pa.array(cat("instrument_id"), pa.uint32()),
        "price": pa.array(cat("price") / FIXED_PRICE_SCALE, pa.float64()),
        "source": pa.array([b.source for b in blocks for _ in range(len(b))], pa.string()),
        "batch_seq": pa.array(np.concatenate([np.full(len(b), b.seq, dtype=np.uint64)
                                              for b in blocks]), pa.uint64()),
        "bid_volume": pa.array(cat("bid_volume"), pa.uint64()),
        "ask_volume": pa.array(cat("ask_volume"), pa.uint64()),
        "unknown_volume": pa.array(cat("unknown_volume"), pa.uint64()),
        "trades": pa.array(cat("trades"), pa.uint64()),
    })


def _encode_footprint(blocks: list[FootprintRows]) -> tuple[pa.Table, str]:
    token = _token("ifd.footprint_parts", [(b.source, b.seq, len(b)) for b in blocks])
    return footprint_table(blocks), token


_STATE_RANK = {"active": 0, "exhausted": 1, "cancelled": 2}


def icebergs_table(blocks: list[IcebergRows]) -> pa.Table:
    """Arrow block for ``ifd.icebergs`` (``version`` = last_ts · 4 + state rank)."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    last_ts = cat("last_ts")
    rank = np.array([_STATE_RANK.get(s, 3) for s in cat("state").tolist()], dtype=np.uint64)
    return pa.table({
        "contract_key": pa.array(cat("contract_key").tolist(), pa.string()),
        "instrument_id": pa.array(cat("instrument_id"), pa.uint32()),
        "kind": pa.array(cat("kind").tolist(), pa.string()),
        "side": pa.array(cat("side").tolist(), pa.string()),
        "price": pa.array(cat("price") / FIXED_PRICE_SCALE, pa.float64()),
        "order_id": pa.array(cat("order_id"), pa.uint64()),
        "first_ts": _ts(cat("first_ts")),
        "last_ts": _ts(last_ts),
        "refills": pa.array(cat("refills"), pa.uint32()),
        "peak_size": pa.array(cat("peak_size"), pa.uint64()),
        "executed": pa.array(cat("executed"), pa.uint64()),
        "estimated_total": pa.array(cat("estimated_total"), pa.uint64()),
        "state": pa.array(cat("state").tolist(), pa.string()),
        "version": pa.array(last_ts.astype(np.uint64) * 4 + rank, pa.uint64()),
        "source": pa.array([b.source for b in blocks for _ in range(len(b))], pa.string()),
    })


def _encode_icebergs(blocks: list[IcebergRows]) -> tuple[pa.Table, str]:
    token = _token("ifd.icebergs", [(b.source, b.seq, len(b)) for b in blocks])
    return icebergs_table(blocks), token


def absorption_table(blocks: list[AbsorptionRows]) -> pa.Table:
    """Arrow block for ``ifd.absorption`` (``window_start``: the window of the first fill)."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in blocks])

    first, last = cat("first_ts"), cat("last_ts")
    return pa.table({
        "window_start": _ts(cat("window_start_ns"), unit="ms"),
        "contract_key": pa.array(cat("contract_key").tolist(), pa.string()),
        "instrument_id": pa.array(cat("instrument_id"), pa.uint32()),
        "side": pa.array(cat("side").tolist(), pa.string()),
        "price": pa.array(cat("price") / FIXED_PRICE_SCALE, pa.float64()),
        "absorbed": pa.array(cat("absorbed"), pa.uint64()),
        "start_size": pa.array(cat("start_size"), pa.uint64()),
        "fills": pa.array(cat("fills"), pa.uint64()),
        "first_ts": _ts(first),
        "last_ts": _ts(last),
        "duration_s": pa.array((last - first) / 1e9, pa.float64()),
        "outcome": pa.array(cat("outcome").tolist(), pa.string()),
        "source": pa.array([b.source for b in blocks for _ in range(len(b))], pa.string()),
    })


def _encode_absorption(blocks: list[AbsorptionRows]) -> tuple[pa.Table, str]:
    token = _token("ifd.absorption", [(b.source, b.seq, len(b)) for b in blocks])
    return absorption_table(blocks), token


def _encode_signals(signals: list[Signal]) -> tuple[pa.Table, str]:
    return signals_table(signals), _token("ifd.ifd_signals", [s.alert_key for s in signals])


def _encode_usage(rows: list[UsageRow]) -> tuple[pa.Table, str]:
    return usage_table(rows), _token("ifd.usage", [(u.source, u.minute_s) for u in rows])


def latency_table(rows: list[LatencyRow]) -> pa.Table:
    """Arrow block for ``ifd.latency``."""
    return pa.table({
        "minute": pa.array([r.minute_s for r in rows], pa.int64()).view(pa.timestamp("s", tz="UTC")),
        "stage": pa.array([r.stage for r in rows], pa.string()),
        "process": pa.array([r.process for r in rows], pa.string()),
        "samples": pa.array([r.samples for r in rows], pa.uint64()),
        **{name: pa.array([getattr(r, name) for r in rows], pa.float64())
           for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")},
    })


def _encode_latency(rows: list[LatencyRow]) -> tuple[pa.Table, str]:
    return latency_table(rows), _token("ifd.latency",
                                       [(r.minute_s, r.stage, r.process) for r in rows])


def _encode_backfills(rows: list[BackfillRow]) -> tuple[pa.Table, str]:
    return backfills_table(rows), _token("ifd.backfills",
                                         [(r.source, r.requested_ns, r.start_ns) for r in rows])


@dataclass(frozen=True)
class TableSpec:
    """How one kind of sink item becomes rows of one table.

    Attributes
    ----------
    table : str
        Target table (``sinks/schema.sql``).
    item_type : type
        The sink item buffered for it.
    encode : callable
        ``list[item] -> (pyarrow.Table, dedup_token)``; the token is a function of the rows'
        identities, so a retried or replayed block is dropped by ClickHouse.
    rows : callable
        Rows one item adds (the flush threshold counts these).
    """

    table: str
    item_type: type
    encode: Callable[[list[Any]], tuple[pa.Table, str]]
    rows: Callable[[Any], int] = lambda _item: 1


TABLES: tuple[TableSpec, ...] = (
    TableSpec("ifd.pressure_parts", PartBlock, _encode_parts, len),
    TableSpec("ifd.ingest_batches", BatchStats, _encode_stats),
    TableSpec("ifd.dead_letters", DeadLetters, _encode_dead_letters, len),
    TableSpec("ifd.open_interest", OpenInterestRows, _encode_open_interest, len),
    TableSpec("ifd.footprint_parts", FootprintRows, _encode_footprint, len),
    TableSpec("ifd.icebergs", IcebergRows, _encode_icebergs, len),
    TableSpec("ifd.absorption", AbsorptionRows, _encode_absorption, len),
    TableSpec("ifd.ifd_signals", Signal, _encode_signals),
    TableSpec("ifd.usage", UsageRow, _encode_usage),
    TableSpec("ifd.backfills", BackfillRow, _encode_backfills),
    TableSpec("ifd.latency", LatencyRow, _encode_latency),
)
"""Every table the dataflow writes, in flush order (parts before the counters that describe them)."""

WriterItem = (PartBlock | BatchStats | DeadLetters | OpenInterestRows | FootprintRows
              | IcebergRows | AbsorptionRows | Signal | UsageRow | BackfillRow
              | LatencyRow)


class IFDWriter:
    """Buffered, idempotent, retrying writer of the dataflow's outputs, one buffer per :data:`TABLES` entry.

    Parameters
    ----------
    store : ClickHouseStore
    batch_rows : int
        Flush once a table's buffer holds this many rows.
    max_attempts : int
        Attempts per insert before giving up.
    backoff_initial_s : float
        First retry delay; doubles per attempt up to 10 s, plus up to the same
        amount of random jitter.

    pipelined : bool
        Insert on a writer thread, one block in flight while the caller goes on building the
        next (the flow's Python work overlaps the engine's native insert work). ``flush`` waits
        for every insert, so a caller that flushes before it snapshots never covers rows that
        are not stored. Default off: every insert finishes inside ``add``/``flush``.

    Raises
    ------
    SinkFatalError
        From ``add``/``flush`` when an insert fails with a non-retryable error, or a
        retryable one persists past ``max_attempts`` (pipelined: from the next ``add`` that
        flushes, or from ``flush``/``close``).
    TypeError
        From ``add``: the item has no table in :data:`TABLES`.
    """

    def __init__(self, store: ClickHouseStore, *, batch_rows: int = 20_000,
                 max_attempts: int = 6, backoff_initial_s: float = 0.2,
                 pipelined: bool = False, latency: LatencyMeter | None = None) -> None:
        self.store = store
        self.latency = latency
        self.batch_rows = batch_rows
        self._executor = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="ifd-writer")
                          if pipelined else None)
        self._in_flight: tuple[Future[None], str, int] | None = None
        self._spec = {spec.item_type: spec for spec in TABLES}
        self._buffers: dict[str, list[Any]] = {spec.table: [] for spec in TABLES}
        self._rows: dict[str, int] = dict.fromkeys(self._buffers, 0)
        self.rows_written: dict[str, int] = {}
        self._insert = retry(
            retry=retry_if_exception_type(SinkRetryableError),
            wait=wait_exponential(multiplier=backoff_initial_s, max=10.0)
            + wait_random(0, backoff_initial_s),
            stop=stop_after_attempt(max_attempts),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "retrying insert (attempt %d): %s", rs.attempt_number,
                rs.outcome.exception() if rs.outcome else None,
            ),
        )(self._insert_once)

    def _insert_once(self, table: str, data: pa.Table, token: str) -> None:
        self.store.insert_arrow(table, data, dedup_token=token)

    def add(self, item: WriterItem) -> None:
        """Buffer one item in its table's buffer; flushes that table once it holds ``batch_rows``."""
        spec = self._spec.get(type(item))
        if spec is None:
            msg = f"no ClickHouse table for {type(item).__name__}"
            raise TypeError(msg)
        if isinstance(item, BatchStats) and not item.processed_ns:
            item = dataclasses.replace(item, processed_ns=time.time_ns())  # processing done
        self._buffers[spec.table].append(item)
        self._rows[spec.table] += spec.rows(item)
        if self._rows[spec.table] >= self.batch_rows:
            self._flush_table(spec)

    @property
    def pending(self) -> int:
        """Rows buffered and not yet written."""
        return sum(self._rows.values())

    def flush(self, *, wait: bool = True) -> None:
        """Write every buffer, in :data:`TABLES` order; ``wait``: until every insert is stored.

        ``wait=False`` (pipelined) leaves the last block in flight.
        """
        for spec in TABLES:
            self._flush_table(spec)
        if wait:
            self._wait()

    def close(self) -> None:
        """Flush, then stop the writer thread (pipelined)."""
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)

    def _flush_table(self, spec: TableSpec) -> None:
        items = self._buffers[spec.table]
        if not items:
            return
        data, token = spec.encode(items)
        window_ends = self._window_ends(spec, items)
        if self._executor is None:
            self._insert_checked(spec.table, data, token, window_ends)
            self._buffers[spec.table], self._rows[spec.table] = [], 0
            self._count(spec.table, data.num_rows)
            return
        self._buffers[spec.table], self._rows[spec.table] = [], 0
        self._wait()  # one block in flight: the next waits for it
        future = self._executor.submit(self._insert_checked, spec.table, data, token, window_ends)
        self._in_flight = (future, spec.table, data.num_rows)

    def _window_ends(self, spec: TableSpec, items: list[Any]) -> np.ndarray | None:
        """Window ends (ns) of the closed (not late) window blocks in ``items``, when measured."""
        if self.latency is None or spec.item_type is not PartBlock:
            return None
        ends = [b.window_start_ns + b.window_ns for b in items
                if b.window_start_ns is not None and len(b) and not b.cols["late"].any()]
        return np.asarray(ends, dtype=np.int64)

    def _insert_checked(self, table: str, data: pa.Table, token: str,
                        window_ends: np.ndarray | None = None) -> None:
        try:
            self._insert(table, data, token)
        except SinkRetryableError as exc:
            msg = f"giving up on insert into {table} after retries: {exc}"
            raise SinkFatalError(msg) from exc
        if window_ends is not None and self.latency is not None and len(window_ends):
            now_ns = time.time_ns()
            ended = window_ends[window_ends <= now_ns]  # a stop flushes windows not yet ended
            self.latency.record("window_written", now_ns / 1e9, (now_ns - ended) / 1e6)

    def _wait(self) -> None:
        if self._in_flight is None:
            return
        future, table, rows = self._in_flight
        self._in_flight = None
        future.result()  # re-raises the insert's error here
        self._count(table, rows)

    def _count(self, table: str, rows: int) -> None:
        self.rows_written[table] = self.rows_written.get(table, 0) + rows
