"""Progress lines while running and the final run summary."""

from __future__ import annotations

import logging
import time
from collections import Counter

from models.records import BatchStats, ns_to_datetime

log = logging.getLogger("ifd")


class RunReport:
    """Accumulate batch counters and windows written; print progress and a summary.

    Parameters
    ----------
    total_bytes : int
        Size on disk of all inputs (denominator of "% done"); 0 if unknown (live).
    interval_s : float
        Seconds between progress lines; 0 disables them.
    """

    def __init__(self, total_bytes: int, interval_s: float = 2.0) -> None:
        self.total_bytes = total_bytes
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last_line = self.started
        self.records = 0
        self.trades = 0
        self.undefined_instrument_trades = 0
        self.dead_letters: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.bytes_read: dict[str, int] = {}
        self.event_time_ns = 0
        self.windows = 0
        self.corrections = 0
        self.signals: Counter[str] = Counter()
        self.errors: list[str] = []
        """Inputs that ended early (truncated/corrupt): the run is partial."""

    def on_stats(self, stats: BatchStats) -> None:
        """Count one source batch."""
        self.records += stats.records
        self.trades += stats.trades
        self.undefined_instrument_trades += stats.undefined_instrument_trades
        self.dead_letters.update(stats.dead_letters)
        self.skipped.update(stats.skipped)
        self.bytes_read[stats.source] = stats.bytes_read
        self.event_time_ns = max(self.event_time_ns, stats.max_ts_event)
        if stats.error:
            self.errors.append(stats.error)

    def on_window(self, correction: bool, contracts: int = 1) -> None:
        """Count (contract, window) results written: ``contracts`` of one window block."""
        if correction:
            self.corrections += contracts
        else:
            self.windows += contracts

    def on_signal(self, signal: object) -> None:
        """Count one IFD signal by class."""
        self.signals[str(getattr(signal, "signal_class", "?"))] += 1

    def maybe_progress(self) -> None:
        """Log a progress line if ``interval_s`` has passed since the last one."""
        now = time.monotonic()
        if self.interval_s <= 0 or now - self._last_line < self.interval_s:
            return
        self._last_line = now
        log.info(self.progress_line(now))

    def progress_line(self, now: float | None = None) -> str:
        """Format one line: ``records 1,234,567 (812,000 rec/s) | event time … | 42.0% | …``."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        pct = (
            f"{100 * sum(self.bytes_read.values()) / self.total_bytes:5.1f}%"
            if self.total_bytes
            else "live"
        )
        event = (
            f"{ns_to_datetime(self.event_time_ns):%Y-%m-%d %H:%M:%S}Z"
            if self.event_time_ns
            else "-"
        )
        return (
            f"records {self.records:,} ({self.records / elapsed:,.0f} rec/s) | "
            f"trades {self.trades:,} | event time {event} | {pct} | windows {self.windows:,}"
        )

    def summary(self) -> str:
        """Multi-line final summary."""
        elapsed = time.monotonic() - self.started
        dead = sum(self.dead_letters.values())
        lines = [
            "IFD run summary",
            f"  elapsed               {elapsed:,.2f} s",
            f"  records read          {self.records:,} ({self.records / max(elapsed, 1e-9):,.0f} rec/s)",
            f"  trades                {self.trades:,}",
            f"  windows written       {self.windows:,} (+{self.corrections:,} late corrections)",
            f"  dead letters          {dead:,} {dict(self.dead_letters) if dead else ''}".rstrip(),
            f"  undefined instruments {self.undefined_instrument_trades:,} trades",
            f"  IFD signals           {sum(self.signals.values()):,} "
            f"{dict(self.signals) if self.signals else ''}".rstrip(),
            f"  skipped records       {sum(self.skipped.values()):,} {dict(self.skipped)}",
        ]
        if self.errors:
            lines.insert(1, f"  PARTIAL RUN: {len(self.errors)} input(s) ended early; their later "
                            "records are missing (see ifd.ingest_batches.error)")
            lines.extend(f"  input error           {e}" for e in self.errors)
        return "\n".join(lines)
