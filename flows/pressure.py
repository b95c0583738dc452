"""Window pressure: per-batch additive parts, their merge, and window closing.

Aggregation happens in two stages so the dataflow handles one item per
(contract, window, source batch) instead of one per trade:

1. :func:`aggregate_parts` — numpy group-by of a classified trade batch on
   (instrument_id, window index) → :class:`~models.records.WindowPart`.
2. The bytewax tumbling window folds parts per contract;
   :func:`merge_parts` turns a window's parts into
   :class:`~models.records.PressureMetrics`.

Windows are tumbling, ``[start, end)``, aligned to UTC midnight; window
index = ``ts_event // window_ns``.

Dominant side and confidence (the same formulas are rendered into the
``ifd.pressure_metrics`` view, see :func:`sql_dominant_side`):

- ``imbalance = (ask_volume - bid_volume) / (ask_volume + bid_volume)``;
  ``BUY`` when imbalance ≥ ``DOMINANCE_THRESHOLD`` (0.2, i.e. ≥ 60 % of the
  classified volume lifted the offer), ``SELL`` when ≤ -0.2, else
  ``NEUTRAL`` (also when nothing was classified).
- ``confidence = sample × dominance`` with
  ``sample = total_trades / (total_trades + CONFIDENCE_HALF_TRADES)`` (0.5 at
  10 trades, → 1 with more) and
  ``dominance = |ask_volume - bid_volume| / total_volume`` (unknown-side
  volume dilutes it). In [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from models.records import (
    FIXED_PRICE_SCALE,
    AggressorSide,
    Contract,
    DominantSide,
    Heartbeat,
    PressureMetrics,
    SideMethod,
    WindowPart,
    ns_to_datetime,
)

DOMINANCE_THRESHOLD = 0.2
CONFIDENCE_HALF_TRADES = 10.0


def dominant_side(bid_volume: int, ask_volume: int) -> DominantSide:
    """BUY / SELL / NEUTRAL from classified volumes (threshold in module doc)."""
    classified = bid_volume + ask_volume
    if classified == 0:
        return DominantSide.NEUTRAL
    imbalance = (ask_volume - bid_volume) / classified
    if imbalance >= DOMINANCE_THRESHOLD:
        return DominantSide.BUY
    if imbalance <= -DOMINANCE_THRESHOLD:
        return DominantSide.SELL
    return DominantSide.NEUTRAL


def confidence(bid_volume: int, ask_volume: int, total_volume: int, total_trades: int) -> float:
    """Sample-size × dominance confidence in [0, 1] (formula in module doc)."""
    if total_volume <= 0 or total_trades <= 0:
        return 0.0
    sample = total_trades / (total_trades + CONFIDENCE_HALF_TRADES)
    return sample * abs(ask_volume - bid_volume) / total_volume


def sql_dominant_side(bid: str, ask: str) -> str:
    """The :func:`dominant_side` rule as a ClickHouse expression over two columns."""
    t = DOMINANCE_THRESHOLD
    return (
        f"multiIf(({bid} + {ask}) = 0, 'NEUTRAL', "
        f"({ask} - {bid}) / ({bid} + {ask}) >= {t}, 'BUY', "
        f"({ask} - {bid}) / ({bid} + {ask}) <= -{t}, 'SELL', 'NEUTRAL')"
    )


def sql_confidence(bid: str, ask: str, total_volume: str, total_trades: str) -> str:
    """The :func:`confidence` formula as a ClickHouse expression."""
    h = CONFIDENCE_HALF_TRADES
    return (
        f"if({total_volume} = 0 OR {total_trades} = 0, 0., "
        f"{total_trades} / ({total_trades} + {h}) * abs(toFloat64({ask}) - {bid}) / {total_volume})"
    )


def aggregate_parts(
    ts_event: np.ndarray,
    instrument_id: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    side: np.ndarray,
    method: np.ndarray,
    *,
    window_ns: int,
    resolve: Callable[[int], Contract],
    source: str,
    seq: int,
) -> list[WindowPart]:
    """Group one classified batch into additive parts per (instrument, window).

    Parameters
    ----------
    ts_event : int64[n]
        ns since epoch UTC.
    instrument_id : uint32[n]
    price : int64[n]
        Fixed-point 1e-9.
    size : int64[n]
        Contracts.
    side, method : int8[n]
        From :func:`flows.aggressor.classify_aggressor`.
    window_ns : int
        Tumbling window length in ns (divides one day).
    resolve : callable
        instrument_id → Contract.
    source, seq : str, int
        Identity of the source batch, stamped on each part.

    Returns
    -------
    list[WindowPart]
        One part per (instrument_id, window) present in the batch.
    """
    if len(ts_event) == 0:
        return []
    window = ts_event // window_ns
    combo = (instrument_id.astype(np.uint64) << np.uint64(32)) | window.astype(np.uint64)
    keys, inverse = np.unique(combo, return_inverse=True)
    g = len(keys)

    def total(mask: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        w = weights if mask is None else np.where(mask, weights if weights is not None else 1, 0)
        return np.bincount(inverse, weights=w, minlength=g)

    buy, sell = side == AggressorSide.BUY, side == AggressorSide.SELL
    unknown = side == AggressorSide.UNKNOWN
    ask_volume = total(buy, size)
    bid_volume = total(sell, size)
    unknown_volume = total(unknown, size)
    buy_trades = total(buy, None)
    sell_trades = total(sell, None)
    unknown_trades = total(unknown, None)
    flag_volume = total(method == SideMethod.FLAG, size)
    quote_volume = total(method == SideMethod.QUOTE, size)
    tick_volume = total(method == SideMethod.TICK, size)
    notional = np.bincount(inverse, weights=price / FIXED_PRICE_SCALE * size, minlength=g)
    max_size = np.zeros(g, dtype=np.int64)
    np.maximum.at(max_size, inverse, size)
    first_ts = np.full(g, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_ts, inverse, ts_event)
    last_ts = np.zeros(g, dtype=np.int64)
    np.maximum.at(last_ts, inverse, ts_event)

    parts = []
    for i, combo_key in enumerate(keys.tolist()):
        contract = resolve(combo_key >> 32)
        start = (combo_key & 0xFFFFFFFF) * window_ns
        parts.append(
            WindowPart(
                key=contract.key,
                window_start_ns=start,
                window_end_ns=start + window_ns,
                source=source,
                seq=seq,
                instrument_id=contract.instrument_id,
                symbol=contract.symbol,
                underlying=contract.underlying,
                expiration_ns=contract.expiration_ns,
                strike_price=contract.strike_price,
                option_type=contract.option_type,
                defined=contract.defined,
                bid_volume=int(bid_volume[i]),
                ask_volume=int(ask_volume[i]),
                unknown_volume=int(unknown_volume[i]),
                buy_trades=int(buy_trades[i]),
                sell_trades=int(sell_trades[i]),
                unknown_trades=int(unknown_trades[i]),
                notional=float(notional[i]),
                max_trade_size=int(max_size[i]),
                first_ts_ns=int(first_ts[i]),
                last_ts_ns=int(last_ts[i]),
                flag_volume=int(flag_volume[i]),
                quote_volume=int(quote_volume[i]),
                tick_volume=int(tick_volume[i]),
            )
        )
    return parts


def merge_parts(parts: list[WindowPart]) -> PressureMetrics:
    """Combine one (contract, window)'s parts into final metrics.

    Raises
    ------
    ValueError
        ``parts`` is empty or mixes windows/contracts.
    """
    if not parts:
        msg = "merge_parts needs at least one part"
        raise ValueError(msg)
    head = parts[0]
    if any(p.key != head.key or p.window_start_ns != head.window_start_ns for p in parts):
        msg = f"parts of different windows/contracts: {head.key} @ {head.window_start_ns}"
        raise ValueError(msg)
    bid = sum(p.bid_volume for p in parts)
    ask = sum(p.ask_volume for p in parts)
    unknown = sum(p.unknown_volume for p in parts)
    volume = bid + ask + unknown
    buys = sum(p.buy_trades for p in parts)
    sells = sum(p.sell_trades for p in parts)
    trades = buys + sells + sum(p.unknown_trades for p in parts)
    notional = sum(p.notional for p in parts)
    return PressureMetrics(
        window_start=ns_to_datetime(head.window_start_ns),
        window_end=ns_to_datetime(head.window_end_ns),
        contract_key=head.key,
        instrument_id=head.instrument_id,
        symbol=head.symbol,
        underlying=head.underlying,
        expiration=None if head.expiration_ns is None else ns_to_datetime(head.expiration_ns),
        strike=None if head.strike_price is None else head.strike_price / FIXED_PRICE_SCALE,
        option_type=head.option_type,
        bid_volume=bid,
        ask_volume=ask,
        unknown_volume=unknown,
        total_volume=volume,
        pressure_ratio=None if bid == 0 else ask / bid,
        buy_trades=buys,
        sell_trades=sells,
        total_trades=trades,
        avg_trade_size=volume / trades if trades else 0.0,
        max_trade_size=max(p.max_trade_size for p in parts),
        vwap=notional / volume if volume else None,
        dominant_side=dominant_side(bid, ask),
        confidence=min(1.0, confidence(bid, ask, volume, trades)),
        first_trade_ts=ns_to_datetime(min(p.first_ts_ns for p in parts)),
        last_trade_ts=ns_to_datetime(max(p.last_ts_ns for p in parts)),
        flag_volume=sum(p.flag_volume for p in parts),
        quote_volume=sum(p.quote_volume for p in parts),
        tick_volume=sum(p.tick_volume for p in parts),
        parts=len(parts),
    )


class WindowTracker:
    """Which window keys of one input still have open windows; emits heartbeats.

    bytewax keeps one event clock per key, so in replay a quiet key's window
    would close only when that key sees a later item. After each batch the
    source's watermark is the largest ``ts_event`` it has read; every key
    whose latest window ended at least ``lateness_ns`` before it gets one
    :class:`~models.records.Heartbeat` at the watermark, which advances that
    key's clock past the window end and closes it.

    Parameters
    ----------
    lateness_ns : int
        Allowed lateness, ns (the EventClock's wait).
    """

    def __init__(self, lateness_ns: int) -> None:
        self.lateness_ns = lateness_ns
        self.open_until: dict[str, int] = {}
        """key → end (ns) of the latest window that got data from this input."""

    def observe(self, parts: Iterable[WindowPart]) -> None:
        """Record the windows that ``parts`` feed."""
        for part in parts:
            if part.window_end_ns > self.open_until.get(part.key, 0):
                self.open_until[part.key] = part.window_end_ns

    def heartbeats(self, watermark_ns: int) -> list[Heartbeat]:
        """Heartbeats for keys whose windows the watermark has passed (then forgotten)."""
        due = [
            key
            for key, end in self.open_until.items()
            if end + self.lateness_ns <= watermark_ns
        ]
        for key in due:
            del self.open_until[key]
        return [Heartbeat(key, watermark_ns) for key in due]
