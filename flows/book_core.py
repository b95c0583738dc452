"""Compiled (numba) inner loop of :mod:`flows.book`: the book rules over a batch of MBO records.

Same rules as the :mod:`flows.book` docstring. Besides the published BBO before each trade it
emits the *book events* the iceberg detector (:mod:`flows.icebergs`) acts on, and only those:
every fill of a resting order; a placement (``A``/``M``) of an order that has traded before, or
of a new order at a price that fills emptied recently; a removal of an order that has traded or
was such a placement. Everything else (most adds, cancels and modifies) never reaches Python.

Event rows are int64, 11 columns (:data:`EVENT_COLUMNS`): the record's row, the kind (0 fill,
1 placed, 2 removed), instrument_id, order_id, side byte, price, size and four kind-specific
values.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.typed import Dict

from models.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, UNDEF_PRICE

UNDEF = np.int64(UNDEF_PRICE)
STALE = np.int64(-(2**63))
BID, ASK = 66, 65  # ord("B"), ord("A")
EVENT_COLUMNS = ("row", "kind", "instrument_id", "order_id", "side", "price", "size",
                 "b", "c", "d", "e")
"""fill: b = shown size, c = the level's size before the fill, d = the fill's price ·
placed: b = existed before,
c = side before, d = price before, e = size before · removed: b = traded in the same event,
c = level now empty."""
FILL, PLACED, REMOVED = 0, 1, 2

KEY2 = types.UniTuple(types.int64, 2)
KEY3 = types.UniTuple(types.int64, 3)
LEVEL = types.DictType(types.int64, types.int64)


def new_state() -> tuple:
    """Return an empty compiled state (built by compiled code: nothing compiles at run time).

    (orders, levels, best, published, status, filled, emptied, watched):

    - orders: (instrument_id, order_id) → (side, price, size)
    - levels: (instrument_id, side) → {price: contracts}
    - best: (instrument_id, side) → best price, :data:`UNDEF` empty, :data:`STALE` to recompute
    - published: instrument_id → (bid_px, ask_px) at its last ``F_LAST``
    - status: instrument_id → bit 1 unreliable (``F_MAYBE_BAD_BOOK``), bit 2 in a snapshot
    - filled: (instrument_id, order_id) → ns of its last fill (orders that traded, while resting)
    - emptied: (instrument_id, side, price) → ns fills emptied the level
    - watched: (instrument_id, order_id) → 1: placed at a level fills had just emptied
    """
    return _new_state()


@nb.njit(cache=True)
def _new_state():  # pragma: no cover - compiled
    return (Dict.empty(KEY2, KEY3), Dict.empty(KEY2, LEVEL), Dict.empty(KEY2, types.int64),
            Dict.empty(types.int64, KEY2),
            Dict.empty(types.int64, types.int64), Dict.empty(KEY2, types.int64),
            Dict.empty(KEY3, types.int64), Dict.empty(KEY2, types.int64))


@nb.njit(cache=True)
def _clear(orders, levels, best, iid):  # pragma: no cover - compiled
    gone = []
    for key in orders:
        if key[0] == iid:
            gone.append(key)
    for key in gone:
        del orders[key]
    for side in (BID, ASK):
        k = (iid, np.int64(side))
        if k in levels:
            del levels[k]
        best[k] = UNDEF


@nb.njit(cache=True)
def _take_out(levels, best, iid, side, price, size):  # pragma: no cover - compiled
    """Remove ``size`` at (iid, side, price); True when the level is now empty."""
    k = (iid, side)
    level = levels[k]
    left = level[price] - size
    if left > 0:
        level[price] = left
        return False
    del level[price]
    if best.get(k, STALE) == price:
        best[k] = STALE
    return True


@nb.njit(cache=True)
def _put(levels, best, iid, side, price, size):  # pragma: no cover - compiled
    k = (iid, side)
    if k not in levels:
        levels[k] = Dict.empty(types.int64, types.int64)
    level = levels[k]
    level[price] = level.get(price, 0) + size
    b = best.get(k, UNDEF)
    if b != STALE and (b == UNDEF or (price > b if side == BID else price < b)):
        best[k] = price


@nb.njit(cache=True)
def _best(levels, best, iid, side):  # pragma: no cover - compiled
    k = (iid, side)
    b = best.get(k, UNDEF)
    if b != STALE:
        return b
    out = UNDEF
    if k in levels:
        for price in levels[k]:
            if out == UNDEF or (price > out if side == BID else price < out):
                out = price
    best[k] = out
    return out


@nb.njit(cache=True)
def apply_records(state, iid, oid, price, size, flags, action, side, ts, events_on,
                  log_publish):  # pragma: no cover - compiled
    """Apply one batch; return (trade_bid, trade_ask, events, publish log).

    Arrays are int64 except ``action``/``side`` (uint8), all shape (n,). ``events_on``: emit
    iceberg events; ``log_publish``: return (row, iid, bid, ask) at every ``F_LAST`` (tests).
    """
    orders, levels, best, published, status, filled, emptied, watched = state
    n = len(iid)
    n_trades = 0
    for i in range(n):
        if action[i] == 84:
            n_trades += 1
    trade_bid = np.full(n_trades, UNDEF, dtype=np.int64)
    trade_ask = np.full(n_trades, UNDEF, dtype=np.int64)
    events = np.zeros((max(16, n // 4), 11), dtype=np.int64)
    n_events = 0
    plog = np.zeros((n if log_publish else 0, 4), dtype=np.int64)
    n_log = 0
    t = 0
    for i in range(n):
        ins, act, flag = iid[i], action[i], flags[i]
        st0 = status.get(ins, 0)
        st = st0
        snap = (flag & F_SNAPSHOT) != 0
        if snap:
            if st & 2 == 0:  # a snapshot starts: the book is what it says
                _clear(orders, levels, best, ins)
                st = 2
        elif st & 2:
            st &= ~2
        emit = events_on and not snap
        if n_events + 2 >= len(events):
            grown = np.zeros((2 * len(events), 11), dtype=np.int64)
            grown[:n_events] = events[:n_events]
            events = grown
        if act == 84:  # T
            if st & 1 == 0 and ins in published:
                q = published[ins]
                trade_bid[t] = q[0]
                trade_ask[t] = q[1]
            t += 1
        elif act == 70:  # F
            key = (ins, oid[i])
            if emit and key in orders:
                o = orders[key]
                filled[key] = ts[i]
                e = events[n_events]
                e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7] = (
                    i, FILL, ins, oid[i], o[0], o[1], size[i], o[2])
                e[8] = levels[(ins, o[0])].get(o[1], 0)  # the level's size before the fill
                e[9] = price[i]  # the fill's own price (an auction fills away from the order's)
                n_events += 1
        elif act == 65 or act == 77 or act == 67:  # A, M, C
            key = (ins, oid[i])
            had = key in orders
            o_side = np.int64(0)
            o_price = np.int64(0)
            o_size = np.int64(0)
            if had:
                o = orders[key]
                o_side, o_price, o_size = o[0], o[1], o[2]
            empty = False
            if act == 67:
                if had:
                    n_side, n_price = o_side, o_price
                    n_size = o_size - min(size[i], o_size)
                else:
                    n_side, n_price, n_size = np.int64(0), UNDEF, np.int64(0)
            else:
                n_side, n_price, n_size = np.int64(side[i]), price[i], size[i]
            placed = n_size > 0 and n_price != UNDEF and (n_side == BID or n_side == ASK)
            if had and placed and n_price == o_price and n_side == o_side:
                level = levels[(ins, o_side)]  # same level: only its size changes
                level[o_price] = level[o_price] + n_size - o_size
                orders[key] = (n_side, n_price, n_size)
            else:
                if had:
                    empty = _take_out(levels, best, ins, o_side, o_price, o_size)
                if placed:
                    orders[key] = (n_side, n_price, n_size)
                    _put(levels, best, ins, n_side, n_price, n_size)
                elif had:
                    del orders[key]
            if emit:
                if act != 67 and placed:
                    interesting = key in filled
                    if not interesting and not had:
                        lk = (ins, n_side, n_price)
                        if lk in emptied:
                            interesting = True
                            watched[key] = 1
                    if interesting:
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                            i, PLACED, ins, oid[i], n_side, n_price, n_size)
                        e[7], e[8], e[9], e[10] = 1 if had else 0, o_side, o_price, o_size
                        n_events += 1
                elif act == 67 and had and not placed:
                    if key in filled or key in watched:
                        traded = filled.get(key, -1) == ts[i]
                        if traded and empty:
                            emptied[(ins, o_side, o_price)] = ts[i]
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                            i, REMOVED, ins, oid[i], o_side, o_price, 0)
                        e[7], e[8] = 1 if traded else 0, 1 if empty else 0
                        n_events += 1
                    if key in watched:
                        del watched[key]
        elif act == 82:  # R
            _clear(orders, levels, best, ins)
            st &= ~1
        if flag & F_MAYBE_BAD_BOOK:
            st |= 1
        if st != st0 or st0 == 0 and ins not in status:
            status[ins] = st
        if flag & F_LAST:
            bid = _best(levels, best, ins, np.int64(BID))
            ask = _best(levels, best, ins, np.int64(ASK))
            published[ins] = (bid, ask)
            if log_publish:
                plog[n_log, 0], plog[n_log, 1], plog[n_log, 2], plog[n_log, 3] = i, ins, bid, ask
                n_log += 1
    return trade_bid, trade_ask, events[:n_events], plog[:n_log]


@nb.njit(cache=True)
def prune(state, before_ns):  # pragma: no cover - compiled
    """Forget emptied levels, and fills of orders no longer resting, older than ``before_ns``."""
    orders, filled, emptied = state[0], state[5], state[6]
    old = []
    for key, ts in emptied.items():
        if ts < before_ns:
            old.append(key)
    for key in old:
        del emptied[key]
    gone = []
    for key, ts in filled.items():
        if ts < before_ns and key not in orders:
            gone.append(key)
    for key in gone:
        del filled[key]


@nb.njit(cache=True)
def export_orders(state):  # pragma: no cover - compiled
    """Resting orders as an (n, 5) int64 array: instrument_id, order_id, side, price, size."""
    orders = state[0]
    out = np.zeros((len(orders), 5), dtype=np.int64)
    j = 0
    for key, o in orders.items():
        out[j, 0], out[j, 1], out[j, 2], out[j, 3], out[j, 4] = key[0], key[1], o[0], o[1], o[2]
        j += 1
    return out


@nb.njit(cache=True)
def import_orders(state, rows):  # pragma: no cover - compiled
    """Rebuild orders, levels and best prices from :func:`export_orders` rows."""
    orders, levels, best = state[0], state[1], state[2]
    for j in range(len(rows)):
        ins, o, s, p, q = rows[j, 0], rows[j, 1], rows[j, 2], rows[j, 3], rows[j, 4]
        orders[(ins, o)] = (s, p, q)
        _put(levels, best, ins, s, p, q)


@nb.njit(cache=True)
def export_state(state):  # pragma: no cover - compiled
    """Export everything but the orders as int64 arrays.

    published (n, 3), status (n, 2), filled (n, 3), emptied (n, 4), watched (n, 2); the orders
    come from :func:`export_orders`.
    """
    published, status, filled, emptied, watched = state[3], state[4], state[5], state[6], state[7]
    pub = np.zeros((len(published), 3), dtype=np.int64)
    j = 0
    for k, v in published.items():
        pub[j, 0], pub[j, 1], pub[j, 2] = k, v[0], v[1]
        j += 1
    sta = np.zeros((len(status), 2), dtype=np.int64)
    j = 0
    for k, v in status.items():
        sta[j, 0], sta[j, 1] = k, v
        j += 1
    fil = np.zeros((len(filled), 3), dtype=np.int64)
    j = 0
    for k, v in filled.items():
        fil[j, 0], fil[j, 1], fil[j, 2] = k[0], k[1], v
        j += 1
    emp = np.zeros((len(emptied), 4), dtype=np.int64)
    j = 0
    for k, v in emptied.items():
        emp[j, 0], emp[j, 1], emp[j, 2], emp[j, 3] = k[0], k[1], k[2], v
        j += 1
    wat = np.zeros((len(watched), 2), dtype=np.int64)
    j = 0
    for k in watched:
        wat[j, 0], wat[j, 1] = k[0], k[1]
        j += 1
    return pub, sta, fil, emp, wat


@nb.njit(cache=True)
def import_state(state, orders, pub, sta, fil, emp, wat):  # pragma: no cover - compiled
    """Rebuild a fresh state from :func:`export_orders` and :func:`export_state` arrays."""
    import_orders(state, orders)
    published, status, filled, emptied, watched = state[3], state[4], state[5], state[6], state[7]
    for j in range(len(pub)):
        published[pub[j, 0]] = (pub[j, 1], pub[j, 2])
    for j in range(len(sta)):
        status[sta[j, 0]] = sta[j, 1]
    for j in range(len(fil)):
        filled[(fil[j, 0], fil[j, 1])] = fil[j, 2]
    for j in range(len(emp)):
        emptied[(emp[j, 0], emp[j, 1], emp[j, 2])] = emp[j, 3]
    for j in range(len(wat)):
        watched[(wat[j, 0], wat[j, 1])] = 1


@nb.njit(cache=True)
def level_of(state, instrument_id, side):  # pragma: no cover - compiled
    """One side's levels as an (n, 2) int64 array of (price, contracts), unsorted."""
    levels = state[1]
    k = (instrument_id, side)
    if k not in levels:
        return np.zeros((0, 2), dtype=np.int64)
    level = levels[k]
    out = np.zeros((len(level), 2), dtype=np.int64)
    j = 0
    for price, size in level.items():
        out[j, 0], out[j, 1] = price, size
        j += 1
    return out
