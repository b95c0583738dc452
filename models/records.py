"""Typed records and enums shared along the dataflow.

Units everywhere: prices are int64 fixed-point with scale ``1e-9`` inside the
pipeline (``FIXED_PRICE_SCALE``) and USD index points only at the output
boundary; sizes are contracts; timestamps are ``int`` ns since the UNIX epoch,
UTC (``ts_event``, ``ts_recv``), and aware UTC datetimes at the output boundary.

Sentinels (Databento, "Standards and conventions"):

| sentinel         | value      | where                     | how handled                                 |
|------------------|------------|---------------------------|---------------------------------------------|
| ``UNDEF_PRICE``  | 2**63 - 1  | trade price               | dead letter ``undef_price``                 |
| ``UNDEF_PRICE``  | 2**63 - 1  | bid/ask px                | no BBO on that record → tick test           |
| ``UNDEF_PRICE``  | 2**63 - 1  | ``strike_price``          | strike NULL (futures, spreads)              |
| ``UNDEF_TIMESTAMP`` | 2**64-1 | ``expiration``            | expiration NULL                             |
| size ``0``       | 0          | trade size                | dead letter ``zero_size``                   |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

FIXED_PRICE_SCALE = 1_000_000_000
"""Databento fixed-point price scale: 1 unit = 1e-9 USD index points."""
UNDEF_PRICE = 2**63 - 1
"""Databento's null price (``i64::MAX``)."""
UNDEF_TIMESTAMP = 2**64 - 1
"""Databento's null timestamp (``u64::MAX``)."""
F_LAST = 1 << 7
F_TOB = 1 << 6
F_SNAPSHOT = 1 << 5
F_MBP = 1 << 4
F_BAD_TS_RECV = 1 << 3
F_MAYBE_BAD_BOOK = 1 << 2


class AggressorSide(enum.IntEnum):
    """Aggressor side of a trade, as an int8 code in columnar batches.

    ``BUY`` lifted the offer (counts as ``ask_volume``); ``SELL`` hit the bid
    (counts as ``bid_volume``).
    """

    SELL = -1
    UNKNOWN = 0
    BUY = 1


class SideMethod(enum.IntEnum):
    """How a trade's aggressor side was decided (int8 code in batches)."""

    UNKNOWN = 0
    FLAG = 1
    """Exchange-reported aggressor (Databento ``side`` ``B``/``A``; CME tag 5797)."""
    QUOTE = 2
    """Lee-Ready quote rule against the BBO carried by the record."""
    TICK = 3
    """Tick test against the previous trade price of the same instrument."""


class DominantSide(enum.StrEnum):
    """Which side dominated a window's classified volume."""

    BUY = "BUY"
    SELL = "SELL"
    NEUTRAL = "NEUTRAL"


def ns_to_datetime(ts_ns: int) -> datetime:
    """Convert ns since the UNIX epoch to an aware UTC datetime (µs precision)."""
    return datetime.fromtimestamp(ts_ns // 1_000 / 1_000_000, tz=UTC)


@dataclass(frozen=True, slots=True)
class InstrumentDefinition:
    """The fields of a Databento ``InstrumentDefMsg`` the pipeline uses.

    Attributes
    ----------
    instrument_id : int
        Venue instrument id (CME security id), uint32.
    raw_symbol : str
        e.g. ``"ESM4 P5230"``.
    instrument_class : str
        ``"C"`` call, ``"P"`` put, ``"F"`` future, others as Databento defines.
    underlying : str
        Underlying symbol (``"ESM4"``); empty for futures.
    expiration_ns : int | None
        Expiration, ns since epoch UTC; None when undefined.
    strike_price : int | None
        Strike, int64 fixed-point 1e-9 USD index points; None when undefined.
    ts_recv : int
        When the definition was received (ns UTC); later definitions win.
    """

    instrument_id: int
    raw_symbol: str
    instrument_class: str
    underlying: str
    expiration_ns: int | None
    strike_price: int | None
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Contract:
    """What a trade aggregates under: one option (or future) contract.

    ``key`` is the window key: ``underlying|expiration|type|strike`` for
    options, ``F|symbol`` for futures and other defined instruments,
    ``SYM|symbol`` for instruments known only by metadata symbology, and
    ``ID|instrument_id`` for instruments with neither.
    """

    key: str
    instrument_id: int
    symbol: str
    underlying: str
    expiration_ns: int | None
    strike_price: int | None
    option_type: str
    defined: bool


@dataclass(frozen=True, slots=True)
class WindowPart:
    """One source batch's additive contribution to one (contract, window).

    Identity is ``(key, window_start_ns, source, seq)``: a given source batch
    always yields the same part, so the sink stores parts idempotently and
    the final numbers are sums over distinct parts, whatever bytewax re-emits.

    Volumes are contracts; ``notional`` is sum(price × size) in USD index
    points × contracts (for VWAP); timestamps are ns since epoch UTC.
    """

    key: str
    window_start_ns: int
    window_end_ns: int
    source: str
    seq: int
    instrument_id: int
    symbol: str
    underlying: str
    expiration_ns: int | None
    strike_price: int | None
    option_type: str
    defined: bool
    bid_volume: int
    ask_volume: int
    unknown_volume: int
    buy_trades: int
    sell_trades: int
    unknown_trades: int
    notional: float
    max_trade_size: int
    first_ts_ns: int
    last_ts_ns: int
    flag_volume: int
    quote_volume: int
    tick_volume: int
    late: bool = False

    @property
    def total_volume(self) -> int:
        """bid + ask + unknown volume, contracts."""
        return self.bid_volume + self.ask_volume + self.unknown_volume

    @property
    def total_trades(self) -> int:
        """Trades of any side."""
        return self.buy_trades + self.sell_trades + self.unknown_trades


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Watermark tick for one window key: "this source's event time reached ``ts_ns``".

    Sent so a quiet key's windows close in replay (bytewax clocks are per
    key); carries no trades.
    """

    key: str
    ts_ns: int


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """Bad trade records of one batch, columnar (all arrays have equal length).

    ``position`` is the file-wide record index, ``reason`` one of
    ``undef_price``, ``zero_size``; ``price`` is raw fixed-point.
    """

    source: str
    position: np.ndarray
    reason: np.ndarray
    rtype: np.ndarray
    instrument_id: np.ndarray
    ts_event: np.ndarray
    price: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.position)


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Counters of one source batch, for progress, the summary and ``ifd.ingest_batches``."""

    source: str
    seq: int
    records: int
    trades: int
    undefined_instrument_trades: int
    dead_letters: dict[str, int]
    skipped: dict[str, int]
    bytes_read: int
    total_bytes: int
    max_ts_event: int
    eof: bool


class PressureMetrics(BaseModel):
    """Final buy/sell pressure of one contract over one tumbling window.

    Volumes in contracts; prices in USD index points; times aware UTC.
    ``pressure_ratio`` = ask_volume / bid_volume (None when bid_volume = 0).
    ``dominant_side`` and ``confidence`` follow :mod:`flows.pressure`.
    """

    model_config = ConfigDict(frozen=True)

    window_start: datetime
    window_end: datetime
    contract_key: str
    instrument_id: int
    symbol: str
    underlying: str
    expiration: datetime | None
    strike: float | None
    option_type: str
    bid_volume: int
    ask_volume: int
    unknown_volume: int
    total_volume: int
    pressure_ratio: float | None
    buy_trades: int
    sell_trades: int
    total_trades: int
    avg_trade_size: float
    max_trade_size: int
    vwap: float | None
    dominant_side: DominantSide
    confidence: float = Field(ge=0.0, le=1.0)
    first_trade_ts: datetime
    last_trade_ts: datetime
    flag_volume: int
    quote_volume: int
    tick_volume: int
    parts: int


@dataclass(frozen=True, slots=True)
class WindowResult:
    """A closed window (or a late correction) of one contract.

    ``parts`` are what the sink stores (additive, idempotent); ``metrics`` is
    the merge of *these* parts. ``correction`` marks a late part or a window
    bytewax re-opened after closing: its numbers add to the window already
    written, and ``ifd.pressure_metrics`` shows the combined result.
    """

    key: str
    parts: tuple[WindowPart, ...]
    metrics: PressureMetrics
    correction: bool = False
