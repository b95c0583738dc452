"""The source → flow batch contract: record types, decoded chunks and source batches.

Connectors (DBN files, the live feed) produce :class:`SourceBatch` es; the
flow's domain steps (:mod:`flows.normalise`, :mod:`flows.stream`) consume them.
Both sides import this module, never each other. Record types and layouts
follow Databento's DBN specification (``databento_dbn.RType``, DBN v1-v3).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import databento_dbn as dbn
import numpy as np

from models.records import InstrumentDefinition

if TYPE_CHECKING:
    from models.selection import TradeSelection

RTYPE_TRADES = int(dbn.RType.MBP_0)
RTYPE_MBP1 = int(dbn.RType.MBP_1)
RTYPE_MBP10 = int(dbn.RType.MBP_10)
RTYPE_MBO = int(dbn.RType.MBO)
RTYPE_DEFINITION = int(dbn.RType.INSTRUMENT_DEF)
RTYPE_STATISTICS = int(dbn.RType.STATISTICS)
STAT_OPEN_INTEREST = 9
"""Databento ``StatType.OPEN_INTEREST``: ``quantity`` holds the open interest (contracts)."""
TRADE_RTYPE_DTYPES: dict[int, np.dtype] = {
    RTYPE_TRADES: np.dtype(dbn.TradeMsg._dtypes),
    RTYPE_MBP1: np.dtype(dbn.MBP1Msg._dtypes),
    RTYPE_MBP10: np.dtype(dbn.MBP10Msg._dtypes),
    RTYPE_MBO: np.dtype(dbn.MBOMsg._dtypes),
}
"""Record dtypes of the rtypes that carry trades (identical in DBN v1-v3)."""

SCHEMA_RTYPE: dict[str, int] = {
    "trades": RTYPE_TRADES,
    "tbbo": RTYPE_MBP1,
    "mbp-1": RTYPE_MBP1,
    "mbp-10": RTYPE_MBP10,
    "mbo": RTYPE_MBO,
}
"""Trade-bearing schema name → its rtype."""

_RTYPE_NAMES = {int(v): v.name.lower() for v in dbn.RType.variants()}


def rtype_name(rtype: int) -> str:
    """Databento's name for an rtype (``"mbo"``, ``"ohlcv_1s"``) or ``rtype_0x..``."""
    return _RTYPE_NAMES.get(rtype, f"rtype_0x{rtype:02x}")


@dataclass
class DecodedChunk:
    """One micro-batch of decoded records from one input.

    Attributes
    ----------
    start_record : int
        File-wide index of the chunk's first record (0-based).
    n_records : int
        Records in the chunk, of every rtype.
    end_offset : int
        Decompressed byte offset just after the chunk's last record; resuming
        there continues with the next record.
    trades : dict[int, numpy.ndarray]
        rtype → structured array (dtype ``TRADE_RTYPE_DTYPES[rtype]``) of that
        rtype's records, in file order. Holds every record of the rtype, not
        only trades (filtering is :mod:`flows.normalise`'s job).
    positions : dict[int, numpy.ndarray]
        rtype → int64 file-wide record index of each row of ``trades[rtype]``.
    definitions : list[InstrumentDefinition]
        Definition records in the chunk, upgraded to DBN v3 semantics.
    open_interest : dict[str, numpy.ndarray]
        Open-interest statistics records (Databento ``statistics`` schema, stat type 9, new
        values): ``instrument_id`` uint32, ``ts_event``/``ts_recv`` int64 ns UTC, ``quantity``
        int64 contracts. Empty arrays when the chunk holds none.
    skipped : collections.Counter[str]
        Records of rtypes the pipeline does not use, by rtype name.
    max_ts_event : int
        Largest ``ts_event`` in the chunk (ns UTC), 0 if empty.
    """

    start_record: int
    n_records: int
    end_offset: int
    trades: dict[int, np.ndarray] = field(default_factory=dict)
    positions: dict[int, np.ndarray] = field(default_factory=dict)
    definitions: list[InstrumentDefinition] = field(default_factory=list)
    open_interest: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    max_ts_event: int = 0


@dataclass(frozen=True)
class SourceBatch:
    """One micro-batch of one input, as emitted by the source.

    Attributes
    ----------
    source : str
        Input id (the file name; part of every stored row's identity).
    seq : int
        Identity of the batch within the input, part of every stored row's
        identity. Files: 0-based batch number (with ``IFD_BATCH_RECORDS``
        fixed, (source, seq) always denotes the same records). Live: the unit
        id ``ts_recv second * 4096 + split`` (:mod:`connectors.live_resume`):
        unique within a run and equal for the same records after a replay.
    trade_rtype : int | None
        The rtype whose trades count for this input.
    chunk : DecodedChunk
    bytes_read, total_bytes : int
        Compressed bytes consumed so far / file size (progress).
    eof : bool
        True on the input's last batch.
    partition : str
        Key of the source partition (a series of files read in order); the
        per-stream state (tick test, watermark) is kept per partition.
    selection : TradeSelection | None
        Which trade records count, per (rtype, instrument, time)
        (:mod:`models.selection`); None: every trade of ``trade_rtype``.
    valid_ns : tuple[int, int] | None
        Plausible ``ts_event`` range of the input's records (ns UTC, end
        exclusive; from the DBN header's ``start``/``end``), None = unknown.
    path : str
        File path as given (display only; ``source`` is the identity).
    error : str | None
        Set on a partition's final batch when its input ended in an error
        (truncated or corrupt file): the records before it were delivered,
        the rest are missing and the run is marked partial.
    last : bool
        True on the partition's final batch (its last file exhausted, or an
        error): no more data will come from this partition.
    clock_ns : int
        Live only: the event time (ns UTC) the connection had delivered up to when
        the batch was emitted (:meth:`connectors.live_connection.LiveConnection.clock_ns`),
        0 = unknown (files, backfill, catch-up), bounded by the batch's own records: never
        more than ``min(1 s + seal grace, lateness / 2)`` past the start of their
        ``ts_recv`` second (:meth:`connectors.live.LiveFeed._clock_ns`). Every window
        key's clock is advanced to it, so windows close at their end + the allowed
        lateness on the wall clock, not later by the age of the newest trade a key
        happened to see.
    warm_for_ns : int
        0 for a regular batch. Otherwise a *warm-up* batch of a file partition
        (``IFD_REPLAY_PARTITIONS=file``, :func:`connectors.inputs.split_series`): records of
        the previous file of the series, read again only so that the partition's tick-test
        memory starts as a series run's would at its first file's start, this time (ns UTC).
        Only its trades in the CME session of that time count; nothing of it is emitted,
        stored or counted (the partition that owns the file counts it).
    """

    source: str
    seq: int
    trade_rtype: int | None
    chunk: DecodedChunk
    bytes_read: int
    total_bytes: int
    eof: bool
    partition: str = ""
    selection: TradeSelection | None = None
    valid_ns: tuple[int, int] | None = None
    path: str = ""
    error: str | None = None
    last: bool = False
    clock_ns: int = 0
    warm_for_ns: int = 0
