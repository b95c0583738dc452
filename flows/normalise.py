"""Normalisation: decoded DBN records → columnar trades + dead letters.

Rules (Databento schema docs; CME MDP 3.0):

| input                                 | rule                                                      |
|---------------------------------------|-----------------------------------------------------------|
| trades (0x00), tbbo/mbp-1 (0x01),     | a trade is a record with ``action == 'T'``                |
| mbp-10 (0x0A)                         |                                                           |
| mbo (0xA0)                            | only ``T`` counts; ``F`` fills are the passive side of the |
|                                       | same match and would double count                         |
| ``flags & F_SNAPSHOT``                | book snapshot record, never a trade                       |
| price == ``UNDEF_PRICE``              | dead letter ``undef_price``                               |
| size == 0                             | dead letter ``zero_size``                                 |
| trade carried by a richer rtype for   | counted as ``duplicate_schema_trades`` (same trade        |
| the same instrument and time          | repeated in another schema), never aggregated             |
| (:mod:`models.selection`)         |                                                           |
| ``side`` ``B`` / ``A`` / ``N``         | flag side +1 (buy, lifts the ask) / -1 (sell, hits the    |
|                                       | bid) / 0 (none: classify with Lee-Ready)                  |

The output keeps prices as int64 fixed-point 1e-9 and time as int64 ns UTC.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from models.batch import RTYPE_MBO, RTYPE_MBP1, RTYPE_MBP10, DecodedChunk, rtype_name
from models.records import F_SNAPSHOT, UNDEF_PRICE, DeadLetters

if TYPE_CHECKING:
    from models.selection import TradeSelection

_T, _B, _A = ord("T"), ord("B"), ord("A")


def _char_codes(column: np.ndarray) -> np.ndarray:
    """View a ``S1`` field as uint8 codes (byte compares on ``S1`` are ~10× slower)."""
    return column.view(np.uint8)


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Valid trades of one source batch, columnar, in file order.

    Attributes
    ----------
    ts_event : int64[n]
        Match time, ns since epoch UTC.
    ts_recv : int64[n]
        Databento receive time, ns since epoch UTC.
    instrument_id : uint32[n]
    price : int64[n]
        Fixed-point 1e-9 USD index points.
    size : int64[n]
        Contracts (> 0).
    flag_side : int8[n]
        Exchange aggressor: +1 buy, -1 sell, 0 none.
    bid_px, ask_px : int64[n]
        BBO carried by the record (fixed-point), ``UNDEF_PRICE`` when absent.
    position : int64[n]
        File-wide record index.
    """

    ts_event: np.ndarray
    ts_recv: np.ndarray
    instrument_id: np.ndarray
    price: np.ndarray
    size: np.ndarray
    flag_side: np.ndarray
    bid_px: np.ndarray
    ask_px: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_event)

    def take(self, rows: np.ndarray) -> TradeBatch:
        """Return the trades at ``rows`` (bool mask or positions), every column alike."""
        return TradeBatch(*(getattr(self, f.name)[rows] for f in fields(TradeBatch)))


@dataclass(frozen=True, slots=True)
class NormalisedBatch:
    """Result of :func:`normalise_chunk`: trades, dead letters and skip counts."""

    trades: TradeBatch
    dead_letters: DeadLetters
    skipped: Counter[str]


def _empty_trades() -> TradeBatch:
    i8 = np.empty(0, dtype=np.int64)
    return TradeBatch(
        i8, i8, np.empty(0, np.uint32), i8, i8, np.empty(0, np.int8), i8, i8, i8
    )


def _bbo(records: np.ndarray, rtype: int) -> tuple[np.ndarray, np.ndarray]:
    if rtype in (RTYPE_MBP1, RTYPE_MBP10):
        bid, ask = records["bid_px_00"], records["ask_px_00"]
        return bid.astype(np.int64), ask.astype(np.int64)
    undef = np.full(len(records), UNDEF_PRICE, dtype=np.int64)
    return undef, undef


def normalise_chunk(chunk: DecodedChunk, trade_rtype: int | None, source: str, *,
                    selection: TradeSelection | None = None) -> NormalisedBatch:
    """Extract the valid trades of ``chunk`` from the selected trade records.

    Parameters
    ----------
    chunk : DecodedChunk
        One decoded micro-batch.
    trade_rtype : int | None
        The rtype whose trades count for this input (see
        :func:`flows.schema_select.resolve_trade_rtypes`); None = no trades.
    source : str
        Input name, stamped on dead letters.
    selection : TradeSelection | None
        Per (rtype, instrument, time) which trade records count
        (:mod:`models.selection`); None: every trade of ``trade_rtype``.

    Returns
    -------
    NormalisedBatch
        Trades in file order, dead letters, and skip counters (book events of
        the selected rtype, snapshot records, duplicate-schema trades, and the
        reader's unused rtypes).
    """
    skipped: Counter[str] = Counter(chunk.skipped)
    batches: list[TradeBatch] = []
    deads: list[DeadLetters] = []
    for rtype, records in chunk.trades.items():
        is_trade = _char_codes(records["action"]) == _T
        snapshot = (records["flags"] & F_SNAPSHOT) != 0
        if selection is not None:
            counted = selection.counts(rtype, records["instrument_id"], records["ts_event"])
        else:
            counted = np.full(len(records), rtype == trade_rtype, dtype=bool)
        dup_mask = is_trade & ~snapshot & ~counted
        dup = int(np.count_nonzero(dup_mask))
        if dup:
            skipped["duplicate_schema_trades"] += dup
        if not counted.any():
            if len(records) - dup:
                skipped[f"{rtype_name(rtype)}_other"] += len(records) - dup
            continue
        if dup:
            keep = ~dup_mask
            records, is_trade, snapshot = records[keep], is_trade[keep], snapshot[keep]
            positions_all = chunk.positions[rtype][keep]
        else:
            positions_all = chunk.positions[rtype]
        n_snap = int(np.count_nonzero(snapshot))
        if n_snap:
            skipped["snapshot_records"] += n_snap
        trade_mask = is_trade & ~snapshot
        n_book = len(records) - n_snap - int(np.count_nonzero(trade_mask))
        if n_book:
            skipped["book_events" if rtype in (RTYPE_MBO, RTYPE_MBP1, RTYPE_MBP10) else
                    f"{rtype_name(rtype)}_non_trade"] += n_book
        if n_book or n_snap:
            rows = records[trade_mask]
            positions = positions_all[trade_mask]
        else:  # every record is a trade (trades/tbbo schemas): no copy
            rows, positions = records, positions_all
        price = rows["price"].astype(np.int64)
        size = rows["size"].astype(np.int64)
        undef = price == UNDEF_PRICE
        zero = (size == 0) & ~undef
        bad = undef | zero
        if bad.any():
            reason = np.where(undef[bad], "undef_price", "zero_size").astype(object)
            deads.append(DeadLetters(
                source=source,
                position=positions[bad],
                reason=reason,
                rtype=np.full(int(bad.sum()), rtype, dtype=np.uint8),
                instrument_id=rows["instrument_id"][bad].astype(np.uint32),
                ts_event=rows["ts_event"][bad].astype(np.int64),
                price=price[bad],
                size=size[bad],
            ))
            good = ~bad
            rows, positions, price, size = rows[good], positions[good], price[good], size[good]
        side = _char_codes(rows["side"])
        flag_side = np.where(side == _B, 1, np.where(side == _A, -1, 0)).astype(np.int8)
        bid, ask = _bbo(rows, rtype)
        batches.append(TradeBatch(
            ts_event=rows["ts_event"].astype(np.int64),
            ts_recv=rows["ts_recv"].astype(np.int64),
            instrument_id=rows["instrument_id"].astype(np.uint32),
            price=price,
            size=size,
            flag_side=flag_side,
            bid_px=bid,
            ask_px=ask,
            position=positions,
        ))
    trades = _concat_trades(batches)
    dead = _concat_dead(deads, source)
    return NormalisedBatch(trades=trades, dead_letters=dead, skipped=skipped)


def _no_dead_letters(source: str) -> DeadLetters:
    e = np.empty(0, dtype=np.int64)
    return DeadLetters(source, e, np.empty(0, dtype=object), np.empty(0, np.uint8),
                       np.empty(0, np.uint32), e, e, e)


def _concat_trades(batches: list[TradeBatch]) -> TradeBatch:
    """One TradeBatch in file order from the per-rtype batches."""
    if not batches:
        return _empty_trades()
    if len(batches) == 1:
        return batches[0]
    names = [f.name for f in fields(TradeBatch)]
    cols = {n: np.concatenate([getattr(b, n) for b in batches]) for n in names}
    order = np.argsort(cols["position"], kind="stable")
    return TradeBatch(**{n: v[order] for n, v in cols.items()})


def _concat_dead(deads: list[DeadLetters], source: str) -> DeadLetters:
    if not deads:
        return _no_dead_letters(source)
    if len(deads) == 1:
        return deads[0]
    names = ("position", "reason", "rtype", "instrument_id", "ts_event", "price", "size")
    return DeadLetters(source, *(np.concatenate([getattr(d, n) for d in deads]) for n in names))
