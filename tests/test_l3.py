"""L3 from MBO: order book, side of ``N`` trades from the book, footprint and delta/CVD.

Expected values come from independent computations over the raw records: a plain
dict-of-orders replay that scans every resting order for the BBO, and polars group-bys over the
decoded file; never from the code under test.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import polars as pl
import pytest
from bytewax.testing import run_main

from flows.absorption import AbsorptionTracker
from flows.book import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, OrderBooks
from flows.footprint import footprint_rows
from flows.icebergs import IcebergTracker
from flows.ifd import build_flow
from models.batch import RTYPE_MBO
from models.records import UNDEF_PRICE, Contract, FootprintRows
from models.settings import Settings
from samples.generator import generate_mbo
from samples.icebergs import generate_iceberg_tape
from sinks.clickhouse import open_store
from tests.dbnfiles import T0, write_dbn
from tests.flowrun import run_flow

ESH4 = "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
UNDEF = UNDEF_PRICE
WINDOW_NS = 300 * 10**9


def _mbo(path: Path) -> np.ndarray:
    return db.DBNStore.from_file(path).to_ndarray()


class ReferenceBook:
    """Every resting order in one dict; the BBO by scanning all of them (slow, obviously right)."""

    def __init__(self) -> None:
        self.orders: dict[tuple[int, int], list] = {}
        self.snapshot: set[int] = set()

    def apply(self, r) -> None:
        iid, oid, action = int(r["instrument_id"]), int(r["order_id"]), r["action"]
        if r["flags"] & F_SNAPSHOT and iid not in self.snapshot:
            self.snapshot.add(iid)
            self.orders = {k: v for k, v in self.orders.items() if k[0] != iid}
        elif not r["flags"] & F_SNAPSHOT:
            self.snapshot.discard(iid)
        if action in (b"A", b"M"):
            self.orders.pop((iid, oid), None)
            if int(r["size"]) > 0:
                self.orders[(iid, oid)] = [r["side"], int(r["price"]), int(r["size"])]
        elif action == b"C" and (iid, oid) in self.orders:
            order = self.orders[(iid, oid)]
            order[2] -= min(int(r["size"]), order[2])
            if order[2] == 0:
                del self.orders[(iid, oid)]
        elif action == b"R":
            self.orders = {k: v for k, v in self.orders.items() if k[0] != iid}

    def bbo(self, iid: int) -> tuple[int, int]:
        bids = [o[1] for k, o in self.orders.items() if k[0] == iid and o[0] == b"B"]
        asks = [o[1] for k, o in self.orders.items() if k[0] == iid and o[0] == b"A"]
        return (max(bids) if bids else UNDEF, min(asks) if asks else UNDEF)


def test_book_bbo_at_f_last_equals_a_dict_of_orders_replay_on_the_real_esh4_file(real_dir):
    records = _mbo(real_dir / ESH4)
    log: list = []
    quotes = OrderBooks().apply(records, publish_log=log)
    assert len(log) == int(np.count_nonzero(records["flags"] & F_LAST))
    published = {row: (bid, ask) for row, _iid, bid, ask in log}
    reference = ReferenceBook()
    trades = np.flatnonzero(records["action"] == b"T")
    check = set(range(8_725, len(records), 97)) | {t - 1 for t in trades[:300]}
    last_bbo: dict[int, tuple[int, int]] = {}
    compared = traded = 0
    for i, r in enumerate(records):
        if r["action"] == b"T":
            iid = int(r["instrument_id"])
            if traded < 300:  # the quote handed to the trade: the last F_LAST before it
                j = int(np.searchsorted(trades, i))
                assert (quotes.bid_px[j], quotes.ask_px[j]) == last_bbo.get(iid, (UNDEF, UNDEF))
            traded += 1
        reference.apply(r)
        if r["flags"] & F_LAST:
            last_bbo[int(r["instrument_id"])] = published[i]
            if i in check:
                assert published[i] == reference.bbo(int(r["instrument_id"])), i
                compared += 1
    assert compared > 500
    # crossed only in the pre-open (22:00-23:00 UTC, before the 23:00 opening uncross)
    first_trade_ts = int(records["ts_event"][trades[0]])
    for row, _iid, bid, ask in log:
        if bid != UNDEF and ask != UNDEF and bid >= ask:
            assert int(records["ts_event"][row]) < first_trade_ts


def test_book_in_small_batches_with_pickled_copies_equals_a_dict_of_orders_replay(real_dir):
    """Tables start at 1024 rows and a side's block at 8 levels: 500-record batches make them
    grow mid-batch; every other batch continues from a pickled copy of the book."""
    records = _mbo(real_dir / ESH4)
    books, reference = OrderBooks(), ReferenceBook()
    compared = 0
    for start in range(0, len(records), 500):
        batch = records[start:start + 500]
        log: list = []
        books.apply(batch, publish_log=log)
        for r in batch:
            reference.apply(r)
        iid = int(batch["instrument_id"][-1])
        if batch["flags"][-1] & F_LAST:
            assert log[-1][2:] == reference.bbo(iid)
            compared += 1
        resting = {oid: (o[0], o[1], o[2]) for (i, oid), o in reference.orders.items() if i == iid}
        assert {oid: (bytes([s]), p, q) for oid, (s, p, q) in books.resting_orders(iid).items()} \
            == resting
        if start // 500 % 2:
            books = pickle.loads(pickle.dumps(books))
    assert compared > 50


def _reshard(books: OrderBooks, threads: int) -> OrderBooks:
    state = pickle.loads(pickle.dumps(books)).__getstate__()
    state["threads"] = threads
    out = OrderBooks.__new__(OrderBooks)
    out.__setstate__(state)
    return out


def test_books_sharded_on_threads_equal_a_dict_of_orders_replay_across_a_reshard(tmp_path):
    path = generate_mbo(tmp_path / "chain.mbo.dbn.zst", n_records=30_000, instrument_count=12)
    records = _mbo(path)
    books, reference = OrderBooks(threads=3), ReferenceBook()
    compared = quoted = 0
    last: dict[int, tuple[int, int]] = {}
    for k, start in enumerate(range(0, len(records), 4000)):
        batch = records[start:start + 4000]
        log: list = []
        quotes = books.apply(batch, publish_log=log)
        published = {row: (iid, bid, ask) for row, iid, bid, ask in log}
        trades = iter(range(len(quotes.bid_px)))
        for i, r in enumerate(batch):
            iid = int(r["instrument_id"])
            if r["action"] == b"T":  # the quote handed to a trade: its instrument's last F_LAST
                j = next(trades)
                assert (quotes.bid_px[j], quotes.ask_px[j]) == last.get(iid, (UNDEF, UNDEF))
                quoted += 1
            reference.apply(r)
            if r["flags"] & F_LAST:
                assert published[i][0] == iid
                last[iid] = published[i][1:]
                if (start + i) % 29 == 0:
                    assert last[iid] == reference.bbo(iid), start + i
                    compared += 1
        if k == 3:  # resume from a copy spread over another number of shards
            books = _reshard(books, 2)
    assert compared > 300 and quoted > 500
    assert len({int(r["instrument_id"]) for r in records}) == 12


def _merged_tapes(tmp_path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two labelled iceberg tapes on two instrument ids, merged in time order."""
    parts = []
    for k, seed in enumerate((4, 5)):
        tape = generate_iceberg_tape(tmp_path / str(seed), seed=seed, events=20_000, icebergs=12)
        part = _mbo(tape.mbo_path).copy()
        part["instrument_id"] = 100 + 7 * k
        parts.append(part)
    merged = np.concatenate(parts)
    return merged[np.argsort(merged["ts_event"], kind="stable")], parts


def _detect(records: np.ndarray, threads: int, batch: int) -> tuple[list, list]:
    bergs, absorbed = IcebergTracker(), AbsorptionTracker()
    books = OrderBooks(icebergs=bergs, absorption=absorbed, threads=threads)
    rows: list = []
    events: list = []
    for start in range(0, len(records), batch):
        books.apply(records[start:start + batch])
        rows += books.icebergs.take()
        events += books.absorption.take()
        if start // batch == 2:
            books = _reshard(books, max(1, threads - 1))
    books.icebergs.expire(2**62)
    books.absorption.expire(2**62)
    return sorted(rows + books.icebergs.take()), sorted(events + books.absorption.take())


def test_iceberg_and_absorption_events_do_not_depend_on_the_number_of_book_threads(tmp_path):
    """Shards split instruments; the detectors see the shards' events merged in record order.

    The one-thread detector is the one checked by the hand-made cases and
    ``benchmarks/bench_icebergs.py``; here two and three shards, resumed from copies spread
    over fewer shards, must give exactly its rows.
    """
    merged, _parts = _merged_tapes(tmp_path)
    expected = _detect(merged, 1, 5000)
    assert {r[1] for r in expected[0]} == {100, 107}
    assert {e[0] for e in expected[1]} == {100, 107}
    for threads in (2, 3):
        assert _detect(merged, threads, 5000) == expected, threads


def test_snapshot_only_file_then_the_live_file_rebuilds_the_same_book(real_dir):
    snapshot_only = _mbo(real_dir / "esh4-glbx-mdp3-20231224.mbo.dbn.zst")
    full = _mbo(real_dir / ESH4)
    one, two = OrderBooks(), OrderBooks()
    one.apply(full)
    two.apply(snapshot_only)
    two.apply(full)  # the file starts with the same snapshot: it replaces the book
    iid = int(full["instrument_id"][0])
    assert one.resting_orders(iid) == two.resting_orders(iid) and len(one.resting_orders(iid)) > 100
    assert one.depth(iid, "B", 5) == two.depth(iid, "B", 5)


def _records(rows: list[tuple]) -> np.ndarray:
    """MBO records from (action, side, price points, size, order_id, flags[, instrument])."""
    out = np.zeros(len(rows), dtype=np.dtype(db.MBOMsg._dtypes))
    for i, row in enumerate(rows):
        action, side, price, size, oid, flags, *rest = row
        out[i]["action"], out[i]["side"] = action, side
        out[i]["price"] = UNDEF if price is None else round(price * 1e9)
        out[i]["size"], out[i]["order_id"], out[i]["flags"] = size, oid, flags
        out[i]["instrument_id"] = rest[0] if rest else 7
        out[i]["ts_event"] = T0 + i
    out["length"] = out.dtype.itemsize // 4
    out["rtype"], out["publisher_id"] = RTYPE_MBO, 1
    out["ts_recv"] = out["ts_event"] + 1000
    return out


def test_book_rules_on_hand_made_events():
    L = F_LAST
    books = OrderBooks()
    books.apply(_records([
        (b"A", b"B", 100.0, 5, 1, L), (b"A", b"B", 100.0, 3, 2, L), (b"A", b"A", 101.0, 4, 3, L),
        (b"A", b"B", 99.5, 9, 4, 0),  # not the end of the event: nothing published yet
    ]))
    assert books.published[7] == (100 * 10**9, 101 * 10**9)
    assert books.depth(7, "B") == [(100 * 10**9, 8), (99_500_000_000, 9)]
    quotes = books.apply(_records([
        (b"T", b"A", 100.0, 6, 0, 0), (b"F", b"B", 100.0, 5, 1, 0),  # trade + fill: no change
        (b"C", b"B", 100.0, 5, 1, 0), (b"C", b"B", 100.0, 1, 2, L),  # order 1 gone, 2 left with 2
        (b"M", b"A", 100.5, 4, 3, L),  # order 3 moves down to 100.5
    ]))
    assert (quotes.bid_px.tolist(), quotes.ask_px.tolist()) == ([100 * 10**9], [101 * 10**9])
    assert books.bbo(7) == (100 * 10**9, 2, 100_500_000_000, 4)
    books.apply(_records([(b"C", b"B", 100.0, 2, 2, L)]))  # the best level empties
    assert books.published[7] == (99_500_000_000, 100_500_000_000)
    quotes = books.apply(_records([(b"A", b"B", 99.75, 1, 5, L | F_MAYBE_BAD_BOOK),
                                   (b"T", b"N", 100.0, 1, 0, L)]))
    assert quotes.bid_px.tolist() == [UNDEF]  # unreliable until a clear or snapshot
    quotes = books.apply(_records([(b"R", b"N", None, 0, 0, L | F_SNAPSHOT),
                                   (b"A", b"A", 102.0, 1, 9, F_SNAPSHOT),
                                   (b"A", b"B", 101.0, 1, 8, L),
                                   (b"T", b"N", 101.5, 1, 0, L)]))
    assert (quotes.bid_px.tolist(), quotes.ask_px.tolist()) == ([101 * 10**9], [102 * 10**9])
    with pytest.raises(ValueError, match="missing fields"):
        books.apply(np.zeros(1, dtype=[("price", "i8")]))


def test_footprint_rows_sum_volume_by_price_and_aggressor_side():
    contracts = [Contract(key="F|ESH4", instrument_id=7, symbol="ESH4", underlying="ES",
                          expiration_ns=None, strike_price=None, option_type="F", defined=True)]
    ts = np.array([0, 1, 2, 3, WINDOW_NS + 1])
    price = np.array([100, 100, 101, 100, 100]) * 10**9
    rows = footprint_rows(ts, price, np.array([1, 2, 3, 4, 5]), np.array([1, -1, 1, 0, 1]),
                          np.zeros(5, dtype=np.int64), contracts, window_ns=WINDOW_NS,
                          source="s", seq=3)
    assert isinstance(rows, FootprintRows) and len(rows) == 3
    got = list(zip(rows.window_start_ns.tolist(), (rows.price // 10**9).tolist(),
                   rows.bid_volume.tolist(), rows.ask_volume.tolist(),
                   rows.unknown_volume.tolist(), rows.trades.tolist(), strict=True))
    assert got == [(0, 100, 2, 1, 4, 3), (0, 101, 0, 3, 0, 1), (WINDOW_NS, 100, 0, 5, 0, 1)]


def test_mbo_side_n_trade_is_classified_from_the_book_by_the_quote_rule(tmp_path):
    # an uncrossed book 100 / 101, then a side-N print at 100.75 (above the mid): a buy by quote
    L = F_LAST
    path = write_dbn(tmp_path / "n.mbo.dbn.zst", [_records([
        (b"A", b"B", 100.0, 5, 1, L), (b"A", b"A", 101.0, 5, 2, L),
        (b"T", b"N", 100.75, 3, 0, L), (b"T", b"A", 100.0, 2, 0, L)])],
        schema=dbn.Schema.MBO, symbols={7: "ESX"})
    items = run_flow(tmp_path / "on", [path])
    parts = [p for r in items if hasattr(r, "parts") for p in r.parts.to_parts()]
    assert sum(p.quote_volume for p in parts) == 3 and sum(p.ask_volume for p in parts) == 3
    assert sum(p.bid_volume for p in parts) == 2
    off = run_flow(tmp_path / "off", [path], l3_enabled=False)
    parts = [p for r in off if hasattr(r, "parts") for p in r.parts.to_parts()]
    assert sum(p.quote_volume for p in parts) == 0 and sum(p.unknown_volume for p in parts) == 3
    assert not any(isinstance(i, FootprintRows) for i in off)


def _polars_trades(path: Path) -> pl.DataFrame:
    rec = _mbo(path)
    df = pl.DataFrame({"ts": rec["ts_event"].astype(np.int64), "price": rec["price"],
                       "size": rec["size"].astype(np.int64), "action": rec["action"].astype(str),
                       "side": rec["side"].astype(str),
                       "snapshot": (rec["flags"] & F_SNAPSHOT) != 0})
    return (df.filter((pl.col("action") == "T") & ~pl.col("snapshot"))
              .with_columns((pl.col("ts") // WINDOW_NS * WINDOW_NS).alias("window_ns")))


def test_footprint_and_cvd_of_the_real_esh4_file_equal_polars(real_dir, tmp_path):
    path = real_dir / ESH4
    settings = Settings(source=str(path), data_dir=tmp_path, progress_interval_s=0)
    run_main(build_flow(settings, alerts=None))  # into embedded chdb
    trades = _polars_trades(path)
    expected = (trades.group_by("window_ns", "price")
                .agg(pl.col("size").filter(pl.col("side") == "A").sum().alias("bid"),
                     pl.col("size").filter(pl.col("side") == "B").sum().alias("ask"),
                     pl.col("size").filter(pl.col("side") == "N").sum().alias("unknown"),
                     pl.len().alias("trades"))
                .sort("window_ns", "price"))
    store = open_store(settings)
    try:
        got = store.query_arrow(
            "SELECT toUnixTimestamp64Nano(window_start) AS window_ns, price, bid_volume, "
            "ask_volume, unknown_volume, trades FROM ifd.footprint ORDER BY window_ns, price")
        cvd = store.query_arrow("SELECT toUnixTimestamp64Nano(window_start) AS window_ns, delta, "
                                "cvd FROM ifd.delta_cvd ORDER BY window_ns")
    finally:
        store.close()
    got_rows = got.to_pylist()
    assert len(got_rows) == expected.height > 50
    for g, e in zip(got_rows, expected.iter_rows(named=True), strict=True):
        assert (g["window_ns"], round(g["price"] * 1e9)) == (e["window_ns"], e["price"])
        assert (g["bid_volume"], g["ask_volume"], g["trades"]) == (e["bid"], e["ask"], e["trades"])
        assert g["unknown_volume"] == e["unknown"]  # the uncross print: crossed pre-open book
    per_window = (trades.group_by("window_ns")
                  .agg((pl.col("size").filter(pl.col("side") == "B").sum()
                        - pl.col("size").filter(pl.col("side") == "A").sum()).alias("delta"))
                  .sort("window_ns")
                  .with_columns(pl.col("delta").cum_sum().alias("cvd")))  # one CME trading day
    assert cvd.to_pylist() == per_window.to_dicts()


def _timed(rows: list[tuple]) -> np.ndarray:
    """MBO records from (ms after T0, action, side, price, size, order_id, flags)."""
    out = _records([r[1:] for r in rows])
    out["ts_event"] = [T0 + r[0] * 1_000_000 for r in rows]
    return out


def _icebergs(rows: list[tuple]) -> dict[tuple, tuple]:
    tracker = IcebergTracker()
    OrderBooks(icebergs=tracker).apply(_timed(rows))
    return {(r[0], r[4] if r[0] == "native" else r[3]): r for r in tracker.take()}


def test_native_iceberg_showing_one_lot_is_replenished_after_each_fill_then_cancelled():
    L = F_LAST
    rows = [(0, b"A", b"B", 100.0, 1, 1, L)]
    for k in range(3):  # sold into: 1 lot trades, the order shows 1 lot again
        rows += [(10 + k, b"T", b"A", 100.0, 1, 0, 0), (10 + k, b"F", b"B", 100.0, 1, 1, 0),
                 (10 + k, b"M", b"B", 100.0, 1, 1, L)]
    got = _icebergs(rows)
    (kind, iid, side, price, oid, first, last, refills, peak, executed, total, state), = got.values()
    assert (kind, side, price, oid, refills, executed, state) == (
        "native", "B", 100 * 10**9, 1, 3, 3, "active")
    assert total >= executed + 1  # plus what it still shows
    got = _icebergs([*rows, (20, b"C", b"B", 100.0, 1, 1, L)])
    assert got[("native", 1)][11] == "cancelled"


def test_native_iceberg_revealed_by_a_fill_larger_than_its_display():
    L = F_LAST
    got = _icebergs([(0, b"A", b"B", 100.0, 5, 2, L), (5, b"T", b"A", 100.0, 8, 0, 0),
                     (5, b"F", b"B", 100.0, 8, 2, 0), (5, b"M", b"B", 100.0, 4, 2, L)])
    row = got[("native", 2)]
    assert (row[7], row[8], row[9], row[11]) == (1, 5, 8, "active")  # refilled to 4 after 8 of 5
    plain = _icebergs([(0, b"A", b"B", 100.0, 5, 3, L), (5, b"F", b"B", 100.0, 2, 3, 0),
                       (5, b"M", b"B", 100.0, 3, 3, L)])  # 2 of 5 traded, 3 left: ordinary
    assert plain == {}


def test_synthetic_iceberg_needs_three_prompt_same_size_refills_of_a_level_emptied_by_fills():
    L = F_LAST
    rows = [(0, b"A", b"A", 101.0, 3, 10, L)]
    for k, oid in enumerate((10, 11, 12, 13)):  # each tranche is bought out; a new one 20 ms later
        t = 100 * (k + 1)
        rows += [(t, b"T", b"B", 101.0, 3, 0, 0), (t, b"F", b"A", 101.0, 3, oid, 0),
                 (t, b"C", b"A", 101.0, 3, oid, L)]
        if oid != 13:
            rows.append((t + 20, b"A", b"A", 101.0, 3, oid + 1, L))
    rows.append((2_000, b"A", b"B", 99.0, 1, 50, L))  # much later: the last tranche is not back
    row = _icebergs(rows)[("synthetic", 101 * 10**9)]
    assert (row[2], row[7], row[9], row[11]) == ("A", 3, 9, "exhausted")
    two_refills = _icebergs(rows[:12])  # two refills only: can be ordinary queue joining
    assert two_refills == {}
    other_size = [r if r[5] != 12 or r[1] != b"A" else (r[0], r[1], r[2], r[3], 5, r[5], r[6])
                  for r in rows]
    assert _icebergs(other_size) == {}  # a 5-lot joiner between 3-lot tranches breaks the run
    slow = [r if r[1] != b"A" or r[0] < 100 else (r[0] + 480, *r[1:]) for r in rows[:-1]]
    assert _icebergs(slow) == {}  # refills 500 ms after the level emptied: not an iceberg
    cancelled = [(0, b"A", b"A", 101.0, 3, 10, L), (100, b"C", b"A", 101.0, 3, 10, L),
                 (120, b"A", b"A", 101.0, 3, 11, L), (200, b"C", b"A", 101.0, 3, 11, L),
                 (220, b"A", b"A", 101.0, 3, 12, L)]
    assert _icebergs(cancelled) == {}  # emptied by cancels, not by trading
    other_clip = [(r[0], r[1], r[2], r[3], 5, r[5], r[6]) if r[5] == 10 else r for r in rows]
    assert _icebergs(other_clip) == {}  # a 5-lot traded out, then 3-lots: two 3-lot refills only


def test_synthetic_candidate_does_not_continue_after_someone_elses_order_empties_the_level():
    L = F_LAST
    rows = [(0, b"A", b"A", 101.0, 3, 10, L)]
    for k, oid in enumerate((10, 11, 12)):  # two prompt refills, then the last tranche trades away
        t = 100 * (k + 1)
        rows += [(t, b"T", b"B", 101.0, 3, 0, 0), (t, b"F", b"A", 101.0, 3, oid, 0),
                 (t, b"C", b"A", 101.0, 3, oid, L)]
        if oid != 12:
            rows.append((t + 20, b"A", b"A", 101.0, 3, oid + 1, L))
    # seconds later an ordinary 3-lot rests there, is bought out, and another 3-lot joins
    rows += [(5_000, b"A", b"A", 101.0, 3, 60, L), (5_100, b"T", b"B", 101.0, 3, 0, 0),
             (5_100, b"F", b"A", 101.0, 3, 60, 0), (5_100, b"C", b"A", 101.0, 3, 60, L),
             (5_120, b"A", b"A", 101.0, 3, 61, L)]
    assert _icebergs(rows) == {}  # not a third refill of the iceberg that ended at 300 ms


def test_real_esh4_icebergs_include_every_order_that_traded_more_than_it_showed(real_dir, tmp_path):
    records = _mbo(real_dir / ESH4)
    shown: dict[int, int] = {}
    hidden: set[int] = set()  # independent pass: fill size above the order's displayed size
    for r in records:
        if r["flags"] & F_SNAPSHOT and r["action"] == b"A":
            shown[int(r["order_id"])] = int(r["size"])
        elif r["action"] in (b"A", b"M"):
            shown[int(r["order_id"])] = int(r["size"])
        elif r["action"] == b"F" and int(r["size"]) > shown.get(int(r["order_id"]), 1 << 40):
            hidden.add(int(r["order_id"]))
    assert len(hidden) >= 5
    settings = Settings(source=str(real_dir / ESH4), data_dir=tmp_path, progress_interval_s=0)
    run_main(build_flow(settings, alerts=None))
    store = open_store(settings)
    try:
        native = store.query_arrow("SELECT order_id, executed FROM ifd.icebergs FINAL "
                                   "WHERE kind = 'native'").to_pylist()
        zones = store.query_arrow("SELECT count() AS n, sum(icebergs) AS icebergs "
                                  "FROM ifd.iceberg_zones").to_pylist()
        total = store.query_arrow("SELECT count() AS n FROM ifd.icebergs FINAL").to_pylist()
    finally:
        store.close()
    assert hidden <= {r["order_id"] for r in native}
    assert zones[0]["icebergs"] == total[0]["n"] and zones[0]["n"] > 0


def _absorption(rows: list[tuple]) -> list[tuple]:
    tracker = AbsorptionTracker()
    OrderBooks(absorption=tracker).apply(_timed(rows))
    return tracker.take()


def test_absorption_is_a_level_that_soaks_up_three_times_its_size_and_holds_or_breaks():
    L = F_LAST
    rows = [(0, b"A", b"B", 100.0, 10, 1, L)]
    oid = 1
    for k in range(6):  # sellers hit 100 six times; a new 10-lot joins after each
        t = 100 * (k + 1)
        rows += [(t, b"T", b"A", 100.0, 10, 0, 0), (t, b"F", b"B", 100.0, 10, oid, 0),
                 (t, b"C", b"B", 100.0, 10, oid, L)]
        oid += 1
        if k < 5:
            rows.append((t + 10, b"A", b"B", 100.0, 10, oid, L))
    held = _absorption([*rows[:-3], (7_000, b"A", b"A", 101.0, 1, 99, L)])  # 5 s later
    assert [(e[1], e[2], e[3], e[4], e[5], e[8]) for e in held] == [
        ("B", 100 * 10**9, 50, 10, 5, "held")]
    broke = _absorption([*rows, (7_000, b"A", b"A", 101.0, 1, 99, L)])  # the last fill took it all
    assert [(e[3], e[5], e[8]) for e in broke] == [(60, 6, "broke")]
    assert _absorption(rows[:10]) == []  # 30 lots: below the 50-lot minimum


def test_absorption_run_pickled_before_the_runs_were_compiled_loads_and_finishes():
    from flows.absorption import AbsorptionRules, _Run

    tracker = AbsorptionTracker.__new__(AbsorptionTracker)
    tracker.__setstate__({"rules": AbsorptionRules(), "done": [],
                          "runs": {(7, ord("B"), 100 * 10**9): _Run(10, 100, 600, 50, 5, False),
                                   (7, ord("A"), 101 * 10**9): _Run(10, 100, 700, 20, 2, True)}})
    tracker.expire(10**12)
    assert tracker.take() == [(7, "B", 100 * 10**9, 50, 10, 5, 100, 600, "held")]


def test_real_esh4_absorption_volumes_equal_the_fills_at_that_level(real_dir, tmp_path):
    records = _mbo(real_dir / ESH4)
    settings = Settings(source=str(real_dir / ESH4), data_dir=tmp_path, progress_interval_s=0)
    run_main(build_flow(settings, alerts=None))
    store = open_store(settings)
    try:
        events = store.query_arrow(
            "SELECT side, price, absorbed, fills, toUnixTimestamp64Nano(first_ts) AS t0, "
            "toUnixTimestamp64Nano(last_ts) AS t1 FROM ifd.absorption FINAL").to_pylist()
    finally:
        store.close()
    assert events
    first_trade = int(records["ts_event"][records["action"] == b"T"][0])  # the opening uncross
    fills = records[(records["action"] == b"F") & ((records["flags"] & F_SNAPSHOT) == 0)
                    & (records["ts_event"].astype(np.int64) > first_trade)]
    ts = fills["ts_event"].astype(np.int64)
    for e in events:  # independent: every fill of that side and price inside the run
        at = ((fills["side"] == e["side"].encode()) & (fills["price"] == round(e["price"] * 1e9))
              & (ts >= e["t0"]) & (ts <= e["t1"]))
        assert int(fills["size"][at].sum()) == e["absorbed"] and int(at.sum()) == e["fills"]
        assert e["absorbed"] >= 50


def test_absorption_window_follows_the_configured_window_length(real_dir, tmp_path):
    settings = Settings(source=str(real_dir / ESH4), data_dir=tmp_path, progress_interval_s=0,
                        window_length_s=60)
    run_main(build_flow(settings, alerts=None))
    store = open_store(settings)
    try:
        rows = store.query_arrow(
            "SELECT toUnixTimestamp64Nano(window_start) AS w, toUnixTimestamp64Nano(first_ts) AS t "
            "FROM ifd.absorption FINAL").to_pylist()
    finally:
        store.close()
    assert rows and all(r["w"] == r["t"] // (60 * 10**9) * (60 * 10**9) for r in rows)
