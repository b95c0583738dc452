"""PNG report: the command on a real sample replay, and the plotting helpers on hand-made arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from matplotlib import image as mpimg

from tools.png_report import (
    NoDataError,
    PressureCells,
    SignalMarks,
    default_output,
    pressure_grid,
    pressure_norm,
    render_report,
    resolve_range,
    strike_totals,
)

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY = int(datetime(2026, 10, 26, tzinfo=UTC).timestamp())


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    env.update(IFD_DATA_DIR=str(data_dir), IFD_PROGRESS_INTERVAL_S="0", PYTHONPATH=str(REPO))
    return env


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=data_dir, env=_env(data_dir), capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp data dir whose chdb holds the replayed 6-day sample (the last day is scored)."""
    data_dir = tmp_path_factory.mktemp("png-report")
    proc = _run(data_dir, "-m", "bytewax.run", "flows.ifd")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data_dir


# ------------------------------------------------------------------------------------ command


def test_default_run_writes_png_of_last_scored_day_and_prints_path(sample_dir):
    proc = _run(sample_dir, "-m", "tools.png_report")
    assert proc.returncode == 0, proc.stderr
    printed = Path(proc.stdout.strip().splitlines()[-1])
    assert printed == sample_dir / "reports" / "ifd-2026-10-26.png"  # the sample's scored day
    data = printed.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 50_000
    pixels = mpimg.imread(printed)
    assert pixels.shape[0] > 800 and pixels.shape[1] > 1200


def test_explicit_range_underlying_and_out(sample_dir):
    out = sample_dir / "custom" / "session.png"
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2026-10-26T14:00Z",
                "--end", "2026-10-26T16:00", "--underlying", "NQZ6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_range_without_data_exits_2_with_clear_message(sample_dir):
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2020-01-01", "--end", "2020-01-02")
    assert proc.returncode == 2
    assert "no option windows" in proc.stderr and "2020-01-01 00:00" in proc.stderr
    assert proc.stdout == ""
    assert not (sample_dir / "reports" / "ifd-2020-01-01.png").exists()


def test_unknown_underlying_exits_2(sample_dir):
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2026-10-26", "--underlying", "ESZ6")
    assert proc.returncode == 2
    assert "no option windows for ESZ6" in proc.stderr


def test_bad_arguments_exit_2(tmp_path):
    proc = _run(tmp_path, "-m", "tools.png_report", "--start", "2026-10-26", "--end", "2026-10-25T12:00")
    assert proc.returncode == 2 and "must be after" in proc.stderr
    proc = _run(tmp_path, "-m", "tools.png_report", "--underlying", "NQZ6'; DROP TABLE x")
    assert proc.returncode == 2 and "not a symbol" in proc.stderr


def test_module_imports_no_bytewax():
    code = "import sys, tools.png_report; print('bytewax' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(REPO), capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "False"


# ------------------------------------------------------------------------------------ helpers


def _cells(rows: list[tuple[int, float, str, int]], window_s: int = 300) -> PressureCells:
    table = pa.table({
        "window_start_s": pa.array([r[0] for r in rows], pa.int64()),
        "strike": pa.array([r[1] for r in rows], pa.float64()),
        "option_type": pa.array([r[2] for r in rows], pa.string()),
        "net_pressure": pa.array([r[3] for r in rows], pa.int64()),
    })
    return PressureCells.from_arrow(table, window_s)


def test_pressure_grid_pivots_sums_and_leaves_gaps_nan():
    ws = np.array([DAY, DAY, DAY + 900, DAY + 900, DAY + 300])
    strike = np.array([21500.0, 21600.0, 21500.0, 21500.0, 21550.0])
    net = np.array([5, -3, 2, 4, -7])
    edges, strikes, grid = pressure_grid(ws, strike, net, window_s=300)
    assert edges.tolist() == [DAY, DAY + 300, DAY + 600, DAY + 900, DAY + 1200]
    assert strikes.tolist() == [21500.0, 21550.0, 21600.0]
    expected = np.array([
        [5, np.nan, np.nan, 6],        # 21500: two cells in the last window are summed
        [np.nan, -7, np.nan, np.nan],  # 21550
        [-3, np.nan, np.nan, np.nan],  # 21600
    ])
    np.testing.assert_array_equal(grid, expected)


def test_pressure_grid_explicit_rows_and_range_drop_outside_cells():
    edges, strikes, grid = pressure_grid(
        np.array([DAY - 300, DAY + 60, DAY + 600]), np.array([1.0, 2.0, 3.0]), np.array([9, 1, 2]),
        window_s=300, strikes=np.array([1.0, 2.0]), start_s=DAY + 10, end_s=DAY + 600)
    assert edges.tolist() == [DAY, DAY + 300, DAY + 600]  # start moved down to a window boundary
    np.testing.assert_array_equal(grid, [[np.nan, np.nan], [1, np.nan]])


def test_strike_totals_sums_over_time():
    strikes, totals = strike_totals(np.array([2.0, 1.0, 2.0]), np.array([3, -1, -5]),
                                    strikes=np.array([1.0, 2.0, 3.0]))
    assert strikes.tolist() == [1.0, 2.0, 3.0]
    assert totals.tolist() == [-1, -2, 0]


def test_pressure_norm_is_centred_at_zero_and_symmetric():
    norm = pressure_norm(np.array([-40, 3, 1000, 0]))
    assert norm(0.0) == pytest.approx(0.5)
    assert norm(1000.0) == pytest.approx(1.0) and norm(-1000.0) == pytest.approx(0.0)
    assert norm(40.0) - 0.5 == pytest.approx(0.5 - norm(-40.0))


def test_render_report_pixels_depend_on_the_data(tmp_path):
    base = [(DAY + 300 * i, 21500.0 + 10 * (i % 5), "C" if i % 2 else "P", (i * 7) % 23 - 11)
            for i in range(60)]
    flipped = [(w, k, o, -n) for w, k, o, n in base]  # every buyer a seller
    a = render_report(_cells(base), SignalMarks.empty(), tmp_path / "a.png", title="t")
    a2 = render_report(_cells(base), SignalMarks.empty(), tmp_path / "a2.png", title="t")
    b = render_report(_cells(flipped), SignalMarks.empty(), tmp_path / "b.png", title="t")
    pa_, pa2, pb = (mpimg.imread(p) for p in (a, a2, b))
    assert pa_.shape == pb.shape
    np.testing.assert_array_equal(pa_, pa2)  # deterministic
    assert np.abs(pa_ - pb).sum() > 100  # a different picture, not a pixel of noise


def test_render_report_draws_signal_markers(tmp_path):
    rows = [(DAY + 300 * i, 21500.0 + 10 * (i % 5), "C", 1) for i in range(40)]
    marks = SignalMarks(np.array([DAY + 3000]), np.array([21520.0]), np.array(["C"]), np.array(["BUY"]),
                        np.array(["STRONG"]))
    plain = mpimg.imread(render_report(_cells(rows), SignalMarks.empty(), tmp_path / "p.png", title="t"))
    marked = mpimg.imread(render_report(_cells(rows), marks, tmp_path / "m.png", title="t"))
    changed = np.any(np.abs(plain - marked) > 0.05, axis=-1)
    changed[int(plain.shape[0] * 0.8):] = False  # the legend's note counts the signals
    assert 20 < changed.sum() < 5_000  # one marker's worth of pixels
    cols_changed = np.flatnonzero(changed.any(axis=0))
    assert cols_changed.max() < plain.shape[1] / 2  # on the calls heatmap (left half)
    # the same signal on puts is drawn on the puts heatmap (right half)
    on_puts = SignalMarks(marks.window_start_s, marks.strike, np.array(["P"]), np.array(["SELL"]),
                          marks.signal_class)
    puts = mpimg.imread(render_report(_cells(rows), on_puts, tmp_path / "q.png", title="t"))
    diff = np.any(np.abs(plain - puts) > 0.05, axis=-1)
    diff[int(plain.shape[0] * 0.8):] = False
    cols_changed = np.flatnonzero(diff.any(axis=0))
    assert len(cols_changed) and cols_changed.min() > plain.shape[1] / 2
    # a signal at a strike with no windows in range is not drawn
    elsewhere = SignalMarks(np.array([DAY]), np.array([99.0]), np.array(["C"]), np.array(["SELL"]),
                            np.array(["MONITOR"]))
    other = mpimg.imread(render_report(_cells(rows), elsewhere, tmp_path / "o.png", title="t"))
    body = slice(0, int(plain.shape[0] * 0.8))
    np.testing.assert_array_equal(plain[body], other[body])


def test_render_report_refuses_empty_cells(tmp_path):
    with pytest.raises(NoDataError):
        render_report(_cells([]), SignalMarks.empty(), tmp_path / "x.png", title="t")


def test_resolve_range_and_default_output():
    assert resolve_range(None, None) is None
    assert resolve_range("2026-10-26", None) == (DAY, DAY + 86_400)
    assert resolve_range(None, "2026-10-26") == (DAY, DAY + 86_400)  # a bare end date: that whole day
    assert resolve_range("2026-10-26T14:00", "2026-10-26T15:30Z") == (DAY + 14 * 3600, DAY + 15.5 * 3600)
    assert resolve_range("2026-10-26T16:00+02:00", None)[0] == DAY + 14 * 3600
    with pytest.raises(ValueError, match="must be after"):
        resolve_range("2026-10-26T15:00", "2026-10-26T14:00")
    assert default_output(Path("d"), DAY, DAY + 86_400) == Path("d/reports/ifd-2026-10-26.png")
    assert default_output(Path("d"), DAY + 3600, DAY + 7200) == \
        Path("d/reports/ifd-20261026T0100_20261026T0200.png")


def test_strike_axis_is_numeric_with_rows_centred_on_their_strikes():
    from tools.png_report import strike_edges

    strikes = np.array([21000.0, 21025.0, 21050.0, 21100.0, 21200.0])  # uneven spacing
    edges = strike_edges(strikes)
    assert len(edges) == len(strikes) + 1 and np.all(np.diff(edges) > 0)  # monotonic numbers
    np.testing.assert_allclose((edges[1:] + edges[:-1])[1:-1] / 2, strikes[1:-1], atol=13)
    np.testing.assert_allclose(edges[1:-1], [21012.5, 21037.5, 21075.0, 21150.0])
    assert edges[0] == 20987.5 and edges[-1] == 21250.0
    np.testing.assert_array_equal(strike_edges(np.array([5.0])), [4.5, 5.5])


# ------------------------------------------------------------------- sessions, expiries, forwards


def _rth_by_wall_clock(day: str) -> list[int]:
    """Window starts in 08:30-15:15 America/Chicago of one date, by zoneinfo wall clock."""
    from zoneinfo import ZoneInfo

    ct = ZoneInfo("America/Chicago")
    base = datetime.fromisoformat(day).replace(tzinfo=ct)
    first = base.replace(hour=8, minute=30)
    return [int(first.timestamp()) + 300 * i for i in range(81)]  # 6 h 45 min of 5-min windows


@pytest.mark.parametrize("day", ["2026-10-26", "2026-12-01"])  # CDT and CST: 13:30 vs 14:30 UTC
def test_rth_columns_are_08_30_to_15_15_exchange_time_in_summer_and_winter(day):
    from tools.png_report import session_columns

    start = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())
    cols = session_columns(start, start + 86_400, 300, "rth")
    assert cols.tolist() == _rth_by_wall_clock(day)
    assert len(session_columns(start, start + 86_400, 300, "all")) == 288


def test_rth_columns_skip_weekends_and_stop_at_an_early_close():
    import exchange_calendars as xc

    from tools.png_report import session_columns

    saturday = int(datetime(2026, 10, 24, tzinfo=UTC).timestamp())
    assert len(session_columns(saturday, saturday + 86_400, 300, "rth")) == 0
    black_friday = datetime(2026, 11, 27, tzinfo=UTC)  # CME equity early close (calendar CMES)
    close = xc.get_calendar("CMES").session_close("2026-11-27")
    start = int(black_friday.timestamp())
    cols = session_columns(start, start + 86_400, 300, "rth")
    assert len(cols) and cols.max() < close.timestamp() <= cols.max() + 300
    assert cols.min() == _rth_by_wall_clock("2026-11-27")[0]
    with pytest.raises(ValueError, match="session"):
        session_columns(start, start + 86_400, 300, "eth")


def test_parity_forward_is_the_median_over_strikes_of_k_plus_c_minus_p():
    from tools.png_report import Forwards, parity_forwards

    w, e = DAY, DAY + 4 * 86_400
    ws = np.array([w] * 7 + [w + 300] * 2)
    exp = np.array([e] * 7 + [e] * 2)
    strike = np.array([100.0, 100.0, 110.0, 110.0, 120.0, 120.0, 130.0, 100.0, 100.0])
    kind = np.array(["C", "P", "C", "P", "C", "P", "C", "C", "P"])
    vwap = np.array([5.0, 3.0, 1.0, 10.0, 0.5, 18.0, 0.1, 6.0, 2.0])
    got_w, got_e, forward = parity_forwards(ws, exp, strike, kind, vwap)
    # by hand: 100 + 5 − 3 = 102, 110 + 1 − 10 = 101, 120 + 0.5 − 18 = 102.5 → median 102;
    # 130 has no put; the next window only 100 + 6 − 2 = 104
    assert got_w.tolist() == [w, w + 300] and got_e.tolist() == [e, e]
    np.testing.assert_allclose(forward, [102.0, 104.0])
    # on columns: carried for at most 30 min; the underlying future's VWAP wins where known
    fw = Forwards(np.r_[got_w, w + 600], np.r_[got_e, -1], np.r_[forward, 99.0])
    cols = w + 300 * np.arange(10)
    line = fw.on_columns(cols, e)
    np.testing.assert_allclose(line[:3], [102.0, 104.0, 99.0])
    np.testing.assert_allclose(line[3:9], 99.0)  # 600 s + 1800 s carried
    assert np.isnan(line[9])
    assert np.isnan(Forwards.empty().on_columns(cols, e)).all()


def test_declutter_keeps_the_strongest_signal_per_cell_and_counts_the_rest():
    from tools.png_report import declutter

    col = np.array([0, 1, 1, 5, 5, 9])
    row = np.array([0, 0, 1, 0, 7, 0])
    rank = np.array([1.2, 3.5, 2.0, 1.0, 1.0, 2.0])
    keep, merged = declutter(col, row, rank, col_bin=2, row_bin=2)
    # cells (col // 2, row // 2): (0,0) holds 0, 1, 2 → index 1 wins; (2,0) → 3; (2,3) → 4; (4,0) → 5
    assert keep.tolist() == [1, 3, 4, 5] and merged.tolist() == [3, 1, 1, 1]
    keep, merged = declutter(col, row, rank, col_bin=1, row_bin=1)
    assert keep.tolist() == list(range(6)) and merged.tolist() == [1] * 6
    # equal rank: the earlier signal stays
    keep, _ = declutter(np.array([3, 3]), np.array([2, 2]), np.array([1.0, 1.0]), col_bin=1, row_bin=1)
    assert keep.tolist() == [0]


def _multi_expiry_cells() -> PressureCells:
    e1, e2, e3 = (DAY + d * 86_400 + 72_000 for d in (0, 4, 11))
    n = 30
    ws = np.tile(DAY + 14 * 3600 + 300 * np.arange(n), 3)
    exp = np.repeat([e1, e2, e3], n)
    strike = 21500.0 + 25 * (np.arange(3 * n) % 4)
    volume = np.repeat([500, 50, 5000], n)
    return PressureCells(ws, strike, np.where(np.arange(3 * n) % 2, "P", "C"),
                         np.arange(3 * n) % 9 - 4, 300, exp, volume)


def test_choose_expiries_each_all_and_dates():
    from tools.png_report import choose_expiries

    cells = _multi_expiry_cells()
    e1, e2, e3 = np.unique(cells.expiration_s).tolist()
    top, note = choose_expiries(cells, "each", 2)
    assert sorted(set(top.expiration_s.tolist())) == [e1, e3]  # most volume, drawn in expiry order
    assert "2 most-traded of 3" in note
    merged, _ = choose_expiries(cells, "all", 2)
    assert set(merged.expiration_s.tolist()) == {-1} and merged.net_pressure.sum() == cells.net_pressure.sum()
    one, _ = choose_expiries(cells, "2026-10-30", 1)  # e2: 4 days after the 26th
    assert set(one.expiration_s.tolist()) == {e2}
    with pytest.raises(NoDataError, match="there are: 2026-10-26, 2026-10-30, 2026-11-06"):
        choose_expiries(cells, "2026-10-27", 1)
    with pytest.raises(ValueError, match="expected each, all or dates"):
        choose_expiries(cells, "friday", 1)


def test_one_figure_row_per_expiry_and_signals_on_their_own_row(tmp_path):
    cells = _multi_expiry_cells()
    e1, e2, e3 = np.unique(cells.expiration_s).tolist()
    plain = mpimg.imread(render_report(cells, SignalMarks.empty(), tmp_path / "p.png", title="t"))
    single = mpimg.imread(render_report(cells.take(cells.expiration_s == e1), SignalMarks.empty(),
                                        tmp_path / "s.png", title="t"))
    assert plain.shape[0] > 2 * single.shape[0]  # three rows of panels, taller figure
    body = int(plain.shape[0] * 0.88)  # above the legend, whose note counts the signals
    for exp, band in ((e1, (0.0, 0.3)), (e3, (0.6, 0.88))):
        mark = SignalMarks(np.array([DAY + 14 * 3600 + 3000]), np.array([21550.0]), np.array(["C"]),
                           np.array(["BUY"]), np.array(["STRONG"]), expiration_s=np.array([exp]))
        marked = mpimg.imread(render_report(cells, mark, tmp_path / f"m{exp}.png", title="t"))
        changed = np.any(np.abs(plain[:body] - marked[:body]) > 0.05, axis=-1)
        rows = np.flatnonzero(changed.any(axis=1)) / plain.shape[0]
        assert len(rows) and band[0] <= rows.min() and rows.max() <= band[1], (exp, rows.min(), rows.max())


def test_rth_session_refuses_a_range_with_only_overnight_windows(tmp_path):
    overnight = [(DAY + 3600 + 300 * i, 21500.0, "C", 3) for i in range(12)]  # 20:00-21:00 CT
    with pytest.raises(NoDataError, match="regular trading hours"):
        render_report(_cells(overnight), SignalMarks.empty(), tmp_path / "x.png", title="t", session="rth")
    out = render_report(_cells(overnight), SignalMarks.empty(), tmp_path / "y.png", title="t", session="all")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_command_session_and_expiry_options(sample_dir):
    out = sample_dir / "all.png"
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2026-10-23", "--end", "2026-10-26",
                "--session", "all", "--expiry", "all", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(PNG_MAGIC)
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2026-10-26", "--expiry", "2026-10-27")
    assert proc.returncode == 2
    assert "no expiration on 2026-10-27" in proc.stderr and "2026-10-30" in proc.stderr
    proc = _run(sample_dir, "-m", "tools.png_report", "--start", "2026-10-26T01:00Z", "--end",
                "2026-10-26T03:00Z")
    assert proc.returncode == 2 and "regular trading hours" in proc.stderr and "--session all" in proc.stderr
