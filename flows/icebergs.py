"""Iceberg orders detected from MBO book events, with their lifecycle.

An iceberg shows only part of its size; when the shown part trades, more appears at the same
price. Two kinds, after Zotikov & Antonov ("CME Iceberg Order Detection and Prediction",
Quantitative Finance, 2019/2021) and CME MDP 3.0 book management:

- **native** (exchange-managed, one order id): a fill of an order larger than the size it
  displayed (the hidden part traded), or a *replenishment*: after a fill, the same order id
  shows more than its fills left of it, at the same price (an ``M`` within
  :attr:`IcebergRules.refill_ns` of the fill whose size exceeds the shown size minus the fills,
  e.g. a 1-lot display back at 1 after a 1-lot fill; or an ``A`` of the id after its removal);
- **synthetic** (trader-managed, new order ids): a price level is emptied by fills and, within
  :attr:`IcebergRules.refill_ns`, a new order of the same side and of the same size as the
  tranche that just traded out appears at the same price (a *tranche*: an algorithm re-posts
  one clip size; ordinary traders joining a price just traded out come with any size). Each
  later refill must follow the candidate's *own* latest tranche trading away within
  ``refill_ns`` (a level emptied by someone else's order, seconds later, starts a new
  candidate). It counts as an iceberg once that happens
  :attr:`IcebergRules.min_synthetic_refills` times in a row. Its executed volume is what its
  tranches traded; other orders joining the level are not part of it. An iceberg of two or
  three tranches (one or two refills) looks like same-size queue joining and is not reported.

Lifecycle (``state``): ``active`` while refills continue; ``exhausted`` when its last shown
part traded and nothing came back within ``refill_ns``; ``cancelled`` when the order (native)
or its latest tranche (synthetic) was cancelled rather than traded away.

``estimated_total`` (contracts) is a documented simple estimate, not the paper's
Kaplan–Meier fit: the executed volume plus what is still shown, plus, while active, one more
tranche of the largest shown size for each refill still expected, where the expected number
of refills is the mean of the icebergs of the same instrument that already ended (0 without
any). Units: prices int64 fixed-point 1e-9 USD price points, sizes contracts, timestamps ns
since epoch UTC.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

NATIVE, SYNTHETIC = "native", "synthetic"
ACTIVE, EXHAUSTED, CANCELLED = "active", "exhausted", "cancelled"


@dataclass(frozen=True, slots=True)
class IcebergRules:
    """Detection parameters.

    Attributes
    ----------
    refill_ns : int
        Longest gap (ns) between a level or order being traded away and its refill (default
        100 ms: CME iceberg tranches and algorithmic refills come back within milliseconds).
    min_synthetic_refills : int
        Same-size refills in a row before a synthetic iceberg is reported (default 3).
    """

    refill_ns: int = 100_000_000
    min_synthetic_refills: int = 3


@dataclass(slots=True)
class Iceberg:
    """One detected (or candidate) iceberg; ``detected`` false until the rules are met."""

    kind: str
    instrument_id: int
    side: str
    price: int
    order_id: int
    first_ts: int
    last_ts: int
    refills: int = 0
    peak_size: int = 0
    shown: int = 0
    executed: int = 0
    state: str = ACTIVE
    detected: bool = False
    pending_since: int = -1
    """ns when its shown part was last traded away (-1: something is shown)."""
    shown_size: int = 0
    """Synthetic: the size every tranche shows (a new size starts a new candidate)."""

    def row(self, expected_refills: float) -> tuple:
        """Return the row stored in ``ifd.icebergs``.

        (kind, instrument_id, side, price, order_id, first_ts, last_ts, refills, peak_size,
        executed, estimated_total, state).
        """
        more = max(0.0, expected_refills - self.refills) if self.state == ACTIVE else 0.0
        total = self.executed + self.shown + round(more * self.peak_size)
        return (self.kind, self.instrument_id, self.side, self.price, self.order_id,
                self.first_ts, self.last_ts, self.refills, self.peak_size, self.executed,
                total, self.state)


@dataclass
class IcebergTracker:
    """State of the detector; fed by :class:`flows.book.OrderBooks` as it applies records."""

    rules: IcebergRules = field(default_factory=IcebergRules)
    native: dict[tuple[int, int], Iceberg] = field(default_factory=dict)
    """(instrument_id, order_id) → the order's iceberg record (created at its first fill)."""
    synthetic: dict[tuple[int, int, int], Iceberg] = field(default_factory=dict)
    """(instrument_id, side byte, price) → the level's synthetic candidate."""
    consumed: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """(instrument_id, side byte, price) → ns of the level emptying a synthetic refill already
    used (the book reports each emptying until it is older than ``refill_ns``)."""
    tranches: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    """(instrument_id, order_id) of a synthetic iceberg's resting refill → its level key."""
    ended: dict[int, list[int]] = field(default_factory=dict)
    """instrument_id → [icebergs ended, their refills]: the mean for ``estimated_total``."""
    changed: dict[tuple, Iceberg] = field(default_factory=dict)
    """Detected icebergs changed since the last :meth:`take`."""

    # --- hooks called by OrderBooks -----------------------------------------------------------

    def fill(self, iid: int, oid: int, side: int, price: int, size: int, shown: int,
             ts: int) -> None:
        """Record that a resting order (``side`` byte, ``shown`` contracts displayed) traded ``size``.

        The book keeps each order's fills (:mod:`flows.book_core`) and reports only the fills
        of orders that traded more than they showed, or were placed as a refill.
        """
        key = (iid, oid)
        berg = self.native.get(key)
        if berg is None and size > shown:  # more traded than it showed: the hidden part
            berg = self.native[key] = Iceberg(NATIVE, iid, chr(side), price, oid, ts, ts,
                                              peak_size=shown, shown=shown)
        if berg is not None:
            berg.executed += size
            berg.shown = max(0, berg.shown - size)
            berg.last_ts = ts
            berg.detected = True
            self._changed(("n", iid, oid), berg)
        level_key = self.tranches.get(key)
        level = None if level_key is None else self.synthetic.get(level_key)
        if level is not None and level.state == ACTIVE and level.order_id == oid:
            level.executed += size
            level.shown = max(0, level.shown - size)
            level.last_ts = ts
            if level.detected:
                self._changed(("s", *level_key), level)  # type: ignore[misc]

    def placed(self, iid: int, oid: int, side: int, price: int, size: int,
               old: tuple[int, int, int] | None, ts: int,
               last_fill: tuple[int, int, int] | None = None,
               emptied: tuple[int, int] | None = None) -> None:
        """Record an added or modified order (``old``: its (side, price, size) before, if any).

        ``last_fill``: the order's fills, (ns of the latest, contracts since the book last
        showed the order, contracts in all), None when it has not traded within the
        detector's memory. ``emptied``: (ns, contracts the emptying order traded in all) when
        fills emptied this level within ``refill_ns``. The book sends a placement only when it
        can replenish a native iceberg or refill an emptied level.
        """
        key = (iid, oid)
        refill_ns = self.rules.refill_ns
        recent = last_fill is not None and ts - last_fill[0] <= refill_ns
        # replenished: shows more than what the fills left of it, at the same price
        if recent and (old is None or (old[1] == price and size > old[2] - last_fill[1])):  # type: ignore[index]
            berg = self.native.get(key)
            if berg is None or berg.price != price:  # first refill: its fills so far count
                berg = self.native[key] = Iceberg(NATIVE, iid, chr(side), price, oid,
                                                  last_fill[0], ts,  # type: ignore[index]
                                                  executed=last_fill[2])  # type: ignore[index]
            berg.refills += 1
            berg.shown = size
            berg.peak_size = max(berg.peak_size, size)
            berg.last_ts = ts
            berg.state = ACTIVE
            berg.detected = True
            self._changed(("n", iid, oid), berg)
            return
        if old is not None:
            return
        level_key = (iid, side, price)
        if emptied is None or ts - emptied[0] > refill_ns or self.consumed.get(level_key) == emptied[0]:
            return
        level = self.synthetic.get(level_key)
        if (level is None or level.state != ACTIVE or level.shown_size != size
                or level.pending_since < 0 or ts - level.pending_since > refill_ns):
            # a new candidate: none yet, ended, a tranche of another size (another trader), or
            # the candidate's own tranche did not just trade away (someone else's order emptied
            # the level). A first refill must repeat the clip that just traded out.
            if emptied[1] != size:
                return
            level = self.synthetic[level_key] = Iceberg(SYNTHETIC, iid, chr(side), price, 0,
                                                        emptied[0], ts)
            level.shown_size = size
        level.refills += 1
        level.shown = size
        level.order_id = oid
        level.peak_size = max(level.peak_size, size)
        level.last_ts = ts
        level.pending_since = -1
        self.tranches[key] = level_key
        self.consumed[level_key] = emptied[0]
        if level.refills >= self.rules.min_synthetic_refills:
            level.detected = True
            self._changed(("s", iid, side, price), level)

    def removed(self, iid: int, oid: int, ts: int, traded: bool) -> None:
        """Record an order leaving the book; ``traded``: by a fill in the same event, not a cancel."""
        berg = self.native.get((iid, oid))
        if berg is not None and berg.state == ACTIVE:
            berg.shown = 0
            berg.last_ts = ts
            if traded:
                berg.pending_since = ts
            else:
                self._end(berg, CANCELLED, ("n", iid, oid))
        level_key = self.tranches.pop((iid, oid), None)
        level = None if level_key is None else self.synthetic.get(level_key)
        if level is not None and level.state == ACTIVE and level.order_id == oid:
            level.shown = 0
            level.last_ts = ts
            if traded:  # the tranche traded away: a refill may follow
                level.pending_since = ts
            else:
                self._end(level, CANCELLED, ("s", *level_key))  # type: ignore[misc]

    # --- housekeeping -------------------------------------------------------------------------

    def expire(self, now_ns: int) -> None:
        """End icebergs whose shown part traded away more than ``refill_ns`` before ``now_ns``."""
        limit = now_ns - self.rules.refill_ns
        for order, berg in list(self.native.items()):
            if berg.state == ACTIVE and 0 <= berg.pending_since < limit:
                self._end(berg, EXHAUSTED, ("n", *order))
            elif berg.state != ACTIVE or not berg.detected:
                if berg.last_ts < limit and (berg.state != ACTIVE or berg.pending_since >= 0):
                    del self.native[order]
        for key, level in list(self.synthetic.items()):
            if level.state == ACTIVE and 0 <= level.pending_since < limit:
                if level.detected:
                    self._end(level, EXHAUSTED, ("s", *key))
                else:
                    level.state = EXHAUSTED
            if level.state != ACTIVE and level.last_ts < limit:
                del self.synthetic[key]
                if level.order_id:
                    self.tranches.pop((key[0], level.order_id), None)
        self.consumed = {k: t for k, t in self.consumed.items() if t >= limit}

    def _end(self, berg: Iceberg, state: str, key: tuple) -> None:
        berg.state = state
        berg.pending_since = -1
        if berg.detected:
            count = self.ended.setdefault(berg.instrument_id, [0, 0])
            count[0] += 1
            count[1] += berg.refills
            self._changed(key, berg)

    def _changed(self, key: tuple, berg: Iceberg) -> None:
        """Queue ``berg`` for :meth:`take`, one entry per iceberg.

        A level or an order id can hold several icebergs one after another within one batch.
        """
        if berg.detected:
            self.changed[(*key, berg.first_ts)] = berg

    def __setstate__(self, state: dict) -> None:
        """Load a pickle; one from before the book kept the fills loads without them.

        Its ``filled``/``emptied`` dicts are the book's now (:mod:`flows.book_core`).
        """
        state = dict(state)
        state.pop("filled", None)
        state.pop("emptied", None)
        state.setdefault("consumed", {})
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict) -> IcebergTracker:
        """Copy in O(entries): the dicts are copied, their mutable :class:`Iceberg` s cloned."""
        clones: dict[int, Iceberg] = {}

        def own(berg: Iceberg) -> Iceberg:
            clone = clones.get(id(berg))
            if clone is None:
                clone = clones[id(berg)] = copy.copy(berg)
            return clone

        out = IcebergTracker(
            rules=self.rules,
            native={k: own(v) for k, v in self.native.items()},
            synthetic={k: own(v) for k, v in self.synthetic.items()},
            consumed=dict(self.consumed), tranches=dict(self.tranches),
            ended={k: list(v) for k, v in self.ended.items()},
            changed={k: own(v) for k, v in self.changed.items()})
        memo[id(self)] = out
        return out

    def take(self) -> list[tuple]:
        """Rows (:meth:`Iceberg.row`) of the detected icebergs changed since the last call."""
        rows = []
        for berg in self.changed.values():
            done = self.ended.get(berg.instrument_id)
            expected = done[1] / done[0] if done and done[0] else 0.0
            rows.append(berg.row(expected))
        self.changed = {}
        return rows
