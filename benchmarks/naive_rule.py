"""The naive pressure rule IFD is compared against (benchmarks/bench_ifd_eval.py), not part of the product."""

from __future__ import annotations

from models.signals import Direction


def naive_pressure_signal(bid_volume: int, ask_volume: int, ratio: float = 2.0) -> Direction | None:
    """Apply the seeds' v1 rule: ask/bid > ratio → BUY, bid/ask > ratio → SELL, else None.

    Volumes in contracts. A window with volume on one side only counts as an
    infinite ratio.
    """
    if ask_volume > ratio * bid_volume:
        return Direction.BUY
    if bid_volume > ratio * ask_volume:
        return Direction.SELL
    return None
