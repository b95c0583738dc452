"""IFD signals: one scored (contract, window) that looks institutional.

A :class:`Signal` is what ``ifd.ifd_signals`` stores and what alerts carry.
Its identity is ``(window_start, contract_key)``: replays and restarts
rewrite the same row and alerts are de-duplicated on it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SignalClass(enum.StrEnum):
    """Strength class of a signal, from confidence thresholds (``IFD_SCORING_*``)."""

    STRONG = "STRONG"
    MODERATE = "MODERATE"
    MONITOR = "MONITOR"


class Direction(enum.StrEnum):
    """Side the institutional flow took: ``BUY`` lifted offers, ``SELL`` hit bids."""

    BUY = "BUY"
    SELL = "SELL"


class Sentiment(enum.StrEnum):
    """What the aggressor's trade says about the underlying, beside its direction.

    Bought calls and sold puts are ``BULLISH``; sold calls and bought puts ``BEARISH``;
    futures follow the direction; spreads and other instruments are ``NEUTRAL``.
    """

    BULLISH = "BULLISH"
    BEARISH = "BEARISH"
    NEUTRAL = "NEUTRAL"

    @classmethod
    def of(cls, option_type: str, direction: Direction) -> Sentiment:
        """Sentiment of ``direction`` on an instrument of ``option_type`` (C, P, F, …)."""
        up = direction is Direction.BUY
        if option_type == "P":
            up = not up
        elif option_type not in ("C", "F"):
            return cls.NEUTRAL
        return cls.BULLISH if up else cls.BEARISH


class Signal(BaseModel):
    """A scored window of one contract.

    Volumes in contracts; strike in USD index points; times aware UTC.
    Factor values are documented in :mod:`flows.scoring`.
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
    direction: Direction
    signal_class: SignalClass
    confidence: float = Field(ge=0.0, le=1.0)
    bid_volume: int
    ask_volume: int
    total_volume: int
    total_trades: int
    avg_trade_size: float
    volume_z: float
    dominance: float
    size_ratio: float
    sample_factor: float
    mm_score: float
    baseline_scope: str
    """``contract``, ``contract+bucket`` (a thin history shrunk toward its bucket), ``bucket``
    (strike-distance × type × days to expiry) or ``none``."""
    baseline_windows: int
    baseline_volume: float
    baseline_avg_size: float
    sweep_strikes: int = 0
    """Strikes in the same-side sweep cluster this window belongs to (0: none)."""
    block_trades: int = 0
    """Block prints in the window (one print ≥ the product's block size; 0: none)."""
    sentiment: Sentiment = Sentiment.NEUTRAL
    """Bought calls / sold puts BULLISH, the reverse BEARISH (:class:`Sentiment`)."""
    dominant_share: float = 0.0
    """Share of the window's volume on the signal's side (ask for BUY, bid for SELL), 0-1."""
    premium_usd: float | None = None
    """Premium traded in the window, USD (VWAP × volume × the definition's multiplier)."""
    days_to_expiry: float | None = None
    """Days from the window's end to the expiration."""
    moneyness_pct: float | None = None
    """Strike distance from the parity forward, % of the forward (+: strike above it)."""
    reason: str = ""
    scores: str = "{}"
    """Every configured scorer's score, JSON ``{"ifd": 0.81, "l3": 0.4}`` (:mod:`flows.consensus`)."""
    consensus: float | None = None
    """Weighted mean of ``scores`` (``IFD_SCORING_SCORERS`` weights), in [0, 1]."""

    @property
    def alert_key(self) -> str:
        """De-duplication key for alerts: contract, window and class.

        A late correction that raises a window's class gives a new key (the
        stronger alert is sent); the same class again is a duplicate.
        """
        return f"{self.contract_key}@{self.window_start.isoformat()}#{self.signal_class}"
