"""Compiled (numba) inner loop of :mod:`flows.book`: the book rules over a batch of MBO records.

Same rules as the :mod:`flows.book` docstring. Besides the published BBO before each trade it
emits the *book events* the iceberg detector (:mod:`flows.icebergs`) acts on, and only those:
every fill of a resting order; a placement (``A``/``M``) of an order that has traded before, or
of a new order at a price that fills emptied recently; a removal of an order that has traded or
was such a placement. Everything else (most adds, cancels and modifies) never reaches Python.

Event rows are int64, 11 columns (:data:`EVENT_COLUMNS`): the record's row, the kind (0 fill,
1 placed, 2 removed), instrument_id, order_id, side byte, price, size and four kind-specific
values.

State layout (:class:`BookState`, plain int64 numpy arrays, so a copy is a few ``memcpy``):

- four open-addressing hash tables (linear probing, backward-shift deletion, load ≤ 1/2), each
  a 2-D array whose row is (key1, key2, values...), key1 = -1 marking a free row:
  instruments (iid, 0 → slot), orders (slot, order_id → side byte, price, size, watched),
  fills (slot, order_id → ns of its last fill while resting) and emptied levels
  (2·slot + side, price → ns fills emptied it);
- per instrument *slot*: status bits (1 unreliable, 2 in a snapshot, 4 published), the
  published (bid, ask) and, per side, a block of the level pool;
- the level pool: rows (key, contracts) with key = price for bids and −price for asks, each
  side's block sorted ascending, so the best level is the block's last row and finding a
  price is a binary search. A block that fills moves to the pool's end with twice the room.

Typed dicts of tuples (the first version) cost ~390 ns per record on the 10 M-record bench
input; these arrays ~140 ns. Compiled helpers avoid ``and``/``or`` over array reads and keep a
single exit where they are not inlined: numba otherwise adds an atomic reference-count pair
on each array argument, per call (measured with ``perf``: it was half of the loop's time).
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from models.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, UNDEF_PRICE

UNDEF = np.int64(UNDEF_PRICE)
BID, ASK = 66, 65  # ord("B"), ord("A")
EVENT_COLUMNS = ("row", "kind", "instrument_id", "order_id", "side", "price", "size",
                 "b", "c", "d", "e")
"""fill: b = shown size, c = the level's size before the fill, d = the fill's price ·
placed: b = existed before,
c = side before, d = price before, e = size before · removed: b = traded in the same event,
c = level now empty."""
FILL, PLACED, REMOVED = 0, 1, 2

FREE = -1
# counts[] indices
N_INS, N_ORDERS, N_FILLED, N_EMPTIED, POOL_USED, MAX_CAP = 0, 1, 2, 3, 4, 5
ST_BAD, ST_SNAP, ST_PUB = 1, 2, 4
BLOCK0 = 8


class BookState(NamedTuple):
    """Every array of the compiled book (module docstring); all int64."""

    counts: np.ndarray  # (6,) instruments, orders, fills, emptied levels, pool rows used,
    # largest block capacity
    ins: np.ndarray  # (cap, 3) iid, 0, slot
    slot_iid: np.ndarray  # (slots,) instrument_id of each slot
    status: np.ndarray  # (slots,)
    pub: np.ndarray  # (slots, 2) published bid, ask
    blk: np.ndarray  # (2·slots, 3) pool offset, capacity, rows of each side's block
    pool: np.ndarray  # (rows, 2) key, contracts
    orders: np.ndarray  # (cap, 6) slot, order_id, side byte, price, size, watched
    filled: np.ndarray  # (cap, 3) slot, order_id, ns
    emptied: np.ndarray  # (cap, 3) 2·slot + side, price, ns


def _table(capacity: int, width: int) -> np.ndarray:
    out = np.zeros((capacity, width), dtype=np.int64)
    out[:, 0] = FREE
    return out


def new_state() -> BookState:
    """Return an empty state."""
    slots = 16
    blk = np.zeros((2 * slots, 3), dtype=np.int64)
    return BookState(np.zeros(6, dtype=np.int64), _table(64, 3),
                     np.zeros(slots, dtype=np.int64), np.zeros(slots, dtype=np.int64),
                     np.full((slots, 2), UNDEF, dtype=np.int64), blk,
                     np.zeros((1024, 2), dtype=np.int64), _table(1024, 6), _table(1024, 3),
                     _table(1024, 3))


def copy_state(state: BookState) -> BookState:
    """Return an independent copy (array copies)."""
    return BookState(*(a.copy() for a in state))


# --- hash tables ---------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _hash(a, b):  # pragma: no cover - compiled
    h = a * np.int64(-7046029254386353131) + b  # 0x9E3779B97F4A7C15
    h ^= (h >> 31) & np.int64(0x1FFFFFFFF)
    h *= np.int64(-4658895280553007687)  # 0xBF58476D1CE4E5B9
    h ^= (h >> 29) & np.int64(0x7FFFFFFFF)
    return h


@nb.njit(cache=True, inline="always")
def _find(tab, a, b):  # pragma: no cover - compiled
    """Row of key (a, b), or -1.

    Compiled helpers here keep one exit and no ``and``/``or`` over array reads: numba adds a
    reference-count pair on the arrays otherwise, which tripled the cost of a record.
    """
    mask = len(tab) - 1
    i = _hash(a, b) & mask
    out = -1
    while True:
        k = tab[i, 0]
        if k == FREE:
            break
        if k == a:
            if tab[i, 1] == b:
                out = i
                break
        i = (i + 1) & mask
    return out


@nb.njit(cache=True, inline="always")
def _slot_for(tab, a, b):  # pragma: no cover - compiled
    """Row of key (a, b), or the free row where it goes, as -(row + 1)."""
    mask = len(tab) - 1
    i = _hash(a, b) & mask
    out = 0
    while True:
        k = tab[i, 0]
        if k == FREE:
            out = -(i + 1)
            break
        if k == a:
            if tab[i, 1] == b:
                out = i
                break
        i = (i + 1) & mask
    return out


@nb.njit(cache=True, inline="always")
def _delete(tab, i):  # pragma: no cover - compiled
    """Free row ``i``, shifting later rows of its probe run back (no tombstones)."""
    mask = len(tab) - 1
    j = i
    moving = True
    while moving:
        tab[i, 0] = FREE
        found = False
        while True:
            j = (j + 1) & mask
            if tab[j, 0] == FREE:
                break
            home = _hash(tab[j, 0], tab[j, 1]) & mask
            # the row at j stays if its home lies cyclically in (i, j]
            if not (((i <= j) & (i < home) & (home <= j)) | ((i > j) & ((home > i) | (home <= j)))):
                found = True
                break
        if found:
            for c in range(tab.shape[1]):
                tab[i, c] = tab[j, c]
            i = j
        else:
            moving = False


@nb.njit(cache=True)
def _rehash(tab, capacity):  # pragma: no cover - compiled
    out = np.zeros((capacity, tab.shape[1]), dtype=np.int64)
    out[:, 0] = FREE
    mask = capacity - 1
    for r in range(len(tab)):
        if tab[r, 0] != FREE:
            i = _hash(tab[r, 0], tab[r, 1]) & mask
            while out[i, 0] != FREE:
                i = (i + 1) & mask
            out[i, :] = tab[r, :]
    return out


# --- level blocks --------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _lower(pool, off, n, key):  # pragma: no cover - compiled
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if pool[off + mid, 0] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True, inline="always")
def _level_size(pool, blk, j, key):  # pragma: no cover - compiled
    off, n = blk[j, 0], blk[j, 2]
    p = _lower(pool, off, n, key)
    out = 0
    if p < n:
        if pool[off + p, 0] == key:
            out = pool[off + p, 1]
    return out


@nb.njit(cache=True, inline="always")
def _put(pool, blk, counts, j, key, size):  # pragma: no cover - compiled
    """Add ``size`` at ``key`` of block ``j`` (the caller made room: :func:`_limits`)."""
    off, cap, n = blk[j, 0], blk[j, 1], blk[j, 2]
    p = _lower(pool, off, n, key)
    hit = False
    if p < n:
        if pool[off + p, 0] == key:
            pool[off + p, 1] += size
            hit = True
    if not hit:
        if n == cap:  # move the block to the pool's end with twice the room
            new_cap = max(BLOCK0, 2 * cap)
            used = counts[POOL_USED]
            for q in range(n):
                pool[used + q, 0] = pool[off + q, 0]
                pool[used + q, 1] = pool[off + q, 1]
            off = used
            counts[POOL_USED] = used + new_cap
            counts[MAX_CAP] = max(counts[MAX_CAP], new_cap)
            blk[j, 0], blk[j, 1] = off, new_cap
        for q in range(off + n, off + p, -1):
            pool[q, 0] = pool[q - 1, 0]
            pool[q, 1] = pool[q - 1, 1]
        pool[off + p, 0] = key
        pool[off + p, 1] = size
        blk[j, 2] = n + 1


@nb.njit(cache=True, inline="always")
def _take(pool, blk, j, key, size):  # pragma: no cover - compiled
    """Remove ``size`` at ``key`` of block ``j``; True when the level is now empty."""
    off, n = blk[j, 0], blk[j, 2]
    p = _lower(pool, off, n, key)
    empty = True
    if p < n:
        if pool[off + p, 0] == key:
            left = pool[off + p, 1] - size
            if left > 0:
                pool[off + p, 1] = left
                empty = False
            else:
                for q in range(off + p, off + n - 1):
                    pool[q, 0] = pool[q + 1, 0]
                    pool[q, 1] = pool[q + 1, 1]
                blk[j, 2] = n - 1
    return empty


@nb.njit(cache=True, inline="always")
def _j(slot, side):  # pragma: no cover - compiled
    return 2 * slot + (0 if side == BID else 1)


@nb.njit(cache=True, inline="always")
def _key(side, price):  # pragma: no cover - compiled
    return price if side == BID else -price


@nb.njit(cache=True, inline="always")
def _best(pool, blk, slot, side):  # pragma: no cover - compiled
    j = _j(slot, side)
    n = blk[j, 2]
    out = UNDEF
    if n > 0:
        k = pool[blk[j, 0] + n - 1, 0]
        out = k if side == BID else -k
    return out


@nb.njit(cache=True)
def _clear(orders, counts, blk, slot):  # pragma: no cover - compiled
    """Drop the slot's resting orders and levels."""
    gone = []
    for r in range(len(orders)):
        if orders[r, 0] == slot:
            gone.append(orders[r, 1])
    for oid in gone:
        _delete(orders, _find(orders, slot, oid))
    counts[N_ORDERS] -= len(gone)
    blk[2 * slot, 2] = 0
    blk[2 * slot + 1, 2] = 0


@nb.njit(cache=True, inline="always")
def _instrument(ins, slot_iid, counts, iid):  # pragma: no cover - compiled
    """Slot of ``iid``, a new one on first sight (the caller made room)."""
    r = _slot_for(ins, iid, 0)
    slot = np.int64(0)
    if r >= 0:
        slot = ins[r, 2]
    else:
        slot = counts[N_INS]
        slot_iid[slot] = iid
        counts[N_INS] = slot + 1
        r = -r - 1
        ins[r, 0], ins[r, 1], ins[r, 2] = iid, 0, slot
    return slot


@nb.njit(cache=True, inline="always")
def _upsert(tab, counts, c, a, b, value):  # pragma: no cover - compiled
    """Set the first value of key (a, b) (the caller made room)."""
    r = _slot_for(tab, a, b)
    if r < 0:
        r = -r - 1
        tab[r, 0], tab[r, 1] = a, b
        counts[c] += 1
    tab[r, 2] = value


@nb.njit(cache=True)
def _limits(ins, slot_iid, pool, orders, filled, emptied):  # pragma: no cover - compiled
    """Return the counts at which one more record could overflow a table or the pool.

    (orders, fills, emptied levels, instruments, pool rows used + twice the largest block).
    Checked per record as plain integers: a short-circuit ``and`` over arrays inside the loop
    costs numba a reference-count pair per record.
    """
    out = np.empty(5, dtype=np.int64)
    out[0] = len(orders) // 2 - 1
    out[1] = len(filled) // 2 - 1
    out[2] = len(emptied) // 2 - 1
    out[3] = min(len(ins) // 2 - 1, len(slot_iid))
    out[4] = len(pool)
    return out


def _pow2(n: int) -> int:
    cap = 1024
    while cap < n:
        cap *= 2
    return cap


def _grow(state: BookState) -> BookState:
    """Double whatever :func:`_limits` found short."""
    c = state.counts
    out = state
    for name, count in (("orders", c[N_ORDERS]), ("filled", c[N_FILLED]),
                        ("emptied", c[N_EMPTIED]), ("ins", c[N_INS])):
        tab = getattr(out, name)
        if count >= len(tab) // 2 - 1:
            out = out._replace(**{name: _rehash(tab, 2 * len(tab))})
    slots = len(out.slot_iid)
    if c[N_INS] >= slots:
        m = 2 * slots
        pub = np.full((m, 2), UNDEF, dtype=np.int64)
        pub[:slots] = out.pub
        out = out._replace(slot_iid=np.resize(out.slot_iid, m),
                           status=np.concatenate([out.status, np.zeros(slots, np.int64)]),
                           pub=pub, blk=np.concatenate([out.blk, np.zeros((2 * slots, 3), np.int64)]))
    need = int(c[POOL_USED]) + 2 * max(int(c[MAX_CAP]), BLOCK0)
    if need > len(out.pool):
        pool = np.zeros((max(2 * len(out.pool), need), 2), dtype=np.int64)
        pool[:len(out.pool)] = out.pool
        out = out._replace(pool=pool)
    return out


# --- the batch loop ------------------------------------------------------------------------


@nb.njit(cache=True)
def _run(counts, ins, slot_iid, status, pub, blk, pool, orders, filled, emptied, iid, oid,
         price, size, flags, action, side, ts, events_on, log_publish, start, trade_bid,
         trade_ask, t, events, n_events, plog, n_log):  # pragma: no cover - compiled
    """Apply records from ``start`` until the batch ends or a table needs room.

    Return (next row, trades written, events written, log rows written). No array is
    reallocated here (a loop-carried array reassigned costs a reference count per record).
    """
    n = len(iid)
    last_iid = np.int64(-1)
    slot = np.int64(-1)
    lim = _limits(ins, slot_iid, pool, orders, filled, emptied)
    lim_o, lim_f, lim_e, lim_i, lim_p = lim[0], lim[1], lim[2], lim[3], lim[4]
    lim_ev = len(events) - 2
    for i in range(start, n):
        if ((counts[N_ORDERS] >= lim_o) | (counts[N_FILLED] >= lim_f)
                | (counts[N_EMPTIED] >= lim_e) | (counts[N_INS] >= lim_i) | (n_events > lim_ev)
                | (counts[POOL_USED] + 2 * max(counts[MAX_CAP], BLOCK0) > lim_p)):
            return i, t, n_events, n_log
        ins_id, act, flag = iid[i], action[i], flags[i]
        if ins_id != last_iid:
            slot = _instrument(ins, slot_iid, counts, ins_id)
            last_iid = ins_id
        st0 = status[slot]
        st = st0
        snap = (flag & F_SNAPSHOT) != 0
        if snap:
            if st & ST_SNAP == 0:  # a snapshot starts: the book is what it says
                _clear(orders, counts, blk, slot)
                st = (st & ST_PUB) | ST_SNAP
        elif st & ST_SNAP:
            st &= ~ST_SNAP
        emit = events_on & (not snap)
        if act == 84:  # T
            if (st & (ST_BAD | ST_PUB)) == ST_PUB:
                trade_bid[t] = pub[slot, 0]
                trade_ask[t] = pub[slot, 1]
            t += 1
        elif act == 70:  # F
            if emit:
                r = _find(orders, slot, oid[i])
                if r >= 0:
                    o_side, o_price, o_size = orders[r, 2], orders[r, 3], orders[r, 4]
                    _upsert(filled, counts, N_FILLED, slot, oid[i], ts[i])
                    e = events[n_events]
                    e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7] = (
                        i, FILL, ins_id, oid[i], o_side, o_price, size[i], o_size)
                    e[8] = _level_size(pool, blk, _j(slot, o_side), _key(o_side, o_price))
                    e[9] = price[i]  # the fill's own price (an auction fills away from it)
                    n_events += 1
        elif (act == 65) | (act == 77) | (act == 67):  # A, M, C
            r = _find(orders, slot, oid[i])
            had = r >= 0
            o_side = np.int64(0)
            o_price = np.int64(0)
            o_size = np.int64(0)
            watched = np.int64(0)
            if had:
                o_side, o_price, o_size, watched = (orders[r, 2], orders[r, 3], orders[r, 4],
                                                    orders[r, 5])
            empty = False
            if act == 67:
                if had:
                    n_side, n_price = o_side, o_price
                    n_size = o_size - min(size[i], o_size)
                else:
                    n_side, n_price, n_size = np.int64(0), UNDEF, np.int64(0)
            else:
                n_side, n_price, n_size = np.int64(side[i]), price[i], size[i]
            placed = (n_size > 0) & (n_price != UNDEF) & ((n_side == BID) | (n_side == ASK))
            if had & placed & (n_price == o_price) & (n_side == o_side):
                # same level: only its size changes
                j = _j(slot, o_side)
                off, nl = blk[j, 0], blk[j, 2]
                p = _lower(pool, off, nl, _key(o_side, o_price))
                pool[off + p, 1] += n_size - o_size
                orders[r, 4] = n_size
            else:
                if had:
                    empty = _take(pool, blk, _j(slot, o_side), _key(o_side, o_price), o_size)
                if placed:
                    if had:
                        orders[r, 2], orders[r, 3], orders[r, 4] = n_side, n_price, n_size
                    else:
                        r = -_slot_for(orders, slot, oid[i]) - 1
                        orders[r, 0], orders[r, 1], orders[r, 2] = slot, oid[i], n_side
                        orders[r, 3], orders[r, 4], orders[r, 5] = n_price, n_size, 0
                        counts[N_ORDERS] += 1
                    _put(pool, blk, counts, _j(slot, n_side), _key(n_side, n_price), n_size)
                elif had:
                    _delete(orders, r)
                    counts[N_ORDERS] -= 1
            if emit:
                if (act != 67) & placed:
                    interesting = _find(filled, slot, oid[i]) >= 0
                    if (not interesting) & (not had):
                        if _find(emptied, _j(slot, n_side), n_price) >= 0:
                            interesting = True
                            orders[_find(orders, slot, oid[i]), 5] = 1
                    if interesting:
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                            i, PLACED, ins_id, oid[i], n_side, n_price, n_size)
                        e[7], e[8], e[9], e[10] = 1 if had else 0, o_side, o_price, o_size
                        n_events += 1
                elif (act == 67) & had & (not placed):
                    fr = _find(filled, slot, oid[i])
                    if (fr >= 0) | (watched != 0):
                        traded = False
                        if fr >= 0:
                            traded = filled[fr, 2] == ts[i]
                        if traded & empty:
                            _upsert(emptied, counts, N_EMPTIED, _j(slot, o_side),
                                              o_price, ts[i])
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                            i, REMOVED, ins_id, oid[i], o_side, o_price, 0)
                        e[7], e[8] = 1 if traded else 0, 1 if empty else 0
                        n_events += 1
        elif act == 82:  # R
            _clear(orders, counts, blk, slot)
            st &= ~ST_BAD
        if flag & F_MAYBE_BAD_BOOK:
            st |= ST_BAD
        if flag & F_LAST:
            bid = _best(pool, blk, slot, BID)
            ask = _best(pool, blk, slot, ASK)
            pub[slot, 0] = bid
            pub[slot, 1] = ask
            st |= ST_PUB
            if log_publish:
                plog[n_log, 0], plog[n_log, 1], plog[n_log, 2], plog[n_log, 3] = i, ins_id, bid, ask
                n_log += 1
        if st != st0:
            status[slot] = st
    return n, t, n_events, n_log


def apply_records(state: BookState, iid: np.ndarray, oid: np.ndarray, price: np.ndarray,
                  size: np.ndarray, flags: np.ndarray, action: np.ndarray, side: np.ndarray,
                  ts: np.ndarray, events_on: bool, log_publish: bool
                  ) -> tuple[BookState, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply one batch; return (state, trade_bid, trade_ask, events, publish log).

    Arrays are int64 except ``action``/``side`` (uint8), all shape (n,). ``events_on``: emit
    iceberg events; ``log_publish``: return (row, iid, bid, ask) at every ``F_LAST`` (tests).
    The returned state replaces ``state`` (arrays that grew are new).
    """
    n = len(iid)
    n_trades = int(np.count_nonzero(action == 84))
    trade_bid = np.full(n_trades, UNDEF, dtype=np.int64)
    trade_ask = np.full(n_trades, UNDEF, dtype=np.int64)
    events = np.zeros((max(16, n // 4) if events_on else 16, 11), dtype=np.int64)
    plog = np.zeros((n if log_publish else 0, 4), dtype=np.int64)
    i = t = n_events = n_log = 0
    while True:
        i, t, n_events, n_log = _run(*state, iid, oid, price, size, flags, action, side, ts,
                                     events_on, log_publish, i, trade_bid, trade_ask, t, events,
                                     n_events, plog, n_log)
        if i >= n:
            return state, trade_bid, trade_ask, events[:n_events], plog[:n_log]
        more_events = n_events + 2 > len(events)
        if more_events:
            events = np.concatenate([events, np.zeros_like(events)])
        grown = _grow(state)
        if not more_events and all(a is b for a, b in zip(grown, state, strict=True)):
            msg = f"book state did not grow at record {i} of {n}: counts {state.counts.tolist()}"
            raise RuntimeError(msg)
        state = grown


@nb.njit(cache=True)
def _keep(tab, live):  # pragma: no cover - compiled
    """Return the rows flagged in ``live``, rehashed into a table sized for them."""
    k = 0
    for r in range(len(tab)):
        if live[r]:
            k += 1
    cap = 1024
    while cap < 2 * (k + 1):
        cap *= 2
    out = np.zeros((cap, tab.shape[1]), dtype=np.int64)
    out[:, 0] = FREE
    mask = cap - 1
    for r in range(len(tab)):
        if live[r]:
            i = _hash(tab[r, 0], tab[r, 1]) & mask
            while out[i, 0] != FREE:
                i = (i + 1) & mask
            out[i, :] = tab[r, :]
    return out, k


@nb.njit(cache=True)
def _prune(counts, orders, filled, emptied, before_ns):  # pragma: no cover - compiled
    live = np.zeros(len(emptied), dtype=np.bool_)
    for r in range(len(emptied)):
        live[r] = (emptied[r, 0] != FREE) & (emptied[r, 2] >= before_ns)
    emptied, counts[N_EMPTIED] = _keep(emptied, live)
    live = np.zeros(len(filled), dtype=np.bool_)
    for r in range(len(filled)):
        if filled[r, 0] != FREE:
            live[r] = filled[r, 2] >= before_ns
            if not live[r]:
                live[r] = _find(orders, filled[r, 0], filled[r, 1]) >= 0
    filled, counts[N_FILLED] = _keep(filled, live)
    return filled, emptied


def prune(state: BookState, before_ns: int) -> BookState:
    """Forget emptied levels, and fills of orders no longer resting, older than ``before_ns``."""
    filled, emptied = _prune(state.counts, state.orders, state.filled, state.emptied,
                             np.int64(before_ns))
    return state._replace(filled=filled, emptied=emptied)


# --- export / import (pickling, tests) -----------------------------------------------------


def export_orders(state: BookState) -> np.ndarray:
    """Resting orders as an (n, 5) int64 array: instrument_id, order_id, side, price, size."""
    o = state.orders[state.orders[:, 0] != FREE]
    return np.column_stack([state.slot_iid[o[:, 0]], o[:, 1], o[:, 2], o[:, 3], o[:, 4]])


def export_state(state: BookState) -> tuple[np.ndarray, ...]:
    """Export everything but the orders as int64 arrays.

    published (n, 3), status (n, 2), filled (n, 3), emptied (n, 4), watched (n, 2); the orders
    come from :func:`export_orders`.
    """
    slots = int(state.counts[N_INS])
    iids = state.slot_iid[:slots]
    st = state.status[:slots]
    pub_rows = np.flatnonzero(st & ST_PUB)
    pub = np.column_stack([iids[pub_rows], state.pub[pub_rows, 0], state.pub[pub_rows, 1]])
    sta = np.column_stack([iids, st & ~ST_PUB])
    f = state.filled[state.filled[:, 0] != FREE]
    fil = np.column_stack([state.slot_iid[f[:, 0]], f[:, 1], f[:, 2]])
    e = state.emptied[state.emptied[:, 0] != FREE]
    emp = np.column_stack([state.slot_iid[e[:, 0] // 2], np.where(e[:, 0] % 2 == 0, BID, ASK),
                           e[:, 1], e[:, 2]])
    o = state.orders[(state.orders[:, 0] != FREE) & (state.orders[:, 5] != 0)]
    wat = np.column_stack([state.slot_iid[o[:, 0]], o[:, 1]])
    return tuple(np.asarray(a, dtype=np.int64) for a in (pub, sta, fil, emp, wat))


@nb.njit(cache=True)
def _import(counts, ins, slot_iid, status, pub_a, blk, pool, o_tab, filled, emptied, orders,
            pub, sta, fil, emp, wat):  # pragma: no cover - compiled
    for j in range(len(sta)):
        status[_instrument(ins, slot_iid, counts, sta[j, 0])] = sta[j, 1]
    for j in range(len(pub)):
        slot = _instrument(ins, slot_iid, counts, pub[j, 0])
        pub_a[slot, 0], pub_a[slot, 1] = pub[j, 1], pub[j, 2]
        status[slot] |= ST_PUB
    for j in range(len(orders)):
        slot = _instrument(ins, slot_iid, counts, orders[j, 0])
        r = -_slot_for(o_tab, slot, orders[j, 1]) - 1
        o_tab[r, 0], o_tab[r, 1], o_tab[r, 2] = slot, orders[j, 1], orders[j, 2]
        o_tab[r, 3], o_tab[r, 4], o_tab[r, 5] = orders[j, 3], orders[j, 4], 0
        counts[N_ORDERS] += 1
        _put(pool, blk, counts, _j(slot, orders[j, 2]), _key(orders[j, 2], orders[j, 3]),
             orders[j, 4])
    for j in range(len(fil)):
        slot = _instrument(ins, slot_iid, counts, fil[j, 0])
        _upsert(filled, counts, N_FILLED, slot, fil[j, 1], fil[j, 2])
    for j in range(len(emp)):
        slot = _instrument(ins, slot_iid, counts, emp[j, 0])
        _upsert(emptied, counts, N_EMPTIED, _j(slot, emp[j, 1]), emp[j, 2], emp[j, 3])
    for j in range(len(wat)):
        r = _find(o_tab, _instrument(ins, slot_iid, counts, wat[j, 0]), wat[j, 1])
        if r >= 0:
            o_tab[r, 5] = 1


def import_state(orders: np.ndarray, pub: np.ndarray, sta: np.ndarray, fil: np.ndarray,
                 emp: np.ndarray, wat: np.ndarray) -> BookState:
    """Build a state from :func:`export_orders` and :func:`export_state` arrays."""
    widths = (5, 3, 2, 3, 4, 2)
    orders, pub, sta, fil, emp, wat = (
        np.ascontiguousarray(a, dtype=np.int64).reshape(-1, w)
        for a, w in zip((orders, pub, sta, fil, emp, wat), widths, strict=True))
    iids = np.unique(np.concatenate([orders[:, 0], pub[:, 0], sta[:, 0], fil[:, 0], emp[:, 0],
                                     wat[:, 0]]))
    slots = max(16, len(iids))
    # a block of n levels relocates at 8, 16, ... rows: at most 4n + 8 rows of pool each
    pool_rows = 4 * len(orders) + 2 * BLOCK0 * 2 * slots + 1024
    state = BookState(np.zeros(6, dtype=np.int64), _table(_pow2(2 * (len(iids) + 1)), 3),
                      np.zeros(slots, dtype=np.int64), np.zeros(slots, dtype=np.int64),
                      np.full((slots, 2), UNDEF, dtype=np.int64),
                      np.zeros((2 * slots, 3), dtype=np.int64),
                      np.zeros((pool_rows, 2), dtype=np.int64),
                      _table(_pow2(2 * (len(orders) + 1)), 6),
                      _table(_pow2(2 * (len(fil) + 1)), 3), _table(_pow2(2 * (len(emp) + 1)), 3))
    _import(*state, orders, pub, sta, fil, emp, wat)
    return state


def level_of(state: BookState, instrument_id: int, side: int) -> np.ndarray:
    """One side's levels as an (n, 2) int64 array of (price, contracts), best last."""
    slots = int(state.counts[N_INS])
    hit = np.flatnonzero(state.slot_iid[:slots] == instrument_id)
    if not len(hit):
        return np.zeros((0, 2), dtype=np.int64)
    j = 2 * int(hit[0]) + (0 if side == BID else 1)
    off, _cap, n = (int(v) for v in state.blk[j])
    rows = state.pool[off:off + n].copy()
    if side != BID:
        rows[:, 0] = -rows[:, 0]
    return rows
