"""bytewax source over :class:`connectors.live.LiveFeed` (one partition per subscription).

The partition snapshot is the feed's :class:`~connectors.live_resume.LiveResume`:
after a restart from a bytewax recovery snapshot the feed resubscribes with
intraday replay from its position and drops exactly the records emitted
before, so nothing is lost or counted twice.

Stopping: on the main thread the partition installs SIGINT/SIGTERM handlers
that ask the feed to finish (it emits every record received, then ends the
stream, so bytewax closes every window and the sinks flush); a second signal
interrupts at once. A fatal feed error (rejected key, rejected subscription,
gap beyond the replay horizon, reconnects exhausted) is logged as one line,
ends the stream the same way and is recorded for the exit status
(:func:`models.errors.record_fatal`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from connectors.live import LiveClient, LiveFeed
from connectors.live_resume import LiveResume
from models.batch import SourceBatch
from models.errors import PipelineError, record_fatal
from models.gc_pacing import GcPacer
from models.records import BackfillRow, UsageRow
from models.settings import LiveSettings

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopOnSignal:
    """SIGINT/SIGTERM → ``feed.request_stop``; the previous handlers come back on :meth:`restore`."""

    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            log.info("live: not on the main thread: SIGINT/SIGTERM keep their default handling")
            return
        for sig in _STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._feed.finished or getattr(self, "_asked", False):
            self.restore()
            raise KeyboardInterrupt  # a second signal: stop now
        self._asked = True
        log.warning("live: %s received: closing the feed, flushing windows and alerts "
                    "(send it again to stop at once)", name)
        self._feed.request_stop(f"{name} received")

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


class Notifier(Protocol):
    """Where the feed's operational notices go (e.g. :class:`sinks.alerts.AlertDispatcher`)."""

    def notify(self, key: str, title: str, body: str) -> bool:
        """Queue one notice, de-duplicated by ``key`` (never blocks the feed); False if dropped."""

    def close(self) -> None:
        """Flush what is pending and release the channel."""


class _LivePartition(StatefulSourcePartition[SourceBatch | UsageRow | BackfillRow, LiveResume]):
    def __init__(self, feed: LiveFeed, dispatcher: Notifier | None,
                 pacer: GcPacer | None = None) -> None:
        self._feed = feed
        self._dispatcher = dispatcher
        self._signals = _StopOnSignal(feed)
        self._pacer = pacer
        if pacer is not None:
            pacer.start()

    @override
    def next_batch(self) -> list[SourceBatch | UsageRow | BackfillRow]:
        if self._feed.finished:
            raise StopIteration
        try:
            batches, usage = self._feed.poll()
        except PipelineError as exc:
            # one clear line, no traceback; the stream ends so windows and alerts flush
            log.error("live: %s", exc)
            record_fatal(exc)
            # every record already accepted is still emitted (the next call ends the stream)
            batches, usage = self._feed.abort(str(exc))
        items: list[SourceBatch | UsageRow | BackfillRow] = list(usage)
        items.extend(batches)
        if self._pacer is not None:
            self._pacer.tick()  # on the worker thread, between window closes
        return items

    @override
    def next_awake(self) -> datetime | None:
        wake = self._feed.next_wake_s()
        if self._pacer is not None:
            wake = min(wake, self._pacer.due_s)
        return datetime.fromtimestamp(wake, UTC)

    @override
    def snapshot(self) -> LiveResume:
        return self._feed.snapshot()

    @override
    def close(self) -> None:
        self._signals.restore()
        if self._pacer is not None:
            self._pacer.stop()
        self._feed.close()
        if self._dispatcher is not None:
            self._dispatcher.close()


class LiveSource(FixedPartitionedSource[SourceBatch | UsageRow | BackfillRow, LiveResume]):
    """Databento live data as :class:`SourceBatch` items (plus per-minute ``UsageRow`` s).

    Parameters
    ----------
    settings : LiveSettings
        ``IFD_LIVE_*`` and ``DATABENTO_API_KEY``.
    client_factory : callable | None
        Replaces ``databento.Live`` (None: the real client).
    notifier : callable | None
        Builds the :class:`Notifier` for operational notices (budget stop),
        once per partition; handed in by the wiring (:mod:`flows.ifd`) so
        connectors never import sinks. None: log only.
    lateness_s : float
        The flow's allowed lateness, s: bounds how far each batch's event clock
        may run ahead of its records (:class:`LiveFeed`).
    window_s : float | None
        The flow's window length, s: with ``settings.gc_paced``, full garbage collections run
        half a window after each close (:class:`~models.gc_pacing.GcPacer`). None: Python's own.
    """

    def __init__(self, settings: LiveSettings,
                 client_factory: Callable[..., LiveClient] | None = None,
                 notifier: Callable[[], Notifier] | None = None, *,
                 lateness_s: float = 0.0, window_s: float | None = None) -> None:
        self._settings = settings
        self._lateness_s = lateness_s
        self._window_s = window_s
        self._client_factory = client_factory
        self._notifier = notifier
        self._part = f"live-{settings.dataset}-{'-'.join(settings.symbol_list())}"

    @override
    def list_parts(self) -> list[str]:
        return [self._part]

    @override
    def build_part(self, step_id: str, for_part: str,
                   resume_state: LiveResume | None) -> _LivePartition:
        dispatcher = self._notifier() if self._notifier is not None else None
        feed = LiveFeed(self._settings, resume=resume_state, client_factory=self._client_factory,
                        notify=dispatcher.notify if dispatcher is not None else None,
                        lateness_s=self._lateness_s)
        pacer = (GcPacer(self._window_s, self._lateness_s)
                 if self._window_s is not None and self._settings.gc_paced else None)
        return _LivePartition(feed, dispatcher, pacer)
