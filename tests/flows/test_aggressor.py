"""Tests for flows.aggressor: exchange flag, Lee-Ready quote rule, tick test."""

from __future__ import annotations

import random

import numpy as np
import pytest

from flows.aggressor import TickState, classify_aggressor

UNDEF = 2**63 - 1
PX = 1_000_000_000  # one index point, fixed-point 1e-9

BUY, SELL, NONE = 1, -1, 0
M_UNKNOWN, M_FLAG, M_QUOTE, M_TICK = 0, 1, 2, 3


def classify(
    prices: list[int],
    *,
    iids: list[int] | None = None,
    flags: list[int] | None = None,
    bids: list[int] | None = None,
    asks: list[int] | None = None,
    state: TickState | None = None,
) -> tuple[list[int], list[int]]:
    """Run classify_aggressor on plain lists (prices in whole points)."""
    n = len(prices)
    iids = iids if iids is not None else [7] * n
    flags = flags if flags is not None else [0] * n
    bids = bids if bids is not None else [UNDEF] * n
    asks = asks if asks is not None else [UNDEF] * n
    side, method = classify_aggressor(
        np.array(iids, dtype=np.uint32),
        np.array([p * PX for p in prices], dtype=np.int64),
        np.array(flags, dtype=np.int8),
        np.array([b if b == UNDEF else b * PX for b in bids], dtype=np.int64),
        np.array([a if a == UNDEF else a * PX for a in asks], dtype=np.int64),
        state if state is not None else TickState(),
    )
    assert side.dtype == np.int8 and method.dtype == np.int8
    return side.tolist(), method.tolist()


# --- exchange flag -----------------------------------------------------------


@pytest.mark.parametrize(("flag", "expected"), [(1, BUY), (-1, SELL)])
def test_flag_side_is_used_with_flag_method(flag: int, expected: int) -> None:
    side, method = classify([100], flags=[flag])
    assert side == [expected]
    assert method == [M_FLAG]


@pytest.mark.parametrize(
    ("flag", "price", "expected"),
    [
        (1, 99, BUY),  # quote rule would say sell (below mid 100.5)
        (-1, 102, SELL),  # quote rule would say buy (above mid 100.5)
    ],
)
def test_flag_side_overrides_contradicting_bbo(flag: int, price: int, expected: int) -> None:
    side, method = classify([price], flags=[flag], bids=[100], asks=[101])
    assert side == [expected]
    assert method == [M_FLAG]


# --- quote rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "bid", "ask", "expected"),
    [
        (101, 100, 101, BUY),  # at the ask
        (103, 100, 104, BUY),  # above mid 102, inside the spread
        (105, 100, 104, BUY),  # through the ask
        (100, 100, 101, SELL),  # at the bid
        (101, 100, 104, SELL),  # below mid 102
        (99, 100, 104, SELL),  # through the bid
    ],
)
def test_quote_rule_side_n_with_two_sided_bbo(
    price: int, bid: int, ask: int, expected: int
) -> None:
    side, method = classify([price], bids=[bid], asks=[ask])
    assert side == [expected]
    assert method == [M_QUOTE]


def test_quote_rule_half_tick_above_mid_is_buy() -> None:
    # bid 100, ask 101 → mid 100.5; price 100.5 + 1e-9 is above mid
    side, method = classify_aggressor(
        np.array([1], dtype=np.uint32),
        np.array([100 * PX + PX // 2 + 1], dtype=np.int64),
        np.array([0], dtype=np.int8),
        np.array([100 * PX], dtype=np.int64),
        np.array([101 * PX], dtype=np.int64),
        TickState(),
    )
    assert side.tolist() == [BUY]
    assert method.tolist() == [M_QUOTE]


def test_quote_rule_price_exactly_at_mid_falls_to_tick_test() -> None:
    # first trade 100 (no BBO → unknown); second at 102 = mid of 100/104 → uptick
    side, method = classify([100, 102], bids=[UNDEF, 100], asks=[UNDEF, 104])
    assert side == [NONE, BUY]
    assert method == [M_UNKNOWN, M_TICK]


def test_quote_rule_price_at_mid_with_downtick_is_tick_sell() -> None:
    side, method = classify([103, 102], bids=[UNDEF, 100], asks=[UNDEF, 104])
    assert side == [NONE, SELL]
    assert method == [M_UNKNOWN, M_TICK]


def test_quote_rule_price_at_mid_first_trade_is_unknown() -> None:
    side, method = classify([102], bids=[100], asks=[104])
    assert side == [NONE]
    assert method == [M_UNKNOWN]


@pytest.mark.parametrize(("bid", "ask"), [(UNDEF, 104), (100, UNDEF), (UNDEF, UNDEF)])
def test_one_sided_or_missing_bbo_uses_tick_test(bid: int, ask: int) -> None:
    # the second trade's price 103 would be a quote-rule buy with 100/104 (mid 102);
    # against the previous trade 110 it is a downtick
    side, method = classify([110, 103], bids=[UNDEF, bid], asks=[UNDEF, ask])
    assert side == [NONE, SELL]
    assert method == [M_UNKNOWN, M_TICK]


# --- tick test (trades schema: no BBO) ----------------------------------------


def test_tick_test_uptick_is_buy_and_downtick_is_sell() -> None:
    side, method = classify([100, 101, 99])
    assert side == [NONE, BUY, SELL]
    assert method == [M_UNKNOWN, M_TICK, M_TICK]


def test_tick_test_zero_uptick_is_buy() -> None:
    side, method = classify([100, 101, 101, 101])
    assert side == [NONE, BUY, BUY, BUY]
    assert method == [M_UNKNOWN, M_TICK, M_TICK, M_TICK]


def test_tick_test_zero_downtick_is_sell() -> None:
    side, method = classify([100, 98, 98, 98])
    assert side == [NONE, SELL, SELL, SELL]
    assert method == [M_UNKNOWN, M_TICK, M_TICK, M_TICK]


def test_tick_test_zero_tick_follows_last_nonzero_change_not_first() -> None:
    # up, zero, down, zero, zero, up, zero
    side, _ = classify([100, 101, 101, 100, 100, 100, 102, 102])
    assert side == [NONE, BUY, BUY, SELL, SELL, SELL, BUY, BUY]


def test_first_trade_of_instrument_is_unknown() -> None:
    side, method = classify([100])
    assert side == [NONE]
    assert method == [M_UNKNOWN]


def test_first_trade_followed_by_equal_prices_is_all_unknown() -> None:
    side, method = classify([100, 100, 100, 100])
    assert side == [NONE] * 4
    assert method == [M_UNKNOWN] * 4


def test_tick_state_records_last_price_and_direction() -> None:
    state = TickState()
    classify([100, 101, 101], iids=[5, 5, 5], state=state)
    assert state.last_price == {5: 101 * PX}
    assert state.last_direction == {5: 1}


def test_tick_state_without_price_change_has_no_direction() -> None:
    state = TickState()
    classify([100, 100], iids=[5, 5], state=state)
    assert state.last_price == {5: 100 * PX}
    assert 5 not in state.last_direction


def test_tick_state_carries_price_across_batch_boundary() -> None:
    state = TickState()
    classify([100], state=state)
    side, method = classify([101, 100], state=state)
    assert side == [BUY, SELL]
    assert method == [M_TICK, M_TICK]


def test_tick_state_carries_direction_across_batch_boundary() -> None:
    state = TickState()
    classify([100, 99], state=state)
    # next batch opens with an unchanged price: zero-downtick → sell
    side, method = classify([99, 99], state=state)
    assert side == [SELL, SELL]
    assert method == [M_TICK, M_TICK]


def test_tick_state_unknown_run_continues_across_batch_boundary() -> None:
    state = TickState()
    classify([100, 100], state=state)
    side, method = classify([100, 101], state=state)
    assert side == [NONE, BUY]
    assert method == [M_UNKNOWN, M_TICK]


def test_tick_state_is_per_instrument_in_interleaved_batch() -> None:
    # A: 100, 101, 101 (up, zero-up); B: 50, 49, 49 (down, zero-down)
    side, method = classify(
        [100, 50, 101, 49, 101, 49],
        iids=[1, 2, 1, 2, 1, 2],
    )
    assert side == [NONE, NONE, BUY, SELL, BUY, SELL]
    assert method == [M_UNKNOWN, M_UNKNOWN, M_TICK, M_TICK, M_TICK, M_TICK]


def test_tick_state_other_instrument_is_not_a_reference() -> None:
    state = TickState()
    classify([100, 101], iids=[1, 1], state=state)
    side, method = classify([200, 101], iids=[2, 1], state=state)
    # instrument 2 has no reference of its own; instrument 1 repeats at 101 → zero-uptick
    assert side == [NONE, BUY]
    assert method == [M_UNKNOWN, M_TICK]
    assert state.last_price == {1: 101 * PX, 2: 200 * PX}


def test_flagged_trades_update_tick_reference() -> None:
    # 100 (unknown), 105 flagged sell, then 103 unflagged: downtick vs the flagged 105
    side, method = classify([100, 105, 103], flags=[0, -1, 0])
    assert side == [NONE, SELL, SELL]
    assert method == [M_UNKNOWN, M_FLAG, M_TICK]


def test_flagged_trades_set_tick_direction() -> None:
    # the flagged 101 is an uptick vs 100; the following 101 is a zero-uptick
    side, method = classify([100, 101, 101], flags=[0, -1, 0])
    assert side == [NONE, SELL, BUY]
    assert method == [M_UNKNOWN, M_FLAG, M_TICK]


def test_quote_classified_trades_update_tick_reference() -> None:
    # 100 then 110 classified by quotes (sell vs 111/115); then 105 without BBO → downtick
    side, method = classify([100, 110, 105], bids=[UNDEF, 111, UNDEF], asks=[UNDEF, 115, UNDEF])
    assert side == [NONE, SELL, SELL]
    assert method == [M_UNKNOWN, M_QUOTE, M_TICK]


def test_empty_batch_returns_empty_arrays_and_keeps_state() -> None:
    state = TickState(last_price={1: 5}, last_direction={1: -1})
    side, method = classify([], state=state)
    assert side == [] and method == []
    assert state.last_price == {1: 5} and state.last_direction == {1: -1}


# --- randomized property test against a per-trade reference -------------------


def reference_classify(
    trades: list[tuple[int, int, int, int, int]],
    last_price: dict[int, int],
    last_direction: dict[int, int],
) -> tuple[list[int], list[int]]:
    """Per-trade statement of the documented rules; updates the two dicts."""
    sides, methods = [], []
    for iid, price, flag, bid, ask in trades:
        prev = last_price.get(iid)
        if prev is None:
            tick = 0
        elif price > prev:
            tick = 1
        elif price < prev:
            tick = -1
        else:
            tick = last_direction.get(iid, 0)
        if tick != 0:
            last_direction[iid] = tick
        last_price[iid] = price

        if flag != 0:
            sides.append(flag)
            methods.append(M_FLAG)
            continue
        if bid != UNDEF and ask != UNDEF and 2 * price != bid + ask:
            sides.append(1 if 2 * price > bid + ask else -1)
            methods.append(M_QUOTE)
            continue
        if tick != 0:
            sides.append(tick)
            methods.append(M_TICK)
        else:
            sides.append(0)
            methods.append(M_UNKNOWN)
    return sides, methods


def _in_batches(trades: list[tuple[int, int, int, int, int]], cuts: list[int], state: TickState,
                sessions: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Classify ``trades`` (iid, price, flag, bid, ask) cut at ``cuts``; sides and methods."""
    sides: list[int] = []
    methods: list[int] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(trades)], strict=True):
        batch = trades[lo:hi]
        side, method = classify_aggressor(
            np.array([t[0] for t in batch], dtype=np.uint32),
            np.array([t[1] for t in batch], dtype=np.int64),
            np.array([t[2] for t in batch], dtype=np.int8),
            np.array([t[3] for t in batch], dtype=np.int64),
            np.array([t[4] for t in batch], dtype=np.int64),
            state,
            session=None if sessions is None else np.array(sessions[lo:hi], dtype=np.int64),
        )
        sides += side.tolist()
        methods += method.tolist()
    return sides, methods


def test_classify_matches_reference_on_random_batches() -> None:
    rng = random.Random(20240621)
    instruments = [11, 42, 4_000_000_007, 3]
    trades = []
    for _ in range(4000):
        iid = rng.choice(instruments)
        price = (5000 + rng.randint(-3, 3)) * PX + rng.choice([0, 0, PX // 4])
        flag = rng.choice([0, 0, 0, 1, -1])
        bbo_kind = rng.choice(["none", "two", "two", "bid_only", "ask_only"])
        bid = ask = UNDEF
        if bbo_kind != "none":
            lo = (5000 + rng.randint(-4, 2)) * PX
            hi = lo + rng.choice([0, 1, 2]) * PX // 2  # locked, half-point, one-point spread
            bid = lo if bbo_kind in ("two", "bid_only") else UNDEF
            ask = hi if bbo_kind in ("two", "ask_only") else UNDEF
        trades.append((iid, price, flag, bid, ask))

    exp_last_price: dict[int, int] = {}
    exp_last_dir: dict[int, int] = {}
    exp_side, exp_method = reference_classify(trades, exp_last_price, exp_last_dir)
    # the generated mix must exercise every method
    assert {M_UNKNOWN, M_FLAG, M_QUOTE, M_TICK} <= set(exp_method)

    state = TickState()
    got_side, got_method = _in_batches(trades, sorted(rng.sample(range(1, len(trades)), 25)),
                                       state)

    assert got_side == exp_side
    assert got_method == exp_method
    assert state.last_price == exp_last_price
    assert state.last_direction == exp_last_dir


def test_tick_memory_resets_at_each_session_open_on_random_batches() -> None:
    # four trading days inside one stream, batch cuts independent of the session changes
    rng = random.Random(7)
    instruments = [11, 42, 3]
    trades, sessions = [], []
    day = 19_700
    for i in range(3000):
        if i in (700, 1500, 1501, 2600):  # 1501: a session holding a single print
            day += 1
        iid = rng.choice(instruments)
        price = (5000 + rng.randint(-2, 2)) * PX
        trades.append((iid, price, rng.choice([0, 0, 0, 1]), UNDEF, UNDEF))
        sessions.append(day)

    last_price: dict[int, int] = {}
    last_dir: dict[int, int] = {}
    last_session: dict[int, int] = {}
    exp_side, exp_method = [], []
    for trade, s in zip(trades, sessions, strict=True):
        if last_session.get(trade[0]) != s:  # a new session: the reference is forgotten
            last_price.pop(trade[0], None)
            last_dir.pop(trade[0], None)
        last_session[trade[0]] = s
        side, method = reference_classify([trade], last_price, last_dir)
        exp_side += side
        exp_method += method
    opening = [i for i in range(1, len(trades)) if sessions[i] != sessions[i - 1]]
    assert all(exp_method[i] in (M_FLAG, M_UNKNOWN) for i in opening)

    state = TickState()
    got_side, got_method = _in_batches(trades, sorted(rng.sample(range(1, len(trades)), 30)),
                                       state, sessions)
    assert got_method == exp_method
    assert got_side == exp_side
    assert state.last_price == last_price and state.last_direction == last_dir


def test_tick_state_from_an_older_snapshot_keeps_its_reference() -> None:
    import pickle

    state = TickState(last_price={11: 5000 * PX}, last_direction={11: 1})
    old = pickle.loads(pickle.dumps(state))  # noqa: S301 - our own bytes
    del old.__dict__["last_session"]
    restored = pickle.loads(pickle.dumps(old))  # noqa: S301
    side, method = classify_aggressor(
        np.array([11], dtype=np.uint32), np.array([5000 * PX], dtype=np.int64),
        np.array([0], dtype=np.int8), np.array([UNDEF]), np.array([UNDEF]), restored,
        session=np.array([19_700]))
    assert side.tolist() == [1] and method.tolist() == [M_TICK]  # zero-uptick from the old memory
