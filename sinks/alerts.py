"""Alerts: deliver strong IFD signals to people, asynchronously, through Apprise.

:class:`AlertDispatcher` takes :class:`~models.signals.Signal` objects from the
dataflow (:meth:`AlertDispatcher.submit`, never blocks), and a background
thread sends each one to every configured channel and appends it to a JSONL
audit file. This module imports neither bytewax nor ClickHouse.

Configuration (``IFD_ALERT_*`` environment variables or ``.env``)
---------------------------------------------------------------------

=============================== ======================= ===================================================
variable                        default                 meaning
=============================== ======================= ===================================================
``IFD_ALERT_URLS``              unset (JSONL only)      comma-separated Apprise URLs (secret, never logged)
``IFD_ALERT_MIN_CLASS``         ``STRONG``              lowest class alerted: STRONG > MODERATE > MONITOR
``IFD_ALERT_JSONL_PATH``        ``data/alerts.jsonl``   audit file, one JSON line per alert (empty = off)
``IFD_ALERT_MAX_PER_MINUTE``    ``30``                  global token bucket: burst and refill per minute
``IFD_ALERT_MAX_ATTEMPTS``      ``4``                   attempts per channel (1 = no retry)
``IFD_ALERT_BACKOFF_INITIAL_S`` ``0.5``                 first retry delay; doubles per attempt (max 30 s),
                                                        plus up to the same amount of random jitter
``IFD_ALERT_TIMEOUT_S``         ``10``                  socket connect and read timeout per request
``IFD_ALERT_QUEUE_SIZE``        ``1000``                signals waiting for delivery before drops
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
a failure is attributed to that channel. Channels are named in logs, stats
and the JSONL file by their scheme only: ``json://***``, ``slack://***``; a
second channel with the same scheme becomes ``json://***#2`` and so on.

Guarantees
----------
- **Never blocks or stops the flow**: :meth:`AlertDispatcher.submit` puts on a
  bounded queue without waiting; a full queue drops the signal (counted as
  ``dropped_queue_full`` and logged). Delivery errors are counted and logged,
  never raised to the caller.
- **At most once** per ``signal.alert_key`` (contract and window) per
  process, among the last :data:`DEDUP_CAPACITY` distinct keys accepted: a
  replayed or re-emitted window is not alerted twice. A delivery attempt
  that fails all ``max_attempts`` is not tried again later.
- **Rate limit**: at most ``max_per_minute`` signals go out in any burst,
  refilled at ``max_per_minute`` per minute (checked when the worker picks
  the signal up). A rate-limited signal is *not* sent to any channel; it is
  counted (``rate_limited``), logged at WARNING and still appended to the
  JSONL file with ``"status": "rate_limited"`` and ``"delivered": false``.
- **Secrets**: URLs are a :class:`~pydantic.SecretStr`; they do not appear in
  reprs, stats, JSONL, exceptions or this module's logs. Apprise and urllib3
  log request URLs at DEBUG (``Slack POST URL: https://hooks.slack.com/
  services/<tokens>``); while a dispatcher is open, a filter on the
  ``apprise`` and ``urllib3.connectionpool`` loggers replaces the secret
  parts of the configured URLs (password, path and query tokens) by ``***``.

JSONL audit record
------------------
``signal.model_dump(mode="json")`` plus ``alerted_at`` (ISO-8601 UTC),
``status`` (``delivered`` = at least one channel accepted, ``failed`` = none
did, ``rate_limited``, ``jsonl_only`` = no URLs configured), ``delivered``
(bool) and ``channels`` (label → bool).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import apprise
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from models.errors import ConfigError, SinkRetryableError
from models.signals import Signal, SignalClass

log = logging.getLogger(__name__)

AlertClass = Literal["STRONG", "MODERATE", "MONITOR"]

CLASS_RANK: dict[str, int] = {
    SignalClass.MONITOR.value: 0,
    SignalClass.MODERATE.value: 1,
    SignalClass.STRONG.value: 2,
}
"""Order of signal classes: a signal is alerted when its rank ≥ ``min_class``'s."""

DEDUP_CAPACITY = 100_000
"""Distinct ``alert_key`` values remembered for de-duplication (oldest forgotten first)."""

MAX_BACKOFF_S = 30.0
"""Upper bound of one exponential retry delay, before jitter, in seconds."""

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_URL_SPLIT_RE = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_TOKEN_SPLIT_RE = re.compile(r"[/?&=:@,;#]+")
_MIN_PATH_TOKEN = 6
"""Path/query parts at least this long are treated as secrets by the log filter."""


class AlertSettings(BaseSettings):
    """Frozen alert settings from ``IFD_ALERT_*`` variables; build with :func:`load_alert_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="IFD_ALERT_", env_file=".env", extra="ignore", frozen=True
    )

    urls: SecretStr | None = Field(
        default=None, description="Comma-separated Apprise URLs; unset = JSONL file only."
    )
    min_class: AlertClass = "STRONG"
    jsonl_path: Path | None = Path("data/alerts.jsonl")
    max_per_minute: int = Field(default=30, ge=1)
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_initial_s: float = Field(default=0.5, ge=0.0)
    timeout_s: float = Field(default=10.0, gt=0.0)
    queue_size: int = Field(default=1000, ge=1)

    def url_list(self) -> list[str]:
        """Return the configured Apprise URLs (secret!), blanks removed; empty when unset."""
        if self.urls is None:
            return []
        raw = self.urls.get_secret_value().strip()
        return [part.strip() for part in _URL_SPLIT_RE.split(raw) if part.strip()]

    def channel_labels(self) -> list[str]:
        """Return the redacted channel names (``json://***``, ``json://***#2`` …), URL order."""
        return _labels(self.url_list())

    def masked(self) -> dict[str, object]:
        """Effective settings for logging, with the URLs replaced by their labels."""
        shown = self.model_dump()
        shown["urls"] = self.channel_labels()
        return shown


def load_alert_settings(**overrides: object) -> AlertSettings:
    """Read alert settings from the environment (and ``.env``), applying overrides.

    Raises
    ------
    ConfigError
        When a variable is invalid; the message names ``IFD_ALERT_<NAME>``
        and the value given (masked for ``IFD_ALERT_URLS``).
    """
    try:
        return AlertSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            given = "***" if field == "urls" else repr(err.get("input"))
            problems.append(f"IFD_ALERT_{field.upper()}={given}: {err['msg']}")
        msg = "invalid alert configuration: " + "; ".join(problems)
        raise ConfigError(msg) from None


def _scheme_label(url: str) -> str:
    """``scheme://***`` for a URL; ``invalid://***`` when it has no plausible scheme."""
    scheme, sep, _ = url.partition("://")
    if not sep or not _SCHEME_RE.match(scheme):
        scheme = "invalid"
    return f"{scheme.lower()}://***"


def _labels(urls: list[str]) -> list[str]:
    """Redacted, unique channel labels in URL order (``#n`` suffix for repeated schemes)."""
    seen: dict[str, int] = {}
    labels = []
    for url in urls:
        base = _scheme_label(url)
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def _secret_fragments(url: str) -> set[str]:
    """Parts of an Apprise URL that may be credentials: userinfo, long path/query tokens.

    The password is always treated as secret; the user, path and query parts
    and a dot-less host (Apprise puts tokens there: ``slack://TokenA/...``)
    when at least :data:`_MIN_PATH_TOKEN` characters. DNS names, IP
    addresses and ports stay visible.
    """
    fragments: set[str] = set()
    _, sep, rest = url.partition("://")
    if not sep:
        return {url} if url else set()
    netloc, _, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        if len(password) >= 3:
            fragments.add(password)
        if len(user) >= _MIN_PATH_TOKEN:
            fragments.add(user)
    else:
        host = netloc
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    tokens = _TOKEN_SPLIT_RE.split(tail) + (_TOKEN_SPLIT_RE.split(hostname) if "." not in hostname else [])
    fragments.update(t for t in tokens if len(t) >= _MIN_PATH_TOKEN)
    fragments.update({unquote(f) for f in fragments})
    return {f for f in fragments if f}


class _SecretScrubber(logging.Filter):
    """Replace secret URL fragments in log records of third-party loggers by ``***``."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        # longest first so a token containing another is replaced whole
        self._secrets = sorted(secrets, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the emitter's problem
            return True
        scrubbed = message
        for secret in self._secrets:
            scrubbed = scrubbed.replace(secret, "***")
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(secret in text for secret in self._secrets):
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg} [exception details withheld: contains a secret]"
        return True


_SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool")


class _TokenBucket:
    """Token bucket: ``capacity`` tokens, refilled at ``capacity`` per 60 s.

    Parameters
    ----------
    per_minute : int
        Burst size and refill rate in tokens per minute (≥ 1).
    clock : callable
        Monotonic clock in seconds.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate_per_s = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        """Take one token if available; ``False`` means rate-limited."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate_per_s)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _NotDelivered(Exception):
    """One attempt on one channel failed; carries a message free of secrets."""


@dataclass(frozen=True)
class _Channel:
    label: str
    notifier: apprise.Apprise


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def alert_title(signal: Signal) -> str:
    """One-line title, e.g. ``IFD STRONG BUY NQZ6 C21500 2026-11-20 13:35Z`` (window start, UTC)."""
    start = _utc(signal.window_start)
    return (
        f"IFD {signal.signal_class.value} {signal.direction.value} {signal.symbol} "
        f"{start:%Y-%m-%d %H:%M}Z"
    )


def alert_body(signal: Signal) -> str:
    """Plain-text body: ``signal.reason`` then the key numbers (volumes in contracts)."""
    start, end = _utc(signal.window_start), _utc(signal.window_end)
    expiry = f"{_utc(signal.expiration):%Y-%m-%d}" if signal.expiration is not None else "n/a"
    strike = f"{signal.strike:g}" if signal.strike is not None else "n/a"
    return "\n".join(
        [
            signal.reason,
            "",
            f"contract: {signal.symbol} ({signal.contract_key}, id {signal.instrument_id})",
            f"underlying {signal.underlying}, {signal.option_type} strike {strike}, expires {expiry}",
            f"window: {start:%Y-%m-%d %H:%M}-{end:%H:%M}Z",
            f"class {signal.signal_class.value}, {signal.direction.value}, "
            f"confidence {signal.confidence:.2f}",
            f"volume {signal.total_volume:,} (bid {signal.bid_volume:,} / ask {signal.ask_volume:,}), "
            f"{signal.total_trades:,} trades, avg size {signal.avg_trade_size:.1f}",
            f"volume z {signal.volume_z:.2f}, dominance {signal.dominance:.2f}, "
            f"size ratio {signal.size_ratio:.2f}, mm score {signal.mm_score:.2f}",
            f"baseline {signal.baseline_scope}: {signal.baseline_windows} windows, "
            f"volume {signal.baseline_volume:.1f}, avg size {signal.baseline_avg_size:.1f}",
        ]
    )


@dataclass(frozen=True)
class Notice:
    """A free-form operational alert (see :meth:`AlertDispatcher.notify`)."""

    alert_key: str
    title: str
    body: str


class AlertDispatcher:
    """Asynchronous, de-duplicated, rate-limited alert delivery (see module docstring).

    Parameters
    ----------
    settings : AlertSettings
        Channels, threshold, audit file, limits and retry policy.

    Raises
    ------
    ConfigError
        An entry of ``IFD_ALERT_URLS`` is not a usable Apprise URL; the
        message names its position and redacted scheme, never the URL.

    Notes
    -----
    One daemon worker thread delivers signals in submission order; the
    channels of one signal are tried concurrently, each with its own retries
    (tenacity, exponential backoff with jitter), so a slow or failing channel
    never keeps a signal from the others. Use as a context manager or call
    :meth:`close` at shutdown.
    """

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._min_rank = CLASS_RANK[settings.min_class]
        urls = settings.url_list()
        labels = _labels(urls)
        secrets: set[str] = set()
        for url in urls:
            secrets |= _secret_fragments(url)
        self._scrubber = _SecretScrubber(secrets)
        for name in _SCRUBBED_LOGGERS:
            logging.getLogger(name).addFilter(self._scrubber)
        try:
            self._channels = [
                _Channel(label, self._notifier(position, label, url))
                for position, (label, url) in enumerate(zip(labels, urls, strict=True), start=1)
            ]
        except ConfigError:
            self._remove_scrubber()
            raise
        self._pool = (
            ThreadPoolExecutor(max_workers=len(self._channels), thread_name_prefix="ifd-alert-channel")
            if len(self._channels) > 1
            else None
        )
        self._queue: queue.Queue[Signal] = queue.Queue(maxsize=settings.queue_size)
        self._bucket = _TokenBucket(settings.max_per_minute)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "submitted", "delivered", "undelivered", "retried", "rate_limited",
                "dropped_queue_full", "duplicates", "below_min_class", "dropped_closed",
                "jsonl_written", "jsonl_failed", "internal_errors", "jsonl_unreadable_lines",
            ),
            0,
        )
        self._failed: dict[str, int] = dict.fromkeys(labels, 0)
        self._seed_from_jsonl()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ifd-alerts", daemon=True)
        self._thread.start()
        log.info("alerts: %s", settings.masked())

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
        """Queue ``signal`` for delivery without blocking.

        Parameters
        ----------
        signal : Signal
            A scored window; identity ``signal.alert_key``.

        Returns
        -------
        bool
            ``True`` when queued. ``False`` when its class is below
            ``min_class``, its ``alert_key`` was accepted before (duplicate),
            the queue is full (counted ``dropped_queue_full``, logged; the key
            is not remembered, so a later re-emission may still go out) or the
            dispatcher is closed.
        """
        if CLASS_RANK[signal.signal_class.value] < self._min_rank:
            with self._lock:
                self._counts["below_min_class"] += 1
            return False
        key = signal.alert_key
        with self._lock:
            if self._closed:
                self._counts["dropped_closed"] += 1
                log.warning("alert %s dropped: dispatcher is closed", key)
                return False
            if key in self._seen:
                self._counts["duplicates"] += 1
                return False
            try:
                self._queue.put_nowait(signal)
            except queue.Full:
                self._counts["dropped_queue_full"] += 1
                log.warning(
                    "alert %s dropped: queue full (%d waiting; IFD_ALERT_QUEUE_SIZE)",
                    key, self.settings.queue_size,
                )
                return False
            self._seen[key] = None
            if len(self._seen) > DEDUP_CAPACITY:
                self._seen.popitem(last=False)
            self._pending += 1
            self._counts["submitted"] += 1
        return True

    def notify(self, key: str, title: str, body: str) -> bool:
        """Queue an operational notice (e.g. the live budget) for every channel, once per ``key``.

        Delivered like signals (retries, redaction, never blocking) but not rate-limited
        and not written to the signals JSONL.

        Returns
        -------
        bool
            ``True`` when queued; ``False`` for a repeated ``key``, a full queue or a
            closed dispatcher.
        """
        notice = Notice(key, title, body)
        with self._lock:
            if self._closed or key in self._seen:
                return False
            try:
                self._queue.put_nowait(notice)
            except queue.Full:
                self._counts["dropped_queue_full"] += 1
                return False
            self._seen[key] = None
            self._pending += 1
            self._counts["submitted"] += 1
        return True

    def flush(self, timeout_s: float) -> None:
        """Wait until every queued signal has been delivered, failed or rate-limited.

        Parameters
        ----------
        timeout_s : float
            Longest wait in seconds.

        Raises
        ------
        SinkRetryableError
            Signals are still pending after ``timeout_s`` (call again to keep
            waiting); nothing is lost by the timeout itself.
        """
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = f"alert queue not drained after {timeout_s} s: {self._pending} signal(s) pending"
                    raise SinkRetryableError(msg, retry_after_s=1.0)
                self._idle.wait(remaining)

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush (up to ``timeout_s`` seconds), stop the worker and detach the log filter.

        Never raises: signals still pending after the timeout are logged and
        abandoned with the daemon thread. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout_s)
        except SinkRetryableError as exc:
            log.warning("alerts: closing with undelivered signals: %s", exc)
        self._stop.set()
        self._thread.join(timeout=max(timeout_s, 1.0))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._remove_scrubber()
        log.info("alerts closed: %s", self.stats)

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since start (a snapshot copy).

        ``submitted`` queued; ``delivered`` signals accepted by ≥ 1 channel;
        ``undelivered`` signals no channel accepted; ``failed`` channel label →
        signals that channel rejected after all attempts; ``retried`` retry
        attempts over all channels; ``rate_limited``; ``dropped_queue_full``;
        ``duplicates``; ``below_min_class``; ``dropped_closed``;
        ``jsonl_written``/``jsonl_failed`` audit lines; ``internal_errors``
        unexpected worker errors (logged with traceback).
        """
        with self._lock:
            return {**self._counts, "failed": dict(self._failed)}

    @property
    def channel_labels(self) -> list[str]:
        """Redacted channel names, in ``IFD_ALERT_URLS`` order."""
        return [channel.label for channel in self._channels]

    # ---------------------------------------------------------------- worker side

    def _remove_scrubber(self) -> None:
        for name in _SCRUBBED_LOGGERS:
            logging.getLogger(name).removeFilter(self._scrubber)

    def _count(self, name: str, n: int = 1) -> int:
        with self._lock:
            self._counts[name] += n
            return self._counts[name]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                signal = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                if isinstance(signal, Notice):
                    self._deliver_notice(signal)
                else:
                    self._process(signal)
            except Exception:  # the worker must survive anything
                self._count("internal_errors")
                log.exception("alert %s: unexpected error in the alert worker", signal.alert_key)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver_notice(self, notice: Notice) -> None:
        outcomes = [self._send(c, notice.alert_key, notice.title, notice.body,
                               apprise.NotifyType.WARNING) for c in self._channels]
        self._count("delivered" if any(outcomes) else "undelivered")
        log.warning("notice %s: %s", notice.alert_key, notice.title)

    def _process(self, signal: Signal) -> None:
        key = signal.alert_key
        if not self._channels:  # nothing is sent, so nothing to rate-limit
            self._write_jsonl(signal, status="jsonl_only", channels={})
            return
        if not self._bucket.take():
            limited = self._count("rate_limited")
            log.log(
                logging.WARNING if limited == 1 or limited % 100 == 0 else logging.DEBUG,
                "alert %s rate-limited (IFD_ALERT_MAX_PER_MINUTE=%d; %d so far): not sent, "
                "written to JSONL", key, self.settings.max_per_minute, limited,
            )
            self._write_jsonl(signal, status="rate_limited", channels={})
            return
        title, body = alert_title(signal), alert_body(signal)
        notify_type = (
            apprise.NotifyType.WARNING
            if signal.signal_class is SignalClass.STRONG
            else apprise.NotifyType.INFO
        )

        def send(channel: _Channel) -> bool:
            return self._send(channel, key, title, body, notify_type)

        if self._pool is None:
            outcomes = [send(channel) for channel in self._channels]
        else:
            outcomes = list(self._pool.map(send, self._channels))
        results = {c.label: ok for c, ok in zip(self._channels, outcomes, strict=True)}
        delivered = any(outcomes)
        self._count("delivered" if delivered else "undelivered")
        if delivered:
            log.info("alert %s delivered to %s", key, [k for k, ok in results.items() if ok])
        self._write_jsonl(signal, status="delivered" if delivered else "failed", channels=results)

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

    def _seed_from_jsonl(self) -> None:
        """Remember alerts already sent in earlier runs (replays and restarts don't re-alert).

        Lines with status ``delivered`` or ``jsonl_only`` count; failed and
        rate-limited alerts may go out again.
        """
        path = self.settings.jsonl_path
        if path is None or not path.is_file():
            return
        try:
            lines = path.read_text(encoding="utf-8").splitlines()[-DEDUP_CAPACITY:]
        except OSError as exc:
            log.warning("cannot read %s to de-duplicate alerts: %s", path, exc)
            return
        for line in lines:
            try:
                record = json.loads(line)
                if record.get("status") not in ("delivered", "jsonl_only"):
                    continue
                start = datetime.fromisoformat(record["window_start"].replace("Z", "+00:00"))
                self._seen[f"{record['contract_key']}@{start.isoformat()}"] = None
            except (ValueError, KeyError, TypeError):
                self._count("jsonl_unreadable_lines")
        if self._seen:
            log.info("alerts: %d earlier alerts from %s will not be sent again", len(self._seen), path)

    def _write_jsonl(self, signal: Signal, *, status: str, channels: dict[str, bool]) -> None:
        path = self.settings.jsonl_path
        if path is None:
            return
        record = signal.model_dump(mode="json")
        record.update(
            alerted_at=datetime.now(UTC).isoformat(),
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
