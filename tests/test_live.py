"""The live source end to end against a local gateway speaking Databento's live protocol."""

from __future__ import annotations

import gc
import logging
import random

import databento_dbn as dbn
import pytest

from connectors.live import LiveAuthError, LiveConfigError, LiveFeed
from models.errors import SourceError
from samples.generator import generate_session
from tests.flowrun import stored_windows
from tests.live_gateway import Faults, LiveGateway
from tests.liverun import KEY, live_settings, run_live
from tests.reference import lee_ready_windows, trades_frame

TAIL = KEY[-5:]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    files = generate_session(tmp_path_factory.mktemp("live-src"), n_trades=3000, seed=3)
    return files.definition_path, files.tbbo_path


def test_every_trade_counted_once_after_three_drops_and_a_gap(tmp_path, day, caplog):
    caplog.set_level(logging.DEBUG)
    faults = Faults(drop_after=[400, 1100, 2000], drop_reset=True, gap_records=40)
    with LiveGateway(list(day), api_key=KEY, faults=faults) as gw:
        out = run_live(tmp_path, gw.port)
        streamed = gw.sessions
    assert out["windows"] == lee_ready_windows(trades_frame(day[1]))
    assert streamed >= 4  # first connection + 3 reconnects
    assert max(u["reconnects"] for u in out["usage"]) >= 3
    assert "intraday replay from" in caplog.text
    for record in caplog.records:  # no secret in any log line, databento's included
        assert KEY not in record.getMessage() and TAIL not in record.getMessage()


def test_stall_past_the_heartbeat_reconnects_and_loses_nothing(tmp_path, day):
    thresholds = gc.get_threshold()
    with LiveGateway(list(day), api_key=KEY, faults=Faults(stall_after=700)) as gw:
        out = run_live(tmp_path, gw.port)
        assert gw.sessions >= 2
    assert out["windows"] == lee_ready_windows(trades_frame(day[1]))
    assert gc.get_threshold() == thresholds  # the live source's paced collections ended with it
    assert gc.get_freeze_count() == 0


def test_internal_error_msg_reconnects_and_loses_nothing(tmp_path, day):
    faults = Faults(error_after=(900, int(dbn.ErrorCode.INTERNAL_ERROR), "internal error"),
                    system_after=[(300, int(dbn.SystemCode.SLOW_READER_WARNING), "slow reader")],
                    delay_s=0.0002)
    with LiveGateway(list(day), api_key=KEY, faults=faults) as gw:
        out = run_live(tmp_path, gw.port)
        assert gw.sessions >= 2
    assert out["windows"] == lee_ready_windows(trades_frame(day[1]))


def _poll_until(feed: LiveFeed, predicate, limit: int = 2000):
    import time

    for _ in range(limit):
        feed.poll()
        if predicate():
            return
        time.sleep(0.005)
    message = "condition not reached"
    raise AssertionError(message)


def test_a_stall_noticed_late_reconnects_instead_of_taking_the_idle_exit(day):
    """A poll delayed past both the stall and the idle limits (a busy flow) must not end the run.

    The feed's clock is a test clock: the stall is noticed at one poll 10 s after the last data,
    beyond heartbeat + grace (1.5 s) and the idle exit (2.5 s). The feed schedules a reconnect and
    keeps going; the idle time counts only from the reconnection.
    """
    import time

    clock = [1_000_000.0]
    with LiveGateway(list(day), api_key=KEY, faults=Faults(stall_after=700)) as gw:
        feed = LiveFeed(live_settings(gw.port), now=lambda: clock[0])
        try:
            deadline = time.monotonic() + 120  # a failure bound, not a synchronisation
            # every record the gateway wrote before its stall has reached the feed; the clock has not moved
            while not (gw.stalled and feed.sequencer.accepted == gw.records_sent):
                feed.poll()
                assert time.monotonic() < deadline, "the gateway never stalled"
                time.sleep(0.005)
            assert feed.sequencer.accepted > 0 and not feed.finished
            clock[0] += 10.0
            feed.poll()
            assert not feed.finished and feed.reconnects == 1 and feed.connection.client is None
            clock[0] += feed.backoff_delay_s() + 1e-6
            feed.poll()  # reconnects with an intraday replay
            assert not feed.finished and feed.connection.client is not None
            clock[0] += 2.0  # within the idle exit, counted from the reconnection
            feed.poll()
            assert not feed.finished
        finally:
            feed.close()


def test_rejected_key_is_a_fatal_clear_error_without_the_key(day):
    with LiveGateway(list(day), api_key=KEY, faults=Faults(reject_auth=True)) as gw:
        feed = LiveFeed(live_settings(gw.port))
        with pytest.raises(LiveAuthError) as err:
            _poll_until(feed, lambda: False)
        feed.close()
        assert gw.auth_attempts == 1  # fatal: no retry storm
    assert "rejected the API key" in str(err.value) and "DATABENTO_API_KEY" in str(err.value)
    assert KEY not in str(err.value) and TAIL not in str(err.value)


def test_symbol_resolution_error_is_fatal_and_names_the_setting(day):
    faults = Faults(error_after=(0, int(dbn.ErrorCode.SYMBOL_RESOLUTION_FAILED), "no such symbol"))
    with LiveGateway(list(day), api_key=KEY, faults=faults) as gw:
        feed = LiveFeed(live_settings(gw.port))
        with pytest.raises(LiveConfigError, match="IFD_LIVE_SYMBOLS"):
            _poll_until(feed, lambda: False)
        feed.close()


def test_budget_cutoff_stops_the_stream_at_the_threshold(tmp_path, day):
    # $0.001 per byte; the day streams 661 definitions + their symbol mappings (~$486) before
    # 3,000 tbbo trades (240 kB); budget $800, stop at 80 % = $640: after ~800 trades
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from models.settings import AlertSettings

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerts = AlertSettings(urls=f"json://127.0.0.1:{server.server_address[1]}/ops",
                           jsonl_path=None, backoff_initial_s=0.01)
    try:
        with LiveGateway(list(day), api_key=KEY, faults=Faults(delay_s=0.0003)) as gw:
            out = run_live(tmp_path, gw.port, alerts=alerts, cost_per_gb_usd=1e6,
                           daily_budget_usd=800.0, budget_stop_fraction=0.8, batch_records=50)
    finally:
        server.shutdown()
    assert [m["title"] for m in received] == ["IFD live budget reached"]
    assert "daily Databento budget used" in received[0]["message"]
    trades = sum(v["trades"] for v in out["windows"].values())
    assert 500 < trades < 3000
    spent = max(u["est_cost_usd"] for u in out["usage"])
    assert 640.0 <= spent < 800.0


def test_backoff_schedule_is_capped_exponential_with_jitter_then_gives_up():
    clock = [1_000_000.0]

    def refuse(**_kw):
        message = "connection refused"
        raise ConnectionRefusedError(message)

    settings = live_settings(1, reconnect_initial_s=1.0, reconnect_max_s=8.0,
                             reconnect_max_attempts=6, idle_exit_s=None)
    feed = LiveFeed(settings, client_factory=refuse, now=lambda: clock[0],
                    rng=random.Random(7))
    delays = []
    with pytest.raises(SourceError, match="giving up after 6 reconnect attempts"):
        for _ in range(10):
            feed.poll()
            delay = feed.backoff_delay_s()
            delays.append(delay)
            clock[0] += delay + 1e-6
    expected_rng = random.Random(7)
    expected = [expected_rng.uniform(0, min(8.0, 2.0 ** n)) for n in range(6)]
    assert delays == pytest.approx(expected)


def _committed_epoch(recovery) -> int:
    """Newest epoch bytewax committed to the recovery store (-1 before the first)."""
    import sqlite3

    con = sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    finally:
        con.close()
    return -1 if row is None or row[0] is None else int(row[0])


def _wait(predicate, what: str, limit_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + limit_s  # a failure bound, not a synchronisation
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sweep_day(tmp_path_factory):
    files = generate_session(tmp_path_factory.mktemp("live-sweeps"), n_trades=3000, seed=3,
                             sweep_share=0.3)
    return files.definition_path, files.tbbo_path


@pytest.mark.parametrize("where", ["inside a second", "between seconds"])
def test_kill_and_resume_from_recovery_snapshot_replays_the_gap_exactly_once(tmp_path, sweep_day,
                                                                            where):
    """kill -9 with committed snapshots behind it; the restart replays from the snapshot.

    The gateway pauses the first connection after ``pause_at`` records (alive, heartbeats, no
    data), the test waits for two more committed epochs, then kills: deterministic under load.
    """
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    day = sweep_day
    root = Path(__file__).resolve().parents[1]
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True,
                   cwd=root)
    with LiveGateway(list(day), api_key=KEY) as probe:
        inside = set(probe.positions_inside_second(["definition", "tbbo"]))
    pause_at = next(n for n in range(661 + 1200, 661 + 3000) if (n in inside) == (where == "inside a second"))
    # a resume that forgot the replay would lose the 300 records the live feed moved on by
    faults = Faults(gap_records=300, stalls=[pause_at], heartbeats_in_stall=True,
                    heartbeat_interval_s=0.2)
    with LiveGateway(list(day), api_key=KEY, faults=faults) as gw:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IFD_", "DATABENTO"))}
        env.update(IFD_MODE="live", IFD_DATA_DIR=str(tmp_path), IFD_PROGRESS_INTERVAL_S="0",
                   IFD_SCORING_ENABLED="false", DATABENTO_API_KEY=KEY,
                   IFD_LIVE_GATEWAY="127.0.0.1", IFD_LIVE_PORT=str(gw.port),
                   IFD_LIVE_SESSION="always", IFD_LIVE_IDLE_EXIT_S="600",
                   IFD_LIVE_HEARTBEAT_INTERVAL_S="1", IFD_LIVE_HEARTBEAT_GRACE_S="0.5",
                   IFD_LIVE_RECONNECT_INITIAL_S="0.01", IFD_LIVE_BATCH_RECORDS="200",
                   IFD_LIVE_REPLAY_HORIZON_S=str(30 * 86_400), IFD_ALERT_JSONL_PATH="")
        cmd = [sys.executable, "-m", "bytewax.run", "flows.ifd", "-r", str(recovery),
               "-s", "1", "-b", "0"]
        first = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: 0 in gw.stalled, "the gateway pause")
            _wait(lambda: _committed_epoch(recovery) >= 0, "a first committed epoch")
            epoch = _committed_epoch(recovery)
            _wait(lambda: _committed_epoch(recovery) >= epoch + 2, "two epochs after the pause")
        finally:
            first.send_signal(signal.SIGKILL)  # a crash: no flush, no close
            first.wait(timeout=30)
        sent_before_kill = gw.records_sent
        env["IFD_LIVE_IDLE_EXIT_S"] = "2.5"
        second = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                                timeout=240, check=False)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        resumed_with_start = [s["start"] for s in gw.subscriptions if s["connection"] >= 1]
    assert sent_before_kill == pause_at
    assert resumed_with_start and all(start is not None for start in resumed_with_start), (
        second.stdout[-2500:] + second.stderr[-2500:])
    assert stored_windows(tmp_path) == lee_ready_windows(trades_frame(day[1]))
