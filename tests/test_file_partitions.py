"""One source partition per daily file stores what one partition per series stores.

``IFD_REPLAY_PARTITIONS=file`` splits a series of daily UTC files so that processes can share it
(:func:`connectors.inputs.split_series`). A CME session (17:00 CT open) spans two UTC files, so a
file's first trades take their tick-test side from the previous file's last trades: the file's
partition reads them first as a warm-up. The expected sides here come from an independent tick
test over the raw records (session = the 17:00 America/Chicago roll, via zoneinfo), not from the
project's classifier.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import databento_dbn as dbn
import numpy as np
import pytest

from connectors.dbn import RTYPE_MBO, RTYPE_TRADES
from connectors.files import DBNFileSource, FilePosition, LocalOrder
from connectors.inputs import partition_inputs, plan_inputs, split_series
from flows.exchange_time import cme_sessions
from flows.instruments import InstrumentCatalog
from flows.stream import StreamProcessor, normalise_batch
from models.records import WindowResult
from tests.dbnfiles import NS, call_definition, records, write_dbn
from tests.flowrun import run_flow

CHICAGO = ZoneInfo("America/Chicago")
DAY = 86_400 * NS
D1 = int(dt.datetime(2026, 10, 20, tzinfo=dt.UTC).timestamp()) * NS  # Tue; CDT: open 22:00 UTC
EXPIRATION = int(dt.datetime(2026, 11, 20, 21, tzinfo=dt.UTC).timestamp()) * NS
WINDOW_S = 300

# (day index, "HH:MM", instrument, price in points, size): side N everywhere, so every side comes
# from the tick test; trades after 22:00 UTC open the next session and carry into the next file.
TAPE = [
    (0, "14:00", 101, 10, 1), (0, "14:05", 101, 11, 2),
    (0, "22:30", 101, 12, 3), (0, "23:00", 101, 11, 4),
    (0, "23:50", 102, 5, 5), (0, "23:55", 102, 6, 6),
    (1, "00:10", 101, 11, 7), (1, "00:20", 102, 6, 8), (1, "00:30", 101, 13, 9),
    (1, "00:40", 103, 6, 15),
    (1, "20:30", 101, 13, 10), (1, "23:10", 102, 7, 11),
    (2, "00:05", 102, 6, 12), (2, "00:06", 102, 6, 13), (2, "01:00", 101, 12, 14),
]


def _ts(day: int, hhmm: str) -> int:
    hours, minutes = map(int, hhmm.split(":"))
    return D1 + day * DAY + (hours * 3600 + minutes * 60) * NS


def _session(ts_ns: int) -> dt.date:
    """CME trading day: the Chicago date, the next one from 17:00 CT (independent of the project)."""
    local = dt.datetime.fromtimestamp(ts_ns / NS, CHICAGO)
    return local.date() + dt.timedelta(days=1 if local.hour >= 17 else 0)


def _expected() -> dict[tuple[int, int], dict[str, int]]:
    """Per (instrument, window start s): bid/ask/unknown volume by a plain tick test."""
    last: dict[int, tuple[dt.date, int, int]] = {}  # iid -> (session, price, direction)
    out: dict[tuple[int, int], dict[str, int]] = {}
    for day, hhmm, iid, price, size in TAPE:
        ts = _ts(day, hhmm)
        session = _session(ts)
        direction = 0
        if iid in last and last[iid][0] == session:
            _s, before, carried = last[iid]
            direction = 1 if price > before else -1 if price < before else carried
        last[iid] = (session, price, direction)
        row = out.setdefault((iid, ts // NS // WINDOW_S * WINDOW_S), dict(bid=0, ask=0, unknown=0))
        row["ask" if direction > 0 else "bid" if direction < 0 else "unknown"] += size
    return out


def _files(tmp_path: Path) -> list[Path]:
    defs = [call_definition(iid, strike, EXPIRATION, ts_recv=D1 - DAY) for iid, strike in
            ((101, 21000), (102, 21100), (103, 21200))]
    paths = [write_dbn(tmp_path / "nq.definition.dbn.zst", defs, schema=dbn.Schema.DEFINITION,
                       start=D1, end=D1 + 3 * DAY)]
    for day in range(3):
        rows = [r for r in TAPE if r[0] == day]
        tape = records(RTYPE_TRADES, [_ts(d, t) for d, t, *_ in rows], [r[2] for r in rows],
                       [r[3] * NS for r in rows], [r[4] for r in rows], "N")
        paths.append(write_dbn(tmp_path / f"nq-{day}.trades.dbn.zst", [tape],
                               start=D1 + day * DAY, end=D1 + (day + 1) * DAY))
    return paths


def _stored_sides(items: list[object]) -> dict[tuple[int, int], dict[str, int]]:
    out: dict[tuple[int, int], dict[str, int]] = {}
    for item in items:
        if isinstance(item, WindowResult):
            for p in item.parts.to_parts():
                row = out.setdefault((p.instrument_id, p.window_start_ns // NS),
                                     dict(bid=0, ask=0, unknown=0))
                row["bid"] += p.bid_volume
                row["ask"] += p.ask_volume
                row["unknown"] += p.unknown_volume
    return out


@pytest.mark.parametrize("mode", ["series", "file"])
def test_tick_test_sides_across_daily_files_match_an_independent_tick_test(tmp_path, mode):
    files = _files(tmp_path)
    items = run_flow(tmp_path / mode, files, replay_partitions=mode, scoring={"enabled": False})
    expected = _expected()
    # the tape exercises the warm-up: sides right after midnight come from the previous file
    assert expected[(101, _ts(1, "00:10") // NS)] == dict(bid=7, ask=0, unknown=0)
    assert expected[(102, _ts(2, "00:05") // NS)] == dict(bid=25, ask=0, unknown=0)
    assert _stored_sides(items) == expected


def _plan(tmp_path: Path) -> tuple[list[list], dict]:
    plan = plan_inputs([str(p) for p in _files(tmp_path)], "auto")
    return split_series(partition_inputs(plan.data), _session_of), plan


def _session_of(ts_ns: int) -> int:
    return int(cme_sessions().locate_ns(np.array([ts_ns]))[0])


def test_daily_utc_files_split_with_a_warm_up_from_the_previous_file(tmp_path):
    (partitions, warm_from), plan = _plan(tmp_path)
    assert [len(p) for p in partitions] == [1, 1, 1]
    firsts = [p[0] for p in partitions]
    assert warm_from == {firsts[1].source_id: firsts[0], firsts[2].source_id: firsts[1]}


def test_files_inside_one_session_and_mbo_series_stay_whole(tmp_path):
    hourly = []
    for hour in range(3):  # 10:00-13:00 UTC: one CME session
        start = D1 + (10 + hour) * 3600 * NS
        tape = records(RTYPE_TRADES, [start + NS], [101], [10 * NS], [1], "N")
        hourly.append(write_dbn(tmp_path / f"h{hour}.trades.dbn.zst", [tape], start=start,
                                end=start + 3600 * NS))
    mbo = []
    for day in range(2):
        start = D1 + day * DAY
        book = records(RTYPE_MBO, [start + NS], [101], [10 * NS], [1], "B", action="A")
        mbo.append(write_dbn(tmp_path / f"m{day}.mbo.dbn.zst", [book], schema=dbn.Schema.MBO,
                             start=start, end=start + DAY))
    for files in (hourly, mbo):
        plan = plan_inputs([str(p) for p in files], "auto")
        partitions, warm_from = split_series(partition_inputs(plan.data), _session_of)
        assert [len(p) for p in partitions] == [len(files)]
        assert warm_from == {}


def test_a_partition_resumed_during_its_warm_up_starts_it_again_from_a_fresh_state(tmp_path):
    (partitions, warm_from), plan = _plan(tmp_path)
    source = DBNFileSource(partitions, warm_from=warm_from)
    key = partitions[1][0].source_id
    processor = StreamProcessor(InstrumentCatalog(plan.definitions, plan.symbols),
                                window_ns=WINDOW_S * NS, lateness_ns=0, merged_clock=True)

    def run(resume: FilePosition | None, state: object) -> tuple[object, list]:
        part = source.build_part("read", key, resume)
        out: list = []
        try:
            while True:
                for batch in part.next_batch():
                    state, items = processor.process(state, normalise_batch(batch))
                    out.extend(items)
        except StopIteration:
            part.close()
        return state, out

    fresh_state, fresh_out = run(None, None)
    # a snapshot taken while warming up: the state saved with it is part-way (here: poisoned
    # with a reference for 103, which first trades in this file and must stay unknown)
    poisoned = processor.new_state()
    poisoned.tick.last_price[103] = 5 * NS
    poisoned.tick.last_session[103] = _session_of(_ts(1, "00:40"))
    resumed_state, resumed_out = run(FilePosition(0, 0, 0, 0, warming=True), poisoned)
    assert resumed_state.tick == fresh_state.tick
    sides = _stored_sides([WindowResult(b.key, b.window_start_ns, b) for b in fresh_out
                           if type(b).__name__ == "PartBlock"])
    assert sides[(103, _ts(1, "00:40") // NS)] == dict(bid=0, ask=0, unknown=15)
    assert sides == _stored_sides([WindowResult(b.key, b.window_start_ns, b) for b in resumed_out
                                   if type(b).__name__ == "PartBlock"])


def test_two_processes_split_daily_files_and_store_the_independent_sides(tmp_path):
    from tests.flowrun import stored_windows
    from tests.test_scaling import _run, _run_cluster

    source = ",".join(str(p) for p in _files(tmp_path))
    one = _run(tmp_path / "one", source)
    assert one.returncode == 0, one.stderr[-3000:]
    results = _run_cluster(tmp_path / "two", source, 2)
    for rc, _out, err in results:
        assert rc == 0, err[-3000:]
    logs = "".join(err for _rc, _out, err in results)
    assert "3 source partition(s), one per file" in logs  # auto: file partitions with 2 processes
    sides = {k: {s: v[s] for s in ("bid", "ask", "unknown")}
             for k, v in stored_windows(tmp_path / "two").items()}
    assert sides == _expected()
    assert stored_windows(tmp_path / "two") == stored_windows(tmp_path / "one")


@pytest.mark.parametrize(("concurrency", "expected"), [(1, [0, 1, 2, 3]), (2, [0, 0, 1, 2])])
def test_a_process_reads_its_file_partitions_earliest_first(concurrency, expected):
    keys = ["d1", "d2", "d3", "d4"]
    order = LocalOrder(keys, concurrency)
    for key in reversed(keys):  # built in any order
        order.register(key)
    assert [order.behind(k) for k in keys] == expected
    order.done("d1")
    assert [order.behind(k) for k in keys[1:]] == expected[:3]
    order.done("d3")  # a later partition may finish first (another worker read it)
    assert order.behind("d4") == expected[1]
