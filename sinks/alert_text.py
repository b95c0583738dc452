"""Alert message text: title and plain-text body of a signal (times UTC, volumes in contracts)."""

from __future__ import annotations

from datetime import UTC, datetime

from models.signals import Signal


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def alert_title(signal: Signal) -> str:
    """One-line title, e.g. ``IFD STRONG BUY NQZ6 C21500 2026-11-20 13:35Z`` (window start, UTC)."""
    start = _utc(signal.window_start)
    return (
        f"IFD {signal.signal_class.value} {signal.direction.value} {signal.symbol} "
        f"{start:%Y-%m-%d %H:%M}Z"
    )


def alert_body(signal: Signal) -> str:
    """Plain-text body: ``signal.reason`` then the key numbers (volumes in contracts)."""
    start, end = _utc(signal.window_start), _utc(signal.window_end)
    expiry = f"{_utc(signal.expiration):%Y-%m-%d}" if signal.expiration is not None else "n/a"
    strike = f"{signal.strike:g}" if signal.strike is not None else "n/a"
    return "\n".join(
        [
            signal.reason,
            "",
            f"contract: {signal.symbol} ({signal.contract_key}, id {signal.instrument_id})",
            f"underlying {signal.underlying}, {signal.option_type} strike {strike}, expires {expiry}",
            f"window: {start:%Y-%m-%d %H:%M}-{end:%H:%M}Z",
            f"class {signal.signal_class.value}, {signal.direction.value}, "
            f"confidence {signal.confidence:.2f}",
            f"volume {signal.total_volume:,} (bid {signal.bid_volume:,} / ask {signal.ask_volume:,}), "
            f"{signal.total_trades:,} trades, avg size {signal.avg_trade_size:.1f}",
            f"volume z {signal.volume_z:.2f}, dominance {signal.dominance:.2f}, "
            f"size ratio {signal.size_ratio:.2f}, mm score {signal.mm_score:.2f}",
            f"baseline {signal.baseline_scope}: {signal.baseline_windows} windows, "
            f"volume {signal.baseline_volume:.1f}, avg size {signal.baseline_avg_size:.1f}",
            _trader_line(signal),
        ]
    )


def _trader_line(signal: Signal) -> str:
    """Sentiment, premium (USD), days to expiry and moneyness (% from the forward), as known."""
    parts = [f"sentiment {signal.sentiment.value}",
             f"{signal.dominant_share:.0%} of the volume on the signal's side"]
    if signal.premium_usd is not None:
        parts.append(f"premium ${signal.premium_usd:,.0f}")
    if signal.days_to_expiry is not None:
        parts.append(f"{signal.days_to_expiry:.1f} days to expiry")
    if signal.moneyness_pct is not None:
        parts.append(f"strike {signal.moneyness_pct:+.2f} % from the forward")
    if signal.sweep_strikes:
        parts.append(f"sweep across {signal.sweep_strikes} strikes")
    if signal.block_trades:
        parts.append(f"{signal.block_trades} block print(s)")
    return ", ".join(parts)


_RANK = {"STRONG": 3, "MODERATE": 2, "MONITOR": 1}


def digest_title(signals: list[Signal]) -> str:
    """One-line title of several signals sent as one message.

    E.g. ``IFD 12 signals (3 STRONG, 9 MODERATE) 2026-11-20 13:35Z`` (earliest window start, UTC).
    """
    counts: dict[str, int] = {}
    for s in signals:
        counts[s.signal_class.value] = counts.get(s.signal_class.value, 0) + 1
    classes = ", ".join(f"{counts[c]} {c}" for c in sorted(counts, key=lambda c: -_RANK.get(c, 0)))
    start = min(_utc(s.window_start) for s in signals)
    return f"IFD {len(signals)} signals ({classes}) {start:%Y-%m-%d %H:%M}Z"


def digest_body(signals: list[Signal]) -> str:
    """Plain-text body of a digest: one line per signal, strongest class and confidence first.

    Each line: the signal's title, confidence, volume (contracts, bid / ask) and reason.
    """
    ordered = sorted(signals, key=lambda s: (-_RANK.get(s.signal_class.value, 0), -s.confidence))
    return "\n".join(
        f"{alert_title(s)} | confidence {s.confidence:.2f} | volume {s.total_volume:,} "
        f"(bid {s.bid_volume:,} / ask {s.ask_volume:,}) | {s.reason}"
        for s in ordered
    )
