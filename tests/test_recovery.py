"""Crash mid-replay, resume from the bytewax recovery snapshot: final numbers equal an unbroken run.

Deterministic whatever the machine's speed or load (no wall clock, no threads, no waiting):

- recovery runs use ``epoch_interval=timedelta(0)``: every source batch is its own epoch, and
  bytewax reads the next batch only once every output of the previous epoch is written and
  its snapshots are stored, so epochs and snapshots follow the data, not wall time;
- the reference run is one epoch (``UNBROKEN``), not bytewax's 10 s wall-clock default,
  which would cut a loaded machine's run into a varying number of epochs;
- the sink crashes at a point set by the data: at its first write once bytewax's recovery
  store (its sqlite partition, read in the worker thread) shows ``epochs`` epochs of this
  execution stored, i.e. ``epochs`` source batches done: a snapshot is always behind the
  crash and the restart cannot begin at the start;
- no alert sink: its delivery thread has nothing to do with recovery of the numbers;
- assertions cover only what recovery guarantees: the final parts/signals and per-batch
  stats of crash + resume equal the unbroken run's, duplicates (re-emitted after the
  resume) agree, and the second execution resumed from the stored frontier, reading each
  batch after it exactly once. Nothing depends on how many items came out before the crash.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from flows.ifd import build_flow
from models.records import BatchStats, WindowResult
from models.settings import Settings

EVERY_BATCH = timedelta(0)
"""Epoch interval of the recovery runs: one epoch (and one snapshot) per source batch."""

UNBROKEN = timedelta(days=1)
"""Epoch interval of the reference run: the whole replay is one epoch."""


def _executions(db: Path) -> list[tuple[int, int | None]]:
    """(resume epoch, stored frontier) of each execution in bytewax's recovery partition.

    bytewax 0.21 writes a worker's frontier (``fronts``) once that epoch's snapshots are
    stored; the next execution resumes at the last execution's frontier (``exs``).
    """
    con = sqlite3.connect(f"file:{db / 'part-0.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            "SELECT resume_epoch, (SELECT min(worker_frontier) FROM fronts f"
            " WHERE f.ex_num = e.ex_num) FROM exs e ORDER BY ex_num"
        ).fetchall()
    finally:
        con.close()


def _epochs_stored(db: Path) -> int:
    """Epochs the running (newest) execution has completed and stored (0 before the first)."""
    executions = _executions(db)
    if not executions or executions[-1][1] is None:
        return 0
    resume, frontier = executions[-1]
    return frontier - resume


class Crash(RuntimeError):
    pass


class _CrashingPartition(StatelessSinkPartition):
    def __init__(self, sink: CrashingSink) -> None:
        self.sink = sink

    def write_batch(self, items: list) -> None:
        sink = self.sink
        if _epochs_stored(sink.db) >= sink.epochs:
            sink.crashed = True
            message = "simulated crash"
            raise Crash(message)
        sink.out.extend(items)


class CrashingSink(DynamicSink):
    """Collects items like TestingSink; dies at its first write once ``epochs`` epochs are stored.

    With one epoch per source batch, that is a point in the data: the write of batch
    ``epochs`` or a later one, and the restart resumes after batch ``epochs - 1`` or later.
    The sink runs in the worker thread (``run_main``) and only reads the recovery store.
    """

    def __init__(self, out: list, db: Path, epochs: int) -> None:
        self.out, self.db, self.epochs = out, db, epochs
        self.crashed = False

    def build(self, step_id, worker_index, worker_count):
        return _CrashingPartition(self)


def _recovery(tmp_path: Path) -> tuple[Path, RecoveryConfig]:
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    return db, RecoveryConfig(str(db))


def _batches(items: list) -> dict[tuple[str, int], BatchStats]:
    """(source, seq) → the batch's stats, in emission order; duplicates must agree."""
    out: dict[tuple[str, int], BatchStats] = {}
    for item in items:
        if isinstance(item, BatchStats):
            assert out.setdefault((item.source, item.seq), item) == item
    return out


def _crash_and_resume(build, db: Path, recovery: RecoveryConfig, unbroken: list,
                      epochs: int) -> tuple[list, list]:
    """Run with a sink that crashes once ``epochs`` epochs are stored, resume; check the resume.

    Returns the items written before the crash and the items of the resumed run.
    """
    first: list = []
    sink = CrashingSink(first, db, epochs)
    with pytest.raises(RuntimeError, match="error writing output batch"):
        run_main(build(sink), epoch_interval=EVERY_BATCH, recovery_config=recovery)
    assert sink.crashed, "the run failed, but not with the simulated crash"
    [(started, stored)] = _executions(db)
    assert stored is not None and stored - started >= epochs, "the crash came too early"

    second: list = []
    run_main(build(TestingSink(second)), epoch_interval=EVERY_BATCH, recovery_config=recovery)
    assert [resume for resume, _ in _executions(db)] == [started, stored], (
        "the second execution did not resume at the frontier stored before the crash")

    order = list(_batches(unbroken))
    resumed = list(_batches(second))
    assert resumed, "the resumed run read nothing"
    start = order.index(resumed[0])
    assert start > 0, "the resumed run started from the beginning, not from the snapshot"
    assert start == stored - started, "one epoch per batch: resume at the first batch not stored"
    assert resumed == order[start:], "the resumed run must read each later batch once, in order"
    assert set(order[:start]) <= set(_batches(first)), "batches before the resume point were lost"
    assert _batches(first + second) == _batches(unbroken)
    return first, second


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

    def build(sink):
        return build_flow(settings, sink=sink, alerts=None)

    unbroken: list = []
    run_main(build(TestingSink(unbroken)), epoch_interval=UNBROKEN)
    expected = _final(unbroken)
    assert sum(n[3] for n in expected.values()) == 2973

    db, recovery = _recovery(tmp_path)
    first, second = _crash_and_resume(build, db, recovery, unbroken, epochs=13)
    before = _final(first)
    assert before, "the crash came before any window was emitted"
    assert len(before) < len(expected), "the crash came after the last window"
    assert _final(second), "the resumed run emitted no window"
    assert _final(first + second) == expected


def test_scoring_state_survives_a_restart_same_signals(tmp_path):
    from datetime import date

    from models.signals import Signal
    from samples.generator import generate_session

    for day, seed in ((date(2026, 11, 17), 1), (date(2026, 11, 18), 2), (date(2026, 11, 19), 3)):
        generate_session(tmp_path / "src", session_date=day, seed=seed, n_trades=6000)
    settings = Settings(
        source=str(tmp_path / "src" / "*.dbn.zst"), data_dir=tmp_path, progress_interval_s=0,
        batch_records=1500, scoring={"min_days": 2},
    )

    def build(sink):
        return build_flow(settings, sink=sink, alerts=None)

    def signals(items):
        out = {}
        for s in items:
            if isinstance(s, Signal):
                numbers = (s.signal_class, s.direction, round(s.confidence, 9), s.baseline_windows)
                assert out.setdefault(s.alert_key, numbers) == numbers
        return out

    unbroken: list = []
    run_main(build(TestingSink(unbroken)), epoch_interval=UNBROKEN)
    expected = signals(unbroken)
    assert any(v[3] == 2 for v in expected.values()), "day 3 must be scored with 2 days of history"

    db, recovery = _recovery(tmp_path)
    per_day = len(_batches(unbroken)) // 3
    # crash in day 3 once days 1-2 and two batches of day 3 are stored: the restored scoring
    # state holds the baselines and the part-scored day
    first, second = _crash_and_resume(build, db, recovery, unbroken, epochs=2 * per_day + 2)
    last_day = list(_batches(unbroken))[-1][0]
    assert all(source == last_day for source, _ in _batches(second)), (
        "the restart must come in day 3, after the baselines of days 1-2 were built")
    resumed = signals(second)
    assert any(v[3] == 2 for v in resumed.values()), (
        "the resumed run must score day 3 with the 2 days of history from its restored state")
    assert signals(first + second) == expected
    assert _final(first + second) == _final(unbroken)
