"""Window rules shared by the flow and the ClickHouse views: dominant side and dominance confidence.

One definition, two renderings: the Python functions score a window in the
flow (:mod:`flows.pressure`), the ``sql_*`` functions render the same formulas
into the ``ifd.pressure_metrics`` view (:mod:`sinks.clickhouse`), so stored
and streamed numbers cannot drift.

- ``imbalance = (ask_volume - bid_volume) / (ask_volume + bid_volume)``;
  ``BUY`` when imbalance ≥ ``DOMINANCE_THRESHOLD`` (0.2, i.e. ≥ 60 % of the
  classified volume lifted the offer), ``SELL`` when ≤ -0.2, else ``NEUTRAL``
  (also when nothing was classified).
- ``dominance_confidence = sample × dominance`` with
  ``sample = total_trades / (total_trades + CONFIDENCE_HALF_TRADES)`` (0.5 at
  10 trades) and ``dominance = |ask_volume - bid_volume| / total_volume``
  (unknown-side volume dilutes it). In [0, 1]. It says how one-sided a window is, on how many
  trades; it is not the IFD signal confidence (:mod:`flows.scoring`), which also weighs the
  contract's own history.
"""

from __future__ import annotations

from models.records import DominantSide

DOMINANCE_THRESHOLD = 0.2
CONFIDENCE_HALF_TRADES = 10.0


def dominant_side(bid_volume: int, ask_volume: int) -> DominantSide:
    """BUY / SELL / NEUTRAL from classified volumes (rule in the module docstring)."""
    classified = bid_volume + ask_volume
    if classified == 0:
        return DominantSide.NEUTRAL
    imbalance = (ask_volume - bid_volume) / classified
    if imbalance >= DOMINANCE_THRESHOLD:
        return DominantSide.BUY
    if imbalance <= -DOMINANCE_THRESHOLD:
        return DominantSide.SELL
    return DominantSide.NEUTRAL


def dominance_confidence(bid_volume: int, ask_volume: int, total_volume: int, total_trades: int) -> float:
    """Sample-size × dominance confidence in [0, 1] (formula in the module docstring)."""
    if total_volume <= 0 or total_trades <= 0:
        return 0.0
    sample = total_trades / (total_trades + CONFIDENCE_HALF_TRADES)
    return sample * abs(ask_volume - bid_volume) / total_volume


def sql_dominant_side(bid: str, ask: str) -> str:
    """Render the :func:`dominant_side` rule as a ClickHouse expression over two columns."""
    t = DOMINANCE_THRESHOLD
    return (
        f"multiIf(({bid} + {ask}) = 0, 'NEUTRAL', "
        f"({ask} - {bid}) / ({bid} + {ask}) >= {t}, 'BUY', "
        f"({ask} - {bid}) / ({bid} + {ask}) <= -{t}, 'SELL', 'NEUTRAL')"
    )


def sql_dominance_confidence(bid: str, ask: str, total_volume: str, total_trades: str) -> str:
    """Render the :func:`dominance_confidence` formula as a ClickHouse expression."""
    h = CONFIDENCE_HALF_TRADES
    return (
        f"if({total_volume} = 0 OR {total_trades} = 0, 0., "
        f"{total_trades} / ({total_trades} + {h}) * abs(toFloat64({ask}) - {bid}) / {total_volume})"
    )
