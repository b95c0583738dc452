"""Sweeps and blocks: the prints institutional flow leaves on the tape.

**Sweep.** An institution that needs size at once sends one order (or a burst of them) that
lifts offers (or hits bids) on several strikes of one expiry: the prints are same-side,
aggressive and near-simultaneous. Rule: prints of one (underlying, expiration, option type)
with the same aggressor side on at least ``min_strikes`` distinct strikes, inside one interval
of ``interval_ns`` (default 1 s), totalling at least ``min_volume`` contracts, are sweep
prints. Intervals are aligned on two grids offset by half an interval (``ts // interval`` and
``(ts + interval/2) // interval``), so any such burst that spans at most half the interval is
found wherever it falls, and the result does not depend on how the stream is cut into
batches beyond the batch edge itself. Spread trades and leg prints are never sweep prints.
An expiry-wide move made of independent small trades over minutes is not a sweep.

**Block.** One print of at least ``block_min_lots`` contracts (per product: the longest
matching prefix of the underlying symbol in ``block_min_lots_by_product``, e.g. ``{"NQ":
50, "ES": 100}``).

Both are counted per contract-window (``sweep_volume``, ``block_volume``, ``block_trades``)
and become tags of a signal. Sources: the sweep/block vocabulary of options order-flow
services (e.g. CBOE LiveVol "sweep" = an order executed across strikes or venues at once);
the 1 s default is this project's choice, configurable as ``IFD_SCORING_SWEEP_INTERVAL_S``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np


@dataclass(frozen=True)
class TapeRules:
    """Thresholds of :func:`sweep_prints` and :func:`block_prints`.

    Attributes
    ----------
    interval_ns : int
        Sweep interval, ns (> 0).
    min_strikes : int
        Distinct strikes a sweep needs (≥ 2).
    min_volume : int
        Contracts a sweep needs over all its prints.
    block_min_lots : int
        Contracts of one print that make it a block (default for every product).
    block_min_lots_by_product : dict[str, int]
        Per-product thresholds by underlying-symbol prefix (``"NQ"`` matches ``NQZ6``).
    """

    interval_ns: int = 1_000_000_000
    min_strikes: int = 3
    min_volume: int = 20
    block_min_lots: int = 50
    block_min_lots_by_product: dict[str, int] = field(default_factory=dict)

    def block_threshold(self, underlying: str) -> int:
        """Block threshold (contracts) for an underlying symbol: longest matching prefix."""
        best, best_len = self.block_min_lots, -1
        for prefix, lots in self.block_min_lots_by_product.items():
            if underlying.startswith(prefix) and len(prefix) > best_len:
                best, best_len = lots, len(prefix)
        return best


def sweep_prints(ts_event: np.ndarray, side: np.ndarray, size: np.ndarray, chain: np.ndarray,
                 option_type: np.ndarray, strike: np.ndarray, eligible: np.ndarray,
                 rules: TapeRules) -> np.ndarray:
    """Mark the prints that belong to a sweep (module docstring).

    Parameters
    ----------
    ts_event : int64[n]
        ns since epoch UTC.
    side : int8[n]
        Aggressor side, +1 buy / −1 sell / 0 unknown (unknown prints never sweep).
    size : int64[n]
        Contracts.
    chain : int64[n]
        Code of each print's (underlying, expiration); −1 for non-options.
    option_type : int8[n]
        0 call, 1 put, −1 other.
    strike : int64[n]
        Fixed-point 1e-9 strike.
    eligible : bool[n]
        False for prints that may not sweep (spread trades, leg prints).

    Returns
    -------
    bool[n]
    """
    n = len(ts_event)
    out = np.zeros(n, dtype=bool)
    ok = np.flatnonzero(eligible & (side != 0) & (chain >= 0) & (option_type >= 0))
    if len(ok) < rules.min_strikes:
        return out
    group = (chain[ok] * 2 + option_type[ok]) * 2 + (side[ok] > 0)
    strike_ok, size_ok, ts_ok = strike[ok], size[ok].astype(np.int64), ts_event[ok]
    for offset in (0, rules.interval_ns // 2):
        cell = (ts_ok + offset) // rules.interval_ns
        if np.all(cell[1:] >= cell[:-1]):  # the usual case: a batch in time order
            out[ok[_sweep_cells(cell, group, strike_ok, size_ok, rules.min_strikes,
                                rules.min_volume)]] = True
        else:
            order = np.argsort(cell, kind="stable")
            hit = _sweep_cells(cell[order], group[order], strike_ok[order], size_ok[order],
                               rules.min_strikes, rules.min_volume)
            out[ok[order[hit]]] = True
    return out


@nb.njit(cache=True)
def _sweep_cells(cell: np.ndarray, group: np.ndarray, strike: np.ndarray, size: np.ndarray,
                 min_strikes: int, min_volume: int) -> np.ndarray:  # pragma: no cover - compiled
    """Per run of equal ``cell`` (sorted), mark the prints of groups that sweep.

    Inside a cell the prints are ordered by (group, strike) (insertion sort up to 32 prints, two
    stable sorts above); a group's
    distinct strikes are its strike changes. Cells with fewer than ``min_strikes`` prints are
    skipped without sorting (most of a quiet tape).
    """
    m = len(cell)
    hit = np.zeros(m, dtype=np.bool_)
    local = np.empty(m, dtype=np.int64)
    i = 0
    while i < m:
        j = i + 1
        while j < m and cell[j] == cell[i]:
            j += 1
        k = j - i
        if k >= min_strikes:
            if k <= 32:  # insertion sort on a reused buffer: no allocation for a small cell
                for q in range(k):
                    r = i + q
                    p = q
                    while p > 0 and (group[local[p - 1]] > group[r] or (
                            group[local[p - 1]] == group[r] and strike[local[p - 1]] > strike[r])):
                        local[p] = local[p - 1]
                        p -= 1
                    local[p] = r
            else:
                by_strike = np.argsort(strike[i:j], kind="mergesort")
                local[:k] = by_strike[np.argsort(group[i:j][by_strike], kind="mergesort")] + i
            a = 0
            while a < k:
                g = group[local[a]]
                b = a
                strikes = 0
                volume = 0
                last = np.int64(0)
                while b < k and group[local[b]] == g:
                    s = strike[local[b]]
                    if b == a or s != last:
                        strikes += 1
                        last = s
                    volume += size[local[b]]
                    b += 1
                if strikes >= min_strikes and volume >= min_volume:
                    for q in range(a, b):
                        hit[local[q]] = True
                a = b
        i = j
    return hit


def warm_up() -> None:
    """Load the compiled sweep kernel now (numba's on-disk cache, or a compile on a fresh checkout).

    The first call of a ``cache=True`` kernel in a process costs ~0.3 s (measured here: loading
    the cached machine code and initialising numba's LLVM layer), paid by whichever batch first
    holds a sweep candidate: live, that is a window close. The flow calls this at start-up
    with the dtypes of :func:`sweep_prints`' own call, so no second signature is compiled.
    """
    empty = np.zeros(0, dtype=np.int64)
    _sweep_cells(empty, empty, empty, empty, 3, 20)


def block_prints(size: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Mark block prints: ``size ≥ threshold`` (both int64[n]; thresholds per print)."""
    return size >= threshold
