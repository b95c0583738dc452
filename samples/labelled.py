"""Labelled multi-day synthetic NQ options tape: ground truth for institutional-flow scoring.

:func:`generate_labelled_days` writes ``n_days`` consecutive CME trading days (weekends
and exchange holidays skipped, exchange_calendars ``CMES``) as DBN v3 zstd files named like
:mod:`samples.generator` (``nq-opt-glbx-mdp3-YYYYMMDD.definition.dbn.zst`` /
``.tbbo.dbn.zst``) plus ``labels.jsonl``.  Every day lists the SAME option chain with the SAME instrument ids
(:func:`samples.generator.build_chain` for the calendar day after the last trading day,
so every expiry lies after the last day, except the weekly :data:`ZERO_DTE_EXPIRY`, moved to
scored day 2 when there is one).  Days ``0 .. first_scored_day - 1`` only build
baselines; institutional flow is injected on days ``>= first_scored_day``.  Everything is
drawn from :func:`numpy.random.default_rng` seeded per day: the same arguments give
byte-identical files.

Background (never labelled): U-shaped RTH intensity (:func:`samples.generator._intensity_cdf`,
~92 % of trades in regular hours 08:30-15:00 America/Chicago, i.e. 13:30-20:00 UTC in
summer time and 14:30-21:00 UTC in winter: each day's timeline follows the exchange clock),
strikes drawn around the current underlying with a Gaussian of width 80 pts (+50 % per
later expiry), front-expiry heavy, put/call skewed to
OTM, aggressor B/A/N ~47/47/6 % at ask/bid/inside, sizes ``min(1 + floor(LN(0, 1)), 49)``
contracts (no background blocks), day-to-day activity factor U(0.8, 1.2), daily open
21500 * exp(N(0, 0.2 %)) and a quiet 5 %-vol intraday underlying so that per-contract
baselines are stable.

Null conditions a real tape has (never labelled): the days cross the 2026-11-01 DST change on
the exchange clock; :data:`OPEN_BURST_SHARE` of each day's background trades lands in the
08:30 CT open window (no event is injected there); the expiry :data:`LATE_EXPIRY` first trades
on day ``listed_from_day`` (a weekly listed mid-history); the weekly :data:`ZERO_DTE_EXPIRY`
expires at 15:00 CT of scored day 2, with a two-sided ATM surge (:data:`EXPIRY_SURGE_SHARE`
of the day's trades) in its last 2 hours, and does not trade after; market-maker spreads are
UDS verticals whose legs print side ``N``; a session that closes early on the CME calendar
(e.g. 12:00 CT on Thanksgiving and the day after) has no trades after its close; every
session opens at 17:00 CT the evening before with :data:`EVENING_SHARE` of the day's trades
before 19:00 CT and a burst in its first 5 minutes, three times larger at the Sunday-evening
open (after a weekend or holiday, :data:`SUNDAY_OPEN_SHARE`).

Strength is relative to ``baseline_volume``: the mean background ("normal") volume, both
sides, of that contract in the same 5-minute window of day over the previous ``<= 20``
days.  Injected prints are left out of it; a scorer's own history also holds the (rare)
injected prints of earlier days, so it equals ``baseline_volume`` unless that contract
and window of day carried a label on one of those days.

===============  =============  ==================================================================
label            kind           injected (one 5-minute window, one label per contract+window)
===============  =============  ==================================================================
institutional    block          1 contract, 1-5 prints of 50-500 (lognormal, multiples of 5 when
                                strong) within ~4 s, all B at the ask (BUY) or all A at the bid
                                (SELL); ``volume`` = sum of sizes
institutional    sweep          3-8 adjacent strikes, one expiry and C/P, one side, 20-150 per
                                strike in 2-4 prints, all prints within 2 s; one label per strike
institutional    accumulation   1 contract, 15-36 prints of 10-40 on the labelled side spread over
                                the window plus 0-4 opposite prints (labelled side >= 85 % of the
                                injected volume); ``volume`` = labelled-side volume only
mm               churn          1 active contract, 30-120 prints of 1-5 lots, B/A mixed so that
                                |B - A| / (B + A) < 0.15 (injected) and the window incl. background
                                stays balanced; ``volume`` = B + A injected; direction null
mm               spread         a user-defined vertical (UDS, instrument class ``T``, its legs
                                in the day's definition file) on two strikes 1-3 grid steps
                                apart (same expiry and C/P) traded 1-4 times, 5-50 lots: each
                                spread print has an aggressor (B/A), each leg prints side ``N``
                                at the same ``ts_event``; one label per leg, ``volume`` = leg
                                volume; direction null
===============  =============  ==================================================================

``strength`` (institutional only): ``weak`` = labelled-side volume drawn as U(3, 4) times
``baseline_volume`` (contracts picked where the kind's size limits allow it), ``strong`` =
volume from the kind's size distribution on a contract whose baseline is <= 1/10 of it.
When no contract fits a weak event (thin history) the event is made strong.

``labels.jsonl`` keys: ``day`` (ISO date), ``window_start`` (``YYYY-MM-DDTHH:MM:00Z``),
``instrument_id``, ``symbol``, ``label``, ``kind``, ``direction`` (``BUY``/``SELL``/null),
``strength`` (``strong``/``weak``/null), ``volume`` (contracts), plus ``trades`` (injected
prints) and ``baseline_volume`` (contracts, null without history).

Units: prices int64 fixed-point 1e-9, sizes contracts, timestamps ns since the epoch (UTC).
Run ``python -m samples.labelled --help`` for the command line interface.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import numpy as np

from flows.exchange_time import CHICAGO, cme_sessions
from samples.generator import (
    _DEF_DTYPE,
    _MBP1_DTYPE,
    CLOSE_S,
    NS,
    NS_PER_YEAR,
    PARENT_SYMBOL,
    PUBLISHER_ID,
    RTH_OPEN_S,
    TICK,
    TICK_PTS,
    Chain,
    _definition_bytes,
    _event_times,
    _intensity_cdf,
    _metadata,
    _option_theo,
    _stamp,
    _underlying_path,
    _write_dbn,
    build_chain,
    sample_name,
)

logger = logging.getLogger("samples.labelled")

DEFAULT_FIRST_DAY = dt.date(2026, 10, 19)
UNDERLYING_PRICE = 21500.0  # index points, centre of the fixed strike grid
WINDOW_S = 300  # scoring window, seconds
FIRST_WINDOW = RTH_OPEN_S // WINDOW_S  # window index of 08:30 CT after the day's session_start
N_WINDOWS = (CLOSE_S - RTH_OPEN_S) // WINDOW_S  # 78 RTH windows 08:30-15:00 CT
HISTORY_DAYS = 20  # days averaged into baseline_volume
SPOT_VOL = 0.05  # annualised intraday volatility of the underlying
OPEN_SD = 0.002  # relative sd of the daily open around UNDERLYING_PRICE
ACTIVITY = (0.8, 1.2)  # day-to-day factor on trades_per_day
WEAK_RATIO = (3.0, 4.0)  # weak event volume / baseline_volume
STRONG_RATIO = 10.0  # minimum strong event volume / baseline_volume
WEAK_SHARE = 0.4  # probability that an institutional event is weak
INSTITUTIONAL, MM = "institutional", "mm"
_KINDS = ("block", "sweep", "accumulation")
_KIND_P = (0.35, 0.30, 0.35)
_WIDTH_PTS, _WIDTH_GROWTH = 80.0, 0.5  # strike dispersion of the front expiry, growth per expiry
_EXP_DECAY, _QUARTERLY_BOOST = 0.55, 2.0
_CHUNK = 65_536
OPEN_BURST_SHARE = 0.02  # share of a day's background trades in the 08:30 CT window (null)
LATE_EXPIRY = 1  # index of the expiry listed mid-history: no trades before ``listed_from_day``
ZERO_DTE_EXPIRY = 2  # index of the weekly that expires on scored day 2 (its 0DTE session)
EXPIRY_SURGE_SHARE = 0.05  # two-sided ATM trades added in the expiry's last 2 hours, share of a day
SPREAD_ID_BASE = 7_000_000  # instrument ids of the generated user-defined spreads (day × 100 + j)
EVENING_SHARE = 0.01  # share of a day's trades in 17:00-19:00 CT, after the session's evening open
EVENING_OPEN_SHARE = 0.004  # of them, in the first 5 minutes after a weekday 17:00 CT open
SUNDAY_OPEN_SHARE = 0.012  # in the first 5 minutes after a Sunday (or post-holiday) 17:00 CT open


@dataclass(frozen=True)
class LabelledDays:
    """Files written by :func:`generate_labelled_days`.

    Attributes
    ----------
    days : list of datetime.date
        Trading dates in order (index ``i`` is "day i"; days ``>= first_scored_day`` are scored).
    definition_paths, tbbo_paths : list of Path
        Per-day DBN v3 ``definition`` and ``tbbo`` files, aligned with ``days``.
    labels_path : Path
        ``labels.jsonl`` (one JSON object per labelled contract and 5-minute window).
    first_scored_day : int
        Index of the first day that may carry institutional labels.
    """

    days: list[dt.date]
    definition_paths: list[Path]
    tbbo_paths: list[Path]
    labels_path: Path
    first_scored_day: int
    late_listed_ids: list[int] = dataclasses.field(default_factory=list)
    """Instrument ids of the expiry that first trades on day ``listed_from_day``."""
    listed_from_day: int = 0
    zero_dte_ids: list[int] = dataclasses.field(default_factory=list)
    """Instrument ids of the weekly that expires on day ``zero_dte_day`` (15:00 CT)."""
    zero_dte_day: int = -1


def trading_days(first_day: dt.date, n_days: int) -> list[dt.date]:
    """Return the first ``n_days`` CME trading days on or after ``first_day``.

    Sessions of exchange_calendars ``CMES`` (weekends and CME holidays skipped).
    """
    sessions = cme_sessions()
    first = (first_day - dt.date(1970, 1, 1)).days
    days = sessions.days[sessions.days >= first][:n_days]
    if len(days) < n_days:
        msg = f"the CME calendar lists only {len(days)} sessions from {first_day}"
        raise ValueError(msg)
    return [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days]


def fixed_chain(last_day: dt.date, underlying_price: float = UNDERLYING_PRICE) -> Chain:
    """Chain listed on the day after ``last_day``: all expiries are after ``last_day``.

    Ids and symbols are the same for every session; use :func:`day_chain` to move the
    session start (definition ``ts_event``, metadata dates) to a given day.
    """
    return build_chain(last_day + dt.timedelta(days=1), underlying_price)


def day_chain(chain: Chain, day: dt.date, open_price: float | None = None) -> Chain:
    """Return ``chain`` for ``day`` (same ids, strikes, expiries) on the exchange clock.

    ``session_start`` is placed so that :data:`RTH_OPEN_S` after it is 08:30 America/Chicago
    (00:00 UTC in CDT, 01:00 UTC in CST): the day's timeline follows the CME clock across a
    DST change, as the real market does.
    """
    price = chain.underlying_price if open_price is None else open_price
    open_ct = dt.datetime.combine(day, dt.time(8, 30), CHICAGO)
    start = int(open_ct.timestamp()) * NS - RTH_OPEN_S * NS
    return dataclasses.replace(chain, session_start=start, underlying_price=float(price))


def write_chain_definitions(path: Path, chain: Chain, extra: bytes = b"") -> Path:
    """Write ``chain`` as a DBN v3 ``definition`` file.

    Thin wrapper around the private encoders of :mod:`samples.generator`
    (:func:`samples.generator.write_definitions` rebuilds the chain from a date, which
    would change the expiries and hence the contracts from day to day). ``extra``: more
    encoded definition records appended (e.g. the day's spreads).
    """
    ids = np.concatenate([[chain.future_id], chain.ids])
    header = _metadata(chain, dbn.Schema("definition"), ["NQ.FUT", PARENT_SYMBOL], ids)
    records = np.frombuffer(_definition_bytes(chain) + extra, dtype=_DEF_DTYPE)
    return _write_dbn(path, header, [records])


# --------------------------------------------------------------------------- background
def _spot_path(rng: np.random.Generator, open_price: float) -> np.ndarray:
    """Per-second underlying (index points) 00:00-20:00 UTC at :data:`SPOT_VOL` (RTH)."""
    return open_price * _underlying_path(rng, 1.0) ** (SPOT_VOL / 0.20)


def _spot(chain: Chain, path: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Underlying at ``ts`` (ns); the evening before the path's start holds its first price."""
    return path[np.clip((ts - chain.session_start) // NS, 0, len(path) - 1)]


def _background(
    rng: np.random.Generator, chain: Chain, n: int, path: np.ndarray,
    times: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` normal trades: (ts_event ns, option index, side S1, size contracts).

    ``times`` (ns, shape (n,)) replaces the day's intensity profile and open burst.
    """
    n_e, n_k = len(chain.expirations), len(chain.strikes)
    w_exp = _EXP_DECAY ** np.arange(n_e)
    w_exp[chain.roots.index(chain.future_symbol)] *= _QUARTERLY_BOOST
    if times is None:
        ts = _event_times(rng, 0, n, n, chain.session_start, _intensity_cdf())
        # the regular-hours open: a burst of OPEN_BURST_SHARE of the day's trades in its first window
        burst = rng.random(n) < OPEN_BURST_SHARE
        ts = np.where(burst, chain.session_start + RTH_OPEN_S * NS
                      + rng.integers(0, WINDOW_S * NS, n), ts)
    else:
        ts = np.asarray(times, dtype=np.int64)
    spot = _spot(chain, path, ts)
    e = rng.choice(n_e, size=n, p=w_exp / w_exp.sum())
    width = _WIDTH_PTS * (1.0 + _WIDTH_GROWTH * e)
    k = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _CHUNK):  # strike ~ Gaussian density at each listed strike
        sl = slice(lo, lo + _CHUNK)
        z = (chain.strikes[None, :] - spot[sl, None]) / width[sl, None]
        cum = np.cumsum(np.exp(-0.5 * z * z), axis=1)
        u = rng.random(len(z)) * cum[:, -1]
        k[sl] = np.minimum((cum < u[:, None]).sum(axis=1), n_k - 1)
    otm_put = chain.strikes[k] < spot
    is_put = np.where(otm_put, rng.random(n) < 0.72, rng.random(n) < 0.28)
    side = rng.choice(np.array([b"B", b"A", b"N"]), size=n, p=[0.47, 0.47, 0.06])
    size = np.minimum(1 + np.floor(rng.lognormal(0.0, 1.0, n)), 49).astype(np.int64)
    return ts, (e * n_k + k) * 2 + is_put, side, size


def _evening(rng: np.random.Generator, chain: Chain, path: np.ndarray, n_day: int, open_ns: int,
             after_break: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trades of the session's evening, 17:00-19:00 CT (null flow, not labelled).

    A CME Globex session opens at 17:00 CT the evening before its trading date; the open
    draws a burst, larger after a weekend or holiday (the Sunday-evening open prices two days
    of news). :data:`EVENING_SHARE` of the day's trades spread over the evening, plus
    :data:`SUNDAY_OPEN_SHARE` (after a break) or :data:`EVENING_OPEN_SHARE` in its first
    5 minutes; background strikes, sides and lot sizes. Returns the :func:`_background` tuple.
    """
    burst = round((SUNDAY_OPEN_SHARE if after_break else EVENING_OPEN_SHARE) * n_day)
    spread = round(EVENING_SHARE * n_day)
    times = np.sort(np.concatenate([
        open_ns + rng.integers(0, WINDOW_S * NS, burst),
        rng.integers(open_ns, chain.session_start, spread)]))
    return _background(rng, chain, len(times), path, times=times)


def _expiry_surge(rng: np.random.Generator, chain: Chain, path: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided ATM trades of the expiring weekly in its last 2 hours (null flow, not labelled).

    Expiry-day (0DTE) at-the-money options trade heavily on both sides as gamma is hedged
    and positions are closed: strikes within two grid steps of the current underlying,
    B/A 50/50, background lot sizes. Returns the :func:`_background` tuple.
    """
    n_k = len(chain.strikes)
    lo = chain.session_start + (CLOSE_S - 7200) * NS
    ts = np.sort(rng.integers(lo, chain.session_start + CLOSE_S * NS - 1_000_000, n))
    spot = _spot(chain, path, ts)
    k = np.clip(np.abs(chain.strikes[None, :] - spot[:, None]).argmin(axis=1)
                + rng.integers(-2, 3, n), 0, n_k - 1)
    opt = (ZERO_DTE_EXPIRY * n_k + k) * 2 + rng.integers(0, 2, n)
    side = rng.choice(np.array([b"B", b"A"]), size=n)
    size = np.minimum(1 + np.floor(rng.lognormal(0.0, 1.0, n)), 49).astype(np.int64)
    return ts, opt.astype(np.int64), side, size


def _records(
    rng: np.random.Generator,
    chain: Chain,
    path: np.ndarray,
    ts: np.ndarray,
    opt: np.ndarray,
    side: np.ndarray,
    size: np.ndarray,
) -> np.ndarray:
    """Price trades (sorted by ``ts``) as tbbo ``MBP1Msg`` records with the BBO before the trade.

    Premium: Black-Scholes of :mod:`samples.generator` on the current underlying, spread
    1-4 ticks; B prints at the ask, A at the bid, N inside (often the mid).
    """
    m, n_k = len(ts), len(chain.strikes)
    e, k, is_put = opt // (2 * n_k), (opt // 2) % n_k, opt % 2 == 1
    spot = _spot(chain, path, ts)
    years = (chain.expirations[e].astype(np.int64) - ts) / NS_PER_YEAR
    theo = _option_theo(spot, chain.strikes[k], years, is_put) / TICK_PTS  # ticks
    spread = 1 + rng.binomial(3, np.clip(theo / 4000.0, 0.05, 0.85))
    bid = np.maximum(1, np.round(theo - spread / 2.0)).astype(np.int64)
    ask = bid + spread
    inside = bid + np.floor(rng.random(m) * (spread + 1)).astype(np.int64)
    n_px = np.where((spread % 2 == 0) & (rng.random(m) < 0.6), bid + spread // 2, inside)
    rec = np.zeros(m, dtype=_MBP1_DTYPE)
    rec["rtype"] = int(dbn.RType.MBP_1)
    rec["instrument_id"] = chain.ids[opt]
    rec["price"] = np.where(side == b"B", ask, np.where(side == b"A", bid, n_px)) * TICK
    rec["size"], rec["action"], rec["side"] = size, b"T", side
    _stamp(rng, rec, ts, {"recv": 0, "seq": 1_000_000})
    rec["bid_px_00"], rec["ask_px_00"] = bid * TICK, ask * TICK
    bid_sz, ask_sz = rng.geometric(0.06, m), rng.geometric(0.06, m)
    rec["bid_sz_00"] = np.where(side == b"A", np.maximum(bid_sz, size), bid_sz)
    rec["ask_sz_00"] = np.where(side == b"B", np.maximum(ask_sz, size), ask_sz)
    rec["bid_ct_00"] = np.minimum(rec["bid_sz_00"], rng.geometric(0.3, m))
    rec["ask_ct_00"] = np.minimum(rec["ask_sz_00"], rng.geometric(0.3, m))
    return rec


def _window_volume(
    chain: Chain, ts: np.ndarray, opt: np.ndarray, size: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Volume (contracts) per (option index, RTH window) as a float array ``(n_options, 78)``."""
    w = (ts - chain.session_start) // (WINDOW_S * NS) - FIRST_WINDOW
    keep = (w >= 0) & (w < N_WINDOWS)
    if mask is not None:
        keep &= mask
    n_opt = len(chain.ids)
    flat = opt[keep] * N_WINDOWS + w[keep]
    return np.bincount(flat, weights=size[keep], minlength=n_opt * N_WINDOWS).reshape(n_opt, -1)


# --------------------------------------------------------------------------- injected flow
def _split(rng: np.random.Generator, total: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Return ``n`` random ints in ``[lo, hi]`` summing to ``total`` (needs ``n*lo <= total <= n*hi``)."""
    x = np.full(n, lo, dtype=np.int64)
    while (rem := total - int(x.sum())) > 0:
        x = np.minimum(x + rng.multinomial(rem, rng.dirichlet(np.ones(n))), hi)
    return x


class _Day:
    """Mutable state of one day's injection: prints, labels and used (contract, window) cells."""

    def __init__(
        self,
        rng: np.random.Generator,
        chain: Chain,
        day: dt.date,
        path: np.ndarray,
        baseline: np.ndarray | None,
        bg: tuple[np.ndarray, ...],
        index: int = 0,
        closed_expiries: frozenset[int] = frozenset(),
    ) -> None:
        self.rng, self.chain, self.day, self.path = rng, chain, day, path
        self.index = index
        self.closed_expiries = closed_expiries
        """Expiry indices not trading today (not listed yet, or expired): no prints on them."""
        expiry_of = np.arange(len(chain.ids)) // (2 * len(chain.strikes))
        self.listed = ~np.isin(expiry_of, list(closed_expiries))
        self.spreads: list[tuple[int, int, int]] = []
        """User-defined verticals listed today: (spread id, option index bought, sold)."""
        self.spread_prints: list[tuple[int, int, bytes, int]] = []
        """Their prints: (ts_event ns, spread id, aggressor, contracts)."""
        n_opt = len(chain.ids)
        self.has_history = baseline is not None
        self.base = np.zeros((n_opt, N_WINDOWS)) if baseline is None else baseline
        self.used = np.zeros((n_opt, N_WINDOWS), dtype=bool)
        self.used[:, 0] = True  # the 08:30 CT open window stays null: its burst is a test condition
        ts, opt, side, size = bg
        self.bg_b = _window_volume(chain, ts, opt, size, side == b"B")
        self.bg_a = _window_volume(chain, ts, opt, size, side == b"A")
        self.activity = (self.bg_b + self.bg_a).sum(axis=1)
        self.ts: list[int] = []
        self.opt: list[int] = []
        self.side: list[bytes] = []
        self.size: list[int] = []
        self.labels: list[dict] = []

    @property
    def n_k(self) -> int:
        return len(self.chain.strikes)

    def window_start(self, w: int) -> int:
        """Start of RTH window ``w`` in ns since the epoch."""
        return self.chain.session_start + (RTH_OPEN_S + w * WINDOW_S) * NS

    def pick(self, mask: np.ndarray, weights: np.ndarray | None = None) -> tuple[int, ...] | None:
        """Pick the index of a True cell of ``mask``, uniformly or with ``weights`` (None if none)."""
        if mask.ndim == 2 and mask.shape[0] == len(self.listed):
            mask = mask & self.listed[:, None]
        cells = np.flatnonzero(mask)
        if len(cells) == 0:
            return None
        w = None if weights is None else weights.ravel()[cells]
        if w is None or not np.any(w > 0):
            i = int(self.rng.integers(len(cells)))
        else:
            i = int(self.rng.choice(len(cells), p=w / w.sum()))
        return tuple(int(j) for j in np.unravel_index(cells[i], mask.shape))

    def add(
        self,
        ts: np.ndarray,
        opt: int | np.ndarray,
        side: bytes | np.ndarray,
        size: np.ndarray,
    ) -> None:
        """Queue injected prints (ns timestamps, option index, side, contracts)."""
        n = len(size)
        self.ts += np.asarray(ts, dtype=np.int64).tolist()
        self.opt += np.broadcast_to(np.asarray(opt, dtype=np.int64), (n,)).tolist()
        self.side += np.broadcast_to(np.asarray(side, dtype="S1"), (n,)).tolist()
        self.size += np.asarray(size, dtype=np.int64).tolist()

    def label(
        self,
        opt: int,
        w: int,
        label: str,
        kind: str,
        *,
        volume: int,
        trades: int,
        direction: str | None = None,
        strength: str | None = None,
    ) -> None:
        """Append the ``labels.jsonl`` row of option ``opt`` in RTH window ``w``; mark the cell used."""
        self.used[opt, w] = True
        start = dt.datetime.fromtimestamp(self.window_start(w) // NS, dt.UTC)
        self.labels.append(
            {
                "day": self.day.isoformat(),
                "window_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "instrument_id": int(self.chain.ids[opt]),
                "symbol": self.chain.symbols[opt],
                "label": label,
                "kind": kind,
                "direction": direction,
                "strength": strength,
                "volume": int(volume),
                "trades": int(trades),
                "baseline_volume": round(float(self.base[opt, w]), 2) if self.has_history else None,
            }
        )

    # ---------------------------------------------------------------- institutional
    def _direction(self) -> tuple[str, bytes]:
        return ("BUY", b"B") if self.rng.random() < 0.5 else ("SELL", b"A")

    def _strong_cell(self, w: int, volume: float, min_base: float) -> int | None:
        """Option with ``min_base <= baseline <= volume / STRONG_RATIO`` in window ``w``.

        Picked with probability proportional to the baseline (institutions favour liquid
        contracts); without such an option any option under the ratio cap is used.
        """
        col, free = self.base[:, w], ~self.used[:, w]
        low = col * STRONG_RATIO <= volume
        for mask in (low & (col >= min_base) & free, low & free):
            cell = self.pick(mask, col)
            if cell is not None:
                return cell[0]
        return None

    def _weak_cell(self, min_volume: int, max_volume: int) -> tuple[tuple | None, np.ndarray]:
        """Pick a free (contract, window) whose weak-event volume (3-4x baseline) fits the bounds."""
        vol = np.round(self.base * self.rng.uniform(*WEAK_RATIO))
        return self.pick((vol >= min_volume) & (vol <= max_volume) & ~self.used), vol

    def block(self, weak: bool) -> None:
        """Inject a block (1-5 prints of 50-500 within ~4 s, one side) and label it."""
        rng = self.rng
        direction, side = self._direction()
        cell, vol = self._weak_cell(50, 2500) if weak else (None, np.zeros((0, 0)))
        if cell is not None:
            o, w = cell
            total = int(vol[o, w])
            n = int(rng.integers(-(-total // 500), min(5, total // 50) + 1))
            sizes = _split(rng, total, n, 50, 500)
        else:
            weak = False
            n = int(rng.integers(1, 6))
            sizes = (np.clip(rng.lognormal(np.log(150.0), 0.6, n), 50, 500) / 5).round().astype(np.int64) * 5
            w = int(rng.integers(N_WINDOWS))
            o = self._strong_cell(w, sizes.sum(), 0.5)
            if o is None:
                return
        t0 = self.window_start(w) + int(rng.integers(2 * NS, 280 * NS))
        ts = t0 + np.cumsum(rng.integers(0, 800_000_000, n))
        self.add(ts, o, side, sizes)
        self.label(
            o,
            w,
            INSTITUTIONAL,
            "block",
            volume=sizes.sum(),
            trades=n,
            direction=direction,
            strength="weak" if weak else "strong",
        )

    def sweep(self, weak: bool) -> None:
        """Inject a sweep over 3-8 adjacent strikes within 2 s and label every strike."""
        rng = self.rng
        direction, side = self._direction()
        n_e, n_k = len(self.chain.expirations), self.n_k
        base4 = self.base.reshape(n_e, n_k, 2, N_WINDOWS)
        free4 = ~self.used.reshape(n_e, n_k, 2, N_WINDOWS)

        def runs(ok: np.ndarray, length: int, base: np.ndarray | None = None) -> tuple[int, ...] | None:
            """Start of ``length`` adjacent True strikes (axis 1), weighted by the run's baseline."""
            cs = np.concatenate([np.zeros_like(ok[:, :1], dtype=np.int64), ok.cumsum(axis=1)], axis=1)
            weights = None
            if base is not None:
                cb = np.concatenate([np.zeros_like(base[:, :1]), base.cumsum(axis=1)], axis=1)
                weights = cb[:, length:] - cb[:, :-length]
            return self.pick(cs[:, length:] - cs[:, :-length] == length, weights)

        length = int(rng.integers(3, 9))
        cell = None
        if weak:
            r = rng.uniform(*WEAK_RATIO)
            vol4 = np.round(base4 * r)
            ok = (vol4 >= 20) & (vol4 <= 150) & free4
            for size_try in range(length, 2, -1):
                cell = runs(ok, size_try)
                if cell is not None:
                    length = size_try
                    break
        if cell is not None:
            e, k0, cp, w = cell
            vols = vol4[e, k0 : k0 + length, cp, w].astype(np.int64)
        else:
            weak = False
            vols = np.clip(np.round(rng.lognormal(np.log(60.0), 0.5, length)), 20, 150).astype(np.int64)
            w = int(rng.integers(N_WINDOWS))
            b, f = base4[..., w], free4[..., w]  # (n_e, n_k, 2)
            for need_activity in (True, False):
                ok = f & (b * STRONG_RATIO <= vols.min()) & ((b >= 0.2) | (not need_activity))
                cell = runs(ok, length, b)
                if cell is not None:
                    break
            if cell is None:
                return
            e, k0, cp = cell
        strikes = range(k0, k0 + length) if rng.random() < 0.5 else range(k0 + length - 1, k0 - 1, -1)
        vol_by_k = dict(zip(range(k0, k0 + length), vols.tolist(), strict=True))
        t0 = self.window_start(w) + int(rng.integers(2 * NS, 296 * NS))
        per = [int(rng.integers(2, 5)) for _ in strikes]
        ts = t0 + np.sort(rng.integers(0, 2 * NS, sum(per)))
        pos = 0
        for k, p in zip(strikes, per, strict=True):
            o = (e * n_k + k) * 2 + cp
            self.add(ts[pos : pos + p], o, side, _split(rng, vol_by_k[k], p, 5, vol_by_k[k]))
            pos += p
            self.label(
                o,
                w,
                INSTITUTIONAL,
                "sweep",
                volume=vol_by_k[k],
                trades=p,
                direction=direction,
                strength="weak" if weak else "strong",
            )

    def accumulation(self, weak: bool) -> None:
        """Inject 15-40 medium prints (>= 85 % of the volume on one side) over a window, label it."""
        rng = self.rng
        direction, side = self._direction()
        cell, vol = self._weak_cell(150, 1440) if weak else (None, np.zeros((0, 0)))
        if cell is not None:
            o, w = cell
            total = int(vol[o, w])
            n = int(np.clip(round(total / 25), max(15, -(-total // 40)), min(36, total // 10)))
            sizes = _split(rng, total, n, 10, 40)
        else:
            weak = False
            n = int(rng.integers(15, 37))
            sizes = rng.integers(10, 41, n)
            total = int(sizes.sum())
            w = int(rng.integers(N_WINDOWS))
            o = self._strong_cell(w, total, 0.5)
            if o is None:
                return
        cap = int(total * 0.15 / 0.85)  # opposite volume keeping the labelled side >= 85 %
        n_min = min(int(rng.integers(0, 5)), cap // 10)
        drawn = int(rng.integers(10, 21, n_min).sum())
        minority = _split(rng, min(cap, drawn), n_min, 10, 20) if n_min else np.zeros(0, np.int64)
        other = b"A" if side == b"B" else b"B"
        sides = np.array([side] * n + [other] * len(minority), dtype="S1")
        all_sizes = np.concatenate([sizes, np.asarray(minority, dtype=np.int64)])
        order = rng.permutation(len(sides))
        ts = self.window_start(w) + np.sort(rng.integers(1 * NS, 299 * NS, len(sides)))
        self.add(ts, o, sides[order], all_sizes[order])
        self.label(
            o,
            w,
            INSTITUTIONAL,
            "accumulation",
            volume=total,
            trades=len(sides),
            direction=direction,
            strength="weak" if weak else "strong",
        )

    # ---------------------------------------------------------------- market makers
    def churn(self) -> None:
        """Inject two-sided market-maker churn (30-120 prints of 1-5 lots) in an active contract."""
        rng = self.rng
        active = np.argsort(-self.activity, kind="stable")[:40]
        for _ in range(50):
            o, w = int(active[rng.integers(len(active))]), int(rng.integers(N_WINDOWS))
            if self.used[o, w]:
                continue
            n = int(rng.integers(30, 121))
            sizes = rng.integers(1, 6, n)
            vol = int(sizes.sum())
            # absorb up to 8 % of the volume of the background imbalance, then balance greedily
            off = float(np.clip(self.bg_b[o, w] - self.bg_a[o, w], -0.08 * vol, 0.08 * vol))
            d, sides = off, []
            for i, s in enumerate(sizes.tolist()):
                buy = rng.random() < 0.5 if i < 0.3 * n or d == 0 else d < 0
                sides.append(b"B" if buy else b"A")
                d += s if buy else -s
            sides_arr = np.array(sides, dtype="S1")
            buy_vol = int(sizes[sides_arr == b"B"].sum())
            if abs(2 * buy_vol - vol) >= 0.15 * vol:
                continue
            dur = int(rng.integers(30, 241))
            start = self.window_start(w) + int(rng.integers(1, 299 - dur)) * NS
            self.add(start + np.sort(rng.integers(0, dur * NS, n)), o, sides_arr, sizes)
            self.label(o, w, MM, "churn", volume=vol, trades=n)
            return

    def spread(self) -> None:
        """Inject a user-defined vertical (UDS) traded 1-4 times; label both legs.

        CME's shape of a spread match (MDP 3.0 Trade Summary): the spread instrument's own
        print carries the aggressor (B or A), and each leg prints on its outright with side
        ``N`` at the same ``ts_event`` for the same quantity (ratio 1:1). The spread's
        definition (instrument class ``T``, legs: buy the lower strike, sell the higher) goes
        into the day's definition file.
        """
        rng = self.rng
        n_k = self.n_k
        for _ in range(50):
            w = int(rng.integers(N_WINDOWS))
            e, cp = int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1])), int(rng.integers(2))
            spot = self.path[(self.window_start(w) - self.chain.session_start) // NS + 150]
            k0 = int(np.abs(self.chain.strikes - spot).argmin()) + int(rng.integers(-3, 4))
            k1 = k0 + int(rng.integers(1, 4))
            if k0 < 0 or k1 >= n_k:
                continue
            o0, o1 = (e * n_k + k0) * 2 + cp, (e * n_k + k1) * 2 + cp
            if self.used[o0, w] or self.used[o1, w] or e in self.closed_expiries:
                continue
            pairs = int(rng.integers(1, 5))
            sizes = rng.integers(1, 11, pairs) * 5
            ts = self.window_start(w) + np.sort(rng.integers(1 * NS, 299 * NS, pairs))
            spread_id = SPREAD_ID_BASE + 100 * self.index + len(self.spreads)
            self.spreads.append((spread_id, o0, o1))
            sides = rng.choice(np.array([b"B", b"A"]), size=pairs)
            self.spread_prints += list(zip(ts.tolist(), [spread_id] * pairs, sides.tolist(),
                                           sizes.tolist(), strict=True))
            for o in (o0, o1):
                self.add(ts, o, b"N", sizes)
                self.label(o, w, MM, "spread", volume=sizes.sum(), trades=pairs)
            return


def _spread_definitions(chain: Chain, spreads: list[tuple[int, int, int]]) -> bytes:
    """DBN v3 definitions of user-defined verticals: one record per leg (Databento layout)."""
    out = []
    for spread_id, o0, o1 in spreads:
        symbol = f"UD:1V: VT {spread_id}"
        exp = int(chain.expirations[o0 // (2 * len(chain.strikes))])
        for index, (o, side) in enumerate(((o0, "B"), (o1, "A"))):
            out.append(bytes(dbn.InstrumentDefMsg(
                publisher_id=PUBLISHER_ID, ts_event=chain.session_start, ts_recv=chain.session_start,
                instrument_id=spread_id, raw_instrument_id=spread_id, raw_symbol=symbol,
                group=chain.products[0], asset=chain.products[0], security_type="OOF",
                cfi="OMXXXX", currency="USD", exchange="XCME",
                instrument_class=dbn.InstrumentClass("T"), underlying=chain.future_symbol,
                expiration=exp, security_update_action=dbn.SecurityUpdateAction("A"),
                display_factor=10**9, min_price_increment=TICK, unit_of_measure="IPNT",
                leg_count=2, leg_index=index, leg_instrument_id=int(chain.ids[o]),
                leg_raw_symbol=chain.symbols[o], leg_side=dbn.Side(side),
                leg_ratio_qty_numerator=1, leg_ratio_qty_denominator=1,
                leg_instrument_class=dbn.InstrumentClass("P" if o % 2 else "C"),
            )))
    return b"".join(out)


def _spread_records(rng: np.random.Generator, prints: list[tuple[int, int, bytes, int]]) -> np.ndarray:
    """Return tbbo records of spread prints (ts, spread id, aggressor, size) at a small premium."""
    m = len(prints)
    rec = np.zeros(m, dtype=_MBP1_DTYPE)
    if m == 0:
        return rec
    prints = sorted(prints)  # ts_recv is stamped non-decreasing: prints in time order
    ts = np.array([p[0] for p in prints], dtype=np.int64)
    side = np.array([p[2] for p in prints], dtype="S1")
    bid = rng.integers(20, 200, m)
    ask = bid + rng.integers(1, 4, m)
    rec["rtype"] = int(dbn.RType.MBP_1)
    rec["instrument_id"] = [p[1] for p in prints]
    rec["price"] = np.where(side == b"B", ask, bid) * TICK
    rec["size"], rec["action"], rec["side"] = [p[3] for p in prints], b"T", side
    _stamp(rng, rec, ts, {"recv": 0, "seq": 1})
    rec["bid_px_00"], rec["ask_px_00"] = bid * TICK, ask * TICK
    rec["bid_sz_00"] = rec["ask_sz_00"] = rec["size"]
    rec["bid_ct_00"] = rec["ask_ct_00"] = 1
    return rec


def generate_labelled_days(
    out_dir: Path,
    *,
    n_days: int = 25,
    first_day: dt.date = DEFAULT_FIRST_DAY,
    seed: int = 21,
    trades_per_day: int = 40_000,
    events_per_day: int = 6,
    mm_bursts_per_day: int = 6,
    first_scored_day: int = 20,
    listed_from_day: int | None = None,
) -> LabelledDays:
    """Write ``n_days`` labelled trading days (definition + tbbo per day) and ``labels.jsonl``.

    Parameters
    ----------
    out_dir : Path
        Destination directory (created if missing); ``labels.jsonl`` is overwritten.
    n_days : int
        Number of trading days (Saturdays and Sundays are skipped).
    first_day : datetime.date
        First calendar date considered (moved to Monday if it is a weekend day).
    seed : int
        Master seed; day ``i`` uses child ``i`` of ``numpy.random.SeedSequence(seed)``, so the
        same arguments give byte-identical files.
    trades_per_day : int
        Mean number of background trades per day (scaled by a U(0.8, 1.2) activity factor).
    events_per_day : int
        Institutional events attempted per scored day (a sweep yields one label per strike).
    mm_bursts_per_day : int
        Market-maker bursts per day (every day), each ``churn`` or ``spread`` with equal odds.
    first_scored_day : int
        Index of the first day with institutional flow; earlier days only build baselines.
    listed_from_day : int, optional
        Index of the day the expiry :data:`LATE_EXPIRY` starts trading (a weekly listed
        mid-history: the baselines must not count the days before as zeros); default
        ``first_scored_day // 2``.

    Returns
    -------
    LabelledDays
        Dates, per-day file paths, ``labels.jsonl`` path and ``first_scored_day``.
    """
    if n_days < 1 or first_scored_day < 0 or trades_per_day < 1:
        msg = "n_days and trades_per_day must be >= 1 and first_scored_day >= 0"
        raise ValueError(msg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    days = trading_days(first_day, n_days)
    chain = fixed_chain(days[-1])
    listing = first_scored_day // 2 if listed_from_day is None else listed_from_day
    n_k = len(chain.strikes)
    late_ids = [int(chain.ids[o]) for o in range(len(chain.ids)) if o // (2 * n_k) == LATE_EXPIRY]
    # a weekly that expires on a scored day (15:00 CT): its 0DTE session, then no more trades
    zero_dte_day = first_scored_day + 2 if first_scored_day + 2 < n_days else None
    zero_dte_ids: list[int] = []
    if zero_dte_day is not None:
        expires = dt.datetime.combine(days[zero_dte_day], dt.time(15, 0), CHICAGO)
        expirations = chain.expirations.copy()
        expirations[ZERO_DTE_EXPIRY] = int(expires.timestamp()) * NS
        chain = dataclasses.replace(chain, expirations=expirations)
        zero_dte_ids = [int(chain.ids[o]) for o in range(len(chain.ids))
                        if o // (2 * n_k) == ZERO_DTE_EXPIRY]
    history: list[np.ndarray] = []
    defs, tbbos, labels = [], [], []
    for index, (day, child) in enumerate(zip(days, np.random.SeedSequence(seed).spawn(n_days), strict=True)):
        rng = np.random.default_rng(child)
        open_price = UNDERLYING_PRICE * float(np.exp(rng.normal(0.0, OPEN_SD)))
        dch = day_chain(chain, day, open_price)
        path = _spot_path(rng, open_price)
        n_bg = round(trades_per_day * rng.uniform(*ACTIVITY))
        bg = _background(rng, dch, n_bg, path)
        closed = frozenset({LATE_EXPIRY} if index < listing else set()) | frozenset(
            {ZERO_DTE_EXPIRY} if zero_dte_day is not None and index > zero_dte_day else set())
        if closed:
            gone = np.isin(bg[1] // (2 * len(dch.strikes)), list(closed))
            bg = (bg[0][~gone], bg[1][~gone], bg[2][~gone], bg[3][~gone])
        # a holiday-shortened session (exchange_calendars CMES early close): nothing after it
        session_day, sessions = (day - dt.date(1970, 1, 1)).days, cme_sessions()
        close_ns = (sessions.open_of(session_day) + sessions.close_second(session_day)) * NS
        if (bg[0] >= close_ns).any():
            early = bg[0] < close_ns
            bg = (bg[0][early], bg[1][early], bg[2][early], bg[3][early])
        if index == zero_dte_day:
            surge = _expiry_surge(rng, dch, path, round(EXPIRY_SURGE_SHARE * n_bg))
            bg = (np.concatenate([bg[0], surge[0]]), np.concatenate([bg[1], surge[1]]),
                  np.concatenate([bg[2], surge[2]]), np.concatenate([bg[3], surge[3]]))
        recent = history[-HISTORY_DAYS:]
        state = _Day(rng, dch, day, path, np.mean(recent, axis=0) if recent else None, bg, index,
                     closed)
        after_close = [w for w in range(N_WINDOWS) if state.window_start(w) + WINDOW_S * NS > close_ns]
        state.used[:, after_close] = True  # no injected flow after an early close
        if index >= first_scored_day:
            for _ in range(events_per_day):
                kind = _KINDS[rng.choice(len(_KINDS), p=_KIND_P)]
                getattr(state, kind)(rng.random() < WEAK_SHARE)
        for _ in range(mm_bursts_per_day):
            if rng.random() < 0.5:
                state.churn()
            else:
                state.spread()
        ts = np.concatenate([bg[0], np.array(state.ts, dtype=np.int64)])
        opt = np.concatenate([bg[1], np.array(state.opt, dtype=np.int64)])
        side = np.concatenate([bg[2], np.array(state.side, dtype="S1")])
        size = np.concatenate([bg[3], np.array(state.size, dtype=np.int64)])
        order = np.argsort(ts, kind="stable")
        ts, opt, side, size = ts[order], opt[order], side[order], size[order]
        history.append(_window_volume(dch, bg[0], bg[1], bg[3]))  # normal flow only
        rec = _records(rng, dch, path, ts, opt, side, size)
        if state.spread_prints:  # spread prints ahead of their legs at equal ts_event
            both = np.concatenate([_spread_records(rng, state.spread_prints), rec])
            rec = both[np.argsort(both["ts_event"], kind="stable")]
            rec["ts_recv"] = np.maximum.accumulate(rec["ts_recv"])  # one feed: in order
            rec["sequence"] = np.maximum.accumulate(rec["sequence"]) + np.arange(len(rec))
        # the session's evening (17:00-19:00 CT), drawn last so the rest of the day is unchanged
        open_s = sessions.open_of(session_day)
        evening = _evening(rng, dch, path, n_bg, open_s * NS,
                           after_break=sessions.open_of(session_day - 1) == open_s)
        if closed:
            keep = ~np.isin(evening[1] // (2 * len(dch.strikes)), list(closed))
            evening = (evening[0][keep], evening[1][keep], evening[2][keep], evening[3][keep])
        both = np.concatenate([_records(rng, dch, path, *evening), rec])
        rec = both[np.argsort(both["ts_event"], kind="stable")]
        rec["ts_recv"] = np.maximum.accumulate(rec["ts_recv"])
        rec["sequence"] = np.maximum.accumulate(rec["sequence"]) + np.arange(len(rec))
        defs.append(write_chain_definitions(out_dir / sample_name(day, "definition"), dch,
                                            _spread_definitions(dch, state.spreads)))
        tbbos.append(
            _write_dbn(
                out_dir / sample_name(day, "tbbo"),
                _metadata(dch, dbn.Schema("tbbo"), [PARENT_SYMBOL], start=open_s * NS), [rec]
            )
        )
        labels += sorted(state.labels, key=lambda r: (r["window_start"], r["instrument_id"]))
    labels_path = out_dir / "labels.jsonl"
    tmp = labels_path.with_name(labels_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in labels), encoding="utf-8")
    tmp.replace(labels_path)
    logger.info("wrote %s (%d labels)", labels_path, len(labels))
    return LabelledDays(
        days=days,
        definition_paths=defs,
        tbbo_paths=tbbos,
        labels_path=labels_path,
        first_scored_day=first_scored_day,
        late_listed_ids=late_ids,
        listed_from_day=listing,
        zero_dte_ids=zero_dte_ids,
        zero_dte_day=-1 if zero_dte_day is None else zero_dte_day,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: write the labelled days, print the paths and label counts."""
    p = argparse.ArgumentParser(prog="python -m samples.labelled", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data/eval"), help="output directory")
    p.add_argument("--days", type=int, default=25, help="number of trading days")
    p.add_argument("--first-day", type=dt.date.fromisoformat, default=DEFAULT_FIRST_DAY, help="YYYY-MM-DD")
    p.add_argument("--seed", type=int, default=21, help="master seed")
    p.add_argument("--trades", type=int, default=40_000, help="background trades per day")
    p.add_argument("--events", type=int, default=6, help="institutional events per scored day")
    p.add_argument("--mm", type=int, default=6, help="market-maker bursts per day")
    p.add_argument("--first-scored-day", type=int, default=20, help="index of the first scored day")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = generate_labelled_days(
        args.out,
        n_days=args.days,
        first_day=args.first_day,
        seed=args.seed,
        trades_per_day=args.trades,
        events_per_day=args.events,
        mm_bursts_per_day=args.mm,
        first_scored_day=args.first_scored_day,
    )
    for day, d_path, t_path in zip(out.days, out.definition_paths, out.tbbo_paths, strict=True):
        print(f"{day}\t{d_path}\t{t_path}")
    rows = [json.loads(line) for line in out.labels_path.read_text(encoding="utf-8").splitlines()]
    print(f"{out.labels_path}\t{len(rows)} labels; scored days from index {out.first_scored_day}")
    counts = Counter((r["label"], r["kind"], r["strength"]) for r in rows)
    for (label, kind, strength), count in sorted(counts.items(), key=lambda kv: str(kv[0])):
        print(f"  {label:<13} {kind:<12} {strength or '-':<6} {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
