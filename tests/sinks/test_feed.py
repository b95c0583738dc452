"""The live signal feed against real WebSocket and HTTP clients (no mocks, no timing asserts)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from contextlib import ExitStack, closing
from datetime import datetime

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from models.settings import FeedSettings
from models.signals import Direction, SignalClass
from sinks.feed import FeedServer
from tests.sinks.test_alerts import make_signal


class _Reader(threading.Thread):
    """One WebSocket client collecting every message until the server closes it."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.url, self.kwargs = url, kwargs
        self.messages: list[dict] = []
        self.close_code: int | None = None
        self.got = threading.Condition()

    def run(self) -> None:
        with connect(self.url, open_timeout=30, **self.kwargs) as ws:  # type: ignore[arg-type]
            try:
                for text in ws:
                    with self.got:
                        self.messages.append(json.loads(text))
                        self.got.notify_all()
            except ConnectionClosed:
                pass
            self.close_code = ws.close_code or -1
        with self.got:
            self.got.notify_all()

    def wait_for(self, n: int, timeout: float = 60.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.messages) >= n or self.close_code is not None,
                                     timeout)


def _server(**overrides: object) -> FeedServer:
    return FeedServer(FeedSettings(port=0, **overrides)).start()  # type: ignore[arg-type]


def _wait_clients(server: FeedServer, n: int) -> None:
    done = threading.Event()
    for _ in range(3000):  # the server registers a client after its handshake
        if server.hub.health()["clients"] >= n:
            return
        done.wait(0.01)
    msg = f"only {server.hub.health()['clients']} of {n} clients registered"
    raise AssertionError(msg)


def _get(server: FeedServer, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=30) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_fifty_clients_receive_every_signal_once_in_order_and_filters_apply():
    server = _server()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        clients = [_Reader(url) for _ in range(50)]
        sells = _Reader(url + "?side=SELL&min_class=MODERATE")
        for c in [*clients, sells]:
            c.start()
        _wait_clients(server, 51)
        signals = [make_signal(minute=i,
                               direction=Direction.SELL if i % 3 == 0 else Direction.BUY,
                               signal_class=[SignalClass.MONITOR, SignalClass.MODERATE,
                                             SignalClass.STRONG][i % 3 if i % 2 else 2])
                   for i in range(120)]
        assert server.hub.publish(signals[:60]) == 60
        assert server.hub.publish(signals[30:]) == 60  # a replayed epoch: the repeats are not resent
        assert server.hub.publish([]) == 0
        for c in clients:
            assert c.wait_for(120)
    finally:
        server.stop()
    expected = [(s.window_start, s.contract_key, s.signal_class.value) for s in signals]
    for c in clients:
        c.join(30)
        got = [(datetime.fromisoformat(m["window_start"]), m["contract_key"], m["signal_class"])
               for m in c.messages]
        assert got == expected  # every signal, once, in publishing order
        assert c.close_code == 1001  # the run ended: going away
    wanted = [s for s in signals if s.direction is Direction.SELL
              and s.signal_class in (SignalClass.MODERATE, SignalClass.STRONG)]
    assert 0 < len(wanted) < 120
    assert [m["window_start"][:16] for m in sells.messages] == [
        s.window_start.strftime("%Y-%m-%dT%H:%M") for s in wanted]


def test_recent_signals_and_health_over_http_with_the_same_filters():
    server = _server(recent=50)
    try:
        signals = [make_signal(minute=i, direction=Direction.SELL if i % 2 else Direction.BUY)
                   for i in range(80)]
        server.hub.publish(signals)
        status, rows = _get(server, "/signals?limit=10&direction=SELL")
        assert status == 200
        kept = [s for s in signals[-50:] if s.direction is Direction.SELL][-10:]
        assert [r["window_start"][:16] for r in rows] == [  # type: ignore[union-attr]
            s.window_start.strftime("%Y-%m-%dT%H:%M") for s in kept]
        status, rows = _get(server, "/signals?underlying=ES")
        assert (status, rows) == (200, [])
        status, body = _get(server, "/signals?side=UP")
        assert status == 400 and "BUY or SELL" in body["error"]  # type: ignore[index]
        status, body = _get(server, "/signals?colour=red")
        assert status == 400 and "unknown filter colour" in body["error"]  # type: ignore[index]
        status, health = _get(server, "/health")
        assert status == 200
        assert health["published"] == 80 and health["clients"] == 0  # type: ignore[index]
        assert health["last_signal_at"] is not None  # type: ignore[index]
        bad = _Reader(f"ws://127.0.0.1:{server.port}/ws?min_class=HUGE")
        bad.start()
        bad.join(30)
        assert bad.close_code == 1008 and bad.messages == []
    finally:
        server.stop()


def test_a_slow_client_is_dropped_and_never_holds_back_the_others():
    server = _server(client_queue=50)
    stack = ExitStack()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        fast = _Reader(url, compression=None)
        fast.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuned buffer
        sock.connect(("127.0.0.1", server.port))
        # max_queue=1: the client stops reading its socket once one message waits unread
        stack.enter_context(connect(url, sock=sock, compression=None, max_queue=1,
                                    open_timeout=30, close_timeout=0.5))
        _wait_clients(server, 2)
        sent = 0
        pad = "x" * 2000
        while server.hub.health()["dropped_clients"] == 0 and sent < 60_000:
            batch = [make_signal(minute=sent + i, reason=pad) for i in range(500)]
            server.hub.publish(batch)
            sent += len(batch)
            assert fast.wait_for(sent)  # the fast client keeps up: its queue never fills
        health = server.hub.health()
        assert health["dropped_clients"] == 1 and health["clients"] == 1
        more = [make_signal(minute=sent + i) for i in range(100)]
        server.hub.publish(more)
        sent += len(more)
        assert fast.wait_for(sent)
    finally:
        server.stop()
        stack.close()
        sock.close()
    fast.join(30)
    assert len(fast.messages) == sent and len({m["window_start"] for m in fast.messages}) == sent


def test_a_taken_port_is_a_clear_error():
    with closing(socket.socket()) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"live feed on 127.0.0.1:{port} failed: .*in use"):
            FeedServer(FeedSettings(port=port)).start()


def test_clients_of_a_running_flow_receive_each_of_its_signals_once(tmp_path):
    """The sample replay (generated) with 50 WebSocket clients connected before it starts."""
    from bytewax.testing import TestingSink, run_main

    from flows.ifd import build_flow
    from models.settings import Settings
    from models.signals import Signal

    server = _server()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        clients = [_Reader(url) for _ in range(50)]
        for c in clients:
            c.start()
        _wait_clients(server, 50)
        out: list[object] = []
        settings = Settings(data_dir=tmp_path, progress_interval_s=0)
        run_main(build_flow(settings, sink=TestingSink(out), alerts=None, feed=server))
        emitted = [o for o in out if isinstance(o, Signal)]
        expected = list(dict.fromkeys(
            (s.window_start, s.contract_key, s.signal_class.value) for s in emitted))
        assert len(expected) >= 10
        for c in clients:
            assert c.wait_for(len(expected))
    finally:
        server.stop()
    for c in clients:
        c.join(30)
        got = [(datetime.fromisoformat(m["window_start"]), m["contract_key"], m["signal_class"])
               for m in c.messages]
        assert got == expected
