"""Tests for flows.pressure (parts, merge, dominance, window tracker) and flows.instruments."""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from flows.instruments import InstrumentCatalog, contract_for, format_strike, resolve_trades
from flows.pressure import (
    WindowTracker,
    aggregate_parts,
    dominance_confidence,
    dominant_side,
    merge_parts,
    merge_rows,
    split_by_shard_and_window,
)
from models.records import DominantSide, Heartbeat, InstrumentDefinition, PartBlock, WindowPart
from tests.partblocks import block_of

PX = 1_000_000_000
SEC = 1_000_000_000
WINDOW_NS = 300 * SEC
EXPIRY_NS = 1_718_976_600 * SEC  # 2024-06-21T13:30:00Z
T0 = EXPIRY_NS - 3 * WINDOW_NS  # 2024-06-21T13:15:00Z, a multiple of 300 s
PUT_KEY = "ESM4|2024-06-21T13:30:00Z|P|5230|ESM4"

PUT = InstrumentDefinition(
    instrument_id=101,
    raw_symbol="ESM4 P5230",
    instrument_class="P",
    underlying="ESM4",
    expiration_ns=EXPIRY_NS,
    strike_price=5230 * PX,
    ts_recv=T0 - 3600 * SEC,
)
FUTURE = InstrumentDefinition(
    instrument_id=102,
    raw_symbol="ESU4",
    instrument_class="F",
    underlying="",
    expiration_ns=1_726_839_000 * SEC,  # 2024-09-20T13:30:00Z
    strike_price=None,
    ts_recv=T0 - 3600 * SEC,
)


def make_part(**overrides: object) -> WindowPart:
    base = dict(
        key=PUT_KEY,
        window_start_ns=T0,
        window_end_ns=T0 + WINDOW_NS,
        source="a.dbn",
        seq=0,
        instrument_id=101,
        symbol="ESM4 P5230",
        underlying="ESM4",
        expiration_ns=EXPIRY_NS,
        strike_price=5230 * PX,
        option_type="P",
        defined=True,
        bid_volume=0,
        ask_volume=0,
        unknown_volume=0,
        buy_trades=0,
        sell_trades=0,
        unknown_trades=0,
        notional=0.0,
        max_trade_size=0,
        first_ts_ns=T0,
        last_ts_ns=T0,
        flag_volume=0,
        quote_volume=0,
        tick_volume=0,
    )
    base.update(overrides)
    return WindowPart(**base)  # type: ignore[arg-type]


# --- instruments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("strike", "expected"),
    [
        (5230 * PX, "5230"),
        (21_512 * PX + PX // 2, "21512.5"),
        (0, "0"),
        (4 * PX + 250_000_000, "4.25"),
        (PX + 1, "1.000000001"),
    ],
)
def test_format_strike_renders_plain_points(strike: int, expected: str) -> None:
    assert format_strike(strike) == expected


def test_format_strike_negative_fractional_strike() -> None:
    assert format_strike(-2_500_000_000) == "-2.5"


def test_contract_for_put_option_key_and_attributes() -> None:
    c = contract_for(PUT)
    assert c.key == "ESM4|2024-06-21T13:30:00Z|P|5230|ESM4"
    assert c.instrument_id == 101
    assert c.symbol == "ESM4 P5230"
    assert c.underlying == "ESM4"
    assert c.expiration_ns == EXPIRY_NS
    assert c.strike_price == 5230 * PX
    assert c.option_type == "P"
    assert c.defined is True


def test_weekly_and_end_of_month_options_with_equal_terms_stay_distinct_contracts() -> None:
    weekly = dataclasses.replace(PUT, instrument_id=1, raw_symbol="QN5V6 C20500",
                                 instrument_class="C", underlying="NQZ6",
                                 expiration_ns=1_793_390_400 * SEC, strike_price=20_500 * PX)
    eom = dataclasses.replace(weekly, instrument_id=2, raw_symbol="QNEV6 C20500")
    assert contract_for(weekly).key == "NQZ6|2026-10-30T20:00:00Z|C|20500|QN5V6"
    assert contract_for(eom).key == "NQZ6|2026-10-30T20:00:00Z|C|20500|QNEV6"


def test_contract_for_call_with_fractional_strike() -> None:
    call = dataclasses.replace(
        PUT, instrument_id=7, raw_symbol="NQZ6 C21512.5", instrument_class="C", underlying="NQZ6",
        expiration_ns=1_797_605_400 * SEC, strike_price=21_512 * PX + PX // 2,
    )
    # 1_797_605_400 s = 2026-12-18T14:50:00Z
    assert contract_for(call).key == "NQZ6|2026-12-18T14:50:00Z|C|21512.5|NQZ6"


def test_contract_for_future_is_keyed_by_raw_symbol() -> None:
    c = contract_for(FUTURE)
    assert c.key == "F|ESU4"
    assert c.strike_price is None
    assert c.option_type == "F"
    assert c.defined is True


def test_contract_for_option_class_without_strike_is_keyed_as_other() -> None:
    odd = dataclasses.replace(PUT, strike_price=None)
    assert contract_for(odd).key == "F|ESM4 P5230"


def test_catalog_undefined_id_without_symbol_is_keyed_by_id() -> None:
    c = InstrumentCatalog([PUT]).resolve(123)
    assert c.key == "ID|123"
    assert c.symbol == "123"
    assert c.defined is False
    assert c.strike_price is None and c.expiration_ns is None


def test_catalog_undefined_id_falls_back_to_symbology() -> None:
    c = InstrumentCatalog([PUT], symbols={104: "ESH4"}).resolve(104)
    assert c.key == "SYM|ESH4"
    assert c.symbol == "ESH4"
    assert c.defined is False


def test_catalog_definition_wins_over_symbology() -> None:
    catalog = InstrumentCatalog([PUT], symbols={101: "SOMETHING"})
    assert catalog.resolve(101).key == PUT_KEY


def test_catalog_add_symbols_reaches_previously_resolved_id() -> None:
    catalog = InstrumentCatalog()
    assert catalog.resolve(104).key == "ID|104"
    catalog.add_symbols({104: "ESH4"})
    assert catalog.resolve(104).key == "SYM|ESH4"


def test_catalog_later_ts_recv_definition_replaces_earlier() -> None:
    later = dataclasses.replace(PUT, strike_price=5235 * PX, raw_symbol="ESM4 P5235",
                                ts_recv=PUT.ts_recv + 1)
    catalog = InstrumentCatalog([PUT])
    assert catalog.resolve(101).key == PUT_KEY  # cached before the update
    catalog.update([later])
    assert catalog.resolve(101).key == "ESM4|2024-06-21T13:30:00Z|P|5235|ESM4"
    assert catalog.resolve(101).symbol == "ESM4 P5235"
    assert len(catalog) == 1


def test_catalog_earlier_ts_recv_definition_does_not_replace_later() -> None:
    earlier = dataclasses.replace(PUT, strike_price=5235 * PX, ts_recv=PUT.ts_recv - 1)
    catalog = InstrumentCatalog([PUT, earlier])
    assert catalog.resolve(101).key == PUT_KEY


def test_catalog_update_defines_previously_undefined_id() -> None:
    catalog = InstrumentCatalog()
    assert catalog.resolve(102).defined is False
    catalog.update([FUTURE])
    assert catalog.resolve(102).key == "F|ESU4"
    assert catalog.resolve(102).defined is True


def _keys_of(catalog: InstrumentCatalog, ids: list[int], ts: list[int],
             inline: dict | None = None) -> list[str]:
    group, contracts = resolve_trades(np.array(ids, dtype=np.uint32), np.array(ts, dtype=np.int64),
                                      catalog, inline)
    return [contracts[g].key for g in group.tolist()]


def test_resolve_trades_after_repeated_daily_definitions_and_a_reused_id() -> None:
    # a daily file repeats the put each day; on day 3 CME reuses id 101 for another strike
    day = 86_400 * SEC
    repeats = [dataclasses.replace(PUT, ts_recv=PUT.ts_recv + d * day) for d in range(3)]
    reused = dataclasses.replace(PUT, strike_price=5300 * PX, raw_symbol="ESM4 P5300",
                                 ts_recv=PUT.ts_recv + 3 * day)
    catalog = InstrumentCatalog([*repeats, reused])
    other = "ESM4|2024-06-21T13:30:00Z|P|5300|ESM4"
    ts = [PUT.ts_recv - 1, PUT.ts_recv + day + 5, reused.ts_recv - 1, reused.ts_recv, reused.ts_recv + day]
    expected = [PUT_KEY, PUT_KEY, PUT_KEY, other, other]  # before the first: the first definition
    assert _keys_of(catalog, [101] * 5, ts) == expected
    assert _keys_of(catalog, [101] * 5, ts) == expected  # same answer from the cached timeline


def test_resolve_trades_sees_definitions_added_after_a_cached_resolution() -> None:
    catalog = InstrumentCatalog([PUT])
    later = PUT.ts_recv + 100
    assert _keys_of(catalog, [101, 104], [later, later]) == [PUT_KEY, "ID|104"]
    catalog.add_symbols({104: "ESH4"})
    changed = dataclasses.replace(PUT, strike_price=5235 * PX, raw_symbol="ESM4 P5235",
                                  ts_recv=PUT.ts_recv + 50)
    catalog.update([changed])
    assert _keys_of(catalog, [101, 101, 104], [PUT.ts_recv + 10, later, later]) == [
        PUT_KEY, "ESM4|2024-06-21T13:30:00Z|P|5235|ESM4", "SYM|ESH4"]
    # a stream's own in-band definition, then the same list grown by one more
    own = {105: [dataclasses.replace(FUTURE, instrument_id=105, ts_recv=FUTURE.ts_recv)]}
    assert _keys_of(catalog, [105], [later], own) == ["F|ESU4"]
    own[105].append(dataclasses.replace(FUTURE, instrument_id=105, raw_symbol="ESZ4",
                                        ts_recv=later - 1))
    assert _keys_of(catalog, [105, 105], [later - 2, later], own) == ["F|ESU4", "F|ESZ4"]


# --- aggregate_parts ----------------------------------------------------------


def test_aggregate_parts_matches_python_group_by() -> None:
    rng = random.Random(7)
    n = 3000
    iids = [rng.choice([101, 102, 103, 104]) for _ in range(n)]
    ts = [T0 + rng.randrange(3 * WINDOW_NS) for _ in range(n)]
    price = [rng.randint(1, 400) * PX // 4 for _ in range(n)]
    size = [rng.randint(1, 250) for _ in range(n)]
    side = [rng.choice([-1, 0, 1]) for _ in range(n)]
    method = [rng.choice([0, 1, 2, 3]) for _ in range(n)]

    expected: dict[tuple[int, int], dict[str, float]] = defaultdict(
        lambda: defaultdict(int, first=float("inf"), last=-1)
    )
    for i in range(n):
        start = T0 + (ts[i] - T0) // WINDOW_NS * WINDOW_NS
        g = expected[(iids[i], start)]
        g[{1: "ask", -1: "bid", 0: "unknown"}[side[i]]] += size[i]
        g[{1: "buys", -1: "sells", 0: "unknowns"}[side[i]]] += 1
        g["notional"] += price[i] * 1e-9 * size[i]
        g["max"] = max(g["max"], size[i])
        g["first"] = min(g["first"], ts[i])
        g["last"] = max(g["last"], ts[i])
        if method[i]:
            g[{1: "flag", 2: "quote", 3: "tick"}[method[i]]] += size[i]

    catalog = InstrumentCatalog([PUT, FUTURE], symbols={104: "ESH4"})
    parts = aggregate_parts(
        np.array(ts, dtype=np.int64),
        np.array(iids, dtype=np.uint32),
        np.array(price, dtype=np.int64),
        np.array(size, dtype=np.int64),
        np.array(side, dtype=np.int8),
        np.array(method, dtype=np.int8),
        window_ns=WINDOW_NS,
        resolve=catalog.resolve,
        source="batch.dbn",
        seq=12,
    ).to_parts()

    assert len(expected) == 12  # 4 instruments x 3 windows
    got = {(p.instrument_id, p.window_start_ns): p for p in parts}
    assert len(parts) == len(got) == len(expected)
    assert set(got) == set(expected)
    for k, g in expected.items():
        p = got[k]
        assert p.window_start_ns % WINDOW_NS == 0
        assert p.window_end_ns == p.window_start_ns + WINDOW_NS
        assert (p.source, p.seq) == ("batch.dbn", 12)
        assert (p.bid_volume, p.ask_volume, p.unknown_volume) == (g["bid"], g["ask"], g["unknown"])
        assert (p.sell_trades, p.buy_trades, p.unknown_trades) == (
            g["sells"], g["buys"], g["unknowns"])
        assert p.notional == pytest.approx(g["notional"], rel=1e-12)
        assert p.max_trade_size == g["max"]
        assert (p.first_ts_ns, p.last_ts_ns) == (g["first"], g["last"])
        assert (p.flag_volume, p.quote_volume, p.tick_volume) == (
            g["flag"], g["quote"], g["tick"])
        assert p.window_start_ns <= p.first_ts_ns <= p.last_ts_ns < p.window_end_ns

    keys = {iid: {p.key for p in parts if p.instrument_id == iid} for iid in (101, 102, 103, 104)}
    assert keys == {101: {PUT_KEY}, 102: {"F|ESU4"}, 103: {"ID|103"}, 104: {"SYM|ESH4"}}
    put_part = got[(101, T0)]
    assert (put_part.strike_price, put_part.option_type, put_part.underlying) == (
        5230 * PX, "P", "ESM4")
    assert put_part.expiration_ns == EXPIRY_NS and put_part.defined is True
    assert got[(103, T0)].defined is False and got[(103, T0)].symbol == "103"


def test_aggregate_parts_small_batch_by_hand() -> None:
    # two trades of 101 in window 0, one in window 1 (exactly at its start)
    parts = aggregate_parts(
        np.array([T0 + 5 * SEC, T0 + 10 * SEC, T0 + WINDOW_NS], dtype=np.int64),
        np.array([101, 101, 101], dtype=np.uint32),
        np.array([10 * PX, 12 * PX + PX // 2, 11 * PX], dtype=np.int64),
        np.array([3, 5, 2], dtype=np.int64),
        np.array([1, -1, 0], dtype=np.int8),
        np.array([1, 3, 0], dtype=np.int8),
        window_ns=WINDOW_NS,
        resolve=InstrumentCatalog([PUT]).resolve,
        source="s",
        seq=0,
    ).to_parts()
    parts.sort(key=lambda p: p.window_start_ns)
    assert [p.window_start_ns for p in parts] == [T0, T0 + WINDOW_NS]
    first, second = parts
    assert (first.ask_volume, first.bid_volume, first.unknown_volume) == (3, 5, 0)
    assert first.notional == pytest.approx(10 * 3 + 12.5 * 5)  # 92.5
    assert (first.flag_volume, first.quote_volume, first.tick_volume) == (3, 0, 5)
    assert first.max_trade_size == 5
    assert (second.unknown_volume, second.unknown_trades, second.notional) == (2, 1, 22.0)
    assert second.first_ts_ns == second.last_ts_ns == T0 + WINDOW_NS


def test_aggregate_parts_empty_batch_gives_no_parts() -> None:
    e = np.empty(0, dtype=np.int64)
    assert aggregate_parts(e, e.astype(np.uint32), e, e, e.astype(np.int8), e.astype(np.int8),
                           window_ns=WINDOW_NS, resolve=InstrumentCatalog().resolve,
                           source="s", seq=0).to_parts() == []


def test_aggregate_parts_instrument_id_above_int32_range() -> None:
    iid = 2**31 + 5
    parts = aggregate_parts(
        np.array([T0], dtype=np.int64),
        np.array([iid], dtype=np.uint32),
        np.array([PX], dtype=np.int64),
        np.array([1], dtype=np.int64),
        np.array([1], dtype=np.int8),
        np.array([1], dtype=np.int8),
        window_ns=WINDOW_NS,
        resolve=InstrumentCatalog().resolve,
        source="s",
        seq=0,
    ).to_parts()
    assert [(p.key, p.instrument_id, p.window_start_ns) for p in parts] == [
        (f"ID|{iid}", iid, T0)]


# --- merge_parts --------------------------------------------------------------


def test_merge_parts_sums_and_recomputes_metrics() -> None:
    p1 = make_part(seq=0, bid_volume=30, ask_volume=50, unknown_volume=20,
                   buy_trades=4, sell_trades=3, unknown_trades=1, notional=520.0,
                   max_trade_size=25, first_ts_ns=T0 + 2 * SEC, last_ts_ns=T0 + 100 * SEC,
                   flag_volume=60, quote_volume=15, tick_volume=5)
    p2 = make_part(seq=1, bid_volume=10, ask_volume=40, unknown_volume=0,
                   buy_trades=2, sell_trades=1, unknown_trades=0, notional=280.0,
                   max_trade_size=30, first_ts_ns=T0 + 7 * SEC, last_ts_ns=T0 + 200 * SEC,
                   flag_volume=10, quote_volume=20, tick_volume=20)
    m = merge_parts([p1, p2])
    assert (m.bid_volume, m.ask_volume, m.unknown_volume, m.total_volume) == (40, 90, 20, 150)
    assert (m.buy_trades, m.sell_trades, m.total_trades) == (6, 4, 11)
    assert m.pressure_ratio == pytest.approx(2.25)  # 90 / 40
    assert m.avg_trade_size == pytest.approx(150 / 11)
    assert m.vwap == pytest.approx(800 / 150)
    assert m.max_trade_size == 30
    # imbalance = (90 - 40) / 130 = 0.385 ≥ 0.2 → BUY
    assert m.dominant_side == DominantSide.BUY
    # dominance_confidence = 11 / (11 + 10) * |90 - 40| / 150 = 11/21 * 1/3 = 11/63
    assert m.dominance_confidence == pytest.approx(11 / 63)
    assert (m.flag_volume, m.quote_volume, m.tick_volume) == (70, 35, 25)
    assert m.parts == 2
    assert m.window_start == datetime(2024, 6, 21, 13, 15, tzinfo=UTC)
    assert m.window_end == datetime(2024, 6, 21, 13, 20, tzinfo=UTC)
    assert m.first_trade_ts == datetime(2024, 6, 21, 13, 15, 2, tzinfo=UTC)
    assert m.last_trade_ts == datetime(2024, 6, 21, 13, 18, 20, tzinfo=UTC)
    assert m.contract_key == PUT_KEY
    assert m.strike == 5230.0
    assert m.expiration == datetime(2024, 6, 21, 13, 30, tzinfo=UTC)
    assert m.option_type == "P"


def test_merge_rows_equals_per_contract_sums_of_interleaved_rows() -> None:
    rng = random.Random(7)
    keys = [f"{PUT_KEY}-{i}" for i in range(6)]
    parts = []
    for seq in range(60):  # rows of six contracts interleaved, as a window's concatenated batches
        key = rng.choice(keys)
        parts.append(make_part(
            key=key, seq=seq, instrument_id=100 + keys.index(key), symbol=f"S{keys.index(key)}",
            bid_volume=rng.randrange(50), ask_volume=rng.randrange(50),
            unknown_volume=rng.randrange(5), buy_trades=rng.randrange(9),
            sell_trades=rng.randrange(9), unknown_trades=rng.randrange(2),
            notional=rng.random() * 1e4, max_trade_size=rng.randrange(1, 40),
            first_ts_ns=T0 + rng.randrange(300) * SEC, last_ts_ns=T0 + rng.randrange(300) * SEC,
            sweep_volume=rng.randrange(3), block_trades=rng.randrange(2), multiplier=20.0))
    block = block_of(parts, WINDOW_NS)
    group = np.array([keys.index(p.key) for p in parts], dtype=np.int64)
    which = [4, 0, 2]
    got = merge_rows(block, group, which)
    for g, m in zip(which, got, strict=True):
        mine = [p for p in parts if p.key == keys[g]]
        assert m.contract_key == keys[g] and m.instrument_id == 100 + g and m.parts == len(mine)
        assert m.bid_volume == sum(p.bid_volume for p in mine)
        assert m.ask_volume == sum(p.ask_volume for p in mine)
        assert m.total_trades == sum(p.buy_trades + p.sell_trades + p.unknown_trades for p in mine)
        assert m.max_trade_size == max(p.max_trade_size for p in mine)
        assert m.first_trade_ts == datetime.fromtimestamp(min(p.first_ts_ns for p in mine) / 1e9, UTC)
        assert m.premium_usd == pytest.approx(20.0 * sum(p.notional for p in mine), rel=1e-12)
        assert m == merge_parts(mine)  # row order kept: the float sums agree bit for bit


def test_merge_rows_group_without_rows_raises() -> None:
    block = block_of([make_part()], WINDOW_NS)
    with pytest.raises(ValueError, match="group 3 has no rows"):
        merge_rows(block, np.array([0], dtype=np.int64), [3])


def test_merge_parts_pressure_ratio_is_none_without_bid_volume() -> None:
    m = merge_parts([make_part(ask_volume=10, buy_trades=2, notional=50.0)])
    assert m.pressure_ratio is None
    assert m.dominant_side == DominantSide.BUY
    # 2 / 12 * 10 / 10
    assert m.dominance_confidence == pytest.approx(1 / 6)
    assert m.vwap == pytest.approx(5.0)


def test_merge_parts_unknown_only_window_is_neutral_with_zero_dominance_confidence() -> None:
    m = merge_parts([make_part(unknown_volume=8, unknown_trades=4, notional=40.0)])
    assert m.dominant_side == DominantSide.NEUTRAL
    assert m.dominance_confidence == 0.0
    assert m.pressure_ratio is None
    assert m.avg_trade_size == pytest.approx(2.0)


def test_merge_parts_future_has_no_strike() -> None:
    m = merge_parts([make_part(key="F|ESU4", strike_price=None, expiration_ns=None,
                               option_type="F", bid_volume=1, sell_trades=1, notional=5.0)])
    assert m.strike is None and m.expiration is None
    assert m.dominant_side == DominantSide.SELL


def test_merge_parts_empty_input_raises() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        merge_parts([])


def test_merge_parts_mixed_windows_raise() -> None:
    with pytest.raises(ValueError, match="different windows"):
        merge_parts([make_part(), make_part(window_start_ns=T0 + WINDOW_NS,
                                            window_end_ns=T0 + 2 * WINDOW_NS)])


def test_merge_parts_mixed_contracts_raise() -> None:
    with pytest.raises(ValueError, match="different windows"):
        merge_parts([make_part(), make_part(key="F|ESU4")])


# --- dominant_side / dominance_confidence -----------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "expected"),
    [
        (40, 60, DominantSide.BUY),  # imbalance exactly +0.2
        (2, 3, DominantSide.BUY),  # exactly +0.2
        (60, 40, DominantSide.SELL),  # exactly -0.2
        (3, 2, DominantSide.SELL),  # exactly -0.2
        (41, 59, DominantSide.NEUTRAL),  # +0.18
        (59, 41, DominantSide.NEUTRAL),  # -0.18
        (50, 50, DominantSide.NEUTRAL),
        (0, 0, DominantSide.NEUTRAL),  # nothing classified
        (0, 1, DominantSide.BUY),
        (1, 0, DominantSide.SELL),
    ],
)
def test_dominant_side_thresholds(bid: int, ask: int, expected: DominantSide) -> None:
    assert dominant_side(bid, ask) == expected


@pytest.mark.parametrize(
    ("bid", "ask", "volume", "trades", "expected"),
    [
        (0, 100, 100, 10, 0.5),  # 10 / 20 * 1
        (20, 80, 100, 30, 0.45),  # 30 / 40 * 0.6
        (20, 80, 200, 30, 0.225),  # unknown volume dilutes dominance
        (50, 50, 100, 90, 0.0),
        (0, 0, 0, 0, 0.0),
        (10, 0, 10, 0, 0.0),
    ],
)
def test_confidence_formula(bid: int, ask: int, volume: int, trades: int,
                            expected: float) -> None:
    assert dominance_confidence(bid, ask, volume, trades) == pytest.approx(expected)


# --- WindowTracker ------------------------------------------------------------


def test_window_tracker_heartbeat_only_after_end_plus_lateness_then_forgets() -> None:
    lateness = 10 * SEC
    end = T0 + WINDOW_NS
    tracker = WindowTracker(lateness)
    tracker.observe([make_part(key="A"), make_part(key="A", seq=1)])
    assert tracker.heartbeats(end) == []
    assert tracker.heartbeats(end + lateness - 1) == []
    assert tracker.heartbeats(end + lateness) == [Heartbeat("A", end + lateness)]
    assert tracker.heartbeats(end + lateness + 1) == []
    assert tracker.heartbeats(end + 10 * WINDOW_NS) == []


def test_window_tracker_waits_for_latest_window_of_a_key() -> None:
    lateness = 10 * SEC
    tracker = WindowTracker(lateness)
    tracker.observe([make_part(key="A", window_start_ns=T0 + WINDOW_NS,
                               window_end_ns=T0 + 2 * WINDOW_NS)])
    tracker.observe([make_part(key="A")])  # an older window does not shorten the wait
    assert tracker.heartbeats(T0 + WINDOW_NS + lateness) == []
    wm = T0 + 2 * WINDOW_NS + lateness
    assert tracker.heartbeats(wm) == [Heartbeat("A", wm)]


def test_window_tracker_emits_only_due_keys() -> None:
    lateness = 0
    tracker = WindowTracker(lateness)
    tracker.observe([
        make_part(key="A"),
        make_part(key="B", window_start_ns=T0 + WINDOW_NS, window_end_ns=T0 + 2 * WINDOW_NS),
    ])
    wm = T0 + WINDOW_NS + 1
    assert tracker.heartbeats(wm) == [Heartbeat("A", wm)]
    wm2 = T0 + 2 * WINDOW_NS
    assert tracker.heartbeats(wm2) == [Heartbeat("B", wm2)]
    assert tracker.heartbeats(wm2 + WINDOW_NS) == []


def test_window_tracker_key_observed_again_after_heartbeat_is_tracked_again() -> None:
    tracker = WindowTracker(0)
    tracker.observe([make_part(key="A")])
    assert len(tracker.heartbeats(T0 + WINDOW_NS)) == 1
    tracker.observe([make_part(key="A", window_start_ns=T0 + WINDOW_NS,
                               window_end_ns=T0 + 2 * WINDOW_NS)])
    assert tracker.heartbeats(T0 + WINDOW_NS) == []
    assert tracker.heartbeats(T0 + 2 * WINDOW_NS) == [Heartbeat("A", T0 + 2 * WINDOW_NS)]


# --- shard/window split and block metrics ----------------------------------------


def _random_block(seed: int, n: int = 2000):
    rng = np.random.default_rng(seed)
    defs = [
        InstrumentDefinition(200 + k, f"NQZ6 C{21000 + 10 * k}", "C", ("NQZ6", "NQH7", "ESZ6")[k % 3],
                             EXPIRY_NS, (21000 + 10 * k) * PX, 1)
        for k in range(25)
    ]
    iid = rng.integers(200, 225, n).astype(np.uint32)
    ts = np.sort(rng.integers(T0, T0 + 4 * WINDOW_NS, n)).astype(np.int64)
    return aggregate_parts(
        ts, iid, rng.integers(1, 50, n).astype(np.int64) * PX // 20,
        rng.integers(1, 20, n).astype(np.int64), rng.integers(-1, 2, n).astype(np.int8),
        rng.integers(0, 4, n).astype(np.int8), window_ns=WINDOW_NS,
        resolve=InstrumentCatalog(defs).resolve, source="f", seq=3,
    )


def test_split_by_shard_and_window_partitions_rows_without_loss() -> None:
    block = _random_block(1)
    pieces = split_by_shard_and_window(block, shards=5)
    assert sum(len(p) for p in pieces) == len(block)
    seen = set()
    for piece in pieces:
        rows = piece.to_parts()
        assert {r.window_start_ns for r in rows} == {piece.window_start_ns}
        assert piece.key.startswith("s") and 0 <= int(piece.key[1:]) < 5
        for r in rows:
            # a contract lands on the shard of its underlying: crc32 of the key's first field
            underlying = r.key.split("|")[0]
            assert piece.key == f"s{zlib.crc32(underlying.encode()) % 5:03d}"
            seen.add((r.key, r.window_start_ns))
    assert seen == {(r.key, r.window_start_ns) for r in block.to_parts()}
    assert len({(p.key, p.window_start_ns) for p in pieces}) == len(pieces)


def test_concatenated_window_pieces_merge_to_each_contracts_row_sums() -> None:
    a, b = _random_block(2), _random_block(3)
    window = [p for p in split_by_shard_and_window(a, 1) if p.window_start_ns == T0]
    window += [p for p in split_by_shard_and_window(b, 1) if p.window_start_ns == T0]
    block = PartBlock.concat(window)
    rows = block.to_parts()
    metrics = {key: merge_parts([r for r in rows if r.key == key]) for key in {r.key for r in rows}}
    assert set(metrics) == {r.key for r in rows}
    for key, m in metrics.items():
        mine = [r for r in rows if r.key == key]
        assert m.bid_volume == sum(r.bid_volume for r in mine)
        assert m.ask_volume == sum(r.ask_volume for r in mine)
        assert m.total_trades == sum(r.total_trades for r in mine)
        assert m.parts == len(mine)


def test_part_block_round_trips_through_rows() -> None:
    block = _random_block(4, 300)
    again = block_of(block.to_parts(), WINDOW_NS)
    assert again.to_parts() == block.to_parts()
