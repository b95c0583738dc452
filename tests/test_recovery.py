"""Crash mid-replay, resume from the bytewax recovery snapshot: final numbers equal an unbroken run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from flows.ifd import build_flow
from models.records import WindowResult
from models.settings import Settings


class Crash(RuntimeError):
    pass


class _CrashingPartition(StatelessSinkPartition):
    def __init__(self, out: list, after: int) -> None:
        self.out, self.after = out, after

    def write_batch(self, items: list) -> None:
        if len(self.out) >= self.after:
            message = "simulated crash"
            raise Crash(message)
        self.out.extend(items)


class CrashingSink(DynamicSink):
    """Collects items like TestingSink, then dies once ``after`` items were written."""

    def __init__(self, out: list, after: int) -> None:
        self.out, self.after = out, after

    def build(self, step_id, worker_index, worker_count):
        return _CrashingPartition(self.out, self.after)


def _final(items: list) -> dict:
    """Part identity → part numbers; duplicates (re-emitted after resume) must agree."""
    parts = {}
    for item in items:
        if isinstance(item, WindowResult):
            for p in item.parts.to_parts():
                ident = (p.key, p.window_start_ns, p.source, p.seq)
                numbers = (p.bid_volume, p.ask_volume, p.unknown_volume, p.total_trades)
                assert parts.setdefault(ident, numbers) == numbers
    return parts


def test_crash_and_resume_gives_the_same_parts_as_an_unbroken_run(tmp_path, real_dir):
    settings = Settings(
        source=str(real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"),
        data_dir=tmp_path, progress_interval_s=0, batch_records=2000,
    )
    unbroken: list = []
    run_main(build_flow(settings, sink=TestingSink(unbroken)))

    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    recovery = RecoveryConfig(str(db))
    first: list = []
    with pytest.raises(RuntimeError, match="error writing output batch"):
        run_main(build_flow(settings, sink=CrashingSink(first, after=15)),
                 epoch_interval=timedelta(0), recovery_config=recovery)
    assert 0 < len([i for i in first if isinstance(i, WindowResult)]) < 12
    second: list = []
    run_main(build_flow(settings, sink=TestingSink(second)),
             epoch_interval=timedelta(0), recovery_config=recovery)
    assert second, "the resumed run emitted nothing"
    assert _final(first + second) == _final(unbroken)
    assert sum(n[3] for n in _final(unbroken).values()) == 2973


def test_scoring_state_survives_a_restart_same_signals(tmp_path):
    from datetime import date

    from connectors.sample import generate_session
    from models.signals import Signal

    for day, seed in ((date(2026, 11, 17), 1), (date(2026, 11, 18), 2), (date(2026, 11, 19), 3)):
        generate_session(tmp_path / "src", session_date=day, seed=seed, n_trades=6000)
    settings = Settings(
        source=str(tmp_path / "src" / "*.dbn.zst"), data_dir=tmp_path, progress_interval_s=0,
        batch_records=1500, scoring_min_days=2,
    )

    def signals(items):
        out = {}
        for s in items:
            if isinstance(s, Signal):
                numbers = (s.signal_class, s.direction, round(s.confidence, 9), s.baseline_windows)
                assert out.setdefault(s.alert_key, numbers) == numbers
        return out

    unbroken: list = []
    run_main(build_flow(settings, sink=TestingSink(unbroken), alerts=None))
    expected = signals(unbroken)
    assert any(v[3] == 2 for v in expected.values()), "day 3 must be scored with 2 days of history"

    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    recovery = RecoveryConfig(str(db))
    first: list = []
    crash_after = int(len(unbroken) * 0.8)  # well into day 3
    with pytest.raises(RuntimeError, match="error writing output batch"):
        run_main(build_flow(settings, sink=CrashingSink(first, after=crash_after), alerts=None),
                 epoch_interval=timedelta(0), recovery_config=recovery)
    second: list = []
    run_main(build_flow(settings, sink=TestingSink(second), alerts=None),
             epoch_interval=timedelta(0), recovery_config=recovery)
    assert signals(second), "the resumed run scored nothing"
    assert signals(first + second) == expected
