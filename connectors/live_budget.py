"""Live feed accounting: the daily budget, the trading sessions, and per-minute usage rows.

- :class:`BudgetMeter`: bytes received and connected time per UTC day, priced by the
  ``IFD_LIVE_COST_PER_*`` model; the feed closes the stream at ``IFD_LIVE_BUDGET_STOP_FRACTION``.
- :class:`MarketSessions`: when a session is open (exchange_calendars ``CMES`` / ``XNYS``).
- :class:`UsageMeter`: records, bytes and ``ts_recv`` → processed lag per wall-clock minute,
  written to ``ifd.usage`` as :class:`~models.records.UsageRow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.batch import DecodedChunk
from models.records import UsageRow


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
class UsageMeter:
    """Per-minute usage of one live source (minutes of the wall clock, s since epoch UTC).

    Parameters
    ----------
    source : str
        The ``source`` column of the rows.
    """

    source: str
    minute: int = 0
    records: int = 0
    bytes: int = 0
    lag_sum_ms: float = 0.0
    lag_n: int = 0
    mode: str = "live"
    """The feed's current mode (``live``, ``historical``, ``down``), set by the feed at every poll."""
    _modes: set[str] = field(default_factory=set)
    _rows: list[UsageRow] = field(default_factory=list)

    def note_mode(self, mode: str) -> None:
        """Set the feed's mode; a minute's row shows the worst mode it saw (historical > down > live)."""
        self.mode = mode
        self._modes.add(mode)

    def account(self, now_s: float, records: int, nbytes: int, chunk: DecodedChunk,
                *, cost_usd: float, reconnects: int, last_error: str) -> None:
        """Add one emitted batch (records, bytes); the lag comes from its trades' ``ts_recv``."""
        minute = int(now_s // 60)
        if self.minute and minute != self.minute:
            self._close_minute(cost_usd, reconnects, last_error)
        self.minute = minute
        self.records += records
        self.bytes += nbytes
        for rows in chunk.trades.values():
            if len(rows):
                lag = now_s * 1e3 - rows["ts_recv"].astype(np.float64) / 1e6
                self.lag_sum_ms += float(lag.sum())
                self.lag_n += len(rows)

    def _close_minute(self, cost_usd: float, reconnects: int, last_error: str) -> None:
        self._rows.append(UsageRow(
            minute_s=self.minute * 60, records=self.records, bytes=self.bytes,
            est_cost_usd=cost_usd, reconnects=reconnects,
            lag_ms=self.lag_sum_ms / self.lag_n if self.lag_n else 0.0,
            last_error=last_error, source=self.source,
            mode=next(m for m in ("historical", "down", "live") if m in self._modes | {self.mode}),
        ))
        self._modes = set()
        self.minute, self.records, self.bytes, self.lag_sum_ms, self.lag_n = 0, 0, 0, 0.0, 0

    def take(self, now_s: float | None, *, cost_usd: float, reconnects: int,
             last_error: str) -> list[UsageRow]:
        """Return the rows of completed minutes (every minute when ``now_s`` is None: finishing).

        A minute with no batch still gets a row while :attr:`mode` is not ``live``, so the health
        board shows a fallback or an outage even when no data flows.
        """
        if not self.minute and self.mode != "live" and now_s is not None:
            self.minute = int(now_s // 60)  # an empty minute: its row still shows the mode
        if self.minute and (now_s is None or int(now_s // 60) != self.minute):
            self._close_minute(cost_usd, reconnects, last_error)
        rows, self._rows = self._rows, []
        return rows
