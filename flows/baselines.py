"""Per-contract 20-day baselines by time of day, kept online.

A baseline answers "what does this contract normally do in this half hour?".
Observations are *daily*: for each CME trading day, each baseline key and each
time-of-day bucket (``tod_bucket_s``, default 30 min) the book sums the
closed windows' total volume, trade count and |ask − bid| volume. A day on
which the contract did not trade in that bucket counts as zero, so thin
strikes get a low baseline instead of one conditioned on trading.

**Exchange time** (:mod:`flows.exchange_time`): a trading day is a CME Globex
session (exchange_calendars ``CMES``: it opens 17:00 America/Chicago the
evening before, weekends and holidays have none), and a bucket is a span of
time since that 17:00 CT open, so 08:30 CT falls in the same bucket before and
after a DST change. The Sunday-evening open and a holiday's evening belong to
the next trading day. A session that closed early (e.g. 12:00 CT) is left out
of the baselines of the buckets after its close instead of counting as zero.

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

import warnings
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from flows.exchange_time import cme_sessions, locate_one

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


def nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of each row of ``x`` (float, shape (k, d)) ignoring NaN; 0 for an all-NaN row.

    Equals ``np.nan_to_num(np.nanmedian(x, axis=1))`` at a fraction of its cost on short rows
    (numpy's nanmedian goes through masked arrays there): one sort, NaN sorts last.
    """
    k = len(x)
    if x.shape[1] == 0:
        return np.zeros(k)
    ordered = np.sort(x, axis=1)
    n = x.shape[1] - np.isnan(x).sum(axis=1)
    rows = np.arange(k)
    lo, hi = np.maximum(n - 1, 0) // 2, n // 2
    middle = (ordered[rows, lo] + ordered[rows, np.minimum(hi, x.shape[1] - 1)]) / 2.0
    return np.where(n > 0, middle, 0.0)


_VOLUME, _TRADES, _IMBALANCE, _ADDS, _SQUARES = 0, 1, 2, 3, 4
"""Columns of a day array: volume, trades, |ask − bid| volume, windows added (presence), and
the sum of squared window volumes (the window-level second moment)."""
_NCOL = 5
_CELL = np.float32
"""Day-array dtype: integer sums stay exact below 2^24 contracts per slot and day; squares keep
float32's relative precision (~6e-8), plenty for a variance."""
_CACHED_BUCKETS = 8
"""(day, tod bucket, per) baselines kept by :meth:`BaselineBook.baselines`."""
_NEVER = np.iinfo(np.int64).max


class BaselineArrays(NamedTuple):
    """Baselines of many keys at once (one time-of-day bucket, one scored day).

    Every attribute is a float64 array of shape (k,) aligned with the codes asked for, except
    ``valid`` (bool, (k,): a baseline exists) and ``days`` (int64, (k,): the key's listed
    trading days the statistics cover).
    Meanings and units as in :class:`Baseline`; entries where ``valid`` is false are 0.
    """

    valid: np.ndarray
    days: np.ndarray
    volume_median: np.ndarray
    volume_scale: np.ndarray
    avg_trade_size: np.ndarray
    trades_median: np.ndarray
    abs_imbalance: np.ndarray

    def at(self, i: int, scope: str) -> Baseline | None:
        """Return the :class:`Baseline` of entry ``i`` (None where ``valid`` is false)."""
        if not self.valid[i]:
            return None
        return Baseline(scope=scope, days=int(self.days[i]),
                        volume_median=float(self.volume_median[i]),
                        volume_scale=float(self.volume_scale[i]),
                        avg_trade_size=float(self.avg_trade_size[i]),
                        trades_median=float(self.trades_median[i]),
                        abs_imbalance=float(self.abs_imbalance[i]))


class BaselineBook:
    """Daily observations per (key, tod bucket) for the last trading days, held as arrays.

    Layout: every key (contract or bucket key) gets an integer code (:meth:`codes`); each
    (code, tod bucket) pair that ever received a window gets a row; each trading day holds one
    int32 array of shape (rows, 4): volume, trades, |ask − bid| volume (contracts) and the
    number of windows added. Adds are vectorised (``np.add.at``); a day beyond the lookback is
    dropped whole. :meth:`snapshot` is copy-on-write: it shares every array and whichever side
    writes first copies only the array it writes (in practice the current day), so a snapshot
    costs a dict copy, independent of the history held. Baselines read prior days only, so
    :meth:`baselines` computes each key's once per (day, bucket) and reuses them for the
    bucket's later windows, until an add to an earlier day or a new day makes them stale; the
    cache is neither snapshotted nor pickled.

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

    def __init__(self, lookback_days: int = 20, min_days: int = 5, tod_bucket_s: int = 1800,
                 window_s: int = 300) -> None:
        self.lookback_days = lookback_days
        self.min_days = min_days
        self.tod_bucket_s = tod_bucket_s
        self.window_s = window_s
        self.trading_days: list[int] = []
        """Sorted CME trading days (days since epoch of the session date) that had any window."""
        self._codes: dict[str, int] = {}
        self._keys: list[str] = []
        self._rows = np.full((0, 86_400 // tod_bucket_s), -1, dtype=np.int32)
        """code × tod slot → row (−1: none)."""
        self._n_rows = 0
        self._first = np.full(0, _NEVER, dtype=np.int64)
        """code → first trading day it received a window (its listing, as far as the book knows)."""
        self._days: dict[int, np.ndarray] = {}
        self._shared: set[int] = set()
        self._rows_shared = False
        self._cache: dict[tuple[int, int, str], tuple[np.ndarray, BaselineArrays]] = {}
        """(day, slot, per) → (code computed?, baselines by code): see :meth:`baselines`."""

    # --- keys and rows ------------------------------------------------------------------------

    def codes(self, keys: list[str]) -> np.ndarray:
        """Integer codes of ``keys`` (int64, shape (len(keys),)); unseen keys get new codes."""
        out = self.known(keys)
        for i in np.flatnonzero(out < 0).tolist():  # Python per new key only
            code = self._codes.get(keys[i])
            if code is None:
                code = self._codes[keys[i]] = len(self._keys)
                self._keys.append(keys[i])
            out[i] = code
        return out

    def known(self, keys: list[str]) -> np.ndarray:
        """Codes of ``keys``, −1 for keys never added (int64, shape (len(keys),))."""
        return np.fromiter(map(self._codes.get, keys, repeat(-1, len(keys))), dtype=np.int64,
                           count=len(keys))

    def tod_bucket(self, window_start_s: int) -> int:
        """Start of the window's time-of-day bucket, seconds after its session's 17:00 CT open."""
        return self._slot(window_start_s) * self.tod_bucket_s

    def _slot(self, window_start_s: int) -> int:
        return min(locate_one(window_start_s)[1] // self.tod_bucket_s, self._rows.shape[1] - 1)

    @staticmethod
    def _day(window_start_s: int) -> int:
        return locate_one(window_start_s)[0]

    def _row_ids(self, codes: np.ndarray, slot: int, *, create: bool) -> np.ndarray:
        rows = self._rows
        if create and len(self._keys) > rows.shape[0]:
            grown = np.full((max(len(self._keys), 2 * rows.shape[0], 64), rows.shape[1]), -1,
                            dtype=np.int32)
            grown[: rows.shape[0]] = rows
            self._rows, self._rows_shared, rows = grown, False, grown
        inside = (codes >= 0) & (codes < rows.shape[0])
        ids = np.full(len(codes), -1, dtype=np.int64)
        ids[inside] = rows[codes[inside], slot]
        if create:
            missing = np.flatnonzero(ids < 0)
            if len(missing):
                if self._rows_shared:
                    self._rows, self._rows_shared = self._rows.copy(), False
                new_codes, first = np.unique(codes[missing], return_inverse=True)
                fresh = np.arange(self._n_rows, self._n_rows + len(new_codes), dtype=np.int64)
                self._rows[new_codes, slot] = fresh
                self._n_rows += len(new_codes)
                ids[missing] = fresh[first]
        return ids

    def cell_keys(self) -> list[tuple[str, int]]:
        """Every (key, tod bucket start s) that holds data, sorted."""
        codes, slots = np.nonzero(self._rows >= 0)
        return sorted((self._keys[c], int(s) * self.tod_bucket_s)
                      for c, s in zip(codes.tolist(), slots.tolist(), strict=True))

    def cell(self, key: str, window_start_s: int) -> tuple[int, int, int] | None:
        """(volume, trades, |imbalance|) held for ``key`` on the window's day and bucket, or None."""
        row = self._row_ids(self.known([key]), self._slot(window_start_s), create=False)[0]
        arr = self._days.get(self._day(window_start_s))
        if row < 0 or arr is None or row >= len(arr) or arr[row, _ADDS] == 0:
            return None
        return int(arr[row, _VOLUME]), int(arr[row, _TRADES]), int(arr[row, _IMBALANCE])

    # --- updates ------------------------------------------------------------------------------

    def _note_day(self, day: int) -> None:
        if self._cache:
            # an add to day d changes the prior days of every later day; a new day also moves
            # the lookback of every day (eviction): drop what it makes stale
            known = day in self.trading_days
            self._cache = {k: v for k, v in self._cache.items() if known and k[0] <= day}
        if not self.trading_days or self.trading_days[-1] < day:
            self.trading_days.append(day)
            self._evict()
        elif day not in self.trading_days:
            self.trading_days.append(day)
            self.trading_days.sort()

    def _day_array(self, day: int, rows: int) -> np.ndarray:
        arr = self._days.get(day)
        if arr is None:
            arr = np.zeros((max(rows, 64), _NCOL), dtype=_CELL)
        elif len(arr) < rows:
            grown = np.zeros((max(rows, 2 * len(arr)), _NCOL), dtype=_CELL)
            grown[: len(arr)] = arr
            arr = grown
        elif day in self._shared:
            arr = arr.copy()
        else:
            return arr
        self._days[day] = arr
        self._shared.discard(day)
        return arr

    def add_codes(self, codes: np.ndarray, window_start_s: int, volume: np.ndarray,
                  trades: np.ndarray, abs_imbalance_volume: np.ndarray,
                  squares: np.ndarray | None = None) -> None:
        """Add closed windows' numbers of one window start (vectorised; codes may repeat).

        Parameters
        ----------
        codes : ndarray of int64, shape (k,)
            Key codes from :meth:`codes`.
        window_start_s : int
            Window start, s since epoch UTC (sets the day and tod bucket).
        volume, trades, abs_imbalance_volume : array-like of int, shape (k,)
            Contracts, trades and |ask − bid| contracts (differences are allowed).
        squares : array-like, shape (k,), optional
            Change of the squared window volume (default ``volume²``; a correction that moves a
            window from v to v + d passes ``(v + d)² − v²``).
        """
        if len(codes) == 0:
            return
        day = self._day(window_start_s)
        self._note_day(day)
        codes = np.asarray(codes, dtype=np.int64)
        rows = self._row_ids(codes, self._slot(window_start_s), create=True)
        if len(self._first) < len(self._keys):
            grown = np.full(max(len(self._keys), 2 * len(self._first), 64), _NEVER, dtype=np.int64)
            grown[: len(self._first)] = self._first
            self._first = grown
        np.minimum.at(self._first, codes, day)
        arr = self._day_array(day, self._n_rows)
        values = np.empty((len(rows), _NCOL), dtype=_CELL)
        volume = np.asarray(volume, dtype=np.float64)
        values[:, _VOLUME], values[:, _TRADES] = volume, trades
        values[:, _IMBALANCE], values[:, _ADDS] = abs_imbalance_volume, 1
        values[:, _SQUARES] = volume * volume if squares is None else squares
        if len(rows) < 2 or (np.diff(np.sort(rows)) != 0).all():
            arr[rows] += values  # distinct rows (a window's contracts): plain fancy-index add
        else:
            np.add.at(arr, rows, values)

    def add(self, key: str, window_start_s: int, volume: int, trades: int,
            abs_imbalance_volume: int) -> None:
        """Add one closed window's numbers under ``key`` (contract or bucket key)."""
        self.add_codes(self.codes([key]), window_start_s, np.array([volume]), np.array([trades]),
                       np.array([abs_imbalance_volume]))

    def add_many(self, keys: list[str], window_start_s: np.ndarray, volume: np.ndarray,
                 trades: np.ndarray, abs_imbalance_volume: np.ndarray) -> None:
        """Add many windows at once (history preload); same units as :meth:`add_codes`."""
        codes = self.codes(keys)
        start = np.asarray(window_start_s, dtype=np.int64)
        day, second = cme_sessions().locate(start)
        groups = day * (86_400 // self.tod_bucket_s) + second // self.tod_bucket_s
        order = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(np.diff(groups[order])) + 1
        for idx in np.split(order, bounds):
            if len(idx):
                self.add_codes(codes[idx], int(start[idx[0]]), np.asarray(volume)[idx],
                               np.asarray(trades)[idx], np.asarray(abs_imbalance_volume)[idx])

    def _evict(self) -> None:
        """Forget days older than the lookback (+ the current day)."""
        keep = self.lookback_days + 1
        if len(self.trading_days) > keep:
            self.trading_days = self.trading_days[-keep:]
            kept = set(self.trading_days)
            for day in [d for d in self._days if d not in kept]:
                del self._days[day]
                self._shared.discard(day)

    # --- copies -------------------------------------------------------------------------------

    def snapshot(self) -> BaselineBook:
        """Copy-on-write copy: shares every array; costs O(keys + days), not O(history)."""
        clone = BaselineBook.__new__(BaselineBook)
        clone.__dict__.update(self.__dict__)
        clone.trading_days = list(self.trading_days)
        clone._codes = dict(self._codes)
        clone._keys = list(self._keys)
        clone._first = self._first.copy()
        clone._days = dict(self._days)
        clone._shared = set(self._days)
        clone._rows_shared = True
        clone._cache = {}
        self._shared = set(self._days)
        self._rows_shared = True
        return clone

    def __deepcopy__(self, memo: dict) -> BaselineBook:
        """Copy-on-write copy (see :meth:`snapshot`)."""
        clone = self.snapshot()
        memo[id(self)] = clone
        return clone

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled book; books from before window-level squares are upgraded."""
        days = state.get("_days", {})
        if days and next(iter(days.values())).shape[1] == _SQUARES:
            for d, a in list(days.items()):  # squares as if the slot's windows were equal
                up = np.zeros((len(a), _NCOL), dtype=_CELL)
                up[:, :_SQUARES] = a
                with np.errstate(invalid="ignore", divide="ignore"):
                    up[:, _SQUARES] = np.where(a[:, _ADDS] > 0,
                                               a[:, _VOLUME].astype(float) ** 2 / a[:, _ADDS], 0.0)
                days[d] = up
        if "_first" not in state:  # listed since the oldest day held
            oldest = min(state.get("trading_days") or [0])
            state["_first"] = np.full(len(state.get("_keys", [])), oldest, dtype=np.int64)
        state.setdefault("_cache", {})
        self.__dict__.update(state)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_days"] = {d: a[: self._n_rows] for d, a in self._days.items()}
        state["_rows"] = self._rows[: len(self._keys)]
        state["_shared"] = set(self._days)  # views of live arrays: copy before writing
        state["_rows_shared"] = True
        state["_cache"] = {}  # derived, rebuilt on demand
        return state

    # --- statistics ---------------------------------------------------------------------------

    def baselines(self, codes: np.ndarray, window_start_s: int, *,
                  per: str = "window") -> BaselineArrays:
        """Baselines of ``codes`` (int64, (k,), −1 allowed) for one window, from prior days.

        The days are the last ``lookback_days`` trading days before the window's day whose
        session was open in this bucket, and of those only the ones on or after each key's
        first day in the book (its listing as far as the book knows: days before it are
        absent, not zero). ``valid`` is false with fewer than ``min_days`` such days or no
        window in this bucket on any of them.

        ``per`` sets the unit the statistics describe:

        - ``"window"`` (contracts): every window of the bucket on every listed day counts,
          zero where the key did not trade;
        - ``"trading"`` (strike-distance buckets): per contract-window that traded, i.e. the
          bucket's sums divided by the contract-windows added to it, so one contract is
          compared with one peer, not with the sum of the bucket.

        Statistics (module docstring): median of the daily means, σ from the window-level
        second moment ``sqrt(E[v²] − E[v]²)`` floored at the compound-Poisson σ, pooled lot
        size, median trades, mean |imbalance| share.
        """
        if per not in ("window", "trading"):
            msg = f"per must be 'window' or 'trading', got {per!r}"
            raise ValueError(msg)
        day, slot = self._day(window_start_s), self._slot(window_start_s)
        codes = np.asarray(codes, dtype=np.int64)
        # Baselines read prior days only, so they hold for every window of this (day, bucket)
        # until an add to an earlier day or a new day (_note_day drops those): computed once
        # per code, then gathered. Windows of one bucket share them (6 at 5 min, 30 at 1 min).
        size = max(len(self._keys), int(codes.max()) + 1 if len(codes) else 0)
        entry = self._cache.get((day, slot, per))
        if entry is None or len(entry[0]) < size:
            entry = self._grown_entry(entry, size)
            if (day, slot, per) not in self._cache and len(self._cache) >= _CACHED_BUCKETS:
                del self._cache[next(iter(self._cache))]  # the oldest bucket
            self._cache[(day, slot, per)] = entry
        done, cached = entry
        ok = codes >= 0
        safe = np.where(ok, codes, 0)
        todo = np.unique(codes[ok & ~done[safe]])
        if len(todo):
            for column, values in zip(cached, self._compute(todo, day, slot, per), strict=True):
                column[todo] = values
            done[todo] = True
        return BaselineArrays(cached.valid[safe] & ok,
                              *(np.where(ok, column[safe], 0) for column in cached[1:]))

    @staticmethod
    def _grown_entry(entry: tuple[np.ndarray, BaselineArrays] | None,
                     size: int) -> tuple[np.ndarray, BaselineArrays]:
        """Return a cache entry for ``size`` codes holding what ``entry`` held."""
        size = max(size, 64, 2 * len(entry[0]) if entry is not None else 0)
        done = np.zeros(size, dtype=bool)
        cached = BaselineArrays(np.zeros(size, dtype=bool), np.zeros(size, dtype=np.int64),
                                *(np.zeros(size) for _ in range(5)))
        if entry is not None:
            n = len(entry[0])
            done[:n] = entry[0]
            for column, old in zip(cached, entry[1], strict=True):
                column[:n] = old
        return done, cached

    def _compute(self, codes: np.ndarray, day: int, slot: int, per: str) -> BaselineArrays:
        """Baselines of ``codes`` (int64, (k,), ≥ 0) for trading day ``day`` and tod ``slot``."""
        bucket_start = slot * self.tod_bucket_s
        sessions = cme_sessions()
        prior = [d for d in self.trading_days
                 if d < day and bucket_start < sessions.close_second(d)][-self.lookback_days:]
        k = len(codes)
        zeros = np.zeros(k)
        if not prior or k == 0:
            return BaselineArrays(np.zeros(k, dtype=bool), np.zeros(k, dtype=np.int64), zeros,
                                  zeros, zeros, zeros, zeros)
        rows = self._row_ids(codes, slot, create=False)
        cube = np.zeros((k, len(prior), _NCOL))
        have = rows >= 0
        for j, d in enumerate(prior):
            arr = self._days.get(d)
            if arr is None:
                continue
            inside = have & (rows < len(arr))
            cube[inside, j] = arr[rows[inside]]
        known = (codes >= 0) & (codes < len(self._first))
        first = np.full(k, _NEVER, dtype=np.int64)
        first[known] = self._first[codes[known]]
        listed = np.asarray(prior, dtype=np.int64)[None, :] >= first[:, None]
        n_days = listed.sum(axis=1)
        adds = np.where(listed, cube[:, :, _ADDS], 0.0)
        valid = (n_days >= self.min_days) & (adds > 0).any(axis=1)
        per_bucket = max(1, self.tod_bucket_s // self.window_s)
        volume = np.where(listed, cube[:, :, _VOLUME], 0.0)
        trades = np.where(listed, cube[:, :, _TRADES], 0.0)
        if per == "window":
            denom = np.where(listed, float(per_bucket), np.nan)
        else:
            denom = np.where(listed & (adds > 0), adds, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: invalid anyway
            median = nanmedian_rows(volume / denom)
            trades_median = nanmedian_rows(trades / denom)
            windows = np.nansum(np.where(np.isnan(denom), 0.0, denom), axis=1)
            total_volume, total_trades = volume.sum(axis=1), trades.sum(axis=1)
            mean = np.where(windows > 0, total_volume / windows, 0.0)
            second = np.where(windows > 0,
                              np.where(listed, cube[:, :, _SQUARES], 0.0).sum(axis=1) / windows, 0.0)
            pooled = np.where(total_trades != 0, total_volume / total_trades, 1.0)
            imbalance = np.where(total_volume != 0, np.where(listed, cube[:, :, _IMBALANCE], 0.0)
                                 .sum(axis=1) / total_volume, 0.0)
        variance = np.maximum(second - mean * mean, 0.0)
        scale = np.maximum(np.sqrt(variance), np.sqrt(2.0 * mean * pooled + 1.0))

        def keep(x: np.ndarray) -> np.ndarray:
            return np.where(valid, x, 0.0)

        return BaselineArrays(valid, np.where(valid, n_days, 0).astype(np.int64), keep(median),
                              keep(scale), keep(np.where(total_trades != 0, pooled, 0.0)),
                              keep(trades_median), keep(imbalance))

    def baseline(self, key: str, scope: str, window_start_s: int) -> Baseline | None:
        """Baseline of ``key`` for the window's tod bucket from days *before* its day.

        ``scope`` ``bucket`` uses per-contract-window statistics (:meth:`baselines`,
        ``per="trading"``). Returns None with fewer than ``min_days`` listed prior trading
        days or no history in the bucket.
        """
        per = "trading" if scope == "bucket" else "window"
        return self.baselines(self.known([key]), window_start_s, per=per).at(0, scope)


def add_history(book: BaselineBook, table: Any) -> None:
    """Add closed windows read from storage (``sinks.clickhouse.load_history``) to ``book``.

    ``table`` is a pyarrow Table (any object with ``column(name).to_numpy()`` / ``to_pylist()``)
    with contract_key, window_start_s (s since epoch UTC), total_volume, total_trades and
    abs_imbalance (contracts); days are added oldest first.
    """
    book.add_many(table.column("contract_key").to_pylist(),
                  np.asarray(table.column("window_start_s").to_numpy(), dtype=np.int64),
                  np.asarray(table.column("total_volume").to_numpy(), dtype=np.int64),
                  np.asarray(table.column("total_trades").to_numpy(), dtype=np.int64),
                  np.asarray(table.column("abs_imbalance").to_numpy(), dtype=np.int64))
