"""Footprint (volume at price by aggressor side) of a batch's trades, per contract and window.

A footprint row is one price level of one contract in one tumbling window: the contracts that
traded there with a buying aggressor (``ask_volume``: lifted the offer), a selling aggressor
(``bid_volume``: hit the bid) and no known side (``unknown_volume``). Delta = ask − bid volume.
The rows of one batch are additive across batches (a window split over batches, or a late
part, adds rows), so storage sums them (``ifd.footprint``).

Units: prices int64 fixed-point 1e-9 USD price points, volume contracts, ns since epoch UTC.
"""

from __future__ import annotations

import numpy as np

from models.records import Contract, FootprintRows


def footprint_rows(ts_event: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray,
                   contract_of: np.ndarray, contracts: list[Contract], *, window_ns: int,
                   source: str, seq: int) -> FootprintRows | None:
    """Group a batch's trades by (contract, window, price) and sum volume by aggressor side.

    Parameters
    ----------
    ts_event, price, size : ndarray of int64, shape (n,)
        Match time (ns UTC), trade price (fixed-point 1e-9) and contracts of each trade.
    side : ndarray of int8, shape (n,)
        Aggressor: +1 buy, −1 sell, 0 unknown (:mod:`flows.aggressor`).
    contract_of : ndarray of int64, shape (n,)
        Index into ``contracts`` of each trade.
    contracts : list of Contract
    window_ns : int
        Tumbling window length (ns); windows start at multiples of it since the epoch.
    source, seq : str, int
        Batch identity (part of every stored row's identity).

    Returns
    -------
    FootprintRows or None
        None for a batch without trades.
    """
    n = len(ts_event)
    if n == 0:
        return None
    window = np.asarray(ts_event, dtype=np.int64) // window_ns * window_ns
    price = np.asarray(price, dtype=np.int64)
    contract_of = np.asarray(contract_of, dtype=np.int64)
    order = np.lexsort((price, window, contract_of))
    c, w, p = contract_of[order], window[order], price[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (w[1:] != w[:-1]) | (p[1:] != p[:-1])
    starts = np.flatnonzero(new)
    size = np.asarray(size, dtype=np.int64)[order]
    s = np.asarray(side)[order]

    def total(mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.where(mask, size, 0), starts)

    keys = np.array([x.key for x in contracts], dtype=object)
    ids = np.array([x.instrument_id for x in contracts], dtype=np.uint32)
    return FootprintRows(
        source=source, seq=seq, contract_key=keys[c[starts]], instrument_id=ids[c[starts]],
        window_start_ns=w[starts], price=p[starts], bid_volume=total(s < 0),
        ask_volume=total(s > 0), unknown_volume=total(s == 0),
        trades=np.add.reduceat(np.ones(n, dtype=np.int64), starts))
