"""IFD v3 scoring: one closed (contract, window) → confidence, class and reason.

Factors, each in [0, 1] (weights in :class:`ScoringSettings`, i.e. ``IFD_SCORING_*``):

| factor     | formula                                                        | meaning                                   |
|------------|----------------------------------------------------------------|-------------------------------------------|
| volume     | clip((z − z_low) / (z_high − z_low)), z = robust z vs baseline | abnormal size for this contract and time  |
| dominance  | |ask − bid| / total volume                                     | one-sided flow                            |
| size       | max(clip(log2(avg size / baseline avg size) / log2(size_full)), sweep, block) | large lots     |
| sweep      | 1 when the window holds sweep prints on ≥ ``sweep_min_strikes`` strikes of one | a sweep    |
|            | expiry and type, same side (:mod:`flows.sweeps`), else 0       |                                           |
| block      | 1 when the window holds a block print (one print ≥ the block size), else 0 | a block print |
| sample     | min(1, max(volume, sweep volume) / sample_volume)              | enough contracts to mean anything         |
| mm         | max(balanced-churn score, spread-leg share)                    | market-maker / spread flow (penalty)      |

``confidence = (w_v·volume + w_d·dominance + w_s·size) / (w_v + w_d + w_s)
× sample × (1 − mm_penalty · mm)``.

**Sweeps and blocks.** An institution that needs size fast lifts offers (or
hits bids) on several strikes of one expiry at once. Per strike such a print
can be small; together it is large. The stream marks sweep prints at the trade
level: same-side prints on ≥ ``sweep_min_strikes`` strikes of one expiry and
type inside ``sweep_interval_s`` (default 1 s), ≥ ``sweep_min_volume``
contracts in all (:mod:`flows.sweeps`); a chain-wide move of independent
trades over minutes is not a sweep. In a window, the contracts of one
(underlying, expiration, type) holding sweep volume on the same side form the
cluster: each member gets ``sweep = 1``, the cluster's strikes as its tag, and
its sample factor is judged on the cluster's sweep volume. A block print (one
print ≥ ``block_min_lots``, per product ``block_min_lots_by_product``) sets
the size factor to 1 and tags the signal with its block count.

Classes: ``STRONG`` ≥ ``strong``, ``MODERATE`` ≥ ``moderate``, ``MONITOR`` ≥
``monitor``; below that no signal. A window with no baseline at all (neither its
contract's nor its bucket's) signals only with a sweep or block tag: one-sided
volume alone says nothing without a reference. Direction: BUY when ask volume (offers
lifted) exceeds bid volume, SELL otherwise.

**Market-maker filter.** Liquidity providers trade both sides in small lots
and end flat; their windows are two-sided, balanced and made of many small
trades. The churn score is ``balance × small × many`` with ``balance = 1 −
|ask − bid| / (ask + bid)``, ``small = clip(1 − log2(size ratio) / 3)`` and
``many = trades / (trades + 20)``. Spread volume (``spread_volume``,
:mod:`flows.spreads`: a spread instrument's own trades, and the leg prints a
spread match puts on its outrights, attributed from the spread's aggressor
through the legs in its definition; without leg definitions, same-timestamp
prints on several strikes with both sides present) is spread flow, not
outright direction: its share of the window's volume counts as MM flow, so a
window made only of legs or spread trades scores 0. This is a heuristic of this project, in the spirit of the
informed-vs-liquidity flow split of Easley, O'Hara & Srinivas (1998,
"Option Volume and Stock Prices", J. Finance 53(2)); it is evaluated on
labelled data by ``benchmarks/bench_ifd_eval.py``.

**Moneyness.** Strike distance is measured from the forward. The underlying of
a CME futures option is the future itself, so when the underlying future's
trades are in the input (e.g. ``NQ.FUT`` beside ``NQ.OPT``), its latest window
VWAP is the forward (used for :data:`UNDERLYING_MAX_AGE_S` after its window).
Otherwise the forward is estimated by put-call parity, ``F ≈ K + C − P``
(discounting ignored intraday), from the window's call and put VWAPs at the
same strike and expiry; the median over strikes is kept per (underlying,
expiration).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from flows.baselines import Baseline, BaselineArrays, BaselineBook
from flows.consensus import EvidenceBook, with_consensus
from flows.exchange_time import exchange_clock, locate_one
from flows.pressure import merge_rows
from models.records import (
    FIXED_PRICE_SCALE,
    OPTION_TYPE_CODES,
    UNDEF_PRICE,
    PartBlock,
    PressureMetrics,
)
from models.settings import ScoringSettings
from models.signals import Direction, Sentiment, Signal, SignalClass


@dataclass(frozen=True, slots=True)
class Factors:
    """Factor values of one window (all in [0, 1] except ``volume_z`` and ``size_ratio``)."""

    volume_z: float
    volume: float
    dominance: float
    size_ratio: float
    size: float
    sample: float
    mm: float
    confidence: float
    sweep_strikes: int = 0


class WindowNumbers(NamedTuple):
    """The numbers of one (contract, window) the factors need (contracts, trades)."""

    bid: float
    ask: float
    volume: float
    trades: float
    spread: float

    @classmethod
    def of(cls, m: PressureMetrics) -> WindowNumbers:
        """Take them from final metrics."""
        return cls(m.bid_volume, m.ask_volume, m.total_volume, m.total_trades, m.spread_volume)

    @property
    def avg_size(self) -> float:
        """Contracts per trade (0 without trades)."""
        return self.volume / self.trades if self.trades else 0.0


class FactorArrays(NamedTuple):
    """:class:`Factors` of many windows: float64 arrays of shape (k,), ``sweep_strikes`` int64."""

    volume_z: np.ndarray
    volume: np.ndarray
    dominance: np.ndarray
    size_ratio: np.ndarray
    size: np.ndarray
    sample: np.ndarray
    mm: np.ndarray
    confidence: np.ndarray
    sweep_strikes: np.ndarray

    def at(self, i: int) -> Factors:
        """Return the :class:`Factors` of window ``i``."""
        return Factors(float(self.volume_z[i]), float(self.volume[i]), float(self.dominance[i]),
                       float(self.size_ratio[i]), float(self.size[i]), float(self.sample[i]),
                       float(self.mm[i]), float(self.confidence[i]), int(self.sweep_strikes[i]))


def factor_arrays(bid: np.ndarray, ask: np.ndarray, volume: np.ndarray, trades: np.ndarray,
                  spread: np.ndarray, baselines: BaselineArrays, p: ScoringSettings,
                  sweep_strikes: np.ndarray, sweep_volume: np.ndarray,
                  block_trades: np.ndarray | None = None) -> FactorArrays:
    """Every factor and the confidence of k windows at once (module docstring).

    Parameters
    ----------
    bid, ask, volume, trades, spread : ndarray of float64, shape (k,)
        Window totals (contracts, trades; ``spread`` = spread-leg contracts).
    baselines : BaselineArrays
        Their baselines (entries with ``valid`` false score as "no baseline": z = 0, size 1×).
    sweep_strikes, sweep_volume : ndarray, shape (k,)
        Size of the same-side cluster each window belongs to (0 when none).
    block_trades : ndarray, shape (k,), optional
        Block prints in each window (default none).
    """
    b = baselines
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(b.valid, (volume - b.volume_median) / np.where(b.valid, b.volume_scale, 1.0),
                     0.0)
        avg_size = np.where(trades != 0, volume / trades, 0.0)
        size_ratio = np.where(b.valid & (b.avg_trade_size != 0), avg_size / b.avg_trade_size, 1.0)
        volume_f = np.clip((z - p.z_low) / (p.z_high - p.z_low), 0.0, 1.0)
        dominance = np.where(volume != 0, np.abs(ask - bid) / volume, 0.0)
        log_ratio = np.log2(np.where(size_ratio > 0, size_ratio, 1.0))
        size = np.where(size_ratio > 0, np.clip(log_ratio / math.log2(p.size_full), 0.0, 1.0), 0.0)
        swept = sweep_strikes >= p.sweep_min_strikes
        blocked = np.zeros(len(volume), dtype=bool) if block_trades is None else block_trades > 0
        size = np.where(swept | blocked, 1.0, size)
        sample = np.minimum(1.0, np.maximum(volume, np.where(swept, sweep_volume, 0.0))
                            / p.sample_volume)
        classified = bid + ask
        balance = np.where(classified != 0, 1.0 - np.abs(ask - bid) / classified, 0.0)
        small = np.where(size_ratio > 0, np.clip(1.0 - log_ratio / 3.0, 0.0, 1.0), 1.0)
        many = trades / (trades + 20.0)
        spread_share = np.where(volume != 0, spread / volume, 0.0)
        mm = np.maximum(balance * small * many, np.clip(spread_share, 0.0, 1.0))
    weights = p.w_volume + p.w_dominance + p.w_size
    base = (p.w_volume * volume_f + p.w_dominance * dominance + p.w_size * size) / weights
    conf = np.clip(base * sample * (1.0 - p.mm_penalty * mm), 0.0, 1.0)
    return FactorArrays(z, volume_f, dominance, size_ratio, size, sample, mm, conf,
                        np.where(swept, sweep_strikes, 0).astype(np.int64))


def factors(w: WindowNumbers, baseline: Baseline | None, p: ScoringSettings,
            sweep_strikes: int = 0, sweep_volume: float = 0.0, block_trades: int = 0) -> Factors:
    """Compute every factor and the confidence of one window (:func:`factor_arrays` of one).

    ``sweep_strikes`` / ``sweep_volume``: size of the same-side cluster this
    contract belongs to in the window (0 when none; see module docstring);
    ``block_trades``: block prints in the window.
    """
    one = np.ones(1)
    if baseline is None:
        arrays = BaselineArrays(np.zeros(1, dtype=bool), np.zeros(1, dtype=np.int64), 0 * one, one,
                                0 * one, 0 * one, 0 * one)
    else:
        arrays = BaselineArrays(np.ones(1, dtype=bool), np.array([baseline.days]),
                                baseline.volume_median * one, baseline.volume_scale * one,
                                baseline.avg_trade_size * one, baseline.trades_median * one,
                                baseline.abs_imbalance * one)
    return factor_arrays(w.bid * one, w.ask * one, w.volume * one, w.trades * one, w.spread * one,
                         arrays, p, np.array([sweep_strikes]), sweep_volume * one,
                         np.array([block_trades])).at(0)


def signal_class(confidence: float, p: ScoringSettings) -> SignalClass | None:
    """Class for a confidence, None below the MONITOR threshold."""
    if confidence >= p.strong:
        return SignalClass.STRONG
    if confidence >= p.moderate:
        return SignalClass.MODERATE
    if confidence >= p.monitor:
        return SignalClass.MONITOR
    return None


def reason(m: PressureMetrics, f: Factors, baseline: Baseline | None,
           direction: Direction, bucket_s: int = 1800) -> str:
    """One line a trader can read, e.g. ``ask volume 1,240 … 6.1σ vs 20-day 08:30 CT … median``.

    The time of day is the start of the baseline's bucket (``bucket_s`` long, counted from the
    session's 17:00 CT open) on the exchange clock, America/Chicago.
    """
    side = "ask" if direction is Direction.BUY else "bid"
    vol = m.ask_volume if direction is Direction.BUY else m.bid_volume
    start_s = int(m.window_start.timestamp())
    tod = exchange_clock(start_s - locate_one(start_s)[1] % bucket_s)
    if baseline is None:
        ref = "no baseline yet"
        size = f"avg size {m.avg_trade_size:,.1f}"
    else:
        ref = (f"{f.volume_z:.1f}σ vs {baseline.days}-day {tod} {baseline.scope} median "
               f"{baseline.volume_median:,.0f}")
        size = f"avg size {m.avg_trade_size:,.1f} vs {baseline.avg_trade_size:,.1f}"
    sweep = f"; sweep across {f.sweep_strikes} strikes" if f.sweep_strikes else ""
    if m.block_trades:
        sweep += f"; {m.block_trades} block print{'s' if m.block_trades > 1 else ''}"
    share = vol / m.total_volume if m.total_volume else 0.0
    sentiment = Sentiment.of(m.option_type, direction)
    what = {"C": "calls", "P": "puts", "F": "futures"}.get(m.option_type, "contracts")
    verb = "bought" if direction is Direction.BUY else "sold"
    view = f"; {sentiment.value} ({verb} {what})" if sentiment is not Sentiment.NEUTRAL else ""
    premium = f"; premium ${m.premium_usd:,.0f}" if m.premium_usd else ""
    return (f"{side} volume {vol:,} of {m.total_volume:,} ({share:.0%} on the {side}, "
            f"net imbalance {f.dominance:.0%}), {ref}; {size}{sweep}{premium}{view}; "
            f"MM score {f.mm:.2f}")


def forward_estimates(
    underlying: list[str], expiration: list[int], strike: list[float], option_type: list[str],
    vwap: list[float],
) -> dict[tuple[str, int], float]:
    """Put-call parity forward per (underlying, expiration) from one window's VWAPs.

    Parameters are per contract (equal-length lists; strike and VWAP in USD
    index points, expiration ns with -1 = none, VWAP NaN when no volume).

    Returns
    -------
    dict
        (underlying, expiration ns) → median over strikes of K + C − P, only
        where a call and a put of the same strike traded (:func:`chain_forwards`).
    """
    chains: dict[tuple[str, int], int] = {}
    chain = np.array([chains.setdefault((u, e), len(chains))
                      for u, e in zip(underlying, expiration, strict=True)], dtype=np.int64)
    names = list(chains)
    kind = np.array([OPTION_TYPE_CODES.get(t, -1) for t in option_type], dtype=np.int8)
    codes, forwards = chain_forwards(chain, np.asarray(expiration, dtype=np.int64),
                                     np.asarray(strike, dtype=float), kind,
                                     np.asarray(vwap, dtype=float))
    return {names[c]: f for c, f in zip(codes.tolist(), forwards.tolist(), strict=True)}



def chain_forwards(chain: np.ndarray, expiration: np.ndarray, strike: np.ndarray,
                   option_type: np.ndarray, vwap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put-call parity forwards of one window, vectorised.

    Parameters
    ----------
    chain : int64[k]
        Code of each contract's (underlying, expiration).
    expiration : int64[k]
        ns since epoch UTC, −1 = none (such contracts are skipped).
    strike, vwap : float64[k]
        USD index points; NaN = none / no volume (skipped).
    option_type : int8[k]
        :data:`OPTION_TYPE_CODES` (−1 skipped).

    Returns
    -------
    (int64[m], float64[m])
        Chains with at least one strike where a call and a put traded, and
        the median over those strikes of K + C − P. Where two contracts have
        the same chain, strike and type, the later one in the input counts.
    """
    ok = (option_type >= 0) & (expiration >= 0) & ~np.isnan(strike) & ~np.isnan(vwap)
    pos = np.flatnonzero(ok)
    if len(pos) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    ch, k, t = chain[pos], strike[pos], option_type[pos]
    order = np.lexsort((pos, t, k, ch))
    ch, k, t, v = ch[order], k[order], t[order], vwap[pos][order]
    same_next = (ch[1:] == ch[:-1]) & (k[1:] == k[:-1])
    last = np.ones(len(ch), dtype=bool)  # last of each (chain, strike, type) run wins
    last[:-1] = ~(same_next & (t[1:] == t[:-1]))
    ch, k, t, v = ch[last], k[last], t[last], v[last]
    pair = np.flatnonzero((ch[1:] == ch[:-1]) & (k[1:] == k[:-1]) & (t[:-1] == 0) & (t[1:] == 1))
    if len(pair) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    chains = ch[pair]
    parity = k[pair] + v[pair] - v[pair + 1]
    order = np.lexsort((parity, chains))
    chains, parity = chains[order], parity[order]
    starts = np.flatnonzero(np.r_[True, chains[1:] != chains[:-1]])
    counts = np.diff(np.r_[starts, len(chains)])
    median = (parity[starts + (counts - 1) // 2] + parity[starts + counts // 2]) / 2.0
    return chains[starts], median


DTE_EDGES_DAYS = (1.0, 2.0, 7.0, 30.0)
"""Days-to-expiry classes of the strike-distance buckets: < 1 day (0DTE, the expiry session),
1-2, 2-7, 7-30 and ≥ 30 days, so expiry-day ATM volume is compared with expiry days."""
DTE_LABELS = ("0d", "1d", "2-6d", "7-29d", "30d+")


def dte_class(expiration_ns: np.ndarray, at_ns: int | np.ndarray) -> np.ndarray:
    """Index into :data:`DTE_LABELS` of each expiration (int64 ns UTC) seen at ``at_ns``.

    ``at_ns``: ns UTC, one time or one per expiration.
    """
    days = (np.asarray(expiration_ns, dtype=np.int64) - at_ns) / 86_400e9
    return np.searchsorted(np.asarray(DTE_EDGES_DAYS), days, side="right").astype(np.int64)


def bucket_key(underlying: str, option_type: str, strike: float, forward: float | None,
               step_pct: float, dte: int = 0) -> str | None:
    """Bucket key ``underlying|type|±n|dte``: n steps of ``step_pct`` % of F, DTE class label.

    ``dte`` indexes :data:`DTE_LABELS` (:func:`dte_class`).
    """
    if forward is None or forward <= 0 or option_type not in ("C", "P") or math.isnan(strike):
        return None
    steps = round((strike - forward) / forward * 100.0 / step_pct)
    return f"{underlying}|{option_type}|{steps:+d}|{DTE_LABELS[dte]}"


class ContractAttributes:
    """Static attributes of contracts by baseline-book code, for vectorised scoring.

    Arrays indexed by :meth:`BaselineBook.codes` code (bucket keys share the code space and are
    never registered): ``chain`` int64 (code of (underlying, expiration ns); −1 = not
    registered), ``expiration`` int64 (ns UTC, −1 none), ``strike`` float64 (USD index points,
    NaN none), ``option_type`` int8 (:data:`OPTION_TYPE_CODES`, −1 other) and ``underlying``
    int64 (code into ``underlyings``). A contract key fixes all of them, so a code is registered
    once, from the first window it trades in (Python per new contract, numpy per window after).
    :meth:`snapshot` shares the arrays copy-on-write.
    """

    def __init__(self) -> None:
        self.chain = np.full(0, -1, dtype=np.int64)
        self.expiration = np.zeros(0, dtype=np.int64)
        self.strike = np.zeros(0)
        self.option_type = np.zeros(0, dtype=np.int8)
        self.underlying = np.zeros(0, dtype=np.int64)
        self.chains: list[tuple[str, int]] = []
        self.underlyings: list[str] = []
        self._chain_codes: dict[tuple[str, int], int] = {}
        self._underlying_codes: dict[str, int] = {}
        self._shared = False

    def ensure(self, codes: np.ndarray, cols: dict[str, np.ndarray], rows: np.ndarray) -> None:
        """Register the codes not yet known, from block columns ``cols`` at ``rows``.

        ``codes`` (int64[k]) and ``rows`` (int64[k], row of each code in ``cols``, a
        :class:`PartBlock`'s columns) are aligned.
        """
        if len(codes) == 0:
            return
        size = int(codes.max()) + 1
        if size > len(self.chain):
            self._grow(max(size, 2 * len(self.chain), 64))
        missing = np.flatnonzero(self.chain[codes] < 0)
        if len(missing) == 0:
            return
        if self._shared:
            self._grow(len(self.chain))
        new_codes, at = codes[missing], rows[missing]
        underlying = cols["underlying"][at].astype(str)
        expiration = cols["expiration_ns"][at].astype(np.int64)
        strike = cols["strike_price"][at].astype(np.int64)
        # Python per new chain and underlying (a handful per window), numpy per contract
        names, name_of = np.unique(underlying, return_inverse=True)
        name_of = name_of.reshape(-1)
        expirations, expiration_of = np.unique(expiration, return_inverse=True)
        pairs, pair_of = np.unique(name_of * len(expirations) + expiration_of.reshape(-1),
                                   return_inverse=True)
        chain_of = np.array([self._code(self._chain_codes, self.chains,
                                        (str(names[x // len(expirations)]),
                                         int(expirations[x % len(expirations)])))
                             for x in pairs.tolist()], dtype=np.int64)
        underlying_of = np.array([self._code(self._underlying_codes, self.underlyings, str(u))
                                  for u in names.tolist()], dtype=np.int64)
        self.chain[new_codes] = chain_of[pair_of.reshape(-1)]
        self.expiration[new_codes] = expiration
        self.strike[new_codes] = np.where(strike == UNDEF_PRICE, np.nan, strike / FIXED_PRICE_SCALE)
        kind = cols["option_type"][at]
        self.option_type[new_codes] = np.select(
            [kind == name for name in OPTION_TYPE_CODES], list(OPTION_TYPE_CODES.values()), -1)
        self.underlying[new_codes] = underlying_of[name_of]

    @staticmethod
    def _code(codes: dict, names: list, name: Any) -> int:
        """Code of ``name`` in ``codes``/``names``, registered when new."""
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(names)
            names.append(name)
        return code

    def _grow(self, size: int) -> None:
        """Copy every array into new ones of ``size`` entries (also ends sharing)."""
        n = len(self.chain)
        for name, fill in (("chain", -1), ("expiration", -1), ("strike", np.nan),
                           ("option_type", -1), ("underlying", -1)):
            old = getattr(self, name)
            new = np.full(size, fill, dtype=old.dtype)
            new[:n] = old
            setattr(self, name, new)
        self._shared = False

    def snapshot(self) -> ContractAttributes:
        """Copy-on-write copy (shares the arrays; lists and dicts copied)."""
        clone = ContractAttributes.__new__(ContractAttributes)
        clone.__dict__.update(self.__dict__)
        clone.chains, clone.underlyings = list(self.chains), list(self.underlyings)
        clone._chain_codes = dict(self._chain_codes)
        clone._underlying_codes = dict(self._underlying_codes)
        clone._shared = self._shared = True
        return clone


CLASS_RANK: dict[SignalClass | None, int] = {
    None: 0, SignalClass.MONITOR: 1, SignalClass.MODERATE: 2, SignalClass.STRONG: 3}
"""Order of signal classes: a correction re-alerts only when the class rises."""

UNDERLYING_MAX_AGE_S = 1_800
"""How long (s of event time after its window) a future's window VWAP stays the forward of its
options; older, the put-call-parity forward is used."""


@dataclass
class ScorerState:
    """Recoverable scoring state (one for the whole flow).

    Attributes
    ----------
    book : BaselineBook
    forwards : dict
        (underlying, expiration ns) → latest put-call-parity forward.
    recent : dict[int, list[PartBlock]]
        Window start (s) → the parts scored for it, for the windows within the
        correction horizon: a late part re-scores its window on the combined
        numbers.
    emitted : dict[tuple[str, int], int]
        (contract key, window start s) → rank of the class emitted
        (:data:`CLASS_RANK`), same horizon.
    """

    book: BaselineBook
    forwards: dict[tuple[str, int], float]
    recent: dict[int, list[PartBlock]] = field(default_factory=dict)
    emitted: dict[tuple[str, int], int] = field(default_factory=dict)
    attrs: ContractAttributes = field(default_factory=ContractAttributes)
    """Contract attributes by book code (a cache: rebuilt from the windows when missing)."""
    l3: EvidenceBook = field(default_factory=EvidenceBook)
    """Iceberg and absorption volume per contract-window, for the ``l3`` scorer
    (:mod:`flows.consensus`)."""
    underlying_prices: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Future symbol (e.g. ``NQZ6``) → (latest window VWAP in USD price points, its window start
    s): the forward of that future's options when its trades are in the input."""

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled state (older ones get empty ``attrs`` / ``underlying_prices``)."""
        state.setdefault("attrs", ContractAttributes())
        state.setdefault("underlying_prices", {})
        state.setdefault("l3", EvidenceBook())
        self.__dict__.update(state)

    def forward(self, chain: int, start_s: int) -> float | None:
        """Forward (USD price points) of chain code ``chain`` for the window starting ``start_s``.

        The underlying future's window VWAP when it traded within :data:`UNDERLYING_MAX_AGE_S`
        before the window, else the chain's put-call-parity forward; None when neither is known.
        """
        if chain < 0:
            return None
        name = self.attrs.chains[chain]
        price = self.underlying_prices.get(name[0])
        if price is not None and 0 <= start_s - price[1] <= UNDERLYING_MAX_AGE_S:
            return price[0]
        return self.forwards.get(name)

    def snapshot(self) -> ScorerState:
        """Copy the state so later scoring leaves the copy alone, in time independent of history.

        The book is copied on write (:meth:`BaselineBook.snapshot`); the recent windows' part
        blocks are immutable and shared; the small dicts are copied.
        """
        return ScorerState(book=self.book.snapshot(), forwards=dict(self.forwards),
                           recent={w: list(parts) for w, parts in self.recent.items()},
                           emitted=dict(self.emitted), attrs=self.attrs.snapshot(),
                           underlying_prices=dict(self.underlying_prices),
                           l3=copy.deepcopy(self.l3))

    def __deepcopy__(self, memo: dict) -> ScorerState:
        """Copy as :meth:`snapshot` does (bytewax and tests deep-copy state)."""
        clone = self.snapshot()
        memo[id(self)] = clone
        return clone


class Scorer:
    """Score closed windows against online baselines; emit :class:`Signal` s.

    Parameters
    ----------
    params : ScoringSettings
    new_book : callable
        Builds an empty :class:`BaselineBook` (lookback, min days, buckets).
    history : BaselineBook | None
        Baselines preloaded from ClickHouse history; copied into each new
        shard state.
    correction_horizon_s : int
        How far (event time, behind the newest scored window) a late part
        still re-scores its window. Older corrections only update the
        baseline's volume and trades (their imbalance is added as is).

    Notes
    -----
    Only defined instruments are scored: rows with ``defined`` false
    (``ID|…``/``SYM|…`` keys, no definition) are stored by the sink but never
    scored, alerted or added to baselines.
    """

    def __init__(self, params: ScoringSettings, new_book: Callable[[], BaselineBook],
                 history: BaselineBook | None = None, *, correction_horizon_s: int = 3_600) -> None:
        self.params = params
        self.new_book = new_book
        self.history = history
        self.correction_horizon_s = correction_horizon_s
        self._bucket_names: dict[tuple[str, str, int, int], str] = {}

    def new_state(self) -> ScorerState:
        """Fresh shard state (a deep copy of the preloaded history, if any)."""
        book = self.history.snapshot() if self.history is not None else self.new_book()
        return ScorerState(book=book, forwards={}, l3=EvidenceBook(window_s=book.window_s))

    def score(self, state: ScorerState, block: PartBlock, *, correction: bool = False) -> list[Signal]:
        """Every signal of :meth:`score_split`, built at once (same signals, same order)."""
        signals, deferred = self.score_split(state, block, correction=correction)
        return signals if deferred is None else signals + deferred.signals()

    def score_split(self, state: ScorerState, block: PartBlock, *, correction: bool = False,
                    urgent_rank: int | None = None) -> tuple[list[Signal], DeferredSignals | None]:
        """Score one closed window's contracts (or a late correction), then update the baselines.

        Parameters
        ----------
        state : ScorerState
            Baselines, forwards and recent windows; updated in place.
        block : PartBlock
            Every part of one closed window of one shard (``window_start_ns``
            set), or with ``correction`` the late parts of a window already
            scored.
        correction : bool
            The block adds to a window scored before: the window is re-scored
            on its combined numbers, the baseline gets the difference, and a
            signal is emitted only if its class rises above what was emitted.
        urgent_rank : int | None
            :data:`CLASS_RANK` of the lowest class built at once (the alerted class, so the
            alert path does not wait for the other signal objects); the window's other
            signals come back unbuilt. ``None``: every signal is built at once.

        Returns
        -------
        tuple[list[Signal], DeferredSignals | None]
            Windows at or above the MONITOR threshold (for a correction: only
            those whose class rose): the urgent ones as signals, the rest as a
            :class:`DeferredSignals` (None when there is none). Scoring and
            the state's updates are complete either way; only the objects wait.

        Notes
        -----
        Totals are computed columnar; a contract only becomes a
        :class:`PressureMetrics` when its volume can reach MONITOR
        (confidence ≤ sample factor = volume / ``sample_volume``).
        """
        if not correction:
            return self.score_run(state, [block], urgent_rank=urgent_rank)[0]
        defined = block.cols["defined"]
        if not defined.all():
            block = block.take(defined)
        if len(block) == 0:
            return [], None
        start_s = block.window_start_ns // 1_000_000_000 if block.window_start_ns else 0
        earlier = state.recent.get(start_s)
        if earlier is None:  # beyond the horizon: baseline only
            self._add_to_book(state, block, start_s)
            return [], None
        prior = _totals(PartBlock.concat(earlier), set(block.cols["contract_key"].tolist()))
        scored = PartBlock.concat([*earlier, block])
        [(signals, deferred)] = self._evaluate(state, [scored], [start_s], only=prior,
                                               update_forwards=False, urgent_rank=urgent_rank)
        state.recent.setdefault(start_s, []).append(block)
        self._evict(state, start_s)
        return signals, deferred

    def _add_to_book(self, state: ScorerState, block: PartBlock, start_s: int) -> None:
        for key, (volume, trades, imbalance) in _totals(block, None).items():
            state.book.add(key, start_s, volume, trades, imbalance)

    def _evict(self, state: ScorerState, start_s: int) -> None:
        newest = max(state.recent)
        cutoff = newest - self.correction_horizon_s
        if min(state.recent) < cutoff:
            for old in [w for w in state.recent if w < cutoff]:
                del state.recent[old]
            state.emitted = {k: v for k, v in state.emitted.items() if k[1] >= cutoff}

    def score_run(self, state: ScorerState, blocks: list[PartBlock], *,
                  urgent_rank: int | None = None,
                  ) -> list[tuple[list[Signal], DeferredSignals | None]]:
        """Score first-time windows (time order), as :meth:`score_split` would one by one.

        One vectorised pass per CME trading day.

        A replay closes a whole batch's windows at once (~290 per shard at 5 min); one call per
        window paid ~0.3 ms of numpy call overhead each, more than the windows' own work.
        Windows of one trading day are independent where it matters: their baselines read
        prior days only (:meth:`BaselineBook.baselines`), so their adds go in after all of them
        are scored; forwards, which do carry from window to window, are applied window by
        window in Python (a few chains each).

        Returns
        -------
        list
            Per block, in order, the ``(signals, deferred)`` of :meth:`score_split`.
        """
        out: list[tuple[list[Signal], DeferredSignals | None]] = []
        run: list[tuple[PartBlock, int]] = []
        run_day = None
        for block in blocks:
            start_s = block.window_start_ns // 1_000_000_000 if block.window_start_ns else 0
            day = locate_one(start_s)[0]
            if run and day != run_day:
                out.extend(self._score_fresh(state, run, urgent_rank))
                run = []
            run.append((block, start_s))
            run_day = day
        if run:
            out.extend(self._score_fresh(state, run, urgent_rank))
        return out

    def _score_fresh(self, state: ScorerState, run: list[tuple[PartBlock, int]],
                     urgent_rank: int | None) -> list[tuple[list[Signal], DeferredSignals | None]]:
        """Score first-time windows of one trading day (``(block, start s)``, time order)."""
        defined = [b if b.cols["defined"].all() else b.take(b.cols["defined"]) for b, _ in run]
        kept = [(b, start_s) for b, (_, start_s) in zip(defined, run, strict=True) if len(b)]
        results = iter(self._evaluate(state, [b for b, _ in kept], [t for _, t in kept], only=None,
                                      update_forwards=True, urgent_rank=urgent_rank)
                       if kept else [])
        out: list[tuple[list[Signal], DeferredSignals | None]] = []
        for block, start_s in zip(defined, (t for _, t in run), strict=True):
            if len(block) == 0:
                out.append(([], None))
                continue
            out.append(next(results))
            state.recent.setdefault(start_s, []).append(block)
        if kept:
            self._evict(state, max(t for _, t in kept))
        return out

    def _evaluate(self, state: ScorerState, blocks: list[PartBlock], starts: list[int], *,
                  only: dict[str, tuple[int, int, int]] | None, update_forwards: bool,
                  urgent_rank: int | None = None,
                  ) -> list[tuple[list[Signal], DeferredSignals | None]]:
        """Score the contracts of windows ``blocks``: all, or (one window) only those of ``only``.

        ``starts``: each window's start, s; the windows are of one trading day, in time order.

        ``only`` maps a correction's contract keys to the (volume, trades,
        imbalance) already in the baselines, so they receive the difference.
        Numpy for all the windows at once; Python per window for the forwards, per new
        contract, per bucket and per signal. Returns per window ``(signals, deferred)``.
        """
        p = self.params
        book, attrs = state.book, state.attrs
        n_windows = len(blocks)
        block = blocks[0] if n_windows == 1 else PartBlock.concat(blocks)
        c = block.cols
        row_bounds = np.cumsum([0, *(len(b) for b in blocks)])
        # integer codes instead of a string sort: contracts in order of their first code,
        # grouped per (window, contract)
        row_codes = book.codes(c["contract_key"].tolist())
        span = int(row_codes.max()) + 1
        row_window = np.repeat(np.arange(n_windows, dtype=np.int64), np.diff(row_bounds))
        groups, first, inverse = np.unique(row_window * span + row_codes, return_index=True,
                                           return_inverse=True)
        inverse = inverse.reshape(-1)
        codes, window_of = groups % span, groups // span
        bounds = np.searchsorted(window_of, np.arange(n_windows + 1))
        attrs.ensure(codes, c, first)
        k = len(codes)

        def total(name: str) -> np.ndarray:
            return np.bincount(inverse, weights=c[name], minlength=k)

        bid, ask = total("bid_volume"), total("ask_volume")
        volume = bid + ask + total("unknown_volume")
        trades = total("buy_trades") + total("sell_trades") + total("unknown_trades")
        spread = total("spread_volume")
        swept_volume, blocks_traded = total("sweep_volume"), total("block_trades")
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = total("notional") / volume
        chain, strike = attrs.chain[codes], attrs.strike[codes]
        option_type = attrs.option_type[codes]
        # one chain id per (window, chain): groupings that must not mix windows
        n_chains = len(attrs.chains) + 1
        window_chain = window_of * n_chains + chain + 1
        forward = self._window_forwards(state, c, first, bounds, starts, window_chain, n_chains,
                                        attrs.expiration[codes], strike, option_type, vwap,
                                        update_forwards)
        sweep_strikes, sweep_volume = self._sweep_clusters(bid, ask, swept_volume, window_chain,
                                                           option_type)
        start_of = np.asarray(starts, dtype=np.int64)[window_of]
        bucket_codes = self._bucket_codes(state, codes, forward, strike, option_type, start_of)
        has_bucket = bucket_codes >= 0
        scoped = np.ones(k, dtype=bool)
        keys = c["contract_key"][first]
        if only is not None:
            scoped = np.fromiter((key in only for key in keys.tolist()), dtype=bool, count=k)
        # confidence ≤ sample factor: only windows that can reach MONITOR get baselines
        candidates = np.flatnonzero(scoped & (np.maximum(volume, sweep_volume)
                                              >= p.monitor * p.sample_volume))
        numbers = (bid, ask, volume, trades, spread, sweep_strikes, sweep_volume, blocks_traded)
        slots = [book.tod_bucket(t) for t in starts]
        out = self._score_candidates(state, blocks, inverse, row_bounds, bounds, starts, slots,
                                     candidates, keys, codes, bucket_codes, numbers, forward,
                                     urgent_rank)
        imbalance = np.abs(ask - bid).astype(np.int64)
        d_volume, d_trades = volume.astype(np.int64), trades.astype(np.int64)
        squares = volume * volume
        if only is not None:
            before = np.array([only.get(key, (0, 0, 0)) for key in keys.tolist()],
                              dtype=np.int64).reshape(k, 3)
            d_volume, d_trades = d_volume - before[:, 0], d_trades - before[:, 1]
            imbalance = imbalance - before[:, 2]
            squares = squares - before[:, 0].astype(float) ** 2
        # the contracts' and their buckets' rows in one vectorised add per time-of-day bucket
        # (the windows of a run are of one trading day)
        for w, end in _same_slot_runs(slots):
            lo, hi = int(bounds[w]), int(bounds[end])
            own = lo + np.flatnonzero(scoped[lo:hi])
            peer = own[has_bucket[own]]
            to = np.concatenate([own, peer])
            book.add_codes(np.concatenate([codes[own], bucket_codes[peer]]), starts[w],
                           d_volume[to], d_trades[to], imbalance[to], squares[to])
        return out

    def _window_forwards(self, state: ScorerState, c: dict[str, np.ndarray], first: np.ndarray,
                         bounds: np.ndarray, starts: list[int], window_chain: np.ndarray,
                         n_chains: int, expiration: np.ndarray, strike: np.ndarray,
                         option_type: np.ndarray, vwap: np.ndarray,
                         update_forwards: bool) -> np.ndarray:
        """Return each (window, contract) group's forward: USD price points, NaN unknown.

        The forward is the state's once that window's own put-call-parity forwards and future
        prices are in it.

        Parity forwards for every window at once; the state is updated and read window by
        window (Python per window and chain), as scoring one window at a time would.
        """
        names = state.attrs.chains
        if update_forwards:
            keyed, values = chain_forwards(window_chain, expiration, strike, option_type, vwap)
            cuts = np.searchsorted(keyed // n_chains, np.arange(len(starts) + 1))
            chain_names = [names[x] for x in (keyed % n_chains - 1).tolist()]
            found = values.tolist()
            futures = np.flatnonzero((c["option_type"][first] == "F") & (vwap > 0))
            future_cuts = np.searchsorted(futures, bounds)
        pairs, which = np.unique(window_chain, return_inverse=True)
        pair_cuts = np.searchsorted(pairs // n_chains, np.arange(len(starts) + 1))
        pair_chain = (pairs % n_chains - 1).tolist()
        pair_forward = np.empty(len(pairs))
        for w, start_s in enumerate(starts):
            if update_forwards:
                lo, hi = int(cuts[w]), int(cuts[w + 1])
                state.forwards.update(zip(chain_names[lo:hi], found[lo:hi], strict=True))
                for j in futures[future_cuts[w]:future_cuts[w + 1]].tolist():
                    # the underlying of futures options is the future
                    state.underlying_prices[str(c["symbol"][first[j]])] = (float(vwap[j]), start_s)
            for x in range(int(pair_cuts[w]), int(pair_cuts[w + 1])):
                f = state.forward(pair_chain[x], start_s)
                pair_forward[x] = np.nan if f is None else f
        return pair_forward[which.reshape(-1)]

    def _bucket_codes(self, state: ScorerState, codes: np.ndarray, forward: np.ndarray,
                      strike: np.ndarray, option_type: np.ndarray, start_s: np.ndarray) -> np.ndarray:
        """Book code of each contract's strike-distance bucket (int64[k], −1 without one).

        Same keys as :func:`bucket_key`: ``forward`` (float64[k], NaN unknown) and ``start_s``
        (int64[k], each row's window start) per row; steps for all rows at once, Python per
        bucket.
        """
        k = len(codes)
        out = np.full(k, -1, dtype=np.int64)
        if k == 0:
            return out
        attrs = state.attrs
        with np.errstate(invalid="ignore", divide="ignore"):
            steps = np.round((strike - forward) / forward * 100.0 / self.params.moneyness_step_pct)
        ok = np.flatnonzero((forward > 0) & ~np.isnan(strike) & ~np.isnan(steps)
                            & (option_type >= 0))
        if len(ok) == 0:
            return out
        step = np.clip(steps[ok], -(1 << 38), 1 << 38).astype(np.int64)  # fits the packed id
        underlying = attrs.underlying[codes[ok]]
        dte = dte_class(attrs.expiration[codes[ok]], start_s[ok] * 1_000_000_000)
        ident = ((underlying * 2 + option_type[ok]) * 8 + dte) * (1 << 40) + step + (1 << 39)
        buckets, at = np.unique(ident, return_inverse=True)
        names = self._bucket_names
        keys = []
        for x in buckets.tolist():
            head = x >> 40
            four = (attrs.underlyings[head >> 4], "CP"[(head >> 3) & 1],
                    (x & ((1 << 40) - 1)) - (1 << 39), head & 7)
            name = names.get(four)
            if name is None:
                name = names[four] = f"{four[0]}|{four[1]}|{four[2]:+d}|{DTE_LABELS[four[3]]}"
            keys.append(name)
        out[ok] = state.book.codes(keys)[at.reshape(-1)]
        return out

    def _score_candidates(self, state: ScorerState, blocks: list[PartBlock], inverse: np.ndarray,
                          row_bounds: np.ndarray, bounds: np.ndarray, starts: list[int],
                          slots: list[int], idx: np.ndarray, keys: np.ndarray, codes: np.ndarray,
                          bucket_codes: np.ndarray, numbers: tuple, forward: np.ndarray,
                          urgent_rank: int | None,
                          ) -> list[tuple[list[Signal], DeferredSignals | None]]:
        """Baselines and factors of a run's candidate groups ``idx`` at once; Python per signal.

        Groups are (window, contract) of :meth:`_evaluate` (``bounds``: each window's first
        group; ``row_bounds``: its first row). Baselines are looked up once per time-of-day
        bucket (``slots``: each window's), which is all they depend on within a trading day.
        ``forward`` (float64[k], NaN unknown): each group's forward. Returns per window
        ``(signals, deferred)``.
        """
        p = self.params
        book = state.book
        n_windows = len(blocks)
        out: list[tuple[list[Signal], DeferredSignals | None]] = [([], None)
                                                                   for _ in range(n_windows)]
        if len(idx) == 0:
            return out
        bid, ask, volume, trades, spread, sweep_strikes, sweep_volume, blocks_traded = (
            x[idx] for x in numbers)
        cut = np.searchsorted(idx, bounds)
        per_slot: list[BaselineArrays] = []
        scopes: list[str] = []
        for w, end in _same_slot_runs(slots):
            mine = idx[cut[w]:cut[end]]
            if len(mine):
                contract = book.baselines(codes[mine], starts[w])
                chosen, found = self._choose_baselines(book, contract, bucket_codes[mine],
                                                       starts[w])
                per_slot.append(chosen)
                scopes += found
        chosen = (per_slot[0] if len(per_slot) == 1
                  else BaselineArrays(*(np.concatenate(x) for x in zip(*per_slot, strict=True))))
        f = factor_arrays(bid, ask, volume, trades, spread, chosen, p, sweep_strikes, sweep_volume,
                          blocks_traded)
        conf = f.confidence
        # without any baseline, one-sided volume alone means nothing: only a tape tag counts
        tagged = (sweep_strikes >= p.sweep_min_strikes) | (blocks_traded > 0)
        hits = np.flatnonzero((conf >= p.monitor) & (ask != bid) & (chosen.valid | tagged))
        hit_cut = np.searchsorted(hits, cut)
        for w in range(n_windows):
            if hit_cut[w] == hit_cut[w + 1]:
                continue
            a, b, lo, start_s = int(cut[w]), int(cut[w + 1]), int(bounds[w]), starts[w]
            now, later = _SignalPlan(), _SignalPlan()
            for j in hits[hit_cut[w]:hit_cut[w + 1]].tolist():
                cls = signal_class(float(conf[j]), p)
                if cls is None:
                    continue
                i = int(idx[j])
                key = str(keys[i])
                if CLASS_RANK[cls] <= state.emitted.get((key, start_s), 0):
                    continue
                plan = now if urgent_rank is None or CLASS_RANK[cls] >= urgent_rank else later
                plan.add(i - lo, j - a, key, cls,
                         Direction.BUY if ask[j] > bid[j] else Direction.SELL,
                         None if math.isnan(forward[i]) else float(forward[i]))
                state.emitted[(key, start_s)] = CLASS_RANK[cls]
            if not now.rows and not later.rows:
                continue
            window = (blocks[w], inverse[int(row_bounds[w]):int(row_bounds[w + 1])] - lo,
                      FactorArrays(*(x[a:b] for x in f)), BaselineArrays(*(x[a:b] for x in chosen)),
                      scopes[a:b], book.tod_bucket_s, start_s)
            out[w] = (DeferredSignals(*window, now).signals() if now.rows else [],
                      DeferredSignals(*window, later) if later.rows else None)
        return out

    def _choose_baselines(self, book: BaselineBook, contract: BaselineArrays,
                          bucket_codes: np.ndarray, start_s: int) -> tuple[BaselineArrays, list[str]]:
        """Each candidate's baseline: its contract's, shrunk toward its bucket's, or the bucket's.

        A contract with fewer than ``lookback_days`` listed days is blended with its
        strike-distance bucket (per contract-window that traded) with weight
        ``n / (n + shrink_days)`` on its own history (``n`` its listed days): median,
        trades, lot size and imbalance linearly, σ through the variances. Without a
        contract baseline the bucket's is used alone; without either, none (scope ``none``).
        Returns the arrays and each candidate's scope: ``contract``, ``contract+bucket``,
        ``bucket`` or ``none``.
        """
        p = self.params
        k = len(bucket_codes)
        scopes = ["contract" if v else "none" for v in contract.valid.tolist()]
        has = np.flatnonzero(bucket_codes >= 0)
        if len(has) == 0:
            return contract, scopes
        peer = book.baselines(bucket_codes[has], start_s, per="trading")
        ok = has[peer.valid]
        if len(ok) == 0:
            return contract, scopes
        at = np.full(k, -1, dtype=np.int64)
        at[has] = np.arange(len(has))
        src = at[ok]
        own = contract.days[ok].astype(float)
        weight = np.where(contract.valid[ok], own / (own + p.shrink_days), 0.0)
        weight = np.where(contract.valid[ok] & (contract.days[ok] >= book.lookback_days), 1.0, weight)
        out = [np.array(x, dtype=float, copy=True) for x in contract[2:]]
        for arr, theirs in zip(out, peer[2:], strict=True):
            arr[ok] = weight * arr[ok] + (1.0 - weight) * theirs[src]
        scale = out[1]  # volume_scale: blend variances, not σ
        scale[ok] = np.sqrt(weight * contract.volume_scale[ok] ** 2
                            + (1.0 - weight) * peer.volume_scale[src] ** 2)
        valid = contract.valid.copy()
        valid[ok] = True
        days = contract.days.copy()
        days[ok] = np.where(contract.valid[ok], contract.days[ok], peer.days[src])
        for j, w in zip(ok.tolist(), weight.tolist(), strict=True):
            scopes[j] = "bucket" if w == 0.0 else "contract" if w == 1.0 else "contract+bucket"
        return BaselineArrays(valid, days, *out), scopes

    def _sweep_clusters(self, bid: np.ndarray, ask: np.ndarray, swept: np.ndarray,
                        chain: np.ndarray, option_type: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per contract (strikes, sweep volume) of its same-side sweep cluster, else 0.

        Members are the contracts with sweep prints (``swept`` contracts > 0) of one
        (underlying, expiration) chain and type, grouped by window side (module docstring).
        """
        p = self.params
        k = len(swept)
        strikes, total = np.zeros(k, dtype=np.int64), np.zeros(k)
        member = np.flatnonzero((swept > 0) & (option_type >= 0))
        if len(member) < max(p.sweep_min_strikes, 1):
            return strikes, total
        group = (chain[member] * 2 + option_type[member]) * 2 + (ask[member] > bid[member])
        _, which, counts = np.unique(group, return_inverse=True, return_counts=True)
        sums = np.bincount(which, weights=swept[member])
        big = counts[which] >= p.sweep_min_strikes
        strikes[member[big]] = counts[which][big]
        total[member[big]] = sums[which][big]
        return strikes, total

    @staticmethod
    def _signal(m: PressureMetrics, f: Factors, baseline: Baseline | None,
                cls: SignalClass, direction: Direction, bucket_s: int,
                forward: float | None = None) -> Signal:
        side_volume = m.ask_volume if direction is Direction.BUY else m.bid_volume
        moneyness = (None if forward is None or forward <= 0 or m.strike is None
                     else round((m.strike - forward) / forward * 100.0, 4))
        return Signal(
            window_start=m.window_start, window_end=m.window_end, contract_key=m.contract_key,
            instrument_id=m.instrument_id, symbol=m.symbol, underlying=m.underlying,
            expiration=m.expiration, strike=m.strike, option_type=m.option_type,
            direction=direction, signal_class=cls, confidence=round(f.confidence, 6),
            bid_volume=m.bid_volume, ask_volume=m.ask_volume, total_volume=m.total_volume,
            total_trades=m.total_trades, avg_trade_size=m.avg_trade_size,
            volume_z=f.volume_z, dominance=f.dominance, size_ratio=f.size_ratio,
            sample_factor=f.sample, mm_score=f.mm,
            baseline_scope=baseline.scope if baseline else "none",
            baseline_windows=baseline.days if baseline else 0,
            baseline_volume=baseline.volume_median if baseline else 0.0,
            baseline_avg_size=baseline.avg_trade_size if baseline else 0.0,
            sweep_strikes=f.sweep_strikes,
            block_trades=m.block_trades,
            sentiment=Sentiment.of(m.option_type, direction),
            dominant_share=side_volume / m.total_volume if m.total_volume else 0.0,
            premium_usd=m.premium_usd,
            days_to_expiry=m.days_to_expiry,
            moneyness_pct=moneyness,
            reason=reason(m, f, baseline, direction, bucket_s),
        )


def _same_slot_runs(slots: list[int]) -> list[tuple[int, int]]:
    """``(first, end)`` index ranges of consecutive equal ``slots`` (windows of one tod bucket)."""
    runs, w = [], 0
    while w < len(slots):
        end = w + 1
        while end < len(slots) and slots[end] == slots[w]:
            end += 1
        runs.append((w, end))
        w = end
    return runs


def _totals(block: PartBlock, keys: set[str] | None) -> dict[str, tuple[int, int, int]]:
    """Contract key → (volume, trades, |ask − bid|) of ``block`` (optionally only ``keys``)."""
    c = block.cols
    out: dict[str, list[int]] = {}
    for i, key in enumerate(c["contract_key"].tolist()):
        if keys is not None and key not in keys:
            continue
        row = out.setdefault(key, [0, 0, 0, 0])
        row[0] += int(c["bid_volume"][i] + c["ask_volume"][i] + c["unknown_volume"][i])
        row[1] += int(c["buy_trades"][i] + c["sell_trades"][i] + c["unknown_trades"][i])
        row[2] += int(c["ask_volume"][i])
        row[3] += int(c["bid_volume"][i])
    return {k: (v[0], v[1], abs(v[2] - v[3])) for k, v in out.items()}


@dataclass
class _SignalPlan:
    """Signals decided but not built yet.

    Per signal: its contract group in the window, its candidate position, contract key, class,
    direction and forward (USD price points; None when unknown).
    """

    rows: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    classes: list[SignalClass] = field(default_factory=list)
    directions: list[Direction] = field(default_factory=list)
    forwards: list[float | None] = field(default_factory=list)

    def add(self, row: int, position: int, key: str, cls: SignalClass, direction: Direction,
            forward: float | None) -> None:
        self.rows.append(row)
        self.positions.append(position)
        self.keys.append(key)
        self.classes.append(cls)
        self.directions.append(direction)
        self.forwards.append(forward)


@dataclass
class DeferredSignals:
    """Signals of one window that are scored and classed, their objects not built yet.

    Everything a signal depends on was decided and taken from the scoring state when the window
    was scored (class, direction, forward, baseline arrays, and with :meth:`with_scorers` the L3
    evidence), so :meth:`signals` returns the same signals whenever it runs. The scoring step
    builds its urgent signals (the alerted class) at once and hands the rest on in this form:
    the alert path does not wait for them, the sinks build them (once: the result is cached).
    It pickles (it crosses bytewax workers like any item).

    Attributes
    ----------
    block : PartBlock
        The window's parts (for a correction: the earlier parts and the late ones).
    inverse : numpy.ndarray
        int64[len(block)], each row's contract group (:func:`flows.pressure.merge_rows`).
    factors, baselines : FactorArrays, BaselineArrays
        Per candidate contract of the window (shape (k,)); ``scopes`` is each one's baseline scope.
    bucket_s, window_start_s : int
        Baseline time-of-day bucket length and the window start, s (since epoch UTC).
    plan : _SignalPlan
        Per signal: contract group, candidate position, key, class, direction, forward.
    """

    block: PartBlock
    inverse: np.ndarray
    factors: FactorArrays
    baselines: BaselineArrays
    scopes: list[str]
    bucket_s: int
    window_start_s: int
    plan: _SignalPlan
    scorers: list | None = None
    """(scorer, weight) pairs for the consensus (:func:`flows.consensus.with_consensus`)."""
    evidence: list | None = None
    """Per signal its :class:`~flows.consensus.L3Evidence`, taken when the window was scored."""
    _built: list[Signal] | None = None

    def __len__(self) -> int:
        return len(self.plan.rows)

    @property
    def keys(self) -> list[str]:
        """Contract key of each signal, in :meth:`signals` order."""
        return self.plan.keys

    def with_scorers(self, scorers: list, evidence: list) -> None:
        """Give each signal its consensus when built (``evidence``: one per signal, in order)."""
        self.scorers, self.evidence = scorers, evidence

    def signals(self) -> list[Signal]:
        """Build the signals (the first call; later calls return the same list)."""
        if self._built is None:
            plan, f, chosen = self.plan, self.factors, self.baselines
            metrics = merge_rows(self.block, self.inverse, plan.rows)
            out = []
            for j, cls, direction, forward, m in zip(plan.positions, plan.classes, plan.directions,
                                                     plan.forwards, metrics, strict=True):
                baseline = chosen.at(j, self.scopes[j]) if chosen.valid[j] else None
                out.append(Scorer._signal(m, f.at(j), baseline, cls, direction,  # noqa: SLF001
                                          self.bucket_s, forward))
            if self.scorers:
                assert self.evidence is not None  # set with the scorers
                out = [with_consensus(s, self.scorers, e)
                       for s, e in zip(out, self.evidence, strict=True)]
            self._built = out
        return self._built


def built_signals(items: list[Any]) -> list[Any]:
    """``items`` with each :class:`DeferredSignals` replaced by its signals (built once)."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, DeferredSignals):
            out.extend(item.signals())
        else:
            out.append(item)
    return out
