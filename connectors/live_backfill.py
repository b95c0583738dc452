"""Backfill a live gap older than the intraday-replay horizon from Databento Historical.

Live intraday replay reaches back ``IFD_LIVE_REPLAY_HORIZON_S`` (24 h on
Databento's live gateway). A resume position older than that (a process down
overnight, a long outage) cannot be replayed live, so the feed fetches the
missing range from the Historical API first and then resumes live with replay
from the end of what it fetched (:class:`connectors.live.LiveFeed`).

Rules
-----
* **Range**: ``[start, end)`` on ``ts_event`` (Historical ``timeseries.get_range``
  filters on the index timestamp, ``ts_event`` for these schemas), where ``start``
  is the replay start the live connection would have used (resume position minus
  the overlap) and ``end = now - horizon + margin``: late enough that the live
  replay from there is inside the horizon with ``margin`` to spare, capped at
  the dataset's available end (``metadata.get_dataset_range``) when it answers.
* **Schemas**: ``definition`` and the live trade schema, same dataset, symbols
  and ``stype_in`` as the live subscription. Definitions start where the live
  subscription would start them; "the whole history" (``start=0``, before the
  first trade) becomes the UTC midnight before ``start`` (Databento publishes a
  definition of every listed instrument each day).
* **Budget**: both requests are priced with ``metadata.get_cost`` first and
  refused, with nothing downloaded, when the sum exceeds
  ``IFD_LIVE_BACKFILL_BUDGET_USD`` (default 0: backfill off).
* **Records** are decoded with DBN version upgrade to v3 (what the live
  gateway sends), so a record fetched here is byte-identical to the same record
  replayed live, and merged into one timeline ordered by ``(ts_recv, ts_event)``
  (stable), as the live gateway sends them. The feed accepts them as one replay
  connection: its de-duplication drops what was emitted before the gap and what
  the live replay sends again after it.

Every request (done, refused, failed) is a :class:`models.records.BackfillRow`
for ``ifd.backfills``.

Reference: Databento docs, "Historical API: timeseries.get_range",
"metadata.get_cost", "metadata.get_dataset_range"; "Live API: intraday replay".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import databento_dbn as dbn

from models.errors import PipelineError
from models.redact import SecretFilter

log = logging.getLogger(__name__)

NS = 1_000_000_000
DAY_NS = 86_400 * NS
UNDEF_TIMESTAMP = 2**64 - 1


class BackfillFailedError(PipelineError):
    """Databento Historical did not deliver the range (network, HTTP or decoding error)."""


class HistoricalClient(Protocol):
    """The part of ``databento.Historical`` a backfill uses."""

    metadata: Any
    timeseries: Any


@dataclass(frozen=True, slots=True)
class BackfillRecord:
    """One fetched record: its DBN v3 bytes and times (ns UTC; ``ts_recv`` None without one)."""

    raw: bytes
    ts_event: int
    ts_recv: int | None


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """What one backfill asks Historical for (times ns UTC, ``[start, end)`` on ``ts_event``)."""

    dataset: str
    symbols: tuple[str, ...]
    stype_in: str
    schema: str
    start_ns: int
    definitions_start_ns: int
    end_ns: int

    def requests(self) -> list[dict[str, object]]:
        """``get_cost`` / ``get_range`` keyword arguments, definitions first."""
        base: dict[str, object] = dict(dataset=self.dataset, symbols=list(self.symbols),
                                       stype_in=self.stype_in, end=self.end_ns)
        return [{**base, "schema": "definition", "start": self.definitions_start_ns},
                {**base, "schema": self.schema, "start": self.start_ns}]

    def describe(self) -> str:
        """``start .. end`` in ISO UTC, for logs and messages."""
        return f"{iso_utc(self.start_ns)} .. {iso_utc(self.end_ns)}"


def iso_utc(ns: int) -> str:
    """``YYYY-MM-DD HH:MM:SSZ`` of a time in ns since epoch UTC (logs and messages)."""
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def plan_range(*, dataset: str, symbols: list[str], stype_in: str, schema: str,
               data_start_ns: int, definitions_start_ns: int, end_ns: int) -> BackfillPlan:
    """Plan ``[data_start_ns, end_ns)``; ``definitions_start_ns`` 0 = the UTC midnight before.

    Databento publishes a definition of every listed instrument each day, so that midnight
    stands for "the whole history" of the definitions.
    """
    defs = definitions_start_ns or data_start_ns // DAY_NS * DAY_NS
    return BackfillPlan(dataset, tuple(symbols), stype_in, schema, data_start_ns,
                        min(defs, data_start_ns), max(data_start_ns + 1, end_ns))


def plan_backfill(*, dataset: str, symbols: list[str], stype_in: str, schema: str,
                  data_start_ns: int, definitions_start_ns: int, now_ns: int, horizon_ns: int,
                  margin_ns: int) -> BackfillPlan:
    """Plan the range a gap needs (module docstring); ``definitions_start_ns`` 0 = whole history.

    Raises
    ------
    ValueError
        ``margin_ns`` does not leave the live replay inside the horizon (must be ``< horizon_ns``).
    """
    if not 0 < margin_ns < horizon_ns:
        msg = f"backfill margin {margin_ns / NS:.0f} s must be > 0 and below the replay horizon"
        raise ValueError(msg)
    return plan_range(dataset=dataset, symbols=symbols, stype_in=stype_in, schema=schema,
                      data_start_ns=data_start_ns, definitions_start_ns=definitions_start_ns,
                      end_ns=now_ns - horizon_ns + margin_ns)


def decode_timeline(payloads: list[bytes]) -> list[BackfillRecord]:
    """Decode DBN streams (any version, plain or zstd) to v3 records in ``(ts_recv, ts_event)`` order.

    Gateway-made records (system, error, symbol-mapping messages) are left out.

    Raises
    ------
    BackfillFailedError
        A payload is not DBN.
    """
    entries: list[tuple[int, int, int, BackfillRecord]] = []
    for index, payload in enumerate(payloads):
        decoder = dbn.DBNDecoder(
            upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3)  # type: ignore[arg-type]  # stub: int
        try:
            decoder.write(_plain(payload))
            out = decoder.decode()
        except Exception as exc:  # databento_dbn raises ValueError/RuntimeError with no common base
            msg = f"backfill response {index} is not DBN: {exc}"
            raise BackfillFailedError(msg) from None
        for seq, record in enumerate(out):
            if isinstance(record, dbn.Metadata | dbn.SystemMsg | dbn.ErrorMsg
                          | dbn.SymbolMappingMsg):
                continue
            ts_event = int(record.ts_event)
            ts_recv = getattr(record, "ts_recv", None)
            ts_recv = None if ts_recv is None or ts_recv == UNDEF_TIMESTAMP else int(ts_recv)
            order = ts_recv if ts_recv is not None else ts_event
            entries.append((order, ts_event, index * (1 << 40) + seq,
                            BackfillRecord(bytes(record), ts_event, ts_recv)))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [e[3] for e in entries]


@dataclass
class BackfillOutcome:
    """Result of one :meth:`HistoricalBackfill.run` (``records`` empty unless ``outcome == "done"``)."""

    plan: BackfillPlan
    cost_usd: float
    outcome: str
    """``done``, ``refused`` (over budget) or ``failed``."""
    records: list[BackfillRecord]
    error: str = ""
    seconds: float = 0.0


class HistoricalBackfill:
    """Prices and fetches one gap from Databento Historical.

    Parameters
    ----------
    key : str
        Databento API key (never logged; error texts are scrubbed with ``scrub``).
    budget_usd : float
        Most one backfill may cost; 0 refuses every backfill.
    gateway : str | None
        Historical API base URL (None: Databento's default).
    client_factory : callable | None
        ``databento.Historical``-compatible factory (None: the real client).
    scrub : SecretFilter | None
        Removes the key from error texts.
    """

    def __init__(self, key: str, budget_usd: float, *, gateway: str | None = None,
                 client_factory: Callable[..., HistoricalClient] | None = None,
                 scrub: SecretFilter | None = None) -> None:
        self._key = key
        self.budget_usd = budget_usd
        self._gateway = gateway
        self._factory = client_factory
        self._scrub = scrub or SecretFilter([key])

    def _client(self) -> HistoricalClient:
        if self._factory is not None:
            factory = self._factory
        else:
            import databento

            factory = databento.Historical
        kwargs: dict[str, object] = {"key": self._key}
        if self._gateway:
            kwargs["gateway"] = self._gateway
        return factory(**kwargs)

    def _available_end_ns(self, client: HistoricalClient, dataset: str) -> int | None:
        """Return the dataset's available end, or None when Historical does not say."""
        try:
            answer = client.metadata.get_dataset_range(dataset=dataset)
            end = answer.get("end") if isinstance(answer, dict) else None
            if not end:
                return None
            return int(datetime.fromisoformat(str(end).replace("Z", "+00:00")).timestamp() * NS)
        except Exception as exc:  # an optional cap: the range request itself will tell
            log.info("backfill: dataset range not available (%s): using the planned end",
                     self._scrub.scrub(str(exc)))
            return None

    def run(self, plan: BackfillPlan) -> BackfillOutcome:
        """Price ``plan``, then fetch it within budget.

        Never raises for Databento errors: the outcome says ``refused`` or ``failed`` with the
        reason (key removed); the caller decides what stops.
        """
        began = time.monotonic()
        cost = 0.0
        try:
            client = self._client()
            available = self._available_end_ns(client, plan.dataset)
            if available is not None and available < plan.end_ns:
                plan = BackfillPlan(plan.dataset, plan.symbols, plan.stype_in, plan.schema,
                                    plan.start_ns, plan.definitions_start_ns,
                                    max(plan.start_ns, available))
            if plan.end_ns <= plan.start_ns:  # Historical has nothing newer yet
                return BackfillOutcome(plan, 0.0, "done", [], "", time.monotonic() - began)
            requests = plan.requests()
            cost = sum(float(client.metadata.get_cost(**r)) for r in requests)
            if cost > self.budget_usd:
                text = (f"backfill {plan.describe()} would cost ${cost:,.2f}, above "
                        f"IFD_LIVE_BACKFILL_BUDGET_USD=${self.budget_usd:,.2f}")
                if self.budget_usd == 0:
                    text += " (backfill is off: set IFD_LIVE_BACKFILL_BUDGET_USD to enable it)"
                return BackfillOutcome(plan, cost, "refused", [], text, time.monotonic() - began)
            log.info("backfill: fetching %s from Databento Historical (%s %s, est. $%.2f)",
                     plan.describe(), plan.schema, ",".join(plan.symbols), cost)
            payloads = [_store_bytes(client.timeseries.get_range(**r)) for r in requests]
            records = decode_timeline(payloads)
        except Exception as exc:  # HTTP, network, decoding: one clear, key-free reason
            text = f"backfill {plan.describe()} failed: {self._scrub.scrub(str(exc)) or type(exc).__name__}"
            return BackfillOutcome(plan, cost, "failed", [], text, time.monotonic() - began)
        return BackfillOutcome(plan, cost, "done", records, "", time.monotonic() - began)


def _store_bytes(store: Any) -> bytes:
    """DBN bytes of what ``get_range`` returned (a ``DBNStore``, or raw bytes)."""
    if isinstance(store, bytes | bytearray):
        return bytes(store)
    return bytes(store.reader.read())  # DBNStore: a fresh, decompressed stream of the response


def _plain(data: bytes) -> bytes:
    """Return ``data`` decompressed when it is a zstd frame."""
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(data) as stream:
            return stream.read()
    return data


__all__ = ["BackfillFailedError", "BackfillOutcome", "BackfillPlan", "BackfillRecord",
           "HistoricalBackfill", "decode_timeline", "iso_utc", "plan_backfill", "plan_range"]
