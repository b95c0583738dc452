"""One Databento live connection at a time, and the backoff between them.

:class:`LiveConnection` opens a ``databento.Live`` client (or a stand-in), subscribes
``definition`` and the trade schema (with intraday replay ``start=`` after a drop), and queues
what the client's thread delivers: data records with their ``ts_event``/``ts_recv``, gateway
events (errors and system messages) apart, heartbeats as seals of the open ``ts_recv`` second.
Records of an older connection are ignored: the next connection replays them.

:class:`ReconnectBackoff`: attempt ``n`` waits ``uniform(0, min(max, initial * 2^(n-1)))``
("full jitter", AWS Architecture Blog, "Exponential Backoff And Jitter", 2015); the ceiling is
tenacity's ``wait_exponential``, the jitter the feed's own random source (reproducible in tests).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import databento_dbn as dbn
from tenacity import RetryCallState, wait_exponential

from connectors.live_budget import BudgetMeter
from connectors.live_resume import (
    DATA,
    DEFINITIONS,
    GATEWAY_RTYPES,
    RTYPE_DEFINITION,
    RTYPE_SYMBOL_MAPPING,
)
from models.errors import ConfigError, SourceError
from models.redact import SecretFilter
from models.settings import LiveSettings

log = logging.getLogger("connectors.live")

NS = 1_000_000_000
SEAL = b""
"""Raw bytes of a queued heartbeat: it seals the open ``ts_recv`` second."""

UNDEF_TIMESTAMP = 2**64 - 1
QueuedRecord = tuple[int, bytes, int, int | None]
"""(connection number, raw record, ts_event, ts_recv) in arrival order."""


class LiveAuthError(ConfigError):
    """The gateway rejected the API key (exit code 3)."""

    exit_code = 3


class LiveConfigError(ConfigError):
    """The subscription cannot work: unknown symbols, bad schema, gap beyond replay (exit code 4)."""

    exit_code = 4


class LiveClient(Protocol):
    """The part of :class:`databento.Live` the feed uses (a test gateway client can stand in)."""

    def subscribe(self, dataset: str, schema: str, symbols: list[str], stype_in: str,
                  start: int | None) -> object:
        """Add a subscription (``start=`` asks for intraday replay from that ns timestamp)."""

    def add_callback(self, record_callback: Callable[[Any], None],
                     exception_callback: Callable[[Exception], None] | None) -> None:
        """Register the per-record callback (called on the client's thread)."""

    def start(self) -> None:
        """Start the session."""

    def stop(self) -> None:
        """Close the session."""

    def is_connected(self) -> bool:
        """Whether the session is still open."""


class ReconnectBackoff:
    """Delays between connection attempts: exponential ceiling, full jitter, bounded attempts in a row.

    Parameters
    ----------
    initial_s, max_s : float
        Ceiling of attempt 1 and cap of every ceiling, seconds.
    max_attempts : int
        Attempts in a row before :meth:`next_delay_s` raises.
    rng : random.Random
        Jitter source.
    """

    def __init__(self, initial_s: float, max_s: float, max_attempts: int, rng: random.Random) -> None:
        self._ceiling = wait_exponential(multiplier=initial_s, max=max_s)
        self._max_attempts = max_attempts
        self._rng = rng
        self.attempts = 0

    def next_delay_s(self, reason: str) -> float:
        """Count one failed attempt and return the delay before the next, seconds.

        Raises
        ------
        SourceError
            More than ``max_attempts`` attempts in a row; the message holds ``reason``.
        """
        self.attempts += 1
        if self.attempts > self._max_attempts:
            msg = f"live: giving up after {self._max_attempts} reconnect attempts; last error: {reason}"
            raise SourceError(msg)
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self.attempts
        return self._rng.uniform(0, self._ceiling(state))

    def reset(self) -> None:
        """End the run of failures (a connection delivered new data)."""
        self.attempts = 0


class LiveConnection:
    """The current connection to the gateway and the queue its client thread fills.

    Parameters
    ----------
    settings : LiveSettings
    client_factory : callable | None
        ``databento.Live``-compatible factory; None = ``databento.Live``.
    meter : BudgetMeter
        Bytes and records are metered on receipt (what the gateway sent is what is billed).
    now : callable
        Wall clock, seconds since epoch.
    scrub : SecretFilter
        Removes the API key from every error text.
    count : callable
        ``count(name, n)`` adds to the feed's fault counters.
    on_error : callable
        ``on_error(text)`` gets a client callback error, key removed.
    """

    def __init__(self, settings: LiveSettings, client_factory: Callable[..., LiveClient] | None,
                 meter: BudgetMeter, now: Callable[[], float], scrub: SecretFilter,
                 count: Callable[[str, int], None], on_error: Callable[[str], None]) -> None:
        self.settings = settings
        self._factory = client_factory
        self._meter = meter
        self._now = now
        self._scrub = scrub
        self._count = count
        self._on_error = on_error
        self.client: LiveClient | None = None
        self.lock = threading.Lock()
        self._records: deque[QueuedRecord] = deque()
        self._events: deque[dbn.ErrorMsg | dbn.SystemMsg] = deque()
        self.gen = 0
        """Newest connection number; records of any other connection are ignored."""
        self._gen_open = False
        self.received_position: int | None = None
        """Newest ``min(ts_event, ts_recv)`` received (not yet accepted): where a replay resumes."""
        self.last_heard = 0.0
        self.connected_at = 0.0
        self._clock: tuple[int, float] | None = None
        """(newest market-data ``ts_recv`` of the open connection, wall time it arrived)."""

    def open(self, now_s: float, key: str, starts: dict[str, int] | None,
             on_begin: Callable[[int], None]) -> None:
        """Connect and subscribe; ``starts`` = intraday replay ``start=`` per kind (None = live).

        ``on_begin(gen)`` runs after the subscriptions, before records can arrive.

        Raises
        ------
        LiveAuthError
            The key was rejected.
        ConnectionError
            Anything else went wrong (the caller backs off and retries).
        """
        s = self.settings
        if self._factory is None:
            import databento

            factory: Callable[..., LiveClient] = databento.Live
        else:
            factory = self._factory
        kwargs: dict[str, object] = dict(key=key, heartbeat_interval_s=s.heartbeat_interval_s)
        if s.gateway:
            kwargs.update(gateway=s.gateway, port=s.port)
        client = factory(**kwargs)
        gen = self.gen + 1
        try:
            for schema, kind in (("definition", DEFINITIONS), (s.schema_name, DATA)):
                client.subscribe(dataset=s.dataset, schema=schema, symbols=s.symbol_list(),
                                 stype_in=s.stype_in,
                                 start=starts[kind] if starts is not None else None)
            client.add_callback(lambda record: self._on_record(gen, record), self._on_callback_error)
            with self.lock:
                self.gen, self._gen_open, self._clock = gen, True, None
            on_begin(gen)
            client.start()
        except Exception as exc:
            close_quietly(client)
            text = self._scrub.scrub(str(exc))
            low = text.lower()
            if "auth" in low and "timed out" not in low:  # a timeout is not a rejected key
                msg = f"Databento rejected the API key ({text}); check DATABENTO_API_KEY"
                raise LiveAuthError(msg) from None
            raise ConnectionError(text) from None
        self.client = client
        self.connected_at = self.last_heard = now_s
        if starts is not None:
            shown = {k: datetime.fromtimestamp(v / NS, UTC).isoformat() if v else "start of history"
                     for k, v in starts.items()}
            log.info("live: connected with intraday replay from %s", shown)
        else:
            log.info("live: connected to %s (%s %s)", s.gateway or "Databento", s.schema_name, s.symbols)

    def reserve_gen(self) -> int:
        """Take a connection number for records fetched elsewhere (a backfill); none is open."""
        with self.lock:
            self.gen, self._gen_open = self.gen + 1, False
            return self.gen

    def _on_record(self, gen: int, record: Any) -> None:
        """Client-thread callback: queue one record of connection ``gen``."""
        raw = bytes(record)
        with self.lock:
            if gen != self.gen or not self._gen_open:
                self._count("stale_connection_records", 1)  # replayed by the next connection
                return
            self.last_heard = self._now()
            self._meter.bytes += len(raw)
            self._meter.records += 1
            rtype = raw[1]
            if rtype in GATEWAY_RTYPES:
                if rtype == RTYPE_SYMBOL_MAPPING:
                    self._count("symbol_mappings", 1)
                    return
                if isinstance(record, dbn.SystemMsg) and record.is_heartbeat():
                    self._records.append((gen, SEAL, 0, None))
                self._events.append(record)
                return
            ts_event = int(record.ts_event)
            ts_recv = getattr(record, "ts_recv", None)
            self._records.append((gen, raw, ts_event, ts_recv))
            if (ts_recv is not None and ts_recv != UNDEF_TIMESTAMP and rtype != RTYPE_DEFINITION
                    and (self._clock is None or ts_recv > self._clock[0])):
                self._clock = (int(ts_recv), self.last_heard)
            if ts_event != 2**64 - 1:
                # received, not yet accepted: a reconnect replays from the newest arrival
                pos = min(ts_event, ts_recv) if ts_recv is not None else ts_event
                if self.received_position is None or pos > self.received_position:
                    self.received_position = pos

    def _on_callback_error(self, exc: Exception) -> None:
        text = self._scrub.scrub(str(exc))
        log.warning("live: callback error: %s", text)
        self._on_error(text)

    @property
    def backlog(self) -> bool:
        """Whether records or events wait to be taken."""
        with self.lock:
            return bool(self._records or self._events)

    def take_records(self) -> list[QueuedRecord]:
        """Return and clear the queued records, oldest first."""
        with self.lock:
            entries = list(self._records)
            self._records.clear()
        return entries

    def clock_ns(self, now_s: float) -> int:
        """Event time the open connection has delivered up to, extrapolated to ``now_s`` (ns UTC).

        The newest market-data ``ts_recv`` received plus the wall time since it arrived: on a
        connection that keeps up with the gateway this is the wall clock less the network
        transit; during an intraday replay it is the replayed ``ts_recv``. Definitions (the
        gateway may resend old ones) and gateway-made records never move it. 0 when no
        connection is open or nothing has arrived on it.
        """
        with self.lock:
            if not self._gen_open or self._clock is None:
                return 0
            ts_recv, arrived_s = self._clock
        return ts_recv + max(0, int((now_s - arrived_s) * NS))

    def next_event(self) -> dbn.ErrorMsg | dbn.SystemMsg | None:
        """Return the oldest queued gateway event, or None."""
        with self.lock:
            return self._events.popleft() if self._events else None

    def close(self, now_s: float, reason: str) -> bool:
        """Close the connection (its later callbacks are ignored); True if one was open."""
        with self.lock:
            self._gen_open = False
        if self.client is None:
            return False
        close_quietly(self.client)
        self._meter.connected_s += max(0.0, now_s - self.connected_at)
        self.client = None
        log.info("live: disconnected (%s)", reason)
        return True


def close_quietly(client: object) -> None:
    """Stop (else terminate) a client, ignoring errors of a dead connection."""
    for method in ("stop", "terminate"):
        try:
            getattr(client, method)()
            return
        except Exception:  # noqa: BLE001, S112 - best effort on a dead connection
            continue
