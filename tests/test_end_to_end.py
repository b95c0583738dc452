"""`python -m bytewax.run flows.ifd` exactly as README runs it, then ClickHouse read back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from sinks.clickhouse import ChdbStore
from tests.flowrun import stored_windows
from tests.reference import lee_ready_windows, spread_legs_frame, trades_frame

ROOT = Path(__file__).resolve().parents[1]


def _run(data_dir: Path, source: str | None = None, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    env["IFD_DATA_DIR"] = str(data_dir)
    env.update(extra)
    if source:
        env["IFD_SOURCE"] = source
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.ifd"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The README command, with alerts pointed at a local Apprise JSON webhook."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data_dir = tmp_path_factory.mktemp("sample")
        url = f"json://127.0.0.1:{server.server_address[1]}/ifd"
        output = _run(data_dir, IFD_ALERT_URLS=url)
    finally:
        server.shutdown()
    return data_dir, output


def test_default_run_generates_sample_and_prints_summary(sample_run):
    data_dir, output = sample_run
    assert len(list((data_dir / "sample").glob("*.tbbo.dbn.zst"))) == 6
    assert (data_dir / "sample" / "labels.jsonl").is_file()
    assert "IFD run summary" in output
    assert "dead letters          0" in output
    assert "STRONG" in output.split("IFD signals")[1].splitlines()[0]


def test_default_run_windows_equal_independent_lee_ready(sample_run):
    data_dir, _ = sample_run
    days = sorted((data_dir / "sample").glob("*.tbbo.dbn.zst"))
    # one partition reads the days in order; the tick test carries within each CME session
    legs = spread_legs_frame(sorted((data_dir / "sample").glob("*.definition.dbn.zst")))
    assert legs.height > 0  # the sample trades user-defined verticals
    expected = lee_ready_windows(pl.concat([trades_frame(p) for p in days]), legs=legs)
    assert stored_windows(data_dir) == expected
    assert sum(v["trades"] for v in expected.values()) > 200_000


def test_default_run_writes_signals_with_reasons_and_alerts_the_channel(sample_run):
    data_dir, _ = sample_run
    store = ChdbStore(data_dir / "chdb")
    try:
        signals = store.query_arrow(
            "SELECT signal_class, direction, confidence, reason, symbol, toDate(window_start) AS d"
            " FROM ifd.ifd_signals FINAL").to_pylist()
    finally:
        store.close()
    strong = [s for s in signals if s["signal_class"] == "STRONG"]
    assert strong and all(s["confidence"] >= 0.75 for s in strong)
    assert all(" volume " in s["reason"] and "MM score" in s["reason"] for s in signals)
    # the five baseline days build history: only the sixth (scored) day carries STRONG signals
    assert len({s["d"] for s in strong}) == 1
    # one message per signal, or one digest line per signal when a burst came together
    titles = []
    for m in _Hook.received:
        digest = re.fullmatch(r"IFD (\d+) signals \((\d+) STRONG\) .*", m["title"])
        lines = m["message"].splitlines() if digest else [m["title"]]
        assert digest is None or int(digest[1]) == int(digest[2]) == len(lines)
        titles += [line.split(" | ")[0] for line in lines]
    assert len(titles) == len(strong)
    assert all(t.startswith("IFD STRONG ") for t in titles)
    assert sorted(" ".join(t.split()[3:-2]) for t in titles) == sorted(s["symbol"] for s in strong)
    lines = [json.loads(line) for line in (data_dir / "alerts.jsonl").read_text().splitlines()]
    final = {a["alert_key"]: a for a in lines}  # the last line per alert: its final status
    assert len(final) == len(strong) and {a["status"] for a in final.values()} == {"delivered"}
    assert {a["symbol"] for a in final.values()} == {s["symbol"] for s in strong}
    assert sorted(a["status"] for a in lines) == ["delivered"] * len(strong) + ["pending"] * len(strong)


def test_default_run_rows_are_option_contracts_and_strike_view_adds_up(sample_run):
    data_dir, _ = sample_run
    store = ChdbStore(data_dir / "chdb")
    try:
        per_type = store.query_arrow(
            "SELECT option_type, count() AS n, countIf(strike IS NULL OR expiration IS NULL) AS bad,"
            " sum(total_volume) AS v, sum(spread_volume) AS sv FROM ifd.pressure_metrics"
            " GROUP BY option_type ORDER BY option_type").to_pylist()
        by_strike = store.query_arrow(
            "SELECT sum(total_volume) AS v, max(expirations) AS e FROM ifd.pressure_by_strike"
        ).to_pylist()[0]
        parts = store.query_arrow("SELECT count() AS n FROM ifd.ingest_batches").to_pylist()
    finally:
        store.close()
    # calls, puts, and the sample's user-defined verticals (class T: no strike, all spread volume)
    assert [r["option_type"] for r in per_type] == ["C", "P", "T"]
    options, spreads = per_type[:2], per_type[2]
    assert all(r["bad"] == 0 for r in options)
    assert spreads["sv"] == spreads["v"] > 0
    assert by_strike["v"] == sum(r["v"] for r in options)
    assert by_strike["e"] > 1  # the strike view really spans several expiries
    assert parts[0]["n"] >= 1


def _signal_rows(data_dir: Path) -> list[dict]:
    store = ChdbStore(data_dir / "chdb")
    try:
        return store.query_arrow(
            "SELECT contract_key, window_start, signal_class, confidence FROM ifd.ifd_signals FINAL"
            " ORDER BY window_start, contract_key").to_pylist()
    finally:
        store.close()


def test_replaying_the_same_files_leaves_final_numbers_and_signals_unchanged(sample_run):
    data_dir, _ = sample_run
    before, signals_before = stored_windows(data_dir), _signal_rows(data_dir)
    alerts_before = (data_dir / "alerts.jsonl").read_text()
    _run(data_dir)
    assert stored_windows(data_dir) == before
    assert _signal_rows(data_dir) == signals_before
    assert (data_dir / "alerts.jsonl").read_text() == alerts_before  # no re-alerting


def test_real_esh4_mbo_replay_writes_correct_rows(tmp_path, real_dir):
    path = real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    output = _run(tmp_path, str(path))
    assert "records read          68,792" in output
    assert stored_windows(tmp_path) == lee_ready_windows(trades_frame(path))
