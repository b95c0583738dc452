"""Live Databento feed: reconnect with gap replay, de-duplication, budget guard, sessions.

``databento.Live`` reconnects without replaying what was missed, so this feed
runs its own loop (Databento docs, "Live data: Intraday replay"):

1. Connect, subscribe ``definition`` + the trade schema (parent symbology,
   ``IFD_LIVE_SYMBOLS``). After a drop, resubscribe with intraday replay from
   the resume position minus ``IFD_LIVE_REPLAY_OVERLAP_S``; the position moves
   on every data record, definitions included (:mod:`connectors.live_resume`).
2. On a replay connection, records byte-identical to ones already accepted
   are dropped, counted once per accepted copy; first deliveries are never
   de-duplicated. Aggregates equal those of an unbroken session.
3. Records are emitted as whole ``ts_recv`` seconds (sealed by a later
   second, a gateway heartbeat, or closing), one :class:`SourceBatch` per
   piece with ``seq = second * 4096 + split``: stored parts keep a stable,
   collision-free identity.
4. Backoff between attempts is exponential with full jitter, capped by
   ``IFD_LIVE_RECONNECT_MAX_S``, for at most ``IFD_LIVE_RECONNECT_MAX_ATTEMPTS``
   attempts in a row.

| gateway message                          | handling                                         |
|------------------------------------------|--------------------------------------------------|
| ErrorMsg AUTH_FAILED / API_KEY_DEACTIVATED| fatal :class:`LiveAuthError` (how to fix)         |
| ErrorMsg SYMBOL_RESOLUTION_FAILED / INVALID_SUBSCRIPTION | fatal :class:`LiveConfigError`   |
| ErrorMsg REPLAY_DATA_AGED_OUT             | fatal: gap beyond the intraday-replay horizon    |
| ErrorMsg CONNECTION_LIMIT_EXCEEDED, INTERNAL_ERROR,  | reconnect with replay                  |
| SKIPPED_RECORDS_AFTER_SLOW_READING, other           |                                        |
| SystemMsg HEARTBEAT                       | liveness; seals the open ``ts_recv`` second       |
| SystemMsg SLOW_READER_WARNING             | counted and logged                                |
| SystemMsg SUBSCRIPTION_ACK / REPLAY_COMPLETED | logged                                        |
| SymbolMappingMsg (stamped "now" by the gateway) | counted (``symbol_mappings``), not emitted |
| no record or heartbeat for heartbeat + grace | connection considered dead: reconnect         |
| ``F_MAYBE_BAD_BOOK`` flag on a record     | counted (``maybe_bad_book``)                      |

**Budget** (:class:`BudgetMeter`): bytes received and connected time per UTC
day, priced with ``IFD_LIVE_COST_PER_GB_USD`` and ``IFD_LIVE_COST_PER_HOUR_USD``
(placeholders: set your plan's rates). At ``IFD_LIVE_BUDGET_STOP_FRACTION`` of
``IFD_LIVE_DAILY_BUDGET_USD`` the stream is closed and stays closed until the
next UTC day, so 100 % is never reached.

**Sessions** (:class:`MarketSessions`, exchange_calendars): ``globex`` = CME
Globex equity sessions (``CMES``, holidays and early closes), ``rth`` = the
seeds' 09:30-16:00 ET (``XNYS``), ``always`` = no calendar. Outside a
session the feed holds no connection and wakes at the next open.

**Stopping**: :meth:`LiveFeed.request_stop` (SIGINT/SIGTERM in the dataflow)
closes the connection, emits every record already received, and finishes.

The API key is never logged, stored or put in exceptions; databento's own
DEBUG logging of the CRAM response is filtered.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import databento_dbn as dbn
import numpy as np

from connectors.dbn import (
    SCHEMA_RTYPE,
    DecodedChunk,
    SourceBatch,
    decode_records,
)
from connectors.live_resume import (
    DATA,
    DEFINITIONS,
    GATEWAY_RTYPES,
    RTYPE_SYMBOL_MAPPING,
    LiveResume,
    LiveSequencer,
    Unit,
)
from models.errors import ConfigError, SourceError
from models.records import F_MAYBE_BAD_BOOK, UsageRow
from models.redact import SecretFilter
from models.settings import LiveSettings

log = logging.getLogger(__name__)

NS = 1_000_000_000
RECORDS_PER_UNIT_MAX = 1 << 20
"""Dead letters of a live unit are numbered ``unit_id * RECORDS_PER_UNIT_MAX + index``."""
_SEAL = b""


class LiveAuthError(ConfigError):
    """The gateway rejected the API key (exit code 3)."""

    exit_code = 3


class LiveConfigError(ConfigError):
    """The subscription cannot work: unknown symbols, bad schema, gap beyond replay (exit code 4)."""

    exit_code = 4


def _databento_loggers() -> list[str]:
    """Every databento logger (filters do not propagate to child loggers)."""
    import databento  # noqa: F401 - registers its loggers

    names = [n for n in logging.root.manager.loggerDict if n.startswith("databento")]
    return sorted({"databento", *names})


@dataclass
class BudgetMeter:
    """Bytes, records and connected seconds per UTC day, priced by a cost model."""

    daily_budget_usd: float
    stop_fraction: float
    cost_per_gb_usd: float
    cost_per_hour_usd: float
    day: int = 0
    bytes: int = 0
    records: int = 0
    connected_s: float = 0.0

    def roll(self, now_s: float) -> None:
        """Start a new day's totals when the UTC day changes (bytes are metered on receipt)."""
        day = int(now_s // 86_400)
        if day != self.day:
            self.day, self.bytes, self.records, self.connected_s = day, 0, 0, 0.0

    def cost_usd(self) -> float:
        """Estimated spend today, USD."""
        return (self.bytes / 1e9 * self.cost_per_gb_usd
                + self.connected_s / 3600 * self.cost_per_hour_usd)

    def exhausted(self) -> bool:
        """Tell whether today's spend reached the stop fraction of the budget."""
        return self.cost_usd() >= self.stop_fraction * self.daily_budget_usd


class MarketSessions:
    """Trading sessions from exchange_calendars (see module docstring for presets)."""

    CALENDARS = {"globex": "CMES", "rth": "XNYS"}

    def __init__(self, preset: str) -> None:
        self.preset = preset
        self._calendar = None
        if preset != "always":
            import exchange_calendars as xc  # heavy import: only when a calendar is used

            self._calendar = xc.get_calendar(self.CALENDARS[preset])

    def is_open(self, now_s: float) -> bool:
        """Whether ``now_s`` (s since epoch UTC) falls inside a session."""
        if self._calendar is None:
            return True
        import pandas as pd

        return bool(self._calendar.is_open_on_minute(pd.Timestamp(int(now_s), unit="s", tz="UTC"),
                                                     ignore_breaks=True))

    def next_open_s(self, now_s: float) -> float:
        """Start of the next session after ``now_s`` (s since epoch UTC)."""
        if self._calendar is None:
            return now_s
        import pandas as pd

        nxt = self._calendar.next_open(pd.Timestamp(int(now_s), unit="s", tz="UTC"))
        return float(nxt.timestamp())


@dataclass
class _Minute:
    minute: int = 0
    records: int = 0
    bytes: int = 0
    lag_sum_ms: float = 0.0
    lag_n: int = 0


class LiveClient(Protocol):
    """The part of :class:`databento.Live` the feed uses (a test gateway client can stand in)."""

    def subscribe(self, dataset: str, schema: str, symbols: list[str], stype_in: str,
                  start: int | None) -> object: ...
    def add_callback(self, record_callback: Callable[[Any], None],
                     exception_callback: Callable[[Exception], None] | None) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def is_connected(self) -> bool: ...


class LiveFeed:
    """A reconnecting Databento live session that yields columnar :class:`SourceBatch` es.

    Parameters
    ----------
    settings : LiveSettings
    resume : LiveResume | None
        From a bytewax snapshot: the first connection replays from its position
        and drops exactly what was emitted before.
    client_factory : callable
        ``databento.Live``-compatible factory (tests point it at a local gateway
        through ``IFD_LIVE_GATEWAY``/``IFD_LIVE_PORT`` instead).
    now : callable
        Wall clock, seconds since epoch.

    notify : callable | None
        ``notify(key, title, body)`` for operational alerts (the budget stop);
        :meth:`sinks.alerts.AlertDispatcher.notify` in the dataflow.

    Raises
    ------
    ConfigError
        Missing ``DATABENTO_API_KEY``; from :meth:`poll`, fatal gateway errors.
    """

    def __init__(
        self,
        settings: LiveSettings,
        *,
        resume: LiveResume | None = None,
        client_factory: Callable[..., LiveClient] | None = None,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        notify: Callable[[str, str, str], object] | None = None,
    ) -> None:
        self.settings = settings
        self._key = settings.key()
        self._client_factory = client_factory
        self._notify = notify
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.source_id = f"live-{settings.dataset}-{'-'.join(settings.symbol_list())}"
        self.trade_rtype = SCHEMA_RTYPE[settings.schema_name]
        if not isinstance(resume, LiveResume | None):
            log.warning("live: recovery snapshot of an older format (%s) ignored: starting fresh",
                        type(resume).__name__)
            resume = None
        self.sequencer = LiveSequencer(int(settings.replay_overlap_s * NS), self.trade_rtype,
                                       settings.batch_records, resume)
        self._replay_on_first_connect = resume is not None
        self.batches = 0
        self.meter = BudgetMeter(settings.daily_budget_usd, settings.budget_stop_fraction,
                                 settings.cost_per_gb_usd, settings.cost_per_hour_usd)
        self.sessions = MarketSessions(settings.session)
        self._client: LiveClient | None = None
        self._lock = threading.Lock()
        self._records: deque[tuple[int, bytes, int, int | None]] = deque()
        """(connection, raw record, ts_event, ts_recv) in arrival order; raw ``_SEAL`` = heartbeat."""
        self._gen = 0
        """Newest connection number; records of any other connection are ignored."""
        self._gen_open = False
        self._received_position: int | None = None
        self._events: deque[dbn.ErrorMsg | dbn.SystemMsg] = deque()
        self._last_heard = 0.0
        self._connected_at = 0.0
        self._attempts = 0
        self._next_attempt_s = 0.0
        self.reconnects = 0
        self.counters: dict[str, int] = {}
        self.last_error = ""
        self.stopped_reason = ""
        self._minute = _Minute()
        self._usage: list[UsageRow] = []
        self._last_data_s = now()
        self._idle_since_s = self._last_data_s
        """Idle-exit baseline: the last new data, or the first connection made after it."""
        self._idle_rebased = False
        self.finished = False
        self._stop_requested = ""
        # the key, and databento's DEBUG lines carrying the CRAM response (it ends with the key's
        # last 5 characters), never reach a log
        self._scrub = SecretFilter([self._key], withhold=[self._key[-5:]]).attach(_databento_loggers())
        for name in _databento_loggers():
            logger = logging.getLogger(name)
            if name == "databento" and logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)  # it logs every symbol mapping at INFO
        if resume is not None and resume.position_ns is not None:
            log.info("live: resuming from the recovery snapshot: position %s",
                     datetime.fromtimestamp(resume.position_ns / NS, UTC).isoformat())
        elif resume is not None:
            log.info("live: recovery snapshot has no data yet: full replay on connect")

    # --- connection -------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _replay_starts(self) -> dict[str, int] | None:
        """``start=`` per subscription kind; None for the very first, live connection."""
        if self._gen == 0 and not self._replay_on_first_connect:
            return None
        with self._lock:
            received = self._received_position
        return self.sequencer.replay_starts(received)

    def _connect(self, now_s: float) -> None:
        s = self.settings
        starts = self._replay_starts()
        data_start = starts[DATA] if starts is not None else None
        if data_start:  # 0 = the whole available history, always within the horizon
            if now_s * NS - data_start > s.replay_horizon_s * NS:
                when = datetime.fromtimestamp(data_start / NS, UTC)
                msg = (f"live gap too long: last processed {when:%Y-%m-%d %H:%M:%SZ} "
                       f"is beyond the {s.replay_horizon_s / 3600:.0f} h intraday-replay horizon; "
                       "backfill it "
                       "with `python -m tools.baseline_job --source …` (Databento Historical) and restart "
                       "without the recovery snapshot")
                raise LiveConfigError(msg)
        if self._client_factory is None:
            import databento

            factory: Callable[..., LiveClient] = databento.Live
        else:
            factory = self._client_factory
        kwargs: dict[str, object] = dict(key=self._key, heartbeat_interval_s=s.heartbeat_interval_s)
        if s.gateway:
            kwargs.update(gateway=s.gateway, port=s.port)
        client = factory(**kwargs)
        gen = self._gen + 1
        try:
            for schema, kind in (("definition", DEFINITIONS), (s.schema_name, DATA)):
                client.subscribe(dataset=s.dataset, schema=schema, symbols=s.symbol_list(),
                                 stype_in=s.stype_in,
                                 start=starts[kind] if starts is not None else None)
            client.add_callback(lambda record: self._on_record(gen, record),
                                self._on_callback_error)
            with self._lock:
                self._gen, self._gen_open = gen, True
            self.sequencer.begin(gen, starts)
            client.start()
        except Exception as exc:
            self._close_quietly(client)
            text = self._scrub.scrub(str(exc))
            if "auth" in text.lower():
                msg = f"Databento rejected the API key ({text}); check DATABENTO_API_KEY"
                raise LiveAuthError(msg) from None
            raise ConnectionError(text) from None
        self._client = client
        self._connected_at = self._last_heard = now_s
        if not self._idle_rebased:
            # a reconnect after a silence gets its full idle time to replay (a stall, a drop)
            self._idle_since_s, self._idle_rebased = max(self._idle_since_s, now_s), True
        if starts is not None:
            shown = {k: datetime.fromtimestamp(v / NS, UTC).isoformat() if v else "start of history"
                     for k, v in starts.items()}
            log.info("live: connected with intraday replay from %s", shown)
        else:
            log.info("live: connected to %s (%s %s)", s.gateway or "Databento", s.schema_name,
                     s.symbols)

    def _on_record(self, gen: int, record: Any) -> None:
        """Client-thread callback: queue one record of connection ``gen`` (see module docstring)."""
        raw = bytes(record)
        with self._lock:
            if gen != self._gen or not self._gen_open:
                self._count("stale_connection_records")  # replayed by the next connection
                return
            self._last_heard = self._now()
            # metered on receipt: what the gateway sent is what is billed
            self.meter.bytes += len(raw)
            self.meter.records += 1
            rtype = raw[1]
            if rtype in GATEWAY_RTYPES:
                if rtype == RTYPE_SYMBOL_MAPPING:
                    self._count("symbol_mappings")
                    return
                if isinstance(record, dbn.SystemMsg) and record.is_heartbeat():
                    self._records.append((gen, _SEAL, 0, None))
                self._events.append(record)
                return
            ts_event = int(record.ts_event)
            ts_recv = getattr(record, "ts_recv", None)
            self._records.append((gen, raw, ts_event, ts_recv))
            if ts_event != 2**64 - 1:
                # received, not yet accepted: a reconnect replays from the newest arrival
                pos = min(ts_event, ts_recv) if ts_recv is not None else ts_event
                if self._received_position is None or pos > self._received_position:
                    self._received_position = pos

    def _on_callback_error(self, exc: Exception) -> None:
        self.last_error = self._scrub.scrub(str(exc))
        log.warning("live: callback error: %s", self.last_error)

    @staticmethod
    def _close_quietly(client: object) -> None:
        for method in ("stop", "terminate"):
            try:
                getattr(client, method)()
                return
            except Exception:  # noqa: BLE001, S112 - best effort on a dead connection
                continue

    def _disconnect(self, now_s: float, reason: str) -> bool:
        """Close the connection (its later callbacks are ignored); True if one was open."""
        with self._lock:
            self._gen_open = False
        if self._client is None:
            return False
        self._close_quietly(self._client)
        self.meter.connected_s += max(0.0, now_s - self._connected_at)
        self._client = None
        log.info("live: disconnected (%s)", reason)
        return True

    def _schedule_reconnect(self, now_s: float, reason: str) -> None:
        self._disconnect(now_s, reason)
        self._attempts += 1
        self.reconnects += 1
        self.last_error = reason
        if self._attempts > self.settings.reconnect_max_attempts:
            msg = (f"live: giving up after {self.settings.reconnect_max_attempts} reconnect attempts; "
                   f"last error: {reason}")
            raise SourceError(msg)
        delay = min(self.settings.reconnect_max_s,
                    self.settings.reconnect_initial_s * 2 ** (self._attempts - 1))
        delay = self._rng.uniform(0, delay)  # full jitter
        self._next_attempt_s = now_s + delay
        log.warning("live: %s; reconnect attempt %d in %.2f s", reason, self._attempts, delay)

    def backoff_delay_s(self) -> float:
        """Seconds until the next connection attempt (0 when connected or due)."""
        return max(0.0, self._next_attempt_s - self._now())

    # --- events -------------------------------------------------------------------------
    def _handle_events(self, now_s: float) -> None:
        while True:
            with self._lock:
                if not self._events:
                    return
                event = self._events.popleft()
            if isinstance(event, dbn.ErrorMsg):
                self._handle_error(event, now_s)
            else:
                code = getattr(event, "code", None)
                if code == dbn.SystemCode.SLOW_READER_WARNING:
                    self._count("slow_reader_warnings")
                    log.warning("live: gateway says we read too slowly: %s", event.msg)
                elif code != dbn.SystemCode.HEARTBEAT:
                    log.info("live: gateway: %s", event.msg)

    def _handle_error(self, event: dbn.ErrorMsg, now_s: float) -> None:
        code = event.code
        text = self._scrub.scrub(str(event.err))
        self._count(f"error_{getattr(code, 'name', code)}".lower())
        if code in (dbn.ErrorCode.AUTH_FAILED, dbn.ErrorCode.API_KEY_DEACTIVATED):
            self._disconnect(now_s, text)
            msg = f"Databento rejected the API key ({text}); check DATABENTO_API_KEY"
            raise LiveAuthError(msg)
        if code in (dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED, dbn.ErrorCode.INVALID_SUBSCRIPTION):
            self._disconnect(now_s, text)
            msg = f"subscription rejected ({text}); check IFD_LIVE_SYMBOLS / IFD_LIVE_SCHEMA"
            raise LiveConfigError(msg)
        if code == dbn.ErrorCode.REPLAY_DATA_AGED_OUT:
            self._disconnect(now_s, text)
            msg = (f"intraday replay no longer has the gap ({text}); backfill it from Databento "
                   "Historical and restart without the recovery snapshot")
            raise LiveConfigError(msg)
        self._schedule_reconnect(now_s, f"gateway error {getattr(code, 'name', code)}: {text}")

    # --- polling ------------------------------------------------------------------------
    def next_wake_s(self) -> float:
        """When :meth:`poll` next has something to do (s since epoch)."""
        now_s = self._now()
        with self._lock:
            backlog = bool(self._records or self._events)
        if backlog:
            return now_s  # received records are processed whatever the state
        wake: float
        if self.stopped_reason == "budget":
            wake = (now_s // 86_400 + 1) * 86_400
        elif not self.sessions.is_open(now_s):
            wake = self.sessions.next_open_s(now_s)
        elif self._client is None:
            wake = max(now_s, self._next_attempt_s)
        else:
            wake = now_s + 0.05
        if self.settings.idle_exit_s:
            wake = min(wake, self._idle_since_s + self.settings.idle_exit_s + 0.01)
        return wake

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the feed to finish: the next :meth:`poll` closes, emits what it has, and finishes.

        Safe to call from a signal handler or another thread.
        """
        self._stop_requested = reason or "stop requested"

    def poll(self) -> tuple[list[SourceBatch], list[UsageRow]]:
        """Advance the connection state machine and return what arrived.

        Returns
        -------
        (list[SourceBatch], list[UsageRow])
            New records, one batch per sealed piece of a ``ts_recv`` second
            (oldest first, possibly none), and usage rows for every completed
            minute.

        Raises
        ------
        LiveAuthError, LiveConfigError, SourceError
            Fatal conditions (see module docstring); the message says what to do.
        """
        now_s = self._now()
        if self.finished:
            return [], self._take_usage(now_s)
        if self._stop_requested:
            return self._finish(now_s, self._stop_requested)
        self.meter.roll(now_s)
        if self.stopped_reason == "budget" and self.meter.cost_usd() == 0.0:
            self.stopped_reason = ""  # a new UTC day
        flush_all = False
        if not self.sessions.is_open(now_s):
            flush_all = self._disconnect(now_s, "outside the trading session")
        elif self.meter.exhausted():
            if self.stopped_reason != "budget":
                self.stopped_reason = "budget"
                text = (f"{100 * self.meter.cost_usd() / self.settings.daily_budget_usd:.0f}% of "
                        f"the daily Databento budget used (${self.meter.cost_usd():,.2f} of "
                        f"${self.settings.daily_budget_usd:,.2f}): live stream closed until the "
                        "next UTC day")
                log.error("live: %s", text)
                if self._notify is not None:
                    day = datetime.fromtimestamp(now_s, UTC).date()
                    self._notify(f"budget-{self.source_id}-{day}", "IFD live budget reached", text)
            flush_all = self._disconnect(now_s, "daily budget reached")
        elif self._client is None and now_s >= self._next_attempt_s:
            try:
                self._connect(now_s)  # attempts reset only once fresh data flows (below)
            except ConnectionError as exc:
                self._schedule_reconnect(now_s, f"connect failed: {exc}")
        if self._client is not None:
            self._handle_events(now_s)
        if self._client is not None:
            silent = now_s - self._last_heard
            if silent > self.settings.heartbeat_interval_s + self.settings.heartbeat_grace_s:
                self._schedule_reconnect(now_s, f"no data or heartbeat for {silent:.0f} s")
            elif not self._client.is_connected():
                self._schedule_reconnect(now_s, "connection closed by the gateway")
        accepted = self.sequencer.accepted
        batches = self._drain(now_s, flush_all=flush_all)
        if self.sequencer.accepted > accepted:
            self._last_data_s = self._idle_since_s = now_s
            self._idle_rebased = False
            self._attempts = 0  # a connection that delivers new data ends the backoff run
        elif self.settings.idle_exit_s and now_s - self._idle_since_s > self.settings.idle_exit_s:
            log.info("live: no new data for %.1f s: exiting (IFD_LIVE_IDLE_EXIT_S)",
                     now_s - self._last_data_s)
            final, usage = self._finish(now_s, "idle exit")
            return batches + final, usage
        return batches, self._take_usage(now_s)

    def _finish(self, now_s: float, reason: str) -> tuple[list[SourceBatch], list[UsageRow]]:
        """Close the connection, emit every accepted record (open second included), finish."""
        self._disconnect(now_s, reason)
        batches = self._drain(now_s, flush_all=True)
        self.finished = True
        if self._minute.minute:
            self._flush_minute()
        log.info("live: finished (%s); %s", reason, self.counters or "no faults counted")
        return batches, self._take_usage(now_s)

    def _drain(self, now_s: float, *, flush_all: bool = False) -> list[SourceBatch]:
        """Accept queued records (dropping replayed copies) and turn sealed seconds into batches."""
        with self._lock:
            entries = list(self._records)
            self._records.clear()
        seq = self.sequencer
        duplicates = seq.duplicates
        for gen, raw, ts_event, ts_recv in entries:
            if raw is _SEAL:
                seq.seal()
            else:
                seq.accept(gen, raw, ts_event, ts_recv)
        if seq.duplicates > duplicates:
            self._count("replayed_duplicates", seq.duplicates - duplicates)
        return [self._batch(now_s, unit) for unit in seq.take_units(flush_all=flush_all)]

    def _batch(self, now_s: float, unit: Unit) -> SourceBatch:
        buf = b"".join(unit.records)
        chunk, _ = decode_records(buf, path=self.source_id,
                                  start_record=unit.unit_id * RECORDS_PER_UNIT_MAX, version=3)
        bad_book = sum(int(np.count_nonzero(rows["flags"] & F_MAYBE_BAD_BOOK))
                       for rows in chunk.trades.values())
        if bad_book:
            self._count("maybe_bad_book", bad_book)
        self._account(now_s, len(unit.records), len(buf), chunk)
        self.batches += 1
        return SourceBatch(source=self.source_id, seq=unit.unit_id, trade_rtype=self.trade_rtype,
                           chunk=chunk, bytes_read=0, total_bytes=0, eof=False,
                           partition=self.source_id)

    def _account(self, now_s: float, records: int, nbytes: int, chunk: DecodedChunk) -> None:
        minute = int(now_s // 60)
        if self._minute.minute and minute != self._minute.minute:
            self._flush_minute()
        self._minute.minute = minute
        self._minute.records += records
        self._minute.bytes += nbytes
        for rows in chunk.trades.values():
            if len(rows):
                lag = now_s * 1e3 - rows["ts_recv"].astype(np.float64) / 1e6
                self._minute.lag_sum_ms += float(lag.sum())
                self._minute.lag_n += len(rows)

    def _flush_minute(self) -> None:
        m = self._minute
        self._usage.append(UsageRow(
            minute_s=m.minute * 60, records=m.records, bytes=m.bytes,
            est_cost_usd=self.meter.cost_usd(), reconnects=self.reconnects,
            lag_ms=m.lag_sum_ms / m.lag_n if m.lag_n else 0.0,
            last_error=self.last_error, source=self.source_id,
        ))
        self._minute = _Minute()

    def _take_usage(self, now_s: float) -> list[UsageRow]:
        if self._minute.minute and int(now_s // 60) != self._minute.minute:
            self._flush_minute()
        rows, self._usage = self._usage, []
        return rows

    def snapshot(self) -> LiveResume:
        """Resume point for bytewax recovery: exactly the records emitted so far."""
        return self.sequencer.snapshot()

    def close(self) -> None:
        """Close the connection and flush the current minute's usage."""
        self._disconnect(self._now(), "source closed")
        self._scrub.detach()


__all__ = ["BudgetMeter", "LiveAuthError", "LiveConfigError", "LiveFeed", "LiveResume",
           "MarketSessions"]
