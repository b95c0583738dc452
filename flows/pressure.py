"""Window pressure: per-batch additive parts, their merge, and window closing.

Aggregation happens in two stages so the dataflow handles one item per
(contract, window, source batch) instead of one per trade:

1. :func:`aggregate_parts` — numpy group-by of a classified trade batch on
   (instrument_id, window index) → a columnar
   :class:`~models.records.PartBlock` (one row per contract part), split by
   :func:`split_by_shard_and_window` into one item per (contract shard,
   window).
2. The bytewax tumbling window folds those blocks per shard;
   :func:`merge_parts` turns a contract's parts into
   :class:`~models.records.PressureMetrics`, and the ClickHouse view does the
   same sums over stored parts.

Windows are tumbling, ``[start, end)``, aligned to UTC midnight; window
index = ``ts_event // window_ns``.

Dominant side and dominance confidence (the same formulas are rendered into the
``ifd.pressure_metrics`` view, see :func:`sql_dominant_side`):

- ``imbalance = (ask_volume - bid_volume) / (ask_volume + bid_volume)``;
  ``BUY`` when imbalance ≥ ``DOMINANCE_THRESHOLD`` (0.2, i.e. ≥ 60 % of the
  classified volume lifted the offer), ``SELL`` when ≤ -0.2, else
  ``NEUTRAL`` (also when nothing was classified).
- ``dominance_confidence = sample × dominance`` with
  ``sample = total_trades / (total_trades + CONFIDENCE_HALF_TRADES)`` (0.5 at
  10 trades, → 1 with more) and
  ``dominance = |ask_volume - bid_volume| / total_volume`` (unknown-side
  volume dilutes it). In [0, 1].
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from models.records import (
    FIXED_PRICE_SCALE,
    PART_COLUMNS,
    UNDEF_PRICE,
    AggressorSide,
    Contract,
    Heartbeat,
    PartBlock,
    PressureMetrics,
    SideMethod,
    WindowPart,
    ns_to_datetime,
)
from models.window_rules import (  # noqa: F401 - re-exported for the flow's callers
    CONFIDENCE_HALF_TRADES,
    DOMINANCE_THRESHOLD,
    dominance_confidence,
    dominant_side,
    sql_dominance_confidence,
    sql_dominant_side,
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
    resolve: Callable[[int], Contract] | None = None,
    source: str,
    seq: int | np.ndarray,
    spread: np.ndarray | None = None,
    contract_of: np.ndarray | None = None,
    contracts: Sequence[Contract] = (),
    sweep: np.ndarray | None = None,
    block: np.ndarray | None = None,
) -> PartBlock:
    """Group one classified batch into additive parts per (contract, window).

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
    resolve : callable | None
        instrument_id → Contract (called once per instrument in the batch);
        used when ``contract_of`` is None.
    source : str
        Input id, stamped on each part.
    seq : int | int64[n]
        Part identity within the source: the batch number, or one value per
        trade (live: its ``ts_recv`` second), in which case parts are also
        grouped by it.
    spread : bool[n] | None
        Trades that are spread legs (:func:`flows.spreads.spread_legs`).
    contract_of : int64[n] | None
        Per trade, an index into ``contracts`` (time-aware resolution,
        :func:`flows.instruments.resolve_trades`): one instrument id under two
        definitions gives two parts.
    contracts : sequence of Contract
        The distinct contracts ``contract_of`` points into.
    sweep, block : bool[n] | None
        Sweep prints and block prints (:mod:`flows.sweeps`), summed into ``sweep_volume``,
        ``block_volume`` and ``block_trades``.

    Returns
    -------
    PartBlock
        One row per (contract, window) present in the batch, sorted by
        (contract, window); ``key`` empty and ``window_start_ns`` None
        until :func:`split_by_shard_and_window`.
    """
    cols: dict[str, np.ndarray]
    if len(ts_event) == 0:
        cols = {name: np.empty(0, dtype=dtype) for name, dtype in PART_COLUMNS.items()}
        return PartBlock("", None, window_ns, cols)
    if contract_of is None:
        if resolve is None:
            msg = "aggregate_parts needs resolve or contract_of"
            raise ValueError(msg)
        iids_u, contract_of = np.unique(instrument_id, return_inverse=True)
        contracts = [resolve(i) for i in iids_u.tolist()]
    window = (ts_event // window_ns).astype(np.uint64)
    combo = (np.asarray(contract_of).astype(np.uint64) << np.uint64(32)) | window
    if np.ndim(seq) == 0:
        order = np.argsort(combo, kind="stable")
        combo_sorted = combo[order]
        starts = np.flatnonzero(np.r_[True, combo_sorted[1:] != combo_sorted[:-1]])
        group_seq = np.full(len(starts), int(seq), dtype=np.int64)
    else:  # per-trade identity: group by (instrument, window, seq)
        seq_arr = np.asarray(seq, dtype=np.int64)
        order = np.lexsort((seq_arr, combo))
        combo_sorted, seq_sorted = combo[order], seq_arr[order]
        starts = np.flatnonzero(np.r_[True, (combo_sorted[1:] != combo_sorted[:-1])
                                      | (seq_sorted[1:] != seq_sorted[:-1])])
        group_seq = seq_sorted[starts]
    keys = combo_sorted[starts]
    g = len(keys)
    size_s, ts_s = size[order], ts_event[order]
    side_s, method_s = side[order], method[order]

    def total(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        values = mask.astype(np.int64) if weights is None else np.where(mask, weights, 0)
        return np.add.reduceat(values, starts)

    buy, sell = side_s == AggressorSide.BUY, side_s == AggressorSide.SELL
    unknown = side_s == AggressorSide.UNKNOWN
    max_size = np.maximum.reduceat(size_s, starts)
    first_ts = np.minimum.reduceat(ts_s, starts)
    last_ts = np.maximum.reduceat(ts_s, starts)
    notional = np.add.reduceat(price[order] / FIXED_PRICE_SCALE * size_s, starts)

    group_contract = (keys >> np.uint64(32)).astype(np.int64)
    group_window = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    used, which = np.unique(group_contract, return_inverse=True)
    contracts = [contracts[i] for i in used.tolist()]

    def attr(values: list, dtype: str) -> np.ndarray:
        return np.asarray(values, dtype=dtype)[which]

    cols = {
        "window_start_ns": group_window * window_ns,
        "contract_key": attr([c.key for c in contracts], "object"),
        "source": np.full(g, source, dtype=object),
        "seq": group_seq,
        "instrument_id": attr([c.instrument_id for c in contracts], "uint32"),
        "symbol": attr([c.symbol for c in contracts], "object"),
        "underlying": attr([c.underlying for c in contracts], "object"),
        "expiration_ns": attr([-1 if c.expiration_ns is None else c.expiration_ns
                               for c in contracts], "int64"),
        "strike_price": attr([UNDEF_PRICE if c.strike_price is None else c.strike_price
                              for c in contracts], "int64"),
        "option_type": attr([c.option_type for c in contracts], "object"),
        "defined": attr([c.defined for c in contracts], "bool"),
        "multiplier": attr([np.nan if c.multiplier is None else c.multiplier for c in contracts],
                           "float64"),
        "bid_volume": total(sell, size_s),
        "ask_volume": total(buy, size_s),
        "unknown_volume": total(unknown, size_s),
        "buy_trades": total(buy),
        "sell_trades": total(sell),
        "unknown_trades": total(unknown),
        "notional": notional,
        "max_trade_size": max_size,
        "first_ts_ns": first_ts,
        "last_ts_ns": last_ts,
        "flag_volume": total(method_s == SideMethod.FLAG, size_s),
        "quote_volume": total(method_s == SideMethod.QUOTE, size_s),
        "tick_volume": total(method_s == SideMethod.TICK, size_s),
        "late": np.zeros(g, dtype=bool),
        "spread_volume": (total(spread[order], size_s) if spread is not None
                          else np.zeros(g, dtype=np.int64)),
        "sweep_volume": (total(sweep[order], size_s) if sweep is not None
                         else np.zeros(g, dtype=np.int64)),
        "block_volume": (total(block[order], size_s) if block is not None
                         else np.zeros(g, dtype=np.int64)),
        "block_trades": (total(block[order]) if block is not None
                         else np.zeros(g, dtype=np.int64)),
    }
    return PartBlock("", None, window_ns, cols)


def shard_index(contract_key: str, shards: int) -> int:
    """Window shard of a contract: crc32 of its *underlying* mod ``shards``.

    Every expiry, strike and option type of one underlying shares a shard, so a
    window block holds whole chains (sweeps across strikes, put-call parity), and
    the strike-distance buckets, which span an underlying's expiries, are fed by
    one shard in window order: the scores do not depend on how many shards run.
    crc32, not ``hash()``: the same contract must land on the same key in every
    process.
    """
    parts = contract_key.split("|")
    group = parts[0] if len(parts) == 5 else contract_key
    return zlib.crc32(group.encode()) % shards


def shard_key(index: int) -> str:
    """Return the window key of shard ``index`` (``s000`` …)."""
    return f"s{index:03d}"


def split_by_shard_and_window(block: PartBlock, shards: int,
                              keys: list[str] | None = None) -> list[PartBlock]:
    """Split a batch's parts into one block per (shard, window) — the window step's items.

    bytewax pays a fixed cost per item and per key; one item per contract and
    window caps option-chain replay at ~0.2 M trades/s, so windows are keyed
    by a stable shard of contracts (:func:`shard_index`) and carry columnar
    blocks. Per-contract semantics are unchanged: every row stays one
    contract's part.
    """
    if len(block) == 0:
        return []
    shard_ids = _row_shards(block.cols["contract_key"], shards)
    window = block.cols["window_start_ns"]
    combo = shard_ids * (1 << 40) + window // block.window_ns
    order = np.argsort(combo, kind="stable")
    combo_sorted = combo[order]
    bounds = np.flatnonzero(np.r_[True, combo_sorted[1:] != combo_sorted[:-1], True])
    ordered = block.take(order)  # one gather per column; the pieces below are slices of it
    out = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        value = int(combo_sorted[lo])
        start = (value % (1 << 40)) * block.window_ns
        shard = value >> 40
        out.append(PartBlock(shard_key(shard) if keys is None else keys[shard], start, block.window_ns,
                             {name: col[lo:hi] for name, col in ordered.cols.items()}))
    return out


def _row_shards(contract_key: np.ndarray, shards: int) -> np.ndarray:
    """:func:`shard_index` of every row (int64[n]), hashed once per run of equal keys.

    :func:`aggregate_parts` emits a contract's rows together, so there are about as many runs
    as contracts; any order stays correct (more runs, same result).
    """
    n = len(contract_key)
    starts = np.flatnonzero(np.r_[True, contract_key[1:] != contract_key[:-1]])
    per_run = np.array([shard_index(k, shards) for k in contract_key[starts].tolist()],
                       dtype=np.int64)
    return np.repeat(per_run, np.diff(np.r_[starts, n]))


_SUMMED = ("bid_volume", "ask_volume", "unknown_volume", "buy_trades", "sell_trades",
           "unknown_trades", "notional", "flag_volume", "quote_volume", "tick_volume",
           "spread_volume", "sweep_volume", "block_volume", "block_trades")
"""Part columns a (contract, window)'s metrics sum; the others are the first part's or min/max."""


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
    totals: dict[str, float] = {name: sum(getattr(p, name) for p in parts) for name in _SUMMED}
    totals["max_trade_size"] = max(p.max_trade_size for p in parts)
    totals["first_ts_ns"] = min(p.first_ts_ns for p in parts)
    totals["last_ts_ns"] = max(p.last_ts_ns for p in parts)
    totals["parts"] = len(parts)
    return _metrics(head.key, head.window_start_ns, head.window_end_ns, head.instrument_id,
                    head.symbol, head.underlying, head.expiration_ns, head.strike_price,
                    head.option_type, head.multiplier, totals)


def merge_rows(block: PartBlock, group: np.ndarray, which: Sequence[int]) -> list[PressureMetrics]:
    """:func:`merge_parts` of several contracts of one window at once, from the block's columns.

    Parameters
    ----------
    block : PartBlock
        Rows of one window (``window_start_ns`` set).
    group : numpy.ndarray
        int64[len(block)], each row's contract group id (≥ 0): rows of one contract share it.
    which : sequence of int
        The group ids to merge; each must have at least one row.

    Returns one :class:`~models.records.PressureMetrics` per id of ``which``, in that order, equal
    to :func:`merge_parts` of that group's rows: sums are taken in row order (``np.bincount``
    accumulates sequentially), the head attributes are the group's first row's.
    """
    c = block.cols
    k = int(group.max()) + 1
    sums = {name: np.bincount(group, weights=c[name], minlength=k) for name in _SUMMED}
    count = np.bincount(group, minlength=k)
    first = np.full(k, -1, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group) - 1, -1, -1)  # the last write per group wins: row order
    biggest = np.zeros(k, dtype=np.int64)
    np.maximum.at(biggest, group, c["max_trade_size"])
    first_ts = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_ts, group, c["first_ts_ns"])
    last_ts = np.full(k, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_ts, group, c["last_ts_ns"])
    wanted = np.asarray(which, dtype=np.int64)
    has_rows = (wanted >= 0) & (wanted < k)
    has_rows[has_rows] = first[wanted[has_rows]] >= 0
    if not has_rows.all():
        msg = f"merge_rows: contract group {int(wanted[~has_rows][0])} has no rows"
        raise ValueError(msg)
    rows = first[wanted]
    # Python scalars once per column (not one numpy scalar per value)
    per = {name: (sums[name][wanted].astype(np.int64) if name != "notional" else sums[name][wanted]).tolist()
           for name in _SUMMED}
    per["max_trade_size"] = biggest[wanted].tolist()
    per["first_ts_ns"], per["last_ts_ns"] = first_ts[wanted].tolist(), last_ts[wanted].tolist()
    per["parts"] = count[wanted].tolist()
    head = {name: c[name][rows].tolist() for name in (
        "contract_key", "window_start_ns", "instrument_id", "symbol", "underlying", "expiration_ns",
        "strike_price", "option_type", "multiplier")}
    out = []
    for j in range(len(wanted)):
        totals = {name: values[j] for name, values in per.items()}
        expiration, strike, multiplier = (head["expiration_ns"][j], head["strike_price"][j],
                                          head["multiplier"][j])
        start = head["window_start_ns"][j]
        out.append(_metrics(
            str(head["contract_key"][j]), start, start + block.window_ns, head["instrument_id"][j],
            str(head["symbol"][j]), str(head["underlying"][j]), None if expiration < 0 else expiration,
            None if strike == UNDEF_PRICE else strike, str(head["option_type"][j]),
            None if multiplier != multiplier else multiplier, totals))  # NaN multiplier: unknown
    return out


def _metrics(key: str, window_start_ns: int, window_end_ns: int, instrument_id: int, symbol: str,
             underlying: str, expiration_ns: int | None, strike_price: int | None, option_type: str,
             multiplier: float | None, t: dict[str, float]) -> PressureMetrics:
    """Build a contract-window's metrics from its attributes and its parts' totals ``t``."""
    bid, ask, unknown = int(t["bid_volume"]), int(t["ask_volume"]), int(t["unknown_volume"])
    volume = bid + ask + unknown
    buys, sells = int(t["buy_trades"]), int(t["sell_trades"])
    trades = buys + sells + int(t["unknown_trades"])
    notional = t["notional"]
    return PressureMetrics(
        window_start=ns_to_datetime(window_start_ns),
        window_end=ns_to_datetime(window_end_ns),
        contract_key=key,
        instrument_id=instrument_id,
        symbol=symbol,
        underlying=underlying,
        expiration=None if expiration_ns is None else ns_to_datetime(expiration_ns),
        strike=None if strike_price is None else strike_price / FIXED_PRICE_SCALE,
        option_type=option_type,
        bid_volume=bid,
        ask_volume=ask,
        unknown_volume=unknown,
        total_volume=volume,
        pressure_ratio=None if bid == 0 else ask / bid,
        buy_trades=buys,
        sell_trades=sells,
        total_trades=trades,
        avg_trade_size=volume / trades if trades else 0.0,
        max_trade_size=int(t["max_trade_size"]),
        vwap=notional / volume if volume else None,
        dominant_side=dominant_side(bid, ask),
        dominance_confidence=min(1.0, dominance_confidence(bid, ask, volume, trades)),
        first_trade_ts=ns_to_datetime(int(t["first_ts_ns"])),
        last_trade_ts=ns_to_datetime(int(t["last_ts_ns"])),
        flag_volume=int(t["flag_volume"]),
        quote_volume=int(t["quote_volume"]),
        tick_volume=int(t["tick_volume"]),
        parts=int(t["parts"]),
        spread_volume=int(t["spread_volume"]),
        sweep_volume=int(t["sweep_volume"]),
        block_volume=int(t["block_volume"]),
        block_trades=int(t["block_trades"]),
        premium_usd=None if multiplier is None else notional * multiplier,
        days_to_expiry=(None if expiration_ns is None
                        else (expiration_ns - window_end_ns) / 86_400e9),
    )


class WindowTracker:
    """Which window keys (contract shards) of one input still have open windows; emits heartbeats.

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

    def copy(self) -> WindowTracker:
        """Independent copy (the map holds str → int: a shallow copy is one)."""
        clone = WindowTracker(self.lateness_ns)
        clone.open_until = dict(self.open_until)
        return clone

    def observe(self, parts: Iterable[WindowPart | PartBlock]) -> None:
        """Record the windows that ``parts`` (anything with ``key``/``window_end_ns``) feed."""
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
