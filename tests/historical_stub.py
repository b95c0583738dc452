"""A local stand-in for the Databento Historical HTTP API (test helper).

Serves, over HTTPS (the client forces ``https://``; the certificate comes from a
``trustme`` CA that the test trusts through ``REQUESTS_CA_BUNDLE``):

* ``GET /v0/metadata.get_dataset_range``: ``{"start", "end"}`` of the files served;
* ``POST /v0/metadata.get_cost``: ``cost_per_mb`` × the DBN bytes the range holds
  (a price a test can compute independently), as a JSON number;
* ``POST /v0/timeseries.get_range``: zstd DBN v3 of the records of the requested
  schema with ``start <= ts_event < end`` (the Historical rule), metadata first.

Requests must carry the API key as HTTP basic-auth user (else 401, as Databento).
Every request is recorded in :attr:`HistoricalStub.requests`.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import databento_dbn as dbn
import trustme
import zstandard

from tests.live_gateway import _decode_file

NS = 1_000_000_000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).isoformat().replace("+00:00", "Z")


class HistoricalStub:
    """Serve DBN files as Databento Historical would (see module docstring).

    Parameters
    ----------
    files : dict[str, Path]
        Schema name (``definition``, ``tbbo``, ...) -> DBN file of that schema.
    api_key : str
        The only key accepted.
    cost_per_mb : float
        USD per MB of DBN record bytes in the requested range.
    fail_range : bool
        Answer ``get_range`` with HTTP 500 (a failed backfill).
    available_end_ns : int | None
        The dataset's available end (``get_dataset_range``; a range beyond it is HTTP 422, as
        Databento); None: just after the last record.
    """

    def __init__(self, files: dict[str, Path], api_key: str, cost_per_mb: float = 1.0, *,
                 fail_range: bool = False, available_end_ns: int | None = None) -> None:
        self.records: dict[str, list[Any]] = {}
        self.dataset = ""
        for schema, path in files.items():
            meta, records = _decode_file(path)
            self.records[schema] = records
            self.dataset = meta.dataset
        self.api_key = api_key
        self.cost_per_mb = cost_per_mb
        self.fail_range = fail_range
        last = max(r.ts_event for recs in self.records.values() for r in recs)
        self.available_end_ns = available_end_ns if available_end_ns is not None else last + 1
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._ca = trustme.CA()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Gateway URL for ``databento.Historical(gateway=...)``."""
        return f"https://localhost:{self._server.server_address[1]}"

    def ca_bundle(self, path: Path) -> Path:
        """Write the CA certificate (PEM) to ``path`` for ``REQUESTS_CA_BUNDLE``."""
        self._ca.cert_pem.write_to_path(str(path))
        return path

    def __enter__(self) -> HistoricalStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- answers ------------------------------------------------------------------------
    def selected(self, schema: str, start: int, end: int | None) -> list[Any]:
        """Records of ``schema`` with ``start <= ts_event < end`` (``end`` None: to the last)."""
        return [r for r in self.records.get(schema, [])
                if r.ts_event >= start and (end is None or r.ts_event < end)]

    def cost(self, schema: str, start: int, end: int | None) -> float:
        """Price of a range: ``cost_per_mb`` per MB of its records' bytes."""
        return self.cost_per_mb * sum(len(bytes(r)) for r in self.selected(schema, start, end)) / 1e6

    def _dbn(self, schema: str, start: int, end: int | None) -> bytes:
        records = self.selected(schema, start, end)
        meta = dbn.Metadata(dataset=self.dataset, start=start, end=end, stype_in=dbn.SType.PARENT,
                            stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.from_str(schema),
                            symbols=[], partial=[], not_found=[], mappings=[], version=3)
        body = bytes(meta.encode()) + b"".join(bytes(r) for r in records)
        return zstandard.ZstdCompressor().compress(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return  # quiet

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                user = ""
                if header.startswith("Basic "):
                    user = base64.b64decode(header[6:]).decode().partition(":")[0]
                if user != stub.api_key:
                    self._send(401, b'{"detail":"Authentication failed."}', "application/json")
                    return False
                return True

            def _answer(self, form: dict[str, str]) -> None:
                path = urlsplit(self.path).path
                stub.requests.append((path, form))
                if not self._authorised():
                    return
                if path.endswith("/metadata.get_dataset_range"):
                    first = min(r.ts_event for recs in stub.records.values() for r in recs)
                    body = {"start": _iso(first), "end": _iso(stub.available_end_ns)}
                    self._send(200, json.dumps(body).encode(), "application/json")
                    return
                start = int(form["start"])
                end = int(form["end"]) if form.get("end") else None
                schema = form["schema"]
                if end is None or end > stub.available_end_ns:
                    self._send(422, b'{"detail":"end is after the available range."}',
                               "application/json")
                    return
                if path.endswith("/metadata.get_cost"):
                    body_cost = json.dumps(stub.cost(schema, start, end)).encode()
                    self._send(200, body_cost, "application/json")
                elif path.endswith("/timeseries.get_range"):
                    if stub.fail_range:
                        self._send(500, b'{"detail":"Internal error."}', "application/json")
                        return
                    self._send(200, stub._dbn(schema, start, end), "application/octet-stream")
                else:
                    self._send(404, b'{"detail":"Not found."}', "application/json")

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                query = parse_qs(urlsplit(self.path).query)
                self._answer({k: v[0] for k, v in query.items()})

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                self._answer({k: v[0] for k, v in form.items()})

        return Handler
