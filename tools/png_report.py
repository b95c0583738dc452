"""PNG report: strike × time net-pressure heatmaps per expiry with IFD signal markers and ATM line.

For people without Grafana: one picture of an underlying's option flow over a time range::

    python -m tools.png_report                               # last scored day, most-traded underlying
    python -m tools.png_report --start 2026-10-26T14:00Z --end 2026-10-26T16:00Z --underlying NQZ6
    python -m tools.png_report --start 2026-10-22 --end 2026-10-26 --expiry 2026-10-30
    python -m tools.png_report --start 2026-10-26 --session all --expiry all --out flow.png

Reads ``ifd.pressure_metrics`` (and ``ifd.ifd_signals`` when that table exists) through
:func:`sinks.clickhouse.open_store` with the flow's settings (``IFD_CLICKHOUSE_URL``, else embedded
chdb in ``IFD_CHDB_PATH`` / ``<IFD_DATA_DIR>/chdb``: stop the flow first, chdb allows one process per
directory). Prints the PNG's path.

=============================  ==================================================================
figure part                    content
=============================  ==================================================================
one row per expiration         ``--expiry each`` (default): the ``--max-expiries`` (3) with the
                               most volume, in expiry order, titled with the expiry in CT and
                               its days to expiry (0DTE = expires in the drawn trading day);
                               ``--expiry all``: one row, expirations summed; or CT dates
heatmaps, calls | puts         strike (numeric axis, rows centred on their strikes) × window
                               (columns) of net pressure = ask − bid volume in contracts;
                               diverging colour-blind-safe colours centred at 0 (RdBu: blue =
                               offers lifted, red = bids hit), symmetric log scale up to the
                               largest ``|net|``, one scale for the figure; white = no trade
time axis                      exchange time (America/Chicago); ``--session rth`` (default)
                               draws 08:30-15:15 CT only, the days side by side with a line
                               between them; ``--session all`` draws every window
dashed line                    the forward (ATM): the underlying future's window VWAP where its
                               trades are stored, else put-call parity K + C − P, median over
                               the expiry's strikes (the scorer's rule, :mod:`flows.scoring`)
markers                        IFD signals at their window and strike: shape = direction (▲ BUY
                               lifted offers / ▼ SELL hit bids), colour = sentiment (orange
                               bullish: bought calls, sold puts; purple bearish), size = class
                               (STRONG > MODERATE > MONITOR; legend); where markers would
                               overlap only the strongest is drawn, with the count beside it
bars beside each heatmap       net pressure per strike summed over the drawn windows
=============================  ==================================================================

Defaults: the range is the last UTC day that has IFD signals (the last "scored" day), else the last
day with option windows; the underlying is the one with the most option volume in the range; the
PNG goes to ``<IFD_DATA_DIR>/reports/ifd-<date>.png``. Times without a zone are UTC (``--tz ct``:
exchange time); a bare date means that whole day; ``--start`` alone means one day from it.

Exit codes: 0 written; 2 no option windows in the range (or none in regular hours: ``--session
all``), a bad argument or no database; 1 a query failed. The plotting helpers
(:func:`pressure_grid`, :func:`session_columns`, :func:`parity_forwards`, :func:`declutter`,
:func:`render_report`) take numpy arrays and need no database. No bytewax import.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flows.exchange_time import cme_sessions
from flows.scoring import OPTION_TYPE_CODES, chain_forwards
from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import TOOL_LOCK_TIMEOUT_S, ClickHouseStore, open_store
from tools.times import FORMS, parse_when

OPTION_TYPES = (("C", "calls"), ("P", "puts"))
MARKER_SIZE = {"STRONG": 110.0, "MODERATE": 70.0, "MONITOR": 40.0}
"""Marker area (points²) per signal class."""
CLASS_ORDER = {"MONITOR": 1, "MODERATE": 2, "STRONG": 3}
"""Which signal wins a crowded marker cell."""
SENTIMENT_COLOUR = {"BULLISH": "#e66101", "BEARISH": "#5e3c99", "NEUTRAL": "#777777"}
"""Marker fill by what the trade says about the underlying (PuOr ends: colour-blind safe);
the marker *shape* is the aggressor's direction (▲ offers lifted, ▼ bids hit)."""
LIFTED_COLOUR, HIT_COLOUR = "#2166ac", "#b2182b"
"""RdBu ends, the heatmap's own scale: blue = ask side (offers lifted), red = bid side."""
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9._:-]{1,32}$")


class NoDataError(PipelineError):
    """The requested range holds no option windows."""


@dataclass(frozen=True)
class PressureCells:
    """Net pressure per (window, expiration, strike, option type).

    Attributes
    ----------
    window_start_s : numpy.ndarray
        int64, window start in s since the epoch (UTC).
    strike : numpy.ndarray
        float64, strike in price points (USD for NQ).
    option_type : numpy.ndarray
        str, ``"C"`` or ``"P"``.
    net_pressure : numpy.ndarray
        int64, ask − bid volume in contracts.
    window_s : int
        Window length in s (columns of the heatmap).
    expiration_s : numpy.ndarray, optional
        int64, expiration in s since the epoch (UTC); −1 = expirations summed (the default).
    volume : numpy.ndarray, optional
        int64, total volume in contracts (ranks expirations for ``--expiry each``).
    """

    window_start_s: np.ndarray
    strike: np.ndarray
    option_type: np.ndarray
    net_pressure: np.ndarray
    window_s: int
    expiration_s: np.ndarray | None = None
    volume: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.expiration_s is None:
            object.__setattr__(self, "expiration_s", np.full(len(self.window_start_s), -1, np.int64))

    @classmethod
    def from_arrow(cls, table: pa.Table, window_s: int) -> PressureCells:
        """Build from columns window_start_s, strike, option_type, net_pressure [, expiration_s]."""
        expiration = None
        if "expiration_s" in table.column_names:
            expiration = np.asarray(table.column("expiration_s").fill_null(-1).to_numpy(), dtype=np.int64)
        return cls(
            np.asarray(table.column("window_start_s").to_numpy(), dtype=np.int64),
            np.asarray(table.column("strike").to_numpy(zero_copy_only=False), dtype=np.float64),
            np.asarray(table.column("option_type").to_pylist(), dtype=str),
            np.asarray(table.column("net_pressure").to_numpy(), dtype=np.int64),
            int(window_s),
            expiration,
            np.asarray(table.column("volume").to_numpy(), dtype=np.int64)
            if "volume" in table.column_names else None,
        )

    def __len__(self) -> int:
        return len(self.window_start_s)

    def take(self, mask: np.ndarray) -> PressureCells:
        """Rows where ``mask`` (bool[n]) holds."""
        assert self.expiration_s is not None
        return PressureCells(self.window_start_s[mask], self.strike[mask], self.option_type[mask],
                             self.net_pressure[mask], self.window_s, self.expiration_s[mask],
                             None if self.volume is None else self.volume[mask])

    def select(self, option_type: str) -> PressureCells:
        """Rows of one option type."""
        return self.take(self.option_type == option_type)

    def merge_expirations(self) -> PressureCells:
        """Return the cells with every expiration −1 (one figure row for all expirations)."""
        return PressureCells(self.window_start_s, self.strike, self.option_type, self.net_pressure,
                             self.window_s, np.full(len(self), -1, np.int64), self.volume)


@dataclass(frozen=True)
class SignalMarks:
    """IFD signals to mark: window start (int64 s UTC), strike, option type, direction, class."""

    window_start_s: np.ndarray
    strike: np.ndarray
    option_type: np.ndarray
    direction: np.ndarray
    signal_class: np.ndarray
    sentiment: np.ndarray | None = None
    """BULLISH / BEARISH / NEUTRAL per signal (None: derived from direction and option type)."""
    expiration_s: np.ndarray | None = None
    """int64 s UTC per signal, −1 = unknown (the default; drawn on a merged row only)."""
    confidence: np.ndarray | None = None
    """float64 0..1 per signal: breaks ties within a class when markers are merged."""

    def __post_init__(self) -> None:
        if self.expiration_s is None:
            object.__setattr__(self, "expiration_s", np.full(len(self.window_start_s), -1, np.int64))

    @classmethod
    def empty(cls) -> SignalMarks:
        """No signals."""
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, str), np.zeros(0, str), np.zeros(0, str))

    @classmethod
    def from_arrow(cls, table: pa.Table) -> SignalMarks:
        """Build from a table of signals (columns named like the attributes, extras optional)."""
        if table.num_rows == 0:
            return cls.empty()
        names = table.column_names
        return cls(
            np.asarray(table.column("window_start_s").to_numpy(), dtype=np.int64),
            np.asarray(table.column("strike").to_numpy(zero_copy_only=False), dtype=np.float64),
            np.asarray(table.column("option_type").to_pylist(), dtype=str),
            np.asarray(table.column("direction").to_pylist(), dtype=str),
            np.asarray(table.column("signal_class").to_pylist(), dtype=str),
            np.asarray(table.column("sentiment").to_pylist(), dtype=str) if "sentiment" in names else None,
            np.asarray(table.column("expiration_s").fill_null(-1).to_numpy(), dtype=np.int64)
            if "expiration_s" in names else None,
            np.asarray(table.column("confidence").to_numpy(zero_copy_only=False), dtype=np.float64)
            if "confidence" in names else None,
        )

    def take(self, mask: np.ndarray | bool) -> SignalMarks:
        """Signals where ``mask`` (bool[n]) holds."""
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), (len(self),))
        assert self.expiration_s is not None
        return SignalMarks(self.window_start_s[mask], self.strike[mask], self.option_type[mask],
                           self.direction[mask], self.signal_class[mask],
                           None if self.sentiment is None else self.sentiment[mask],
                           self.expiration_s[mask],
                           None if self.confidence is None else self.confidence[mask])

    def sentiments(self) -> np.ndarray:
        """Sentiment of every signal: stored, else bought calls / sold puts BULLISH."""
        if self.sentiment is not None:
            return self.sentiment
        up = (self.direction == "BUY") == (self.option_type == "C")
        return np.where(np.isin(self.option_type, ("C", "P")), np.where(up, "BULLISH", "BEARISH"),
                        "NEUTRAL")

    def __len__(self) -> int:
        return len(self.window_start_s)


def pressure_grid(
    window_start_s: np.ndarray,
    strike: np.ndarray,
    net_pressure: np.ndarray,
    *,
    window_s: int,
    strikes: np.ndarray | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pivot cells into a strike × window grid.

    Parameters
    ----------
    window_start_s, strike, net_pressure : numpy.ndarray
        One entry per cell (int64 s UTC, float64 points, int64 contracts); repeated
        (window, strike) pairs are summed.
    window_s : int
        Window length in s; columns are every window from ``start_s`` to ``end_s``.
    strikes : numpy.ndarray, optional
        Row strikes (ascending); default: the distinct strikes of the cells.
    start_s, end_s : int, optional
        Column range [start_s, end_s) in s; default: first window .. last window + ``window_s``.
        ``start_s`` is moved down to a window boundary.

    Returns
    -------
    time_edges_s : numpy.ndarray
        int64, shape (n + 1,): column edges.
    strikes : numpy.ndarray
        float64, shape (m,): row strikes, ascending.
    grid : numpy.ndarray
        float64, shape (m, n): net pressure; NaN where no cell.
    """
    window_start_s = np.asarray(window_start_s, dtype=np.int64)
    strike = np.asarray(strike, dtype=np.float64)
    net = np.asarray(net_pressure, dtype=np.float64)
    rows = np.unique(strike) if strikes is None else np.asarray(strikes, dtype=np.float64)
    if start_s is None:
        start_s = int(window_start_s.min()) if len(window_start_s) else 0
    start_s -= start_s % window_s
    if end_s is None:
        end_s = int(window_start_s.max()) + window_s if len(window_start_s) else start_s + window_s
    n_cols = max(1, -(-(end_s - start_s) // window_s))
    edges = start_s + window_s * np.arange(n_cols + 1, dtype=np.int64)
    grid = np.full((len(rows), n_cols), np.nan)
    if len(window_start_s):
        col = (window_start_s - start_s) // window_s
        row = np.searchsorted(rows, strike)
        ok = (col >= 0) & (col < n_cols) & (row < len(rows))
        ok[ok] &= rows[row[ok]] == strike[ok]
        flat = row[ok] * n_cols + col[ok]
        sums = np.bincount(flat, weights=net[ok], minlength=grid.size)
        seen = np.bincount(flat, minlength=grid.size) > 0
        grid.reshape(-1)[seen] = sums[seen]
    return edges, rows, grid


def strike_edges(strikes: np.ndarray) -> np.ndarray:
    """Return the row edges of ascending ``strikes`` (float64[m] → float64[m + 1]).

    Midpoints between neighbours; the outer rows as wide as their neighbour gap (1 point for a
    single strike), so rows sit at their strike on a numeric axis.
    """
    k = np.asarray(strikes, dtype=np.float64)
    if len(k) == 1:
        return np.array([k[0] - 0.5, k[0] + 0.5])
    mid = (k[1:] + k[:-1]) / 2
    return np.r_[k[0] - (mid[0] - k[0]), mid, k[-1] + (k[-1] - mid[-1])]


def strike_totals(strike: np.ndarray, net_pressure: np.ndarray,
                  strikes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Net pressure summed per strike.

    Returns
    -------
    strikes : numpy.ndarray
        float64, ascending (``strikes`` if given).
    totals : numpy.ndarray
        int64 contracts per strike (0 where none).
    """
    strike = np.asarray(strike, dtype=np.float64)
    rows = np.unique(strike) if strikes is None else np.asarray(strikes, dtype=np.float64)
    totals = np.zeros(len(rows), dtype=np.int64)
    if len(strike):
        idx = np.searchsorted(rows, strike)
        ok = idx < len(rows)
        ok[ok] &= rows[idx[ok]] == strike[ok]
        np.add.at(totals, idx[ok], np.asarray(net_pressure, dtype=np.int64)[ok])
    return rows, totals


def pressure_norm(net_pressure: np.ndarray) -> mcolors.SymLogNorm:
    """Colour normalisation of net pressure: symmetric about 0, logarithmic beyond the median.

    A linear scale would let one block trade wash out every other cell, so values within the
    median ``|net|`` map linearly and larger ones logarithmically, from −max to +max ``|net|``.
    0 always maps to the colormap's centre.
    """
    magnitude = np.abs(np.asarray(net_pressure, dtype=np.float64))
    limit = float(magnitude.max()) if len(magnitude) else 0.0
    limit = max(limit, 1.0)
    nonzero = magnitude[magnitude > 0]
    linthresh = max(1.0, float(np.median(nonzero))) if len(nonzero) else 1.0
    return mcolors.SymLogNorm(linthresh=min(linthresh, limit), vmin=-limit, vmax=limit, base=10)


SESSIONS = ("rth", "all")
RTH_OPEN_S, RTH_CLOSE_S = 15 * 3600 + 1800, 22 * 3600 + 900
"""Regular trading hours as seconds after the 17:00 CT session open: 08:30-15:15 CT, the regular
session of CME equity-index futures and options (CME Group "Trading Hours"; Globex itself trades
17:00-16:00 CT). An early close (exchange_calendars ``CMES``) ends the session sooner."""
MARKER_PITCH_PT = 11.0
"""Markers closer than this (points, about a STRONG marker's width) are merged: the strongest
signal of each such cell is drawn (:func:`declutter`)."""
FORWARD_MAX_AGE_S = 1_800
"""How long (s) a window's forward estimate is carried to later windows without one (the
scorer's :data:`flows.scoring.UNDERLYING_MAX_AGE_S`)."""


def session_columns(start_s: int, end_s: int, window_s: int, session: str = "rth") -> np.ndarray:
    """Window starts (int64 s UTC) of ``[start_s, end_s)`` that the report draws as columns.

    ``session="all"`` keeps every window (Globex trades ~23 h); ``"rth"`` keeps windows that
    start in regular trading hours, 08:30-15:15 CT (:data:`RTH_OPEN_S`), of CME sessions from
    :mod:`flows.exchange_time` (weekends and holidays have none; early closes end sooner).

    Raises
    ------
    ValueError
        Unknown ``session``.
    """
    if session not in SESSIONS:
        msg = f"session must be one of {', '.join(SESSIONS)}, not {session!r}"
        raise ValueError(msg)
    lo = int(start_s) - int(start_s) % window_s
    columns = np.arange(lo, max(int(end_s), lo), window_s, dtype=np.int64)
    if session == "all" or len(columns) == 0:
        return columns
    sessions = cme_sessions()
    day, second = sessions.locate(columns)
    days, inverse = np.unique(day, return_inverse=True)
    close = np.array([sessions.close_second(int(d)) for d in days.tolist()], dtype=np.int64)[inverse]
    keep = (second >= RTH_OPEN_S) & (second < np.minimum(RTH_CLOSE_S, close))
    return columns[keep]


def column_index(columns: np.ndarray, window_start_s: np.ndarray) -> np.ndarray:
    """Column of each window start in ``columns`` (int64[n]; −1 where it is not a column)."""
    ws = np.asarray(window_start_s, dtype=np.int64)
    idx = np.searchsorted(columns, ws)
    found = idx < len(columns)
    found[found] &= columns[idx[found]] == ws[found]
    return np.where(found, idx, -1)


def declutter(col: np.ndarray, row: np.ndarray, rank: np.ndarray, *, col_bin: int,
              row_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick one marker per (``col_bin`` columns × ``row_bin`` rows) cell: the highest ``rank``.

    Parameters
    ----------
    col, row : int64[n]
        Heatmap column and row of each signal.
    rank : float64[n]
        Higher wins (class first, then confidence); ties keep the earlier signal.

    Returns
    -------
    keep : int64[m]
        Indices of the drawn signals, ascending.
    merged : int64[m]
        How many signals each drawn marker stands for (≥ 1).
    """
    col, row = np.asarray(col, dtype=np.int64), np.asarray(row, dtype=np.int64)
    if len(col) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cell = (col // max(col_bin, 1)) * (int(row.max()) // max(row_bin, 1) + 1) + row // max(row_bin, 1)
    order = np.lexsort((np.arange(len(col)), -np.asarray(rank, dtype=np.float64), cell))
    first = np.r_[True, cell[order][1:] != cell[order][:-1]]
    counts = np.diff(np.r_[np.flatnonzero(first), len(order)])
    keep = order[first]
    by_index = np.argsort(keep)
    return keep[by_index], counts[by_index]


def parity_forwards(window_start_s: np.ndarray, expiration_s: np.ndarray, strike: np.ndarray,
                    option_type: np.ndarray, vwap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put-call parity forward per (window, expiration): the median over strikes of K + C − P.

    Parameters are per contract-window (int64 s, int64 s, float64 points, ``"C"``/``"P"``,
    float64 VWAP points, NaN = none); the rule is the scorer's (:func:`flows.scoring.chain_forwards`).

    Returns
    -------
    (window_start_s, expiration_s, forward) : int64[m], int64[m], float64[m]
    """
    ws = np.asarray(window_start_s, dtype=np.int64)
    exp = np.asarray(expiration_s, dtype=np.int64)
    pairs = np.stack([ws, exp], axis=1) if len(ws) else np.zeros((0, 2), np.int64)
    keys, chain = np.unique(pairs, axis=0, return_inverse=True)
    kind = np.select([np.asarray(option_type) == "C", np.asarray(option_type) == "P"],
                     [OPTION_TYPE_CODES["C"], OPTION_TYPE_CODES["P"]], -1).astype(np.int8)
    codes, forward = chain_forwards(chain.reshape(-1).astype(np.int64), exp,
                                    np.asarray(strike, dtype=np.float64), kind,
                                    np.asarray(vwap, dtype=np.float64))
    return keys[codes, 0], keys[codes, 1], forward


@dataclass(frozen=True)
class Forwards:
    """Forward (USD index points) per window, for the ATM line.

    ``expiration_s`` −1 = the underlying future's own window VWAP (valid for every expiry);
    otherwise a put-call parity estimate of that expiry (:func:`parity_forwards`).
    """

    window_start_s: np.ndarray
    expiration_s: np.ndarray
    forward: np.ndarray

    @classmethod
    def empty(cls) -> Forwards:
        """No forward known."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

    def on_columns(self, columns: np.ndarray, expiration_s: int | None) -> np.ndarray:
        """Forward at each column (float64[n], NaN = unknown) for one expiry (None: any).

        The future's VWAP wins over parity; a value is carried to later columns for at most
        :data:`FORWARD_MAX_AGE_S`.
        """
        out = np.full(len(columns), np.nan)
        for future in (False, True):  # parity first, then the future overwrites
            sel = self.expiration_s == -1 if future else self.expiration_s >= 0
            if expiration_s is not None and not future:
                sel &= self.expiration_s == expiration_s
            ws, fw = self.window_start_s[sel], self.forward[sel]
            if len(ws) == 0:
                continue
            order = np.lexsort((fw, ws))
            ws, fw = ws[order], fw[order]
            last = np.r_[ws[1:] != ws[:-1], True]  # one value per window: the median if several
            starts = np.flatnonzero(np.r_[True, ws[1:] != ws[:-1]])
            counts = np.diff(np.r_[starts, len(ws)])
            med = (fw[starts + (counts - 1) // 2] + fw[starts + counts // 2]) / 2
            ws = ws[last]
            at = np.searchsorted(ws, columns, side="right") - 1
            ok = (at >= 0)
            ok[ok] &= columns[ok] - ws[at[ok]] <= FORWARD_MAX_AGE_S
            out[ok] = med[at[ok]]
        return out


def _time_ticks(columns: np.ndarray, window_s: int,
                zone_info: ZoneInfo) -> tuple[list[float], list[str], list[float]]:
    """Tick positions and labels of a column axis, and the positions where a new day starts."""
    local = [datetime.fromtimestamp(int(c), zone_info) for c in columns.tolist()]
    breaks = [i for i in range(1, len(columns))
              if columns[i] - columns[i - 1] > window_s or local[i].date() != local[i - 1].date()]
    minutes = np.array([t.hour * 60 + t.minute for t in local], dtype=np.int64)
    shown_min = len(columns) * window_s / 60
    step = next((s for s in (15, 30, 60, 120, 180, 240, 360, 720) if shown_min / s <= 10), 1440)
    gap = max(1.0, len(columns) / 12)  # no tick crowding a day label
    starts = [0, *breaks] if not breaks or breaks[0] >= gap else breaks
    ticks = sorted({*starts, *(t for t in np.flatnonzero(minutes % step == 0).tolist()
                               if all(abs(t - b) >= gap for b in starts))})
    labels = [f"{local[t]:%a %d %b}\n{local[t]:%H:%M}" if t in starts else f"{local[t]:%H:%M}"
              for t in ticks]
    return [float(t) for t in ticks], labels, [float(b) for b in breaks]


def _panel_rows(cells: PressureCells) -> list[tuple[int, str]]:
    """(expiration s or −1, label) per figure row, in expiry order."""
    assert cells.expiration_s is not None
    expiries = np.unique(cells.expiration_s)
    rows = []
    for exp in expiries.tolist():
        if exp < 0:
            rows.append((-1, "all expirations"))
            continue
        local = datetime.fromtimestamp(exp, ZoneInfo("America/Chicago"))
        last = int(cells.window_start_s.max())
        dte = int(cme_sessions().locate(exp)[0][0] - cme_sessions().locate(last)[0][0])
        rows.append((exp, f"expires {local:%a %Y-%m-%d %H:%M} CT ({max(dte, 0)}DTE)"))
    return rows


def render_report(cells: PressureCells, signals: SignalMarks, out: Path, *, title: str,
                  start_s: int | None = None, end_s: int | None = None, dpi: int = 110,
                  display_tz: str = "America/Chicago", session: str = "all",
                  forwards: Forwards | None = None) -> Path:
    """Draw the report figure into a PNG file.

    One figure row per expiration in ``cells`` (``expiration_s`` −1 = expirations merged), each
    with calls and puts heatmaps (strike × window) and their net-by-strike bars.

    Parameters
    ----------
    cells : PressureCells
        Net pressure per window, expiration, strike and option type (``"C"``, ``"P"``).
    signals : SignalMarks
        Signals to mark (may be empty); drawn on the row of their expiration (every row when the
        row merges expirations), one marker per crowded cell (:func:`declutter`).
    out : pathlib.Path
        PNG to write; parent directories are created.
    title : str
        Figure title.
    start_s, end_s : int, optional
        Time range (s UTC); default: the cells' range.
    dpi : int
        Resolution.
    display_tz : str
        Zone of the time axis (default exchange time, America/Chicago).
    session : str
        ``"all"`` every window; ``"rth"`` regular trading hours only (:func:`session_columns`),
        the days side by side.
    forwards : Forwards, optional
        Drawn as the ATM line (dashed black) on every heatmap.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    NoDataError
        No cell falls in the drawn columns (e.g. only overnight windows with ``session="rth"``).
    ValueError
        Unknown ``session``.
    """
    lo = start_s if start_s is not None else int(cells.window_start_s.min()) if len(cells) else 0
    hi = end_s if end_s is not None else int(cells.window_start_s.max()) + cells.window_s if len(cells) else 0
    columns = session_columns(lo, hi, cells.window_s, session)
    cells = cells.take(column_index(columns, cells.window_start_s) >= 0)
    if len(cells) == 0:
        what = "in regular trading hours (08:30-15:15 CT)" if session == "rth" else "in the range"
        msg = f"no option windows {what} to draw"
        raise NoDataError(msg)
    forwards = forwards or Forwards.empty()
    norm = pressure_norm(cells.net_pressure)
    cmap = colormaps["RdBu"].with_extremes(bad="white")  # colour-blind safe; blue = offers lifted
    zone_info = ZoneInfo(display_tz)
    ticks, tick_labels, breaks = _time_ticks(columns, cells.window_s, zone_info)
    panels = _panel_rows(cells)
    row_h = 3.9
    fig = Figure(figsize=(18, 2.3 + row_h * len(panels)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid_spec = fig.add_gridspec(len(panels), 4, width_ratios=(3.4, 0.8, 3.4, 0.8))
    heat_w_pt, heat_h_pt = 18 * 72 * 3.4 / 8.4 * 0.85, row_h * 72 * 0.75
    mesh, shown, total = None, 0, 0
    x_edges = np.arange(len(columns) + 1, dtype=np.float64)
    for r, (exp, label) in enumerate(panels):
        row_cells = cells.take(np.asarray(cells.expiration_s == exp, dtype=bool))
        strikes = np.unique(row_cells.strike)  # calls and puts of one expiry share rows
        y_edges = strike_edges(strikes)
        line = forwards.on_columns(columns, None if exp < 0 else exp)
        for c, (code, name) in enumerate(OPTION_TYPES):
            part = row_cells.take(row_cells.option_type == code)
            col = column_index(columns, part.window_start_s)
            _, _, grid = pressure_grid(col, part.strike, part.net_pressure, window_s=1, strikes=strikes,
                                       start_s=0, end_s=len(columns))
            heat = fig.add_subplot(grid_spec[r, 2 * c])
            mesh = heat.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap=cmap, norm=norm,
                                   shading="flat")
            heat.set_title(f"{name} · {label}", loc="left", fontsize=10)
            heat.set_ylabel("strike (index points)", fontsize=9)
            heat.tick_params(axis="both", labelsize=8)
            heat.set_xticks(ticks, tick_labels)
            for b in breaks:
                heat.axvline(b, color="#444444", linewidth=0.8)
            if np.isfinite(line).any():
                heat.step(np.arange(len(columns)) + 0.5, line, where="mid", color="black",
                          linestyle="--", linewidth=1.0, zorder=2)
            heat.set_xlim(0, len(columns))
            heat.set_ylim(y_edges[0], y_edges[-1])
            if r == len(panels) - 1:
                heat.set_xlabel(f"time ({display_tz}; {cells.window_s // 60}-min windows"
                                f"{', regular hours only' if session == 'rth' else ''})", fontsize=9)
            on_row = signals.take((signals.option_type == code)
                                  & ((signals.expiration_s == exp) if exp >= 0 else True))
            drawn, placed = _mark_signals(heat, on_row, columns, strikes,
                                  col_bin=max(1, int(np.ceil(len(columns) * MARKER_PITCH_PT / heat_w_pt))),
                                  row_bin=max(1, int(np.ceil(len(strikes) * MARKER_PITCH_PT / heat_h_pt))))
            shown, total = shown + drawn, total + placed

            bars = fig.add_subplot(grid_spec[r, 2 * c + 1], sharey=heat)
            _, totals = strike_totals(part.strike, part.net_pressure, strikes)
            bars.barh(strikes, totals, height=0.8 * np.diff(y_edges),
                      color=np.where(totals >= 0, LIFTED_COLOUR, HIT_COLOUR))
            bars.axvline(0, color="#555555", linewidth=0.8)
            bars.set_title("net by strike", loc="left", fontsize=10)
            bars.tick_params(labelleft=False, labelsize=8)
            bars.grid(axis="x", alpha=0.3)
            if r == len(panels) - 1:
                bars.set_xlabel("contracts", fontsize=9)
    assert mesh is not None
    heat_axes = [ax for i, ax in enumerate(fig.axes) if i % 2 == 0]
    bar = fig.colorbar(mesh, ax=heat_axes, location="bottom", shrink=0.5, aspect=40, pad=0.01,
                       label="net pressure (ask − bid), contracts: symmetric log scale centred at 0; "
                             "white = no trades")
    limit = float(norm.vmax or 1.0)
    decades = [10.0**k for k in range(int(np.log10(limit)) + 1) if norm.linthresh <= 10.0**k <= limit / 2]
    bar_ticks = sorted({0.0, limit, -limit, *decades, *(-d for d in decades)})
    bar.set_ticks(bar_ticks, labels=[f"{v:+,.0f}" if v else "0" for v in bar_ticks])
    handles = [
        Line2D([], [], marker="^", linestyle="", markersize=9, markerfacecolor="#777777",
               markeredgecolor="white", label="BUY: offers lifted"),
        Line2D([], [], marker="v", linestyle="", markersize=9, markerfacecolor="#777777",
               markeredgecolor="white", label="SELL: bids hit"),
        *(Line2D([], [], marker="o", linestyle="", markersize=9, markerfacecolor=colour,
                 markeredgecolor="white", label=name.lower())
          for name, colour in SENTIMENT_COLOUR.items()),
        *(Line2D([], [], marker="o", linestyle="", markersize=float(np.sqrt(area)),
                 markerfacecolor="none", markeredgecolor="#333333", label=name)
          for name, area in MARKER_SIZE.items()),
        Line2D([], [], color="black", linestyle="--", linewidth=1.0, label="forward (ATM)"),
    ]
    note = f"; {total} of {len(signals)} signals in the drawn hours and expirations"
    if shown < total:
        note += f", {shown} markers (the strongest per crowded cell, with the count beside it)"
    fig.legend(handles=handles, loc="outside lower right", ncols=5, frameon=False,
               title=f"signals: shape = direction, colour = sentiment, size = class{note}")
    fig.suptitle(title, fontsize=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _mark_signals(ax: object, signals: SignalMarks, columns: np.ndarray, strikes: np.ndarray,
                  *, col_bin: int, row_bin: int) -> tuple[int, int]:
    """Scatter ▲/▼ at (window centre, strike), one per crowded cell.

    Returns (markers drawn, signals on the panel's columns and strikes).
    """
    col = column_index(columns, signals.window_start_s)
    row = np.searchsorted(strikes, signals.strike)
    ok = (col >= 0) & (row < len(strikes))
    ok[ok] &= strikes[row[ok]] == signals.strike[ok]
    if not ok.any():
        return 0, 0
    signals, col, row = signals.take(ok), col[ok], row[ok]
    rank = np.array([CLASS_ORDER.get(c, 0) for c in signals.signal_class.tolist()], dtype=np.float64)
    if signals.confidence is not None:
        rank = rank + np.clip(np.nan_to_num(signals.confidence), 0, 0.999)
    keep, merged = declutter(col, row, rank, col_bin=col_bin, row_bin=row_bin)
    sentiment = signals.sentiments()[keep]
    direction, sig_class = signals.direction[keep], signals.signal_class[keep]
    x, y = col[keep] + 0.5, strikes[row[keep]]
    for name, marker in (("BUY", "^"), ("SELL", "v")):
        sel = direction == name
        if not sel.any():
            continue
        ax.scatter(x[sel], y[sel], s=[MARKER_SIZE.get(c, 40.0) for c in sig_class[sel]],  # type: ignore[attr-defined]
                   marker=marker, c=[SENTIMENT_COLOUR.get(s, "#777777") for s in sentiment[sel]],
                   edgecolors="white", linewidths=0.8, zorder=3)
    for xi, yi, n in zip(x.tolist(), y.tolist(), merged.tolist(), strict=True):
        if n > 1:
            ax.annotate(f"{n}", (xi, yi), xytext=(5, 3), textcoords="offset points", fontsize=6,  # type: ignore[attr-defined]
                        color="#222222", zorder=4)
    return len(keep), len(signals)


# ------------------------------------------------------------------------------------ database

CELLS_SQL = """
SELECT
    toUnixTimestamp(window_start) AS window_start_s,
    ifNull(toInt64(toUnixTimestamp(expiration)), -1) AS expiration_s,
    strike,
    option_type,
    sum(toInt64(ask_volume)) - sum(toInt64(bid_volume)) AS net_pressure,
    sum(total_volume) AS volume,
    max(toUnixTimestamp(window_end) - toUnixTimestamp(window_start)) AS window_s
FROM ifd.pressure_metrics
WHERE window_start >= toDateTime({start_s:Int64}, 'UTC') AND window_start < toDateTime({end_s:Int64}, 'UTC')
  AND underlying = {underlying:String}
  AND option_type IN ('C', 'P')
  AND strike IS NOT NULL
GROUP BY window_start_s, expiration_s, strike, option_type
ORDER BY window_start_s, expiration_s, strike, option_type
"""

FORWARD_SQL = """
SELECT
    toUnixTimestamp(window_start) AS window_start_s,
    if(option_type IN ('C', 'P'), toInt64(toUnixTimestamp(expiration)), toInt64(-1)) AS expiration_s,
    strike,
    option_type,
    vwap
FROM ifd.pressure_metrics
WHERE window_start >= toDateTime({start_s:Int64}, 'UTC') AND window_start < toDateTime({end_s:Int64}, 'UTC')
  AND vwap IS NOT NULL
  AND ((underlying = {underlying:String} AND option_type IN ('C', 'P') AND strike IS NOT NULL
        AND expiration IS NOT NULL)
       OR (symbol = {underlying:String} AND option_type NOT IN ('C', 'P', 'T')))
"""

SIGNALS_SQL = """
SELECT
    toUnixTimestamp(window_start) AS window_start_s,
    ifNull(toInt64(toUnixTimestamp(expiration)), -1) AS expiration_s,
    strike,
    option_type,
    confidence,
    toString(direction) AS direction,
    toString(signal_class) AS signal_class,
    toString(sentiment) AS sentiment
FROM ifd.ifd_signals FINAL
WHERE window_start >= toDateTime({start_s:Int64}, 'UTC') AND window_start < toDateTime({end_s:Int64}, 'UTC')
  AND underlying = {underlying:String}
  AND option_type IN ('C', 'P')
  AND strike IS NOT NULL
ORDER BY window_start_s
"""


def _scalar(store: ClickHouseStore, sql: str,
            parameters: dict[str, Any] | None = None) -> int | str | None:
    table = store.query_arrow(sql, parameters)
    if table.num_rows == 0 or table.num_columns == 0:
        return None
    return table.column(0)[0].as_py()


def signals_table_exists(store: ClickHouseStore) -> bool:
    """Whether ``ifd.ifd_signals`` exists (scoring may never have run on this database)."""
    found = _scalar(store, "SELECT count() FROM system.tables "
                           "WHERE database = 'ifd' AND name = 'ifd_signals'")
    return bool(found)


def default_range(store: ClickHouseStore) -> tuple[int, int]:
    """Return the last UTC day with IFD signals, else with option windows, as ``(start_s, end_s)``.

    Raises
    ------
    NoDataError
        No option windows at all.
    """
    last = None
    if signals_table_exists(store):
        last = _scalar(store, "SELECT toUnixTimestamp(max(window_start)) FROM ifd.ifd_signals "
                              "HAVING count() > 0")
    if last is None:
        last = _scalar(store, "SELECT toUnixTimestamp(max(window_start)) FROM ifd.pressure_metrics "
                              "WHERE option_type IN ('C', 'P') HAVING count() > 0")
    if last is None:
        msg = "ifd.pressure_metrics holds no option windows: run the flow first"
        raise NoDataError(msg)
    start = int(last) - int(last) % 86_400
    return start, start + 86_400


def default_underlying(store: ClickHouseStore, start_s: int, end_s: int) -> str | None:
    """Return the underlying with the most option volume in ``[start_s, end_s)``, or None."""
    found = _scalar(store, """
        SELECT underlying FROM ifd.pressure_metrics
        WHERE window_start >= toDateTime({start_s:Int64}, 'UTC')
          AND window_start < toDateTime({end_s:Int64}, 'UTC')
          AND option_type IN ('C', 'P')
        GROUP BY underlying ORDER BY sum(total_volume) DESC LIMIT 1""",
        {"start_s": int(start_s), "end_s": int(end_s)})
    return None if found is None else str(found)


def load_report_data(store: ClickHouseStore, start_s: int, end_s: int,
                     underlying: str) -> tuple[PressureCells, SignalMarks, Forwards]:
    """Read net pressure cells, signals and forwards of ``underlying`` in ``[start_s, end_s)``.

    Forwards: the underlying future's window VWAP where its trades are stored (symbol =
    ``underlying``), else put-call parity per expiry (:func:`parity_forwards`).

    Raises
    ------
    NoDataError
        No option windows in the range.
    """
    params = {"start_s": int(start_s), "end_s": int(end_s), "underlying": underlying}
    table = store.query_arrow(CELLS_SQL, params)
    if table.num_rows == 0:
        msg = (f"no option windows for {underlying} in ifd.pressure_metrics between "
               f"{_iso(start_s)} and {_iso(end_s)} (UTC)")
        raise NoDataError(msg)
    window_s = int(max(table.column("window_s").to_pylist()))
    cells = PressureCells.from_arrow(table, window_s)
    signals = SignalMarks.empty()
    if signals_table_exists(store):
        signals = SignalMarks.from_arrow(store.query_arrow(SIGNALS_SQL, params))
    quotes = store.query_arrow(FORWARD_SQL, params)
    ws = np.asarray(quotes.column("window_start_s").to_numpy(), dtype=np.int64)
    exp = np.asarray(quotes.column("expiration_s").to_numpy(), dtype=np.int64)
    vwap = np.asarray(quotes.column("vwap").to_numpy(zero_copy_only=False), dtype=np.float64)
    future = exp < 0
    pw, pe, pf = parity_forwards(ws[~future], exp[~future],
                                 np.asarray(quotes.column("strike").to_numpy(zero_copy_only=False),
                                            dtype=np.float64)[~future],
                                 np.asarray(quotes.column("option_type").to_pylist(), dtype=str)[~future],
                                 vwap[~future])
    forwards = Forwards(np.r_[pw, ws[future]], np.r_[pe, exp[future]], np.r_[pf, vwap[future]])
    return cells, signals, forwards


def choose_expiries(cells: PressureCells, choice: str, max_expiries: int) -> tuple[PressureCells, str]:
    """Apply ``--expiry`` to the cells; return them and a note for the title.

    ``choice``: ``"each"`` one figure row per expiration, the ``max_expiries`` with the most
    volume (ranked by ``|net|`` summed when volume is unknown); ``"all"`` one row, expirations
    summed; else comma-separated CT dates (``2026-10-30``) of the expirations to draw.

    Raises
    ------
    NoDataError
        No expiration on the given dates.
    ValueError
        A date that does not read as YYYY-MM-DD.
    """
    assert cells.expiration_s is not None
    if choice == "all":
        return cells.merge_expirations(), "all expirations"
    ct = ZoneInfo("America/Chicago")
    expiries = np.unique(cells.expiration_s)
    if choice == "each":
        weight = np.array([np.abs(cells.net_pressure[cells.expiration_s == e]).sum() for e in expiries])
        if cells.volume is not None:
            weight = np.array([cells.volume[cells.expiration_s == e].sum() for e in expiries])
        chosen = np.sort(expiries[np.argsort(-weight, kind="stable")[:max(1, max_expiries)]])
        left = len(expiries) - len(chosen)
        note = f"{len(chosen)} most-traded of {len(expiries)} expirations" if left else (
            f"{len(chosen)} expiration{'s' if len(chosen) != 1 else ''}")
        return cells.take(np.isin(cells.expiration_s, chosen)), note
    wanted = []
    for part in choice.split(","):
        try:
            wanted.append(date.fromisoformat(part.strip()))
        except ValueError:
            msg = f"--expiry {part.strip()!r}: expected each, all or dates like 2026-10-30"
            raise ValueError(msg) from None
    chosen = np.array([e for e in expiries.tolist()
                       if e >= 0 and datetime.fromtimestamp(e, ct).date() in wanted], dtype=np.int64)
    if len(chosen) == 0:
        listed = ", ".join(sorted({f"{datetime.fromtimestamp(e, ct):%Y-%m-%d}" for e in expiries.tolist()
                                   if e >= 0}))
        msg = f"no expiration on {choice} in the range (there are: {listed or 'none'})"
        raise NoDataError(msg)
    return cells.take(np.isin(cells.expiration_s, chosen)), f"expiring {choice}"


# ------------------------------------------------------------------------------------ command line


def _iso(ts_s: int) -> str:
    return datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%d %H:%M")


def resolve_range(start: str | None, end: str | None, *, tz: str = "utc",
                  now: datetime | None = None) -> tuple[int, int] | None:
    """Return ``(start_s, end_s)`` from the arguments, or None for the default range.

    Each bound takes what :func:`tools.times.parse_when` reads (ISO 8601, a date, ``today``,
    ``yesterday``, ``-6h`` …) in ``tz`` (``utc`` or ``ct``); a bare ``--end`` date means the end
    of that day; one bound alone spans one day.

    Raises
    ------
    ValueError
        Unreadable time, or end not after start.
    """
    if start is None and end is None:
        return None
    lo = None if start is None else parse_when(start, tz=tz, now=now)
    hi = None if end is None else parse_when(end, tz=tz, end=True, now=now)
    if lo is None:
        assert hi is not None
        lo = hi - timedelta(days=1)
    if hi is None:
        hi = lo + timedelta(days=1)
    if hi <= lo:
        msg = f"--end ({hi:%Y-%m-%d %H:%M}) must be after --start ({lo:%Y-%m-%d %H:%M}) (UTC)"
        raise ValueError(msg)
    return int(lo.timestamp()), int(hi.timestamp())


def default_output(data_dir: Path, start_s: int, end_s: int) -> Path:
    """``<data_dir>/reports/ifd-<YYYY-MM-DD>.png`` for one UTC day, else ``ifd-<start>_<end>.png``."""
    lo = datetime.fromtimestamp(start_s, UTC)
    if start_s % 86_400 == 0 and end_s - start_s == 86_400:
        name = f"ifd-{lo:%Y-%m-%d}.png"
    else:
        hi = datetime.fromtimestamp(end_s, UTC)
        name = f"ifd-{lo:%Y%m%dT%H%M}_{hi:%Y%m%dT%H%M}.png"
    return data_dir / "reports" / name


def main(argv: list[str] | None = None, prog: str = "python -m tools.png_report") -> int:
    """Run the command; return its exit code (0 written, 1 query failed, 2 no data or bad input)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--start", help=f"range start: {FORMS} (a date = 00:00)")
    parser.add_argument("--end", help="range end, exclusive (a date = the end of that day)")
    parser.add_argument("--tz", default="utc", choices=["utc", "ct", "exchange"],
                        help="zone of --start/--end without one (ct = America/Chicago)")
    parser.add_argument("--underlying", help="e.g. NQZ6 (default: most option volume in range)")
    parser.add_argument("--out", type=Path, help="PNG path (default <IFD_DATA_DIR>/reports/ifd-<date>.png)")
    parser.add_argument("--session", default="rth", choices=SESSIONS,
                        help="rth: regular trading hours 08:30-15:15 CT only (default); all: every window")
    parser.add_argument("--expiry", default="each",
                        help="each: one row per expiration (default); all: expirations summed in one "
                             "row; or CT dates, e.g. 2026-10-30[,2026-11-06]")
    parser.add_argument("--max-expiries", type=int, default=3, metavar="N",
                        help="rows drawn with --expiry each: the N most-traded expirations (default 3)")
    args = parser.parse_args(argv)
    try:
        explicit = resolve_range(args.start, args.end, tz=args.tz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.underlying is not None and not _SYMBOL_RE.match(args.underlying):
        print(f"error: --underlying {args.underlying!r} is not a symbol like NQZ6", file=sys.stderr)
        return 2
    if args.max_expiries < 1:
        print("error: --max-expiries must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        store = open_store(settings, lock_timeout_s=TOOL_LOCK_TIMEOUT_S)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        start_s, end_s = explicit or default_range(store)
        underlying = args.underlying or default_underlying(store, start_s, end_s)
        if underlying is None:
            msg = (f"no option windows in ifd.pressure_metrics between {_iso(start_s)} and "
                   f"{_iso(end_s)} (UTC)")
            raise NoDataError(msg)
        cells, signals, forwards = load_report_data(store, start_s, end_s, underlying)
    except NoDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    out = args.out or default_output(settings.data_dir, start_s, end_s)
    ct = ZoneInfo("America/Chicago")
    span = (f"{datetime.fromtimestamp(start_s, ct):%Y-%m-%d %H:%M} → "
            f"{datetime.fromtimestamp(end_s, ct):%Y-%m-%d %H:%M} CT")
    try:
        cells, which = choose_expiries(cells, args.expiry, args.max_expiries)
        hours = "regular hours" if args.session == "rth" else "all hours"
        title = (f"IFD option flow: {underlying}, {span}, {hours} "
                 f"({which}; {len(signals)} signal{'s' if len(signals) != 1 else ''} in range)")
        render_report(cells, signals, out, title=title, start_s=start_s, end_s=end_s,
                      session=args.session, forwards=forwards)
    except (NoDataError, ValueError) as exc:
        hint = " (--session all draws the overnight hours)" if args.session == "rth" else ""
        print(f"error: {exc}{hint if 'regular trading hours' in str(exc) else ''}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
