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
from dataclasses import dataclass

import numpy as np

from flows.icebergs import IcebergTracker
from models.records import UNDEF_PRICE

F_LAST = 128
F_SNAPSHOT = 32
F_MAYBE_BAD_BOOK = 4
_BID, _ASK = ord("B"), ord("A")
_A, _C, _F, _M, _R, _T = (ord(x) for x in "ACFMRT")


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

    :meth:`apply` takes a structured array of ``databento_dbn.MBOMsg`` records in file order.
    Per instrument the book holds its orders (order_id → side, price, size), one price → size
    map per side and the best price of each side (recomputed only when its level empties).
    Copies (:meth:`snapshot`) share nothing mutable with the original.

    Parameters
    ----------
    icebergs : IcebergTracker, optional
        Fed with every fill, placement and removal (:mod:`flows.icebergs`); snapshot records
        are not events and are not fed.
    """

    def __init__(self, icebergs: IcebergTracker | None = None) -> None:
        self.icebergs = icebergs
        self.books: dict[int, list] = {}
        """instrument_id → [orders, bid levels, ask levels, best bid, best ask]."""
        self.published: dict[int, tuple[int, int]] = {}
        """instrument_id → (bid_px, ask_px) at its last ``F_LAST``."""
        self.unreliable: set[int] = set()
        self._in_snapshot: set[int] = set()

    # --- reading ------------------------------------------------------------------------------

    def best(self, instrument_id: int, side: str) -> tuple[int, int]:
        """(price, size) of the best level of ``side`` (``"B"`` or ``"A"``); (UNDEF_PRICE, 0) if empty."""
        book = self.books.get(instrument_id)
        level = None if book is None else book[1 if side == "B" else 2]
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
        book = self.books.get(instrument_id)
        level = {} if book is None else book[1 if side == "B" else 2]
        return sorted(level.items(), reverse=side == "B")[:levels]

    def resting_orders(self, instrument_id: int) -> dict[int, tuple[int, int, int]]:
        """order_id → (side byte ``ord('B')``/``ord('A')``, price, contracts) of one instrument."""
        book = self.books.get(instrument_id)
        return {} if book is None else dict(book[0])

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
        need = {"instrument_id", "order_id", "price", "size", "flags", "action", "side"}
        missing = need - set(records.dtype.names or ())
        if missing:
            msg = f"OrderBooks.apply needs MBO records; missing fields {sorted(missing)}"
            raise ValueError(msg)
        n = len(records)
        pos = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
        action = records["action"].view(np.uint8)
        is_trade = action == _T
        out_pos = pos[is_trade]
        out_bid = np.full(len(out_pos), UNDEF_PRICE, dtype=np.int64)
        out_ask = np.full(len(out_pos), UNDEF_PRICE, dtype=np.int64)
        books, published = self.books, self.published
        unreliable, in_snapshot = self.unreliable, self._in_snapshot
        t = 0
        iids = records["instrument_id"].tolist()
        oids = records["order_id"].tolist()
        prices = records["price"].tolist()
        sizes = records["size"].tolist()
        flags = records["flags"].tolist()
        sides = records["side"].view(np.uint8).tolist()
        names = records.dtype.names or ()
        stamps = records["ts_event"].tolist() if "ts_event" in names else [0] * n
        undef = UNDEF_PRICE
        tracker = self.icebergs
        for i, act in enumerate(action.tolist()):
            iid, flag = iids[i], flags[i]
            events = tracker is not None and not flag & F_SNAPSHOT
            book = books.get(iid)
            if book is None:
                book = books[iid] = [{}, {}, {}, undef, undef]
            if flag & F_SNAPSHOT:
                if iid not in in_snapshot:  # a snapshot starts: the book is what it says
                    in_snapshot.add(iid)
                    book = books[iid] = [{}, {}, {}, undef, undef]
                    unreliable.discard(iid)
            elif in_snapshot and iid in in_snapshot:
                in_snapshot.discard(iid)
            if act == _T:
                quote = published.get(iid)
                if quote is not None and iid not in unreliable:
                    out_bid[t], out_ask[t] = quote
                t += 1
            elif act == _F:
                if events:
                    rest = book[0].get(oids[i])
                    if rest is not None:
                        tracker.fill(iid, oids[i], rest[0], rest[1], sizes[i], rest[2], stamps[i])  # type: ignore[union-attr]
            elif act == _A or act == _M or act == _C:
                orders = book[0]
                oid = oids[i]
                old = orders.get(oid)
                if old is not None:  # take the order out of its level
                    o_side, o_price, o_size = old
                    j = 1 if o_side == _BID else 2
                    level = book[j]
                    left = level[o_price] - o_size
                    if left > 0:
                        level[o_price] = left
                    else:
                        del level[o_price]
                        if book[j + 2] == o_price:
                            book[j + 2] = None  # stale: recomputed at the next publish
                    del orders[oid]
                if act != _C:
                    side, price, size = sides[i], prices[i], sizes[i]
                elif old is not None:  # partial cancel: the rest stays at its price
                    side, price, size = o_side, o_price, o_size - min(sizes[i], o_size)
                else:
                    side, price, size = 0, undef, 0
                placed = size > 0 and price != undef and (side == _BID or side == _ASK)
                if placed:
                    orders[oid] = (side, price, size)
                    j = 1 if side == _BID else 2
                    level = book[j]
                    level[price] = level.get(price, 0) + size
                    best = book[j + 2]
                    if best is not None and (best == undef or (price > best if j == 1
                                                               else price < best)):
                        book[j + 2] = price
                if events:
                    ts = stamps[i]
                    if act != _C:
                        if placed:
                            tracker.placed(iid, oid, side, price, size, old, ts)  # type: ignore[union-attr]
                    elif old is not None and not placed:  # the order left the book
                        last_fill = tracker.filled.get((iid, oid))  # type: ignore[union-attr]
                        traded = last_fill is not None and last_fill[0] == ts
                        empty = o_price not in book[1 if o_side == _BID else 2]
                        if traded and empty:
                            tracker.level_emptied(iid, o_side, o_price, ts)  # type: ignore[union-attr]
                        tracker.removed(iid, oid, o_side, o_price, ts, traded, empty)  # type: ignore[union-attr]
            elif act == _R:
                book = books[iid] = [{}, {}, {}, undef, undef]
                unreliable.discard(iid)
            if flag & F_MAYBE_BAD_BOOK:
                unreliable.add(iid)
            if flag & F_LAST:
                if book[3] is None:
                    book[3] = max(book[1]) if book[1] else undef
                if book[4] is None:
                    book[4] = min(book[2]) if book[2] else undef
                published[iid] = (book[3], book[4])
                if publish_log is not None:
                    publish_log.append((i, iid, book[3], book[4]))
        if tracker is not None and n:
            tracker.expire(int(stamps[-1]))
        return TradeQuotes(out_pos, out_bid, out_ask)

    # --- copies -------------------------------------------------------------------------------

    def snapshot(self) -> OrderBooks:
        """Independent copy (orders and levels copied; O(resting orders))."""
        clone = OrderBooks.__new__(OrderBooks)
        clone.icebergs = copy.deepcopy(self.icebergs)
        clone.books = {iid: [dict(b[0]), dict(b[1]), dict(b[2]), b[3], b[4]]
                       for iid, b in self.books.items()}
        clone.published = dict(self.published)
        clone.unreliable = set(self.unreliable)
        clone._in_snapshot = set(self._in_snapshot)
        return clone

    def __deepcopy__(self, memo: dict) -> OrderBooks:
        clone = self.snapshot()
        memo[id(self)] = clone
        return clone
