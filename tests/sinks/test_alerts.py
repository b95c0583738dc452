"""Alert dispatcher against a real local HTTP server through Apprise's json:// plugin (no mocks)."""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models.errors import ConfigError, SinkFatalError, SinkRetryableError
from models.settings import AlertSettings, load_section, masked
from models.signals import Direction, Signal, SignalClass
from sinks.alert_text import alert_body, alert_title
from sinks.alerts import AlertDispatcher

SECRET = "S3cretTok"
W0 = datetime(2026, 11, 20, 13, 35, tzinfo=UTC)


def make_signal(minute: int = 0, **overrides: object) -> Signal:
    """A STRONG BUY on NQZ6 C21500; ``minute`` shifts the window (a distinct alert_key)."""
    start = W0 + timedelta(minutes=5 * minute)
    fields: dict[str, object] = dict(
        window_start=start, window_end=start + timedelta(minutes=5),
        contract_key="NQZ6|2026-12-18T21:30:00Z|C|21500", instrument_id=42_001,
        symbol="NQZ6 C21500", underlying="NQZ6", expiration=datetime(2026, 12, 18, 21, 30, tzinfo=UTC),
        strike=21_500.0, option_type="C", direction=Direction.BUY, signal_class=SignalClass.STRONG,
        confidence=0.91, bid_volume=40, ask_volume=1_160, total_volume=1_200, total_trades=12,
        avg_trade_size=100.0, volume_z=6.5, dominance=0.97, size_ratio=25.0, sample_factor=1.0,
        mm_score=0.05, baseline_scope="contract", baseline_windows=48, baseline_volume=80.0,
        baseline_avg_size=4.0, reason="ask-side sweep: 1,200 lots in 12 prints, 25x usual size",
    )
    fields.update(overrides)
    return Signal(**fields)  # type: ignore[arg-type]


class _Recorder(BaseHTTPRequestHandler):
    """/ok → 200, /fail → 500, /slow → 200 after 1 s, /pair → 200 once two are open (else 500 after
    60 s); every POST is recorded."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.requests.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        status = 500 if self.path.startswith("/fail") else 200
        if self.path.startswith("/pair"):  # answered only once two POSTs are open at the same time
            try:
                server.pair.wait(timeout=60.0)  # type: ignore[attr-defined]
            except threading.BrokenBarrierError:
                status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Server:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.port = httpd.server_address[1]

    def url(self, path: str, auth: str = "") -> str:
        return f"json://{auth}127.0.0.1:{self.port}/{path}"

    def posts(self, path: str) -> list[dict]:
        with self.httpd.lock:  # type: ignore[attr-defined]
            return [json.loads(b) for p, _, b in self.httpd.requests if p == f"/{path}"]  # type: ignore[attr-defined]

    def headers(self, path: str) -> list[dict]:
        with self.httpd.lock:  # type: ignore[attr-defined]
            return [h for p, h, _ in self.httpd.requests if p == f"/{path}"]  # type: ignore[attr-defined]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()  # type: ignore[attr-defined]
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.pair = threading.Barrier(2)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Server(httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def dispatcher(tmp_path):
    """Factory: ``dispatcher(urls=..., **settings)``; every dispatcher is closed at teardown."""
    made: list[AlertDispatcher] = []

    def make(**kwargs: object) -> AlertDispatcher:
        kwargs.setdefault("jsonl_path", tmp_path / "alerts.jsonl")
        kwargs.setdefault("backoff_initial_s", 0.01)
        kwargs.setdefault("timeout_s", 5.0)
        kwargs.setdefault("digest_min", 0)  # one message per signal unless a test asks for digests
        d = AlertDispatcher(AlertSettings(**kwargs))  # type: ignore[arg-type]
        made.append(d)
        return d

    yield make
    for d in made:
        d.close(timeout_s=5.0)


def _jsonl(tmp_path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _final(tmp_path) -> list[dict]:
    """The JSONL lines written when an alert was done (every line but the ``pending`` ones), in order."""
    return [line for line in _jsonl(tmp_path) if line["status"] != "pending"]


def _outbox_rows(path) -> dict[str, tuple[str, int]]:
    """``alert_key -> (status, attempts)`` read straight from an outbox file."""
    with closing(sqlite3.connect(path)) as conn:
        return {k: (s, a) for k, s, a in conn.execute("SELECT alert_key, status, attempts FROM alert_outbox")}


def test_strong_signal_posts_symbol_and_reason_and_writes_pending_then_delivered_jsonl_lines(
    server, dispatcher, tmp_path
):
    d = dispatcher(urls=server.url("ok"))
    signal = make_signal()
    assert d.submit(signal) is True
    d.flush(5.0)

    posts = server.posts("ok")
    assert len(posts) == 1
    assert posts[0]["title"] == "IFD STRONG BUY NQZ6 C21500 2026-11-20 13:35Z"
    assert "NQZ6 C21500" in posts[0]["message"]
    assert signal.reason in posts[0]["message"]
    assert posts[0]["type"] == "warning"  # STRONG → Apprise WARNING
    pending, done = _jsonl(tmp_path)
    assert pending["status"] == "pending" and pending["delivered"] is False
    assert pending["alert_key"] == done["alert_key"] == signal.alert_key
    assert done["contract_key"] == signal.contract_key
    assert done["status"] == "delivered" and done["delivered"] is True
    assert done["channels"] == {"json://***": True}
    assert datetime.fromisoformat(done["alerted_at"]).tzinfo is not None
    stats = d.stats
    assert stats["submitted"] == 1 and stats["delivered"] == 1
    assert stats["failed"] == {"json://***": 0} and stats["retried"] == 0
    assert d.outbox_counts()["delivered"] == 1
    assert _outbox_rows(tmp_path / "alerts.outbox.sqlite") == {signal.alert_key: ("delivered", 1)}


def test_duplicate_alert_key_is_delivered_once(server, dispatcher, tmp_path):
    d = dispatcher(urls=server.url("ok"))
    assert d.submit(make_signal()) is True
    assert d.submit(make_signal()) is False  # equal signal, same alert_key
    assert d.submit(make_signal(confidence=0.99)) is False  # rescored replay of the same window
    d.flush(5.0)
    assert len(server.posts("ok")) == 1
    assert len(_jsonl(tmp_path)) == 2  # pending + delivered of the one accepted signal
    assert d.stats["duplicates"] == 2 and d.stats["submitted"] == 1
    assert not d._accepted  # the in-memory copies of committed signals were all taken  # noqa: SLF001


def test_a_restarted_dispatcher_does_not_re_alert_what_the_outbox_records(server, dispatcher,
                                                                           tmp_path):
    first = dispatcher(urls=server.url("ok"))
    assert first.submit(make_signal(minute=1))
    first.close()
    again = dispatcher(urls=server.url("ok"))  # same outbox file: a restart or a replay
    assert again.submit(make_signal(minute=1)) is False
    assert again.submit(make_signal(minute=2)) is True
    again.flush(5.0)
    assert len(server.posts("ok")) == 2
    assert again.stats["duplicates"] == 1 and again.stats["requeued"] == 0
    starts = [line["window_start"] for line in _final(tmp_path)]
    assert starts == [make_signal(minute=m).model_dump(mode="json")["window_start"] for m in (1, 2)]


@pytest.mark.parametrize(
    ("min_class", "sent", "ignored"),
    [
        ("STRONG", [SignalClass.STRONG], [SignalClass.MODERATE, SignalClass.MONITOR]),
        ("MODERATE", [SignalClass.STRONG, SignalClass.MODERATE], [SignalClass.MONITOR]),
    ],
)
def test_signals_below_min_class_are_neither_sent_nor_logged(
    server, dispatcher, tmp_path, min_class, sent, ignored
):
    d = dispatcher(urls=server.url("ok"), min_class=min_class)
    for i, cls in enumerate(ignored):
        assert d.submit(make_signal(minute=i, signal_class=cls)) is False
    for i, cls in enumerate(sent, start=10):
        assert d.submit(make_signal(minute=i, signal_class=cls)) is True
    d.flush(5.0)
    assert sorted(p["title"].split()[1] for p in server.posts("ok")) == sorted(c.value for c in sent)
    assert sorted(line["signal_class"] for line in _final(tmp_path)) == sorted(c.value for c in sent)
    assert d.stats["below_min_class"] == len(ignored)


def test_failing_channel_is_retried_max_attempts_then_counted_and_ok_channel_still_gets_alert(
    server, dispatcher, tmp_path
):
    d = dispatcher(urls=f"{server.url('ok')},{server.url('fail')}", max_attempts=3)
    assert d.channel_labels == ["json://***", "json://***#2"]
    assert d.submit(make_signal()) is True
    d.flush(5.0)

    assert len(server.posts("fail")) == 3  # every attempt reached the server
    assert len(server.posts("ok")) == 1
    stats = d.stats
    assert stats["failed"] == {"json://***": 0, "json://***#2": 1}
    assert stats["retried"] == 2
    assert stats["delivered"] == 1 and stats["undelivered"] == 0
    (line,) = _final(tmp_path)
    assert line["status"] == "delivered"
    assert line["channels"] == {"json://***": True, "json://***#2": False}


def test_only_failing_channel_marks_the_alert_failed_never_raises_and_a_restart_does_not_retry(
    server, dispatcher, tmp_path
):
    d = dispatcher(urls=server.url("fail"), max_attempts=2)
    assert d.submit(make_signal()) is True
    d.flush(5.0)
    assert len(server.posts("fail")) == 2
    assert d.stats["undelivered"] == 1 and d.stats["failed"] == {"json://***": 1}
    assert _final(tmp_path)[0]["status"] == "failed"
    d.close(timeout_s=5.0)
    again = dispatcher(urls=server.url("fail"), max_attempts=2)
    again.flush(5.0)
    assert again.stats["requeued"] == 0 and again.outbox_counts()["failed"] == 1
    assert len(server.posts("fail")) == 2  # failed after all attempts: not sent again


def test_rate_limit_two_per_minute_sends_two_of_five_and_counts_three(server, dispatcher, tmp_path):
    d = dispatcher(urls=server.url("ok"), max_per_minute=2)
    assert all(d.submit(make_signal(minute=i)) for i in range(5))
    d.flush(5.0)
    assert len(server.posts("ok")) == 2
    stats = d.stats
    assert stats["delivered"] == 2 and stats["rate_limited"] == 3
    final = {line["alert_key"]: line for line in _final(tmp_path)}
    statuses = [final[make_signal(minute=i).alert_key]["status"] for i in range(5)]
    assert statuses == ["delivered"] * 2 + ["rate_limited"] * 3  # the first two: not lost, audited
    assert all(final[make_signal(minute=i).alert_key]["delivered"] is False for i in range(2, 5))
    assert d.outbox_counts()["rate_limited"] == 3


def test_secret_in_url_never_reaches_logs_repr_stats_or_jsonl(server, dispatcher, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    urls = f"{server.url('ok')},{server.url('fail', auth=f'user:{SECRET}@')}"
    settings = AlertSettings(urls=urls, jsonl_path=tmp_path / "alerts.jsonl", backoff_initial_s=0.01,
                             max_attempts=2)
    d = AlertDispatcher(settings)
    try:
        assert d.submit(make_signal()) is True
        d.flush(5.0)
    finally:
        d.close(timeout_s=5.0)

    # the secret was really used (HTTP basic auth), so the check below is meaningful
    sent_auth = server.headers("fail")[0]["Authorization"]
    assert base64.b64decode(sent_auth.split()[1]).decode() == f"user:{SECRET}"
    assert any(r.name == "apprise" for r in caplog.records), "apprise DEBUG logs were not captured"
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in json.dumps(masked(settings), default=str)
    assert SECRET not in repr(d.stats)
    assert SECRET not in (tmp_path / "alerts.jsonl").read_text()
    outbox_files = list(tmp_path.glob("alerts.outbox.sqlite*"))
    assert tmp_path / "alerts.outbox.sqlite" in outbox_files
    assert all(SECRET.encode() not in f.read_bytes() for f in outbox_files)
    assert d.stats["failed"] == {"json://***": 0, "json://***#2": 1}


def test_secret_in_slack_style_path_is_scrubbed_from_apprise_debug_logs(server, dispatcher, caplog):
    caplog.set_level(logging.DEBUG)
    token = "T0ken1234567890abcdef"
    d = dispatcher(urls=server.url(f"hooks/{token}"))
    d.submit(make_signal())
    d.flush(5.0)
    assert len(server.headers(f"hooks/{token}")) == 1
    assert token not in caplog.text
    assert "JSON POST URL" in caplog.text  # apprise did log the URL, with the token masked


def test_invalid_url_raises_config_error_without_the_secret(tmp_path):
    with pytest.raises(ConfigError) as err:
        AlertDispatcher(AlertSettings(urls=f"nosuchscheme://user:{SECRET}@host/x", jsonl_path=None))
    assert "IFD_ALERT_URLS entry #1 (nosuchscheme://***)" in str(err.value)
    assert SECRET not in str(err.value)


def test_submit_never_blocks_on_a_slow_endpoint(server, dispatcher):
    # one delivery goes out (1 s server delay), the other 19 are rate-limited after it
    d = dispatcher(urls=server.url("slow"), max_per_minute=1)
    started = time.perf_counter()
    accepted = [d.submit(make_signal(minute=i)) for i in range(20)]
    elapsed = time.perf_counter() - started
    assert all(accepted)
    assert elapsed < 0.5, f"20 submits took {elapsed:.3f} s"
    d.flush(10.0)
    assert d.stats["delivered"] == 1 and d.stats["rate_limited"] == 19


def test_queue_size_only_sets_the_prefetch_and_nothing_is_dropped_behind_a_slow_channel(
    server, dispatcher
):
    d = dispatcher(urls=server.url("slow"), queue_size=2, max_per_minute=1, jsonl_path=None)
    started = time.perf_counter()
    results = [d.submit(make_signal(minute=i)) for i in range(20)]
    assert time.perf_counter() - started < 0.5
    assert all(results) and d.stats["submitted"] == 20  # the outbox is the queue
    d.flush(10.0)
    assert d.stats["delivered"] == 1 and d.stats["rate_limited"] == 19
    assert len(server.posts("slow")) == 1


def test_flush_timeout_raises_retryable_and_close_is_idempotent(server, dispatcher):
    d = dispatcher(urls=server.url("slow"))
    d.submit(make_signal())
    with pytest.raises(SinkRetryableError, match="1 signal"):
        d.flush(0.05)
    d.close(timeout_s=5.0)
    d.close(timeout_s=5.0)
    assert d.stats["delivered"] == 1
    assert d.submit(make_signal(minute=1)) is False and d.stats["rejected_closed"] == 1


def test_without_urls_alerts_only_go_to_jsonl(dispatcher, tmp_path):
    d = dispatcher()
    assert d.submit(make_signal()) is True
    d.flush(5.0)
    (line,) = _final(tmp_path)
    assert line["status"] == "jsonl_only" and line["delivered"] is False
    assert d.outbox_counts()["jsonl_only"] == 1


def test_settings_from_environment_split_urls_and_name_bad_variables(monkeypatch):
    monkeypatch.setenv(
        "IFD_ALERT_URLS",
        f" json://h:1/a , mailto://u:{SECRET}@gmail.com?to=a@x.com,b@x.com,slack://A/B/C ",
    )
    monkeypatch.setenv("IFD_ALERT_MAX_PER_MINUTE", "5")
    s = load_section(AlertSettings, )
    assert s.url_list() == [
        "json://h:1/a", f"mailto://u:{SECRET}@gmail.com?to=a@x.com,b@x.com", "slack://A/B/C",
    ]
    assert s.channel_labels() == ["json://***", "mailto://***", "slack://***"]
    assert s.max_per_minute == 5 and s.min_class == "STRONG"

    monkeypatch.setenv("IFD_ALERT_MIN_CLASS", "HUGE")
    with pytest.raises(ConfigError, match="IFD_ALERT_MIN_CLASS='HUGE'"):
        load_section(AlertSettings, )


def test_title_and_body_carry_the_key_numbers():
    s = make_signal()
    assert alert_title(s) == "IFD STRONG BUY NQZ6 C21500 2026-11-20 13:35Z"
    body = alert_body(s)
    assert body.startswith(s.reason)
    for text in ("NQZ6|2026-12-18T21:30:00Z|C|21500", "confidence 0.91", "volume 1,200",
                 "ask 1,160", "expires 2026-12-18", "2026-11-20 13:35-13:40Z"):
        assert text in body


def test_outbox_defaults_beside_the_jsonl_file_and_empty_paths_mean_off(monkeypatch, tmp_path):
    assert AlertSettings(jsonl_path=tmp_path / "alerts.jsonl").outbox_file() == (
        tmp_path / "alerts.outbox.sqlite")
    assert AlertSettings(jsonl_path=None, outbox_path=tmp_path / "o.db").outbox_file() == tmp_path / "o.db"
    assert AlertSettings(jsonl_path=None).outbox_file() is None  # in memory
    monkeypatch.setenv("IFD_ALERT_JSONL_PATH", "")
    monkeypatch.setenv("IFD_ALERT_OUTBOX_PATH", str(tmp_path / "env.sqlite"))
    s = load_section(AlertSettings, )
    assert s.jsonl_path is None and s.outbox_file() == tmp_path / "env.sqlite"
    assert masked(s)["outbox_path"] == tmp_path / "env.sqlite"


def test_in_memory_outbox_without_paths_still_delivers_and_de_duplicates(server, dispatcher, tmp_path):
    d = dispatcher(urls=server.url("ok"), jsonl_path=None)
    assert d.submit(make_signal()) is True
    assert d.submit(make_signal()) is False
    d.flush(5.0)
    assert len(server.posts("ok")) == 1 and d.outbox_counts()["delivered"] == 1
    assert list(tmp_path.iterdir()) == []  # no file of any kind


def test_alert_left_in_flight_by_a_killed_process_is_sent_again_at_start(server, dispatcher, tmp_path):
    first = dispatcher(urls=server.url("ok"))
    for minute in range(3):
        assert first.submit(make_signal(minute=minute))
    first.close(timeout_s=5.0)
    outbox = tmp_path / "alerts.outbox.sqlite"
    key = make_signal(minute=1).alert_key
    # what a process killed during the POST leaves behind
    with closing(sqlite3.connect(outbox)) as conn, conn:
        conn.execute("UPDATE alert_outbox SET status = 'in_flight' WHERE alert_key = ?", (key,))

    again = dispatcher(urls=server.url("ok"))
    again.flush(5.0)
    assert again.stats["requeued"] == 1 and again.stats["resent_in_flight"] == 1
    titles = [p["title"] for p in server.posts("ok")]
    assert len(titles) == 4 and titles.count(alert_title(make_signal(minute=1))) == 2
    assert _outbox_rows(outbox)[key] == ("delivered", 2)
    assert [line["status"] for line in _jsonl(tmp_path) if line["alert_key"] == key][-1] == "delivered"


def test_close_with_a_slow_channel_leaves_the_rest_pending_for_the_next_start(server, dispatcher,
                                                                                tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sinks.alerts")
    first = dispatcher(urls=server.url("slow"), concurrency=1)  # one at a time: 3 s for all three
    for minute in range(3):
        assert first.submit(make_signal(minute=minute))
    started = time.perf_counter()
    first.close(timeout_s=0.2)  # the first POST takes 1 s
    assert time.perf_counter() - started < 5.0
    left = re.search(r"(\d) undelivered alert\(s\) stay in the outbox", caplog.text)
    assert left is not None and 1 <= int(left[1]) <= 3

    deadline = time.monotonic() + 30.0
    while True:  # the worker releases the outbox once its POST is answered
        try:
            again = dispatcher(urls=server.url("slow"))
            break
        except SinkFatalError:
            assert time.monotonic() < deadline, "outbox still held 30 s after close"
            time.sleep(0.05)
    again.flush(15.0)
    assert sorted(p["title"] for p in server.posts("slow")) == sorted(
        alert_title(make_signal(minute=m)) for m in range(3))
    assert again.outbox_counts()["delivered"] == 3


def test_one_dispatcher_per_outbox_and_a_notices_only_one_beside_it(server, dispatcher, tmp_path):
    owner = dispatcher(urls=server.url("ok"))
    with pytest.raises(SinkFatalError, match="in use by another dispatcher"):
        AlertDispatcher(AlertSettings(urls=server.url("ok"), jsonl_path=tmp_path / "alerts.jsonl"))
    notices = AlertDispatcher(
        AlertSettings(urls=server.url("ops"), jsonl_path=tmp_path / "alerts.jsonl"), notices_only=True)
    try:
        assert notices.notify("budget-1", "IFD live budget reached", "80 % used") is True
        assert notices.notify("budget-1", "IFD live budget reached", "again") is False
        with pytest.raises(RuntimeError, match="notices_only"):
            notices.submit(make_signal())
        notices.flush(5.0)
        assert notices.outbox_counts() == dict.fromkeys(notices.outbox_counts(), 0)
    finally:
        notices.close(timeout_s=5.0)
    assert [p["title"] for p in server.posts("ops")] == ["IFD live budget reached"]
    assert notices.stats["notices_delivered"] == 1
    elsewhere = tmp_path / "elsewhere"
    AlertDispatcher(AlertSettings(jsonl_path=elsewhere / "alerts.jsonl"), notices_only=True).close()
    assert not elsewhere.exists()  # never touches the outbox or the JSONL file
    assert owner.submit(make_signal()) is True
    owner.flush(5.0)
    assert len(server.posts("ok")) == 1
    assert len(_final(tmp_path)) == 1  # the notice is not in the signals' audit file


def test_a_new_outbox_imports_alerts_recorded_by_the_jsonl_only_dispatcher(server, dispatcher, tmp_path):
    old = make_signal(minute=4).model_dump(mode="json")  # a line as the earlier version wrote it
    old.update(alerted_at="2026-11-20T13:41:00+00:00", status="delivered", delivered=True,
               channels={"json://***": True})
    (tmp_path / "alerts.jsonl").write_text(json.dumps(old) + "\n" + "not json\n")
    d = dispatcher(urls=server.url("ok"))
    assert d.stats["jsonl_imported"] == 1 and d.stats["jsonl_unreadable_lines"] == 1
    assert d.submit(make_signal(minute=4)) is False  # alerted before the upgrade
    assert d.submit(make_signal(minute=5)) is True
    d.flush(5.0)
    assert [p["title"] for p in server.posts("ok")] == [alert_title(make_signal(minute=5))]


def test_a_burst_of_signals_is_delivered_concurrently(server, dispatcher):
    # /pair answers a POST only while another is open: serial delivery would fail both
    d = dispatcher(urls=server.url("pair"), concurrency=2, max_attempts=1, timeout_s=120.0,
                   max_per_minute=100)
    for minute in range(4):
        assert d.submit(make_signal(minute=minute))
    d.flush(300.0)
    assert d.stats["delivered"] == 4 and d.stats["undelivered"] == 0
    assert sorted(p["title"] for p in server.posts("pair")) == sorted(
        alert_title(make_signal(minute=m)) for m in range(4))
    assert d.outbox_counts()["delivered"] == 4


def _signals_in(post: dict) -> list[str]:
    """Signal titles a POST carries: its title, or one per line of a digest."""
    if re.fullmatch(r"IFD \d+ signals \(.*\) .*Z", post["title"]):
        return [line.split(" | ")[0] for line in post["message"].splitlines()]
    return [post["title"]]


def test_a_burst_goes_out_as_digests_and_every_signal_is_delivered_once(server, dispatcher, tmp_path):
    d = dispatcher(urls=server.url("ok"), digest_min=5, digest_max=5, concurrency=1, max_per_minute=3,
                   min_class="MONITOR")
    signals = [make_signal(minute=i, signal_class=SignalClass.MODERATE if i % 3 else SignalClass.STRONG)
               for i in range(12)]
    assert d.submit_many(signals) == [True] * 12  # one transaction: the worker sees all twelve
    d.flush(10.0)
    posts = server.posts("ok")
    # 12 waiting: a digest of 5, then 7 waiting: a digest of 5, then 2 singles; the rate limit
    # (3 messages a minute) counts a digest once, so the last single is rate-limited
    assert [len(_signals_in(p)) for p in posts] == [5, 5, 1]
    sent = [t for p in posts for t in _signals_in(p)]
    assert sorted(sent) == sorted(alert_title(s) for s in signals[:11])  # the first eleven, once each
    assert posts[0]["title"].startswith("IFD 5 signals (") and "STRONG" in posts[0]["title"]
    stats = d.stats
    assert stats["delivered"] == 11 and stats["rate_limited"] == 1 and stats["digests"] == 2
    final = {line["alert_key"]: line["status"] for line in _final(tmp_path)}
    assert final == {s.alert_key: ("rate_limited" if i == 11 else "delivered")
                     for i, s in enumerate(signals)}
    assert d.outbox_counts()["delivered"] == 11


def test_submit_many_reports_each_signal_and_skips_duplicates_and_lower_classes(server, dispatcher):
    d = dispatcher(urls=server.url("ok"), min_class="MODERATE", digest_min=5)
    low = make_signal(minute=1, signal_class=SignalClass.MONITOR)
    assert d.submit_many([make_signal(0), low, make_signal(0), make_signal(2)]) == [True, False, False, True]
    d.flush(10.0)
    assert d.stats["duplicates"] == 1 and d.stats["below_min_class"] == 1
    assert sorted(p["title"] for p in server.posts("ok")) == sorted(
        alert_title(make_signal(m)) for m in (0, 2))  # two waiting: below digest_min, one each


def test_alert_sink_waits_a_bounded_time_for_the_delivery_of_what_it_committed(server, dispatcher):
    from sinks.bytewax_sink import _AlertPartition

    fast = dispatcher(urls=server.url("ok"))
    _AlertPartition(fast, first_wait_s=30.0).write_batch([make_signal()])
    assert fast.stats["delivered"] == 1  # returned once delivered, not after the bound
    slow = dispatcher(urls=server.url("slow"), outbox_path=None, jsonl_path=None)
    _AlertPartition(slow, first_wait_s=0.01).write_batch([make_signal(minute=1)])
    assert slow.wait_delivered(0.0) is False  # the bound passed: still in delivery, not lost
    assert slow.wait_delivered(30.0) is True and slow.stats["delivered"] == 1
