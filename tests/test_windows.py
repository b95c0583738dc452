"""Window semantics of the real dataflow on small synthetic DBN files."""

from __future__ import annotations

from collections import Counter

import numpy as np

from connectors.dbn import RTYPE_MBP1, RTYPE_TRADES
from tests.dbnfiles import NS, PX, T0, records, trades_file, write_dbn
from tests.flowrun import contract_rows, per_window, run_flow, stats, windows


def test_quiet_key_window_closes_when_stream_time_passes_not_at_eof(tmp_path):
    # instrument 1 trades once at T0+10s; instrument 2 trades every 10 s for 30 min
    busy_ts = T0 + np.arange(1, 181) * 10 * NS
    ts = np.r_[T0 + 10 * NS, busy_ts]
    iid = np.r_[1, np.full(len(busy_ts), 2)]
    path = trades_file(tmp_path / "q.trades.dbn.zst", ts, iid, np.full(len(ts), PX),
                       np.ones(len(ts), int), "B")
    items = run_flow(tmp_path, [path], batch_records=5, allowed_lateness_s=10)
    quiet = [i for i, x in enumerate(items) if x in windows(items)
             and "ID|1" in set(x.parts.cols["contract_key"])]
    assert len(quiet) == 1
    # it closed as soon as some batch's event time passed window end + lateness (T0+310s) ...
    closing_batch = next(
        i for i, x in enumerate(items)
        if x in stats(items) and x.max_ts_event >= T0 + 310 * NS
    )
    assert quiet[0] <= closing_batch + 1
    # ... long before the end of the input
    last_stats = max(i for i, x in enumerate(items) if x in stats(items))
    assert quiet[0] < last_stats - 10


def test_late_trade_corrects_its_window_additively(tmp_path):
    # 40 in-order trades over two windows, then one trade 5 minutes late for window 0
    ts = list(T0 + np.arange(1, 41) * 10 * NS) + [T0 + 30 * NS]
    side = ["B"] * 40 + ["A"]
    size = [1] * 40 + [7]
    path = trades_file(tmp_path / "late.trades.dbn.zst", ts, [5] * 41, [PX] * 41, size, side)
    items = run_flow(tmp_path, [path], batch_records=8, allowed_lateness_s=10)
    corrections = contract_rows(items, corrections=True)
    assert len(corrections) == 1
    assert corrections[0].bid_volume == 7
    assert corrections[0].late
    final = per_window(items)
    # independent tally of the input
    w0 = [i for i, t in enumerate(ts) if t < T0 + 300 * NS]
    assert final[("ID|5", T0 // NS)] == dict(
        bid=sum(size[i] for i in w0 if side[i] == "A"),
        ask=sum(size[i] for i in w0 if side[i] == "B"),
        unknown=0, trades=len(w0),
    )
    assert sum(v["trades"] for v in final.values()) == 41


def _same_trades_two_schemas(n=30):
    ts = T0 + np.arange(1, n + 1) * NS
    price = PX + (np.arange(n) % 3) * NS // 4
    size = np.arange(n) % 4 + 1
    side = ["B", "A", "N"] * (n // 3)
    a = records(RTYPE_TRADES, ts, 9, price, size, side)
    b = records(RTYPE_MBP1, ts, 9, price, size, side, bid=PX - NS, ask=PX + NS)
    return a, b


def test_mixed_schema_file_counts_each_trade_once_from_richest_schema(tmp_path):
    a, b = _same_trades_two_schemas()
    interleaved = b"".join(x.tobytes() + y.tobytes() for x, y in zip(a, b, strict=True))
    path = write_dbn(tmp_path / "mixed.dbn.zst", [interleaved], schema=None)
    items = run_flow(tmp_path, [path], batch_records=7)
    got = per_window(items)
    assert sum(v["trades"] for v in got.values()) == 30
    skipped = Counter()
    for s in stats(items):
        skipped.update(s.skipped)
    assert skipped["duplicate_schema_trades"] == 30
    # mbp-1 won: its BBO decided the N trades by the quote rule
    quote = sum(p.quote_volume for p in contract_rows(items))
    expected_quote = int(b["size"][(b["side"] == b"N") & (b["price"] != PX)].sum())
    assert quote == expected_quote > 0


def test_explicit_trade_schema_takes_only_that_schema(tmp_path):
    a, b = _same_trades_two_schemas()
    interleaved = b"".join(x.tobytes() + y.tobytes() for x, y in zip(a, b, strict=True))
    path = write_dbn(tmp_path / "mixed.dbn.zst", [interleaved], schema=None)
    items = run_flow(tmp_path, [path], trade_schema="trades")
    assert sum(v["trades"] for v in per_window(items).values()) == 30
    assert sum(p.quote_volume for p in contract_rows(items)) == 0  # trades carry no BBO


def test_undefined_instrument_is_aggregated_and_counted(tmp_path):
    path = trades_file(tmp_path / "u.trades.dbn.zst", [T0 + NS, T0 + 2 * NS], [77, 78],
                       [PX, PX], [2, 3], "B", symbols={78: "XYZ4"})
    items = run_flow(tmp_path, [path])
    keys = {p.key: p.total_volume for p in contract_rows(items)}
    # 78 is in the file's symbology: stored (not scored) under its symbol; 77 is in neither
    # symbology nor any definition of a file that has symbology: a counted dead letter
    assert keys == {"SYM|XYZ4": 3}
    assert sum(s.undefined_instrument_trades for s in stats(items)) == 1
    assert sum(s.dead_letters.get("unknown_instrument", 0) for s in stats(items)) == 1


def test_undefined_instrument_without_symbology_is_stored_under_its_id(tmp_path):
    path = trades_file(tmp_path / "u.trades.dbn.zst", [T0 + NS, T0 + 2 * NS], [77, 78],
                       [PX, PX], [2, 3], "B")
    items = run_flow(tmp_path, [path])
    keys = {p.key: p.total_volume for p in contract_rows(items)}
    assert keys == {"ID|77": 2, "ID|78": 3}
    assert sum(s.undefined_instrument_trades for s in stats(items)) == 2


def test_bad_trades_become_counted_dead_letters_not_volume(tmp_path):
    undef = 2**63 - 1
    path = trades_file(tmp_path / "bad.trades.dbn.zst", [T0 + NS, T0 + 2 * NS, T0 + 3 * NS],
                       [1, 1, 1], [PX, undef, PX], [4, 5, 0], "B")
    items = run_flow(tmp_path, [path])
    assert per_window(items) == {("ID|1", T0 // NS): dict(bid=0, ask=4, unknown=0, trades=1)}
    dead = Counter()
    for s in stats(items):
        dead.update(s.dead_letters)
    assert dead == {"undef_price": 1, "zero_size": 1}
    letters = [x for x in items if type(x).__name__ == "DeadLetters"]
    assert sorted(int(p) for x in letters for p in x.position) == [1, 2]
