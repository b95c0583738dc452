"""bytewax source over :class:`connectors.live.LiveFeed` (one partition per subscription).

The partition snapshot is the feed's resume point (last processed ts_event and
the keys at it): after a restart from a bytewax recovery snapshot the feed
resubscribes with intraday replay from there and drops what was already
processed, so nothing is lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from connectors.dbn import SourceBatch
from connectors.live import LiveFeed, LiveResume
from models.records import UsageRow
from models.settings import LiveSettings
from sinks.alerts import AlertDispatcher, AlertSettings


class _LivePartition(StatefulSourcePartition[SourceBatch | UsageRow, LiveResume]):
    def __init__(self, feed: LiveFeed, dispatcher: AlertDispatcher | None) -> None:
        self._feed = feed
        self._dispatcher = dispatcher

    @override
    def next_batch(self) -> list[SourceBatch | UsageRow]:
        if self._feed.finished:
            raise StopIteration
        batch, usage = self._feed.poll()
        items: list[SourceBatch | UsageRow] = list(usage)
        if batch is not None:
            items.append(batch)
        return items

    @override
    def next_awake(self) -> datetime | None:
        return datetime.fromtimestamp(self._feed.next_wake_s(), UTC)

    @override
    def snapshot(self) -> LiveResume:
        return self._feed.snapshot()

    @override
    def close(self) -> None:
        self._feed.close()
        if self._dispatcher is not None:
            self._dispatcher.close()


class LiveSource(FixedPartitionedSource[SourceBatch | UsageRow, LiveResume]):
    """Databento live data as :class:`SourceBatch` items (plus per-minute ``UsageRow`` s).

    Parameters
    ----------
    settings : LiveSettings
        ``IFD_LIVE_*`` and ``DATABENTO_API_KEY``.
    client_factory : callable | None
        Replaces ``databento.Live`` (None: the real client).
    alerts : AlertSettings | None
        Channels for operational notices (budget stop); None: log only.
    """

    def __init__(self, settings: LiveSettings,
                 client_factory: Callable[..., object] | None = None,
                 alerts: AlertSettings | None = None) -> None:
        self._settings = settings
        self._client_factory = client_factory
        self._alerts = alerts
        self._part = f"live-{settings.dataset}-{'-'.join(settings.symbol_list())}"

    @override
    def list_parts(self) -> list[str]:
        return [self._part]

    @override
    def build_part(self, step_id: str, for_part: str,
                   resume_state: LiveResume | None) -> _LivePartition:
        dispatcher = AlertDispatcher(self._alerts) if self._alerts is not None else None
        feed = LiveFeed(self._settings, resume=resume_state, client_factory=self._client_factory,
                        notify=dispatcher.notify if dispatcher is not None else None)
        return _LivePartition(feed, dispatcher)
