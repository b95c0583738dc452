"""bytewax sink writing the dataflow's outputs to ClickHouse.

Embedded chdb allows one process per data directory, so with
``IFD_CLICKHOUSE_URL`` unset every row is routed to the single partition of
:class:`ClickHouseSink` (one worker of one process opens chdb, holding its
directory lock while the flow runs). With a server each worker
writes its own rows (:class:`ClickHouseDynamicSink`).

Rows are buffered and flushed when a buffer is full, at least every
``flush_interval_s``, at every bytewax snapshot, and at close. Inserts run on
the writer's own thread, one block in flight while the flow builds the next
(:class:`~sinks.clickhouse.IFDWriter` ``pipelined``); a snapshot and close wait
for it, so a snapshot never covers rows that are not yet stored.
"""

from __future__ import annotations

import logging
import time

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from typing_extensions import override

from flows.scoring import DeferredSignals, built_signals
from models.latency import LatencyMeter, LatencyRow
from models.records import (
    AbsorptionRows,
    BackfillRow,
    BatchStats,
    DeadLetters,
    FootprintRows,
    IcebergRows,
    OpenInterestRows,
    UsageRow,
    WindowResult,
)
from models.settings import AlertSettings, FeedSettings, Settings
from models.signals import Signal
from sinks.alerts import AlertDispatcher
from sinks.clickhouse import IFDWriter, open_store
from sinks.feed import FeedServer
from sinks.run_report import RunReport

log = logging.getLogger(__name__)

SinkItem = (WindowResult | BatchStats | DeadLetters | OpenInterestRows | FootprintRows
            | IcebergRows | AbsorptionRows | Signal | DeferredSignals | UsageRow | BackfillRow
            | LatencyRow)


class _Writer:
    """Shared body of both partition kinds."""

    def __init__(self, settings: Settings, total_bytes: int, flush_interval_s: float,
                 latency: LatencyMeter | None = None) -> None:
        self.store = open_store(settings)  # the schema is applied once at flow build
        self.writer = IFDWriter(self.store, batch_rows=settings.sink_batch_rows, pipelined=True,
                                latency=latency)
        self.latency = latency
        self.flush_on_window = settings.mode == "live"
        """Live: a closed window is stored at once, not after ``flush_interval_s`` (window rows
        come once per window length, so this adds few inserts)."""
        self.report = RunReport(total_bytes, settings.progress_interval_s)
        self.flush_interval_s = flush_interval_s
        self._last_flush = time.monotonic()

    def write(self, items: list[SinkItem]) -> None:
        for item in built_signals(items):  # the window's signals below the alerted class, too
            if isinstance(item, WindowResult):
                self.writer.add(item.parts)
                contracts = len(set(item.parts.cols["contract_key"].tolist()))
                self.report.on_window(item.correction, contracts)
                continue
            self.writer.add(item)  # TypeError for an item with no table
            if isinstance(item, BatchStats):
                self.report.on_stats(item)
            elif isinstance(item, Signal):
                self.report.on_signal(item)
        if self.latency is not None:
            for row in self.latency.take(time.time()):
                self.writer.add(row)
        now = time.monotonic()
        closed = self.flush_on_window and any(
            isinstance(item, WindowResult) and not item.correction for item in items)
        if self.writer.pending and (closed or now - self._last_flush >= self.flush_interval_s):
            self.flush(wait=False)
        self.report.maybe_progress()

    def flush(self, *, wait: bool = True) -> None:
        self.writer.flush(wait=wait)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        try:
            if self.latency is not None:
                self.writer.flush()  # the last window rows' own latency is measured here
                for row in self.latency.take(None):
                    self.writer.add(row)
            self.writer.close()
            print(self.report.summary(), flush=True)  # noqa: T201 - the run's final output
        finally:
            self.store.close()


class _FixedPartition(StatefulSinkPartition[SinkItem, None]):
    def __init__(self, body: _Writer) -> None:
        self._body = body

    @override
    def write_batch(self, values: list[SinkItem]) -> None:
        self._body.write(values)

    @override
    def snapshot(self) -> None:
        self._body.flush()

    @override
    def close(self) -> None:
        self._body.close()


class ClickHouseSink(FixedPartitionedSink[SinkItem, None]):
    """Single-partition sink (embedded chdb): every row goes to one worker.

    Parameters
    ----------
    settings : Settings
    total_bytes : int
        Input size for the progress percentage.
    flush_interval_s : float
        Longest time rows stay buffered.
    """

    def __init__(self, settings: Settings, total_bytes: int, flush_interval_s: float = 1.0,
                 latency: LatencyMeter | None = None) -> None:
        self._settings = settings
        self._total_bytes = total_bytes
        self._flush_interval_s = flush_interval_s
        self._latency = latency

    @override
    def list_parts(self) -> list[str]:
        return ["clickhouse"]

    @override
    def part_fn(self, item_key: str) -> int:
        return 0

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FixedPartition:
        return _FixedPartition(_Writer(self._settings, self._total_bytes, self._flush_interval_s,
                                      self._latency))


class _DynamicPartition(StatelessSinkPartition[SinkItem]):
    def __init__(self, body: _Writer) -> None:
        self._body = body

    @override
    def write_batch(self, items: list[SinkItem]) -> None:
        self._body.write(items)

    @override
    def close(self) -> None:
        self._body.close()


class ClickHouseDynamicSink(DynamicSink[SinkItem]):
    """One writer per worker (ClickHouse server): scales with ``-i/-a`` processes."""

    def __init__(self, settings: Settings, total_bytes: int, flush_interval_s: float = 1.0,
                 latency: LatencyMeter | None = None) -> None:
        self._settings = settings
        self._total_bytes = total_bytes
        self._flush_interval_s = flush_interval_s
        self._latency = latency

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DynamicPartition:
        return _DynamicPartition(_Writer(self._settings, self._total_bytes, self._flush_interval_s,
                                      self._latency))


class _AlertPartition(StatefulSinkPartition[Signal, None]):
    def __init__(self, dispatcher: AlertDispatcher, first_wait_s: float) -> None:
        self._dispatcher = dispatcher
        self._first_wait_s = first_wait_s

    @override
    def write_batch(self, values: list[Signal]) -> None:
        accepted = self._dispatcher.submit_many(values)  # committed to the outbox before it returns
        if self._first_wait_s and any(accepted):
            # alerts first: the worker's next steps (storage, the window's other signals) would
            # hold the GIL the delivery threads need; the wait is bounded and loses nothing
            self._dispatcher.wait_delivered(self._first_wait_s)

    @override
    def snapshot(self) -> None:
        # Nothing to save: every signal written so far is already committed to the outbox
        # (submit commits before returning), so the epoch bytewax is about to commit loses none.
        return None

    @override
    def close(self) -> None:
        # waits up to DEFAULT_CLOSE_TIMEOUT_S; what is left stays pending in the outbox (logged)
        self._dispatcher.close()


class AlertSink(FixedPartitionedSink[Signal, None]):
    """Hand signals to the :class:`~sinks.alerts.AlertDispatcher`, which owns the alert outbox.

    One partition (``"alerts"``), so one worker process opens the outbox
    file; the upstream must be keyed (any key: :meth:`part_fn` routes every
    item to partition 0). ``write_batch`` commits each signal to the outbox
    before returning, so a bytewax snapshot never covers a signal that is not
    durable: after a crash, signals of committed epochs are sent from the
    outbox and signals of the replayed epoch are re-emitted and de-duplicated
    on ``alert_key``. Delivery (Apprise channels + JSONL) happens on the
    dispatcher's thread, so a failing channel never stops the dataflow. At
    close the sink waits a bounded time for deliveries and leaves the rest
    pending in the outbox for the next start.

    Parameters
    ----------
    settings : AlertSettings
        Channels, threshold, outbox and audit file.
    latency : LatencyMeter | None
        Records signal → alert delivered (live).
    first_wait_s : float
        After committing a batch, wait up to this long (s) for its delivery before
        returning (``IFD_ALERT_FIRST_WAIT_S``, live only): the steps that follow would
        compete for the GIL with the delivery threads. A slow channel delays the flow by
        at most this much per batch.
    """

    def __init__(self, settings: AlertSettings, latency: LatencyMeter | None = None, *,
                 first_wait_s: float = 0.0) -> None:
        self._settings = settings
        self._latency = latency
        self._first_wait_s = first_wait_s

    @override
    def list_parts(self) -> list[str]:
        return ["alerts"]

    @override
    def part_fn(self, item_key: str) -> int:
        return 0

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertPartition:
        return _AlertPartition(AlertDispatcher(self._settings, latency=self._latency),
                               self._first_wait_s)


class _FeedPartition(StatefulSinkPartition[Signal | DeferredSignals, None]):
    def __init__(self, server: FeedServer, owned: bool) -> None:
        self._server = server
        self._owned = owned

    @override
    def write_batch(self, values: list[Signal | DeferredSignals]) -> None:
        self._server.hub.publish(built_signals(values))  # never blocks: clients are served on the feed's loop

    @override
    def snapshot(self) -> None:
        return None  # a replayed epoch re-emits its signals; the hub sends each one once

    @override
    def close(self) -> None:
        if self._owned:
            self._server.stop(linger_s=self._server.settings.linger_s)


class FeedSink(FixedPartitionedSink[Signal | DeferredSignals, None]):
    """Publish signals on the live feed (:mod:`sinks.feed`) as they are scored.

    One partition (``"feed"``): the server runs in the one process bytewax builds it in, and
    starts with the flow (before the first window closes), so clients can connect first. The
    upstream must be keyed (any key).

    Parameters
    ----------
    settings : FeedSettings
        Host, port and queue sizes.
    server : FeedServer | None
        An already started server to publish on (tests connect clients before the run); it is
        left running at close. None starts one from ``settings`` and stops it at close.
    """

    def __init__(self, settings: FeedSettings, server: FeedServer | None = None) -> None:
        self._settings = settings
        self._server = server

    @override
    def list_parts(self) -> list[str]:
        return ["feed"]

    @override
    def part_fn(self, item_key: str) -> int:
        return 0

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FeedPartition:
        if self._server is not None:
            return _FeedPartition(self._server, owned=False)
        return _FeedPartition(FeedServer(self._settings).start(), owned=True)
