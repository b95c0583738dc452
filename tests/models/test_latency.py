"""Latency percentiles per minute and stage (models/latency.py), against ``statistics.quantiles``."""

from __future__ import annotations

import random
import statistics

import pytest

from models.latency import LatencyMeter


def _expected(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def test_known_delays_give_the_independent_percentiles_per_minute_and_stage():
    rng = random.Random(7)
    meter = LatencyMeter(process="test")
    minute = 1_800_000_000 // 60 * 60
    injected: dict[tuple[int, str], list[float]] = {}
    for i in range(3000):
        stage = ("record", "window_written")[i % 2]
        at = minute + (i % 3) * 60 + rng.random() * 59
        delays = [rng.expovariate(1 / 20.0) for _ in range(rng.randint(1, 5))]
        injected.setdefault((int(at // 60) * 60, stage), []).extend(delays)
        meter.record(stage, at, delays)
    # minutes before now's are taken; the current one (minute + 120) waits
    rows = meter.take(minute + 150)
    assert {(r.minute_s, r.stage) for r in rows} == {k for k in injected if k[0] < minute + 120}
    rows += meter.take(None)
    assert meter.take(None) == []
    assert len(rows) == len(injected)
    for row in rows:
        values = injected[(row.minute_s, row.stage)]
        p50, p95, p99 = _expected(values)
        assert row.samples == len(values)
        assert row.p50_ms == pytest.approx(p50)
        assert row.p95_ms == pytest.approx(p95)
        assert row.p99_ms == pytest.approx(p99)
        assert row.max_ms == max(values)
        assert row.mean_ms == pytest.approx(statistics.fmean(values))
        assert row.process == "test"


def test_unknown_stage_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown latency stage 'decode'"):
        LatencyMeter().record("decode", 0.0, [1.0])
