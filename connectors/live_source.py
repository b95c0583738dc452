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


class _LivePartition(StatefulSourcePartition[SourceBatch | UsageRow, LiveResume]):
    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed

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


class LiveSource(FixedPartitionedSource[SourceBatch | UsageRow, LiveResume]):
    """Databento live data as :class:`SourceBatch` items (plus per-minute ``UsageRow`` s).

    Parameters
    ----------
    settings : LiveSettings
        ``IFD_LIVE_*`` and ``DATABENTO_API_KEY``.
    client_factory : callable | None
        Replaces ``databento.Live`` (None: the real client).
    """

    def __init__(self, settings: LiveSettings,
                 client_factory: Callable[..., object] | None = None) -> None:
        self._settings = settings
        self._client_factory = client_factory
        self._part = f"live-{settings.dataset}-{'-'.join(settings.symbol_list())}"

    @override
    def list_parts(self) -> list[str]:
        return [self._part]

    @override
    def build_part(self, step_id: str, for_part: str,
                   resume_state: LiveResume | None) -> _LivePartition:
        return _LivePartition(LiveFeed(self._settings, resume=resume_state,
                                       client_factory=self._client_factory))
