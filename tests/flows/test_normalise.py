"""Tests for flows.normalise: DBN records → trades, dead letters, skip counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from connectors.dbn import (
    RTYPE_MBO,
    RTYPE_MBP1,
    RTYPE_MBP10,
    RTYPE_TRADES,
    TRADE_RTYPE_DTYPES,
    DecodedChunk,
)
from flows.normalise import normalise_chunk

UNDEF = 2**63 - 1
PX = 1_000_000_000
F_SNAPSHOT = 32
F_LAST = 128
T0 = 1_718_976_600_000_000_000


def records(rtype: int, rows: list[dict]) -> np.ndarray:
    """Structured array of ``rtype`` with the given fields set (others zero)."""
    arr = np.zeros(len(rows), dtype=TRADE_RTYPE_DTYPES[rtype])
    arr["rtype"] = rtype
    for i, row in enumerate(rows):
        for name, value in row.items():
            arr[name][i] = value
    return arr


def trade(iid: int = 1, price: int = 100 * PX, size: int = 1, *, action: bytes = b"T",
          side: bytes = b"N", flags: int = F_LAST, ts: int = T0, **extra: int) -> dict:
    return {"instrument_id": iid, "price": price, "size": size, "action": action,
            "side": side, "flags": flags, "ts_event": ts, **extra}


def chunk(parts: dict[int, tuple[list[dict], list[int]]], skipped: Counter | None = None,
          ) -> DecodedChunk:
    """DecodedChunk from rtype → (rows, file positions)."""
    n = sum(len(rows) for rows, _ in parts.values())
    return DecodedChunk(
        start_record=0,
        n_records=n,
        end_offset=0,
        trades={rt: records(rt, rows) for rt, (rows, _) in parts.items()},
        positions={rt: np.array(pos, dtype=np.int64) for rt, (_, pos) in parts.items()},
        skipped=Counter(skipped or {}),
    )


# --- what counts as a trade ---------------------------------------------------


@pytest.mark.parametrize("rtype", [RTYPE_TRADES, RTYPE_MBP1, RTYPE_MBP10, RTYPE_MBO])
def test_only_action_t_records_are_trades(rtype: int) -> None:
    rows = [
        trade(price=101 * PX, size=3, action=b"A"),
        trade(price=102 * PX, size=4, action=b"T"),
        trade(price=103 * PX, size=5, action=b"C"),
        trade(price=104 * PX, size=6, action=b"M"),
        trade(price=105 * PX, size=7, action=b"T"),
    ]
    out = normalise_chunk(chunk({rtype: (rows, [10, 11, 12, 13, 14])}), rtype, "src")
    assert out.trades.price.tolist() == [102 * PX, 105 * PX]
    assert out.trades.size.tolist() == [4, 7]
    assert out.trades.position.tolist() == [11, 14]
    assert len(out.dead_letters) == 0


def test_mbo_fill_records_are_not_trades() -> None:
    rows = [
        trade(iid=9, price=50 * PX, size=2, action=b"T", side=b"B", order_id=1),
        trade(iid=9, price=50 * PX, size=2, action=b"F", side=b"A", order_id=2),
        trade(iid=9, price=51 * PX, size=1, action=b"F", side=b"A", order_id=3),
    ]
    out = normalise_chunk(chunk({RTYPE_MBO: (rows, [0, 1, 2])}), RTYPE_MBO, "mbo")
    assert len(out.trades) == 1
    assert out.trades.size.tolist() == [2]
    assert out.trades.flag_side.tolist() == [1]
    assert out.skipped["book_events"] == 2


@pytest.mark.parametrize("rtype", [RTYPE_TRADES, RTYPE_MBP1, RTYPE_MBO])
def test_snapshot_records_are_never_trades_and_are_counted(rtype: int) -> None:
    rows = [
        trade(size=1, flags=F_SNAPSHOT),
        trade(size=2, flags=F_SNAPSHOT | F_LAST),
        trade(size=3, flags=F_LAST),
        trade(size=4, action=b"A", flags=F_SNAPSHOT),
    ]
    out = normalise_chunk(chunk({rtype: (rows, [0, 1, 2, 3])}), rtype, "s")
    assert out.trades.size.tolist() == [3]
    assert out.skipped["snapshot_records"] == 3


def test_book_events_of_selected_rtype_are_counted() -> None:
    rows = [trade(action=b"A"), trade(action=b"C"), trade(action=b"T"), trade(action=b"A",
                                                                              flags=F_SNAPSHOT)]
    out = normalise_chunk(chunk({RTYPE_MBP1: (rows, [0, 1, 2, 3])}), RTYPE_MBP1, "s")
    assert out.skipped["book_events"] == 2
    assert out.skipped["snapshot_records"] == 1
    assert len(out.trades) == 1


def test_reader_skip_counts_are_carried_over() -> None:
    c = chunk({RTYPE_TRADES: ([trade()], [0])}, skipped=Counter({"ohlcv_1s": 5, "status": 2}))
    out = normalise_chunk(c, RTYPE_TRADES, "s")
    assert out.skipped["ohlcv_1s"] == 5
    assert out.skipped["status"] == 2


# --- dead letters -------------------------------------------------------------


def test_undef_price_trade_is_dead_letter_with_its_position() -> None:
    rows = [
        trade(iid=3, price=100 * PX, size=1, ts=T0 + 1),
        trade(iid=4, price=UNDEF, size=2, ts=T0 + 2),
        trade(iid=5, price=101 * PX, size=3, ts=T0 + 3),
    ]
    out = normalise_chunk(chunk({RTYPE_TRADES: (rows, [40, 41, 42])}), RTYPE_TRADES, "file.dbn")
    dl = out.dead_letters
    assert dl.source == "file.dbn"
    assert dl.position.tolist() == [41]
    assert dl.reason.tolist() == ["undef_price"]
    assert dl.rtype.tolist() == [RTYPE_TRADES]
    assert dl.instrument_id.tolist() == [4]
    assert dl.ts_event.tolist() == [T0 + 2]
    assert dl.price.tolist() == [UNDEF]
    assert dl.size.tolist() == [2]
    assert out.trades.position.tolist() == [40, 42]
    assert out.trades.instrument_id.tolist() == [3, 5]


def test_zero_size_trade_is_dead_letter() -> None:
    rows = [trade(size=0, price=99 * PX), trade(size=5)]
    out = normalise_chunk(chunk({RTYPE_MBP1: (rows, [7, 8])}), RTYPE_MBP1, "s")
    assert out.dead_letters.reason.tolist() == ["zero_size"]
    assert out.dead_letters.position.tolist() == [7]
    assert out.dead_letters.price.tolist() == [99 * PX]
    assert out.dead_letters.rtype.tolist() == [RTYPE_MBP1]
    assert out.trades.size.tolist() == [5]


def test_dead_letters_keep_file_order_and_positions_skip_non_trades() -> None:
    rows = [
        trade(action=b"A", price=UNDEF, size=0),  # book event: not a dead letter
        trade(price=UNDEF, size=1),
        trade(size=1),
        trade(size=0),
        trade(price=UNDEF, size=0),  # undef wins over zero size
        trade(price=UNDEF, size=1, flags=F_SNAPSHOT),  # snapshot: not a dead letter
    ]
    out = normalise_chunk(chunk({RTYPE_MBO: (rows, [100, 101, 102, 103, 104, 105])}),
                          RTYPE_MBO, "s")
    assert out.dead_letters.position.tolist() == [101, 103, 104]
    assert out.dead_letters.reason.tolist() == ["undef_price", "zero_size", "undef_price"]
    assert out.dead_letters.rtype.tolist() == [RTYPE_MBO] * 3
    assert out.trades.position.tolist() == [102]


def test_no_bad_trades_gives_empty_dead_letters_with_source() -> None:
    out = normalise_chunk(chunk({RTYPE_TRADES: ([trade()], [0])}), RTYPE_TRADES, "src-a")
    assert len(out.dead_letters) == 0
    assert out.dead_letters.source == "src-a"


# --- schema selection ---------------------------------------------------------


def test_trades_of_non_selected_rtype_are_counted_as_duplicates_not_returned() -> None:
    mbo_rows = [trade(iid=1, size=2), trade(iid=1, size=3, action=b"A"),
                trade(iid=1, size=4, action=b"F"), trade(iid=1, size=5)]
    mbp_rows = [trade(iid=2, size=7), trade(iid=2, size=8, action=b"A")]
    c = chunk({RTYPE_MBO: (mbo_rows, [0, 1, 2, 4]), RTYPE_MBP1: (mbp_rows, [3, 5])})
    out = normalise_chunk(c, RTYPE_MBP1, "s")
    assert out.trades.instrument_id.tolist() == [2]
    assert out.trades.size.tolist() == [7]
    assert out.trades.position.tolist() == [3]
    assert out.skipped["duplicate_schema_trades"] == 2
    assert out.skipped["mbo_other"] == 2
    assert out.skipped["book_events"] == 1


def test_snapshot_trades_of_non_selected_rtype_are_not_duplicates() -> None:
    rows = [trade(), trade(flags=F_SNAPSHOT)]
    c = chunk({RTYPE_TRADES: (rows, [0, 1]), RTYPE_MBP1: ([trade(size=9)], [2])})
    out = normalise_chunk(c, RTYPE_MBP1, "s")
    assert out.skipped["duplicate_schema_trades"] == 1
    assert out.trades.size.tolist() == [9]


def test_no_selected_rtype_returns_no_trades() -> None:
    out = normalise_chunk(chunk({RTYPE_TRADES: ([trade(), trade()], [0, 1])}), None, "s")
    assert len(out.trades) == 0
    assert out.skipped["duplicate_schema_trades"] == 2


def test_empty_chunk_returns_empty_batch() -> None:
    out = normalise_chunk(DecodedChunk(0, 0, 0), RTYPE_TRADES, "s")
    assert len(out.trades) == 0
    assert len(out.dead_letters) == 0
    assert sum(out.skipped.values()) == 0


# --- columns ------------------------------------------------------------------


@pytest.mark.parametrize("rtype", [RTYPE_MBP1, RTYPE_MBP10])
def test_bbo_comes_from_level_zero_for_mbp(rtype: int) -> None:
    extra = {"bid_px_00": 99 * PX, "ask_px_00": 101 * PX}
    if rtype == RTYPE_MBP10:
        extra |= {"bid_px_01": 98 * PX, "ask_px_01": 102 * PX}
    rows = [
        trade(price=100 * PX, **extra),
        trade(price=100 * PX, bid_px_00=UNDEF, ask_px_00=103 * PX),
    ]
    out = normalise_chunk(chunk({rtype: (rows, [0, 1])}), rtype, "s")
    assert out.trades.bid_px.tolist() == [99 * PX, UNDEF]
    assert out.trades.ask_px.tolist() == [101 * PX, 103 * PX]
    assert out.trades.bid_px.dtype == np.int64 and out.trades.ask_px.dtype == np.int64


@pytest.mark.parametrize("rtype", [RTYPE_TRADES, RTYPE_MBO])
def test_bbo_is_undef_without_book_levels(rtype: int) -> None:
    out = normalise_chunk(chunk({rtype: ([trade(), trade()], [0, 1])}), rtype, "s")
    assert out.trades.bid_px.tolist() == [UNDEF, UNDEF]
    assert out.trades.ask_px.tolist() == [UNDEF, UNDEF]


@pytest.mark.parametrize("rtype", [RTYPE_TRADES, RTYPE_MBP1, RTYPE_MBP10, RTYPE_MBO])
def test_flag_side_maps_b_to_plus_one_a_to_minus_one_n_to_zero(rtype: int) -> None:
    rows = [trade(side=b"B"), trade(side=b"A"), trade(side=b"N"), trade(side=b"B")]
    out = normalise_chunk(chunk({rtype: (rows, [0, 1, 2, 3])}), rtype, "s")
    assert out.trades.flag_side.tolist() == [1, -1, 0, 1]
    assert out.trades.flag_side.dtype == np.int8


def test_trade_columns_are_copied_with_pipeline_dtypes() -> None:
    rows = [
        trade(iid=4_000_000_001, price=21_512 * PX + PX // 2, size=4_000_000_000, ts=T0 + 5),
        trade(iid=17, price=-3 * PX, size=1, ts=T0 + 9),  # negative prices (spreads) are valid
    ]
    out = normalise_chunk(chunk({RTYPE_TRADES: (rows, [3, 8])}), RTYPE_TRADES, "s")
    t = out.trades
    assert t.ts_event.dtype == np.int64 and t.ts_event.tolist() == [T0 + 5, T0 + 9]
    assert t.instrument_id.dtype == np.uint32 and t.instrument_id.tolist() == [4_000_000_001, 17]
    assert t.price.dtype == np.int64 and t.price.tolist() == [21_512_500_000_000, -3 * PX]
    assert t.size.dtype == np.int64 and t.size.tolist() == [4_000_000_000, 1]
    assert t.position.tolist() == [3, 8]
