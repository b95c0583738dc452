"""Spread-leg detection: multi-leg orders fill all legs in one match event.

A spread or combo order on CME (e.g. a vertical: buy one strike, sell
another) is matched in one event whose leg trades carry the same
matching-engine timestamp (CME MDP 3.0 "Trade Summary": one event per match;
Databento ``ts_event`` = transact time). Per strike the legs look like
one-sided prints, so without this step a spread would read as institutional
directional flow. Rule: trades sharing a ``ts_event`` on two or more
instruments with both aggressor sides present are spread legs. Same-time
prints that are all on one side (a sweep across strikes) are *not* legs.
"""

from __future__ import annotations

import numpy as np


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
    group = np.repeat(np.arange(len(starts)), sizes)
    iid, sd = instrument_id[order], side[order]
    first_iid = np.repeat(iid[starts], sizes)
    has_other_iid = np.zeros(len(starts), dtype=bool)
    np.logical_or.at(has_other_iid, group, iid != first_iid)
    has_buy = np.zeros(len(starts), dtype=bool)
    np.logical_or.at(has_buy, group, sd > 0)
    has_sell = np.zeros(len(starts), dtype=bool)
    np.logical_or.at(has_sell, group, sd < 0)
    is_leg_group = multi & has_other_iid & has_buy & has_sell
    legs[order] = is_leg_group[group]
    return legs
