"""The ``ifd`` command on the sample: subcommands, formats that parse back, one-line user errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tools.times import parse_when

ROOT = Path(__file__).resolve().parents[1]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    return {**env, "IFD_DATA_DIR": str(data_dir), "IFD_PROGRESS_INTERVAL_S": "0", **extra}


def ifd(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          env=_env(data_dir, **extra), capture_output=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("cli")
    done = ifd(data_dir, "run")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"IFD run summary" in done.stdout
    return data_dir


def _all_signals(data_dir: Path) -> pl.DataFrame:
    done = ifd(data_dir, "signals", "--limit", "0", "--all-columns", "--format", "parquet",
               "--output", str(data_dir / "all.parquet"))
    assert done.returncode == 0, done.stderr
    return pl.read_parquet(data_dir / "all.parquet")


def test_signals_in_every_format_parse_back_and_match_the_table(sample_dir):
    everything = _all_signals(sample_dir)
    assert everything.height >= 10
    csv = ifd(sample_dir, "signals", "--limit", "0", "--format", "csv")
    frame = pl.read_csv(io.BytesIO(csv.stdout))
    assert frame.height == everything.height
    assert sorted(frame["symbol"].to_list()) == sorted(everything["symbol"].to_list())
    as_json = json.loads(ifd(sample_dir, "signals", "--limit", "0", "--format", "json").stdout)
    lines = ifd(sample_dir, "signals", "--limit", "0", "--format", "jsonl").stdout.splitlines()
    assert len(as_json) == len(lines) == everything.height
    assert pl.DataFrame(as_json)["total_volume"].sum() == everything["total_volume"].sum()
    table = ifd(sample_dir, "signals", "--limit", "3")
    assert table.returncode == 0 and table.stdout.decode().count("\n") == 2 + 3  # header, rule, rows


def test_signal_filters_equal_an_independent_polars_filter(sample_dir):
    everything = _all_signals(sample_dir).with_columns(
        pl.col("window_start").dt.convert_time_zone("UTC"))
    day = everything["window_start"].max().date()  # type: ignore[union-attr]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    want = everything.filter(
        (pl.col("window_start") >= start) & (pl.col("signal_class").is_in(["MODERATE", "STRONG"]))
        & (pl.col("direction") == "SELL") & pl.col("underlying").str.starts_with("NQ"))
    got = ifd(sample_dir, "signals", "--since", day.isoformat(), "--until", day.isoformat(),
              "--min-class", "moderate", "--side", "sell", "--underlying", "NQ", "--limit", "0",
              "--format", "csv")
    assert got.returncode == 0, got.stderr
    frame = pl.read_csv(io.BytesIO(got.stdout)) if got.stdout.count(b"\n") > 1 else None
    assert (0 if frame is None else frame.height) == want.height
    if frame is not None:
        assert sorted(frame["symbol"].to_list()) == sorted(want["symbol"].to_list())
    puts = ifd(sample_dir, "signals", "--type", "P", "--limit", "0", "--format", "json")
    assert len(json.loads(puts.stdout)) == everything.filter(pl.col("option_type") == "P").height
    latest = json.loads(ifd(sample_dir, "signals", "--limit", "2", "--format", "json").stdout)
    newest = everything.sort("window_start")["window_start"].tail(2).to_list()
    assert [datetime.fromisoformat(r["window_start"]) for r in latest] == newest


@pytest.mark.parametrize(("args", "needle"), [
    (["signals", "--since", "tomorrow"], b"cannot read the time 'tomorrow'"),
    (["signals", "--side", "up"], b"--side must be BUY or SELL"),
    (["signals", "--class", "HUGE"], b"--class takes MONITOR, MODERATE, STRONG"),
    (["signals", "--bogus"], b"unrecognized arguments: --bogus"),
    (["report", "--start", "someday"], b"cannot read the time 'someday'"),
    (["frobnicate"], b"invalid choice: 'frobnicate'"),
])
def test_user_errors_print_one_line_and_exit_2(sample_dir, args, needle):
    done = ifd(sample_dir, *args)
    assert done.returncode == 2
    assert needle in done.stderr and b"Traceback" not in done.stderr
    assert done.stderr.strip().count(b"\n") == 0


def test_query_report_sample_and_help(sample_dir, tmp_path):
    q = ifd(sample_dir, "query", "SELECT count() AS n FROM ifd.ifd_signals FINAL", "--format", "csv")
    assert q.returncode == 0 and int(q.stdout.split()[1]) == _all_signals(sample_dir).height
    png = tmp_path / "r.png"
    report = ifd(sample_dir, "report", "--out", str(png))
    assert report.returncode == 0, report.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sample = ifd(tmp_path, "sample", "--out", str(tmp_path / "s"), "--trades", "2000")
    assert sample.returncode == 0, sample.stderr
    assert list((tmp_path / "s").glob("*.tbbo.dbn.zst"))
    for command in ("run", "signals", "query", "report", "sample", "baseline"):
        shown = ifd(sample_dir, command, "--help")
        assert shown.returncode == 0 and f"ifd {command}".encode() in shown.stdout


def test_run_serve_answers_the_signal_api_of_the_run(tmp_path):
    """``ifd run --serve`` on the sample; the feed lingers after the replay: GET /signals."""
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "--serve", "--port", "0"],
                            cwd=ROOT, env=_env(tmp_path, IFD_FEED_LINGER_S="600"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        port = None
        for raw in proc.stderr:
            line = raw.decode()
            if "live feed on ws://" in line:
                port = int(line.split("ws://")[1].split("/")[0].rsplit(":", 1)[1])
            if "serving" in line and "IFD_FEED_LINGER_S" in line:
                break
        assert port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/signals?limit=0", timeout=30) as r:  # noqa: S310
            none = json.loads(r.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/signals?limit=100000", timeout=30) as r:  # noqa: S310
            served = json.loads(r.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:  # noqa: S310
            health = json.loads(r.read())
    finally:
        proc.kill()
        proc.wait(60)
    assert none == []
    assert len(served) == health["published"] >= 10
    assert len({(s["window_start"], s["contract_key"], s["signal_class"]) for s in served}) == len(served)


def test_times_people_type():
    now = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)  # a Monday; US DST ended the day before
    assert parse_when("-2h", now=now) == datetime(2026, 11, 2, 13, 30, tzinfo=UTC)
    assert parse_when("+15m", now=now) == datetime(2026, 11, 2, 15, 45, tzinfo=UTC)
    assert parse_when("now", now=now) == now
    assert parse_when("yesterday", now=now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("yesterday", tz="ct", now=now) == datetime(2026, 11, 1, 5, tzinfo=UTC)  # CDT
    assert parse_when("today", tz="ct", end=True, now=now) == datetime(2026, 11, 3, 6, tzinfo=UTC)
    assert parse_when("2026-10-23", end=True) == datetime(2026, 10, 24, tzinfo=UTC)
    assert parse_when("2026-10-23T08:30", tz="ct") == datetime(2026, 10, 23, 13, 30, tzinfo=UTC)
    assert parse_when("2026-10-23 08:30Z", tz="ct") == datetime(2026, 10, 23, 8, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected ISO 8601"):
        parse_when("last tuesday")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_when("now", tz="mars")
