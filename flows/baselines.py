"""Per-contract 20-day baselines by time of day, kept online.

A baseline answers "what does this contract normally do in this half hour?".
Observations are *daily*: for each trading day, each baseline key and each
time-of-day bucket (``tod_bucket_s``, default 30 min) the book sums the
closed windows' total volume, trade count and |ask − bid| volume. A day on
which the contract did not trade in that bucket counts as zero, so thin
strikes get a low baseline instead of one conditioned on trading.

Two scopes (Issue: "per contract and per strike-distance × option type
bucket, so a new weekly contract still has a reference"):

| scope      | key                                                    | used when                              |
|------------|--------------------------------------------------------|----------------------------------------|
| ``contract`` | contract key                                         | ≥ ``min_days`` trading days of history |
| ``bucket``   | underlying | C/P | strike distance from the forward (% step) | otherwise, with ≥ ``min_days``    |
| ``none``     | —                                                    | no usable history                       |

Statistics over the last ``lookback_days`` trading days *before* the scored
day, per 5-minute window (bucket totals ÷ windows per bucket): median and
MAD of volume (robust z, Rousseeuw & Croux 1993: σ ≈ 1.4826·MAD; floored at
the compound-Poisson σ of volume), pooled
average trade size (volume ÷ trades), median trade count and mean |imbalance|.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field

import numpy as np

MAD_TO_SIGMA = 1.4826
"""Consistency constant: σ ≈ 1.4826 · MAD for normal data."""


@dataclass(frozen=True, slots=True)
class Baseline:
    """Reference numbers for one key and time-of-day bucket, per 5-minute window.

    Attributes
    ----------
    scope : str
        ``contract`` or ``bucket``.
    days : int
        Trading days the statistics cover.
    volume_median, volume_scale : float
        Median window volume (contracts) and its robust σ, floored at the
        compound-Poisson σ ``sqrt(2 · mean · avg_trade_size + 1)`` (volume =
        trades × lot size; Var ≈ λ·E[s²] ≈ 2·mean·avg size for geometric-like
        lot sizes) so a quiet history does not give infinite z.
    avg_trade_size : float
        Pooled contracts per trade (0 when no trades in the history).
    trades_median : float
        Median trades per window.
    abs_imbalance : float
        Mean |ask − bid| / volume over the history's traded volume.
    """

    scope: str
    days: int
    volume_median: float
    volume_scale: float
    avg_trade_size: float
    trades_median: float
    abs_imbalance: float

    def volume_z(self, volume: float) -> float:
        """Robust z-score of a window's total volume against this baseline."""
        return (volume - self.volume_median) / self.volume_scale


_VOLUME, _TRADES, _IMBALANCE = 0, 1, 2
"""Positions in a cell: ``[volume, trades, |ask − bid| volume]`` of one key × bucket × day."""
_EMPTY = (0, 0, 0)


@dataclass
class BaselineBook:
    """Daily observations per (key, tod bucket) for the last trading days.

    Parameters
    ----------
    lookback_days : int
        Trading days a baseline covers (20).
    min_days : int
        Fewest trading days of history a baseline needs.
    tod_bucket_s : int
        Time-of-day bucket length, seconds (divides 86400).
    window_s : int
        Window length, seconds (a bucket holds ``tod_bucket_s / window_s`` windows).
    """

    lookback_days: int = 20
    min_days: int = 5
    tod_bucket_s: int = 1800
    window_s: int = 300
    cells: dict[tuple[str, int], dict[int, list[int]]] = field(default_factory=dict)
    """(key, tod bucket start s) → day number (days since epoch) → [volume, trades, |imbalance|]."""
    trading_days: list[int] = field(default_factory=list)
    """Sorted day numbers that had any window."""
    _cache: dict[tuple[str, int, int], Baseline | None] = field(default_factory=dict, repr=False)

    def tod_bucket(self, window_start_s: int) -> int:
        """Start of the time-of-day bucket (seconds after UTC midnight) of a window."""
        return (window_start_s % 86_400) // self.tod_bucket_s * self.tod_bucket_s

    def add(self, key: str, window_start_s: int, volume: int, trades: int,
            abs_imbalance_volume: int) -> None:
        """Add one closed window's numbers under ``key`` (contract or bucket key)."""
        day = window_start_s // 86_400
        if not self.trading_days or self.trading_days[-1] < day:
            self.trading_days.append(day)
            self._evict()
        elif day not in self.trading_days:
            self.trading_days.append(day)
            self.trading_days.sort()
        days = self.cells.get((key, self.tod_bucket(window_start_s)))
        if days is None:
            days = self.cells[(key, self.tod_bucket(window_start_s))] = {}
        cell = days.get(day)
        if cell is None:
            days[day] = [volume, trades, abs_imbalance_volume]
        else:
            cell[_VOLUME] += volume
            cell[_TRADES] += trades
            cell[_IMBALANCE] += abs_imbalance_volume

    def __deepcopy__(self, memo: dict) -> BaselineBook:
        """Copy via pickle (C speed; bytewax deep-copies state at every snapshot)."""
        clone = pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
        memo[id(self)] = clone
        return clone

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}  # derived; rebuilt on demand
        return state

    def _evict(self) -> None:
        """Forget days older than the lookback (+ the current day) and stale cache."""
        keep = self.lookback_days + 1
        if len(self.trading_days) > keep:
            cutoff = self.trading_days[-keep]
            self.trading_days = self.trading_days[-keep:]
            for key in list(self.cells):
                days = self.cells[key]
                for d in [d for d in days if d < cutoff]:
                    del days[d]
                if not days:
                    del self.cells[key]
        self._cache.clear()

    def baseline(self, key: str, scope: str, window_start_s: int) -> Baseline | None:
        """Baseline of ``key`` for the window's tod bucket from days *before* its day.

        Returns None with fewer than ``min_days`` prior trading days.
        """
        day = window_start_s // 86_400
        bucket = self.tod_bucket(window_start_s)
        cache_key = (key, bucket, day)
        if cache_key in self._cache:
            return self._cache[cache_key]
        prior = [d for d in self.trading_days if d < day][-self.lookback_days:]
        result = None
        if len(prior) >= self.min_days:
            cells = self.cells.get((key, bucket), {})
            if any(d in cells for d in prior):
                result = self._stats(scope, prior, cells)
        self._cache[cache_key] = result
        return result

    def _stats(self, scope: str, prior: list[int], cells: dict[int, list[int]]) -> Baseline:
        per_bucket = max(1, self.tod_bucket_s // self.window_s)
        rows = np.array([cells.get(d, _EMPTY) for d in prior], dtype=float)
        volume = rows[:, _VOLUME] / per_bucket
        trades = rows[:, _TRADES] / per_bucket
        median = float(np.median(volume))
        mad = float(np.median(np.abs(volume - median)))
        total_volume = float(rows[:, _VOLUME].sum())
        total_trades = float(rows[:, _TRADES].sum())
        avg_size = total_volume / total_trades if total_trades else 1.0
        scale = max(MAD_TO_SIGMA * mad, math.sqrt(2.0 * float(volume.mean()) * avg_size + 1.0))
        return Baseline(
            scope=scope,
            days=len(prior),
            volume_median=median,
            volume_scale=scale,
            avg_trade_size=avg_size if total_trades else 0.0,
            trades_median=float(np.median(trades)),
            abs_imbalance=(float(rows[:, _IMBALANCE].sum()) / total_volume
                           if total_volume else 0.0),
        )
