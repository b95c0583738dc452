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
   second, a gateway heartbeat, the wall clock passing the second's end by
   ``IFD_LIVE_SEAL_GRACE_S`` for live seconds, or closing), one :class:`SourceBatch` per
   piece with ``seq = second * 4096 + split``: stored parts keep a stable,
   collision-free identity.
4. A resume position older than ``IFD_LIVE_REPLAY_HORIZON_S`` is backfilled
   from Databento Historical first (priced, refused above
   ``IFD_LIVE_BACKFILL_BUDGET_USD``; :mod:`connectors.live_backfill`): its
   records are accepted as one more replay connection, so de-duplication and
   order are those of a replay, and the live connection then replays from the
   backfill's end. Every request is a :class:`BackfillRow` (``ifd.backfills``).
   Off (budget 0) or refused, the run stops with instructions; failed, it is
   retried like a failed connection.
5. **Fallback** (``IFD_LIVE_FALLBACK_ENABLED``): once the reconnect attempts are
   exhausted, the feed keeps the flow alive on Historical catch-up (every
   ``IFD_LIVE_FALLBACK_POLL_S``: ``[resume position - overlap, now)``, capped at
   the dataset's available end, priced against ``IFD_LIVE_BACKFILL_BUDGET_USD``)
   and probes the gateway every ``IFD_LIVE_RECONNECT_MAX_S``; the first
   connection that opens returns to live with replay from where the catch-up
   ended. ``ifd.usage.mode`` says ``live``, ``historical`` or ``down``.
6. Backoff between attempts is exponential with full jitter, capped by
   ``IFD_LIVE_RECONNECT_MAX_S``, for at most ``IFD_LIVE_RECONNECT_MAX_ATTEMPTS``
   attempts in a row.

| gateway message                          | handling                                         |
|------------------------------------------|--------------------------------------------------|
| ErrorMsg AUTH_FAILED / API_KEY_DEACTIVATED| fatal :class:`LiveAuthError` (how to fix)         |
| ErrorMsg SYMBOL_RESOLUTION_FAILED / INVALID_SUBSCRIPTION | fatal :class:`LiveConfigError`   |
| ErrorMsg REPLAY_DATA_AGED_OUT             | fatal: gap beyond the intraday-replay horizon    |
| resume position older than the horizon    | backfill from Historical within budget, then replay |
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

The feed is the state machine; each concern has its own module:
:mod:`connectors.live_connection` (the connection, its client-thread queue, the
backoff), :mod:`connectors.live_budget` (budget, sessions, per-minute usage) and
:mod:`connectors.live_resume` (replay de-duplication, ``ts_recv`` seconds, resume).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import databento_dbn as dbn
import numpy as np

from connectors.dbn import (
    SCHEMA_RTYPE,
    SourceBatch,
    decode_records,
)
from connectors.live_backfill import (
    BackfillOutcome,
    HistoricalBackfill,
    iso_utc,
    plan_backfill,
    plan_range,
)
from connectors.live_budget import BudgetMeter, MarketSessions, UsageMeter
from connectors.live_connection import (
    NS,
    SEAL,
    LiveAuthError,
    LiveClient,
    LiveConfigError,
    LiveConnection,
    ReconnectBackoff,
)
from connectors.live_resume import (
    DATA,
    DEFINITIONS,
    LiveResume,
    LiveSequencer,
    Unit,
)
from models.errors import PipelineError, SourceError
from models.records import F_MAYBE_BAD_BOOK, BackfillRow, UsageRow
from models.redact import SecretFilter
from models.settings import LiveSettings

log = logging.getLogger(__name__)

RECORDS_PER_UNIT_MAX = 1 << 20
"""Dead letters of a live unit are numbered ``unit_id * RECORDS_PER_UNIT_MAX + index``."""
MAX_SECONDS_PER_POLL = 64
"""Most ``ts_recv`` seconds one :meth:`LiveFeed.poll` hands the flow; the rest stay held in the
sequencer for the next polls (:meth:`LiveSequencer.take_units`). A feed that read far ahead (a
reconnect's backlog, a fast replay) then never gives bytewax thousands of batches at once:
bytewax 0.21.1 delivered such a list's batches to the windows out of order (soak: parts of a
second reached ``fold_window`` after parts hours later and were late; with the cap, none)."""


def _databento_loggers() -> list[str]:
    """Every databento logger (filters do not propagate to child loggers)."""
    import databento  # noqa: F401 - registers its loggers

    names = [n for n in logging.root.manager.loggerDict if n.startswith("databento")]
    return sorted({"databento", *names})


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
        lateness_s: float = 0.0,
    ) -> None:
        self.settings = settings
        self._clock_lead_ns = int(min(1.0 + settings.seal_grace_s, lateness_s / 2) * NS)
        """Most a batch's ``clock_ns`` runs ahead of the start of its ``ts_recv`` second."""
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
        self.backoff = ReconnectBackoff(settings.reconnect_initial_s, settings.reconnect_max_s,
                                        settings.reconnect_max_attempts, self._rng)
        self._next_attempt_s = 0.0
        self.reconnects = 0
        self.counters: dict[str, int] = {}
        self.last_error = ""
        self.stopped_reason = ""
        self.usage = UsageMeter(self.source_id)
        self._last_data_s = now()
        self._created_ns = int(self._last_data_s * NS)
        self._idle_since_s = self._last_data_s
        """Idle-exit baseline: the last new data, or the first connection made after it."""
        self._idle_rebased = False
        """Whether a connection was made since the last new data (idle exit needs one)."""
        self._idle_heard = False
        """Whether that connection delivered any record yet (the baseline moves to the first)."""
        self.finished = False
        self._stop_requested = ""
        self._finishing = ""
        """Reason of a finish whose held seconds are still being handed over (bounded polls)."""
        self._flush_pending = False
        """A flush (open second included) asked for is still being handed over."""
        # the key, and databento's DEBUG lines carrying the CRAM response (it ends with the key's
        # last 5 characters), never reach a log
        self._scrub = SecretFilter([self._key], withhold=[self._key[-5:]]).attach(_databento_loggers())
        self.connection = LiveConnection(settings, client_factory, self.meter, now, self._scrub,
                                         self._count, self._set_last_error)
        self.historical = HistoricalBackfill(self._key, settings.backfill_budget_usd,
                                             gateway=settings.historical_gateway,
                                             scrub=self._scrub)
        self._backfilled_to_ns = 0
        """End of the last backfill (ns): a replay never starts before it minus the overlap."""
        self._backfill_rows: list[BackfillRow] = []
        self._fatal: PipelineError | None = None
        """Raised by the next :meth:`poll`, once this one has returned its rows."""
        self.fallback = False
        """Whether the feed runs on Historical catch-up (reconnect attempts exhausted)."""
        self._next_catchup_s = 0.0
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

    def _set_last_error(self, text: str) -> None:
        self.last_error = text

    def _replay_starts(self) -> dict[str, int] | None:
        """``start=`` per subscription kind; None for the very first, live connection."""
        conn = self.connection
        if conn.gen == 0 and not self._replay_on_first_connect:
            return None
        with conn.lock:
            received = conn.received_position
        starts = self.sequencer.replay_starts(received)
        floor = self._backfilled_to_ns - self.sequencer.overlap_ns
        if self._backfilled_to_ns and starts[DATA] < floor:
            # the backfill covered [start, end): a quiet end leaves the position far behind it
            starts = {DEFINITIONS: floor, DATA: floor}
        return starts

    def _connect(self, now_s: float) -> None:
        s = self.settings
        starts = self._replay_starts()
        data_start = starts[DATA] if starts is not None else None
        # 0 = the whole available history, always within the horizon
        if starts is not None and data_start and now_s * NS - data_start > s.replay_horizon_s * NS:
            if not self._backfill(now_s, starts):
                return  # off or refused (fatal on the next poll), or failed (retried)
            starts = self._replay_starts()
        self.connection.open(now_s, self._key, starts, lambda gen: self.sequencer.begin(gen, starts))
        if self.fallback:
            self.fallback = False
            log.warning("live: the gateway answers again: back to live (replay from %s)",
                        iso_utc(starts[DATA]) if starts and starts[DATA] else "the start")
        if not self._idle_rebased:
            # a reconnect after a silence gets its full idle time to replay (a stall, a drop)
            self._idle_since_s, self._idle_rebased = max(self._idle_since_s, now_s), True
            self._idle_heard = False

    def _backfill(self, now_s: float, starts: dict[str, int]) -> bool:
        """Fetch ``[starts, now - horizon + margin)`` from Historical and accept it as a replay.

        Returns True when done (the live connection may open).

        Off (budget 0) or refused: the next :meth:`poll` raises :class:`LiveConfigError` (the
        row is returned first). Failed: a reconnect is scheduled (the backoff's attempt limit
        applies). Done: records are accepted in order, replayed copies dropped.
        """
        s = self.settings
        gap = (f"live gap too long: last processed {iso_utc(starts[DATA])} is beyond the "
               f"{s.replay_horizon_s / 3600:.0f} h intraday-replay horizon")
        if s.backfill_budget_usd <= 0:
            self._fatal = LiveConfigError(
                f"{gap}; backfill from Databento Historical is off: set "
                "IFD_LIVE_BACKFILL_BUDGET_USD (USD per backfill, priced with metadata.get_cost "
                "first) to fetch it, or restart without the recovery snapshot")
            return False
        horizon = int(s.replay_horizon_s * NS)
        plan = plan_backfill(dataset=s.dataset, symbols=s.symbol_list(), stype_in=s.stype_in,
                             schema=s.schema_name, data_start_ns=starts[DATA],
                             definitions_start_ns=starts[DEFINITIONS], now_ns=int(now_s * NS),
                             horizon_ns=horizon,
                             margin_ns=min(int(s.backfill_margin_s * NS), horizon // 2))
        log.warning("live: %s: backfilling %s from Databento Historical (budget $%.2f)",
                    gap, plan.describe(), s.backfill_budget_usd)
        outcome = self.historical.run(plan)
        duplicates = 0
        if outcome.outcome == "done":
            duplicates = self._accept_backfill(outcome, starts)
            log.info("live: backfill done: %d records (%d already emitted) in %.1f s, $%.2f",
                     len(outcome.records), duplicates, outcome.seconds, outcome.cost_usd)
        self._store_backfill(now_s, outcome, duplicates, "gap")
        self._count(f"backfill_{outcome.outcome}")
        if outcome.outcome == "refused":
            self._fatal = LiveConfigError(f"{gap}; {outcome.error}; raise the budget or restart "
                                          "without the recovery snapshot")
        elif outcome.outcome == "failed":
            self._schedule_reconnect(now_s, outcome.error)
        return outcome.outcome == "done"

    def _store_backfill(self, now_s: float, outcome: BackfillOutcome, duplicates: int,
                        kind: str) -> None:
        s = self.settings
        self._backfill_rows.append(BackfillRow(
            requested_ns=int(now_s * NS), source=self.source_id, dataset=s.dataset,
            schema=s.schema_name, symbols=",".join(s.symbol_list()), start_ns=outcome.plan.start_ns,
            end_ns=outcome.plan.end_ns, cost_usd=outcome.cost_usd,
            budget_usd=s.backfill_budget_usd, outcome=outcome.outcome,
            records=len(outcome.records), duplicates=duplicates, seconds=outcome.seconds,
            error=outcome.error, kind=kind))

    def _accept_backfill(self, outcome: BackfillOutcome, starts: dict[str, int]) -> int:
        """Accept the fetched records as one replay connection; return the replayed copies."""
        gen = self.connection.reserve_gen()
        seq = self.sequencer
        seq.begin(gen, starts)
        before = seq.duplicates
        for record in outcome.records:
            seq.accept(gen, record.raw, record.ts_event, record.ts_recv)
        duplicates = seq.duplicates - before
        if duplicates:
            self._count("replayed_duplicates", duplicates)
        self._backfilled_to_ns = outcome.plan.end_ns
        return duplicates

    def _disconnect(self, now_s: float, reason: str) -> bool:
        """Close the connection (its later callbacks are ignored); True if one was open."""
        return self.connection.close(now_s, reason)

    def _schedule_reconnect(self, now_s: float, reason: str) -> None:
        self._disconnect(now_s, reason)
        self.reconnects += 1
        self.last_error = reason
        if self.fallback:  # probing: one attempt per IFD_LIVE_RECONNECT_MAX_S, never giving up
            self._next_attempt_s = now_s + self.settings.reconnect_max_s
            log.info("live: %s; still on Historical catch-up, next live probe in %.2f s", reason,
                     self.settings.reconnect_max_s)
            return
        try:
            delay = self.backoff.next_delay_s(reason)  # SourceError after the last attempt
        except SourceError:
            if not self.settings.fallback_enabled:
                raise
            self._enter_fallback(now_s, reason)
            return
        self._next_attempt_s = now_s + delay
        log.warning("live: %s; reconnect attempt %d in %.2f s", reason, self.backoff.attempts, delay)

    def _enter_fallback(self, now_s: float, reason: str) -> None:
        """Reconnect attempts exhausted: run on Historical catch-up, probe the gateway."""
        s = self.settings
        self.fallback = True
        self._count("fallbacks")
        self._next_catchup_s = now_s
        self._next_attempt_s = now_s + s.reconnect_max_s
        text = (f"live gateway unreachable after {s.reconnect_max_attempts} attempts ({reason}): "
                f"falling back to Databento Historical catch-up every {s.fallback_poll_s:.0f} s, "
                f"probing the gateway every {s.reconnect_max_s:.0f} s")
        log.error("live: %s", text)
        if self._notify is not None:
            self._notify(f"fallback-{self.source_id}-{int(now_s)}", "IFD live fallback", text)

    def _catch_up(self, now_s: float) -> None:
        """One fallback request: ``[replay start, now)`` from Historical, accepted as a replay."""
        s = self.settings
        self._next_catchup_s = now_s + s.fallback_poll_s
        starts = self._replay_starts()
        if starts is None:  # never connected: the run's own start, as the live session would
            starts = {DEFINITIONS: 0, DATA: self._created_ns}
        elif not starts[DATA]:  # "the whole history" of a live replay = its horizon
            starts = {DEFINITIONS: 0, DATA: int((now_s - s.replay_horizon_s) * NS)}
        plan = plan_range(dataset=s.dataset, symbols=s.symbol_list(), stype_in=s.stype_in,
                          schema=s.schema_name, data_start_ns=starts[DATA],
                          definitions_start_ns=starts[DEFINITIONS], end_ns=int(now_s * NS))
        outcome = self.historical.run(plan)
        duplicates = self._accept_backfill(outcome, starts) if outcome.outcome == "done" else 0
        if outcome.outcome == "done":
            log.info("live: catch-up %s: %d records (%d already emitted), $%.2f",
                     outcome.plan.describe(), len(outcome.records), duplicates, outcome.cost_usd)
        else:
            log.warning("live: catch-up %s: %s", outcome.outcome, outcome.error)
        self._store_backfill(now_s, outcome, duplicates, "fallback")
        self._count(f"catchup_{outcome.outcome}")

    def backoff_delay_s(self) -> float:
        """Seconds until the next connection attempt (0 when connected or due)."""
        return max(0.0, self._next_attempt_s - self._now())

    # --- events -------------------------------------------------------------------------
    def _handle_events(self, now_s: float) -> None:
        while (event := self.connection.next_event()) is not None:
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
        if (self.connection.backlog or self.sequencer.ready or self._finishing
                or self._flush_pending):
            return now_s  # received records are processed whatever the state
        wake: float
        if self.stopped_reason == "budget":
            wake = (now_s // 86_400 + 1) * 86_400
        elif not self.sessions.is_open(now_s):
            wake = self.sessions.next_open_s(now_s)
        elif self.connection.client is None:
            wake = max(now_s, self._next_attempt_s)
            if self.fallback:
                wake = min(wake, max(now_s, self._next_catchup_s))
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

    def poll(self) -> tuple[list[SourceBatch], list[UsageRow | BackfillRow]]:
        """Advance the connection state machine and return what arrived.

        Returns
        -------
        (list[SourceBatch], list[UsageRow | BackfillRow])
            New records, one batch per sealed piece of a ``ts_recv`` second
            (oldest first, possibly none), usage rows for every completed
            minute and a row per backfill request.

        Raises
        ------
        LiveAuthError, LiveConfigError, SourceError
            Fatal conditions (see module docstring); the message says what to do.
        """
        now_s = self._now()
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            self._disconnect(now_s, str(fatal))
            raise fatal
        if self.finished:
            return [], self._take_usage(now_s)
        if self._finishing:
            return self._finish(now_s, self._finishing)
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
        elif self.connection.client is None and now_s >= self._next_attempt_s:
            try:
                self._connect(now_s)  # attempts reset only once fresh data flows (below)
            except ConnectionError as exc:
                self._schedule_reconnect(now_s, f"connect failed: {exc}")
            if self._fatal is not None:
                return self._drain(now_s, flush_all=True), self._take_usage(None)
        if self.connection.client is not None:
            self._handle_events(now_s)
        seq = self.sequencer
        accepted, received = seq.accepted, seq.accepted + seq.duplicates
        if self.fallback and self.connection.client is None and now_s >= self._next_catchup_s:
            self._catch_up(now_s)
        client = self.connection.client
        if client is not None:
            silent = now_s - self.connection.last_heard
            if silent > self.settings.heartbeat_interval_s + self.settings.heartbeat_grace_s:
                self._schedule_reconnect(now_s, f"no data or heartbeat for {silent:.0f} s")
            elif not client.is_connected():
                self._schedule_reconnect(now_s, "connection closed by the gateway")
        batches = self._drain(now_s, flush_all=flush_all)
        if self.sequencer.accepted > accepted:
            self._last_data_s = self._idle_since_s = now_s
            self._idle_rebased = False
            if not self.fallback:
                self.backoff.reset()  # a connection that delivers new data ends the backoff run
        elif self._idle_due(now_s, heard=seq.accepted + seq.duplicates > received):
            log.info("live: no new data for %.1f s: exiting (IFD_LIVE_IDLE_EXIT_S)",
                     now_s - self._last_data_s)
            final, usage = self._finish(now_s, "idle exit")
            return batches + final, usage
        return batches, self._take_usage(now_s)

    def _idle_due(self, now_s: float, *, heard: bool) -> bool:
        """Whether the idle exit is due: no new data for ``idle_exit_s`` on a working connection.

        Idle means the gateway is reachable and has nothing new: either the connection is open
        and heard from within the heartbeat limit, or a connection was made since the last new
        data (the idle time then counts from it, and from the first record, a replayed copy
        included, that it delivered), or the feed closed it on purpose (budget, session closed).
        A stall noticed late, a poll delayed by a busy flow or a
        slow reconnect never ends the run while the gap is still to be replayed.
        """
        if not self.settings.idle_exit_s:
            return False
        s, conn = self.settings, self.connection
        closed_on_purpose = self.stopped_reason == "budget" or not self.sessions.is_open(now_s)
        healthy = (conn.client is not None
                   and now_s - conn.last_heard <= s.heartbeat_interval_s + s.heartbeat_grace_s)
        if not (healthy or closed_on_purpose or self._idle_rebased):
            return False
        if heard and not self._idle_heard:
            self._idle_since_s, self._idle_heard = max(self._idle_since_s, now_s), True
        return now_s - self._idle_since_s > self.settings.idle_exit_s

    def _finish(self, now_s: float, reason: str) -> tuple[list[SourceBatch],
                                                          list[UsageRow | BackfillRow]]:
        """Close the connection, emit every accepted record (open second included), finish.

        The records are handed over in bounded polls (:data:`MAX_SECONDS_PER_POLL`): the feed
        is finished once the last of them is out.
        """
        if not self._finishing:
            self._disconnect(now_s, reason)
            self._finishing = reason
        batches = self._drain(now_s, flush_all=True)
        if self.sequencer.held_records or self.connection.backlog:
            return batches, self._take_usage(now_s)
        self.finished = True
        log.info("live: finished (%s); %s", reason, self.counters or "no faults counted")
        return batches, self._take_usage(None)

    def abort(self, reason: str) -> tuple[list[SourceBatch], list[UsageRow | BackfillRow]]:
        """After a fatal error from :meth:`poll`: close, emit every record accepted, finish.

        Nothing received before the error is lost: the records of the open ``ts_recv`` second
        and those still queued from the connection are emitted too.
        """
        return self._finish(self._now(), f"fatal: {reason}")

    def _drain(self, now_s: float, *, flush_all: bool = False) -> list[SourceBatch]:
        """Accept queued records (dropping replayed copies) and turn sealed seconds into batches."""
        entries = self.connection.take_records()
        seq = self.sequencer
        flush_all = flush_all or self._flush_pending
        duplicates = seq.duplicates
        for gen, raw, ts_event, ts_recv in entries:
            if raw is SEAL:
                seq.seal()
            else:
                seq.accept(gen, raw, ts_event, ts_recv)
        if seq.duplicates > duplicates:
            self._count("replayed_duplicates", seq.duplicates - duplicates)
        second = seq.open_second()
        grace = self.settings.seal_grace_s
        if second is not None and grace and second + 1 + grace <= now_s < second + 60:
            # a live second the wall clock has left: seal it rather than wait for the next
            # second's record or a heartbeat (a record of it arriving later re-opens it as the
            # next split, so identities stay unique)
            seq.seal()
            self._count("seals_by_clock")
        units = seq.take_units(flush_all=flush_all, max_seconds=MAX_SECONDS_PER_POLL)
        self._flush_pending = flush_all and seq.held_records > 0
        return [self._batch(now_s, unit) for unit in units]

    def _batch(self, now_s: float, unit: Unit) -> SourceBatch:
        buf = b"".join(unit.records)
        chunk, _ = decode_records(buf, path=self.source_id,
                                  start_record=unit.unit_id * RECORDS_PER_UNIT_MAX, version=3)
        bad_book = sum(int(np.count_nonzero(rows["flags"] & F_MAYBE_BAD_BOOK))
                       for rows in chunk.trades.values())
        if bad_book:
            self._count("maybe_bad_book", bad_book)
        self.usage.account(now_s, len(unit.records), len(buf), chunk, cost_usd=self.meter.cost_usd(),
                           reconnects=self.reconnects, last_error=self.last_error)
        self.batches += 1
        return SourceBatch(source=self.source_id, seq=unit.unit_id, trade_rtype=self.trade_rtype,
                           chunk=chunk, bytes_read=0, total_bytes=0, eof=False,
                           partition=self.source_id, clock_ns=self._clock_ns(now_s, unit))

    def _clock_ns(self, now_s: float, unit: Unit) -> int:
        """Event time the flow may treat as reached once ``unit`` is in (ns UTC; 0 = unknown).

        The connection's extrapolated ``ts_recv`` clock, but never more than
        ``min(1 s + seal grace, lateness / 2)`` past the start of the unit's second:
        every later unit holds records with ``ts_recv`` at or after that start, so
        their trades stay on time however far the connection has read ahead
        (an intraday replay, a compressed test gateway, a flow that fell behind).
        On a connection that keeps up, a second is sealed about 1 s + grace after
        its start and the bound does not bind.
        """
        clock = self.connection.clock_ns(now_s)
        if not clock or not self._clock_lead_ns:
            return 0
        return min(clock, unit.second * NS + self._clock_lead_ns)

    def _take_usage(self, now_s: float | None) -> list[UsageRow | BackfillRow]:
        """Backfill rows, then usage rows of completed minutes (all of them when ``now_s`` is None)."""
        self.usage.note_mode("historical" if self.fallback
                             else "live" if self.connection.client is not None else "down")
        rows: list[UsageRow | BackfillRow] = list(self._backfill_rows)
        self._backfill_rows.clear()
        rows.extend(self.usage.take(now_s, cost_usd=self.meter.cost_usd(),
                                    reconnects=self.reconnects, last_error=self.last_error))
        return rows

    def snapshot(self) -> LiveResume:
        """Resume point for bytewax recovery: exactly the records emitted so far."""
        return self.sequencer.snapshot()

    def close(self) -> None:
        """Close the connection and flush the current minute's usage."""
        self._disconnect(self._now(), "source closed")
        self._scrub.detach()


__all__ = ["BudgetMeter", "LiveAuthError", "LiveClient", "LiveConfigError", "LiveFeed", "LiveResume",
           "MarketSessions"]
