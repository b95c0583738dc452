"""Deterministic synthetic CME NQ options session written as real DBN v3 files.

Everything is generated with a seeded :func:`numpy.random.default_rng` and
vectorised numpy: records are numpy structured arrays using the exact dtypes
of ``databento_dbn`` (``MBP1Msg``, ``TradeMsg``, ``MBOMsg``) written with
``tobytes()`` after a ``databento_dbn.Metadata`` header, then zstd-compressed
(level 3).  Same seed and arguments give byte-identical files, readable by
``databento.DBNStore.from_file`` and ``databento_dbn.DBNDecoder``.

Conventions: prices inside records are int64 fixed-point with scale 1e-9
(``21500.0`` points -> ``21_500_000_000_000``), sizes are contracts,
timestamps are ns since the UNIX epoch (UTC).

Session files use ``<stem>`` = ``nq-opt-glbx-mdp3-YYYYMMDD`` (the session date); benchmark
files use the stem of the path given and get the definition file written next to them.

================================  ==========  ==================================================
File                              Schema      Content
================================  ==========  ==================================================
``<stem>.definition.dbn.zst``     definition  future NQZ6 (class F) + option chain: 4 weekly
                                              ``QN<w><m><y>``, EOM ``QNE<m><y>``, quarterly
                                              ``NQZ6``; 55 strikes (10/50/100-pt) x C/P each
``<stem>.tbbo.dbn.zst``           tbbo        ``n_trades`` trades (action T, F_LAST) + BBO
                                              before the trade; 00:00-20:00 UTC, U-shaped RTH
                                              13:30-20:00 (~92 %); near-money and front-expiry
                                              heavy; aggressor side B/A/N ~47/47/6 %; optional
                                              sweeps (``sweep_share``)
``<stem>.mbo.dbn.zst``            mbo         :func:`generate_mbo`: actions A/C/M/F/T
                                              ~40/35/15/6/4 % over near-money options
``<stem>.trades.dbn.zst``         trades      :func:`generate_trades`: tbbo model, no BBO
================================  ==========  ==================================================

Sweeps (``sweep_share > 0``)
--------------------------
One aggressor order filling several price levels is printed by CME as several trades of one
match event: they share ``ts_event``, ``ts_recv``, ``ts_in_delta``, ``instrument_id``,
``sequence``, ``side`` (and, in ``tbbo``, the BBO before the event) and differ in ``price``/
``size``.  They are distinct trades, so de-duplication on ``(ts_event, instrument_id,
sequence)`` loses volume.  With ``sweep_share`` = *s*, each aggressor (``B``/``A``) trade event
becomes a sweep with probability *s*: it takes over the next 2-5 records of the block (the
record count stays ``n_trades``), prices step one tick per level away from the touch (``B``:
``ask``, ``ask + 1 tick``, ...; ``A``: ``bid``, ``bid - 1 tick``, ...; ``A`` sweeps never go below
one tick), sizes are the records' own random sizes.  ``SWEEP_DUPLICATE_SHARE`` (1 in 50) of the
sweeps repeat their first print exactly (same price and size: two byte-identical records), so a
de-duplication on record content must count multiplicity.  Sweeps are drawn from a child
generator (``Generator.spawn``) and only rewrite records in place: every record outside a sweep
is byte-identical to the ``sweep_share=0`` session of the same seed, and ``sweep_share=0``
(default) draws nothing extra.

Run ``python -m samples.generator --help`` for the command line interface.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import databento_dbn as dbn
import numba as nb
import numpy as np
import zstandard

from flows.exchange_time import cme_sessions

logger = logging.getLogger("samples.generator")

DATASET = "GLBX.MDP3"
PARENT_SYMBOL = "NQ.OPT"
PUBLISHER_ID = 1  # GLBX.MDP3.GLBX
PRICE_SCALE = 1_000_000_000  # fixed-point 1e-9
TICK_PTS = 0.05  # option premium tick, index points
TICK = 50_000_000  # TICK_PTS in fixed-point
MULTIPLIER = 20  # USD per index point
FIRST_INSTRUMENT_ID = 42_000_000
DEFAULT_DATE = dt.date(2026, 11, 20)
F_LAST = dbn.F_LAST  # 128
NS = 1_000_000_000
NS_PER_YEAR = 365 * 86_400 * NS
RTH_OPEN_S, CLOSE_S = 13 * 3600 + 1800, 20 * 3600  # seconds after 00:00 UTC
ZSTD_LEVEL = 3
SWEEP_LEVELS = (2, 5)  # inclusive bounds on the prints of one sweep
SWEEP_DUPLICATE_SHARE = 0.02  # sweeps whose first print is repeated byte-identically
_BLOCK = 1 << 20  # records generated per vectorised block
_MONTHS = "FGHJKMNQUVXZ"
_TRADE_DTYPE = np.dtype(dbn.TradeMsg._dtypes)
_MBP1_DTYPE = np.dtype(dbn.MBP1Msg._dtypes)
_MBO_DTYPE = np.dtype(dbn.MBOMsg._dtypes)
_DEF_DTYPE = np.dtype(dbn.InstrumentDefMsg._dtypes)


@dataclass(frozen=True)
class SampleFiles:
    """Paths of the default sample session (definition + tbbo DBN files)."""

    definition_path: Path
    tbbo_path: Path


@dataclass(frozen=True)
class Chain:
    """NQ option chain; prices in index points, timestamps in ns since epoch (UTC).

    ``roots``/``products``/``expirations`` are per expiry (``QN3X6``/``QN3``/uint64 ns);
    ``strikes`` (float64 points) is shared by all expiries; ``ids`` (uint32) and
    ``symbols`` (``NQZ6 C21500``) are per option at index ``(e * len(strikes) + k) * 2 + is_put``.
    """

    session_start: int
    future_id: int
    future_symbol: str
    future_expiration: int
    roots: tuple[str, ...]
    products: tuple[str, ...]
    expirations: np.ndarray
    strikes: np.ndarray
    ids: np.ndarray
    symbols: tuple[str, ...]
    underlying_price: float
    pre_open_s: int = 0
    """Seconds of the session before ``session_start`` (00:00 UTC): 0, or the evening of the
    CME Globex day (``globex_day``: from 17:00 America/Chicago the evening before)."""
    post_close_s: int = 0
    """Seconds of the session after 20:00 UTC: 0, or up to 16:00 America/Chicago
    (``globex_day``)."""

    @property
    def open_ns(self) -> int:
        """First ns of the generated session (definitions are stamped here)."""
        return self.session_start - self.pre_open_s * NS


def _globex_hours(session_date: dt.date) -> tuple[int, int]:
    """Return (pre_open_s, post_close_s) of CME Globex's session labelled ``session_date``.

    The open (17:00 CT the evening before), holidays and early closes come from the project's
    CME calendar (:func:`flows.exchange_time.cme_sessions`, exchange_calendars ``CMES``, whose
    sessions run to the next 17:00 CT roll); the close is 16:00 CT, 23 h after the open, the
    daily hour's break (CME Group, Nasdaq-100 options hours: Sunday-Friday 5:00 p.m. - 4:00 p.m.
    CT), or an earlier early close. That is 2 h before 00:00 UTC and 1 h after 20:00 UTC under
    CDT, 1 h and 2 h under CST.

    Raises
    ------
    ValueError
        ``session_date`` is not a full CME session (a holiday or an early close before 20:00 UTC).
    """
    sessions = cme_sessions()
    day = (session_date - dt.date(1970, 1, 1)).days
    midnight = day * 86_400
    opens = sessions.open_of(day)
    closes = opens + min(sessions.close_second(day), 23 * 3600)
    if not opens < midnight or closes < midnight + CLOSE_S:
        msg = (f"globex_day needs a full CME Globex session on {session_date}; it opens "
               f"{dt.datetime.fromtimestamp(opens, dt.UTC):%Y-%m-%d %H:%M} and closes "
               f"{dt.datetime.fromtimestamp(closes, dt.UTC):%Y-%m-%d %H:%M} UTC")
        raise ValueError(msg)
    return midnight - opens, closes - midnight - CLOSE_S


def _ns(day: dt.date, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), dt.UTC).timestamp()) * NS


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def build_chain(session_date: dt.date = DEFAULT_DATE, underlying_price: float = 21500.0,
                *, full_chain: bool = False, globex_day: bool = False) -> Chain:
    """Build the deterministic NQ option chain listed on ``session_date``.

    ``full_chain``: a whole listed chain instead (soak runs): 12 weekly expiries,
    the end-of-month and the quarterly, every 10-pt strike within 1000 pts (201
    strikes): 14 × 201 × 2 = 5,628 options.

    Expiries: the next four weekly Fridays (``QN<week><month><y>``, including
    ``session_date`` itself when it is a Friday, i.e. 0DTE), the end-of-month
    option ``QNE<month><y>`` and the quarterly ``NQ<month><y>`` options on the
    front quarterly future.  Weekly/EOM expire 20:00 UTC, quarterly 13:30 UTC.
    ``globex_day``: the session is CME Globex's whole 23-h day (:func:`_globex_hours`) instead of
    00:00-20:00 UTC.
    Strikes (index points) are centred on ``underlying_price``: 10-pt within
    150 pts, 50-pt to 500 pts, 100-pt to 1000 pts (55 strikes).
    """
    y, m = session_date.year, session_date.month
    while True:  # front quarterly future with expiry strictly after the session
        if m % 3 == 0 and _third_friday(y, m) > session_date:
            break
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    fut_symbol = f"NQ{_MONTHS[m - 1]}{y % 10}"
    quarterly = _third_friday(y, m)
    exps: list[tuple[int, str, str]] = [(_ns(quarterly, 13, 30), fut_symbol, "NQ")]
    day = session_date + dt.timedelta(days=(4 - session_date.weekday()) % 7)
    while len(exps) < (13 if full_chain else 5):
        if day != quarterly:
            code = f"QN{(day.day - 1) // 7 + 1}"
            exps.append((_ns(day, 20), f"{code}{_MONTHS[day.month - 1]}{day.year % 10}", code))
        day += dt.timedelta(days=7)
    eom, ey, em = session_date, session_date.year, session_date.month
    while True:  # last business day of the month, on/after the session date
        eom = dt.date(ey + em // 12, em % 12 + 1, 1) - dt.timedelta(days=1)
        eom -= dt.timedelta(days=max(0, eom.weekday() - 4))
        if eom >= session_date:
            break
        ey, em = (ey + 1, 1) if em == 12 else (ey, em + 1)
    exps.append((_ns(eom, 20), f"QNE{_MONTHS[eom.month - 1]}{eom.year % 10}", "QNE"))
    exps.sort()
    atm = round(underlying_price / 10.0) * 10.0
    grid = [atm + d for d in range(-1000, 1001, 10)]
    keep = [
        k
        for k in grid
        if full_chain or abs(k - atm) <= 150 or (abs(k - atm) <= 500 and k % 50 == 0)
        or k % 100 == 0
    ]
    strikes = np.array(keep, dtype=np.float64)
    symbols = tuple(f"{root} {cp}{int(k)}" for _, root, _ in exps for k in strikes for cp in "CP")
    ids = np.arange(len(symbols), dtype=np.uint32) + np.uint32(FIRST_INSTRUMENT_ID + 1)
    pre_open_s, post_close_s = _globex_hours(session_date) if globex_day else (0, 0)
    return Chain(
        session_start=_ns(session_date),
        future_id=FIRST_INSTRUMENT_ID,
        future_symbol=fut_symbol,
        future_expiration=_ns(quarterly, 13, 30),
        roots=tuple(e[1] for e in exps),
        products=tuple(e[2] for e in exps),
        expirations=np.array([e[0] for e in exps], dtype=np.uint64),
        strikes=strikes,
        ids=ids,
        symbols=symbols,
        underlying_price=float(underlying_price),
        pre_open_s=pre_open_s,
        post_close_s=post_close_s,
    )


def _definition_bytes(chain: Chain) -> bytes:
    """Encode the future and every option as ``InstrumentDefMsg`` records."""
    n_k = len(chain.strikes)
    rows: list[dict[str, Any]] = [
        dict(
            instrument_id=chain.future_id,
            raw_symbol=chain.future_symbol,
            asset="NQ",
            security_type="FUT",
            cfi="FFIXSX",
            instrument_class=dbn.InstrumentClass.FUTURE,
            underlying="NQ",
            expiration=chain.future_expiration,
            min_price_increment=TICK * 5,
        )
    ]
    for i, (iid, sym) in enumerate(zip(chain.ids.tolist(), chain.symbols, strict=True)):
        e, put = i // (2 * n_k), i % 2 == 1
        rows.append(
            dict(
                instrument_id=iid,
                raw_symbol=sym,
                asset=chain.products[e],
                security_type="OOF",
                cfi="OPAFPS" if put else "OCAFPS",
                underlying=chain.future_symbol,
                instrument_class=dbn.InstrumentClass.PUT if put else dbn.InstrumentClass.CALL,
                underlying_id=chain.future_id,
                strike_price_currency="USD",
                strike_price=round(chain.strikes[(i // 2) % n_k]) * PRICE_SCALE,
                expiration=int(chain.expirations[e]),
                min_price_increment=TICK,
            )
        )
    out = []
    for row in rows:
        exp = dt.datetime.fromtimestamp(row["expiration"] // NS, dt.UTC)
        msg = dbn.InstrumentDefMsg(
            publisher_id=PUBLISHER_ID,
            ts_event=chain.open_ns,
            ts_recv=chain.open_ns,
            raw_instrument_id=row["instrument_id"],
            group=row["asset"],
            currency="USD",
            exchange="XCME",
            security_update_action=dbn.SecurityUpdateAction("A"),
            display_factor=PRICE_SCALE,
            unit_of_measure="IPNT",
            unit_of_measure_qty=MULTIPLIER * PRICE_SCALE,
            min_price_increment_amount=row["min_price_increment"] * MULTIPLIER,
            match_algorithm=dbn.MatchAlgorithm("F"),
            maturity_year=exp.year,
            maturity_month=exp.month,
            maturity_day=exp.day,
            **row,
        )
        out.append(bytes(msg))
    return b"".join(out)


def _metadata(
    chain: Chain, schema: dbn.Schema, symbols: list[str], ids: np.ndarray | None = None,
    start: int | None = None,
) -> bytes:
    """Encode a DBN v3 metadata header with parent -> instrument_id mappings.

    ``start`` (ns since epoch UTC, default the chain's ``open_ns``) opens the file's range.
    """
    ids = chain.ids if ids is None else ids
    start = chain.open_ns if start is None else start
    day = dt.datetime.fromtimestamp(start // NS, dt.UTC).date()
    end_day = dt.datetime.fromtimestamp(chain.session_start // NS, dt.UTC).date() + dt.timedelta(days=1)
    index = dict(zip(chain.ids.tolist(), chain.symbols, strict=True))
    index[chain.future_id] = chain.future_symbol
    mappings = [
        SimpleNamespace(
            raw_symbol=index[int(i)],
            intervals=[
                SimpleNamespace(
                    start_date=day, end_date=end_day, symbol=str(int(i))
                )
            ],
        )
        for i in ids
    ]
    return dbn.Metadata(
        dataset=DATASET,
        start=start,
        end=chain.session_start + (CLOSE_S + chain.post_close_s) * NS,
        stype_in=dbn.SType("parent"),
        stype_out=dbn.SType("instrument_id"),
        schema=schema,
        symbols=symbols,
        mappings=mappings,
        version=3,
    ).encode()


def _write_dbn(path: Path, header: bytes, blocks: Iterable[np.ndarray]) -> Path:
    """Write ``header`` + record blocks zstd-compressed (level 3) via an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with (
        tmp.open("wb") as fh,
        zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(fh, closefd=False) as w,
    ):
        w.write(header)
        for block in blocks:
            w.write(block.tobytes())
            count += len(block)
    os.replace(tmp, path)
    logger.debug("wrote %s (%d records)", path, count)
    return path


def write_slice(src: Path, dst: Path, ts_recv_lo: int, ts_recv_hi: int, shift_ns: int = 0) -> int:
    """Copy the records of a generated ``tbbo`` file with ``ts_recv_lo <= ts_recv < ts_recv_hi``.

    The metadata header is kept as is (its ``start``/``end`` still describe the session). Times
    are ns since epoch UTC. ``shift_ns`` is added to each kept record's ``ts_event`` and
    ``ts_recv`` (to play a slice of the session at another time of day). Returns the number of
    records written.

    Raises
    ------
    ValueError
        ``src`` is not a zstd DBN v3 ``tbbo`` file of this generator.
    """
    raw = zstandard.ZstdDecompressor().stream_reader(Path(src).read_bytes()).read()
    if raw[:3] != b"DBN" or raw[3] != 3:
        msg = f"{src}: not a DBN v3 file"
        raise ValueError(msg)
    body = 8 + int.from_bytes(raw[4:8], "little")
    if (len(raw) - body) % _MBP1_DTYPE.itemsize:
        msg = f"{src}: records are not {_MBP1_DTYPE.itemsize}-byte tbbo (MBP-1) records"
        raise ValueError(msg)
    rec = np.frombuffer(raw, dtype=_MBP1_DTYPE, offset=body)
    keep = rec[(rec["ts_recv"] >= ts_recv_lo) & (rec["ts_recv"] < ts_recv_hi)].copy()
    if shift_ns:
        for field in ("ts_event", "ts_recv"):
            keep[field] = (keep[field].astype(np.int64) + shift_ns).astype(np.uint64)
    _write_dbn(Path(dst), raw[:body], [keep])
    return len(keep)


def sample_name(session_date: dt.date, schema: str) -> str:
    """File name ``nq-opt-glbx-mdp3-YYYYMMDD.<schema>.dbn.zst``."""
    return f"nq-opt-glbx-mdp3-{session_date:%Y%m%d}.{schema}.dbn.zst"


def write_definitions(
    path: Path, *, session_date: dt.date = DEFAULT_DATE, underlying_price: float = 21500.0,
    full_chain: bool = False, globex_day: bool = False,
) -> Path:
    """Write the chain of :func:`build_chain` as a DBN v3 ``definition`` file; returns ``path``."""
    chain = build_chain(session_date, underlying_price, full_chain=full_chain,
                        globex_day=globex_day)
    header = _metadata(
        chain,
        dbn.Schema("definition"),
        ["NQ.FUT", PARENT_SYMBOL],
        np.concatenate([[chain.future_id], chain.ids]),
    )
    return _write_dbn(path, header, [np.frombuffer(_definition_bytes(chain), dtype=_DEF_DTYPE)])


# --------------------------------------------------------------------------- price model
def _ncdf(x: np.ndarray) -> np.ndarray:
    """Return the standard normal CDF (Abramowitz-Stegun 7.1.26, abs error < 1.5e-7)."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _option_theo(
    spot: np.ndarray, strike: np.ndarray, years: np.ndarray, is_put: np.ndarray
) -> np.ndarray:
    """Black-Scholes (r = 0) premium in index points with a skewed smile."""
    years = np.maximum(years, 2e-6)  # ~1 minute
    atm = 0.18 + 0.04 * np.exp(-years * 365.0 / 7.0)
    sq_atm = atm * np.sqrt(years)
    z = np.clip(np.log(strike / spot) / sq_atm, -6.0, 6.0)
    sq = np.clip(atm * (1.0 - 0.10 * z + 0.02 * z * z), 0.08, 1.5) * np.sqrt(years)
    d1 = (np.log(spot / strike) + 0.5 * sq * sq) / sq
    call = spot * _ncdf(d1) - strike * _ncdf(d1 - sq)
    price = np.where(is_put, call - spot + strike, call)  # put-call parity
    return np.maximum(price, np.maximum(np.where(is_put, strike - spot, spot - strike), 0.0))


def _underlying_path(rng: np.random.Generator, price: float, pre_s: int = 0,
                     post_s: int = 0) -> np.ndarray:
    """Per-second underlying (index points): 20 % vol in RTH, 7 % outside.

    From ``pre_s`` before 00:00 UTC (element ``pre_s`` is 00:00) to ``post_s`` after 20:00 UTC.
    """
    sec = np.arange(-pre_s, CLOSE_S + post_s)
    sigma = np.where((sec >= RTH_OPEN_S) & (sec < CLOSE_S), 1.0, 0.35) * 0.20 / np.sqrt(252 * 23_400)
    steps = rng.standard_normal(len(sec)) * sigma
    steps[0] = 0.0
    return price * np.exp(np.cumsum(steps))


def _intensity_cdf(pre_s: int = 0, post_s: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute activity CDF: flat outside RTH (8 % in all), U-shaped RTH.

    Returns (cdf, ns offsets from 00:00 UTC) over ``pre_s`` before it to ``post_s`` after
    20:00 UTC (whole minutes).
    """
    minutes = np.arange(-(pre_s // 60), (CLOSE_S + post_s) // 60)
    u = (minutes - RTH_OPEN_S // 60 + 0.5) / ((CLOSE_S - RTH_OPEN_S) / 60)
    with np.errstate(over="ignore"):
        rth = 0.55 + 2.0 * (2 * u - 1) ** 4 + 2.5 * np.exp(-u / 0.015) + 1.5 * np.exp(-(1 - u) / 0.02)
    on = (u < 0) | (u > 1)
    w = np.where(on, 0.08 / 0.92 * rth[~on].sum() / on.sum(), rth)
    cdf = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    # stay 1 ms before the close
    return cdf, np.linspace(-(pre_s // 60) * 60 * NS, (CLOSE_S + post_s) * NS - 1_000_000, len(cdf))


def _event_times(
    rng: np.random.Generator, lo: int, m: int, n: int, start: int, cdf: tuple
) -> np.ndarray:
    """Stratified, non-decreasing ns timestamps for records ``lo .. lo+m`` of ``n``."""
    q = (np.arange(lo, lo + m) + rng.random(m)) / n
    return start + np.interp(q, cdf[0], cdf[1]).astype(np.int64)


def _stamp(rng: np.random.Generator, rec: np.ndarray, ts: np.ndarray, state: dict) -> None:
    """Fill header, timestamps, sequence and flags; ``state`` carries over between blocks."""
    m = len(ts)
    rec["length"] = rec.dtype.itemsize // 4
    rec["publisher_id"] = PUBLISHER_ID
    rec["ts_event"] = ts
    recv = np.maximum(ts + rng.integers(2_000, 12_000, m), state["recv"])
    rec["ts_recv"] = np.maximum.accumulate(recv)
    rec["ts_in_delta"] = rng.integers(400, 1_800, m)
    rec["sequence"] = state["seq"] + np.cumsum(rng.integers(1, 4, m))
    rec["flags"] = F_LAST
    state["recv"], state["seq"] = int(rec["ts_recv"][-1]), int(rec["sequence"][-1])


def _check_sweep_share(sweep_share: float) -> None:
    if not 0.0 <= sweep_share <= 1.0:
        msg = f"sweep_share must be within [0, 1], got {sweep_share!r}"
        raise ValueError(msg)


def _sweeps(rng: np.random.Generator, rec: np.ndarray, share: float) -> None:
    """Rewrite ``share`` of the aggressor trade events of one block into sweeps, in place.

    A sweep led by record ``i`` over ``L`` levels (``SWEEP_LEVELS``) overwrites records
    ``i+1 .. i+L-1``: every field but ``price``/``size`` is copied from record ``i``; the price
    of print ``j`` is ``price[i] + j`` ticks (``B``) or ``- j`` ticks (``A``).  A duplicate
    sweep (``SWEEP_DUPLICATE_SHARE``) repeats print 0 as print 1 (same price and size) and
    steps from there.  ``rec`` is ``MBP1Msg`` or ``TradeMsg`` dtype, sorted by time.
    """
    m = len(rec)
    side = rec["side"]
    lo, hi = SWEEP_LEVELS
    draw, levels = rng.random(m), rng.integers(lo, hi + 1, m)
    dup = rng.random(m) < SWEEP_DUPLICATE_SHARE
    room = rec["price"] // TICK  # A sweeps step down: at most price-in-ticks levels
    leaders: list[int] = []
    lengths: list[int] = []
    i = 0
    while i < m:  # sequential: a sweep consumes the records it overwrites
        if side[i] != b"N" and draw[i] < share:
            n_lv = min(int(levels[i]), m - i)
            if side[i] == b"A":
                n_lv = min(n_lv, int(room[i]))
            if n_lv >= lo:
                leaders.append(i)
                lengths.append(n_lv)
                i += n_lv
                continue
        i += 1
    if not leaders:
        return
    lead = np.repeat(np.array(leaders), lengths)
    level = np.arange(len(lead)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = lead + level
    copy = [c for c in rec.dtype.names or () if c not in ("price", "size")]
    for col in copy:
        rec[col][pos] = rec[col][lead]
    is_dup = dup[lead] & (level >= 1)
    step = np.where(rec["side"][lead] == b"B", 1, -1)
    rec["price"][pos] = rec["price"][lead] + step * (level - is_dup) * TICK
    first_dup = pos[is_dup & (level == 1)]
    rec["size"][first_dup] = rec["size"][first_dup - 1]


def _trade_blocks(
    rng: np.random.Generator, chain: Chain, n: int, dtype: np.dtype, *, sweep_share: float = 0.0
) -> Iterator[np.ndarray]:
    """Yield blocks of trades (``MBP1Msg`` or ``TradeMsg`` dtype) from the price model.

    ``sweep_share`` > 0 rewrites aggressor events into sweeps (module docstring) with a child
    generator, so the base records are the same for every ``sweep_share``.
    """
    _check_sweep_share(sweep_share)
    sweep_rng = rng.spawn(1)[0] if sweep_share > 0 else None
    pre, post = chain.pre_open_s, chain.post_close_s
    path, cdf = _underlying_path(rng, chain.underlying_price, pre, post), _intensity_cdf(pre, post)
    n_e, n_k = len(chain.expirations), len(chain.strikes)
    w_exp = 0.62 ** np.arange(n_e)
    w_exp[chain.roots.index(chain.future_symbol)] *= 2.5
    w_exp /= w_exp.sum()
    state = {"recv": 0, "seq": 1_000_000}
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        ts = _event_times(rng, lo, m, n, chain.session_start, cdf)
        spot = path[(ts - chain.session_start) // NS + pre]
        e = rng.choice(n_e, size=m, p=w_exp)
        # after a 20:00 UTC expiry (globex_day's last hour) its flow goes to the next expiry
        # (expirations are sorted; only the earliest can have expired, the last never)
        for _ in range(n_e - 1):
            expired = chain.expirations[e].astype(np.int64) <= ts
            if not expired.any():
                break
            e = np.where(expired, e + 1, e)
        years = (chain.expirations[e].astype(np.int64) - ts) / NS_PER_YEAR
        width = np.maximum(spot * 0.08 * np.sqrt(np.maximum(years, 0.0)), 30.0)
        target = spot + rng.standard_normal(m) * width
        k = np.clip(np.searchsorted(chain.strikes, target), 1, n_k - 1)
        k -= (target - chain.strikes[k - 1]) < (chain.strikes[k] - target)
        is_put = np.where(target < spot, rng.random(m) < 0.72, rng.random(m) < 0.28)
        theo = _option_theo(spot, chain.strikes[k], years, is_put) / TICK_PTS  # in ticks
        side = rng.choice(np.array([b"B", b"A", b"N"]), size=m, p=[0.47, 0.47, 0.06])
        spread = 1 + rng.binomial(3, np.clip(theo / 4000.0, 0.05, 0.85))
        bid = np.maximum(1, np.round(theo - spread / 2.0)).astype(np.int64)
        ask = bid + spread
        inside = bid + np.floor(rng.random(m) * (spread + 1)).astype(np.int64)
        at_mid = (spread % 2 == 0) & (rng.random(m) < 0.6)
        n_px = np.where(at_mid, bid + spread // 2, inside)  # price of N (no aggressor) prints
        size = np.minimum(1 + np.floor(rng.lognormal(0.0, 1.0, m)), 49).astype(np.int64)
        size = np.where(rng.random(m) < 0.0025, rng.integers(10, 101, m) * 5, size)
        rec = np.zeros(m, dtype=dtype)
        rec["rtype"] = int(dbn.RType.MBP_1) if dtype == _MBP1_DTYPE else int(dbn.RType.MBP_0)
        rec["instrument_id"] = chain.ids[(e * n_k + k) * 2 + is_put]
        rec["price"] = np.where(side == b"B", ask, np.where(side == b"A", bid, n_px)) * TICK
        rec["size"], rec["action"], rec["side"] = size, b"T", side
        _stamp(rng, rec, ts, state)
        if dtype == _MBP1_DTYPE:
            rec["bid_px_00"], rec["ask_px_00"] = bid * TICK, ask * TICK
            bid_sz, ask_sz = rng.geometric(0.06, m), rng.geometric(0.06, m)
            rec["bid_sz_00"] = np.where(side == b"A", np.maximum(bid_sz, size), bid_sz)
            rec["ask_sz_00"] = np.where(side == b"B", np.maximum(ask_sz, size), ask_sz)
            rec["bid_ct_00"] = np.minimum(rec["bid_sz_00"], rng.geometric(0.3, m))
            rec["ask_ct_00"] = np.minimum(rec["ask_sz_00"], rng.geometric(0.3, m))
        if sweep_rng is not None:
            _sweeps(sweep_rng, rec, sweep_share)
        yield rec


MBO_BOOK_CAP = 128
"""Most resting orders one instrument's simulated book holds (a CME option book rarely shows
more; the real ESH4 future, the deepest book there is, held 9-11 k). A draw that would add to a
full book cancels one of its orders instead; one that would cancel, modify or fill an order of
an empty book adds one."""
MBO_LIFO_SHARE = 0.6
"""Share of cancels, modifies and fills that act on the instrument's newest resting order (fleeting
quotes); the rest pick a resting order uniformly."""


@nb.njit(cache=True)
def _resolve_orders(inst, act, pick, newest, side_new, bid_px, ask_px, size_new,
                    pool_oid, pool_side, pool_px, pool_size, pool_n, pending, next_oid):  # pragma: no cover
    """Walk one block in record order against the carried resting books; fill the order fields.

    ``act`` (A C M F T = 0..4) is changed in place where the book is full / empty, and where a
    fill's modify is due. ``pending[k]`` is (pool slot, contracts filled) of instrument ``k``'s
    order whose fill still awaits its modify (slot −1: none). Returns (order_id, side byte, price
    ticks, size, next free order id).
    """
    m = len(act)
    oid = np.zeros(m, np.int64)
    side = np.zeros(m, np.uint8)
    px = np.zeros(m, np.int64)
    size = np.zeros(m, np.int64)
    cap = pool_oid.shape[1]
    for i in range(m):
        k, a = inst[i], act[i]
        if a == 4:
            continue
        n = pool_n[k]
        j = n - 1 if newest[i] else min(int(pick[i] * n), n - 1)
        if pending[k, 0] >= 0:  # the fill's book change: the order's remaining size
            j = pending[k, 0]
            pending[k, 0] = -1
            act[i] = 2
            pool_size[k, j] -= pending[k, 1]
            oid[i], side[i], px[i], size[i] = pool_oid[k, j], pool_side[k, j], pool_px[k, j], pool_size[k, j]
            continue
        if a >= 1 and a <= 3 and n == 0:
            a = 0
        if a == 3 and pool_size[k, j] < 2:  # a fill leaves at least one contract resting
            a = 1
        if a == 0 and n == cap:
            a = 1
        act[i] = a
        if a == 0:
            next_oid += 1
            s_ = side_new[i]
            p_ = bid_px[i] if s_ == 66 else ask_px[i]
            pool_oid[k, n], pool_side[k, n], pool_px[k, n], pool_size[k, n] = next_oid, s_, p_, size_new[i]
            pool_n[k] = n + 1
            oid[i], side[i], px[i], size[i] = next_oid, s_, p_, size_new[i]
            continue
        oid[i], side[i] = pool_oid[k, j], pool_side[k, j]
        if a == 1:  # cancel: the whole order leaves the book
            px[i], size[i] = pool_px[k, j], pool_size[k, j]
            for q in range(j, n - 1):
                pool_oid[k, q], pool_side[k, q] = pool_oid[k, q + 1], pool_side[k, q + 1]
                pool_px[k, q], pool_size[k, q] = pool_px[k, q + 1], pool_size[k, q + 1]
            pool_n[k] = n - 1
        elif a == 2:  # modify: new price on its side, size at most the old one
            p_ = bid_px[i] if pool_side[k, j] == 66 else ask_px[i]
            z = min(size_new[i], pool_size[k, j])
            pool_px[k, j], pool_size[k, j] = p_, z
            px[i], size[i] = p_, z
        else:  # fill of part of the order at its price; its modify comes with the next record
            z = min(size_new[i], pool_size[k, j] - 1)
            px[i], size[i] = pool_px[k, j], z
            pending[k, 0], pending[k, 1] = j, z
    return oid, side, px, size, next_oid


def _mbo_blocks(rng: np.random.Generator, chain: Chain, n: int, count: int) -> Iterator[np.ndarray]:
    """Yield blocks of MBO records over the ``count`` options nearest the money and expiry.

    Cancels, modifies and fills act on orders resting in the simulated book of their instrument
    (carried across blocks, at most :data:`MBO_BOOK_CAP` per instrument), with their current
    price, side and size, so the book a consumer rebuilds stays bounded like a real one. A fill
    does not change the book; the instrument's next order record is the modify to the remaining
    size (Databento MBO: "the book is updated by the subsequent C or M"; CME MDP 3.0 sends the
    order update after the fill).
    """
    path, cdf = _underlying_path(rng, chain.underlying_price), _intensity_cdf()
    n_k = len(chain.strikes)
    opt = np.arange(len(chain.ids))
    strike, exp_idx = chain.strikes[(opt // 2) % n_k], opt // (2 * n_k)
    score = np.abs(strike - chain.underlying_price) + 150.0 * exp_idx  # points
    chosen = np.argsort(score, kind="stable")[:count]
    w = 1.0 / (1.0 + 0.1 * np.arange(count))
    state, next_oid = {"recv": 0, "seq": 5_000_000}, 6_410_000_000_000
    pool = (np.zeros((count, MBO_BOOK_CAP), np.int64), np.zeros((count, MBO_BOOK_CAP), np.uint8),
            np.zeros((count, MBO_BOOK_CAP), np.int64), np.zeros((count, MBO_BOOK_CAP), np.int64),
            np.zeros(count, np.int64), np.full((count, 2), -1, np.int64))
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        ts = _event_times(rng, lo, m, n, chain.session_start, cdf)
        inst = rng.choice(count, size=m, p=w / w.sum())
        o = chosen[inst]
        years = (chain.expirations[exp_idx[o]].astype(np.int64) - ts) / NS_PER_YEAR
        theo = _option_theo(path[(ts - chain.session_start) // NS], strike[o], years, o % 2 == 1)
        mid = np.maximum(np.round(theo / TICK_PTS), 3).astype(np.int64)
        act = rng.choice(5, size=m, p=[0.40, 0.35, 0.15, 0.06, 0.04])  # A C M F T
        side_new = np.where(rng.random(m) < 0.5, ord("B"), ord("A")).astype(np.uint8)
        off = rng.geometric(0.25, m)
        size_new = rng.geometric(0.15, m).astype(np.int64)
        oid, side_b, price, size, next_oid = _resolve_orders(
            inst.astype(np.int64), act, rng.random(m), rng.random(m) < MBO_LIFO_SHARE, side_new,
            np.maximum(mid - off, 1), mid + off, size_new, *pool, next_oid)
        side = side_b.view("S1")
        trade = act == 4
        aggressor = rng.choice(np.array([b"B", b"A", b"N"]), m, p=[0.47, 0.47, 0.06])
        side = np.where(trade, aggressor, side)
        price = np.where(trade, mid + (side == b"B") - (side == b"A"), price)
        size = np.where(trade, np.minimum(1 + np.floor(rng.lognormal(0.0, 0.9, m)), 60), size)
        rec = np.zeros(m, dtype=_MBO_DTYPE)
        rec["rtype"] = int(dbn.RType.MBO)
        rec["instrument_id"], rec["order_id"] = chain.ids[o], oid
        rec["price"], rec["size"], rec["side"] = price * TICK, size, side
        rec["action"] = np.frombuffer(b"ACMFT", dtype="S1")[act]
        _stamp(rng, rec, ts, state)
        yield rec


def _definition_path_for(path: Path) -> Path:
    base = path.name.removesuffix(".dbn.zst")
    out = path.with_name(base.rsplit(".", 1)[0] + ".definition.dbn.zst")
    if out == path:
        msg = f"benchmark file name clashes with its definition file: {path}"
        raise ValueError(msg)
    return out


# --------------------------------------------------------------------------- public API
def generate_session(
    out_dir: Path,
    *,
    session_date: dt.date = DEFAULT_DATE,
    seed: int = 7,
    underlying_price: float = 21500.0,
    n_trades: int = 60_000,
    sweep_share: float = 0.0,
    full_chain: bool = False,
    globex_day: bool = False,
) -> SampleFiles:
    """Write the sample NQ options session (definition + tbbo) into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Destination directory (created if missing).
    session_date : datetime.date
        Trading date; trades span 00:00-20:00 UTC of that date (RTH 13:30-20:00).
    seed : int
        Seed of the trade simulation; same seed and arguments -> identical bytes.
    underlying_price : float
        NQZ6 price in index points at 00:00 UTC; strikes are centred on it.
    n_trades : int
        Number of ``tbbo`` records (trades, rtype MBP_1) written, sweep prints included.
    sweep_share : float
        Share in ``[0, 1]`` of the aggressor (``B``/``A``) trade events printed as a sweep of
        2-5 records with equal ``ts_event``/``ts_recv``/``instrument_id``/``sequence`` (see the
        module docstring); 1 in 50 sweeps holds two byte-identical prints.  ``0`` (default)
        gives the same bytes as before sweeps existed.
    full_chain : bool
        Every listed expiry and strike (:func:`build_chain`), ~5,600 options; default the
        660-option sample chain.
    globex_day : bool
        Trades span CME Globex's whole 23-h day, 17:00 America/Chicago the evening before to
        16:00 CT, instead of 00:00-20:00 UTC (the added hours trade at the overnight rate; an
        option expiring at 20:00 UTC trades up to its expiry). Default: the same bytes as before
        the option existed.

    Returns
    -------
    SampleFiles
        ``definition_path`` and ``tbbo_path``.

    Raises
    ------
    ValueError
        ``sweep_share`` outside ``[0, 1]``.
    """
    _check_sweep_share(sweep_share)
    out_dir = Path(out_dir)
    chain = build_chain(session_date, underlying_price, full_chain=full_chain,
                        globex_day=globex_day)
    defs = write_definitions(
        out_dir / sample_name(session_date, "definition"),
        session_date=session_date,
        underlying_price=underlying_price,
        full_chain=full_chain,
        globex_day=globex_day,
    )
    rng = np.random.default_rng(seed)
    tbbo = _write_dbn(
        out_dir / sample_name(session_date, "tbbo"),
        _metadata(chain, dbn.Schema("tbbo"), [PARENT_SYMBOL]),
        _trade_blocks(rng, chain, n_trades, _MBP1_DTYPE, sweep_share=sweep_share),
    )
    return SampleFiles(definition_path=defs, tbbo_path=tbbo)


def generate_trades(
    path: Path,
    *,
    n_records: int,
    seed: int = 13,
    schema: str = "trades",
    session_date: dt.date = DEFAULT_DATE,
    underlying_price: float = 21500.0,
    sweep_share: float = 0.0,
) -> Path:
    """Write a benchmark trades file (same model as :func:`generate_session`).

    Parameters
    ----------
    path : Path
        Output ``.dbn.zst`` path; the chain's definition file is written next to it
        as ``<stem>.definition.dbn.zst`` (``<stem>`` = name without ``.<schema>.dbn.zst``).
    n_records : int
        Number of trades (prices fixed-point 1e-9, sizes in contracts).
    seed : int
        Simulation seed (deterministic output).
    schema : {"trades", "tbbo"}
        ``trades`` writes ``TradeMsg`` (rtype 0); ``tbbo`` writes ``MBP1Msg`` with the BBO.
    session_date, underlying_price, sweep_share
        As in :func:`generate_session`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        ``sweep_share`` outside ``[0, 1]``.
    """
    _check_sweep_share(sweep_share)
    dtype = {"trades": _TRADE_DTYPE, "tbbo": _MBP1_DTYPE}[schema]
    path = Path(path)
    chain = build_chain(session_date, underlying_price)
    write_definitions(
        _definition_path_for(path), session_date=session_date, underlying_price=underlying_price
    )
    header = _metadata(chain, dbn.Schema.from_str(schema), [PARENT_SYMBOL])
    blocks = _trade_blocks(
        np.random.default_rng(seed), chain, n_records, dtype, sweep_share=sweep_share
    )
    return _write_dbn(path, header, blocks)


def generate_mbo(
    path: Path,
    *,
    n_records: int,
    seed: int = 11,
    instrument_count: int = 40,
    session_date: dt.date = DEFAULT_DATE,
    underlying_price: float = 21500.0,
) -> Path:
    """Write a benchmark DBN v3 ``mbo`` file of one session day.

    Actions are drawn A/C/M/F/T 40/35/15/6/4 %: adds get fresh order ids; C/M/F act on an
    order resting in the instrument's simulated book, with its current price, side and size
    (a modify moves it on its side, a fill takes part of it and leaves at least one contract);
    a full book (:data:`MBO_BOOK_CAP` orders) turns an add into a cancel and an empty one a
    C/M/F into an add (a fill of a 1-lot a cancel), so the written mix is ~39/38/15/5/4 % and
    the rebuilt book stays
    bounded. T records have order_id 0 and aggressor side B/A (~6 % N).  Prices (fixed 1e-9) sit on the
    0.05 tick grid around a Black-Scholes mid following the underlying random walk;
    sizes are contracts; ts_event is non-decreasing (ns since epoch UTC).

    Parameters
    ----------
    path : Path
        Output ``.dbn.zst`` path; the chain's definition file is written next to it
        as ``<stem>.definition.dbn.zst``.
    n_records : int
        Number of MBO records.
    seed : int
        Simulation seed (deterministic output).
    instrument_count : int
        Number of options used, the nearest to the money in the nearest expiries.
    session_date, underlying_price
        As in :func:`generate_session`.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    chain = build_chain(session_date, underlying_price)
    count = min(instrument_count, len(chain.ids))
    write_definitions(
        _definition_path_for(path), session_date=session_date, underlying_price=underlying_price
    )
    blocks = _mbo_blocks(np.random.default_rng(seed), chain, n_records, count)
    return _write_dbn(path, _metadata(chain, dbn.Schema("mbo"), [PARENT_SYMBOL]), blocks)


def main(argv: list[str] | None = None, prog: str = "python -m samples.generator") -> int:
    """Run the CLI: write the session (+ optional benchmark files), print paths and counts."""
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", type=Path, default=Path("data/sample"), help="output directory")
    p.add_argument(
        "--date", type=dt.date.fromisoformat, default=DEFAULT_DATE, help="session date YYYY-MM-DD"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the tbbo session")
    p.add_argument("--trades", type=int, default=60_000, help="tbbo trades in the session")
    p.add_argument(
        "--sweep-share",
        type=float,
        default=0.0,
        help="share of aggressor events printed as multi-level sweeps (0-1)",
    )
    p.add_argument(
        "--mbo", type=int, default=0, help="also write an MBO benchmark file with N records"
    )
    p.add_argument(
        "--trades-file",
        type=int,
        default=0,
        help="also write a trades benchmark file with N records",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = generate_session(
        args.out,
        session_date=args.date,
        seed=args.seed,
        n_trades=args.trades,
        sweep_share=args.sweep_share,
    )
    n_defs = len(build_chain(args.date).ids) + 1
    print(f"{files.definition_path}\t{n_defs} definition records")
    print(f"{files.tbbo_path}\t{args.trades} tbbo records")
    if args.mbo:
        path = generate_mbo(
            args.out / sample_name(args.date, "mbo"), n_records=args.mbo, session_date=args.date
        )
        print(f"{path}\t{args.mbo} mbo records")
    if args.trades_file:
        path = generate_trades(
            args.out / sample_name(args.date, "trades"),
            n_records=args.trades_file,
            session_date=args.date,
        )
        print(f"{path}\t{args.trades_file} trades records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
