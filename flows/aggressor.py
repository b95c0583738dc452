"""Aggressor-side classification: exchange flag, then Lee-Ready.

Order of rules for each trade (Lee & Ready 1991, "Inferring Trade Direction
from Intraday Data", J. Finance 46(2); Databento trades schema ``side``):

1. **flag** — the exchange reported the aggressor (``side`` ``B``: buyer
   lifted the offer; ``A``: seller hit the bid). CME MDP 3.0 tag 5797
   AggressorSide.
2. **quote rule** — the record carries a two-sided BBO (tbbo, mbp-1, mbp-10):
   price above the midpoint → buy, below → sell.
3. **tick test** — at the midpoint, or when no BBO exists (trades, mbo):
   price above the previous trade price of the same instrument → buy
   (uptick), below → sell (downtick); an unchanged price repeats the
   direction of the last non-zero price change (zero-uptick → buy,
   zero-downtick → sell).
4. **unknown** — no reference yet (first trade of an instrument in a
   stream, or no price change seen so far).

The tick reference is the previous *trade* (any side method) of the same
instrument in the same input stream and the same CME trading day
(:mod:`flows.exchange_time`: sessions open 17:00 CT): the memory resets at each
session open, so an opening-auction print (side ``N``) is classified only from
what its own session shows, never from the previous day's close.
:class:`TickState` carries the memory across micro-batches and is part of the
step's recovery snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.records import UNDEF_PRICE, SideMethod


@dataclass
class TickState:
    """Per-instrument tick-test memory of one input stream.

    Attributes
    ----------
    last_price : dict[int, int]
        instrument_id → last trade price (fixed-point 1e-9).
    last_direction : dict[int, int]
        instrument_id → sign of the last non-zero price change (+1 / -1).
    last_session : dict[int, int]
        instrument_id → trading day (days since epoch) of that last trade.
    """

    last_price: dict[int, int] = field(default_factory=dict)
    last_direction: dict[int, int] = field(default_factory=dict)
    last_session: dict[int, int] = field(default_factory=dict)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("last_session", {})  # snapshots from before session resets
        self.__dict__.update(state)


def classify_aggressor(
    instrument_id: np.ndarray,
    price: np.ndarray,
    flag_side: np.ndarray,
    bid_px: np.ndarray,
    ask_px: np.ndarray,
    state: TickState,
    session: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Classify each trade's aggressor side, updating ``state``.

    Parameters
    ----------
    instrument_id : uint32[n]
    price : int64[n]
        Trade prices, fixed-point 1e-9, in stream order.
    flag_side : int8[n]
        Exchange aggressor: +1 buy, -1 sell, 0 none.
    bid_px, ask_px : int64[n]
        BBO carried by each record, ``UNDEF_PRICE`` where absent.
    state : TickState
        Tick memory from earlier batches; updated in place.
    session : int64[n], optional
        Trading day of each trade (:meth:`flows.exchange_time.CmeSessions.locate_ns` of
        ``ts_event``); the tick memory never crosses a change of it. None: one session.

    Returns
    -------
    side : int8[n]
        +1 buy (ask volume), -1 sell (bid volume), 0 unknown.
    method : int8[n]
        :class:`~models.records.SideMethod` code used for each trade.
    """
    n = len(price)
    side = np.zeros(n, dtype=np.int8)
    method = np.zeros(n, dtype=np.int8)
    if n == 0:
        return side, method
    if session is None:
        session = np.zeros(n, dtype=np.int64)
    tick_dir = _tick_directions(instrument_id, price, np.asarray(session, dtype=np.int64), state)

    flagged = flag_side != 0
    side[flagged] = flag_side[flagged]
    method[flagged] = SideMethod.FLAG

    has_bbo = (bid_px != UNDEF_PRICE) & (ask_px != UNDEF_PRICE) & (bid_px <= ask_px) & ~flagged
    if has_bbo.any():
        twice_mid = bid_px[has_bbo] + ask_px[has_bbo]
        rel = np.sign(2 * price[has_bbo] - twice_mid).astype(np.int8)
        idx = np.flatnonzero(has_bbo)[rel != 0]
        side[idx] = rel[rel != 0]
        method[idx] = SideMethod.QUOTE

    rest = method == SideMethod.UNKNOWN
    by_tick = rest & (tick_dir != 0)
    side[by_tick] = tick_dir[by_tick]
    method[by_tick] = SideMethod.TICK
    return side, method


def _tick_directions(instrument_id: np.ndarray, price: np.ndarray, session: np.ndarray,
                     state: TickState) -> np.ndarray:
    """Tick-test direction (+1/-1/0) of every trade, grouped per instrument and session."""
    n = len(price)
    order = np.argsort(instrument_id, kind="stable")
    iid = instrument_id[order]
    px = price[order]
    sess = session[order]
    starts = np.flatnonzero(np.r_[True, iid[1:] != iid[:-1]])
    ends = np.r_[starts[1:], n] - 1

    prev = np.empty(n, dtype=np.int64)
    prev[1:] = px[:-1]
    has_prev = np.ones(n, dtype=bool)
    has_prev[1:] = sess[1:] == sess[:-1]  # a new session within the batch: no reference
    seed = np.zeros(len(starts), dtype=np.int8)
    for g, (start, inst) in enumerate(zip(starts.tolist(), iid[starts].tolist(), strict=True)):
        last = state.last_price.get(inst)
        if last is None or state.last_session.get(inst, int(sess[start])) != sess[start]:
            has_prev[start] = False
            prev[start] = px[start]
        else:
            has_prev[start] = True
            prev[start] = last
            seed[g] = state.last_direction.get(inst, 0)

    change = np.sign(px - prev).astype(np.int8)
    change[~has_prev] = 0
    value = change.copy()
    at_start = value[starts] == 0
    value[starts[at_start]] = seed[at_start]
    anchor = (value != 0) | ~has_prev  # a session's first trade anchors "unknown"
    anchor[starts] = True
    carried = np.maximum.accumulate(np.where(anchor, np.arange(n), 0))
    direction_sorted = value[carried]

    for inst, end in zip(iid[starts].tolist(), ends.tolist(), strict=True):
        state.last_price[inst] = int(px[end])
        state.last_session[inst] = int(sess[end])
        if direction_sorted[end] != 0:
            state.last_direction[inst] = int(direction_sorted[end])
        else:
            state.last_direction.pop(inst, None)

    direction = np.empty(n, dtype=np.int8)
    direction[order] = direction_sorted
    return direction
