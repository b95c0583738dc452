"""Alerts: deliver IFD signals to people through Apprise, from a durable outbox.

:class:`AlertDispatcher` takes :class:`~models.signals.Signal` objects from the
dataflow (:meth:`AlertDispatcher.submit`). Each accepted signal is committed to
a SQLite *outbox* (:class:`AlertOutbox`) before ``submit`` returns. A
background thread then sends it to every configured channel and records the
outcome in the outbox and in a JSONL audit file. This module imports neither
bytewax nor ClickHouse.

Configuration (``IFD_ALERT_*`` environment variables or ``.env``)
---------------------------------------------------------------------

=============================== ======================= ===================================================
variable                        default                 meaning
=============================== ======================= ===================================================
``IFD_ALERT_URLS``              unset (JSONL only)      comma-separated Apprise URLs (secret, never logged)
``IFD_ALERT_MIN_CLASS``         ``STRONG``              lowest class alerted: STRONG > MODERATE > MONITOR
``IFD_ALERT_JSONL_PATH``        ``data/alerts.jsonl``   audit file, JSON lines per alert (empty = off)
``IFD_ALERT_OUTBOX_PATH``       beside the JSONL file   durable outbox (SQLite); unset: ``<jsonl stem>
                                                        .outbox.sqlite`` in the JSONL file's directory, e.g.
                                                        ``data/alerts.outbox.sqlite``; in memory (not
                                                        durable) when the JSONL path is unset too
``IFD_ALERT_MAX_PER_MINUTE``    ``30``                  deliveries allowed in any 60 s (moving window)
``IFD_ALERT_MAX_ATTEMPTS``      ``4``                   attempts per channel (1 = no retry)
``IFD_ALERT_BACKOFF_INITIAL_S`` ``0.5``                 first retry delay; doubles per attempt (max 30 s),
                                                        plus up to the same amount of random jitter
``IFD_ALERT_TIMEOUT_S``         ``10``                  socket connect and read timeout per request
``IFD_ALERT_QUEUE_SIZE``        ``1000``                outbox rows the worker reads per query (prefetch);
                                                        not a limit: nothing is ever dropped
``IFD_ALERT_CONCURRENCY``       ``4``                   messages delivered at once (1 = one at a time)
``IFD_ALERT_DIGEST_MIN``        ``5``                   this many signals waiting together go out as one
                                                        digest message (0 = one message per signal)
``IFD_ALERT_DIGEST_MAX``        ``50``                  most signals in one digest
=============================== ======================= ===================================================

Apprise URL examples (https://github.com/caronc/apprise/wiki):

- ``json://host:8080/ifd/alerts`` (``jsons://`` for TLS): HTTP POST of
  ``{"version": "1.0", "title": ..., "message": ..., "attachments": [], "type": ...}``
  with ``Content-Type: application/json``; ``json://user:pass@host/path`` adds
  HTTP basic auth.
- Slack: ``slack://TokenA/TokenB/TokenC/#channel`` (Apprise form of a Slack incoming
  webhook; Apprise also accepts the webhook's https URL).
- Email: ``mailto://user:app-password@gmail.com?to=desk@example.com``.

URLs are split on commas that are followed by ``scheme://``, so commas inside
a URL's query (``?to=a@x.com,b@x.com``) are kept.

Each URL is its own channel with its own :class:`apprise.Apprise` object, so
a failure is attributed to that channel. Channels are named in logs, stats,
the outbox and the JSONL file by their scheme only: ``json://***``,
``slack://***``; a second channel with the same scheme becomes
``json://***#2`` and so on.

Guarantees
----------
- **Accepted signals are durable**: :meth:`AlertDispatcher.submit` returns
  ``True`` only after the signal's outbox row is committed (SQLite WAL journal,
  ``synchronous=NORMAL``). A ``kill -9`` of the process at any moment after
  that loses nothing; an operating-system crash or power loss may lose the
  last commits. With neither ``IFD_ALERT_OUTBOX_PATH`` nor
  ``IFD_ALERT_JSONL_PATH`` set, the outbox is in memory and is lost with the
  process.
- **Delivery is at-least-once per channel**: the worker marks a row
  ``in_flight`` before sending it and ``delivered``/``failed`` after. A
  dispatcher starting on an existing outbox sends every ``pending`` and
  ``in_flight`` row again, in acceptance order. So after a crash only signals
  that were in flight can be delivered twice (to each channel): at most
  ``concurrency`` signals per crash. Deliveries start in acceptance order;
  up to ``concurrency`` of them run at once, so a burst of signals at a
  window close does not queue behind one another's round trips (a chat
  webhook answers in 100-300 ms).
- **De-duplicated per** ``signal.alert_key`` (contract, window and class), across
  restarts: the key is the outbox's primary key, so a replayed or re-emitted
  (possibly rescored) window is not accepted again, whatever became of the
  first one (counted as ``duplicates``). The in-flight re-send above is the
  only way one alert reaches a channel twice. Rows are never deleted, so the
  outbox is also the de-duplication memory (about 1 kB per alert).
- **Not retried**: a signal no channel accepted after ``max_attempts`` ends
  ``failed``, and a rate-limited one ends ``rate_limited``. Neither is sent
  again automatically. To resend failed alerts, stop the flow, run
  ``UPDATE alert_outbox SET status = 'pending' WHERE status = 'failed'`` on
  the outbox file and start again.
- **One dispatcher per outbox**: a dispatcher claims its outbox file with an
  exclusive ``flock`` on ``<outbox>.lock``, which the OS releases when the
  process dies. A second dispatcher on the same file raises
  :class:`~models.errors.SinkFatalError`. Components that only send
  operational notices use ``AlertDispatcher(settings, notices_only=True)``,
  which never opens the outbox.
- **Never slowed by a channel**: ``submit`` does a local SQLite insert and a
  JSONL append and never waits for delivery. The outbox is the queue, so
  nothing is dropped however slow the channels are. Delivery errors are
  counted and logged, never raised. ``submit`` raises
  :class:`~models.errors.SinkRetryableError` only when the outbox write itself
  fails (disk full, file locked longer than the busy timeout). In that case the
  signal was not accepted.
- **Digests**: when at least ``digest_min`` signals are waiting together
  (the burst a window close brings), up to ``digest_max`` of them go out as
  one message, one line per signal (:func:`sinks.alert_text.digest_body`),
  instead of one message each: chat webhooks take about one message a second
  and a burst of 100 single alerts buries the strong ones. Every signal keeps
  its own outbox row and JSONL lines, with the digest's outcome.
- **Rate limit**: at most ``max_per_minute`` messages (a digest counts once) go
  out in any burst, refilled at ``max_per_minute`` per minute (checked when the
  worker picks the message up, in acceptance order; the bucket starts full in
  every process). A rate-limited signal is *not* sent to any channel. It is counted (``rate_limited``),
  logged at WARNING and recorded as ``rate_limited`` in the outbox and the
  JSONL file.
- **Notices** (:meth:`AlertDispatcher.notify`) are not durable: they wait in
  memory, are sent before queued signals and are de-duplicated per key within
  one process.
- **Secrets**: URLs are a :class:`~pydantic.SecretStr`. They do not appear in
  reprs, stats, the outbox, the JSONL file, exceptions or this module's logs.
  Apprise and urllib3 log request URLs at DEBUG (``Slack POST URL: https://hooks.slack.com/
  services/<tokens>``). While a dispatcher is open, a filter on the
  ``apprise`` and ``urllib3.connectionpool`` loggers replaces the secret
  parts of the configured URLs (password, path and query tokens) by ``***``.

Outbox (SQLite table ``alert_outbox``, one row per alert)
------------------------------------------------------------

=============== ===================================================================
column          meaning
=============== ===================================================================
``alert_key``   ``signal.alert_key``, primary key (the de-duplication identity)
``status``      ``pending`` → ``in_flight`` → ``delivered`` (≥ 1 channel accepted) or
                ``failed`` (none did); ``pending`` → ``rate_limited`` or
                ``jsonl_only`` (no URLs configured)
``attempts``    times the worker started sending it (2 = re-sent after a crash)
``payload``     the signal, ``Signal.model_dump_json()``
``channels``    JSON object, channel label → accepted (bool), from the last delivery
``accepted_at`` ISO-8601 UTC time ``submit`` committed the row
``updated_at``  ISO-8601 UTC time of the last status change
=============== ===================================================================

Rows are sent in acceptance order (SQLite ``rowid``). When a new outbox is
created beside an existing JSONL file (an upgrade from the JSONL-only
dispatcher), the file's final lines are imported as finished rows, so alerts
recorded there are not sent again.

JSONL audit record
------------------
Two lines per alert, each with ``alert_key``. The first has ``"status":
"pending"`` and is written when the signal is accepted. The second is written
when the alert is done and has its final status: ``delivered``, ``failed``,
``rate_limited`` or ``jsonl_only``. Each line is ``signal.model_dump(mode="json")``
plus ``alert_key``, ``alerted_at`` (ISO-8601 UTC time of the line),
``status``, ``delivered`` (bool) and ``channels`` (label → bool). A signal's
current state is its last line. The outbox is the record of truth: a
``kill -9`` between an outbox commit and the JSONL append loses that line.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import apprise
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from models.errors import ConfigError, SinkFatalError, SinkRetryableError
from models.latency import LatencyMeter
from models.redact import SecretFilter, channel_labels, url_secret_fragments
from models.settings import AlertSettings, masked
from models.signals import Signal, SignalClass
from sinks.alert_outbox import FINAL_STATUSES, OUTBOX_STATUSES, AlertOutbox, now_iso
from sinks.alert_text import alert_body, alert_title, digest_body, digest_title

log = logging.getLogger(__name__)

CLASS_RANK: dict[str, int] = {
    SignalClass.MONITOR.value: 0,
    SignalClass.MODERATE.value: 1,
    SignalClass.STRONG.value: 2,
}
"""Order of signal classes: a signal is alerted when its rank ≥ ``min_class``'s."""

DEFAULT_CLOSE_TIMEOUT_S = 30.0
"""How long :meth:`AlertDispatcher.close` waits for deliveries by default, in seconds."""

MAX_BACKOFF_S = 30.0
"""Upper bound of one exponential retry delay, before jitter, in seconds."""

_IDLE_POLL_S = 0.5
"""Longest the idle worker sleeps between outbox checks (``submit`` wakes it at once)."""

_ERROR_PAUSE_S = 1.0
"""Pause of the worker after an unexpected error, so a broken outbox does not spin."""



_SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool")


class _NotDelivered(Exception):
    """One attempt on one channel failed; carries a message free of secrets."""


@dataclass(frozen=True)
class _Channel:
    label: str
    notifier: apprise.Apprise


@dataclass(frozen=True)
class Notice:
    """A free-form operational alert (see :meth:`AlertDispatcher.notify`)."""

    alert_key: str
    title: str
    body: str




@dataclass
class _Row:
    rowid: int
    alert_key: str
    payload: str


class AlertDispatcher:
    """Durable, de-duplicated, rate-limited alert delivery (see module docstring).

    Parameters
    ----------
    settings : AlertSettings
        Channels, threshold, outbox, audit file, limits and retry policy.
    notices_only : bool
        Build a dispatcher for operational notices (:meth:`notify`) only: it
        never opens, reads or writes the signals outbox and the JSONL file,
        and :meth:`submit` raises. Use it beside the dataflow's alert sink
        (e.g. the live source's budget stop), which owns the outbox.

    Raises
    ------
    ConfigError
        An entry of ``IFD_ALERT_URLS`` is not a usable Apprise URL; the
        message names its position and redacted scheme, never the URL.
    SinkFatalError
        The outbox cannot be opened or another dispatcher holds it.

    Notes
    -----
    One daemon worker thread sends notices first, then outbox rows in
    acceptance order, one signal at a time. The channels of one signal are
    tried concurrently, each with its own retries (tenacity, exponential
    backoff with jitter), so a slow or failing channel never keeps a signal
    from the others. Use as a context manager or call :meth:`close` at
    shutdown. At start, rows left ``pending`` or ``in_flight`` by an earlier
    process are queued again (logged with their numbers).
    """

    def __init__(self, settings: AlertSettings, *, notices_only: bool = False,
                 latency: LatencyMeter | None = None) -> None:
        self.settings = settings
        self.notices_only = notices_only
        self._latency = latency
        self._submitted_at: dict[str, float] = {}
        self._accepted: dict[str, Signal] = {}
        """alert_key → the signal :meth:`submit_many` committed, until the worker takes its row
        (saves parsing the outbox payload; rows of an earlier run are parsed)."""
        """alert_key → when :meth:`submit` accepted it (``alert_delivered`` latency; live only)."""
        self._min_rank = CLASS_RANK[settings.min_class]
        urls = settings.url_list()
        labels = channel_labels(urls)
        secrets: set[str] = set()
        for url in urls:
            secrets |= url_secret_fragments(url)
        self._scrubber = SecretFilter(secrets).attach(_SCRUBBED_LOGGERS)
        try:
            self._channels = [
                _Channel(label, self._notifier(position, label, url))
                for position, (label, url) in enumerate(zip(labels, urls, strict=True), start=1)
            ]
        except ConfigError:
            self._remove_scrubber()
            raise
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jsonl_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._worker_done = False
        self._release_on_exit = False
        self._outstanding = 0
        self._notices: deque[Notice] = deque()
        self._notice_keys: set[str] = set()
        self._prefetched: deque[_Row] = deque()
        self._dispatched: set[str] = set()
        """Keys handed to a delivery slot and not finished: a re-read of the outbox skips them."""
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        # at most max_per_minute deliveries in any 60 s (moving window, `limits`)
        self._rate = MovingWindowRateLimiter(MemoryStorage())
        self._per_minute = RateLimitItemPerMinute(settings.max_per_minute)
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "submitted", "duplicates", "below_min_class", "rejected_closed", "requeued",
                "resent_in_flight", "delivered", "undelivered", "retried", "rate_limited",
                "jsonl_written", "jsonl_failed", "jsonl_imported", "jsonl_unreadable_lines",
                "notices", "notices_delivered", "notices_undelivered", "internal_errors", "digests",
            ),
            0,
        )
        self._failed: dict[str, int] = dict.fromkeys(labels, 0)
        self._outbox: AlertOutbox | None = None
        if not notices_only:
            try:
                self._outbox = AlertOutbox(settings.outbox_file())
                if self._outbox.created:
                    self._import_jsonl(self._outbox)
                pending, in_flight = self._outbox.requeue()
            except BaseException as exc:
                self._remove_scrubber()
                if self._outbox is not None:
                    self._outbox.close()
                if isinstance(exc, sqlite3.Error):
                    msg = f"cannot prepare the alert outbox {settings.outbox_file()}: {exc}"
                    raise SinkFatalError(msg) from exc
                raise
            self._outstanding = pending + in_flight
            self._counts["requeued"] = pending + in_flight
            self._counts["resent_in_flight"] = in_flight
            if pending or in_flight:
                log.warning(
                    "alerts: outbox %s holds %d undelivered alert(s) from an earlier run, sent now "
                    "(%d were in flight and may reach a channel twice)",
                    self._outbox.path, pending + in_flight, in_flight,
                )
        self._pool = (
            ThreadPoolExecutor(max_workers=len(self._channels) * settings.concurrency,
                               thread_name_prefix="ifd-alert-channel")
            if len(self._channels) > 1
            else None
        )
        self._deliveries = (
            ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="ifd-alert-send")
            if settings.concurrency > 1
            else None
        )
        self._thread = threading.Thread(target=self._run, name="ifd-alerts", daemon=True)
        self._thread.start()
        shown = masked(settings)
        if notices_only:
            shown.update(outbox_path=None, jsonl_path=None, queue_size=None)  # not used
        log.debug("alerts%s: %s", " (notices only)" if notices_only else "", shown)
        if not notices_only:
            log.info("alerts: class %s and above -> %s, %d channel(s)", settings.min_class,
                     settings.jsonl_path or "no file", len(self._channels))

    def _notifier(self, position: int, label: str, url: str) -> apprise.Apprise:
        """Build one channel's Apprise object with our socket timeouts.

        Raises
        ------
        ConfigError
            Apprise does not accept the URL (unknown scheme, missing tokens).
        """
        asset = apprise.AppriseAsset()
        plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
        if plugin is None:
            msg = (
                f"IFD_ALERT_URLS entry #{position} ({label}) is not a valid Apprise URL "
                "(unknown scheme or missing tokens; see https://github.com/caronc/apprise/wiki)"
            )
            raise ConfigError(msg)
        plugin.socket_connect_timeout = self.settings.timeout_s
        plugin.socket_read_timeout = self.settings.timeout_s
        notifier = apprise.Apprise(asset=asset)
        notifier.add(plugin)
        return notifier

    # ---------------------------------------------------------------- caller side

    def submit(self, signal: Signal) -> bool:
        """Accept one signal: :meth:`submit_many` of ``[signal]``."""
        return self.submit_many([signal])[0]

    def submit_many(self, signals: list[Signal]) -> list[bool]:
        """Accept ``signals`` for delivery: commit them to the outbox (one transaction), then return.

        Does not wait for any channel: one SQLite transaction and one JSONL append, so a
        window close's burst is committed at once (and can go out as one digest).

        Parameters
        ----------
        signals : list of Signal
            Scored windows; identity ``signal.alert_key``.

        Returns
        -------
        list of bool
            Per signal, ``True`` when accepted: the outbox row is committed and
            survives a killed process. ``False`` when its class is below
            ``min_class``, its ``alert_key`` is already in the outbox
            (``duplicates``, also across restarts) or the dispatcher is closed
            (``rejected_closed``).

        Raises
        ------
        SinkRetryableError
            The outbox could not be written (disk full, locked): none of the
            signals was accepted; the caller may retry.
        RuntimeError
            The dispatcher was built with ``notices_only=True``.
        """
        if self._outbox is None:
            msg = "this AlertDispatcher was built with notices_only=True and does not take signals"
            raise RuntimeError(msg)
        wanted = [CLASS_RANK[s.signal_class.value] >= self._min_rank for s in signals]
        self._count("below_min_class", wanted.count(False))
        offered = [s for s, ok in zip(signals, wanted, strict=True) if ok]
        if not offered:
            return wanted
        with self._lock:
            if self._closed:
                self._counts["rejected_closed"] += len(offered)
                log.warning("alerts %s not accepted: dispatcher is closed",
                            ", ".join(s.alert_key for s in offered))
                return [False] * len(signals)
            self._outstanding += len(offered)  # before the insert: the worker may finish rows at once
            for signal in offered:  # before the insert: the worker may read the rows at once
                self._accepted.setdefault(signal.alert_key, signal)
        inserted: list[bool] = []
        try:
            with self._jsonl_lock:  # the pending lines precede the worker's final lines
                inserted = self._outbox.add_many([(s.alert_key, s.model_dump_json()) for s in offered])
                for signal, new in zip(offered, inserted, strict=True):
                    if new:
                        self._write_jsonl(signal, status="pending", channels={})
        except sqlite3.Error as exc:
            keys = ", ".join(s.alert_key for s in offered)
            msg = f"alerts {keys} not accepted: cannot write the outbox {self._outbox.path}: {exc}"
            raise SinkRetryableError(msg) from exc
        finally:
            accepted = sum(inserted)
            with self._idle:
                self._counts["submitted"] += accepted
                self._outstanding -= len(offered) - accepted
                for signal, new in zip(offered, inserted or [False] * len(offered), strict=True):
                    if not new and self._accepted.get(signal.alert_key) is signal:
                        del self._accepted[signal.alert_key]  # a duplicate, or nothing was written
                self._idle.notify_all()
        self._count("duplicates", len(offered) - accepted)
        if self._latency is not None and accepted:
            now = time.time()
            with self._lock:
                for signal, new in zip(offered, inserted, strict=True):
                    if new:
                        self._submitted_at[signal.alert_key] = now
        if accepted:
            self._wake.set()
        results = iter(inserted)
        return [next(results) if ok else False for ok in wanted]

    def notify(self, key: str, title: str, body: str) -> bool:
        """Queue an operational notice (e.g. the live budget) for every channel, once per ``key``.

        Delivered before queued signals, with retries and redaction, never
        blocking; not rate-limited, not written to the outbox or the JSONL
        file, and lost if the process dies before it is sent.

        Returns
        -------
        bool
            ``True`` when queued; ``False`` for a ``key`` seen before by this
            dispatcher or a closed dispatcher.
        """
        with self._lock:
            if self._closed or key in self._notice_keys:
                return False
            self._notice_keys.add(key)
            self._notices.append(Notice(key, title, body))
            self._outstanding += 1
            self._counts["notices"] += 1
        self._wake.set()
        return True

    def wait_delivered(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` (s) for every accepted signal to reach a final status.

        Returns ``True`` when none is outstanding; ``False`` at the timeout (they stay in
        delivery; nothing is lost). Never raises.
        """
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._outstanding > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def flush(self, timeout_s: float) -> None:
        """Wait until every accepted signal and queued notice has reached a final status.

        Parameters
        ----------
        timeout_s : float
            Longest wait in seconds.

        Raises
        ------
        SinkRetryableError
            Alerts are still pending after ``timeout_s`` (call again to keep
            waiting); nothing is lost by the timeout itself.
        """
        if not self.wait_delivered(timeout_s):
            with self._idle:
                msg = f"alert queue not drained after {timeout_s} s: {self._outstanding} signal(s) pending"
            raise SinkRetryableError(msg)

    def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Wait for deliveries (up to about ``timeout_s`` seconds), stop the worker, close the outbox.

        Never raises. Signals not delivered by then stay ``pending`` (or
        ``in_flight``) in the outbox and are sent by the next dispatcher on
        the same file; their number is logged. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        try:
            self.flush(timeout_s)
        except SinkRetryableError as exc:
            log.warning("alerts: closing before every alert was sent: %s", exc)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
        if self._outbox is not None:
            self._log_left(self._outbox)
        with self._lock:
            # a worker still inside a delivery releases the outbox and the log filter after it
            self._release_on_exit = not self._worker_done
        if self._release_on_exit:
            log.warning("alerts: the worker is still sending and closes the outbox after it "
                        "(if the process exits first, alerts in flight are sent again at the next start)")
        else:
            self._release()
        counts = {k: v for k, v in self.stats.items() if v}
        log.info("alerts closed: %s", counts or "nothing to send")

    def _log_left(self, outbox: AlertOutbox) -> None:
        try:
            counts = outbox.counts()
        except sqlite3.Error as exc:
            log.warning("alerts: cannot count the outbox %s at close: %s", outbox.path, exc)
            return
        left = counts["pending"] + counts["in_flight"]
        if left and outbox.path is None:
            log.error(
                "alerts: %d undelivered alert(s) lost with the in-memory outbox "
                "(set IFD_ALERT_OUTBOX_PATH or IFD_ALERT_JSONL_PATH to keep them)", left,
            )
        elif left:
            log.warning(
                "alerts: %d undelivered alert(s) stay in the outbox %s and are sent at the next start",
                left, outbox.path,
            )

    def _release(self) -> None:
        """Close the outbox, the channel pool and the log filter (once the worker has stopped)."""
        if self._outbox is not None:
            self._outbox.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._remove_scrubber()

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since start (a snapshot copy).

        Signals: ``submitted`` accepted into the outbox; ``duplicates``
        already in the outbox; ``below_min_class``; ``rejected_closed``
        offered after :meth:`close`; ``requeued`` rows found undelivered at
        start, of which ``resent_in_flight`` were in flight; ``delivered``
        accepted by ≥ 1 channel; ``undelivered`` accepted by none;
        ``rate_limited``. Channels: ``failed`` label → signals that channel
        rejected after all attempts; ``retried`` retry attempts. Audit:
        ``jsonl_written``/``jsonl_failed`` lines; ``jsonl_imported`` and
        ``jsonl_unreadable_lines`` from a JSONL file found when the outbox
        was created. Notices: ``notices`` queued, ``notices_delivered``,
        ``notices_undelivered``. ``internal_errors``: unexpected worker
        errors (logged with traceback).
        """
        with self._lock:
            return {**self._counts, "failed": dict(self._failed)}

    @property
    def channel_labels(self) -> list[str]:
        """Redacted channel names, in ``IFD_ALERT_URLS`` order."""
        return [channel.label for channel in self._channels]

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows per status (all zero for a ``notices_only`` dispatcher).

        Raises
        ------
        sqlite3.Error
            The outbox cannot be read (e.g. after :meth:`close`).
        """
        if self._outbox is None:
            return dict.fromkeys(OUTBOX_STATUSES, 0)
        return self._outbox.counts()

    # ---------------------------------------------------------------- worker side

    def _remove_scrubber(self) -> None:
        self._scrubber.detach()

    def _count(self, name: str, n: int = 1) -> int:
        with self._lock:
            self._counts[name] += n
            return self._counts[name]

    def _done(self) -> None:
        """One accepted signal or notice reached its end (wakes :meth:`flush`)."""
        with self._idle:
            self._outstanding = max(self._outstanding - 1, 0)
            self._idle.notify_all()

    def _run(self) -> None:
        try:
            self._work()
        finally:
            if self._deliveries is not None:  # deliveries in progress finish (their rows stay exact)
                self._deliveries.shutdown(wait=True)
            with self._lock:
                self._worker_done = True
                release = self._release_on_exit
            if release:
                self._release()

    def _work(self) -> None:
        while True:
            self._wake.clear()
            if self._stop.is_set():  # undelivered rows stay in the outbox for the next start
                return
            with self._lock:
                notice = self._notices.popleft() if self._notices else None
            if notice is not None:
                self._guarded(notice.alert_key, self._deliver_notice, notice)
                continue
            rows = self._next_rows()  # one signal, or a burst for one digest message
            if rows:
                self._dispatch(rows)
                continue
            self._wake.wait(_IDLE_POLL_S)

    def _dispatch(self, rows: list[_Row]) -> None:
        """Deliver ``rows`` (one signal, or several as one digest) on a free slot; waits for one.

        The rate limit is taken here, once per message and in acceptance order, so the
        messages a burst lets through are its first ones whatever order the slots finish in.
        """
        allowed = not self._channels or self._rate.hit(self._per_minute, "alerts")

        def run() -> None:
            try:
                self._guarded_rows(rows, allowed=allowed)
            finally:
                with self._lock:
                    self._dispatched.difference_update(r.alert_key for r in rows)

        if self._deliveries is None:
            run()
            return
        while not self._slots.acquire(timeout=_IDLE_POLL_S):
            if self._stop.is_set():  # not started: stays pending in the outbox
                with self._lock:
                    self._dispatched.difference_update(r.alert_key for r in rows)
                return

        def deliver() -> None:
            try:
                run()
            finally:
                self._slots.release()

        self._deliveries.submit(deliver)

    def _next_rows(self) -> list[_Row]:
        """Oldest pending outbox rows: one, or up to ``digest_max`` when ``digest_min`` are waiting.

        Rows are read ``queue_size`` at a time; with digests on, a short prefetch is read again
        so a burst committed since is taken whole. Rows handed to a delivery slot are skipped
        (they may not be marked in flight yet).
        """
        if self._outbox is None:
            return []
        digest = self.settings.digest_min >= 2
        if not self._prefetched or (digest and len(self._prefetched) < self.settings.digest_max):
            try:
                rows = self._outbox.pending(self.settings.queue_size)
            except sqlite3.Error:
                self._count("internal_errors")
                log.exception("alerts: cannot read the outbox %s", self._outbox.path)
                self._stop.wait(_ERROR_PAUSE_S)
                return []
            with self._lock:
                self._prefetched.clear()
                self._prefetched.extend(_Row(*row) for row in rows if row[1] not in self._dispatched)
        with self._lock:
            waiting = len(self._prefetched)
            take = min(waiting, self.settings.digest_max) if digest and waiting >= self.settings.digest_min \
                else min(waiting, 1)
            taken = [self._prefetched.popleft() for _ in range(take)]
            self._dispatched.update(r.alert_key for r in taken)
        return taken

    def _guarded(self, key: str, step: Callable[[Any], None], item: Any) -> None:
        """Run one notice's delivery; the worker must survive anything."""
        try:
            step(item)
        except Exception:
            self._count("internal_errors")
            log.exception("alert %s: unexpected error in the alert worker", key)
        self._done()

    def _guarded_rows(self, rows: list[_Row], *, allowed: bool) -> None:
        """Deliver ``rows``; the worker must survive anything.

        Rows whose delivery raised are marked ``failed`` (not sent again). When even that
        write fails, they stay outstanding and are read again after a pause.
        """
        keys = [r.alert_key for r in rows]
        try:
            self._process(rows, allowed=allowed)
        except Exception:
            self._count("internal_errors")
            log.exception("alert %s: unexpected error in the alert worker", ", ".join(keys))
            if self._outbox is not None:
                try:
                    self._outbox.finish(keys[0], "failed", {}, *keys[1:])
                except sqlite3.Error:
                    log.warning("alert %s stays in the outbox: sent later or at the next start",
                                ", ".join(keys))
                    with self._lock:
                        self._prefetched.clear()
                        self._dispatched.difference_update(keys)  # read again after the pause
                    self._stop.wait(_ERROR_PAUSE_S)
                    return
        for _ in rows:
            self._done()

    def _deliver_notice(self, notice: Notice) -> None:
        outcomes = [self._send(c, notice.alert_key, notice.title, notice.body,
                               apprise.NotifyType.WARNING) for c in self._channels]
        self._count("notices_delivered" if any(outcomes) else "notices_undelivered")
        log.warning("notice %s: %s", notice.alert_key, notice.title)

    def _process(self, rows: list[_Row], *, allowed: bool) -> None:
        """Deliver outbox rows as one message (``allowed``: the rate limit let it through)."""
        outbox = self._outbox
        assert outbox is not None  # rows come from the outbox
        signals: list[Signal] = []
        with self._lock:
            known = [self._accepted.pop(row.alert_key, None) for row in rows]
        for row, signal in zip(rows, known, strict=True):
            if signal is not None:
                signals.append(signal)
                continue
            try:
                signals.append(Signal.model_validate_json(row.payload))
            except ValidationError:
                self._count("internal_errors")
                log.error("alert %s: unreadable outbox payload, marked failed", row.alert_key)
                outbox.finish(row.alert_key, "failed", {})
        if not signals:
            return
        if not self._channels:  # nothing is sent, so nothing to rate-limit
            self._finish(outbox, signals, "jsonl_only", {})
            return
        key = signals[0].alert_key if len(signals) == 1 else f"digest of {len(signals)}"
        if not allowed:
            limited = self._count("rate_limited", len(signals))
            first_of_a_hundred = (limited - len(signals)) // 100 != limited // 100  # 1st, 100th, ...
            log.log(
                logging.WARNING if first_of_a_hundred or limited == len(signals) else logging.DEBUG,
                "alert %s rate-limited (IFD_ALERT_MAX_PER_MINUTE=%d; %d so far): not sent, "
                "recorded as rate_limited", key, self.settings.max_per_minute, limited,
            )
            self._finish(outbox, signals, "rate_limited", {})
            return
        outbox.mark_in_flight(*(s.alert_key for s in signals))
        if len(signals) == 1:
            title, body = alert_title(signals[0]), alert_body(signals[0])
        else:
            title, body = digest_title(signals), digest_body(signals)
        strong = any(s.signal_class is SignalClass.STRONG for s in signals)
        notify_type = apprise.NotifyType.WARNING if strong else apprise.NotifyType.INFO

        def send(channel: _Channel) -> bool:
            return self._send(channel, key, title, body, notify_type)

        if self._pool is None:
            outcomes = [send(channel) for channel in self._channels]
        else:
            outcomes = list(self._pool.map(send, self._channels))
        results = {c.label: ok for c, ok in zip(self._channels, outcomes, strict=True)}
        delivered = any(outcomes)
        self._count("delivered" if delivered else "undelivered", len(signals))
        if len(signals) > 1:
            self._count("digests")
        if delivered:
            log.info("alert %s delivered to %s", key, [k for k, ok in results.items() if ok])
        self._finish(outbox, signals, "delivered" if delivered else "failed", results)

    def _finish(self, outbox: AlertOutbox, signals: list[Signal], status: str,
                channels: dict[str, bool]) -> None:
        """Outbox first (the record of truth, one transaction), then the JSONL lines."""
        keys = [s.alert_key for s in signals]
        if self._latency is not None:
            with self._lock:
                submitted = [self._submitted_at.pop(k, None) for k in keys]
            started = [t for t in submitted if t is not None]  # an earlier run's row: no start
            if status == "delivered" and started:
                now = time.time()
                self._latency.record("alert_delivered", now, [1e3 * (now - t) for t in started])
        outbox.finish(keys[0], status, channels, *keys[1:])
        with self._jsonl_lock:
            for signal in signals:
                self._write_jsonl(signal, status=status, channels=channels)

    def _send(self, channel: _Channel, key: str, title: str, body: str, notify_type: Any) -> bool:
        """Deliver to one channel with retries; ``False`` after ``max_attempts`` failures."""
        initial = self.settings.backoff_initial_s

        def before_sleep(state: RetryCallState) -> None:
            self._count("retried")
            log.debug(
                "alert %s: %s attempt %d failed (%s); retrying",
                key, channel.label, state.attempt_number,
                state.outcome.exception() if state.outcome is not None else "?",
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=wait_exponential(multiplier=initial, max=MAX_BACKOFF_S) + wait_random(0, initial),
            retry=retry_if_exception_type(_NotDelivered),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            retrying(self._notify_once, channel, title, body, notify_type)
        except _NotDelivered as exc:
            with self._lock:
                self._failed[channel.label] += 1
            log.warning(
                "alert %s not delivered to %s after %d attempt(s): %s",
                key, channel.label, self.settings.max_attempts, exc,
            )
            return False
        return True

    @staticmethod
    def _notify_once(channel: _Channel, title: str, body: str, notify_type: Any) -> None:
        """One Apprise call.

        Raises
        ------
        _NotDelivered
            ``notify()`` returned a falsy result or raised (only the exception
            type is kept: messages may quote the URL).
        """
        try:
            ok = channel.notifier.notify(body=body, title=title, notify_type=notify_type)
        except Exception as exc:
            msg = f"notify() raised {type(exc).__name__}"
            raise _NotDelivered(msg) from None
        if not ok:
            msg = "notify() reported failure (see the apprise logger)"
            raise _NotDelivered(msg)

    def _import_jsonl(self, outbox: AlertOutbox) -> None:
        """Import the final lines of a JSONL file written before the outbox existed.

        Lines with a final status become finished rows, so an upgrade from the
        JSONL-only dispatcher does not send those alerts again. Other lines
        (``pending``) are skipped: the signal is sent again if it is re-emitted.
        """
        path = self.settings.jsonl_path
        if path is None or not path.is_file():
            return
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            log.warning("cannot read %s to import earlier alerts: %s", path, exc)
            return
        imported = 0
        for line in lines:
            try:
                record = json.loads(line)
                status = record.get("status")
                if status not in FINAL_STATUSES:
                    continue
                key = record.get("alert_key")
                if key is None:  # written before lines carried alert_key
                    start = datetime.fromisoformat(record["window_start"].replace("Z", "+00:00"))
                    key = f"{record['contract_key']}@{start.isoformat()}#{record['signal_class']}"
                at = str(record.get("alerted_at") or now_iso())
                imported += outbox.add_finished(str(key), status, line, at)
            except (ValueError, KeyError, TypeError, AttributeError):
                self._count("jsonl_unreadable_lines")
        self._count("jsonl_imported", imported)
        if imported:
            log.info("alerts: %d earlier alerts imported from %s into the new outbox %s",
                     imported, path, outbox.path)

    def _write_jsonl(self, signal: Signal, *, status: str, channels: dict[str, bool]) -> None:
        """Append one audit line; the caller holds ``_jsonl_lock``."""
        path = self.settings.jsonl_path
        if path is None:
            return
        record = signal.model_dump(mode="json")
        record.update(
            alert_key=signal.alert_key,
            alerted_at=now_iso(),
            status=status,
            delivered=status == "delivered",
            channels=channels,
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            self._count("jsonl_failed")
            log.warning("alert %s: cannot append to %s: %s", signal.alert_key, path, exc)
            return
        self._count("jsonl_written")
