"""Trade selection per (record type, instrument, time range): which trade records count.

The same CME trade can reach the pipeline in several schemas — an MBO ``T``,
an ``mbp-1``/``tbbo`` ``T``, a ``trades`` record — from one mixed file or from
overlapping inputs. Exactly one copy may count. The rule, per trade record of
rtype *r*, instrument *i*, time *t*: it counts unless a **richer** trade-bearing
rtype (mbo > mbp-10 > mbp-1 = tbbo > trades) carries trades of *i* covering
*t* in the same input or in an overlapping input of the same dataset.

What "carries trades covering *t*" means is a :class:`Coverage`:

- a single-schema file whose records match its header: its instruments (the
  metadata symbology, or every instrument when it has none) over the header's
  ``start``/``end``;
- a mixed-schema or mislabelled file: scanned once; per instrument, the time
  from its first to its last trade record of that rtype.

Selections are numpy-vectorised and pickle small (arrays, no closures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.batch import RTYPE_MBO, RTYPE_MBP1, RTYPE_MBP10, RTYPE_TRADES

RTYPE_RANK = {RTYPE_MBO: 4, RTYPE_MBP10: 3, RTYPE_MBP1: 2, RTYPE_TRADES: 1}
"""Richness of each trade-bearing rtype (a higher rank wins)."""


@dataclass(frozen=True)
class Coverage:
    """Where one input's trades of one rtype are: instruments × time (ns UTC).

    Attributes
    ----------
    rtype : int
    ids : int64[k] | None
        Sorted instrument ids; None = every instrument.
    lo, hi : int64[k] | int
        Per id (or for all ids), first and last covered ``ts_event``, inclusive.
    """

    rtype: int
    ids: np.ndarray | None
    lo: np.ndarray | int
    hi: np.ndarray | int

    @classmethod
    def span(cls, rtype: int, ids: frozenset[int] | set[int] | None, start: int, end: int) -> Coverage:
        """Every instrument of ``ids`` (None: all) over ``[start, end]``."""
        arr = None if not ids else np.array(sorted(ids), dtype=np.int64)
        return cls(rtype, arr, start, end)

    @classmethod
    def scanned(cls, rtype: int, per_id: dict[int, tuple[int, int]]) -> Coverage:
        """Per instrument (first, last) trade time, from a scan of the records."""
        ids = np.array(sorted(per_id), dtype=np.int64)
        lo = np.array([per_id[i][0] for i in ids.tolist()], dtype=np.int64)
        hi = np.array([per_id[i][1] for i in ids.tolist()], dtype=np.int64)
        return cls(rtype, ids, lo, hi)

    def covers(self, instrument_id: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        """Bool mask: the (instrument, time) of each row lies in this coverage."""
        iid = instrument_id.astype(np.int64)
        if self.ids is None:
            return (ts_event >= self.lo) & (ts_event <= self.hi)
        if not len(self.ids):
            return np.zeros(len(iid), dtype=bool)
        at = np.clip(np.searchsorted(self.ids, iid), 0, len(self.ids) - 1)
        found = self.ids[at] == iid
        lo = self.lo[at] if isinstance(self.lo, np.ndarray) else self.lo
        hi = self.hi[at] if isinstance(self.hi, np.ndarray) else self.hi
        return found & (ts_event >= lo) & (ts_event <= hi)

    def overlaps(self, other: Coverage) -> bool:
        """Tell cheaply whether the two coverages could share an (instrument, time)."""
        lo_a, hi_a = np.min(self.lo), np.max(self.hi)
        lo_b, hi_b = np.min(other.lo), np.max(other.hi)
        if hi_a < lo_b or hi_b < lo_a:
            return False
        if self.ids is None or other.ids is None:
            return True
        return bool(np.intersect1d(self.ids, other.ids).size)


@dataclass(frozen=True)
class TradeSelection:
    """Which trade records of one input count.

    Attributes
    ----------
    rtype : int | None
        The input's primary counted rtype (its richest with trades), None if none.
    counted : frozenset[int]
        The rtypes whose trade records may count.
    blockers : dict[int, tuple[Coverage, ...]]
        Per counted rtype, the coverages of richer rtypes that take precedence.
    """

    rtype: int | None
    counted: frozenset[int] = field(default_factory=frozenset)
    blockers: dict[int, tuple[Coverage, ...]] = field(default_factory=dict)

    @classmethod
    def only(cls, rtype: int | None) -> TradeSelection:
        """Count every trade of ``rtype`` and nothing else (``IFD_TRADE_SCHEMA`` explicit)."""
        return cls(rtype, frozenset() if rtype is None else frozenset({rtype}), {})

    def counts(self, rtype: int, instrument_id: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        """Bool mask over the rows: True = this trade record counts.

        Parameters
        ----------
        rtype : int
            Record type of the rows.
        instrument_id : uint32[n]
        ts_event : int64[n] or uint64[n]
            ns since epoch UTC.
        """
        n = len(instrument_id)
        if rtype not in self.counted:
            return np.zeros(n, dtype=bool)
        mask = np.ones(n, dtype=bool)
        ts = ts_event.astype(np.int64)
        for coverage in self.blockers.get(rtype, ()):
            mask &= ~coverage.covers(instrument_id, ts)
        return mask


def select(coverages: list[list[Coverage]], groups: list[int]) -> list[TradeSelection]:
    """Build each input's selection from every input's coverages.

    Parameters
    ----------
    coverages : list of list of Coverage
        Per input, the coverage of each trade-bearing rtype it holds.
    groups : list of int
        Per input, its overlap group (inputs of one dataset that may hold the
        same trades); only coverages within a group block each other.
    """
    out = []
    for i, own in enumerate(coverages):
        counted = frozenset(c.rtype for c in own)
        blockers: dict[int, tuple[Coverage, ...]] = {}
        for cov in own:
            richer = tuple(
                other
                for j, theirs in enumerate(coverages) if groups[j] == groups[i]
                for other in theirs
                if RTYPE_RANK[other.rtype] > RTYPE_RANK[cov.rtype] and other.overlaps(cov)
            )
            if richer:
                blockers[cov.rtype] = richer
        primary = max(counted, key=lambda r: RTYPE_RANK[r]) if counted else None
        out.append(TradeSelection(primary, counted, blockers))
    return out
