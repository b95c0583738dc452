"""Spread trades and their leg prints.

CME lists spreads (exchange-listed and user-defined, UDS) as instruments of their own
(Databento ``instrument_class`` ``T`` option spread, ``M`` mixed, ``S`` future spread), with
their legs in the definition (DBN v3 leg fields, one definition record per leg; CME MDP 3.0
SecurityDefinition ``NoLegs`` group: LegSecurityID, LegSide, LegRatioQty). A spread match is
one event: the spread's own trade, which carries the aggressor (tag 5797 AggressorSide), and one
trade per leg on the leg's outright at an exchange-allocated price, with the same transact time
(Databento ``ts_event``) and no aggressor (side ``N``) (CME MDP 3.0 "Trade Summary"; Databento
"Trades" schema: ``side`` N for trades without an aggressor).

:func:`attribute_spread_legs` (definitions known): the spread trade keeps its aggressor; each
leg print gets ``spread aggressor × leg side`` (a bought vertical: its buy leg is bought, its
sell leg sold) and is marked as spread volume; it is never classified by the quote rule or
the tick test against the outright's own quotes and prices, which mean nothing for it. A leg
of a spread with no aggressor stays unknown.

:func:`spread_legs` (fallback, no leg definitions, e.g. DBN v1/v2 inputs): trades sharing a
``ts_event`` on two or more instruments with both aggressor sides present are legs. Same-time
prints that are all on one side (a sweep across strikes) are *not* legs.
"""

from __future__ import annotations

import numpy as np

from models.records import SpreadLeg


def spread_legs(ts_event: np.ndarray, instrument_id: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Mark trades that are legs of a multi-leg match.

    Parameters
    ----------
    ts_event : int64[n]
        Match time, ns since epoch UTC.
    instrument_id : uint32[n]
    side : int8[n]
        Aggressor side, +1 buy / -1 sell / 0 unknown.

    Returns
    -------
    bool[n]
        True for trades whose timestamp group spans ≥ 2 instruments and holds
        both a buy and a sell.
    """
    n = len(ts_event)
    legs = np.zeros(n, dtype=bool)
    if n < 2:
        return legs
    order = np.argsort(ts_event, kind="stable")
    ts = ts_event[order]
    starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
    sizes = np.diff(np.r_[starts, n])
    multi = sizes >= 2
    if not multi.any():
        return legs
    iid, sd = instrument_id[order], side[order]
    first_iid = np.repeat(iid[starts], sizes)
    # groups are contiguous runs after the sort: per-group "any" is a reduceat over the runs
    has_other_iid = np.logical_or.reduceat(iid != first_iid, starts)
    has_buy = np.logical_or.reduceat(sd > 0, starts)
    has_sell = np.logical_or.reduceat(sd < 0, starts)
    is_leg_group = multi & has_other_iid & has_buy & has_sell
    legs[order] = np.repeat(is_leg_group, sizes)
    return legs


def attribute_spread_legs(
    ts_event: np.ndarray, instrument_id: np.ndarray, flag_side: np.ndarray,
    legs_by_spread: dict[int, tuple[SpreadLeg, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find spread trades and their leg prints; attribute each leg from the spread's aggressor.

    Parameters
    ----------
    ts_event : int64[n]
        Match time, ns since epoch UTC.
    instrument_id : uint32[n]
    flag_side : int8[n]
        Exchange aggressor, +1 buy / -1 sell / 0 none (``N``).
    legs_by_spread : dict
        Spread instrument id → its legs (:meth:`flows.instruments.InstrumentCatalog.legs`).

    Returns
    -------
    is_spread : bool[n]
        Trades of a spread instrument itself.
    is_leg : bool[n]
        Leg prints: side ``N`` trades on a leg's outright with the ``ts_event`` of a trade of
        a spread listing that leg (in the same batch).
    leg_side : int8[n]
        For leg prints, spread aggressor × leg side (+1 bought, −1 sold, 0 unknown); else 0.
        Where two spreads at one ``ts_event`` share a leg instrument, the first in stream
        order gives the side.
    """
    n = len(ts_event)
    is_leg = np.zeros(n, dtype=bool)
    leg_side = np.zeros(n, dtype=np.int8)
    if n == 0 or not legs_by_spread:
        return np.zeros(n, dtype=bool), is_leg, leg_side
    spread_ids = np.fromiter(legs_by_spread, dtype=np.int64, count=len(legs_by_spread))
    is_spread = np.isin(instrument_id, spread_ids)
    rows = np.flatnonzero(is_spread)
    if len(rows) == 0:
        return is_spread, is_leg, leg_side
    expected: dict[tuple[int, int], int] = {}
    for ts, iid, side in zip(ts_event[rows].tolist(), instrument_id[rows].tolist(),
                             flag_side[rows].tolist(), strict=True):
        for leg in legs_by_spread[iid]:
            expected.setdefault((ts, leg.instrument_id), side * leg.side)
    candidates = np.flatnonzero(~is_spread & (flag_side == 0)
                                & np.isin(ts_event, ts_event[rows]))
    for i, ts, iid in zip(candidates.tolist(), ts_event[candidates].tolist(),
                          instrument_id[candidates].tolist(), strict=True):
        side = expected.get((ts, iid))
        if side is not None:
            is_leg[i] = True
            leg_side[i] = side
    return is_spread, is_leg, leg_side
