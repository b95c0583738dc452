"""Odd replay inputs through the real dataflow: each gets a counted dead letter or an exact result.

Expected values are tallied from the records the test writes (numpy over the
raw arrays), never from project code.
"""

from __future__ import annotations

import datetime as dt

import databento_dbn as dbn
import numpy as np
import pytest

from connectors.dbn import RTYPE_MBP1, RTYPE_TRADES
from tests.dbnfiles import NS, PX, T0, records, write_dbn
from tests.flowrun import contract_rows, per_window, run_flow, stats, windows

DAY = 86_400 * NS
STRIKE = 20_000 * NS


def option_def(iid: int, symbol: str, expiration: int, ts_recv: int, *, put: bool = False) -> bytes:
    """One real DBN v3 option definition record."""
    exp = dt.datetime.fromtimestamp(expiration // NS, dt.UTC)
    msg = dbn.InstrumentDefMsg(
        publisher_id=1, ts_event=ts_recv, ts_recv=ts_recv, instrument_id=iid, raw_symbol=symbol,
        raw_instrument_id=iid, group="NQ", asset=symbol.split(" ")[0], currency="USD",
        exchange="XCME", security_type="OOF", cfi="OPAFPS" if put else "OCAFPS",
        underlying="NQZ6", instrument_class=dbn.InstrumentClass.PUT if put else dbn.InstrumentClass.CALL,
        strike_price_currency="USD", strike_price=STRIKE, expiration=expiration,
        security_update_action=dbn.SecurityUpdateAction.ADD, display_factor=NS,
        unit_of_measure="IPNT", unit_of_measure_qty=20 * NS, min_price_increment=NS // 4,
        min_price_increment_amount=5 * NS, match_algorithm=dbn.MatchAlgorithm.FIFO,
        maturity_year=exp.year, maturity_month=exp.month, maturity_day=exp.day,
    )
    return bytes(msg)


def definition_file(path, defs: list[bytes], start: int):
    return write_dbn(path, defs, schema=dbn.Schema.DEFINITION, start=start, end=start + DAY)


def volume_by_key(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in contract_rows(items):
        out[p.key] = out.get(p.key, 0) + p.total_volume
    return out


# -- definitions are time-aware: CME reuses instrument ids ------------------------------------

@pytest.mark.parametrize("batch_records", [1, 7, 100_000])
def test_reused_instrument_id_resolves_to_the_definition_in_force_at_each_trade(tmp_path, batch_records):
    iid = 4242
    exp1, exp2 = T0 + 3 * DAY, T0 + 40 * DAY
    d1 = definition_file(tmp_path / "d1.definition.dbn.zst",
                         [option_def(iid, "QNZ6 C20000", exp1, T0)], T0)
    d2 = definition_file(tmp_path / "d2.definition.dbn.zst",
                         [option_def(iid, "QNF7 C20000", exp2, T0 + DAY)], T0 + DAY)
    ts1 = T0 + np.arange(1, 11) * 20 * NS          # day 1: the first contract
    ts2 = T0 + DAY + np.arange(1, 6) * 20 * NS     # day 2: the id now means another contract
    size1, size2 = np.arange(1, 11), np.arange(1, 6) * 10
    day1 = write_dbn(tmp_path / "day1.trades.dbn.zst",
                     [records(RTYPE_TRADES, ts1, [iid] * 10, [PX] * 10, size1, "B")],
                     start=T0, end=T0 + DAY)
    day2 = write_dbn(tmp_path / "day2.trades.dbn.zst",
                     [records(RTYPE_TRADES, ts2, [iid] * 5, [PX] * 5, size2, "B")],
                     start=T0 + DAY, end=T0 + 2 * DAY)
    # the later day's definition file listed first: order must not matter
    items = run_flow(tmp_path, [d2, d1, day1, day2], batch_records=batch_records)
    got = volume_by_key(items)
    assert len(got) == 2
    assert {k.split("|")[-1]: v for k, v in got.items()} == {"QNZ6": int(size1.sum()),
                                                            "QNF7": int(size2.sum())}


def test_id_redefined_mid_stream_splits_its_trades_at_the_definition(tmp_path):
    iid = 77
    t_def = T0 + 100 * NS + 500   # inside the first window, between two trades
    ts = T0 + np.arange(1, 21) * 10 * NS
    size = np.arange(1, 21)
    trades = records(RTYPE_TRADES, ts, [iid] * 20, [PX] * 20, size, "A")
    before, after = trades[trades["ts_recv"] < t_def], trades[trades["ts_recv"] >= t_def]
    blocks = [option_def(iid, "QNZ6 C20000", T0 + 3 * DAY, T0), before,
              option_def(iid, "QNH7 C20000", T0 + 90 * DAY, t_def), after]
    path = write_dbn(tmp_path / "live.dbn.zst", blocks, schema=None)
    for batch_records in (1, 5, 1000):
        got = volume_by_key(run_flow(tmp_path, [path], batch_records=batch_records))
        assert {k.split("|")[-1]: v for k, v in got.items()} == {
            "QNZ6": int(before["size"].sum()), "QNH7": int(after["size"].sum())}, batch_records


# -- timestamps -------------------------------------------------------------------------------

def test_undefined_ts_event_is_a_dead_letter(tmp_path):
    ts = list(T0 + np.arange(1, 11) * NS)
    recs = records(RTYPE_TRADES, ts, [5] * 10, [PX] * 10, [1] * 10, "B")
    recs["ts_event"][4] = 2**64 - 1  # UNDEF_TIMESTAMP
    path = write_dbn(tmp_path / "u.trades.dbn.zst", [recs])
    items = run_flow(tmp_path, [path])
    assert sum(p.total_volume for p in contract_rows(items)) == 9
    assert sum(s.dead_letters.get("undef_timestamp", 0) for s in stats(items)) == 1
    starts = {w.window_start_ns for w in windows(items)}
    assert starts == {T0}


def test_one_record_far_in_the_future_does_not_make_later_windows_late(tmp_path):
    n = 200
    ts = T0 + np.arange(1, n + 1) * 15 * NS  # 50 minutes, 10 windows
    recs = records(RTYPE_TRADES, ts, [5] * n, [PX] * n, [2] * n, "B")
    recs["ts_event"][20] += 400 * DAY
    recs["ts_recv"][20] += 400 * DAY
    path = write_dbn(tmp_path / "o.trades.dbn.zst", [recs], start=T0, end=T0 + DAY)
    items = run_flow(tmp_path, [path], batch_records=10)
    assert sum(s.dead_letters.get("ts_out_of_range", 0) for s in stats(items)) == 1
    assert not contract_rows(items, corrections=True), "no window may be late"
    final = per_window(items)
    expected_ts = np.delete(ts, 20)
    assert sum(v["trades"] for v in final.values()) == n - 1
    assert {w for _k, w in final} == set((expected_ts // (300 * NS) * 300).tolist())


def test_ts_event_far_from_ts_recv_is_a_dead_letter_even_without_a_header_range(tmp_path):
    ts = T0 + np.arange(1, 11) * NS
    recs = records(RTYPE_TRADES, ts, [5] * 10, [PX] * 10, [1] * 10, "B")
    recs["ts_event"][3] += 400 * DAY
    path = write_dbn(tmp_path / "s.trades.dbn.zst", [recs], start=0, end=0)
    items = run_flow(tmp_path, [path])
    assert sum(s.dead_letters.get("ts_out_of_range", 0) for s in stats(items)) == 1
    assert sum(p.total_volume for p in contract_rows(items)) == 9


# -- two partitions read at once --------------------------------------------------------------

def test_a_partition_ahead_in_time_does_not_close_another_partitions_windows(tmp_path):
    n = 300
    ts1 = T0 + np.arange(1, n + 1) * 10 * NS               # day 1, tbbo
    ts2 = T0 + DAY + np.arange(1, n + 1) * 10 * NS         # day 2, trades
    day1 = write_dbn(tmp_path / "d1.tbbo.dbn.zst",
                     [records(RTYPE_MBP1, ts1, [5] * n, [PX] * n, [3] * n, "B", bid=PX - NS, ask=PX)],
                     schema=dbn.Schema.TBBO, start=T0, end=T0 + DAY)
    day2 = write_dbn(tmp_path / "d2.trades.dbn.zst",
                     [records(RTYPE_TRADES, ts2, [5] * n, [PX] * n, [2] * n, "A")],
                     start=T0 + DAY, end=T0 + 2 * DAY)
    items = run_flow(tmp_path, [day1, day2], batch_records=16)
    assert not contract_rows(items, corrections=True), "no part of either day may be late"
    final = per_window(items)
    assert sum(v["ask"] for v in final.values()) == 3 * n
    assert sum(v["bid"] for v in final.values()) == 2 * n
    expected = set(np.r_[ts1, ts2] // (300 * NS) * 300)
    assert {w for _k, w in final} == {int(x) for x in expected}


# -- identity: a re-run after adding the definition file does not double ----------------------

def test_rerun_with_definitions_replaces_the_undefined_rows(tmp_path):
    iid = 31
    ts = T0 + np.arange(1, 31) * 20 * NS
    size = np.arange(1, 31)
    data = write_dbn(tmp_path / "t.trades.dbn.zst",
                     [records(RTYPE_TRADES, ts, [iid] * 30, [PX] * 30, size, "B")])
    defs = definition_file(tmp_path / "t.definition.dbn.zst",
                           [option_def(iid, "QNZ6 C20000", T0 + 3 * DAY, T0)], T0)
    from bytewax.testing import run_main

    from flows.ifd import build_flow
    from models.settings import Settings

    for sources in ([data], [defs, data]):
        settings = Settings(source=",".join(map(str, sources)), data_dir=tmp_path,
                            progress_interval_s=0, scoring={"enabled": False})
        run_main(build_flow(settings, alerts=None))
    from sinks.clickhouse import ChdbStore

    store = ChdbStore(tmp_path / "chdb")
    try:
        rows = store.query_arrow("SELECT contract_key, sum(ask_volume) AS ask "
                                 "FROM ifd.pressure_metrics GROUP BY contract_key").to_pylist()
    finally:
        store.close()
    assert [r["ask"] for r in rows] == [int(size.sum())]
    assert rows[0]["contract_key"].endswith("|QNZ6")


# -- a truncated file: the records before the cut, a partial marker, a non-zero exit -----------

def test_truncated_file_keeps_the_prefix_and_marks_the_run_partial(tmp_path, real_dir, capsys):
    import zstandard

    from models.errors import DBNDecodeError, clear_fatal_errors, fatal_errors

    src = real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"
    data = src.read_bytes()
    cut = int(len(data) * 0.6)
    path = tmp_path / "cut.mbp-1.dbn.zst"
    path.write_bytes(data[:cut])
    # independent: what zstd can decode from the prefix, in whole 80-byte mbp-1 records
    obj = zstandard.ZstdDecompressor().decompressobj()
    prefix, rest = b"", data[:cut]
    while rest:
        prefix += obj.decompress(rest)
        rest = obj.unused_data
        if rest:
            obj = zstandard.ZstdDecompressor().decompressobj()
    meta_len = int.from_bytes(prefix[4:8], "little") + 8
    k = (len(prefix) - meta_len) // 80
    recs = np.frombuffer(prefix[meta_len:meta_len + 80 * k], dtype=np.dtype(dbn.MBP1Msg._dtypes))
    expected = int(recs["size"][(recs["action"] == b"T") & ((recs["flags"] & 32) == 0)].sum())
    assert 0 < expected
    clear_fatal_errors()
    try:
        items = run_flow(tmp_path, [path], batch_records=256)
        errors = fatal_errors()
    finally:
        clear_fatal_errors()
    assert sum(p.total_volume for p in contract_rows(items)) == expected
    marked = [s for s in stats(items) if s.error]
    assert len(marked) == 1 and str(path) in marked[0].error and "truncated" in marked[0].error
    assert len(errors) == 1 and isinstance(errors[0], DBNDecodeError) and errors[0].exit_code == 6


# -- the records' own schema decides ----------------------------------------------------------

def test_header_saying_trades_over_mbp1_records_counts_every_trade(tmp_path, real_dir):
    import databento as db
    import zstandard

    src = real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"
    store = db.DBNStore.from_file(src)
    df = store.to_df(pretty_ts=False, map_symbols=False)
    expected = df[(df["action"] == "T") & ((df["flags"] & 32) == 0)]
    raw = zstandard.ZstdDecompressor().stream_reader(src.open("rb"), read_across_frames=True).read()
    body = raw[int.from_bytes(raw[4:8], "little") + 8:]
    path = write_dbn(tmp_path / "mislabelled.trades.dbn.zst", [body], schema=dbn.Schema.TRADES,
                     start=store.start.value, end=store.end.value)
    items = run_flow(tmp_path, [path])
    assert sum(p.total_volume for p in contract_rows(items)) == int(expected["size"].sum()) > 0
    assert sum(s.skipped.get("duplicate_schema_trades", 0) for s in stats(items)) == 0


def test_mixed_capture_with_mbo_adds_and_two_trades_counts_the_two_trades(tmp_path):
    from connectors.dbn import RTYPE_MBO

    adds = records(RTYPE_MBO, T0 + np.arange(1, 6) * NS, [9] * 5, [PX] * 5, [4] * 5, "B", action="A")
    trades = records(RTYPE_TRADES, [T0 + 2 * NS + 5, T0 + 4 * NS + 5], [9, 9], [PX, PX], [3, 8], "A")
    path = write_dbn(tmp_path / "capture.dbn.zst", [adds[:2], trades[:1], adds[2:], trades[1:]],
                     schema=None)
    items = run_flow(tmp_path, [path])
    assert sum(p.bid_volume for p in contract_rows(items)) == 11
    assert sum(s.trades for s in stats(items)) == 2
    assert sum(s.skipped.get("book_events", 0) + s.skipped.get("mbo_other", 0)
               for s in stats(items)) == 5


def test_mixed_file_repeating_trades_in_two_schemas_counts_each_trade_once(tmp_path):
    from connectors.dbn import RTYPE_MBO

    ts = T0 + np.arange(1, 21) * NS
    mbo_t = records(RTYPE_MBO, ts, [9] * 20, [PX] * 20, [2] * 20, "B")
    tr = records(RTYPE_TRADES, ts, [9] * 20, [PX] * 20, [2] * 20, "B")
    only_trades = records(RTYPE_TRADES, ts, [10] * 20, [PX] * 20, [5] * 20, "B")  # no MBO for 10
    path = write_dbn(tmp_path / "both.dbn.zst", [mbo_t, tr, only_trades], schema=None)
    items = run_flow(tmp_path, [path])
    by_iid = {}
    for p in contract_rows(items):
        by_iid[p.instrument_id] = by_iid.get(p.instrument_id, 0) + p.ask_volume
    assert by_iid == {9: 40, 10: 100}
    assert sum(s.skipped.get("duplicate_schema_trades", 0) for s in stats(items)) == 20
