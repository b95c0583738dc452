"""Live signal feed: every scored signal pushed over a WebSocket, plus a small JSON API.

Started by ``ifd run --serve`` (or ``IFD_FEED_ENABLED=true``) in the process that owns the
flow's ``feed`` sink partition; Starlette app served by uvicorn on its own thread and event
loop, so neither a client nor the server ever waits on the dataflow or slows it.

Endpoints (``IFD_FEED_HOST``:``IFD_FEED_PORT``, default 127.0.0.1:8765):

| endpoint         | what                                                                      |
|------------------|---------------------------------------------------------------------------|
| ``ws://…/ws``    | each signal as one JSON text message, as it is scored                     |
| ``GET /signals`` | the latest signals (up to ``IFD_FEED_RECENT`` kept), oldest first;        |
|                  | ``limit`` (default 100)                                                   |
| ``GET /health``  | ``status``, ``clients``, ``published``, ``dropped_clients``,              |
|                  | ``last_signal_at``, ``uptime_s``                                          |

Both ``/ws`` and ``/signals`` take the same query-string filters (all optional, combined with
AND): ``underlying`` (prefix, e.g. ``NQ``), ``symbol`` (exact), ``option_type`` (``C``/``P``/
``F``), ``direction`` or ``side`` (``BUY``/``SELL``), ``min_class`` (``MONITOR`` <
``MODERATE`` < ``STRONG``), ``signal_class`` (comma list), ``expiration`` (``YYYY-MM-DD``, UTC
date), ``strike`` (USD index points). A bad filter gets HTTP 400 (``/signals``) or close code
1008 with the reason (``/ws``).

A message is the signal's fields as :class:`models.signals.Signal` serialises them to JSON
(times ISO 8601 UTC). Each signal is published once: a repeat of the same (window, contract,
class), as a replayed epoch re-emits after a restart, is not sent again; a late correction whose
class rose is a new message.

Back-pressure: a client that still has more than ``IFD_FEED_CLIENT_QUEUE`` messages waiting
when new signals are published is dropped (close code 1008, "too slow"), counted in
``dropped_clients``; publishing never waits for a client. One burst larger than the limit (a
replay closing many windows at once) does not drop a client that keeps up. Memory per client is
bounded by the limit plus one burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from models.settings import FeedSettings
from models.signals import Signal, SignalClass

log = logging.getLogger(__name__)

CLASS_RANK = {SignalClass.MONITOR.value: 0, SignalClass.MODERATE.value: 1,
              SignalClass.STRONG.value: 2}
_SEEN_KEYS = 100_000
"""Signal identities remembered for de-duplication."""


class FilterError(ValueError):
    """A query-string filter the feed cannot read (the message names it)."""


class SignalFilter:
    """Which signals one client (or one ``GET /signals``) wants; built from query parameters.

    Raises
    ------
    FilterError
        An unknown parameter or a value that does not parse.
    """

    KNOWN = ("underlying", "symbol", "option_type", "direction", "side", "min_class",
             "signal_class", "expiration", "strike", "limit")

    def __init__(self, params: dict[str, str]) -> None:
        unknown = sorted(set(params) - set(self.KNOWN))
        if unknown:
            msg = f"unknown filter {', '.join(unknown)}; known: {', '.join(self.KNOWN)}"
            raise FilterError(msg)
        self.underlying = params.get("underlying") or None
        self.symbol = params.get("symbol") or None
        self.option_type = (params.get("option_type") or "").upper() or None
        direction = (params.get("direction") or params.get("side") or "").upper() or None
        if direction not in (None, "BUY", "SELL"):
            msg = f"direction must be BUY or SELL, got {direction!r}"
            raise FilterError(msg)
        self.direction = direction
        min_class = (params.get("min_class") or "").upper() or None
        if min_class is not None and min_class not in CLASS_RANK:
            msg = f"min_class must be one of {', '.join(CLASS_RANK)}, got {min_class!r}"
            raise FilterError(msg)
        self.min_rank = CLASS_RANK[min_class] if min_class else None
        classes = [c.strip().upper() for c in (params.get("signal_class") or "").split(",")
                   if c.strip()]
        if any(c not in CLASS_RANK for c in classes):
            msg = f"signal_class must list {', '.join(CLASS_RANK)}, got {params['signal_class']!r}"
            raise FilterError(msg)
        self.classes = set(classes) or None
        self.expiration: date | None = None
        if params.get("expiration"):
            try:
                self.expiration = date.fromisoformat(params["expiration"])
            except ValueError:
                msg = f"expiration must be YYYY-MM-DD, got {params['expiration']!r}"
                raise FilterError(msg) from None
        self.strike: float | None = None
        if params.get("strike"):
            try:
                self.strike = float(params["strike"])
            except ValueError:
                msg = f"strike must be a number (USD index points), got {params['strike']!r}"
                raise FilterError(msg) from None

    def __call__(self, row: dict[str, Any]) -> bool:
        """Return True when the signal ``row`` (:meth:`Signal.model_dump`, JSON mode) passes."""
        if self.underlying and not str(row["underlying"]).startswith(self.underlying):
            return False
        if self.symbol and row["symbol"] != self.symbol:
            return False
        if self.option_type and row["option_type"] != self.option_type:
            return False
        if self.direction and row["direction"] != self.direction:
            return False
        rank = CLASS_RANK.get(row["signal_class"], -1)
        if self.min_rank is not None and rank < self.min_rank:
            return False
        if self.classes and row["signal_class"] not in self.classes:
            return False
        if self.expiration and (row["expiration"] is None
                                or row["expiration"][:10] != self.expiration.isoformat()):
            return False
        return not (self.strike is not None and (row["strike"] is None
                                                 or abs(row["strike"] - self.strike) > 1e-9))


class _Client:
    def __init__(self, websocket: Any, wanted: SignalFilter, size: int) -> None:
        self.websocket = websocket
        self.wanted = wanted
        self.queue: asyncio.Queue[str] = asyncio.Queue()  # bounded by SignalHub._fan_out
        self.dropped = False


class SignalHub:
    """Fan-out of published signals to connected clients, and the recent-signal memory.

    :meth:`publish` is called from the dataflow's thread and never blocks; everything touching
    clients runs on the server's event loop (:meth:`attach`).

    Parameters
    ----------
    recent : int
        Signals kept for ``GET /signals``.
    client_queue : int
        Messages one client may still have waiting at a publish before it is dropped.
    """

    def __init__(self, recent: int = 10_000, client_queue: int = 1000) -> None:
        self.client_queue = client_queue
        self._recent: deque[tuple[dict[str, Any], str]] = deque(maxlen=recent)
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[_Client] = set()
        self.published = 0
        self.dropped_clients = 0
        self.last_signal_at: datetime | None = None
        self.started = time.monotonic()

    # --- the dataflow's side ------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the hub to the server's event loop (before the first publish)."""
        self._loop = loop

    def publish(self, signals: Iterable[Signal]) -> int:
        """Queue ``signals`` for every client that wants them; return how many were new."""
        fresh = []
        with self._lock:
            for signal in signals:
                key = (signal.alert_key, signal.signal_class.value)
                if key in self._seen:
                    continue
                self._seen[key] = None
                if len(self._seen) > _SEEN_KEYS:
                    self._seen.popitem(last=False)
                row = signal.model_dump(mode="json")
                item = (row, json.dumps(row, separators=(",", ":")))
                self._recent.append(item)
                fresh.append(item)
            self.published += len(fresh)
            if fresh:
                self.last_signal_at = datetime.now(UTC)
        if fresh and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                self._loop.call_soon_threadsafe(self._fan_out, fresh)
        return len(fresh)

    def recent(self, wanted: SignalFilter, limit: int) -> list[dict[str, Any]]:
        """Return the newest ``limit`` remembered signals ``wanted`` accepts, oldest first."""
        with self._lock:
            rows = [row for row, _ in self._recent if wanted(row)]
        return rows[-limit:] if limit > 0 else []

    def health(self) -> dict[str, Any]:
        """Counters for ``GET /health``."""
        return {"status": "ok", "clients": len(self._clients), "published": self.published,
                "dropped_clients": self.dropped_clients,
                "last_signal_at": None if self.last_signal_at is None
                else self.last_signal_at.isoformat(),
                "uptime_s": round(time.monotonic() - self.started, 3)}

    # --- the event loop's side ----------------------------------------------------------------

    def _fan_out(self, items: list[tuple[dict[str, Any], str]]) -> None:
        for client in list(self._clients):
            if client.dropped:
                continue
            if client.queue.qsize() > self.client_queue:  # still behind since the last publish
                self._drop(client)
                continue
            for row, text in items:  # a burst larger than the limit is fine for a fast client
                if client.wanted(row):
                    client.queue.put_nowait(text)

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        self.dropped_clients += 1
        self._clients.discard(client)
        log.warning("feed: dropped a client that read too slowly (%d messages waiting)",
                    client.queue.qsize())
        while not client.queue.empty():  # free its backlog now
            client.queue.get_nowait()
        asyncio.ensure_future(_close(client.websocket, 1008, "too slow: messages piled up"))

    async def serve_client(self, websocket: Any, wanted: SignalFilter) -> None:
        """Send ``websocket`` the signals ``wanted`` accepts until it leaves or is dropped."""
        client = _Client(websocket, wanted, self.client_queue)
        self._clients.add(client)
        receiver = asyncio.ensure_future(_until_disconnect(websocket))
        try:
            while not client.dropped:
                getter = asyncio.ensure_future(client.queue.get())
                done, _ = await asyncio.wait({getter, receiver},
                                             return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:
                    getter.cancel()
                    break
                await websocket.send_text(getter.result())
        except Exception:  # noqa: BLE001 - a client that vanished mid-send just leaves
            log.debug("feed: a client left", exc_info=True)
        finally:
            receiver.cancel()
            self._clients.discard(client)

    async def drain(self) -> None:
        """Wait until every connected client has been sent what is queued for it."""
        while any(not c.dropped and not c.queue.empty() for c in self._clients):
            await asyncio.sleep(0.01)

    async def close_all(self) -> None:
        """Close every client connection (code 1001, going away)."""
        for client in list(self._clients):
            await _close(client.websocket, 1001, "feed closed: the run ended")


async def _close(websocket: Any, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)


async def _until_disconnect(websocket: Any) -> None:
    """Read (and ignore) what the client sends, returning when it disconnects."""
    from starlette.websockets import WebSocketDisconnect

    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()


def build_app(hub: SignalHub, max_clients: int = 200) -> Any:
    """Return the Starlette application of the feed (routes in the module docstring)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def signals(request: Request) -> JSONResponse:
        params = dict(request.query_params)
        try:
            wanted = SignalFilter(params)
            limit = int(params.get("limit", "100"))
        except (FilterError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(hub.recent(wanted, limit))

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse(hub.health())

    async def feed(websocket: WebSocket) -> None:
        params = dict(websocket.query_params)
        params.pop("limit", None)
        await websocket.accept()
        try:
            wanted = SignalFilter(params)
        except FilterError as exc:
            await websocket.close(code=1008, reason=str(exc)[:120])
            return
        if len(hub._clients) >= max_clients:  # noqa: SLF001 - the app is the hub's own front
            await websocket.close(code=1013, reason=f"feed full: {max_clients} clients")
            return
        await hub.serve_client(websocket, wanted)

    return Starlette(routes=[Route("/signals", signals), Route("/health", health),
                             WebSocketRoute("/ws", feed)])


class FeedServer:
    """The feed's uvicorn server on its own thread and event loop.

    Parameters
    ----------
    settings : FeedSettings
        Host, port (0 = any free port; :attr:`port` tells which), queue sizes.
    """

    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings
        self.hub = SignalHub(settings.recent, settings.client_queue)
        self.port = settings.port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 30.0) -> FeedServer:
        """Start serving; return once the socket listens.

        The socket is bound here, so a taken port or a bad host fails at once with the OS's
        reason, and port 0 is resolved before the server starts.

        Raises
        ------
        RuntimeError
            The socket could not be bound, or the server did not start: the message says why.
        """
        import uvicorn

        where = f"{self.settings.host}:{self.settings.port}"
        try:
            family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.settings.host, self.settings.port))
        except OSError as exc:
            sock.close()
            msg = f"live feed on {where} failed: {exc.strerror or exc} (IFD_FEED_HOST/IFD_FEED_PORT)"
            raise RuntimeError(msg) from None
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(build_app(self.hub, self.settings.max_clients),
                                log_level="warning", lifespan="off", ws="websockets-sansio",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), name="ifd-feed",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None or not self._server.started:
            msg = f"live feed on {where} failed: {self._error or 'did not start listening'}"
            raise RuntimeError(msg)
        log.info("live feed on ws://%s:%d/ws (GET /signals, /health)", self.settings.host,
                 self.port)
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self.hub.attach(loop)

        async def serve() -> None:
            task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
            while not self._server.started and not task.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await task

        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
        finally:
            self._ready.set()
            pending = asyncio.all_tasks(loop)  # e.g. closing a dropped client's stuck socket
            for task in pending:
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            sock.close()

    def stop(self, drain_s: float = 5.0, linger_s: float = 0.0) -> None:
        """Send clients what is queued (bounded by ``drain_s``), close them, stop the server.

        ``linger_s`` first keeps serving that long (``IFD_FEED_LINGER_S``: after a replay, time
        to read ``GET /signals``).
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if linger_s > 0:
            log.info("live feed: serving %.0f s more (IFD_FEED_LINGER_S)", linger_s)
            thread.join(linger_s)

        async def finish() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.hub.drain(), drain_s)
            await self.hub.close_all()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(drain_s + 5.0)
        self._server.should_exit = True
        thread.join(drain_s + 5.0)
