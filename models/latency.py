"""End-to-end latency of a live run, per minute and stage, as p50/p95/p99 (``ifd.latency``).

Stages (all wall-clock, ms; only a live run records them, since event time of a
replay is in the past):

==================  ==========================================================  =================
stage               from → to                                                   recorded by
==================  ==========================================================  =================
``record``          a trade's ``ts_recv`` → its batch classified and aggregated  ``flows.ifd``
``window_written``  window end → its pressure rows stored in ClickHouse         ``sinks.clickhouse``
``signal_scored``   window end → its signal scored                               ``flows.ifd``
``alert_delivered`` signal handed to the alert outbox → accepted by a channel    ``sinks.alerts``
==================  ==========================================================  =================

A minute is the wall-clock minute in which the samples were taken. Percentiles
are numpy's default (linear interpolation between closest ranks, the same as
``statistics.quantiles(..., method="inclusive")``), over every sample of the
minute: a minute's samples are kept as arrays until it is taken. Late
corrections (re-opened windows) are not ``window_written`` samples: they are
late by design (see ``IFD_ALLOWED_LATENESS_S``).

One :class:`LatencyMeter` per process is shared by that process's workers
(thread-safe); rows carry the process, so percentiles are never mixed across
processes.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

import numpy as np

STAGES = ("record", "window_written", "signal_scored", "alert_delivered")


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One minute of one stage in one process (``ifd.latency``); times ms, ``minute_s`` s UTC."""

    minute_s: int
    stage: str
    process: str
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


class LatencyMeter:
    """Collect latency samples per (wall minute, stage) and turn finished minutes into rows.

    Parameters
    ----------
    process : str | None
        Names this process in the rows (default ``host:pid``).
    """

    def __init__(self, process: str | None = None) -> None:
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._samples: dict[tuple[int, str], list[np.ndarray]] = {}

    def record(self, stage: str, now_s: float, latencies_ms: np.ndarray | list[float]) -> None:
        """Add samples taken at ``now_s`` (s since epoch) to ``stage``.

        Raises
        ------
        ValueError
            ``stage`` is not one of :data:`STAGES`.
        """
        if stage not in STAGES:
            msg = f"unknown latency stage {stage!r} (one of {', '.join(STAGES)})"
            raise ValueError(msg)
        values = np.asarray(latencies_ms, dtype=np.float64).ravel()
        if not len(values):
            return
        key = (int(now_s // 60) * 60, stage)
        with self._lock:
            self._samples.setdefault(key, []).append(values)

    def take(self, now_s: float | None) -> list[LatencyRow]:
        """Rows of the minutes before ``now_s``'s (every minute when None), oldest first; removed."""
        current = None if now_s is None else int(now_s // 60) * 60
        with self._lock:
            keys = sorted(k for k in self._samples if current is None or k[0] < current)
            taken = [(k, self._samples.pop(k)) for k in keys]
        rows = []
        for (minute, stage), parts in taken:
            values = np.concatenate(parts)
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            rows.append(LatencyRow(minute, stage, self.process, len(values), float(p50),
                                   float(p95), float(p99), float(values.max()),
                                   float(values.mean())))
        return rows


__all__ = ["STAGES", "LatencyMeter", "LatencyRow"]
