"""IFD scoring: baselines, factors, MM filter, spreads, parity — hand-computed expectations."""

from __future__ import annotations

import math
import pickle
import statistics
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest

from benchmarks.naive_rule import naive_pressure_signal
from flows.baselines import Baseline, BaselineBook
from flows.scoring import (
    CLASS_RANK,
    DTE_LABELS,
    Scorer,
    ScoringSettings,
    WindowNumbers,
    bucket_key,
    dte_class,
    forward_estimates,
    signal_class,
)
from flows.spreads import spread_legs
from models.records import PartBlock, PressureMetrics, WindowPart
from models.signals import Direction, Sentiment, SignalClass
from tests.partblocks import block_of
from tests.sessions import session_midnights

DAY = 86_400
SESSIONS = session_midnights("2025-11-10", 32)  # UTC midnights of CME trading days (13:30 UTC = 07:30 CST)
T1330 = 13 * 3600 + 1800
KEY = "NQZ6|2026-12-18T13:30:00Z|C|21500|NQZ6"


def factors(m: PressureMetrics, *args, **kw):
    from flows.scoring import factors as compute

    return compute(WindowNumbers.of(m), *args, **kw)


def metrics(bid: int, ask: int, trades: int, unknown: int = 0, spread: int = 0) -> PressureMetrics:
    volume = bid + ask + unknown
    ts = datetime.fromtimestamp(SESSIONS[30] + T1330, UTC)
    return PressureMetrics(
        window_start=ts, window_end=ts, contract_key=KEY, instrument_id=1, symbol="NQZ6 C21500",
        underlying="NQZ6", expiration=None, strike=21500.0, option_type="C", bid_volume=bid,
        ask_volume=ask, unknown_volume=unknown, total_volume=volume, pressure_ratio=None,
        buy_trades=trades, sell_trades=0, total_trades=trades, avg_trade_size=volume / trades,
        max_trade_size=1, vwap=10.0, dominant_side="NEUTRAL", dominance_confidence=0.0,
        first_trade_ts=ts, last_trade_ts=ts, flag_volume=volume, quote_volume=0, tick_volume=0,
        parts=1, spread_volume=spread,
    )


# --- baselines --------------------------------------------------------------------


def test_baseline_uses_daily_bucket_totals_with_zero_days_and_excludes_the_scored_day():
    book = BaselineBook(lookback_days=20, min_days=5, tod_bucket_s=1800, window_s=300)
    # 6 trading days; K trades in the 13:30 bucket on days 0,1,2,4 (days 3 and 5 trade elsewhere)
    daily = {0: 60, 1: 120, 2: 30, 4: 600}
    for d in range(6):
        book.add("OTHER", SESSIONS[d] + 3600, 1, 1, 0)
        if d in daily:
            book.add(KEY, SESSIONS[d] + T1330 + 300, daily[d], daily[d] // 10, daily[d] // 2)
    book.add(KEY, SESSIONS[6] + T1330, 9999, 1, 0)  # the scored day itself: must not count
    b = book.baseline(KEY, "contract", SESSIONS[6] + T1330 + 600)
    # per-window values = daily / 6 windows: [10, 20, 5, 0, 100, 0] → sorted [0,0,5,10,20,100]
    assert b.days == 6
    assert b.volume_median == pytest.approx(7.5)
    # window level: 6 days x 6 windows = 36 windows, one traded window per day with the daily
    # volume: mean 810/36 = 22.5, E[v^2] = (60^2 + 120^2 + 30^2 + 600^2)/36 = 10525;
    # sigma = sqrt(10525 - 22.5^2) (above the compound-Poisson floor sqrt(2*22.5*10 + 1))
    assert b.volume_scale == pytest.approx(math.sqrt(10525 - 22.5**2))
    assert b.avg_trade_size == pytest.approx(810 / 81)
    assert b.abs_imbalance == pytest.approx(0.5)


def test_baseline_needs_min_days_and_forgets_days_past_the_lookback():
    book = BaselineBook(lookback_days=3, min_days=2, tod_bucket_s=1800, window_s=300)
    for d, v in enumerate([600, 6, 6, 6]):
        book.add(KEY, SESSIONS[d] + T1330, v, 1, 0)
    assert book.baseline(KEY, "contract", SESSIONS[1] + T1330) is None  # one prior day only
    b = book.baseline(KEY, "contract", SESSIONS[4] + T1330)
    assert b.days == 3 and b.volume_median == pytest.approx(1.0)  # day 0 (600) is outside


# --- factors, classes, MM filter ----------------------------------------------------


def _baseline(median=10.0, scale=5.0, avg=4.0):
    return Baseline("contract", 20, median, scale, avg, 3.0, 0.2)


def test_one_sided_block_far_above_baseline_is_strong_buy():
    p = ScoringSettings()
    m = metrics(bid=0, ask=80, trades=1)  # z = (80-10)/5 = 14, size 80 vs 4 = 20x
    f = factors(m, _baseline(), p)
    assert f.volume_z == pytest.approx(14.0)
    assert (f.volume, f.dominance, f.size, f.sample) == (1.0, 1.0, 1.0, pytest.approx(0.8))
    assert f.mm == 0.0
    assert f.confidence == pytest.approx(0.8)  # (0.45+0.35+0.2)/1.0 * 80/100
    assert signal_class(f.confidence, p) is SignalClass.STRONG


def test_small_one_sided_window_is_at_most_monitor_however_abnormal():
    p = ScoringSettings()
    f = factors(metrics(bid=0, ask=40, trades=1), _baseline(), p)  # 40 contracts: sample 0.4
    assert f.confidence == pytest.approx(0.4)
    assert signal_class(f.confidence, p) is SignalClass.MONITOR


def test_sweep_member_is_judged_on_the_cluster_volume_and_gets_the_size_factor():
    p = ScoringSettings()
    m = metrics(bid=0, ask=30, trades=6)  # avg size 5 ≈ baseline 4: no block
    alone = factors(m, _baseline(), p)
    swept = factors(m, _baseline(), p, sweep_strikes=4, sweep_volume=150)
    assert alone.size == pytest.approx(math.log2(5 / 4) / 3)
    assert alone.sample == pytest.approx(0.3)
    assert (swept.size, swept.sample, swept.sweep_strikes) == (1.0, 1.0, 4)
    # z = (30-10)/5 = 4 → volume (4-2)/4 = 0.5; base = 0.45*0.5 + 0.35 + 0.2 = 0.775
    assert swept.confidence == pytest.approx(0.775)
    assert factors(m, _baseline(), p, sweep_strikes=2, sweep_volume=150).sweep_strikes == 0


def test_balanced_small_lot_churn_is_suppressed_by_the_mm_filter():
    p = ScoringSettings()
    m = metrics(bid=100, ask=100, trades=80)  # z = 38, avg size 2.5 < 4
    f = factors(m, _baseline(), p)
    # balance 1, small 1 (ratio 0.625 < 1), many 80/100 = 0.8 → mm 0.8
    assert f.mm == pytest.approx(0.8)
    assert f.confidence == pytest.approx(0.45 * 1.0 * 0.2)
    assert signal_class(f.confidence, p) is None


def test_spread_legs_count_as_mm_flow():
    f = factors(metrics(bid=0, ask=100, trades=2, spread=100), _baseline(), ScoringSettings())
    assert f.mm == 1.0 and f.confidence == 0.0


def test_no_baseline_caps_confidence_below_moderate():
    p = ScoringSettings()
    f = factors(metrics(bid=0, ask=500, trades=5), None, p)
    assert f.volume == 0.0 and f.size == 0.0
    assert f.confidence == pytest.approx(0.35)
    assert signal_class(f.confidence, p) is SignalClass.MONITOR


@pytest.mark.parametrize(("bid", "ask", "expected"), [
    (10, 21, Direction.BUY), (10, 20, None), (21, 10, Direction.SELL), (0, 5, Direction.BUY),
    (0, 0, None),
])
def test_naive_pressure_rule(bid, ask, expected):
    assert naive_pressure_signal(bid, ask) == expected


# --- spreads, parity, buckets ---------------------------------------------------------


def test_spread_legs_need_two_instruments_and_both_sides_at_one_timestamp():
    ts = np.array([5, 5, 7, 7, 9, 9, 9, 11], dtype=np.int64)
    iid = np.array([1, 2, 1, 2, 3, 3, 4, 1], dtype=np.uint32)
    side = np.array([1, -1, 1, 1, 1, -1, 1, -1], dtype=np.int8)
    # t=5 vertical spread (legs); t=7 same-side sweep (not legs); t=9 mixed (legs); t=11 single
    assert spread_legs(ts, iid, side).tolist() == [True, True, False, False, True, True, True, False]


def test_forward_from_put_call_parity_is_the_median_over_strikes():
    fwd = forward_estimates(
        ["NQZ6"] * 5, [7] * 5, [100.0, 100.0, 110.0, 110.0, 120.0], ["C", "P", "C", "P", "C"],
        [7.0, 2.0, 3.0, 7.5, 1.0])
    # K + C - P: 105 and 105.5 (120 has no put) → median 105.25
    assert fwd == {("NQZ6", 7): pytest.approx(105.25)}


def test_forward_estimates_equal_a_plain_dict_computation_on_random_chains() -> None:
    rng = np.random.default_rng(5)
    nan = float("nan")
    for _ in range(400):
        n = int(rng.integers(0, 25))
        u = rng.choice(["NQZ6", "ESZ6"], n).tolist()
        e = rng.choice([-1, 7, 8], n).tolist()
        k = rng.choice([100.0, 110.0, 120.0, nan], n).tolist()
        t = rng.choice(["C", "P", "F"], n).tolist()
        v = [float(x) if x > 5 else nan for x in rng.uniform(0, 50, n)]
        legs: dict = {}
        for row in zip(u, e, k, t, v, strict=True):  # the definition: later rows overwrite
            if row[3] in "CP" and row[1] >= 0 and not math.isnan(row[2]) and not math.isnan(row[4]):
                legs.setdefault(row[:3], {})[row[3]] = row[4]
        chains: dict = defaultdict(list)
        for (uu, ee, kk), px in legs.items():
            if len(px) == 2:
                chains[(uu, ee)].append(kk + px["C"] - px["P"])
        expected = {chain: statistics.median(values) for chain, values in chains.items()}
        assert forward_estimates(u, e, k, t, v) == pytest.approx(expected, rel=1e-15)


def test_bucket_key_rounds_strike_distance_to_steps_of_the_forward():
    assert bucket_key("NQZ6", "C", 21500.0, 21400.0, 0.5) == "NQZ6|C|+1|0d"  # 0.47 % → 1 step
    assert bucket_key("NQZ6", "P", 21000.0, 21400.0, 0.5, 4) == "NQZ6|P|-4|30d+"  # -1.87 % → -4


def test_days_to_expiry_classes_split_expiry_day_from_later_expiries():
    now = 1_800_000_000 * 10**9
    hours = np.array([-1, 3, 23.9, 24, 47, 48, 24 * 6.9, 24 * 7, 24 * 29, 24 * 30, 24 * 90])
    got = dte_class(now + (hours * 3600e9).astype(np.int64), now)
    assert [DTE_LABELS[i] for i in got] == ["0d", "0d", "0d", "1d", "1d", "2-6d", "2-6d",
                                            "7-29d", "7-29d", "30d+", "30d+"]
    assert bucket_key("NQZ6", "F", 21000.0, 21400.0, 0.5) is None
    assert bucket_key("NQZ6", "C", 21000.0, None, 0.5) is None


# --- the scorer ------------------------------------------------------------------------


def _block(day: int, bid: int, ask: int, trades: int) -> PartBlock:
    start = (SESSIONS[day] + T1330) * 10**9
    part = WindowPart(
        key=KEY, window_start_ns=start, window_end_ns=start + 300 * 10**9, source="f", seq=day,
        instrument_id=1, symbol="NQZ6 C21500", underlying="NQZ6", expiration_ns=1_797_600_000 * 10**9,
        strike_price=21_500 * 10**9, option_type="C", defined=True, bid_volume=bid,
        ask_volume=ask, unknown_volume=0, buy_trades=trades if ask else 0,
        sell_trades=trades if bid else 0, unknown_trades=0, notional=10.0 * (bid + ask),
        max_trade_size=50, first_ts_ns=start, last_ts_ns=start + 1, flag_volume=bid + ask,
        quote_volume=0, tick_volume=0,
    )
    return block_of([part], 300 * 10**9, key="s000")


def test_scorer_learns_baselines_online_then_flags_the_abnormal_window():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    for day in range(6):  # quiet days: 6 contracts per window, both sides, 2-lot trades
        assert scorer.score(state, _block(day, 3, 3, 3)) == []
    (signal,) = scorer.score(state, _block(6, 0, 400, 4))
    assert signal.direction is Direction.BUY
    assert signal.signal_class is SignalClass.STRONG
    assert signal.baseline_scope == "contract" and signal.baseline_windows == 6
    assert signal.baseline_volume == pytest.approx(1.0)  # 6 per bucket-day / 6 windows
    assert signal.reason.startswith("ask volume 400 of 400 (100% on the ask, net imbalance 100%)")
    assert signal.sentiment == "BULLISH" and "BULLISH (bought calls)" in signal.reason
    assert signal.dominant_share == 1.0
    assert "6-day 07:30 CT contract median" in signal.reason


def _call_part(day: int, k: int, bid: int, ask: int, buys: int, sells: int, sweep: int = 0) -> WindowPart:
    """One 13:30 window's part of the NQZ6 C``k`` call (strike ``k`` USD points) on ``day``."""
    start = (SESSIONS[day] + T1330) * 10**9
    return WindowPart(
        key=f"NQZ6|2026-12-18T13:30:00Z|C|{k}|NQZ6", window_start_ns=start,
        window_end_ns=start + 300 * 10**9, source="f", seq=day, instrument_id=k,
        symbol=f"NQZ6 C{k}", underlying="NQZ6", expiration_ns=1_797_600_000 * 10**9,
        strike_price=k * 10**9, option_type="C", defined=True, bid_volume=bid,
        ask_volume=ask, unknown_volume=0, buy_trades=buys, sell_trades=sells, unknown_trades=0,
        notional=10.0 * (bid + ask), max_trade_size=10, first_ts_ns=start, last_ts_ns=start + 1,
        flag_volume=bid + ask, quote_volume=0, tick_volume=0, sweep_volume=sweep,
    )


def _chain_block(day: int, strikes: list[int], bid: int, ask: int, trades: int, *,
                 sweep: int = 0) -> PartBlock:
    parts = [_call_part(day, k, bid, ask, trades if ask else 0, trades if bid else 0, sweep)
             for k in strikes]
    return block_of(parts, 300 * 10**9, key="s000")


@pytest.mark.parametrize(("swept_strikes", "expected_signals"), [(4, 4), (2, 0)])
def test_scorer_flags_a_same_side_sweep_across_strikes_not_two_strikes(swept_strikes,
                                                                       expected_signals):
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    chain = [21400, 21450, 21500, 21550, 21600, 21650]
    for day in range(6):
        scorer.score(state, _chain_block(day, chain, 3, 3, 3))
    swept = chain[:swept_strikes]
    block = PartBlock.concat([_chain_block(6, swept, 0, 30, 6, sweep=30),
                              _chain_block(6, chain[swept_strikes:], 3, 3, 3)])
    signals = scorer.score(state, block)
    assert len(signals) == expected_signals
    for s in signals:
        assert s.sweep_strikes == 4 and s.direction is Direction.BUY
        assert "sweep across 4 strikes" in s.reason


def test_same_side_flow_on_many_strikes_without_sweep_prints_is_no_sweep():
    # a sharp move: one-sided buying on every strike of the expiry, but spread over the window
    # (no near-simultaneous prints), so no strike is tagged and 30 lots stay below MONITOR
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    chain = [21400, 21450, 21500, 21550, 21600, 21650]
    for day in range(6):
        scorer.score(state, _chain_block(day, chain, 3, 3, 3))
    assert scorer.score(state, _chain_block(6, chain, 0, 30, 6)) == []


def _puts(block: PartBlock) -> PartBlock:
    cols = dict(block.cols)
    cols["contract_key"] = np.array([k.replace("|C|", "|P|") for k in cols["contract_key"]],
                                    dtype=object)
    cols["option_type"] = np.full(len(block), "P", dtype=object)
    return PartBlock(block.key, block.window_start_ns, block.window_ns, cols)


def test_scorer_state_snapshot_keeps_its_contracts_when_the_live_state_learns_new_ones():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state, reference = scorer.new_state(), scorer.new_state()
    chain = [21400, 21450]
    for day in range(6):
        scorer.score(state, _chain_block(day, chain, 3, 3, 3))
        scorer.score(reference, _chain_block(day, chain, 3, 3, 3))
    clone = state.snapshot()
    new = [21500, 21550, 21600]  # calls in the live state, puts in the snapshot: same new codes
    scorer.score(state, _chain_block(6, new, 0, 30, 6, sweep=30))
    puts = _puts(_chain_block(6, new, 30, 0, 6, sweep=30))
    from_clone = scorer.score(clone, puts)
    assert [s.model_dump() for s in from_clone] == [
        s.model_dump() for s in scorer.score(reference, puts)]
    assert {s.option_type for s in from_clone} == {"P"} and len(from_clone) == 3
    put_codes = clone.book.known(puts.cols["contract_key"].tolist())
    call_codes = state.book.known([k.replace("|P|", "|C|") for k in puts.cols["contract_key"]])
    assert put_codes.tolist() == call_codes.tolist()
    assert (clone.attrs.option_type[put_codes] == 1).all()
    assert (state.attrs.option_type[call_codes] == 0).all()


def test_scorer_state_pickled_before_contract_attributes_existed_still_scores():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    for day in range(6):
        scorer.score(state, _block(day, 3, 3, 3))
    old = pickle.loads(pickle.dumps(state))
    del old.__dict__["attrs"]  # the layout of an older recovery snapshot
    restored = pickle.loads(pickle.dumps(old))
    (signal,) = scorer.score(restored, _block(6, 0, 400, 4))
    assert signal.signal_class is SignalClass.STRONG and signal.baseline_windows == 6


def test_no_baseline_signals_only_with_a_tape_tag():
    # a brand-new contract, no history at all: 120 one-sided lots say nothing by themselves
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    plain = _chain_block(0, [21500], 0, 120, 12)
    assert scorer.score(state, plain) == []
    cols = dict(plain.cols)
    cols["block_trades"] = np.array([1])
    cols["block_volume"] = np.array([60])
    tagged = PartBlock(plain.key, plain.window_start_ns + 300 * 10**9, plain.window_ns, {
        **cols, "window_start_ns": cols["window_start_ns"] + 300 * 10**9})
    (signal,) = scorer.score(state, tagged)
    assert signal.baseline_scope == "none" and signal.block_trades == 1
    assert "1 block print" in signal.reason


def _option_part(start: int, expiration: int, kind: str, strike: int, bid: int, ask: int,
                 price: float, blocks: int = 0) -> WindowPart:
    """One NQZ6 option's window at ``price`` points, multiplier $20, ``blocks`` 60-lot prints."""
    return WindowPart(
        key=f"NQZ6|2026-12-18T13:30:00Z|{kind}|{strike}|QN1Z6", window_start_ns=start,
        window_end_ns=start + 300 * 10**9, source="f", seq=0, instrument_id=strike + len(kind),
        symbol=f"QN1Z6 {kind}{strike}", underlying="NQZ6", expiration_ns=expiration,
        strike_price=strike * 10**9, option_type=kind, defined=True, bid_volume=bid,
        ask_volume=ask, unknown_volume=0, buy_trades=ask // 2, sell_trades=bid // 2,
        unknown_trades=0, notional=price * (bid + ask), max_trade_size=60,
        first_ts_ns=start, last_ts_ns=start + 1, flag_volume=bid + ask, quote_volume=0,
        tick_volume=0, block_trades=blocks, block_volume=60 * blocks, multiplier=20.0)


def test_signal_carries_trader_columns_computed_by_hand():
    # a window: 21500 call and put (parity forward 21500 + 120 - 100 = 21520) and a 21400 put
    # bought 104 / sold 6 lots at 50 points with one block print, NQ options multiplier $20
    start = (SESSIONS[0] + T1330) * 10**9
    expiration = start + 300 * 10**9 + 3 * 86_400 * 10**9  # 3 days after the window's end

    def part(kind: str, strike: int, bid: int, ask: int, price: float, blocks: int = 0):
        return _option_part(start, expiration, kind, strike, bid, ask, price, blocks)

    block = block_of([part("C", 21500, 1, 1, 120.0), part("P", 21500, 1, 1, 100.0),
                      part("P", 21400, 6, 104, 50.0, blocks=1)], 300 * 10**9, key="s000")
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    (signal,) = scorer.score(scorer.new_state(), block)
    assert signal.strike == 21400 and signal.direction is Direction.BUY
    assert signal.sentiment == "BEARISH"  # bought puts
    assert signal.dominant_share == pytest.approx(104 / 110)
    assert signal.premium_usd == pytest.approx(110 * 50.0 * 20.0)
    assert signal.days_to_expiry == pytest.approx(3.0)
    assert signal.moneyness_pct == pytest.approx((21400 - 21520) / 21520 * 100, abs=1e-4)
    assert "(95% on the ask, net imbalance 89%)" in signal.reason
    assert "premium $110,000" in signal.reason and "BEARISH (bought puts)" in signal.reason


def _future_part(start: int, price: float, lots: int = 10) -> WindowPart:
    return WindowPart(
        key="F|NQZ6", window_start_ns=start, window_end_ns=start + 300 * 10**9, source="f", seq=0,
        instrument_id=1, symbol="NQZ6", underlying="NQ", expiration_ns=start + 40 * 86_400 * 10**9,
        strike_price=None, option_type="F", defined=True, bid_volume=lots // 2,
        ask_volume=lots - lots // 2, unknown_volume=0, buy_trades=1, sell_trades=1,
        unknown_trades=0, notional=price * lots, max_trade_size=lots, first_ts_ns=start,
        last_ts_ns=start + 1, flag_volume=lots, quote_volume=0, tick_volume=0, block_trades=0,
        block_volume=0, multiplier=20.0)


FUTURE_VWAP = (21590.0 * 4 + 21605.0 * 12) / 16  # two parts of one window: 4 and 12 lots


@pytest.mark.parametrize(("future_age_windows", "forward"), [(0, FUTURE_VWAP), (6, FUTURE_VWAP),
                                                               (7, 21520.0), (None, 21520.0)])
def test_moneyness_uses_the_underlying_futures_price_when_it_traded_recently(future_age_windows,
                                                                            forward):
    # the 21400 put's underlying NQZ6 traded at FUTURE_VWAP `future_age_windows` windows before;
    # the options' own parity forward is 21500 + 120 - 100 = 21520; 30 min = 6 windows
    start = (SESSIONS[0] + T1330) * 10**9
    expiration = start + 300 * 10**9 + 3 * 86_400 * 10**9

    def part(kind: str, strike: int, bid: int, ask: int, price: float) -> WindowPart:
        return _option_part(start, expiration, kind, strike, bid, ask, price, blocks=1)

    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = scorer.new_state()
    if future_age_windows is not None:
        earlier = start - future_age_windows * 300 * 10**9
        fut = [_future_part(earlier, 21590.0, 4), _future_part(earlier, 21605.0, 12)]
        assert scorer.score(state, block_of(fut, 300 * 10**9, key="s001")) == []
    block = block_of([part("C", 21500, 1, 1, 120.0), part("P", 21500, 1, 1, 100.0),
                      part("P", 21400, 6, 104, 50.0)], 300 * 10**9, key="s000")
    (signal,) = scorer.score(state, block)
    assert signal.moneyness_pct == pytest.approx((21400 - forward) / forward * 100, abs=1e-4)


@pytest.mark.parametrize(("option_type", "direction", "expected"), [
    ("C", Direction.BUY, "BULLISH"), ("C", Direction.SELL, "BEARISH"),
    ("P", Direction.BUY, "BEARISH"), ("P", Direction.SELL, "BULLISH"),
    ("F", Direction.BUY, "BULLISH"), ("T", Direction.BUY, "NEUTRAL"),
])
def test_sentiment_reads_puts_the_other_way(option_type, direction, expected):
    assert Sentiment.of(option_type, direction) == expected


def test_thin_contract_history_is_shrunk_toward_its_bucket():
    # contract: 5 listed days, one 60-lot window (6 trades) a day in the slot; its bucket: three
    # peers trading 12 lots (3 trades) in each of two windows a day for 6 days
    book = BaselineBook(lookback_days=20, min_days=5)
    noon = 17 * 3600  # 11:00 CST in November
    for d in range(6):
        for w in range(2):
            book.add_codes(book.codes(["NQZ6|C|+1|7-29d"] * 3), SESSIONS[d] + noon + 300 * w,
                           np.full(3, 12), np.full(3, 3), np.zeros(3, dtype=np.int64))
        if d >= 1:
            book.add(KEY, SESSIONS[d] + noon, 60, 6, 0)
    scorer = Scorer(ScoringSettings(shrink_days=5), lambda: book)
    start = SESSIONS[6] + noon
    contract = book.baselines(book.known([KEY]), start)
    chosen, scopes = scorer._choose_baselines(book, contract, book.known(["NQZ6|C|+1|7-29d"]), start)
    assert scopes == ["contract+bucket"] and chosen.days.tolist() == [5]
    # own: median 60/6 = 10, sigma^2 = 3600*5/30 - 10^2 = 500; bucket: median 12, sigma^2 at the
    # compound-Poisson floor 2*12*4 + 1 = 97; weight 5 / (5 + 5) = 0.5
    assert chosen.volume_median[0] == pytest.approx(11.0)
    assert chosen.volume_scale[0] == pytest.approx(math.sqrt(0.5 * 500 + 0.5 * 97))
    plain, scopes = Scorer(ScoringSettings(shrink_days=0), lambda: book)._choose_baselines(
        book, contract, book.known(["NQZ6|C|+1|7-29d"]), start)
    assert scopes == ["contract"] and plain.volume_median[0] == pytest.approx(10.0)


def _uneven_chain_block(day: int, asks: dict[int, int]) -> PartBlock:
    """One window of calls: strike -> one-sided ask volume in 4 trades (0: 3 lots each side)."""
    parts = [_call_part(day, k, 0, ask, 4, 0) if ask else _call_part(day, k, 3, 3, 4, 4)
             for k, ask in asks.items()]
    return block_of(parts, 300 * 10**9, key="s000")


def test_deferred_signals_are_the_signals_of_the_window_below_the_urgent_class():
    # the same history and window scored twice: all at once, and with STRONG built first
    strikes = list(range(21000, 22000, 50))
    quiet = dict.fromkeys(strikes, 0)
    loud = {k: [400, 150, 90, 60, 45, 0][i % 6] for i, k in enumerate(strikes)}
    runs = []
    for urgent_rank in (None, CLASS_RANK[SignalClass.STRONG]):
        scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
        state = scorer.new_state()
        for day in range(6):
            scorer.score(state, _uneven_chain_block(day, quiet))
        runs.append((state, *scorer.score_split(state, _uneven_chain_block(6, loud),
                                                urgent_rank=urgent_rank)))
    (state_all, everything, none), (state_split, urgent, deferred) = runs
    assert none is None
    assert deferred is not None and urgent and len(deferred)  # both parts hold signals
    assert {s.signal_class for s in urgent} == {SignalClass.STRONG}
    later = pickle.loads(pickle.dumps(deferred)).signals()  # it crosses workers pickled
    assert later == deferred.signals() and deferred.signals() is deferred.signals()
    assert all(s.signal_class is not SignalClass.STRONG for s in later)
    assert sorted(s.contract_key for s in urgent + later) == sorted(s.contract_key for s in everything)
    by_key = {s.contract_key: s for s in everything}
    assert all(by_key[s.contract_key] == s for s in urgent + later)
    # the window's signals count as emitted in both runs (a correction compares against them)
    assert state_split.emitted == state_all.emitted and len(state_all.emitted) == len(everything)


@pytest.mark.parametrize("future_after", [False, True])
def test_a_run_of_windows_reads_each_windows_own_forward_not_a_later_ones(future_after):
    # one score_run over three windows: the future trades at FUTURE_VWAP in the window before
    # the put's (its moneyness uses it) or in the one after (the put keeps its own window's
    # parity forward 21520, not the future's nor the last window's 21600)
    start = (SESSIONS[0] + T1330) * 10**9
    expiration = start + 300 * 10**9 + 3 * 86_400 * 10**9
    w = 300 * 10**9
    fut_start = start + (1 if future_after else -1) * w
    futures = block_of([_future_part(fut_start, 21590.0, 4), _future_part(fut_start, 21605.0, 12)],
                       w, key="s001")
    options = block_of([_option_part(start, expiration, "C", 21500, 1, 1, 120.0, blocks=1),
                        _option_part(start, expiration, "P", 21500, 1, 1, 100.0, blocks=1),
                        _option_part(start, expiration, "P", 21400, 6, 104, 50.0, blocks=1)],
                       w, key="s000")
    # a later window whose parity forward is 21500 + 150 - 50 = 21600 (too small to signal)
    later = block_of([_option_part(start + 2 * w, expiration, "C", 21500, 1, 1, 150.0),
                      _option_part(start + 2 * w, expiration, "P", 21500, 1, 1, 50.0)], w,
                     key="s000")
    run = [options, futures, later] if future_after else [futures, options, later]
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    results = scorer.score_run(scorer.new_state(), run)
    signals = [s for found, deferred in results
               for s in found + (deferred.signals() if deferred else [])]
    (signal,) = signals
    forward = 21520.0 if future_after else FUTURE_VWAP
    assert signal.moneyness_pct == pytest.approx((21400 - forward) / forward * 100, abs=1e-4)
    assert len(results) == 3 and results[run.index(options)][0] == signals


def _random_day_windows(rng: np.random.Generator, day: int, windows: int) -> list[PartBlock]:
    """Windows of one session: a chain of calls and puts (new strikes listed over the days) and
    the underlying future in some windows, random volumes with now and then a one-sided burst."""
    expiration = (SESSIONS[day] + 20 * 86_400) * 10**9
    out = []
    for i in range(windows):
        start = (SESSIONS[day] + T1330 + 300 * i) * 10**9
        parts = []
        for strike in range(21_300, 21_700 + 50 * min(day, 4), 50):
            for kind in ("C", "P"):
                if rng.random() < 0.35:
                    continue
                bid, ask = (int(x) for x in rng.poisson(6, 2))
                if rng.random() < 0.04:
                    ask += int(rng.integers(60, 200))
                if bid + ask == 0:
                    continue
                price = max(5.0, (21_500 - strike if kind == "P" else strike - 21_500) * -0.5 + 100)
                parts.append(_option_part(start, expiration, kind, strike, bid, ask, price,
                                          blocks=int(ask > 60)))
        if rng.random() < 0.3:
            parts.append(_future_part(start, 21_500.0 + float(rng.normal(0, 20)), 10))
        out.append(block_of(parts, 300 * 10**9, key="s000"))
    return out


def test_scoring_a_run_at_once_equals_scoring_its_windows_one_by_one():
    # 8 sessions of 12 windows, runs of 5 that cross session boundaries: the same signals
    # (every field) and the same state (baseline cells, listing days, forwards, futures)
    rng = np.random.default_rng(12)
    windows = [b for day in range(8) for b in _random_day_windows(rng, day, 12)]

    def final(state):
        book = state.book
        cells = {(key, s): book.cell(key, (SESSIONS[d] + T1330 + s) )
                 for d in range(8) for key in book._keys for s in (0, 1800, 3000)}  # noqa: SLF001
        return cells, dict(state.forwards), dict(state.underlying_prices), dict(state.emitted)

    outputs = []
    for size in (1, 5):
        scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=5, min_days=2))
        state = scorer.new_state()
        signals = []
        for i in range(0, len(windows), size):
            for found, deferred in scorer.score_run(state, windows[i:i + size], urgent_rank=2):
                signals += [s.model_dump() for s in found + (deferred.signals() if deferred else [])]
        outputs.append((signals, final(state)))
    (one, one_state), (run, run_state) = outputs
    assert len(one) > 10 and one == run
    assert one_state == run_state
