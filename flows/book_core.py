"""Compiled (numba) inner loop of :mod:`flows.book`: the book rules over a batch of MBO records.

Same rules as the :mod:`flows.book` docstring. Besides the published BBO before each trade it
keeps each order's fills and the levels fills emptied, runs the absorption detector
(:mod:`flows.absorption`) in place, and emits the *book events* the iceberg detector
(:mod:`flows.icebergs`) can act on, and only those: fills and removals of orders that traded
more than they showed (native) or were placed at a level fills just emptied (possible
synthetic tranches); placements that replenish an order filled within ``refill_ns``, or that
refill such a level. Everything else never reaches Python.

Event rows are int64, 16 columns (:data:`EVENT_COLUMNS`): the record's row, the kind (0 fill,
1 placed, 2 removed), instrument_id, order_id, side byte, price, size and nine kind-specific
values.

State layout (:class:`BookState`, plain int64 numpy arrays, so a copy is a few ``memcpy``):

- four open-addressing hash tables (linear probing, backward-shift deletion, load ≤ 1/2), each
  a 2-D array whose row is (key1, key2, values...), key1 = -1 marking a free row:
  instruments (iid, 0 → slot), orders (slot, order_id → side byte, price, size, bits
  :data:`WATCHED`/:data:`NATIVE`), fills (slot, order_id → ns of its last fill, contracts
  since the book last showed it, in all, native) and emptied levels (2·slot + side, price → ns
  fills emptied it, what the emptying order traded in all);
- the iceberg detector's memory of fills ends at ``counts[TK_LIMIT]`` (set by :func:`prune`):
  older fills read as none, as when the detector kept them itself;
- per instrument *slot*: status bits (1 unreliable, 2 in a snapshot, 4 published), the
  published (bid, ask) and, per side, a block of the level pool;
- the level pool: rows (key, contracts) with key = price for bids and −price for asks, each
  side's block sorted ascending, so the best level is the block's last row and finding a
  price is a binary search. A block that fills moves to the pool's end with twice the room.

Typed dicts of tuples (the first version) cost ~390 ns per record on the 10 M-record bench
input; these arrays ~120 ns. Compiled helpers avoid ``and``/``or`` over array reads and keep a
single exit where they are not inlined: numba otherwise adds an atomic reference-count pair
on each array argument, per call (measured with ``perf``: it was half of the loop's time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba as nb
import numpy as np

from models.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, UNDEF_PRICE

UNDEF = np.int64(UNDEF_PRICE)
BID, ASK = 66, 65  # ord("B"), ord("A")
EVENT_COLUMNS = ("row", "kind", "instrument_id", "order_id", "side", "price", "size",
                 "b", "c", "d", "e", "fill_ts", "since", "filled", "emptied_ts", "clip")
"""fill: b = shown size · placed: b = existed before, c = side before, d = price before,
e = size before, then the detector's view of the order's fills (ns of the last, -1 none;
contracts since the book last showed it; in all) and of the level (ns fills emptied it
within refill_ns, -1 none; what the order that emptied it traded in all) · removed: b =
traded in the same event, c = level now empty."""
FILL, PLACED, REMOVED = 0, 1, 2

FREE = -1
# counts[] indices
N_INS, N_ORDERS, N_FILLED, N_EMPTIED, POOL_USED, MAX_CAP, TK_LIMIT = 0, 1, 2, 3, 4, 5, 6
WATCHED, NATIVE = 1, 2  # order bits: placed at a level fills just emptied; a native iceberg
ST_BAD, ST_SNAP, ST_PUB = 1, 2, 4
BLOCK0 = 8


class BookState(NamedTuple):
    """Every array of the compiled book (module docstring); all int64."""

    counts: np.ndarray  # (8,) instruments, orders, fills, emptied levels, pool rows used,
    # largest block capacity, ns before which the iceberg detector forgets fills, spare
    ins: np.ndarray  # (cap, 3) iid, 0, slot
    slot_iid: np.ndarray  # (slots,) instrument_id of each slot
    status: np.ndarray  # (slots,)
    pub: np.ndarray  # (slots, 2) published bid, ask
    blk: np.ndarray  # (2·slots, 3) pool offset, capacity, rows of each side's block
    pool: np.ndarray  # (rows, 2) key, contracts
    orders: np.ndarray  # (cap, 6) slot, order_id, side byte, price, size, bits
    filled: np.ndarray  # (cap, 6) slot, order_id, ns, since shown, in all, native
    emptied: np.ndarray  # (cap, 4) 2·slot + side, price, ns, clip


def _table(capacity: int, width: int) -> np.ndarray:
    out = np.zeros((capacity, width), dtype=np.int64)
    out[:, 0] = FREE
    return out


def new_state() -> BookState:
    """Return an empty state."""
    slots = 16
    blk = np.zeros((2 * slots, 3), dtype=np.int64)
    counts = np.zeros(8, dtype=np.int64)
    counts[TK_LIMIT] = np.iinfo(np.int64).min
    return BookState(counts, _table(64, 3),
                     np.zeros(slots, dtype=np.int64), np.zeros(slots, dtype=np.int64),
                     np.full((slots, 2), UNDEF, dtype=np.int64), blk,
                     np.zeros((1024, 2), dtype=np.int64), _table(1024, 6), _table(1024, 6),
                     _table(1024, 4))


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
def _slot_for(tab, a, b):  # pragma: no cover - compiled
    """Row of key (a, b), or the free row where it goes, as -(row + 1).

    Compiled helpers here keep one exit and no ``and``/``or`` over array reads: numba adds a
    reference-count pair on the arrays otherwise, which tripled the cost of a record.
    """
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
def _find(tab, a, b):  # pragma: no cover - compiled
    """Row of key (a, b), or -1."""
    r = _slot_for(tab, a, b)
    return r if r >= 0 else -1


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
    """Add ``size`` at ``key`` of block ``j`` (the caller made room: :func:`_run` checks)."""
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
def _clear(orders, counts, blk, slot):  # pragma: no cover - compiled
    """Drop the slot's resting orders and levels.

    One pass: a deletion shifts later rows of the probe run back into the row just freed, so
    the row is checked again before moving on; rows only move towards the freed one, never
    into rows already passed (other than rows already checked, after the table wraps).
    """
    gone = 0
    for r in range(len(orders)):
        while orders[r, 0] == slot:
            _delete(orders, r)
            gone += 1
    counts[N_ORDERS] -= gone
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


def shard_of(instrument_id: np.ndarray, shards: int) -> np.ndarray:
    """Shard (uint8) of each instrument_id: Fibonacci hashing, so ids in steps spread evenly."""
    if shards == 1:
        return np.zeros(instrument_id.shape, dtype=np.uint8)
    mixed = (instrument_id.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (mixed % np.uint64(shards)).astype(np.uint8)


def rows_to_table(rows: np.ndarray, smallest: int = 1024) -> np.ndarray:
    """Return a hash table (this module's layout) holding ``rows`` (n, width), ≤ half full."""
    return _rehash(rows if len(rows) else np.full((1, rows.shape[1]), FREE, dtype=np.int64),
                   _pow2(2 * (len(rows) + 1), smallest))


def _pow2(n: int, smallest: int = 1024) -> int:
    cap = smallest
    while cap < n:
        cap *= 2
    return cap


def _grow(state: BookState) -> BookState:
    """Double whatever :func:`_run` found short."""
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


@nb.njit(cache=True, nogil=True)
def _run(counts, ins, slot_iid, status, pub, blk, pool, orders, filled, emptied, iid, oid,
         price, size, flags, action, side, ts, shard, me, tix, icebergs_on, absorption_on,
         log_publish, start, trade_bid, trade_ask, t, events, n_events, plog, n_log, refill_ns,
         runs, a_count, done, n_done, gap_ns, min_volume, min_ratio):  # pragma: no cover
    """Apply the records of shard ``me`` from ``start`` until the batch ends or a table needs room.

    ``shard[i]``: the book shard of record i (others are skipped); ``tix[i]``: the index of
    record i among the batch's trades. Return (next row, trades written, events written, log
    rows written, absorption events written). No array is reallocated here (a loop-carried
    array reassigned costs a reference count per record). Runs without the GIL.
    """
    n = len(iid)
    last_iid = np.int64(-1)
    slot = np.int64(-1)
    lim_o = len(orders) // 2 - 1
    lim_f = len(filled) // 2 - 1
    lim_e = len(emptied) // 2 - 1
    lim_i = min(len(ins) // 2 - 1, len(slot_iid))
    lim_p = len(pool)
    lim_r = len(runs) // 2 - 1
    lim_ev = len(events) - 2
    lim_d = len(done) - 1
    tk_limit = counts[TK_LIMIT]
    for i in range(start, n):
        if ((counts[N_ORDERS] >= lim_o) | (counts[N_FILLED] >= lim_f)
                | (counts[N_EMPTIED] >= lim_e) | (counts[N_INS] >= lim_i) | (n_events > lim_ev)
                | (counts[POOL_USED] + 2 * max(counts[MAX_CAP], BLOCK0) > lim_p)
                | (a_count[0] >= lim_r) | (n_done > lim_d)):
            return i, t, n_events, n_log, n_done
        if shard[i] != me:
            continue
        # the record's fields as int64 (inputs may be strided views of the DBN records, of
        # unsigned types: uint64 arithmetic with int64 would give float64 in numba)
        ins_id, act, flag = np.int64(iid[i]), np.int64(action[i]), np.int64(flags[i])
        o_id, px, qty = np.int64(oid[i]), np.int64(price[i]), np.int64(size[i])
        at = np.int64(ts[i])
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
        bergs = icebergs_on & (not snap)
        absorb = absorption_on & (not snap)
        if act == 84:  # T
            if (st & (ST_BAD | ST_PUB)) == ST_PUB:
                trade_bid[tix[i]] = pub[slot, 0]
                trade_ask[tix[i]] = pub[slot, 1]
            t += 1
        elif act == 70:  # F
            if bergs | absorb:
                r = _find(orders, slot, o_id)
                if r >= 0:
                    o_side, o_price, o_size = orders[r, 2], orders[r, 3], orders[r, 4]
                    fr = _slot_for(filled, slot, o_id)
                    if fr < 0:
                        fr = -fr - 1
                        filled[fr, 0], filled[fr, 1] = slot, o_id
                        filled[fr, 3], filled[fr, 4], filled[fr, 5] = 0, 0, 0
                        counts[N_FILLED] += 1
                    elif filled[fr, 2] < tk_limit:  # the detector had forgotten it
                        filled[fr, 3], filled[fr, 4] = 0, 0
                    filled[fr, 2] = at
                    filled[fr, 3] += qty
                    filled[fr, 4] += qty
                    if qty > o_size:  # traded more than it showed: a native iceberg
                        orders[r, 5] |= NATIVE
                        filled[fr, 5] = 1
                    if bergs & (orders[r, 5] != 0):
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7] = (
                            i, FILL, ins_id, o_id, o_side, o_price, qty, o_size)
                        n_events += 1
                    if absorb & (px == o_price):  # not an auction fill away from it
                        level = _level_size(pool, blk, _j(slot, o_side), _key(o_side, o_price))
                        n_done = _absorb(runs, a_count, done, n_done, 2 * ins_id + _j(0, o_side),
                                         o_price, qty, level, at, gap_ns, min_volume,
                                         min_ratio)
        elif (act == 65) | (act == 77) | (act == 67):  # A, M, C
            r = _find(orders, slot, o_id)
            had = r >= 0
            o_side = np.int64(0)
            o_price = np.int64(0)
            o_size = np.int64(0)
            bits = np.int64(0)
            if had:
                o_side, o_price, o_size, bits = (orders[r, 2], orders[r, 3], orders[r, 4],
                                                 orders[r, 5])
            empty = False
            if act == 67:
                if had:
                    n_side, n_price = o_side, o_price
                    n_size = o_size - min(qty, o_size)
                else:
                    n_side, n_price, n_size = np.int64(0), UNDEF, np.int64(0)
            else:
                n_side, n_price, n_size = np.int64(side[i]), px, qty
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
                        r = -_slot_for(orders, slot, o_id) - 1
                        orders[r, 0], orders[r, 1], orders[r, 2] = slot, o_id, n_side
                        orders[r, 3], orders[r, 4], orders[r, 5] = n_price, n_size, 0
                        counts[N_ORDERS] += 1
                    _put(pool, blk, counts, _j(slot, n_side), _key(n_side, n_price), n_size)
                elif had:
                    _delete(orders, r)
                    counts[N_ORDERS] -= 1
            if (bergs | absorb) & (act != 67) & placed:
                fr = _find(filled, slot, o_id)
                er = -1
                if not had:
                    er = _find(emptied, _j(slot, n_side), n_price)
                if absorb & (not had) & ((fr >= 0) | (er >= 0)):
                    _refilled(runs, 2 * ins_id + _j(0, n_side), n_price)
                if bergs:
                    # the detector's view of the order's fills: (ns, since the book last
                    # showed it, in all), forgotten once older than refill_ns at a batch end
                    f_ts, f_since, f_total = np.int64(-1), np.int64(0), np.int64(0)
                    if fr >= 0:
                        if filled[fr, 2] >= tk_limit:
                            f_ts, f_since, f_total = filled[fr, 2], filled[fr, 3], filled[fr, 4]
                            filled[fr, 3] = 0  # the book shows its new size
                        if filled[fr, 5]:
                            orders[r, 5] |= NATIVE
                    recent = (f_ts >= 0) & (at - f_ts <= refill_ns)
                    native = False
                    if recent:
                        native = not had
                        if had & (o_price == n_price):
                            native = n_size > o_size - f_since
                    e_ts, e_clip = np.int64(-1), np.int64(0)
                    if er >= 0:
                        if at - emptied[er, 2] <= refill_ns:
                            e_ts, e_clip = emptied[er, 2], emptied[er, 3]
                            orders[r, 5] |= WATCHED  # a possible synthetic tranche
                    if native:
                        orders[r, 5] |= NATIVE
                        if fr >= 0:
                            filled[fr, 5] = 1
                    if native | (e_ts >= 0):
                        e = events[n_events]
                        e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                            i, PLACED, ins_id, o_id, n_side, n_price, n_size)
                        e[7], e[8], e[9], e[10] = 1 if had else 0, o_side, o_price, o_size
                        e[11], e[12], e[13], e[14], e[15] = f_ts, f_since, f_total, e_ts, e_clip
                        n_events += 1
            elif (bergs | absorb) & (act == 67) & had & (not placed):
                fr = _find(filled, slot, o_id)
                traded = False
                if fr >= 0:
                    traded = filled[fr, 2] == at
                if traded & empty:
                    clip = filled[fr, 4] if filled[fr, 2] >= tk_limit else 0
                    er = _slot_for(emptied, _j(slot, o_side), o_price)
                    if er < 0:
                        er = -er - 1
                        emptied[er, 0], emptied[er, 1] = _j(slot, o_side), o_price
                        counts[N_EMPTIED] += 1
                    emptied[er, 2], emptied[er, 3] = at, clip
                    if absorb:
                        _traded_out(runs, 2 * ins_id + _j(0, o_side), o_price)
                if bergs & (bits != 0):
                    e = events[n_events]
                    e[0], e[1], e[2], e[3], e[4], e[5], e[6] = (
                        i, REMOVED, ins_id, o_id, o_side, o_price, 0)
                    e[7], e[8] = 1 if traded else 0, 1 if empty else 0
                    n_events += 1
        elif act == 82:  # R
            _clear(orders, counts, blk, slot)
            st &= ~ST_BAD
        if flag & F_MAYBE_BAD_BOOK:
            st |= ST_BAD
        if flag & F_LAST:  # the best levels, read in place (a helper call costs refcounts)
            nb_, na_ = blk[2 * slot, 2], blk[2 * slot + 1, 2]
            bid = pool[blk[2 * slot, 0] + nb_ - 1, 0] if nb_ > 0 else UNDEF
            ask = -pool[blk[2 * slot + 1, 0] + na_ - 1, 0] if na_ > 0 else UNDEF
            pub[slot, 0] = bid
            pub[slot, 1] = ask
            st |= ST_PUB
            if log_publish:
                plog[n_log, 0], plog[n_log, 1], plog[n_log, 2], plog[n_log, 3] = i, ins_id, bid, ask
                n_log += 1
        if st != st0:
            status[slot] = st
    return n, t, n_events, n_log, n_done


def apply_records(state: BookState, iid: np.ndarray, oid: np.ndarray, price: np.ndarray,
                  size: np.ndarray, flags: np.ndarray, action: np.ndarray, side: np.ndarray,
                  ts: np.ndarray, icebergs: IcebergParams | None = None,
                  absorption: AbsorptionState | None = None, log_publish: bool = False,
                  shard: tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> tuple[BookState, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply one batch; return (state, trade_bid, trade_ask, iceberg events, publish log).

    Arrays of shape (n,), of any integer dtype and any stride (the fields of the DBN
    ``MBOMsg`` records are passed as they are: no copy); ``action``/``side`` as uint8. ``icebergs``: emit
    the iceberg detector's events (:data:`EVENT_COLUMNS`); ``absorption``: run the absorption
    detector (its finished events are appended to ``absorption.done``); ``log_publish``:
    return (row, iid, bid, ask) at every ``F_LAST`` (tests). The returned state replaces
    ``state`` (arrays that grew are new).

    ``shard``: (shard of each record (uint8), this state's shard, trade index of each record,
    trade_bid, trade_ask): apply only that shard's records, writing its trades' quotes into
    the shared arrays (:class:`flows.book.OrderBooks` runs shards on threads).
    """
    n = len(iid)
    if shard is None:
        tix, trade_bid, trade_ask = trade_slots(action)
        which, me = np.zeros(n, dtype=np.uint8), 0
    else:
        which, me, tix, trade_bid, trade_ask = shard
    events = np.zeros((256, len(EVENT_COLUMNS)), dtype=np.int64)
    plog = np.zeros((n if log_publish else 0, 4), dtype=np.int64)
    ab = absorption if absorption is not None else AbsorptionState(AbsorptionRules())
    done = np.zeros((64, 8), dtype=np.int64)
    refill_ns = icebergs.refill_ns if icebergs is not None else 0
    rules = ab.params
    i = t = n_events = n_log = n_done = 0
    while True:
        i, t, n_events, n_log, n_done = _run(
            *state, iid, oid, price, size, flags, action, side, ts, which, me, tix,
            icebergs is not None, absorption is not None, log_publish, i, trade_bid, trade_ask,
            t, events, n_events, plog, n_log, refill_ns, ab.runs, ab.count, done, n_done,
            rules.gap_ns, rules.min_volume, float(rules.min_ratio))
        if i >= n:
            break
        grew = False
        if n_events + 2 > len(events):
            events = np.concatenate([events, np.zeros_like(events)])
            grew = True
        if n_done + 1 > len(done):
            done = np.concatenate([done, np.zeros_like(done)])
            grew = True
        if ab.count[0] >= len(ab.runs) // 2 - 1:
            ab.runs = _rehash(ab.runs, 2 * len(ab.runs))
            grew = True
        grown = _grow(state)
        if not grew and all(a is b for a, b in zip(grown, state, strict=True)):
            msg = f"book state did not grow at record {i} of {n}: counts {state.counts.tolist()}"
            raise RuntimeError(msg)
        state = grown
    if absorption is not None and n_done:
        absorption.done.append(done[:n_done].copy())
    return state, trade_bid, trade_ask, events[:n_events], plog[:n_log]


def trade_slots(action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each record's index among the batch's trades, and the trades' bid/ask arrays.

    All int64: the index has shape (n,), bid/ask one entry per trade, ``UNDEF`` until the
    loop writes a published quote.
    """
    tix = np.cumsum(action == 84) - 1
    n_trades = int(tix[-1]) + 1 if len(tix) else 0
    return (tix, np.full(n_trades, UNDEF, dtype=np.int64),
            np.full(n_trades, UNDEF, dtype=np.int64))


# --- absorption (rules: flows.absorption) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbsorptionRules:
    """Thresholds of an absorption event (the rules: :mod:`flows.absorption`)."""

    gap_ns: int = 5_000_000_000
    min_volume: int = 50
    min_ratio: float = 3.0


class IcebergParams(NamedTuple):
    """What the book needs of the iceberg rules: the refill interval (ns)."""

    refill_ns: int


class AbsorptionState:
    """Open absorption runs, compiled-side.

    ``runs``: hash table (key 2·instrument_id + side, price → start size, first ns, last ns,
    absorbed, fills, emptied); ``done``: arrays of finished events (:data:`DONE_COLUMNS`).
    """

    def __init__(self, params: AbsorptionRules) -> None:
        self.params = params
        self.runs = _table(64, 8)
        self.count = np.zeros(1, dtype=np.int64)
        self.done: list[np.ndarray] = []

    def copy(self) -> AbsorptionState:
        """Return an independent copy."""
        out = AbsorptionState(self.params)
        out.runs, out.count = self.runs.copy(), self.count.copy()
        out.done = [d.copy() for d in self.done]
        return out

    def expire(self, now_ns: int) -> None:
        """Finish the runs with no fill for ``gap_ns`` before ``now_ns`` (they held)."""
        p = self.params
        self.runs, finished = _expire_runs(self.runs, self.count, np.int64(now_ns - p.gap_ns),
                                           p.min_volume, float(p.min_ratio))
        if len(finished):
            self.done.append(finished[np.lexsort((finished[:, 1], finished[:, 0],
                                                  finished[:, 5]))])

    def take(self) -> np.ndarray:
        """Return the finished events (rows of :data:`DONE_COLUMNS`) and forget them."""
        out = np.concatenate(self.done) if self.done else np.zeros((0, 8), dtype=np.int64)
        self.done = []
        return out


DONE_COLUMNS = ("key", "price", "absorbed", "start_size", "fills", "first_ts", "last_ts",
                "broke")
"""key = 2·instrument_id + (0 bid, 1 ask: the resting side); broke 1 when the last fill
traded the level out."""


@nb.njit(cache=True)
def _finish(runs, r, done, n_done, min_volume, min_ratio):  # pragma: no cover - compiled
    absorbed, start = runs[r, 5], runs[r, 2]
    if (absorbed >= min_volume) & (absorbed >= min_ratio * max(start, 1)):
        d = done[n_done]
        d[0], d[1], d[2], d[3], d[4] = runs[r, 0], runs[r, 1], absorbed, start, runs[r, 6]
        d[5], d[6], d[7] = runs[r, 3], runs[r, 4], runs[r, 7]
        n_done += 1
    return n_done


@nb.njit(cache=True)
def _absorb(runs, a_count, done, n_done, key, price, size, level, ts, gap_ns, min_volume,
            min_ratio):  # pragma: no cover - compiled
    """Record a fill of ``size`` at a level that showed ``level`` contracts; return n_done."""
    r = _slot_for(runs, key, price)
    fresh = r < 0
    if fresh:
        r = -r - 1
        runs[r, 0], runs[r, 1] = key, price
        a_count[0] += 1
    elif ts - runs[r, 4] > gap_ns:  # a pause: that run held, a new one starts
        n_done = _finish(runs, r, done, n_done, min_volume, min_ratio)
        fresh = True
    if fresh:
        runs[r, 2], runs[r, 3], runs[r, 5], runs[r, 6] = level, ts, 0, 0
    runs[r, 5] += size
    runs[r, 6] += 1
    runs[r, 4] = ts
    runs[r, 7] = 0
    return n_done


@nb.njit(cache=True)
def _refilled(runs, key, price):  # pragma: no cover - compiled
    r = _find(runs, key, price)
    if r >= 0:
        runs[r, 7] = 0


@nb.njit(cache=True)
def _traded_out(runs, key, price):  # pragma: no cover - compiled
    r = _find(runs, key, price)
    if r >= 0:
        runs[r, 7] = 1


@nb.njit(cache=True)
def _expire_runs(runs, a_count, limit, min_volume, min_ratio):  # pragma: no cover - compiled
    live = np.zeros(len(runs), dtype=np.bool_)
    n_old = 0
    for r in range(len(runs)):
        if runs[r, 0] != FREE:
            live[r] = runs[r, 4] >= limit
            if not live[r]:
                n_old += 1
    done = np.zeros((n_old, 8), dtype=np.int64)
    n_done = 0
    for r in range(len(runs)):
        if (runs[r, 0] != FREE) & (not live[r]):
            n_done = _finish(runs, r, done, n_done, min_volume, min_ratio)
    out, a_count[0] = _keep(runs, live, 64)
    return out, done[:n_done]


@nb.njit(cache=True)
def _keep(tab, live, smallest=1024):  # pragma: no cover - compiled
    """Return the rows flagged in ``live``, rehashed into a table sized for them."""
    k = 0
    for r in range(len(tab)):
        if live[r]:
            k += 1
    cap = smallest
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


def prune(state: BookState, before_ns: int, detector_limit_ns: int | None = None) -> BookState:
    """Forget emptied levels, and fills of orders no longer resting, older than ``before_ns``.

    ``detector_limit_ns``: the iceberg detector forgets fills older than this (its view of
    an order's fills restarts from zero, :class:`flows.icebergs.IcebergTracker`).
    """
    if detector_limit_ns is not None:
        state.counts[TK_LIMIT] = max(int(state.counts[TK_LIMIT]), detector_limit_ns)
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

    published (n, 3), status (n, 2), filled (n, 6: iid, order_id, ns, since, in all, native),
    emptied (n, 5: iid, side byte, price, ns, clip), order bits (n, 3: iid, order_id, bits),
    meta (1, 1: the detector's fill limit); the orders come from :func:`export_orders`.
    """
    slots = int(state.counts[N_INS])
    iids = state.slot_iid[:slots]
    st = state.status[:slots]
    pub_rows = np.flatnonzero(st & ST_PUB)
    pub = np.column_stack([iids[pub_rows], state.pub[pub_rows, 0], state.pub[pub_rows, 1]])
    sta = np.column_stack([iids, st & ~ST_PUB])
    f = state.filled[state.filled[:, 0] != FREE]
    fil = np.column_stack([state.slot_iid[f[:, 0]], f[:, 1:]])
    e = state.emptied[state.emptied[:, 0] != FREE]
    emp = np.column_stack([state.slot_iid[e[:, 0] // 2], np.where(e[:, 0] % 2 == 0, BID, ASK),
                           e[:, 1:]])
    o = state.orders[(state.orders[:, 0] != FREE) & (state.orders[:, 5] != 0)]
    bits = np.column_stack([state.slot_iid[o[:, 0]], o[:, 1], o[:, 5]])
    meta = np.array([[state.counts[TK_LIMIT]]], dtype=np.int64)
    return tuple(np.asarray(a, dtype=np.int64) for a in (pub, sta, fil, emp, bits, meta))


@nb.njit(cache=True)
def _import(counts, ins, slot_iid, status, pub_a, blk, pool, o_tab, filled, emptied, orders,
            pub, sta, fil, emp, bits):  # pragma: no cover - compiled
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
        r = -_slot_for(filled, slot, fil[j, 1]) - 1
        filled[r, 0], filled[r, 1] = slot, fil[j, 1]
        filled[r, 2], filled[r, 3], filled[r, 4], filled[r, 5] = (fil[j, 2], fil[j, 3],
                                                                  fil[j, 4], fil[j, 5])
        counts[N_FILLED] += 1
    for j in range(len(emp)):
        slot = _instrument(ins, slot_iid, counts, emp[j, 0])
        r = -_slot_for(emptied, _j(slot, emp[j, 1]), emp[j, 2]) - 1
        emptied[r, 0], emptied[r, 1] = _j(slot, emp[j, 1]), emp[j, 2]
        emptied[r, 2], emptied[r, 3] = emp[j, 3], emp[j, 4]
        counts[N_EMPTIED] += 1
    for j in range(len(bits)):
        r = _find(o_tab, _instrument(ins, slot_iid, counts, bits[j, 0]), bits[j, 1])
        if r >= 0:
            o_tab[r, 5] = bits[j, 2]


def _widen(a: np.ndarray, width: int, fill: int) -> np.ndarray:
    """Pad rows of an older export (fewer columns) with ``fill``."""
    if a.shape[1] >= width:
        return a
    return np.column_stack([a, np.full((len(a), width - a.shape[1]), fill, dtype=np.int64)])


def import_state(orders: np.ndarray, pub: np.ndarray, sta: np.ndarray, fil: np.ndarray,
                 emp: np.ndarray, bits: np.ndarray,
                 meta: np.ndarray | None = None) -> BookState:
    """Build a state from :func:`export_orders` and :func:`export_state` arrays.

    Exports of the first version (fills without counts, emptied levels without clip, watched
    orders without bits, no meta) load with zeros, and bits 1.
    """
    arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in (orders, pub, sta, fil, emp, bits)]
    arrays = [a.reshape(len(a), -1) if a.size else a.reshape(0, w)
              for a, w in zip(arrays, (5, 3, 2, 3, 4, 2), strict=True)]
    orders, pub, sta, fil, emp, bits = arrays
    fil, emp, bits = _widen(fil, 6, 0), _widen(emp, 5, 0), _widen(bits, 3, WATCHED)
    iids = np.unique(np.concatenate([orders[:, 0], pub[:, 0], sta[:, 0], fil[:, 0], emp[:, 0],
                                     bits[:, 0]]))
    slots = max(16, len(iids))
    # a block of n levels relocates at 8, 16, ... rows: at most 4n + 8 rows of pool each
    pool_rows = 4 * len(orders) + 2 * BLOCK0 * 2 * slots + 1024
    counts = np.zeros(8, dtype=np.int64)
    counts[TK_LIMIT] = np.iinfo(np.int64).min if meta is None else int(np.asarray(meta).ravel()[0])
    state = BookState(counts, _table(_pow2(2 * (len(iids) + 1)), 3),
                      np.zeros(slots, dtype=np.int64), np.zeros(slots, dtype=np.int64),
                      np.full((slots, 2), UNDEF, dtype=np.int64),
                      np.zeros((2 * slots, 3), dtype=np.int64),
                      np.zeros((pool_rows, 2), dtype=np.int64),
                      _table(_pow2(2 * (len(orders) + 1)), 6),
                      _table(_pow2(2 * (len(fil) + 1)), 6), _table(_pow2(2 * (len(emp) + 1)), 4))
    _import(*state, orders, pub, sta, fil, emp, bits)
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
