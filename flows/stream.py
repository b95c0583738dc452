"""Per-input processing: normalise → classify aggressor → window parts.

:class:`StreamProcessor` is the body of the dataflow's stateful step keyed by
input (one :class:`StreamState` per DBN file or live stream): tick-test memory,
the input's own inline definitions, and which of its window keys still have
open windows. Everything is numpy over the batch; Python runs once per
(instrument, window) group, not per trade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from connectors.dbn import SourceBatch
from flows.aggressor import TickState, classify_aggressor
from flows.instruments import InstrumentCatalog, contract_for
from flows.normalise import NormalisedBatch, normalise_chunk
from flows.pressure import WindowTracker, aggregate_parts, split_by_shard_and_window
from flows.spreads import spread_legs
from models.records import (
    BatchStats,
    Contract,
    DeadLetters,
    Heartbeat,
    InstrumentDefinition,
    PartBlock,
)

StreamItem = PartBlock | Heartbeat | BatchStats | DeadLetters


def normalise_batch(batch: SourceBatch) -> tuple[SourceBatch, NormalisedBatch]:
    """Stateless map step: select and validate the trades of one source batch."""
    return batch, normalise_chunk(batch.chunk, batch.trade_rtype, batch.source)


@dataclass
class StreamState:
    """Recoverable state of one input stream (pickled into bytewax snapshots)."""

    tick: TickState = field(default_factory=TickState)
    tracker: WindowTracker | None = None
    definitions: dict[int, InstrumentDefinition] = field(default_factory=dict)
    watermark_ns: int = 0


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
    """

    def __init__(self, catalog: InstrumentCatalog, *, window_ns: int, lateness_ns: int,
                 shards: int = 16) -> None:
        self.catalog = catalog
        self.window_ns = window_ns
        self.lateness_ns = lateness_ns
        self.shards = shards

    def new_state(self) -> StreamState:
        """Empty state for an input seen for the first time."""
        return StreamState(tracker=WindowTracker(self.lateness_ns))

    def _resolver(self, state: StreamState) -> Callable[[int], Contract]:
        inline = state.definitions
        if not inline:
            return self.catalog.resolve

        def resolve(instrument_id: int) -> Contract:
            definition = inline.get(instrument_id)
            if definition is not None:
                return contract_for(definition)
            return self.catalog.resolve(instrument_id)

        return resolve

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
        if state is None:
            state = self.new_state()
        assert state.tracker is not None
        for definition in batch.chunk.definitions:
            known = state.definitions.get(definition.instrument_id)
            if known is None or definition.ts_recv >= known.ts_recv:
                state.definitions[definition.instrument_id] = definition

        trades = norm.trades
        side, method = classify_aggressor(
            trades.instrument_id, trades.price, trades.flag_side,
            trades.bid_px, trades.ask_px, state.tick,
        )
        parts = aggregate_parts(
            trades.ts_event, trades.instrument_id, trades.price, trades.size, side, method,
            window_ns=self.window_ns, resolve=self._resolver(state),
            source=batch.source,
            seq=batch.seq,
            spread=spread_legs(trades.ts_event, trades.instrument_id, side),
        )
        blocks = split_by_shard_and_window(parts, self.shards)
        state.tracker.observe(blocks)
        state.watermark_ns = max(state.watermark_ns, batch.chunk.max_ts_event)
        out: list[StreamItem] = list(blocks)
        out.extend(state.tracker.heartbeats(state.watermark_ns))
        c = parts.cols
        undefined_rows = ~c["defined"]
        undefined = int((c["buy_trades"] + c["sell_trades"] + c["unknown_trades"])[undefined_rows].sum())
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
            )
        )
        return state, out
