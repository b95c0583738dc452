"""Late parts re-score their window on the combined numbers (stop 17, issue 9).

A late part re-opens a window bytewax already closed: the scorer must judge the window on
everything it holds (first part + late parts), add only the difference to the baselines (so a
day's volume is counted once), and alert again only when the class rises. Expected numbers are
the plain sums of the parts fed in.
"""

from __future__ import annotations

import numpy as np

from flows.baselines import BaselineBook
from flows.scoring import CLASS_RANK, Scorer, ScoringSettings
from models.records import PartBlock, WindowPart
from models.signals import Direction, SignalClass
from tests.partblocks import block_of
from tests.sessions import session_midnights

DAY = 86_400
SESSIONS = session_midnights("2025-11-10", 32)  # UTC midnights of CME trading days
T1330 = 13 * 3600 + 1800
KEY = "NQZ6|2026-12-18T13:30:00Z|C|21500|NQZ6"


def block(day: int, seq: int, bid: int, ask: int, trades: int, *, key: str = KEY,
          defined: bool = True) -> PartBlock:
    start = (SESSIONS[day] + T1330) * 10**9
    part = WindowPart(
        key=key, window_start_ns=start, window_end_ns=start + 300 * 10**9, source="f", seq=seq,
        instrument_id=1, symbol="NQZ6 C21500", underlying="NQZ6",
        expiration_ns=1_797_600_000 * 10**9, strike_price=21_500 * 10**9, option_type="C",
        defined=defined, bid_volume=bid, ask_volume=ask, unknown_volume=0,
        buy_trades=trades if ask else 0, sell_trades=trades if bid and not ask else 0,
        unknown_trades=0, notional=10.0 * (bid + ask), max_trade_size=50, first_ts_ns=start + seq,
        last_ts_ns=start + seq + 1, flag_volume=bid + ask, quote_volume=0, tick_volume=0,
    )
    return block_of([part], 300 * 10**9, key="s000")


def quiet_history(scorer: Scorer):
    state = scorer.new_state()
    for day in range(6):
        assert scorer.score(state, block(day, day, 3, 3, 3)) == []
    return state


def day_cell(book: BaselineBook, key: str, day: int) -> np.ndarray | None:
    """(volume, trades, |imbalance|) the book holds for ``key`` on ``day`` in the 13:30 bucket."""
    start_s = SESSIONS[day] + T1330
    cell = book.cell(key, start_s)
    return None if cell is None else np.asarray(cell, dtype=float)


def test_late_part_rescoring_uses_combined_numbers_counts_baseline_once_and_alerts_on_rise():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = quiet_history(scorer)
    first = scorer.score(state, block(6, 100, 0, 30, 1))
    first_rank = max((CLASS_RANK[s.signal_class] for s in first), default=0)
    assert first_rank < CLASS_RANK[SignalClass.STRONG]  # 30 lots alone are not STRONG

    late = scorer.score(state, block(6, 101, 0, 370, 3), correction=True)
    (signal,) = late
    # judged on the whole window: 30 + 370 ask lots in 1 + 3 trades
    assert (signal.ask_volume, signal.bid_volume, signal.total_volume) == (400, 0, 400)
    assert signal.total_trades == 4
    assert signal.direction is Direction.BUY and signal.signal_class is SignalClass.STRONG
    # the baseline holds the window once: 400 lots, 4 trades, |imbalance| 400 (not 30 + 400)
    np.testing.assert_allclose(day_cell(state.book, KEY, 6), [400, 4, 400])

    # a further late part that leaves the class where it is: no second alert, baseline += 10
    assert scorer.score(state, block(6, 102, 0, 10, 1), correction=True) == []
    np.testing.assert_allclose(day_cell(state.book, KEY, 6), [410, 5, 410])


def test_late_part_beyond_the_horizon_only_updates_the_baseline():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5),
                    correction_horizon_s=3_600)
    state = quiet_history(scorer)
    scorer.score(state, block(6, 100, 0, 30, 1))
    scorer.score(state, block(7, 200, 3, 3, 3))  # a day later: day 6 is past the horizon
    assert scorer.score(state, block(6, 101, 0, 370, 3), correction=True) == []
    np.testing.assert_allclose(day_cell(state.book, KEY, 6), [400, 4, 400])


def test_undefined_instrument_rows_are_never_scored_nor_baselined():
    scorer = Scorer(ScoringSettings(), lambda: BaselineBook(lookback_days=20, min_days=5))
    state = quiet_history(scorer)
    undefined = "ID|77"
    assert scorer.score(state, block(6, 100, 0, 5_000, 5, key=undefined, defined=False)) == []
    assert scorer.score(state, block(6, 101, 0, 5_000, 5, key=undefined, defined=False),
                        correction=True) == []
    assert day_cell(state.book, undefined, 6) is None
    assert not any(k[0] == undefined for k in state.book.cell_keys())
