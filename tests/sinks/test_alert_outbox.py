"""Alert outbox under ``kill -9``: a dispatcher process, then the real dataflow, killed mid-delivery.

A local webhook answers every POST after 0.1 s and can hold the responses from
a given request on, so the process is killed while exactly one alert is in
flight. After a restart on the same outbox every accepted signal must reach the
webhook, and only the one in flight may arrive twice.

The webhook and the child dispatcher are also used by
``benchmarks/bench_alert_kill.py``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.settings import AlertSettings
from models.signals import Signal
from sinks.alerts import AlertDispatcher

ROOT = Path(__file__).resolve().parents[2]

_CONTRACT_RE = re.compile(r"^contract: .*\((?P<contract_key>[^()]+), id \d+\)$", re.M)
_WINDOW_RE = re.compile(r"^window: (?P<start>\d{4}-\d\d-\d\d \d\d:\d\d)-", re.M)


def post_key(post: dict) -> tuple[str, str]:
    """``(contract_key, "YYYY-MM-DD HH:MM")`` of the window an alert POST is about (from its body)."""
    contract, window = _CONTRACT_RE.search(post["message"]), _WINDOW_RE.search(post["message"])
    assert contract is not None and window is not None, post["message"]
    return contract["contract_key"], window["start"]


def signal_key(contract_key: str, window_start) -> tuple[str, str]:
    """The same identity for a signal (``window_start`` an aware UTC datetime)."""
    return contract_key, f"{window_start:%Y-%m-%d %H:%M}"


class SlowWebhook:
    """Local Apprise ``json://`` endpoint: 200 after ``delay_s``; holds requests after ``hold_after``.

    Requests are numbered from 1 in arrival order and recorded on arrival.
    With ``hold_after=k``, request ``k + 1`` and later get no answer until
    :meth:`release` (the client is then mid-delivery). Use as a context manager.
    """

    def __init__(self, delay_s: float = 0.1, hold_after: int | None = None) -> None:
        self.delay_s = delay_s
        self.hold_after = hold_after
        self._released = threading.Event()
        self._received = threading.Condition()
        self._posts: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook._received:
                    hook._posts.append(body)
                    number = len(hook._posts)
                    hook._received.notify_all()
                if hook.hold_after is not None and number > hook.hold_after:
                    hook._released.wait()
                time.sleep(hook.delay_s)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client was killed while we held its request
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"json://127.0.0.1:{self._httpd.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> SlowWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def release(self) -> None:
        """Answer held requests and hold no more."""
        self._released.set()

    @property
    def posts(self) -> list[dict]:
        with self._received:
            return list(self._posts)

    def wait_for(self, n: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
        """Block until ``n`` requests have arrived; ``timeout_s`` only bounds a failure.

        Raises
        ------
        AssertionError
            Timeout, or ``proc`` ended before the webhook saw ``n`` requests.
        """
        deadline = time.monotonic() + timeout_s
        with self._received:
            while len(self._posts) < n:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"webhook got {len(self._posts)} of {n} posts in {timeout_s} s"
                assert proc is None or proc.poll() is None, f"process exited ({proc.returncode}) early"
                self._received.wait(min(remaining, 0.5))


_PROGRESS_RE = re.compile(r"\| +(\d+\.\d)% \|")


def wait_for_progress(log_path: Path, pct: float, timeout_s: float, proc: subprocess.Popen) -> None:
    """Poll a flow's log until a progress line shows ≥ ``pct`` % of the input read, or the run summary.

    ``timeout_s`` only bounds a failure.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if "IFD run summary" in text or any(float(m) >= pct for m in _PROGRESS_RE.findall(text)):
            return
        assert time.monotonic() < deadline, f"flow not at {pct} % after {timeout_s} s"
        assert proc.poll() is None, f"flow exited ({proc.returncode}) early:\n{text[-3000:]}"
        time.sleep(0.05)


def child_env() -> dict[str, str]:
    """Environment for child processes: no ``IFD_*`` from the caller, no proxy for 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


_CHILD = """
import sys
from pathlib import Path
from models.settings import AlertSettings
from sinks.alerts import AlertDispatcher
from tests.sinks.test_alerts import make_signal

url, outbox, jsonl = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
n, slots = int(sys.argv[4]), int(sys.argv[5])
d = AlertDispatcher(AlertSettings(urls=url, outbox_path=outbox, jsonl_path=jsonl, max_per_minute=100_000,
                                  backoff_initial_s=0.01, timeout_s=600.0,  # a held POST never times out
                                  concurrency=slots, digest_min=0))
for minute in range(n):
    assert d.submit(make_signal(minute=minute))
print("accepted", n, flush=True)
d.flush(600.0)
print("drained", flush=True)
"""


def spawn_dispatcher(url: str, outbox: Path, jsonl: Path, n_signals: int,
                     concurrency: int = 1) -> subprocess.Popen:
    """Start a dispatcher process that submits ``make_signal(minute=0 … n-1)``; returns once all are accepted.

    Raises
    ------
    AssertionError
        The child did not report its signals accepted.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(outbox), str(jsonl), str(n_signals), str(concurrency)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline() if proc.stdout is not None else ""
    if line.split() != ["accepted", str(n_signals)]:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        msg = f"child dispatcher did not accept its signals: {line!r}\n{err[-3000:]}"
        raise AssertionError(msg)
    return proc


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL (``kill -9``) and reap."""
    proc.kill()
    proc.communicate(timeout=30)


def drain(url: str, outbox: Path, jsonl: Path, timeout_s: float = 120.0) -> dict:
    """Start a dispatcher on an existing outbox, wait until it has sent everything; return its stats."""
    settings = AlertSettings(urls=url, outbox_path=outbox, jsonl_path=jsonl, max_per_minute=100_000,
                             backoff_initial_s=0.01, timeout_s=30.0, digest_min=0)
    with AlertDispatcher(settings) as d:
        d.flush(timeout_s)
        return d.stats


def outbox_rows(outbox: Path) -> dict[str, tuple[str, int]]:
    """``alert_key -> (status, attempts)`` read straight from the outbox file."""
    with closing(sqlite3.connect(outbox)) as conn:
        return {k: (s, a) for k, s, a in conn.execute("SELECT alert_key, status, attempts FROM alert_outbox")}


def last_line_per_key(jsonl: Path) -> dict[str, dict]:
    """The JSONL audit file's current state: the last line written for each ``alert_key``."""
    last: dict[str, dict] = {}
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        last[record["alert_key"]] = record
    return last


@pytest.mark.parametrize("concurrency", [1, 4])
def test_dispatcher_killed_mid_delivery_loses_nothing_and_resends_only_the_alerts_in_flight(
        tmp_path, concurrency):
    from tests.sinks.test_alerts import make_signal

    n_signals, kill_after = 20, 7
    outbox, jsonl = tmp_path / "alerts.outbox.sqlite", tmp_path / "alerts.jsonl"
    signals = [make_signal(minute=m) for m in range(n_signals)]
    with SlowWebhook(delay_s=0.1, hold_after=kill_after) as hook:
        proc = spawn_dispatcher(hook.url, outbox, jsonl, n_signals, concurrency)
        hook.wait_for(kill_after + 1, timeout_s=120.0, proc=proc)  # the next ones are held: in flight
        kill_hard(proc)
        sent_before_kill = [post_key(p) for p in hook.posts]
        assert kill_after + 1 <= len(sent_before_kill) <= kill_after + concurrency < n_signals
        hook.release()
        stats = drain(hook.url, outbox, jsonl)
        posts = hook.posts

    counts = Counter(post_key(p) for p in posts)
    expected = [signal_key(s.contract_key, s.window_start) for s in signals]
    assert set(counts) == set(expected)  # none missing, nothing unknown
    twice = {k for k, n in counts.items() if n > 1}
    assert all(n <= 2 for n in counts.values())
    if concurrency == 1:
        assert twice == {sent_before_kill[kill_after]}  # only the one in flight, twice
    else:  # at most `concurrency` in flight, each among those posted before the kill
        assert twice <= set(sent_before_kill) and 1 <= len(twice) <= concurrency
    assert len(twice) <= stats["resent_in_flight"] <= concurrency
    rows = outbox_rows(outbox)
    assert {status for status, _ in rows.values()} == {"delivered"}
    assert sorted(attempts for _, attempts in rows.values()) == (
        [1] * (n_signals - stats["resent_in_flight"]) + [2] * stats["resent_in_flight"])
    if concurrency == 1:
        assert stats["requeued"] == n_signals - kill_after
    else:  # answered posts not yet marked delivered at the kill are re-sent too
        assert n_signals - kill_after <= stats["requeued"] <= n_signals - kill_after + concurrency
    last = last_line_per_key(jsonl)
    assert set(last) == {s.alert_key for s in signals}
    assert {r["status"] for r in last.values()} == {"delivered"}


def test_dataflow_killed_while_alerting_delivers_every_signal_after_a_recovery_restart(tmp_path):
    # The sample's first signals come on days 2 and 4 of 6. The webhook holds the third alert
    # (in flight until the kill: long socket timeout, so no retry), and the next ones wait
    # undelivered while the replay goes on and bytewax commits epochs (-s 1) that contain them.
    # The kill comes once 80 % of the input is read. An in-memory alert queue loses those
    # signals: the resumed run does not emit them again.
    from sinks.clickhouse import ChdbStore

    kill_after = 2
    data_dir, recovery = tmp_path / "data", tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"],
                   cwd=ROOT, env=child_env(), check=True, capture_output=True, timeout=60)
    command = [sys.executable, "-m", "bytewax.run", "flows.ifd", "-r", str(recovery), "-s", "1", "-b", "0"]
    with SlowWebhook(delay_s=0.1, hold_after=kill_after) as hook:
        env = child_env()
        env.update(IFD_DATA_DIR=str(data_dir), IFD_ALERT_URLS=hook.url, IFD_ALERT_MIN_CLASS="MONITOR",
                   IFD_ALERT_MAX_PER_MINUTE="10000", IFD_ALERT_TIMEOUT_S="600", IFD_ALERT_CONCURRENCY="1",
                   IFD_ALERT_DIGEST_MIN="0",
                   IFD_PROGRESS_INTERVAL_S="0.1")
        with (tmp_path / "first.log").open("w") as first_log:
            first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=first_log,
                                     stderr=subprocess.STDOUT)
            try:
                hook.wait_for(kill_after + 1, timeout_s=240.0, proc=first)
                wait_for_progress(tmp_path / "first.log", 80.0, timeout_s=240.0, proc=first)
            finally:
                kill_hard(first)
        hook.release()
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert second.returncode == 0, second.stderr[-4000:]
        posts = hook.posts

    store = ChdbStore(data_dir / "chdb")
    try:
        rows = store.query_arrow(
            "SELECT contract_key, window_start, signal_class FROM ifd.ifd_signals FINAL").to_pylist()
    finally:
        store.close()
    assert {r["signal_class"] for r in rows} <= {"MONITOR", "MODERATE", "STRONG"}
    assert len(rows) > kill_after + 1
    counts = Counter(post_key(p) for p in posts)
    expected = {signal_key(r["contract_key"], r["window_start"]) for r in rows}
    assert len(expected) == len(rows)
    assert set(counts) == expected  # every stored signal alerted, nothing else
    assert {k: n for k, n in counts.items() if n > 1} == {post_key(posts[kill_after]): 2}
    last = last_line_per_key(data_dir / "alerts.jsonl")
    assert len(last) == len(rows) and {r["status"] for r in last.values()} == {"delivered"}


def test_post_key_matches_signal_key_of_the_alerted_signal():
    from sinks.alert_text import alert_body, alert_title
    from tests.sinks.test_alerts import make_signal

    s: Signal = make_signal(minute=3)
    post = {"title": alert_title(s), "message": alert_body(s)}
    expected = (s.contract_key, "2026-11-20 13:50")
    assert post_key(post) == signal_key(s.contract_key, s.window_start) == expected
