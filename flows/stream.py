"""Per-input processing: normalise → classify aggressor → window parts.

:class:`StreamProcessor` is the body of the dataflow's stateful step keyed by
input (one :class:`StreamState` per DBN file or live stream): tick-test memory,
the input's own inline definitions, and which of its window keys still have
open windows. Everything is numpy over the batch; Python runs once per
(instrument, window) group, not per trade.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from flows.absorption import AbsorptionTracker
from flows.aggressor import TickState, classify_aggressor
from flows.book import OrderBooks
from flows.clock import Progress
from flows.exchange_time import cme_sessions
from flows.footprint import footprint_rows
from flows.icebergs import IcebergTracker
from flows.instruments import InstrumentCatalog, add_version, resolve_trades
from flows.normalise import NormalisedBatch, TradeBatch, normalise_chunk
from flows.pressure import WindowTracker, aggregate_parts, shard_key, split_by_shard_and_window
from flows.spreads import attribute_spread_legs, spread_legs
from flows.sweeps import TapeRules, block_prints, sweep_prints
from flows.validate import MAX_SKEW_NS, plausible_clock, validate_trades
from models.batch import RTYPE_MBO, SourceBatch
from models.records import (
    OPTION_TYPE_CODES,
    SPREAD_CLASSES,
    AbsorptionRows,
    BatchStats,
    Contract,
    DeadLetters,
    FootprintRows,
    Heartbeat,
    IcebergRows,
    InstrumentDefinition,
    OpenInterestRows,
    PartBlock,
    SideMethod,
)

StreamItem = (PartBlock | Heartbeat | Progress | BatchStats | DeadLetters | OpenInterestRows
              | FootprintRows | IcebergRows | AbsorptionRows)


def _columns(rows: list[tuple], iid_at: int, ts_at: int, catalog: InstrumentCatalog,
             state: StreamState) -> tuple[list[np.ndarray], np.ndarray]:
    """Detector rows as column arrays (object dtype) and the contract key of each row.

    ``iid_at`` / ``ts_at``: the columns holding the instrument id and the time the contract is
    resolved at (an id is reused after expiry: :func:`resolve_trades`).
    """
    cols = [np.array(c, dtype=object) for c in zip(*rows, strict=True)]
    contract_of, contracts = resolve_trades(cols[iid_at].astype(np.uint32),
                                            cols[ts_at].astype(np.int64), catalog,
                                            state.definitions)
    return cols, np.array([c.key for c in contracts], dtype=object)[contract_of]


def _absorption_rows(batch: SourceBatch, books: OrderBooks, catalog: InstrumentCatalog,
                     state: StreamState, window_ns: int) -> AbsorptionRows | None:
    """Absorption events the batch finished, resolved to contracts at their first fill."""
    rows = books.absorption.take() if books.absorption is not None else []
    if not rows:
        return None
    c, keys = _columns(rows, 0, 6, catalog, state)
    i64 = np.int64
    return AbsorptionRows(
        source=batch.source, seq=batch.seq, contract_key=keys,
        instrument_id=c[0].astype(np.uint32), side=c[1], price=c[2].astype(i64),
        absorbed=c[3].astype(i64), start_size=c[4].astype(i64), fills=c[5].astype(i64),
        first_ts=c[6].astype(i64), last_ts=c[7].astype(i64), outcome=c[8],
        window_start_ns=c[6].astype(i64) // window_ns * window_ns)


def _iceberg_rows(batch: SourceBatch, books: OrderBooks, catalog: InstrumentCatalog,
                  state: StreamState) -> IcebergRows | None:
    """Icebergs the batch detected or changed, resolved to contracts at their last update."""
    rows = books.icebergs.take() if books.icebergs is not None else []
    if not rows:
        return None
    c, keys = _columns(rows, 1, 6, catalog, state)
    i64 = np.int64
    return IcebergRows(
        source=batch.source, seq=batch.seq, kind=c[0], instrument_id=c[1].astype(np.uint32),
        contract_key=keys, side=c[2], price=c[3].astype(i64), order_id=c[4].astype(np.uint64),
        first_ts=c[5].astype(i64), last_ts=c[6].astype(i64), refills=c[7].astype(i64),
        peak_size=c[8].astype(i64), executed=c[9].astype(i64),
        estimated_total=c[10].astype(i64), state=c[11])


def _book_quotes(trades: TradeBatch, batch: SourceBatch, books: OrderBooks) -> TradeBatch:
    """Apply the batch's MBO records to ``books``; give its trades the BBO published before them.

    MBO trades carry no BBO; with the book's (:mod:`flows.book`) the quote rule can classify the
    trades whose aggressor side is ``N``. A trade keeps an undefined BBO where the book had
    none, was unreliable, or (pre-open auction) was crossed.
    """
    records = batch.chunk.trades.get(RTYPE_MBO)
    if records is None or len(records) == 0:
        return trades
    quotes = books.apply(records, batch.chunk.positions.get(RTYPE_MBO))
    if len(trades) == 0 or len(quotes.position) == 0:
        return trades
    at = np.clip(np.searchsorted(quotes.position, trades.position), 0, len(quotes.position) - 1)
    found = quotes.position[at] == trades.position
    bid = np.where(found, quotes.bid_px[at], trades.bid_px)
    ask = np.where(found, quotes.ask_px[at], trades.ask_px)
    return dataclasses.replace(trades, bid_px=bid, ask_px=ask)


def _classify(trades: TradeBatch, state: StreamState, catalog: InstrumentCatalog,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggressor side, side method and spread mask of a batch's trades (:mod:`flows.spreads`).

    Leg prints of spreads with known legs take their side from the spread's aggressor (method
    ``FLAG``: derived from the exchange flag) and stay out of the tick memory; every other trade
    goes through :func:`~flows.aggressor.classify_aggressor`. Spread trades, their legs and
    the fallback's same-time two-sided prints form the spread mask (``spread_volume``).
    """
    ids = trades.instrument_id
    legs = catalog.legs(np.unique(ids).tolist(), state.definitions) if len(ids) else {}
    is_spread, is_leg, leg_side = attribute_spread_legs(trades.ts_event, ids, trades.flag_side, legs)
    session = cme_sessions().locate_ns(trades.ts_event)
    if not is_leg.any():
        side, method = classify_aggressor(ids, trades.price, trades.flag_side, trades.bid_px,
                                          trades.ask_px, state.tick, session=session)
    else:
        rest = ~is_leg
        side = np.zeros(len(ids), dtype=np.int8)
        method = np.zeros(len(ids), dtype=np.int8)
        side[rest], method[rest] = classify_aggressor(
            ids[rest], trades.price[rest], trades.flag_side[rest], trades.bid_px[rest],
            trades.ask_px[rest], state.tick, session=session[rest])
        side[is_leg] = leg_side[is_leg]
        method[is_leg] = np.where(leg_side[is_leg] != 0, SideMethod.FLAG, SideMethod.UNKNOWN)
    spread = spread_legs(trades.ts_event, ids, side) | is_leg | is_spread
    return side, method, spread


def _tape_tags(trades: TradeBatch, side: np.ndarray, spread: np.ndarray, contract_of: np.ndarray,
               contracts: list[Contract], rules: TapeRules) -> tuple[np.ndarray, np.ndarray]:
    """Sweep and block prints of a batch (:mod:`flows.sweeps`); spread flow is neither."""
    if len(side) == 0:
        empty = np.zeros(0, dtype=bool)
        return empty, empty
    chains: dict[tuple[str, int], int] = {}
    chain = np.array([chains.setdefault((c.underlying, c.expiration_ns), len(chains))
                      if c.option_type in OPTION_TYPE_CODES and c.expiration_ns is not None
                      and c.strike_price is not None else -1 for c in contracts], dtype=np.int64)
    option_type = np.array([OPTION_TYPE_CODES.get(c.option_type, -1) for c in contracts],
                           dtype=np.int8)
    strike = np.array([-1 if c.strike_price is None else c.strike_price for c in contracts],
                      dtype=np.int64)
    threshold = np.array([rules.block_threshold(c.underlying) for c in contracts], dtype=np.int64)
    size = trades.size.astype(np.int64)
    sweep = sweep_prints(trades.ts_event, side, size, chain[contract_of],
                         option_type[contract_of], strike[contract_of], ~spread, rules)
    block = block_prints(size, threshold[contract_of]) & ~spread
    return sweep, block


def _open_interest(batch: SourceBatch, catalog: InstrumentCatalog,
                   state: StreamState) -> OpenInterestRows | None:
    """Return the batch's open-interest records, each resolved to its contract at its ``ts_recv``."""
    oi = batch.chunk.open_interest
    if not oi or len(oi["instrument_id"]) == 0:
        return None
    contract_of, contracts = resolve_trades(oi["instrument_id"], oi["ts_recv"], catalog,
                                            state.definitions)
    keys = np.array([c.key for c in contracts], dtype=object)[contract_of]
    symbols = np.array([c.symbol for c in contracts], dtype=object)[contract_of]
    return OpenInterestRows(batch.source, oi["instrument_id"], keys, symbols, oi["ts_event"],
                            cme_sessions().locate_ns(oi["ts_event"]), oi["quantity"])


def normalise_batch(batch: SourceBatch) -> tuple[SourceBatch, NormalisedBatch]:
    """Stateless map step: select the trades of one source batch (:mod:`flows.normalise`)."""
    return batch, normalise_chunk(batch.chunk, batch.trade_rtype, batch.source,
                                  selection=batch.selection)


@dataclass
class StreamState:
    """Recoverable state of one input stream (pickled into bytewax snapshots)."""

    tick: TickState = field(default_factory=TickState)
    tracker: WindowTracker | None = None
    definitions: dict[int, list[InstrumentDefinition]] = field(default_factory=dict)
    """The input's in-stream definitions: id → every version, by ``ts_recv``."""
    watermark_ns: int = 0
    books: OrderBooks | None = None
    """The input's MBO order books (L3 on, MBO inputs only)."""

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled state (one from before order books gets none)."""
        state.setdefault("books", None)
        self.__dict__.update(state)

    def __deepcopy__(self, memo: dict) -> StreamState:
        """Independent copy for bytewax's per-epoch snapshot, in time linear in entries.

        bytewax's ``stateful_map`` deep-copies this state every epoch. Definitions are frozen
        (:class:`~models.records.InstrumentDefinition`), so the copy shares them and copies
        only the per-id version lists (``add_version`` appends in place); the tick-test and
        window-tracker dicts hold ints and are copied shallowly. A full chain's thousands of
        definitions made the generic deep copy ~170 ms per epoch.
        """
        clone = dataclasses.replace(
            self,
            tick=dataclasses.replace(self.tick, last_price=dict(self.tick.last_price),
                                     last_direction=dict(self.tick.last_direction),
                                     last_session=dict(self.tick.last_session)),
            tracker=None if self.tracker is None else self.tracker.copy(),
            definitions={i: list(v) for i, v in self.definitions.items()},
            books=copy.deepcopy(self.books, memo))
        memo[id(self)] = clone
        return clone


class StreamProcessor:
    """Turn normalised batches of one input into window parts and heartbeats.

    Parameters
    ----------
    catalog : InstrumentCatalog
        Definitions and symbology shared by all inputs (definition files).
    window_ns : int
        Tumbling window length, ns.
    lateness_ns : int
        Allowed lateness, ns (heartbeats close windows this long after their end).
    shards : int
        Number of window keys contracts are hashed onto.
    symbology : dict[str, frozenset[int]] | None
        Per input id, the instrument ids of its DBN metadata symbology: a trade
        of an id outside it (and without a definition) is a dead letter
        (:mod:`flows.validate`). Inputs without symbology are not checked.
    max_skew_ns : int
        Time-check tolerance (:data:`flows.validate.MAX_SKEW_NS`).
    live : bool
        The input is the live feed (stamped on :class:`BatchStats` for the health board).
    merged_clock : bool
        Several partitions feed the window keys (:mod:`flows.clock`): after
        each batch report :class:`~flows.clock.Progress` to every window key
        instead of per-input heartbeats.
    shard_keys : list[str] | None
        The window key of each shard (``shards`` of them; :mod:`flows.routing` picks keys
        that land on a chosen worker); None: :func:`~flows.pressure.shard_key`.
    book_threads : int
        Order-book shards applied on threads (:class:`flows.book.OrderBooks`).
    """

    def __init__(self, catalog: InstrumentCatalog, *, window_ns: int, lateness_ns: int,
                 shards: int = 16, symbology: dict[str, frozenset[int]] | None = None,
                 max_skew_ns: int = MAX_SKEW_NS, merged_clock: bool = False,
                 tape: TapeRules | None = None, l3: bool = True, live: bool = False,
                 shard_keys: list[str] | None = None, book_threads: int = 1) -> None:
        if shard_keys is not None and len(shard_keys) != shards:
            msg = f"{len(shard_keys)} shard keys for {shards} shards"
            raise ValueError(msg)
        self.shard_keys = shard_keys or [shard_key(i) for i in range(shards)]
        self.catalog = catalog
        self.live = live
        self.l3 = l3
        self.book_threads = book_threads
        self.tape = tape or TapeRules()
        self.window_ns = window_ns
        self.lateness_ns = lateness_ns
        self.shards = shards
        self.symbology = symbology or {}
        self.max_skew_ns = max_skew_ns
        self.merged_clock = merged_clock

    def new_state(self) -> StreamState:
        """Empty state for an input seen for the first time."""
        return StreamState(tracker=WindowTracker(self.lateness_ns))

    def process(
        self, state: StreamState | None, item: tuple[SourceBatch, NormalisedBatch]
    ) -> tuple[StreamState, list[StreamItem]]:
        """One batch in, part blocks per (shard, window) + heartbeats + stats (+ dead letters) out.

        Returns
        -------
        (StreamState, list)
            The updated state and the items to route downstream.
        """
        batch, norm = item
        if state is None or (batch.warm_for_ns and batch.seq == 0):
            state = self.new_state()  # a warm-up starts from nothing, also when resumed mid-way
        assert state.tracker is not None
        for definition in batch.chunk.definitions:
            add_version(state.definitions.setdefault(definition.instrument_id, []), definition)

        norm = validate_trades(
            norm, source=batch.source, rtype=batch.trade_rtype or 0, valid_ns=batch.valid_ns,
            known_ids=self.symbology.get(batch.source),
            is_defined=_Defined(self.catalog, state.definitions),
            max_skew_ns=self.max_skew_ns,
        )
        if batch.warm_for_ns:
            self._warm_up(state, batch, norm.trades)
            return state, []
        trades = norm.trades
        mbo = self.l3 and batch.trade_rtype == RTYPE_MBO
        if mbo:
            if state.books is None:
                state.books = OrderBooks(icebergs=IcebergTracker(), absorption=AbsorptionTracker(),
                                         threads=self.book_threads)
            trades = _book_quotes(trades, batch, state.books)
        contract_of, contracts = resolve_trades(
            trades.instrument_id, trades.ts_recv, self.catalog, state.definitions)
        side, method, spread = _classify(trades, state, self.catalog)
        if len(contracts):  # a spread instrument's own trades, with or without known legs
            spread |= np.array([c.option_type in SPREAD_CLASSES for c in contracts])[contract_of]
        sweep, block = _tape_tags(trades, side, spread, contract_of, contracts, self.tape)
        parts = aggregate_parts(
            trades.ts_event, trades.instrument_id, trades.price, trades.size, side, method,
            window_ns=self.window_ns,
            source=batch.source,
            seq=batch.seq,
            spread=spread,
            sweep=sweep,
            block=block,
            contract_of=contract_of,
            contracts=contracts,
        )
        blocks = split_by_shard_and_window(parts, self.shards, self.shard_keys)
        state.tracker.observe(blocks)
        state.watermark_ns = max(state.watermark_ns,
                                 plausible_clock(batch.chunk, batch.valid_ns, self.max_skew_ns))
        out: list[StreamItem] = list(blocks)
        if self.merged_clock:
            out.extend(Progress(key, batch.partition, state.watermark_ns, batch.last)
                       for key in self.shard_keys)
        else:
            out.extend(state.tracker.heartbeats(state.watermark_ns))
            if batch.clock_ns:  # live: every key's clock follows the connection's
                out.extend(Heartbeat(key, batch.clock_ns) for key in self.shard_keys)
        c = parts.cols
        undefined_rows = ~c["defined"]
        undefined = int((c["buy_trades"] + c["sell_trades"] + c["unknown_trades"])[undefined_rows].sum())
        oi = _open_interest(batch, self.catalog, state)
        if oi is not None:
            out.append(oi)
        if mbo:
            footprint = footprint_rows(trades.ts_event, trades.price, trades.size, side, contract_of,
                                       contracts, window_ns=self.window_ns, source=batch.source,
                                       seq=batch.seq)
            if footprint is not None:
                out.append(footprint)
            assert state.books is not None
            icebergs = _iceberg_rows(batch, state.books, self.catalog, state)
            if icebergs is not None:
                out.append(icebergs)
            absorbed = _absorption_rows(batch, state.books, self.catalog, state, self.window_ns)
            if absorbed is not None:
                out.append(absorbed)
        dead = norm.dead_letters
        if len(dead):
            out.append(dead)
            reasons, counts = np.unique(dead.reason.astype(str), return_counts=True)
            dead_counts = dict(zip(reasons.tolist(), counts.tolist(), strict=True))
        else:
            dead_counts = {}
        out.append(
            BatchStats(
                source=batch.source,
                seq=batch.seq,
                records=batch.chunk.n_records,
                trades=len(trades),
                undefined_instrument_trades=undefined,
                dead_letters=dead_counts,
                skipped=dict(norm.skipped),
                bytes_read=batch.bytes_read,
                total_bytes=batch.total_bytes,
                max_ts_event=state.watermark_ns,
                eof=batch.eof,
                path=batch.path,
                error=batch.error or "",
                live=self.live,
            )
        )
        return state, out


    def _warm_up(self, state: StreamState, batch: SourceBatch, trades: TradeBatch) -> None:
        """Feed a warm-up batch's trades of the session at ``batch.warm_for_ns`` to the tick memory.

        The same validation and side rules as a regular batch (spread legs stay out of the
        memory, as they do there), so the memory after the warm-up equals a series run's at
        the file's start; trades of earlier sessions are skipped (the memory would drop them at
        the session change anyway). Nothing is emitted or counted.
        """
        sessions = cme_sessions()
        wanted = int(sessions.locate_ns(np.array([batch.warm_for_ns], dtype=np.int64))[0])
        keep = sessions.locate_ns(trades.ts_event) == wanted
        if keep.any():
            _classify(trades.take(keep), state, self.catalog)


class _Defined:
    """``id in _Defined(...)``: the id has a definition in the catalog or in-stream."""

    __slots__ = ("_catalog", "_inline")

    def __init__(self, catalog: InstrumentCatalog, inline: dict[int, list[InstrumentDefinition]]) -> None:
        self._catalog, self._inline = catalog, inline

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._inline or bool(self._catalog.history(instrument_id))  # type: ignore[arg-type]
