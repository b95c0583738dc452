"""L3 order books rebuilt from Databento MBO records, read only at ``F_LAST``.

Rules (Databento docs, "Market by order (MBO)", "State management of resting orders" and
"MBO snapshots"; CME MDP 3.0 book management):

| action | effect on the book                                                          |
|--------|------------------------------------------------------------------------------|
| ``A``  | add the order (``order_id``, side, price, size)                              |
| ``C``  | cancel ``size`` contracts of the order; at 0 it leaves the book              |
| ``M``  | the order's price and size become the record's (an unknown id is added)      |
| ``R``  | clear the instrument's book                                                  |
| ``T``, ``F``, ``N`` | none: every fill is followed by the ``C``/``M`` that updates the book |

- Orders are keyed by (instrument_id, order_id); sides are ``B`` (bid) and ``A`` (ask).
- One exchange event may be several records; only the record with ``F_LAST`` (flag 128) ends
  it, so the book is *published* (BBO taken) only after such a record.
- A snapshot is a ``R`` then ``A`` records flagged ``F_SNAPSHOT`` (32); some files (DBN v1
  from before the ``R`` convention) hold the ``A`` records only, so a run of snapshot records
  for an instrument clears its book first either way.
- ``F_MAYBE_BAD_BOOK`` (4) marks the instrument's book unreliable until its next snapshot or
  clear: its BBO is published as undefined meanwhile.

Units: prices int64 fixed-point 1e-9 USD price points (``UNDEF_PRICE`` = 2^63 − 1 when a side is
empty or the book unreliable), sizes contracts, timestamps ns since epoch UTC.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from flows import book_core
from flows.absorption import AbsorptionTracker
from flows.icebergs import IcebergTracker
from models.records import F_LAST, F_MAYBE_BAD_BOOK, F_SNAPSHOT, UNDEF_PRICE

__all__ = ["F_LAST", "F_MAYBE_BAD_BOOK", "F_SNAPSHOT", "OrderBooks", "TradeQuotes"]

_T = ord("T")


@dataclass(frozen=True, slots=True)
class TradeQuotes:
    """The published BBO just before each trade record (``T``) of a batch.

    Attributes
    ----------
    position : ndarray of int64, shape (n,)
        Record index of each trade (the batch's ``positions``, else its row number).
    bid_px, ask_px : ndarray of int64, shape (n,)
        Best bid / ask (fixed-point 1e-9) published at the last ``F_LAST`` before the trade;
        ``UNDEF_PRICE`` when that side was empty, nothing was published yet, or the book is
        unreliable (``F_MAYBE_BAD_BOOK``).
    """

    position: np.ndarray
    bid_px: np.ndarray
    ask_px: np.ndarray


class OrderBooks:
    """Resting orders and price levels of every instrument seen, from MBO records.

    :meth:`apply` takes a structured array of ``databento_dbn.MBOMsg`` records in file order;
    the loop is compiled (:mod:`flows.book_core`, numba). Per instrument and side the book
    holds its price levels sorted (best last), so the BBO is read in O(1) at each ``F_LAST``.
    Copies (:meth:`snapshot`, ``copy.deepcopy``, pickling) share nothing with the original.

    Instruments are independent books, so they are split over ``threads`` shards by a hash
    of instrument_id; each shard's compiled loop runs on its own thread without the GIL, and
    the iceberg events of all shards are merged back into record order. Results do not depend
    on ``threads``; a pickled copy loads with any number.

    Parameters
    ----------
    icebergs : IcebergTracker, optional
        Fed with the book events that can change it: fills and removals of orders that
        traded more than they showed or were placed as refills, placements that replenish an
        order just filled or refill a level fills just emptied (:mod:`flows.book_core`).
        Snapshot records are not events.
    absorption : AbsorptionTracker, optional
        Its compiled runs are fed with every fill, level traded out and refill by the loop
        itself (:mod:`flows.absorption`).
    threads : int, default 1
        Book shards, each applied on a thread of a shared pool (1: no thread).

    Raises
    ------
    ValueError
        ``threads`` is not between 1 and 64.
    """

    def __init__(self, icebergs: IcebergTracker | None = None,
                 absorption: AbsorptionTracker | None = None, threads: int = 1) -> None:
        if not 1 <= threads <= 64:
            msg = f"OrderBooks threads must be 1..64, got {threads}"
            raise ValueError(msg)
        self.icebergs = icebergs
        self.absorption = absorption
        self.threads = threads
        self._shards: list[book_core.BookState] = [book_core.new_state() for _ in range(threads)]
        if absorption is not None:
            absorption.shard(threads)

    def _shard_of(self, instrument_id: np.ndarray | int) -> np.ndarray:
        return book_core.shard_of(np.asarray(instrument_id, dtype=np.int64), self.threads)

    def _state_of(self, instrument_id: int) -> book_core.BookState:
        return self._shards[int(self._shard_of(instrument_id))]

    # --- reading ------------------------------------------------------------------------------

    @property
    def published(self) -> dict[int, tuple[int, int]]:
        """instrument_id → (bid_px, ask_px) published at its last ``F_LAST``."""
        out = {}
        for state in self._shards:
            pub = book_core.export_state(state)[0]
            out.update({int(r[0]): (int(r[1]), int(r[2])) for r in pub})
        return out

    def _level(self, instrument_id: int, side: str) -> dict[int, int]:
        rows = book_core.level_of(self._state_of(instrument_id), instrument_id, ord(side))
        return {int(p): int(q) for p, q in rows}

    def best(self, instrument_id: int, side: str) -> tuple[int, int]:
        """Return (price, size) of the best level of ``side`` (``"B"``/``"A"``), (UNDEF, 0) if empty."""
        level = self._level(instrument_id, side)
        if not level:
            return UNDEF_PRICE, 0
        price = max(level) if side == "B" else min(level)
        return price, level[price]

    def bbo(self, instrument_id: int) -> tuple[int, int, int, int]:
        """Return the current (bid_px, bid_size, ask_px, ask_size); read it after ``F_LAST``."""
        bid, bid_size = self.best(instrument_id, "B")
        ask, ask_size = self.best(instrument_id, "A")
        return bid, bid_size, ask, ask_size

    def depth(self, instrument_id: int, side: str, levels: int = 10) -> list[tuple[int, int]]:
        """Return the best ``levels`` levels of ``side`` as (price, contracts), best first."""
        return sorted(self._level(instrument_id, side).items(), reverse=side == "B")[:levels]

    def resting_orders(self, instrument_id: int) -> dict[int, tuple[int, int, int]]:
        """order_id → (side byte ``ord('B')``/``ord('A')``, price, contracts) of one instrument."""
        rows = book_core.export_orders(self._state_of(instrument_id))
        mine = rows[rows[:, 0] == instrument_id]
        return {int(r[1]): (int(r[2]), int(r[3]), int(r[4])) for r in mine}

    # --- updates ------------------------------------------------------------------------------

    def apply(self, records: np.ndarray, positions: np.ndarray | None = None, *,
              publish_log: list[tuple[int, int, int, int]] | None = None) -> TradeQuotes:
        """Apply MBO records in order; return the published BBO before each trade record.

        Parameters
        ----------
        records : structured ndarray, dtype of ``databento_dbn.MBOMsg``, shape (n,)
        positions : ndarray of int64, shape (n,), optional
            Record index of each row (default ``0 .. n-1``).
        publish_log : list, optional
            Receives (row, instrument_id, bid_px, ask_px) at every ``F_LAST`` record.

        Raises
        ------
        ValueError
            ``records`` lacks an MBO field (names the missing ones).
        """
        need = {"instrument_id", "order_id", "price", "size", "flags", "action", "side",
                "ts_event"}
        missing = need - set(records.dtype.names or ())
        if missing:
            msg = f"OrderBooks.apply needs MBO records; missing fields {sorted(missing)}"
            raise ValueError(msg)
        n = len(records)
        pos = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        # the records' own fields, strided views: the compiled loop reads them in place
        action = records["action"].view(np.uint8)
        ts = records["ts_event"]
        columns: _Columns = (records["instrument_id"], records["order_id"], records["price"],
                             records["size"], records["flags"], action,
                             records["side"].view(np.uint8), ts)
        tracker, absorption = self.icebergs, self.absorption
        params = None if tracker is None else book_core.IcebergParams(tracker.rules.refill_ns)
        log = publish_log is not None
        if self.threads == 1:
            ab = None if absorption is None else absorption.states[0]
            self._shards[0], bid, ask, events, plog = book_core.apply_records(
                self._shards[0], *columns, params, ab, log)
        else:
            bid, ask, events, plog = self._apply_sharded(columns, params, log)
        if publish_log is not None:
            publish_log.extend((int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in plog)
        if (tracker is not None or absorption is not None) and n:
            if tracker is not None:
                _feed(tracker, events.tolist(), ts)
            now = int(ts[-1])
            if tracker is not None:
                tracker.expire(now)
            if absorption is not None:
                absorption.expire(now)
            keep = tracker.rules.refill_ns if tracker is not None else 0
            self._shards = [book_core.prune(s, now - keep, None if tracker is None else now - keep)
                            for s in self._shards]
        return TradeQuotes(pos[action == _T], bid, ask)

    def _apply_sharded(self, columns: _Columns,
                       params: book_core.IcebergParams | None, log: bool
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply each shard's records on a pool thread; merge events and log by record row."""
        iid, action = columns[0], columns[5]
        which = self._shard_of(iid)
        tix, bid, ask = book_core.trade_slots(action)
        absorption = self.absorption

        def one(k: int) -> tuple:
            ab = None if absorption is None else absorption.states[k]
            return book_core.apply_records(self._shards[k], *columns, params, ab, log,
                                           (which, k, tix, bid, ask))

        results = list(_pool(self.threads).map(one, range(self.threads)))
        self._shards = [r[0] for r in results]
        events = np.concatenate([r[3] for r in results])
        plog = np.concatenate([r[4] for r in results])
        events = events[np.argsort(events[:, 0], kind="stable")]
        plog = plog[np.argsort(plog[:, 0], kind="stable")]
        return bid, ask, events, plog

    # --- copies -------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        exports = [(book_core.export_orders(s), *book_core.export_state(s)) for s in self._shards]
        arrays = [np.concatenate([e[j] for e in exports]) for j in range(6)]
        meta = np.array([[max(int(e[6][0, 0]) for e in exports)]], dtype=np.int64)
        return {"icebergs": self.icebergs, "absorption": self.absorption,
                "threads": self.threads, "arrays": (*arrays, meta)}

    def __setstate__(self, state: dict) -> None:
        self.icebergs = state["icebergs"]
        self.absorption = state.get("absorption")
        self.threads = state.get("threads", 1)
        arrays = [np.asarray(a, dtype=np.int64) for a in state["arrays"]]
        self._shards = []
        for k in range(self.threads):
            mine = [a[self._shard_of(a[:, 0]) == k] if a.ndim == 2 and j < 6 else a
                    for j, a in enumerate(arrays)]
            self._shards.append(book_core.import_state(*mine))
        if self.absorption is not None:
            self.absorption.shard(self.threads)

    def snapshot(self) -> OrderBooks:
        """Return an independent copy (array copies of the compiled state, O(table size))."""
        clone = OrderBooks.__new__(OrderBooks)
        clone.icebergs = copy.deepcopy(self.icebergs)
        clone.absorption = copy.deepcopy(self.absorption)
        clone.threads = self.threads
        clone._shards = [book_core.copy_state(s) for s in self._shards]
        return clone

    def __deepcopy__(self, memo: dict) -> OrderBooks:
        clone = self.snapshot()
        memo[id(self)] = clone
        return clone


_Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                 np.ndarray, np.ndarray]
"""instrument_id, order_id, price, size, flags, action, side (uint8), ts_event: fields of
the MBO records (strided views, their DBN dtypes)."""

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """Return the process-wide pool of ``threads`` book threads (shared by every book)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="ifd-book")
        return pool


def _feed(tracker: IcebergTracker, events: list[list[int]], ts: np.ndarray) -> None:
    """Hand the compiled loop's iceberg events to the detector, in record order."""
    for row, kind, iid, oid, side, price, size, b, c, d, e, f_ts, since, total, e_ts, clip \
            in events:
        at = int(ts[row])
        if kind == book_core.FILL:
            tracker.fill(iid, oid, side, price, size, b, at)
        elif kind == book_core.PLACED:
            tracker.placed(iid, oid, side, price, size, (c, d, e) if b else None, at,
                           None if f_ts < 0 else (f_ts, since, total),
                           None if e_ts < 0 else (e_ts, clip))
        else:
            tracker.removed(iid, oid, at, bool(b))
