"""A local Databento Live Subscription Gateway (LSG) speaking enough of the Raw API for ``databento.Live``.

The gateway serves one "day" = every record of the DBN files given (any schema, any DBN version,
plain or zstd; records are upgraded to DBN v3), merged into one live timeline ordered by
``(ts_recv, ts_event)`` (stable: file order, then record order).  It listens on ``127.0.0.1`` on
an ephemeral port; point the real client at it with
``databento.Live(key=KEY, gateway="127.0.0.1", port=gw.port)``.

Wire protocol (what ``databento/live/{gateway,protocol,session}.py`` need)
------------------------------------------------------------------------
1. on connect: ``lsg_version=<v>\\n`` then ``cram=<32 random chars>\\n``;
2. client: ``auth=<sha256(f"{cram}|{key}")>-<key[-5:]>|dataset=..|encoding=dbn|ts_out=..|
   compression=..|heartbeat_interval_s=..|client=..\\n``;
3. gateway: ``success=1|session_id=<n>\\n``, or ``success=0|error=Authentication failed.\\n``
   followed by a graceful close (the client raises ``BentoError("Authentication failed.")``
   from ``Live.subscribe``);
4. client: one ``schema=..|stype_in=..|symbols=..|[start=<ns>|]snapshot=..|id=..|is_last=..\\n``
   per subscription (long symbol lists come in several lines with ``is_last=0``), then
   ``start_session=0\\n``;
5. gateway: binary DBN v3 -- a ``Metadata`` header, one ``SystemMsg`` SUBSCRIPTION_ACK per
   subscription id, one ``SymbolMappingMsg`` per (subscription, instrument) whose raw symbol is
   known, then the data records, raw bytes.  ``compression=zstd`` (one zstd stream, flushed per
   write) and ``ts_out=1`` (8-byte send timestamp appended to every record) are honoured.

Choices (documented behaviour, relied upon by tests)
----------------------------------------------------
* Metadata: ``version=3``, ``dataset`` as authenticated, ``schema`` = the subscribed schema or
  ``None`` when several schemas are subscribed, ``stype_in`` = the subscribed stype (``None``
  when mixed), ``stype_out=instrument_id``, ``end``/``limit`` unset, ``symbols``, ``partial``,
  ``not_found``, ``mappings`` empty (as the live gateway does).  ``start`` = the smallest
  ``start=`` requested (when it is not 0), else ``ts_event`` of the first record this connection
  will get (after any gap), else last ``ts_event`` of the day + 1.  The client only compares the non-``start``
  fields across reconnects, which are stable here.
* Gateway clock (``Faults.gateway_clock``): ``"sim"`` (default) -- every gateway-made record (ack,
  mapping, SystemMsg, ErrorMsg, heartbeat) has ``ts_event`` = metadata ``start`` before the first
  data record, then the ``ts_event`` of the last data record sent on that connection; ``ts_out``
  (when asked) uses the same clock.  ``"wall"`` -- as the real gateway, which stamps the records
  it makes with the current time: gateway-made records get ``ts_event = time.time_ns()`` at
  write time (``SymbolMappingMsg.start_ts`` too) and ``ts_out`` is the wall-clock send time.
  Data records are never altered, and metadata ``start`` is as below in both modes.
* Acks: ``SystemMsg(code=SUBSCRIPTION_ACK, msg="Subscription request <id> for <schema> data
  succeeded")`` -- the client just logs and yields them.
* Selection: a record matches a subscription when its schema (the file's ``Metadata.schema``, or
  derived from the rtype for mixed files) equals the subscribed schema and its instrument matches
  the symbols: ``ALL_SYMBOLS`` and any ``parent``/``continuous`` symbol (``NQ.OPT``, ``ES.FUT``,
  ...) match every instrument (the files hold one product); ``raw_symbol`` resolves through the
  definitions' ``raw_symbol`` and the files' metadata mappings; ``instrument_id`` compares ids.
  Unknown symbols match nothing (no error is sent).
* Intraday replay (Databento's documented semantics): a subscription with ``start=`` gets its
  matching records filtered on ``ts_event >= start`` (``ts_recv`` for the ``bbo-*``/``cbbo-*``
  schemas), in timeline order ``(ts_recv, ts_event)``, stable, from the whole day: the replay
  runs from ``start`` and continues "live" to the end of the day (this gateway's "now" is the
  end of the files).  ``start=0`` is a full replay (every matching record; metadata ``start`` is
  then the first record's ``ts_event``).  No ``REPLAY_COMPLETED`` SystemMsg is sent.  Several
  subscriptions of one connection are merged: a record is sent once when any of them matches.
  A subscription without ``start`` gets the records from
  the gateway's *live position*: a global timeline index, initially 0, that advances past every
  record sent on any connection (so the first live connection gets the whole day).  On every
  streaming connection after the first one, the first ``Faults.gap_records`` matching live
  records are skipped (never sent: the feed moved on while the client was away); the live
  position moves past them.  ``gap_skipped`` counts them.
* End of day: after the last record the connection stays open for ``Faults.end_linger_s``
  (``close_after_end=True``) -- sending heartbeats if the cadence elapses -- then is closed
  gracefully (``shutdown(SHUT_WR)``: the client sees EOF, ``Live`` iteration stops without error).
  With ``close_after_end=False`` it stays open, sending heartbeats until the client leaves or the
  gateway stops.  There is no end-of-day marker in the protocol.
* Heartbeats: ``SystemMsg(code=HEARTBEAT, msg="Heartbeat")`` only while idle after the last record
  (and during a stall with ``Faults.heartbeats_in_stall``), every ``Faults.heartbeat_interval_s``,
  defaulting to the client's ``heartbeat_interval_s`` auth field (the Python client always sends
  one: 30 s unless set).
* Faults consumed once apply to the first *streaming* connection (one that sent
  ``start_session``): ``error_after``, ``system_after``, ``stall_after``.  ``drop_after`` and
  ``stalls`` are lists consumed one entry per streaming connection, in order (an entry ``None``:
  no such fault on that connection).  "After N" means after the N-th data record of that
  connection (N=0: before the first data record, after acks/mappings).  Data records = records of
  the files (definitions included), never gateway-made ones.  A stall keeps the socket open and
  sends nothing (no heartbeats unless ``heartbeats_in_stall``) until the client leaves or the
  gateway stops.  Positions worth dropping at: :meth:`LiveGateway.positions_inside_second`
  (between two records of one ``ts_recv`` second) and :meth:`LiveGateway.first_position` (before
  the first record of a schema); both count in the order a first live connection subscribed to
  every symbol of the given schemas receives the day.

Observations (read them after the client is done, or poll them; they are updated under a lock):
``connections``, ``auth_attempts``, ``sessions`` (streaming connections), ``subscriptions``,
``records_sent``, ``sent_keys`` (``(ts_event, instrument_id, sequence)``, ``sequence`` 0 for records
without one; a record counts as sent once written to the connection's buffer, which is flushed every
256 records / 64 KiB, before every fault action and at the end), ``sent_records`` (the DBN v3 bytes
of those records, without ``ts_out``, parallel to ``sent_keys``), ``sent_by_connection``
(connection index -> its ``sent_records``; an empty list for a streaming connection that sent no
data), ``stalled`` (indices of connections that entered a stall, appended after the flush: every
record before the stall is on the socket), ``gap_skipped``, ``heartbeats_sent``, ``live_position``,
``handler_errors``, ``open_connections``.  Connection indices are accept order from 0, as in
``subscriptions[i]["connection"]``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import zstandard

logger = logging.getLogger("tests.live_gateway")

LSG_VERSION = "0.0.0-fixture"
ALL_SYMBOLS = "ALL_SYMBOLS"
UNDEF_TIMESTAMP = 2**64 - 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_POLL_S = 0.05
_FLUSH_RECORDS = 256
_FLUSH_BYTES = 64 * 1024
_CLOSE_WAIT_S = 2.0
_RECV_FILTERED = ("bbo-", "cbbo")  # intraday replay filters these schemas on ts_recv

# schema of a record decoded from a file whose Metadata.schema is None (mixed-schema files)
_RTYPE_SCHEMA: dict[type, str] = {
    dbn.MBOMsg: "mbo",
    dbn.TradeMsg: "trades",
    dbn.MBP1Msg: "mbp-1",
    dbn.MBP10Msg: "mbp-10",
    dbn.InstrumentDefMsg: "definition",
    dbn.StatMsg: "statistics",
    dbn.StatusMsg: "status",
    dbn.ImbalanceMsg: "imbalance",
}


@dataclass
class Faults:
    """Fault injection and end-of-stream behaviour of :class:`LiveGateway`.

    Attributes
    ----------
    drop_after : list[int | None]
        Close the connection right after its N-th data record (definitions count; 0 = right
        after the acks and mappings); one entry consumed per streaming connection, in order;
        ``None`` = no drop on that connection.
    drop_reset : bool
        ``drop_after`` closes with a TCP RST (``SO_LINGER`` 0, after a 0.1 s pause so the client
        has the bytes) instead of a graceful FIN.  The client then sees ``ConnectionResetError``:
        iteration raises ``BentoError`` and ``reconnect_policy="reconnect"`` reconnects (the
        client library only reconnects on errors, not on EOF).
    gap_records : int
        On every streaming connection after the first, that many matching live (no ``start=``)
        records are skipped: the gap a naive reconnect loses.
    reject_auth : bool
        Always answer ``success=0|error=Authentication failed.``.
    error_after : tuple[int, int, str] | None
        ``(N, ErrorCode value, text)``: after N data records send ``ErrorMsg`` then close
        gracefully (first streaming connection only).
    system_after : list[tuple[int, int, str]]
        ``(N, SystemCode value, text)``: in-stream ``SystemMsg`` after N data records (first
        streaming connection only).
    stall_after : int | None
        After N data records send nothing more (no heartbeats) and keep the socket open until the
        client leaves or the gateway stops (first streaming connection only).
    stalls : list[int | None]
        ``stall_after`` for every streaming connection: one entry consumed per streaming
        connection, in order (``None`` = no stall on that connection).  On the first connection
        the earlier of ``stalls[0]`` and ``stall_after`` applies.
    heartbeats_in_stall : bool
        During a stall keep sending heartbeats at the cadence (a gateway that is alive but has
        no data) instead of nothing.
    stall_heartbeats : int
        With ``heartbeats_in_stall``: the stall is a *pause* that ends after this many heartbeats,
        then the connection streams on (0 = the stall never ends).  The records after the pause
        re-open the ``ts_recv`` second the pause cut.
    gateway_clock : {"sim", "wall"}
        Timestamp of gateway-made records (acks, mappings incl. ``start_ts``, SystemMsg,
        ErrorMsg, heartbeats) and of ``ts_out``: ``"sim"`` = the simulated clock (last data
        ``ts_event`` sent), ``"wall"`` = ``time.time_ns()`` when written, as the real gateway.
    delay_s : float
        Sleep before each data record (each record is flushed on its own then).
    heartbeat_interval_s : float | None
        Heartbeat cadence while idle after the last record (and in a stall with
        ``heartbeats_in_stall``); ``None`` = the client's auth value.
    close_after_end : bool
        After the last record, linger ``end_linger_s`` then close gracefully (client iteration
        ends).  ``False``: stay open with heartbeats.
    end_linger_s : float
        Linger before the graceful close at end of stream.
    realtime : bool
        Play in real time: a live (no ``start=``) subscription gets the day's definitions, then
        data from the first record with ``ts_recv`` at or after the wall clock; every record is sent once
        the wall clock reaches its ``ts_recv`` (heartbeats while waiting); a replay sends its
        backlog at once, then paces.  For files of today (soak latency runs).
    down_after_drop_s : float
        At the first ``drop_after`` drop the gateway goes down for this long: its listening socket
        is closed (connects are refused at once, as by a host that is down), then it listens on
        the same port again.  0 = never down.
    """

    drop_after: list[int | None] = field(default_factory=list)
    drop_reset: bool = False
    gap_records: int = 0
    reject_auth: bool = False
    error_after: tuple[int, int, str] | None = None
    system_after: list[tuple[int, int, str]] = field(default_factory=list)
    stall_after: int | None = None
    stalls: list[int | None] = field(default_factory=list)
    heartbeats_in_stall: bool = False
    stall_heartbeats: int = 0
    gateway_clock: str = "sim"
    delay_s: float = 0.0
    heartbeat_interval_s: float | None = None
    close_after_end: bool = True
    end_linger_s: float = 0.05
    down_after_drop_s: float = 0.0
    realtime: bool = False

    def __post_init__(self) -> None:
        """Reject an unknown ``gateway_clock``."""
        if self.gateway_clock not in ("sim", "wall"):
            msg = f"gateway_clock must be 'sim' or 'wall', got {self.gateway_clock!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class _ConnFaults:
    """Faults resolved for one streaming connection (queues consumed at ``start_session``)."""

    first_stream: bool
    drop: int | None
    stall: int | None
    heartbeat_s: float


@dataclass(frozen=True)
class _Entry:
    ts_recv: int
    ts_event: int
    schema: str
    instrument_id: int
    publisher_id: int
    key: tuple[int, int, int]
    data: bytes  # DBN v3 record bytes


@dataclass
class _Sub:
    id: int
    schema: str
    stype_in: str
    symbols: list[str]
    start: int | None


class _Closed(Exception):
    """The peer went away or the gateway is stopping."""


def _parse_line(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in line.strip().split("|"):
        k, _, v = token.partition("=")
        out[k] = v
    return out


def _decode_file(path: Path) -> tuple[dbn.Metadata, list[Any]]:
    raw = Path(path).read_bytes()
    if raw[:4] == _ZSTD_MAGIC:
        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            raw = reader.read()
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)
    decoder.write(raw)
    out = decoder.decode()
    if not out or not isinstance(out[0], dbn.Metadata):
        msg = f"{path}: no DBN metadata"
        raise ValueError(msg)
    return out[0], out[1:]


class _Conn:
    """One client connection: line reading and (optionally zstd) buffered binary writing."""

    def __init__(self, sock: socket.socket, stop: threading.Event, index: int) -> None:
        self.sock = sock
        self.index = index
        self.stop = stop
        self.inbuf = b""
        self.out: list[bytes] = []
        self.out_n = 0
        self.zstd: Any = None
        self.ts_out = False

    def _wait_readable(self, timeout: float) -> bool:
        if self.stop.is_set():
            raise _Closed
        # poll(), not select(): select() cannot watch a descriptor >= FD_SETSIZE (1024), which a
        # long test session reaches; the ValueError it raised looked like a closed peer
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            events = poller.poll(timeout * 1000)
        except OSError as exc:
            raise _Closed from exc
        return bool(events)

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise _Closed from exc
        if not data:
            raise _Closed
        return data

    def readline(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.inbuf:
            if time.monotonic() > deadline:
                raise _Closed
            if self._wait_readable(_POLL_S):
                self.inbuf += self._recv()
        line, _, self.inbuf = self.inbuf.partition(b"\n")
        return line.decode("utf-8") + "\n"

    def poll_line(self) -> str | None:
        """Read a complete line if one arrives within the poll interval; ``_Closed`` on EOF."""
        if b"\n" not in self.inbuf and self._wait_readable(_POLL_S):
            self.inbuf += self._recv()
        if b"\n" in self.inbuf:
            line, _, self.inbuf = self.inbuf.partition(b"\n")
            return line.decode("utf-8") + "\n"
        return None

    def send_text(self, text: str) -> None:
        self._sendall(text.encode("utf-8"))

    def _sendall(self, data: bytes) -> None:
        if self.stop.is_set():
            raise _Closed
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Closed from exc

    def write(self, data: bytes) -> None:
        self.out.append(data)
        self.out_n += len(data)
        if len(self.out) >= _FLUSH_RECORDS or self.out_n >= _FLUSH_BYTES:
            self.flush()

    def write_record(self, data: bytes, ts: int) -> None:
        if self.ts_out:
            data = bytes([data[0] + 2]) + data[1:] + struct.pack("<Q", ts)
        self.write(data)

    def flush(self) -> None:
        if not self.out:
            return
        data = b"".join(self.out)
        self.out, self.out_n = [], 0
        if self.zstd is not None:
            data = self.zstd.compress(data) + self.zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        self._sendall(data)

    def close_graceful(self) -> None:
        """Flush, send FIN, wait (bounded) for the client to close its side, close."""
        try:
            self.flush()
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _CLOSE_WAIT_S
            while time.monotonic() < deadline:
                if self._wait_readable(_POLL_S):
                    self._recv()  # discard; raises _Closed on EOF
        except _Closed:
            pass
        except OSError:
            pass
        finally:
            self.sock.close()

    def close_reset(self) -> None:
        try:
            self.flush()
            time.sleep(0.1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, _Closed):
            pass
        finally:
            self.sock.close()


class LiveGateway:
    """Serve DBN files over the Databento Live Raw API on ``127.0.0.1`` (see module docstring).

    Parameters
    ----------
    files : list[Path]
        DBN files (definition + data) making up the day.
    api_key : str
        The only key accepted (CRAM-checked).
    faults : Faults, optional
        Fault injection; default none.
    symbol_mappings : bool
        Send ``SymbolMappingMsg`` records after the acks, like the live gateway.
    start_latency_s : float
        Pause between ``start_session`` and the first byte of the stream (emulated network
        latency).  Needed: ``databento.Live`` iteration sends ``start_session`` *before* enabling
        its record queue, and records the client decodes before that are silently dropped; on
        localhost a whole short stream can otherwise arrive inside that window.
    """

    def __init__(
        self,
        files: Iterable[Path],
        *,
        api_key: str,
        faults: Faults | None = None,
        symbol_mappings: bool = True,
        start_latency_s: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self.faults = faults if faults is not None else Faults()
        self.symbol_mappings = symbol_mappings
        self.start_latency_s = start_latency_s
        self.port = 0
        # observations
        self.connections = 0
        self.down_periods = 0
        self._down_until = 0.0
        self.auth_attempts = 0
        self.sessions = 0
        self.subscriptions: list[dict[str, Any]] = []
        self.records_sent = 0
        self.sent_keys: list[tuple[int, int, int]] = []
        self.sent_records: list[bytes] = []
        self.sent_by_connection: dict[int, list[bytes]] = {}
        self.stalled: list[int] = []
        self.gap_skipped = 0
        self.heartbeats_sent = 0
        self.live_position = 0
        self.day_sent_at: float | None = None
        """``time.monotonic()`` when a connection first sent the day's last record."""
        self.handler_errors: list[BaseException] = []

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._drop_queue = list(self.faults.drop_after)
        self._stall_queue = list(self.faults.stalls)
        self._wall_clock = self.faults.gateway_clock == "wall"
        self._load(list(files))

    # ------------------------------------------------------------------ data
    def _load(self, files: list[Path]) -> None:
        entries: list[tuple[int, int, int, int, _Entry]] = []
        self._raw_to_ids: dict[str, set[int]] = {}
        self._id_to_raw: dict[int, str] = {}
        self._publisher_of: dict[int, int] = {}
        for fi, path in enumerate(files):
            meta, records = _decode_file(path)
            file_schema = str(meta.schema) if meta.schema is not None else None
            if meta.stype_out == dbn.SType.INSTRUMENT_ID:
                for raw, intervals in (meta.mappings or {}).items():
                    for iv in intervals:
                        sym = iv.get("symbol", "") if isinstance(iv, dict) else ""
                        if sym.isdigit():
                            self._raw_to_ids.setdefault(raw, set()).add(int(sym))
                            if meta.stype_in == dbn.SType.RAW_SYMBOL:
                                self._id_to_raw.setdefault(int(sym), raw)
            for ri, rec in enumerate(records):
                schema = file_schema or _RTYPE_SCHEMA.get(type(rec))
                if schema is None:
                    continue  # gateway-made records in a file (SystemMsg, mappings, ...)
                iid = rec.instrument_id
                if isinstance(rec, dbn.InstrumentDefMsg):
                    self._raw_to_ids.setdefault(rec.raw_symbol, set()).add(iid)
                    self._id_to_raw[iid] = rec.raw_symbol
                self._publisher_of.setdefault(iid, rec.publisher_id)
                ts_recv = getattr(rec, "ts_recv", None)
                ts_recv = rec.ts_event if ts_recv is None else ts_recv
                key = (rec.ts_event, iid, int(getattr(rec, "sequence", 0) or 0))
                entry = _Entry(ts_recv, rec.ts_event, schema, iid, rec.publisher_id, key, bytes(rec))
                entries.append((ts_recv, rec.ts_event, fi, ri, entry))
        entries.sort(key=lambda t: t[:4])
        self._timeline: list[_Entry] = [e[4] for e in entries]
        self._all_ids = sorted({e.instrument_id for e in self._timeline})

    @property
    def open_connections(self) -> int:
        """Connections whose socket the gateway still holds open."""
        with self._lock:
            return len(self._socks)

    def _entries(self, schema: str | Iterable[str] | None) -> list[_Entry]:
        """The day's records of ``schema`` (one name, several, or ``None`` = all) in live order."""
        if schema is None:
            return list(self._timeline)
        wanted = {schema} if isinstance(schema, str) else set(schema)
        return [e for e in self._timeline if e.schema in wanted]

    def timeline_keys(self, schema: str | Iterable[str] | None = None) -> list[tuple[int, int, int]]:
        """Keys of the day's records (optionally of some schemas) in live order."""
        return [e.key for e in self._entries(schema)]

    def timeline_records(self, schema: str | Iterable[str] | None = None) -> list[bytes]:
        """DBN v3 bytes of the day's records (optionally of some schemas) in live order.

        This is exactly what a first live connection subscribed to every symbol of those schemas
        receives as data records (compare with ``sent_by_connection``).
        """
        return [e.data for e in self._entries(schema)]

    def positions_inside_second(self, schema: str | Iterable[str] | None = None) -> list[int]:
        """Drop positions that fall between two records of one ``ts_recv`` second.

        Parameters
        ----------
        schema : str or iterable of str, optional
            The schemas subscribed to (every symbol); ``None`` = every schema of the files.

        Returns
        -------
        list[int]
            Ascending data-record counts ``N`` (``1 <= N < len``) such that records ``N - 1`` and
            ``N`` (0-based, in live order) share ``ts_recv // 1_000_000_000``: ``drop_after=[N]``
            cuts that connection inside a second.
        """
        secs = [e.ts_recv // 1_000_000_000 for e in self._entries(schema)]
        return [n for n in range(1, len(secs)) if secs[n - 1] == secs[n]]

    def first_position(self, schema: str, among: str | Iterable[str] | None = None) -> int:
        """Count of data records before the first record of ``schema``.

        Parameters
        ----------
        schema : str
            Schema whose first record is looked for (``"trades"``, ``"tbbo"``, ...).
        among : str or iterable of str, optional
            The schemas subscribed to (every symbol); ``None`` = every schema of the files.
            E.g. ``first_position("tbbo", ["definition", "tbbo"])`` = the definitions sent before
            the first trade, so ``drop_after=[that]`` drops "before the first trade".

        Returns
        -------
        int
            The position ``N`` (``drop_after=[N]`` closes right before that record).

        Raises
        ------
        ValueError
            No record of ``schema`` among the selected records.
        """
        for n, e in enumerate(self._entries(among)):
            if e.schema == schema:
                return n
        msg = f"no {schema!r} record among {among!r}"
        raise ValueError(msg)

    def _resolve(self, sub: _Sub) -> set[int] | None:
        """Instrument ids matched by ``sub``; ``None`` = every instrument."""
        if sub.stype_in in ("parent", "continuous") or ALL_SYMBOLS in sub.symbols:
            return None
        ids: set[int] = set()
        for sym in sub.symbols:
            if sub.stype_in == "instrument_id":
                if sym.strip().isdigit():
                    ids.add(int(sym))
            else:
                ids |= self._raw_to_ids.get(sym, set())
        return ids

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> LiveGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind 127.0.0.1:0 and start accepting."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(_POLL_S)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="lsg-accept", daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop accepting, unblock and join every handler thread."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(timeout=5)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.error("live gateway threads still alive: %s", alive)

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        listener.settimeout(_POLL_S)
        return listener

    def _go_down(self) -> None:
        """Close the listening socket now (``down_after_drop_s``); the accept loop re-opens it."""
        with self._lock:
            if self._down_until or self.down_periods or not self.faults.down_after_drop_s:
                return
            self._down_until = time.monotonic() + self.faults.down_after_drop_s
            self.down_periods += 1
            listener = self._listener
        if listener is not None:
            listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            if self._down_until:
                if time.monotonic() < self._down_until:
                    self._stop.wait(_POLL_S)
                    continue
                self._listener = self._listen(self.port)
                with self._lock:
                    self._down_until = 0.0
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                if self._down_until:
                    continue  # closed by _go_down
                raise
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                index = self.connections
                self.connections += 1
                self._socks.add(sock)
            t = threading.Thread(
                target=self._handle, args=(sock, index), name=f"lsg-conn-{index}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _handle(self, sock: socket.socket, index: int) -> None:
        conn = _Conn(sock, self._stop, index)
        closed = False
        try:
            closed = self._session(conn, index)
        except _Closed:
            logger.debug("connection %d closed by peer or gateway stop", index)
        except Exception as exc:  # never let a handler die silently or hang a test
            logger.exception("live gateway handler %d failed", index)
            with self._lock:
                self.handler_errors.append(exc)
        finally:
            if not closed:
                try:
                    sock.close()
                except OSError:
                    pass
            with self._lock:
                self._socks.discard(sock)

    # --------------------------------------------------------------- protocol
    def _session(self, conn: _Conn, index: int) -> bool:
        """Run one connection; return True when the socket was closed by the handler."""
        challenge = secrets.token_hex(16)
        conn.send_text(f"lsg_version={LSG_VERSION}\n")
        conn.send_text(f"cram={challenge}\n")
        auth = _parse_line(conn.readline())
        with self._lock:
            self.auth_attempts += 1
        expected = hashlib.sha256(f"{challenge}|{self.api_key}".encode()).hexdigest()
        expected = f"{expected}-{self.api_key[-5:]}"
        if self.faults.reject_auth or auth.get("auth") != expected:
            conn.send_text("success=0|error=Authentication failed.\n")
            conn.close_graceful()
            return True
        compression = auth.get("compression", "none").lower()
        if auth.get("encoding", "dbn") != "dbn" or compression not in ("none", "zstd"):
            conn.send_text(f"success=0|error=Unsupported encoding/compression: {auth}\n")
            conn.close_graceful()
            return True
        conn.send_text(f"success=1|session_id={1000 + index}\n")
        dataset = auth.get("dataset", "GLBX.MDP3")
        conn.ts_out = auth.get("ts_out", "0") == "1"
        hb = self.faults.heartbeat_interval_s
        if hb is None:
            hb = float(auth.get("heartbeat_interval_s") or 30)

        subs: dict[int, _Sub] = {}
        while True:
            line = conn.readline(timeout=3600)
            fields = _parse_line(line)
            if "start_session" in fields:
                break
            if "schema" not in fields:
                logger.warning("connection %d: ignoring %r", index, line)
                continue
            self._add_subscription(index, fields, subs)

        with self._lock:
            first_stream = self.sessions == 0
            self.sessions += 1
            drop = self._drop_queue.pop(0) if self._drop_queue else None
            stall = self._stall_queue.pop(0) if self._stall_queue else None
            if first_stream and self.faults.stall_after is not None:  # the earlier stall wins
                stall = min(n for n in (stall, self.faults.stall_after) if n is not None)
            plan, meta_start = self._plan(list(subs.values()), reconnect=not first_stream)
            self.sent_by_connection[index] = []

        if self.start_latency_s > 0:
            self._stop.wait(self.start_latency_s)
        if compression == "zstd":
            conn.zstd = zstandard.ZstdCompressor().compressobj()
        faults = _ConnFaults(first_stream=first_stream, drop=drop, stall=stall, heartbeat_s=hb)
        return self._stream(conn, dataset, list(subs.values()), plan, meta_start, faults)

    def _add_subscription(self, index: int, fields: dict[str, str], subs: dict[int, _Sub]) -> None:
        start = fields.get("start")
        sub_id = int(fields["id"]) if fields.get("id", "").strip() else len(subs)
        symbols = [s for s in fields.get("symbols", "").split(",") if s]
        record = {
            "connection": index,
            "schema": fields["schema"],
            "stype_in": fields.get("stype_in", "raw_symbol"),
            "symbols": symbols,
            "start": int(start) if start not in (None, "") else None,
            "snapshot": int(fields.get("snapshot") or 0),
            "id": sub_id,
            "is_last": int(fields.get("is_last") or 1),
        }
        with self._lock:
            self.subscriptions.append(record)
        if sub_id in subs:  # batched symbols of one subscription
            subs[sub_id].symbols.extend(symbols)
        else:
            subs[sub_id] = _Sub(sub_id, record["schema"], record["stype_in"], symbols, record["start"])

    def _plan(self, subs: list[_Sub], *, reconnect: bool) -> tuple[list[int], int]:
        """Timeline indices to send on this connection and the metadata start (lock held)."""
        resolved = [(s, self._resolve(s)) for s in subs]
        live_begin = self.live_position
        live_from = 0  # realtime: data records of a live subscription start at the wall clock
        if self.faults.realtime:
            wall = time.time_ns()
            live_from = next((i for i, e in enumerate(self._timeline)
                              if e.ts_recv >= wall and e.schema != "definition"), len(self._timeline))
        gap_left = self.faults.gap_records if reconnect else 0
        plan: list[int] = []
        for idx, e in enumerate(self._timeline):
            replay_hit = live_hit = False
            for s, ids in resolved:
                if s.schema != e.schema or (ids is not None and e.instrument_id not in ids):
                    continue
                if s.start is not None:
                    ts = e.ts_recv if e.schema.startswith(_RECV_FILTERED) else e.ts_event
                    replay_hit = replay_hit or ts >= s.start
                elif idx >= live_begin and (idx >= live_from or e.schema == "definition"):
                    live_hit = True
            if live_hit and not replay_hit and gap_left > 0:
                gap_left -= 1
                self.gap_skipped += 1
                self.live_position = max(self.live_position, idx + 1)
                continue
            if replay_hit or live_hit:
                plan.append(idx)
        starts = [s.start for s in subs if s.start is not None]
        if starts and min(starts) > 0:
            meta_start = min(starts)
        elif plan:
            meta_start = self._timeline[plan[0]].ts_event
        else:
            meta_start = self._timeline[-1].ts_event + 1 if self._timeline else 0
        return plan, meta_start

    def _metadata(self, dataset: str, subs: list[_Sub], start: int, ts_out: bool) -> bytes:
        schemas = {s.schema for s in subs}
        stypes = {s.stype_in for s in subs}
        meta = dbn.Metadata(
            dataset=dataset,
            start=start,
            stype_in=dbn.SType.from_str(stypes.pop()) if len(stypes) == 1 else None,
            stype_out=dbn.SType.INSTRUMENT_ID,
            schema=dbn.Schema.from_str(schemas.pop()) if len(schemas) == 1 else None,
            symbols=[],
            partial=[],
            not_found=[],
            mappings=[],
            ts_out=ts_out,
            version=3,
        )
        return bytes(meta.encode())

    def _mapping_records(self, sub: _Sub, ts: int) -> list[bytes]:
        ids = self._resolve(sub)
        out = []
        for iid in sorted(self._all_ids if ids is None else ids):
            raw = self._id_to_raw.get(iid)
            if raw is None:
                continue
            in_symbol = raw if ids is None and ALL_SYMBOLS in sub.symbols else None
            if in_symbol is None:
                in_symbol = (
                    sub.symbols[0]
                    if ids is None
                    else next((s for s in sub.symbols if s == raw or s == str(iid)), raw)
                )
            msg = dbn.SymbolMappingMsg(
                self._publisher_of.get(iid, 1),
                iid,
                ts,
                dbn.SType.from_str(sub.stype_in),
                in_symbol,
                dbn.SType.RAW_SYMBOL,
                raw,
                ts,
                UNDEF_TIMESTAMP,
            )
            out.append(bytes(msg))
        return out

    def _stream(
        self,
        conn: _Conn,
        dataset: str,
        subs: list[_Sub],
        plan: list[int],
        meta_start: int,
        cf: _ConnFaults,
    ) -> bool:
        f = self.faults
        clock = meta_start

        def now() -> int:
            """Timestamp of a gateway-made record / ``ts_out`` (``Faults.gateway_clock``)."""
            return time.time_ns() if self._wall_clock else clock

        conn.write(self._metadata(dataset, subs, meta_start, conn.ts_out))
        for s in subs:
            ts = now()
            ack = dbn.SystemMsg(
                ts,
                f"Subscription request {s.id} for {s.schema} data succeeded",
                code=dbn.SystemCode.SUBSCRIPTION_ACK,
            )
            conn.write_record(bytes(ack), ts)
        if self.symbol_mappings:
            for s in subs:
                for rec in self._mapping_records(s, now()):
                    conn.write_record(rec, now())

        def after(n: int) -> str | None:
            """Apply faults due after n data records; return 'closed'/'stall' or None."""
            if cf.first_stream:
                for at, code, text in f.system_after:
                    if at == n:
                        ts = now()
                        msg = dbn.SystemMsg(ts, text, code=dbn.SystemCode(code))
                        conn.write_record(bytes(msg), ts)
                if f.error_after is not None and f.error_after[0] == n:
                    ts = now()
                    code = dbn.ErrorCode(f.error_after[1])
                    err = dbn.ErrorMsg(ts, f.error_after[2], is_last=True, code=code)
                    conn.write_record(bytes(err), ts)
                    conn.close_graceful()
                    return "closed"
            if cf.drop is not None and cf.drop == n:
                self._go_down()
                if f.drop_reset:
                    conn.close_reset()
                else:
                    conn.close_graceful()
                return "closed"
            if cf.stall is not None and cf.stall == n:
                if f.heartbeats_in_stall and f.stall_heartbeats > 0 and cf.heartbeat_s > 0:
                    pause(cf.heartbeat_s)  # a pause: heartbeats, then the stream goes on
                    return None
                return "stall"
            return None

        def pause(hb: float) -> None:
            conn.flush()
            with self._lock:
                self.stalled.append(conn.index)
            beats, last = 0, time.monotonic()
            while beats < f.stall_heartbeats:
                conn.poll_line()
                if time.monotonic() - last >= hb:
                    self._heartbeat(conn, now())
                    beats, last = beats + 1, time.monotonic()

        sent = 0
        state = after(0)
        last_write = time.monotonic()
        for idx in plan if state is None else ():
            e = self._timeline[idx]
            if f.realtime and e.ts_recv > time.time_ns():
                conn.flush()
                while (due := (e.ts_recv - time.time_ns()) / 1e9) > 0:
                    if self._stop.wait(min(due, 0.25)):
                        raise _Closed
                    if cf.heartbeat_s > 0 and time.monotonic() - last_write >= cf.heartbeat_s:
                        self._heartbeat(conn, now())
                        last_write = time.monotonic()
            last_write = time.monotonic()
            if f.delay_s > 0:
                conn.flush()
                if self._stop.wait(f.delay_s):
                    raise _Closed
            conn.write_record(e.data, time.time_ns() if self._wall_clock else e.ts_event)
            clock = e.ts_event
            sent += 1
            with self._lock:
                self.records_sent += 1
                self.sent_keys.append(e.key)
                self.sent_records.append(e.data)
                self.sent_by_connection[conn.index].append(e.data)
                self.live_position = max(self.live_position, idx + 1)
            state = after(sent)
            if state is not None:
                break
        if state == "closed":
            return True
        conn.flush()
        hb = cf.heartbeat_s
        if state == "stall":
            with self._lock:
                self.stalled.append(conn.index)
            last_send = time.monotonic()
            while True:  # until the client leaves or the gateway stops (both raise _Closed)
                conn.poll_line()
                if f.heartbeats_in_stall and hb > 0 and time.monotonic() - last_send >= hb:
                    self._heartbeat(conn, now())
                    last_send = time.monotonic()

        # end of the day: idle, heartbeats, then (maybe) graceful close
        with self._lock:
            if self.day_sent_at is None:
                self.day_sent_at = time.monotonic()
        end_at = time.monotonic() + f.end_linger_s
        last_send = time.monotonic()
        while not f.close_after_end or time.monotonic() < end_at:
            line = conn.poll_line()
            if line is not None:
                fields = _parse_line(line)
                if "schema" in fields:  # late subscription: recorded, no data
                    self._add_subscription(conn.index, fields, {})
            if hb > 0 and time.monotonic() - last_send >= hb:
                self._heartbeat(conn, now())
                last_send = time.monotonic()
        conn.close_graceful()
        return True

    def _heartbeat(self, conn: _Conn, ts: int) -> None:
        beat = dbn.SystemMsg(ts, "Heartbeat", code=dbn.SystemCode.HEARTBEAT)
        conn.write_record(bytes(beat), ts)
        conn.flush()
        with self._lock:
            self.heartbeats_sent += 1
