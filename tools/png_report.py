"""PNG report: strike × time net-pressure heatmaps with IFD signal markers and a per-strike summary.

For people without Grafana: one picture of an underlying's option flow over a time range::

    python -m tools.png_report                               # last scored day, most-traded underlying
    python -m tools.png_report --start 2026-10-26T14:00Z --end 2026-10-26T16:00Z --underlying NQZ6
    python -m tools.png_report --start 2026-10-26 --out flow.png   # one UTC day

Reads ``ifd.pressure_metrics`` (and ``ifd.ifd_signals`` when that table exists) through
:func:`sinks.clickhouse.open_store` with the flow's settings (``IFD_CLICKHOUSE_URL``, else embedded
chdb in ``IFD_CHDB_PATH`` / ``<IFD_DATA_DIR>/chdb``: stop the flow first, chdb allows one process per
directory). Prints the PNG's path.

=============================  ==================================================================
figure part                    content
=============================  ==================================================================
left, top / bottom             calls / puts: strike (rows) × window (columns) heatmap of net
                               pressure = ask − bid volume in contracts, summed over expirations;
                               diverging colour-blind-safe colours centred at 0 (RdBu: blue =
                               offers lifted, red = bids hit), symmetric log scale up to the
                               largest ``|net|``; white = no trade
markers                        IFD signals at their window and strike: shape = direction (▲ BUY
                               lifted offers / ▼ SELL hit bids), colour = sentiment (orange
                               bullish: bought calls, sold puts; purple bearish), size = class
                               (STRONG > MODERATE > MONITOR; legend)
right, top / bottom            net pressure per strike summed over the range (bars)
=============================  ==================================================================

Defaults: the range is the last UTC day that has IFD signals (the last "scored" day), else the last
day with option windows; the underlying is the one with the most option volume in the range; the
PNG goes to ``<IFD_DATA_DIR>/reports/ifd-<date>.png``. Times without a zone are UTC; a bare date
means that whole UTC day; ``--start`` alone means one day from it.

Exit codes: 0 written; 2 no option windows in the range, a bad argument or no database; 1 a query
failed. The plotting helpers (:func:`pressure_grid`, :func:`strike_totals`, :func:`render_report`)
take numpy arrays or Arrow tables and need no database. No bytewax import.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import TOOL_LOCK_TIMEOUT_S, ClickHouseStore, open_store
from tools.times import FORMS, parse_when

OPTION_TYPES = (("C", "calls"), ("P", "puts"))
MARKER_SIZE = {"STRONG": 110.0, "MODERATE": 70.0, "MONITOR": 40.0}
"""Marker area (points²) per signal class."""
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
    """Net pressure per (window, strike, option type), summed over expirations.

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
    """

    window_start_s: np.ndarray
    strike: np.ndarray
    option_type: np.ndarray
    net_pressure: np.ndarray
    window_s: int

    @classmethod
    def from_arrow(cls, table: pa.Table, window_s: int) -> PressureCells:
        """Build from a table with columns window_start_s, strike, option_type, net_pressure."""
        return cls(
            np.asarray(table.column("window_start_s").to_numpy(), dtype=np.int64),
            np.asarray(table.column("strike").to_numpy(zero_copy_only=False), dtype=np.float64),
            np.asarray(table.column("option_type").to_pylist(), dtype=str),
            np.asarray(table.column("net_pressure").to_numpy(), dtype=np.int64),
            int(window_s),
        )

    def __len__(self) -> int:
        return len(self.window_start_s)

    def select(self, option_type: str) -> PressureCells:
        """Rows of one option type."""
        keep = self.option_type == option_type
        return PressureCells(self.window_start_s[keep], self.strike[keep], self.option_type[keep],
                             self.net_pressure[keep], self.window_s)


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

    @classmethod
    def empty(cls) -> SignalMarks:
        """No signals."""
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, str), np.zeros(0, str), np.zeros(0, str))

    @classmethod
    def from_arrow(cls, table: pa.Table) -> SignalMarks:
        """Build from a table with window_start_s, strike, option_type, direction, signal_class."""
        if table.num_rows == 0:
            return cls.empty()
        return cls(
            np.asarray(table.column("window_start_s").to_numpy(), dtype=np.int64),
            np.asarray(table.column("strike").to_numpy(zero_copy_only=False), dtype=np.float64),
            np.asarray(table.column("option_type").to_pylist(), dtype=str),
            np.asarray(table.column("direction").to_pylist(), dtype=str),
            np.asarray(table.column("signal_class").to_pylist(), dtype=str),
            np.asarray(table.column("sentiment").to_pylist(), dtype=str)
            if "sentiment" in table.column_names else None,
        )

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


def render_report(cells: PressureCells, signals: SignalMarks, out: Path, *, title: str,
                  start_s: int | None = None, end_s: int | None = None, dpi: int = 110,
                  display_tz: str = "America/Chicago") -> Path:
    """Draw the report figure into a PNG file.

    Parameters
    ----------
    cells : PressureCells
        Net pressure per window, strike and option type (calls ``"C"``, puts ``"P"``).
    signals : SignalMarks
        Signals to mark (may be empty).
    out : pathlib.Path
        PNG to write; parent directories are created.
    title : str
        Figure title.
    start_s, end_s : int, optional
        Time range of the heatmap columns (s UTC); default: the cells' range.
    dpi : int
        Resolution.
    display_tz : str
        Zone of the time axis (default exchange time, America/Chicago).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    NoDataError
        ``cells`` is empty.
    """
    if len(cells) == 0:
        msg = "no option windows to draw"
        raise NoDataError(msg)
    strikes = np.unique(cells.strike)  # shared rows: calls and puts line up with their bars
    norm = pressure_norm(cells.net_pressure)
    cmap = colormaps["RdBu"].with_extremes(bad="white")  # colour-blind safe; blue = offers lifted
    fig = Figure(figsize=(16, 11), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid_spec = fig.add_gridspec(2, 2, width_ratios=(4.2, 1.0))
    y_edges = strike_edges(strikes)  # a numeric strike axis: rows as wide as the strike spacing
    zone_info = ZoneInfo(display_tz)
    lo = start_s if start_s is not None else int(cells.window_start_s.min())
    hi = end_s if end_s is not None else int(cells.window_start_s.max()) + cells.window_s
    mesh = None
    for i, (code, name) in enumerate(OPTION_TYPES):
        part = cells.select(code)
        edges, _, grid = pressure_grid(part.window_start_s, part.strike, part.net_pressure,
                                       window_s=cells.window_s, strikes=strikes, start_s=lo, end_s=hi)
        x_edges = mdates.date2num(edges.astype("datetime64[s]"))
        heat = fig.add_subplot(grid_spec[i, 0])
        mesh = heat.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), cmap=cmap, norm=norm,
                               shading="flat")
        heat.set_title(f"{name}: net pressure (ask − bid) by strike and {cells.window_s // 60}-min window",
                       loc="left", fontsize=11)
        heat.set_ylabel("strike (index points)")
        heat.tick_params(axis="y", labelsize=8)
        locator = mdates.AutoDateLocator(minticks=4, maxticks=13, tz=zone_info)
        heat.xaxis.set_major_locator(locator)
        heat.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone_info))
        heat.set_xlabel(f"time ({display_tz})", fontsize=9)
        heat.set_xlim(x_edges[0], x_edges[-1])
        heat.set_ylim(y_edges[0], y_edges[-1])
        _mark_signals(heat, signals, code, strikes, cells.window_s)

        bars = fig.add_subplot(grid_spec[i, 1], sharey=heat)
        _, totals = strike_totals(part.strike, part.net_pressure, strikes)
        bars.barh(strikes, totals, height=0.8 * np.diff(y_edges),
                  color=np.where(totals >= 0, LIFTED_COLOUR, HIT_COLOUR))
        bars.axvline(0, color="#555555", linewidth=0.8)
        bars.set_title(f"{name}: net by strike", loc="left", fontsize=11)
        bars.set_xlabel("contracts")
        bars.tick_params(labelleft=False)
        bars.grid(axis="x", alpha=0.3)
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=fig.axes[::2], location="bottom", shrink=0.5, aspect=40, pad=0.01,
                       label="net pressure (ask − bid), contracts: symmetric log scale centred at 0; "
                             "white = no trades")
    limit = float(norm.vmax or 1.0)
    decades = [10.0**k for k in range(int(np.log10(limit)) + 1) if norm.linthresh <= 10.0**k <= limit / 2]
    ticks = sorted({0.0, limit, -limit, *decades, *(-d for d in decades)})
    bar.set_ticks(ticks, labels=[f"{v:+,.0f}" if v else "0" for v in ticks])
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
    ]
    fig.legend(handles=handles, loc="outside lower right", ncols=4, frameon=False,
               title="signals: shape = direction, colour = sentiment, size = class")
    fig.suptitle(title, fontsize=13)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _mark_signals(ax: object, signals: SignalMarks, option_type: str, strikes: np.ndarray,
                  window_s: int) -> None:
    """Scatter ▲/▼ at (window centre, strike) for the signals of one option type."""
    if len(signals) == 0:
        return
    keep = signals.option_type == option_type
    rows = np.searchsorted(strikes, signals.strike)
    keep &= rows < len(strikes)
    keep[keep] &= strikes[rows[keep]] == signals.strike[keep]
    sentiment = signals.sentiments()
    for direction, marker in (("BUY", "^"), ("SELL", "v")):
        sel = keep & (signals.direction == direction)
        if not sel.any():
            continue
        centre = (signals.window_start_s[sel] + window_s // 2).astype("datetime64[s]")
        sizes = [MARKER_SIZE.get(c, 40.0) for c in signals.signal_class[sel]]
        colours = [SENTIMENT_COLOUR.get(x, "#777777") for x in sentiment[sel]]
        ax.scatter(mdates.date2num(centre), strikes[rows[sel]], s=sizes, marker=marker,  # type: ignore[attr-defined]
                   c=colours, edgecolors="white", linewidths=0.8, zorder=3)


# ------------------------------------------------------------------------------------ database

CELLS_SQL = """
SELECT
    toUnixTimestamp(window_start) AS window_start_s,
    strike,
    option_type,
    sum(toInt64(ask_volume)) - sum(toInt64(bid_volume)) AS net_pressure,
    max(toUnixTimestamp(window_end) - toUnixTimestamp(window_start)) AS window_s
FROM ifd.pressure_metrics
WHERE window_start >= toDateTime({start_s:Int64}, 'UTC') AND window_start < toDateTime({end_s:Int64}, 'UTC')
  AND underlying = {underlying:String}
  AND option_type IN ('C', 'P')
  AND strike IS NOT NULL
GROUP BY window_start_s, strike, option_type
ORDER BY window_start_s, strike, option_type
"""

SIGNALS_SQL = """
SELECT
    toUnixTimestamp(window_start) AS window_start_s,
    strike,
    option_type,
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
                     underlying: str) -> tuple[PressureCells, SignalMarks]:
    """Read net pressure cells and signals of ``underlying`` in ``[start_s, end_s)``.

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
    return cells, signals


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
    args = parser.parse_args(argv)
    try:
        explicit = resolve_range(args.start, args.end, tz=args.tz)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.underlying is not None and not _SYMBOL_RE.match(args.underlying):
        print(f"error: --underlying {args.underlying!r} is not a symbol like NQZ6", file=sys.stderr)
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
        cells, signals = load_report_data(store, start_s, end_s, underlying)
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
    title = (f"IFD option flow: {underlying}, {span} "
             f"(all expirations; {len(signals)} signal{'s' if len(signals) != 1 else ''})")
    render_report(cells, signals, out, title=title, start_s=start_s, end_s=end_s)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
