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

import dataclasses
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
class SpreadLeg:
    """One leg of a spread (multi-leg) instrument, from DBN v3 definition leg fields.

    Databento publishes a spread's definition as one ``InstrumentDefMsg`` per leg (``leg_count``
    records, ``leg_index`` 0..leg_count-1, same ``instrument_id``); CME MDP 3.0
    SecurityDefinition repeating group ``NoLegs`` (tags 602 LegSecurityID, 624 LegSide,
    623 LegRatioQty).

    Attributes
    ----------
    index : int
        ``leg_index``.
    instrument_id : int
        ``leg_instrument_id``: the outright the leg trades.
    side : int
        ``leg_side`` when the spread is *bought*: +1 the leg is bought, -1 sold, 0 unknown.
    ratio : int
        Leg contracts per spread contract (``leg_ratio_qty_numerator / _denominator``, ≥ 1).
    """

    index: int
    instrument_id: int
    side: int
    ratio: int


OPTION_TYPE_CODES = {"C": 0, "P": 1}
"""Option type → int8 code for vectorised work (−1 for every other instrument class)."""

SPREAD_CLASSES = frozenset({"S", "T", "M"})
"""Databento ``instrument_class`` of multi-leg instruments: future spread, option spread,
mixed spread (Databento "Instrument definitions": InstrumentClass)."""


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
    legs : tuple of SpreadLeg
        A spread's legs by index (empty for outrights and for DBN v1/v2 definitions).
    multiplier : float | None
        USD per index point per contract: ``unit_of_measure_qty`` (1e-9 fixed point) for an
        index-point unit of measure (``IPNT``; NQ options 20, ES options 50); None otherwise.
    """

    instrument_id: int
    raw_symbol: str
    instrument_class: str
    underlying: str
    expiration_ns: int | None
    strike_price: int | None
    ts_recv: int
    legs: tuple[SpreadLeg, ...] = ()
    multiplier: float | None = None

    def same_message(self, other: InstrumentDefinition) -> bool:
        """Tell whether ``other`` is another leg record of the same spread definition."""
        return (bool(self.legs) and bool(other.legs) and self.instrument_id == other.instrument_id
                and self.ts_recv == other.ts_recv and self.raw_symbol == other.raw_symbol)

    def with_legs_of(self, other: InstrumentDefinition) -> InstrumentDefinition:
        """Return this definition with the union of both records' legs, by leg index."""
        legs = {leg.index: leg for leg in (*self.legs, *other.legs)}
        return dataclasses.replace(self, legs=tuple(legs[i] for i in sorted(legs)))


def merge_leg_records(definitions: list[InstrumentDefinition]) -> list[InstrumentDefinition]:
    """Merge the per-leg records of each spread definition into one (order kept otherwise)."""
    out: list[InstrumentDefinition] = []
    for definition in definitions:
        if out and out[-1].same_message(definition):
            out[-1] = out[-1].with_legs_of(definition)
        else:
            out.append(definition)
    return out


@dataclass(frozen=True, slots=True)
class Contract:
    """What a trade aggregates under: one option (or future) contract.

    ``key`` is the window key: ``underlying|expiration|type|strike|product``
    for options, ``F|symbol`` for futures and other defined instruments,
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
    multiplier: float | None = None
    """USD per index point per contract (premium = price × size × multiplier); None unknown."""


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
    spread_volume: int = 0
    """Contracts traded as legs of multi-leg matches (:mod:`flows.spreads`)."""
    sweep_volume: int = 0
    """Contracts in sweep prints (:mod:`flows.sweeps`)."""
    block_volume: int = 0
    """Contracts in block prints (one print ≥ the product's block size)."""
    block_trades: int = 0
    """Number of block prints."""
    multiplier: float | None = None
    """USD per index point per contract, from the definition (None unknown)."""

    @property
    def total_volume(self) -> int:
        """Sum of bid, ask and unknown volume, contracts."""
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
    ``undef_price``, ``zero_size`` (:mod:`flows.normalise`),
    ``undef_timestamp``, ``ts_out_of_range``, ``unknown_instrument``
    (:mod:`flows.validate`); ``price`` is raw fixed-point.
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
class OpenInterestRows:
    """Open-interest statistics of one batch, columnar, resolved to contracts.

    CME publishes each contract's open interest once a day for the previous trading day
    (Databento ``statistics`` schema, ``stat_type`` 9 OPEN_INTEREST, ``quantity`` contracts).
    ``session_day`` is the CME trading day (days since epoch) in which the figure was
    published: it is the open interest *prior* to that day's trading.
    """

    source: str
    instrument_id: np.ndarray
    contract_key: np.ndarray
    symbol: np.ndarray
    ts_event: np.ndarray
    session_day: np.ndarray
    open_interest: np.ndarray

    def __len__(self) -> int:
        return len(self.instrument_id)


@dataclass(frozen=True, slots=True)
class FootprintRows:
    """Volume at price by aggressor side of one batch's trades, per contract and window, columnar.

    One row per (contract, window, price) of the batch (:func:`flows.footprint.footprint_rows`);
    ``ifd.footprint`` sums them over batches. Shapes (n,) each: ``contract_key`` object,
    ``instrument_id`` uint32, ``window_start_ns`` int64 (ns since epoch UTC), ``price`` int64
    fixed-point 1e-9 USD price points, ``bid_volume`` (aggressor sold: hit the bid),
    ``ask_volume`` (aggressor bought: lifted the offer), ``unknown_volume`` contracts and
    ``trades`` int64.
    """

    source: str
    seq: int
    contract_key: np.ndarray
    instrument_id: np.ndarray
    window_start_ns: np.ndarray
    price: np.ndarray
    bid_volume: np.ndarray
    ask_volume: np.ndarray
    unknown_volume: np.ndarray
    trades: np.ndarray

    def __len__(self) -> int:
        return len(self.price)


@dataclass(frozen=True, slots=True)
class IcebergRows:
    """Icebergs detected or changed in one batch (:mod:`flows.icebergs`), columnar.

    Shapes (n,) each: ``kind`` (``native``/``synthetic``), ``side`` (``B`` resting bid /
    ``A`` resting ask), ``state`` (``active``/``exhausted``/``cancelled``) and ``contract_key``
    object; ``instrument_id`` uint32; ``price`` int64 fixed-point 1e-9 USD price points;
    ``order_id`` uint64 (native: the order; synthetic: its latest tranche); ``first_ts`` /
    ``last_ts`` int64 ns since epoch UTC; ``refills``, ``peak_size``, ``executed``,
    ``estimated_total`` int64 (contracts). The latest row of an iceberg (by ``last_ts``, then
    state) is its current state.
    """

    source: str
    seq: int
    kind: np.ndarray
    instrument_id: np.ndarray
    contract_key: np.ndarray
    side: np.ndarray
    price: np.ndarray
    order_id: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    refills: np.ndarray
    peak_size: np.ndarray
    executed: np.ndarray
    estimated_total: np.ndarray
    state: np.ndarray

    def __len__(self) -> int:
        return len(self.price)


@dataclass(frozen=True, slots=True)
class AbsorptionRows:
    """Absorption events finished in one batch (:mod:`flows.absorption`), columnar.

    Shapes (n,) each: ``contract_key``, ``side`` (resting side ``B``/``A``) and ``outcome``
    (``held``/``broke``) object; ``instrument_id`` uint32; ``price`` int64 fixed-point 1e-9 USD
    price points; ``absorbed`` (contracts traded at the level), ``start_size`` (contracts it
    showed when the run began), ``fills`` int64; ``first_ts``/``last_ts``/``window_start_ns``
    int64 ns UTC.
    """

    source: str
    seq: int
    contract_key: np.ndarray
    instrument_id: np.ndarray
    side: np.ndarray
    price: np.ndarray
    absorbed: np.ndarray
    start_size: np.ndarray
    fills: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    outcome: np.ndarray
    window_start_ns: np.ndarray
    """Start (ns UTC) of the tumbling window holding each event's first fill."""

    def __len__(self) -> int:
        return len(self.price)


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
    path: str = ""
    """The input's file path (display; ``source`` is its content identity)."""
    error: str = ""
    """Non-empty on a batch that ends its input early (truncated/corrupt file): the run is partial."""
    live: bool = False
    """From the live feed (event time ≈ wall time), not a replay of files."""
    processed_ns: int = 0
    """Wall time (ns since epoch UTC) the sink received the batch's counters: processing done."""


class PressureMetrics(BaseModel):
    """Final buy/sell pressure of one contract over one tumbling window.

    Volumes in contracts; prices in USD index points; times aware UTC.
    ``pressure_ratio`` = ask_volume / bid_volume (None when bid_volume = 0).
    ``dominant_side`` and ``dominance_confidence`` follow :mod:`flows.pressure`.
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
    dominance_confidence: float = Field(ge=0.0, le=1.0)
    first_trade_ts: datetime
    last_trade_ts: datetime
    flag_volume: int
    quote_volume: int
    tick_volume: int
    parts: int
    spread_volume: int = 0
    sweep_volume: int = 0
    block_volume: int = 0
    block_trades: int = 0
    premium_usd: float | None = None
    """Traded premium, USD: notional × the contract multiplier (None without a multiplier)."""
    days_to_expiry: float | None = None
    """Days from the window's end to the expiration (None without one)."""




PART_COLUMNS: dict[str, str] = {
    "window_start_ns": "int64",
    "contract_key": "object",
    "source": "object",
    "seq": "int64",
    "instrument_id": "uint32",
    "symbol": "object",
    "underlying": "object",
    "expiration_ns": "int64",
    "strike_price": "int64",
    "option_type": "object",
    "defined": "bool",
    "bid_volume": "int64",
    "ask_volume": "int64",
    "unknown_volume": "int64",
    "buy_trades": "int64",
    "sell_trades": "int64",
    "unknown_trades": "int64",
    "notional": "float64",
    "max_trade_size": "int64",
    "first_ts_ns": "int64",
    "last_ts_ns": "int64",
    "flag_volume": "int64",
    "quote_volume": "int64",
    "tick_volume": "int64",
    "late": "bool",
    "spread_volume": "int64",
    "sweep_volume": "int64",
    "block_volume": "int64",
    "block_trades": "int64",
    "multiplier": "float64",
}
"""Columns of a :class:`PartBlock` and their numpy dtypes. ``expiration_ns`` is
-1 and ``strike_price`` is ``UNDEF_PRICE`` where undefined."""


_PART_COUNTS = ("seq", "instrument_id", "bid_volume", "ask_volume", "unknown_volume", "buy_trades",
                "sell_trades", "unknown_trades", "max_trade_size", "first_ts_ns", "last_ts_ns",
                "flag_volume", "quote_volume", "tick_volume", "spread_volume", "sweep_volume",
                "block_volume", "block_trades")
"""Integer :class:`WindowPart` fields whose :data:`PART_COLUMNS` column holds the value as is."""


@dataclass(frozen=True, slots=True)
class PartBlock:
    """Columnar :class:`WindowPart` rows: the unit that flows through the windows.

    Each row is one (contract, window, source batch) part; ``cols`` maps every
    name of :data:`PART_COLUMNS` to an array of equal length. ``key`` is the
    bytewax window key (a shard of contracts) and ``window_start_ns`` the
    single window all rows belong to (None before splitting by window).
    """

    key: str
    window_start_ns: int | None
    window_ns: int
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["window_start_ns"])

    @property
    def window_end_ns(self) -> int:
        """End of the block's window (ns); requires ``window_start_ns``."""
        assert self.window_start_ns is not None
        return self.window_start_ns + self.window_ns

    @property
    def last_ts_ns(self) -> int:
        """Latest trade time in the block (its event time for the window clock)."""
        return int(self.cols["last_ts_ns"].max())

    def take(self, index: np.ndarray, *, key: str | None = None,
             window_start_ns: int | None = None) -> PartBlock:
        """Rows ``index`` (bool mask or positions) as a new block."""
        return PartBlock(
            key=self.key if key is None else key,
            window_start_ns=self.window_start_ns if window_start_ns is None else window_start_ns,
            window_ns=self.window_ns,
            cols={name: col[index] for name, col in self.cols.items()},
        )

    def with_late(self) -> PartBlock:
        """Return the same rows flagged as late corrections."""
        cols = dict(self.cols)
        cols["late"] = np.ones(len(self), dtype=bool)
        return PartBlock(self.key, self.window_start_ns, self.window_ns, cols)

    @staticmethod
    def concat(blocks: list[PartBlock]) -> PartBlock:
        """Stack blocks of the same key/window (the first block's key and window win)."""
        head = blocks[0]
        if len(blocks) == 1:
            return head
        cols = {name: np.concatenate([b.cols[name] for b in blocks]) for name in PART_COLUMNS}
        return PartBlock(head.key, head.window_start_ns, head.window_ns, cols)

    def to_parts(self) -> list[WindowPart]:
        """Row objects (for tests, debugging and per-contract consumers); ``tests/partblocks.py`` inverts it."""
        c = {name: col.tolist() for name, col in self.cols.items()}  # Python scalars, once per column
        rows = []
        for i in range(len(self)):
            expiration = c["expiration_ns"][i]
            strike = c["strike_price"][i]
            start = c["window_start_ns"][i]
            multiplier = c["multiplier"][i]
            rows.append(WindowPart(
                key=str(c["contract_key"][i]),
                window_start_ns=start,
                window_end_ns=start + self.window_ns,
                source=str(c["source"][i]),
                symbol=str(c["symbol"][i]),
                underlying=str(c["underlying"][i]),
                expiration_ns=None if expiration < 0 else expiration,
                strike_price=None if strike == UNDEF_PRICE else strike,
                option_type=str(c["option_type"][i]),
                defined=bool(c["defined"][i]),
                notional=float(c["notional"][i]),
                late=bool(c["late"][i]),
                multiplier=None if multiplier != multiplier else float(multiplier),  # NaN: unknown
                **{name: c[name][i] for name in _PART_COUNTS},
            ))
        return rows


@dataclass(frozen=True, slots=True)
class WindowResult:
    """A closed window (or a late correction) of one shard of contracts.

    ``parts`` are what the sink stores (additive, idempotent). ``correction``
    marks late parts, or a window bytewax re-opened after closing: their
    numbers add to those already written, and ``ifd.pressure_metrics`` shows
    the combined result. Per-contract metrics: :func:`flows.pressure.merge_parts` of a contract's rows.
    """

    key: str
    window_start_ns: int
    parts: PartBlock
    correction: bool = False


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One minute of a live source's usage, for ``ifd.usage`` and the health board.

    ``minute_s``: minute start, s since epoch UTC; ``bytes``: DBN bytes received;
    ``est_cost_usd``: the day's running estimate; ``lag_ms``: mean
    processing time − ``ts_recv``.
    """

    minute_s: int
    records: int
    bytes: int
    est_cost_usd: float
    reconnects: int
    lag_ms: float
    last_error: str
    source: str
    mode: str = "live"
    """``live`` (gateway connection), ``historical`` (fallback catch-up) or ``down`` (neither)."""


@dataclass(frozen=True, slots=True)
class BackfillRow:
    """One Databento Historical backfill request of a live source, for ``ifd.backfills``.

    Times are ns since epoch UTC (``start_ns``/``end_ns``: the ``[start, end)`` range on
    ``ts_event``); ``cost_usd``: ``metadata.get_cost`` of the request (definitions + trade
    schema); ``outcome``: ``done``, ``refused`` (over ``IFD_LIVE_BACKFILL_BUDGET_USD``) or
    ``failed``; ``records``: records fetched; ``duplicates``: those already emitted (dropped);
    ``error``: the reason when not done (never holds the API key); ``kind``: ``gap`` (a resume
    position older than the replay horizon) or ``fallback`` (catch-up while the gateway is down).
    """

    requested_ns: int
    source: str
    dataset: str
    schema: str
    symbols: str
    start_ns: int
    end_ns: int
    cost_usd: float
    budget_usd: float
    outcome: str
    records: int
    duplicates: int
    seconds: float
    error: str
    kind: str = "gap"
