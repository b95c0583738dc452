"""The IFD dataflow: DBN → normalise → aggressor side → 5-min windows → ClickHouse.

Run it::

    python -m bytewax.run flows.ifd                 # bundled NQ.OPT sample → embedded chdb
    IFD_SOURCE='../shared/data/real/*.mbo.dbn.zst' python -m bytewax.run flows.ifd
    IFD_MODE=live DATABENTO_API_KEY=… python -m bytewax.run flows.ifd   # live NQ.OPT

Steps (step ids)::

    read_and_aggregate (source partitions: read, normalise, aggressor side, parts)
      ├─ part blocks + heartbeats ─ key_by_shard ─ pressure_window (tumbling, event time)
      │     ├─ down ─ finish_window ─┐
      │     └─ late ─ late_parts ────┤
      │     └─ down ─ key_for_scoring ─ score_ifd ─ signals ─┤
      └─ stats / dead letters ───────┴─ outputs ─ clickhouse

This module only wires operators; the logic lives in bytewax-free modules
(:mod:`flows.stream`, :mod:`flows.pressure`, :mod:`flows.aggressor`,
:mod:`flows.normalise`, :mod:`connectors.dbn`).

``flow`` is built lazily on first access (settings are read then, not at
import); :func:`build_flow` builds one from explicit settings.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard, cast

import bytewax.operators as op
import bytewax.operators.windowing as win
import numpy as np
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from connectors.dbn import read_definitions
from connectors.files import DBNFileSource
from connectors.inputs import DataInput, partition_inputs, plan_inputs, split_series
from connectors.live import LiveClient
from connectors.live_source import LiveSource
from connectors.processed import ProcessedSource
from flows.baselines import BaselineBook, add_history
from flows.clock import PartitionClock, Progress
from flows.consensus import SignalScorer, load_scorers, with_consensus
from flows.exchange_time import cme_sessions
from flows.instruments import InstrumentCatalog
from flows.pressure import shard_key
from flows.routing import SINK_WORKER, key_on_worker
from flows.scoring import CLASS_RANK, DeferredSignals, Scorer, ScorerState, built_signals
from flows.stream import StreamItem, StreamProcessor, normalise_batch
from flows.sweeps import TapeRules
from flows.sweeps import warm_up as warm_up_sweeps
from flows.validate import MAX_SKEW_NS
from models.batch import SourceBatch
from models.errors import PipelineError, fatal_errors
from models.latency import LatencyMeter
from models.records import (
    AbsorptionRows,
    Heartbeat,
    IcebergRows,
    PartBlock,
    WindowResult,
    ns_to_datetime,
)
from models.settings import AlertSettings, LiveSettings, Settings, load_settings, masked
from models.signals import Signal, SignalClass
from samples import ensure_sample
from sinks.alerts import AlertDispatcher
from sinks.bytewax_sink import AlertSink, ClickHouseDynamicSink, ClickHouseSink, FeedSink
from sinks.clickhouse import apply_schema, load_history, open_store
from sinks.feed import FeedServer

log = logging.getLogger("ifd")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Window alignment: UTC midnight."""


def _item_time(item: PartBlock | Heartbeat) -> datetime:
    return ns_to_datetime(item.last_ts_ns if isinstance(item, PartBlock) else item.ts_ns)


def _replay_now() -> datetime:
    """Frozen 'system time' for replay: watermarks advance by event time only."""
    return EPOCH


def _is_window_item(item: StreamItem) -> TypeGuard[PartBlock | Heartbeat | Progress]:
    """Whether ``item`` travels to the windows (else it is a counter for the sink)."""
    return isinstance(item, PartBlock | Heartbeat | Progress)


def _fold(acc: list[PartBlock], item: PartBlock | Heartbeat) -> list[PartBlock]:
    if isinstance(item, PartBlock):
        acc.append(item)
    return acc


def _finish(key_window: tuple[str, tuple[int, list[PartBlock]]]) -> WindowResult | None:
    key, (_window_id, blocks) = key_window
    if not blocks:  # a window opened only by a heartbeat
        return None
    parts = PartBlock.concat(blocks)
    assert parts.window_start_ns is not None
    return WindowResult(key, parts.window_start_ns, parts)


def _late(key_item: tuple[str, tuple[int, PartBlock | Heartbeat]]) -> WindowResult | None:
    key, (_window_id, item) = key_item
    if not isinstance(item, PartBlock):
        return None  # a heartbeat behind another input's watermark carries nothing
    assert item.window_start_ns is not None
    return WindowResult(key, item.window_start_ns, item.with_late(), correction=True)


def _stream_step(processor: StreamProcessor, latency: LatencyMeter | None) -> Callable[..., Any]:
    """Build the source partitions' step: normalise + ``processor.process`` of a :class:`SourceBatch`.

    Other source items (live usage and backfill rows) pass through unchanged. Live
    (``latency``), each trade's ``ts_recv`` → aggregated latency is recorded.
    """
    def step(state: Any, item: Any) -> tuple[Any, list[Any]]:
        if not isinstance(item, SourceBatch):
            return state, [item]
        normalised = normalise_batch(item)
        out = processor.process(state, normalised)
        if latency is not None:
            ts_recv = normalised[1].trades.ts_recv
            if len(ts_recv):
                now_ns = time.time_ns()
                known = ts_recv[(ts_recv > 0) & (ts_recv <= now_ns)]
                latency.record("record", now_ns / 1e9, (now_ns - known) / 1e6)
        return out

    return step


@dataclass
class _Input:
    """What an input mode hands the shared body of :func:`build_flow`."""

    source: Any
    """The reading source (:class:`DBNFileSource` or :class:`LiveSource`)."""
    clock: win.EventClock
    catalog: InstrumentCatalog
    total_bytes: int
    first_day: int
    symbology: dict[str, frozenset[int]] = field(default_factory=dict)
    partition_keys: list[str] = field(default_factory=list)
    floors: dict[str, int] = field(default_factory=dict)
    """Source partition → a time (ns UTC) none of its items precedes (:class:`PartitionClock`)."""


def _live_input(settings: Settings, live: LiveSettings,
                live_client_factory: Callable[..., LiveClient] | None,
                alerts: AlertSettings | None) -> _Input:
    """Databento live: batches, usage rows and an event clock that also follows the system clock."""
    lateness = timedelta(seconds=settings.allowed_lateness_s)
    live.key()  # fail fast with a clear message when DATABENTO_API_KEY is missing
    log.info("live settings: %s", masked(live))
    total_bytes, first_day = 0, int(time.time() // 86_400)
    catalog = InstrumentCatalog()  # definitions arrive in-stream
    source = LiveSource(
        live, live_client_factory,
        (lambda: AlertDispatcher(alerts, notices_only=True)) if alerts is not None else None,
        lateness_s=settings.allowed_lateness_s, window_s=settings.window_length_s)
    # live: the watermark also advances with the system clock (bytewax default). A window closing
    # at event time T is due on the wall clock at T + lateness: bytewax's default wake-up at T
    # (identity) finds the window still open and re-activates the operator at once until the
    # watermark gets there, a busy loop of `lateness` seconds per window (measured: one core at
    # 100 % for the whole lateness; with the shift, 6 % over the run and the close ~1 ms late).
    clock = win.EventClock(_item_time, wait_for_system_duration=lateness,
                           to_system_utc=lambda ts: ts + lateness)
    return _Input(source, clock, catalog, total_bytes, first_day)


def _placed_keys(shards: int, workers: int, *, one_sink: bool) -> tuple[list[str], str]:
    """Window shard keys and the scoring key, placed on workers (:mod:`flows.routing`).

    With one embedded store (``one_sink``) every shard and the scoring step sit on the sink's
    worker: closed windows and signals reach it without being pickled to another process (on the
    anchor input with 2 processes, the closed windows alone were 235 MB of pickles). Otherwise
    shard *i* sits on worker *i* mod ``workers``, so every worker folds windows and writes its
    own rows.
    """
    if one_sink:
        return ([key_on_worker(shard_key(i), SINK_WORKER, workers) for i in range(shards)],
                key_on_worker("ifd", SINK_WORKER, workers))
    return [key_on_worker(shard_key(i), i % workers, workers) for i in range(shards)], "ifd"


def _session_of(ts_ns: int) -> int:
    """CME trading day of a time in ns UTC (:mod:`flows.exchange_time`)."""
    return int(cme_sessions().locate_ns(np.array([ts_ns], dtype=np.int64))[0])


def _replay_input(settings: Settings) -> _Input:
    """DBN files (or the bundled sample): one source partition per file series, replay clock."""
    lateness = timedelta(seconds=settings.allowed_lateness_s)
    symbology: dict[str, frozenset[int]] = {}
    patterns = settings.source_patterns() or ensure_sample(settings.data_dir)
    plan = plan_inputs(patterns, settings.trade_schema)
    log.info(
        "inputs: %d data file(s), %d definition file(s) with %d definitions",
        len(plan.data), len(plan.definition_files), len(plan.definitions),
    )
    total_bytes = plan.total_bytes
    first_day = min(d.header.start_ns for d in plan.data) // 1_000_000_000 // 86_400
    catalog = InstrumentCatalog(plan.definitions, plan.symbols)
    for data in plan.data:
        symbology[data.source_id] = frozenset(data.header.symbol_by_id)
        if data.header.schema is None:  # in-file definitions known before any trade
            catalog.update(read_definitions(data.path))
    partitions = partition_inputs(plan.data)
    processes = cluster_processes(env_addresses=settings.bytewax_addresses)
    index = process_index(env_process_id=settings.bytewax_process_id)
    by_file = settings.replay_partitions == "file" or (
        settings.replay_partitions == "auto" and processes > 1)
    warm_from: dict[str, DataInput] = {}
    if by_file:
        partitions, warm_from = split_series(partitions, _session_of)
        log.info("replay: %d source partition(s), one per file where a CME session begins",
                 len(partitions))
    partition_keys = [files[0].source_id for files in partitions]
    floors = {files[0].source_id: files[0].header.start_ns - MAX_SKEW_NS
              for files in partitions if files[0].header.start_ns > 0}
    local = (index, processes) if index is not None and 0 <= index < processes else None
    source = DBNFileSource(partitions, batch_records=settings.batch_records, warm_from=warm_from,
                           process=local, concurrency=workers_per_process())
    clock = win.EventClock(
        _item_time,
        wait_for_system_duration=lateness,
        now_getter=_replay_now,
        to_system_utc=lambda _ts: None,
    )
    return _Input(source, clock, catalog, total_bytes, first_day, symbology, partition_keys, floors)


def build_flow(
    settings: Settings | None = None,
    *,
    sink: Sink[Any] | None = None,
    alerts: AlertSettings | None | bool = True,
    live: LiveSettings | None = None,
    live_client_factory: Callable[..., LiveClient] | None = None,
    feed: FeedServer | None = None,
) -> Dataflow:
    """Build the IFD dataflow.

    Parameters
    ----------
    settings : Settings | None
        None reads ``IFD_*`` from the environment / ``.env``.
    sink : bytewax Sink | None
        Replace the ClickHouse sink (tests use ``bytewax.testing.TestingSink``
        to see every output item in emission order).
    alerts : AlertSettings | None | bool
        Alert delivery for signals: True uses ``settings.alerts`` (``IFD_ALERT_*``); None/False
        turns alerts off.
    live : LiveSettings | None
        With ``IFD_MODE=live``: replaces ``settings.live`` (``IFD_LIVE_*``).
    live_client_factory : callable | None
        Replaces ``databento.Live`` (tests).
    feed : FeedServer | None
        A started live-feed server to publish signals on (tests connect clients first); None
        with ``IFD_FEED_ENABLED`` starts one with the flow (:mod:`sinks.feed`).

    Raises
    ------
    ConfigError, SourceError, DBNDecodeError
        Bad settings, missing inputs, or a header that is not DBN.
    """
    settings = settings or load_settings()
    alerts = settings.alerts if alerts is True else alerts or None
    _configure_logging()
    log.info("settings: %s", settings.summary())
    log.debug("effective settings: %s", masked(settings))
    flow = Dataflow("ifd")
    window_ns = settings.window_length_s * 1_000_000_000
    lateness = timedelta(seconds=settings.allowed_lateness_s)
    if settings.mode == "live":
        inp = _live_input(settings, live or settings.live, live_client_factory, alerts)
    else:
        inp = _replay_input(settings)
    clock, catalog = inp.clock, inp.catalog
    symbology, partition_keys = inp.symbology, inp.partition_keys
    total_bytes, first_day = inp.total_bytes, inp.first_day
    workers = bytewax_workers(env_addresses=settings.bytewax_addresses)
    shards = settings.window_shards or workers
    one_sink = sink is None and settings.embedded
    shard_keys, scoring_key = _placed_keys(shards, workers, one_sink=one_sink)
    # with one embedded store, the sink, windows and scoring all run in process 0 (-i 0): the
    # other processes only read and aggregate their files, and never open the store
    stores = not one_sink or process_index(env_process_id=settings.bytewax_process_id) in (None, 0)
    if stores:
        _prepare_store(settings)
    else:
        log.info("this process reads and aggregates its files; process 0 stores and scores them")
    processor = StreamProcessor(
        catalog,
        window_ns=window_ns,
        lateness_ns=int(lateness.total_seconds() * 1e9),
        shards=shards,
        shard_keys=shard_keys,
        symbology=symbology,
        merged_clock=len(partition_keys) > 1,
        tape=_tape_rules(settings),
        l3=settings.l3_enabled,
        book_threads=settings.l3_book_threads,
        live=settings.mode == "live",
    )
    latency = LatencyMeter() if settings.mode == "live" else None  # wall-clock stages: live only
    # the per-stream step runs inside each source partition, on the worker that reads it: only
    # its aggregated parts cross workers (connectors.processed)
    items = op.input("read_and_aggregate", flow,
                     ProcessedSource(inp.source, _stream_step(processor, latency)))
    split = op.branch("split_window_items", items, _is_window_item)
    by_shard = op.key_on("key_by_shard", split.trues, lambda x: x.key)
    if len(partition_keys) > 1:  # the slowest partition sets each key's event clock
        by_shard = op.stateful_flat_map("merge_partition_clocks", by_shard,
                                        PartitionClock(partition_keys, inp.floors).step)
    windower = win.TumblingWindower(length=timedelta(seconds=settings.window_length_s),
                                    align_to=EPOCH)
    windows = win.fold_window(
        "pressure_window", by_shard, clock, windower, list, _fold, lambda a, b: a + b
    )
    closed = op.filter_map("finish_window", windows.down, _finish)
    late = op.filter_map("late_parts", windows.late, _late)
    streams = [closed, late, split.falses]  # split.falses: stats, dead letters, live usage
    if settings.scoring.enabled:
        scorer = Scorer(settings.scoring, lambda: _new_book(settings),
                        history=_load_history(settings, first_day) if stores else None)
        scorers = load_scorers(settings.scoring.scorers)
        # MBO evidence (icebergs, absorption) reaches the scoring state for the l3 scorer
        l3_rows = op.filter_map("l3_evidence", split.falses, _l3_evidence)

        # one scoring state: bucket baselines and parity forwards span every shard; late parts
        # re-score their window (a signal only when its class rises)
        merged = cast("Stream[WindowResult | IcebergRows | AbsorptionRows]",
                      op.merge("closed_late_and_evidence", closed, late, l3_rows))
        to_score = op.key_on("key_for_scoring", merged, lambda _r: scoring_key)
        # the alerted class is built first; the window's other signals reach the sinks unbuilt
        urgent = None if alerts is None else CLASS_RANK[SignalClass(alerts.min_class)]
        scored = op.stateful_batch("score_ifd", to_score,
                                   lambda resumed: ScoringLogic(scorer, resumed, scorers, latency, urgent))
        signals = op.map("signals", scored, lambda key_signal: key_signal[1])
        streams.append(signals)
        if alerts is not None:
            alerted = op.filter_map("alerted_class", signals, _urgent)
            first_wait_s = alerts.first_wait_s if settings.mode == "live" else 0.0
            op.output("alerts", op.key_on("route_to_alerts", alerted, lambda _s: "alerts"),
                      AlertSink(alerts, latency, first_wait_s=first_wait_s))
        if feed is not None or settings.feed.enabled:
            op.output("feed", op.key_on("route_to_feed", signals, lambda _s: "feed"),
                      FeedSink(settings.feed, feed))
    elif feed is not None or settings.feed.enabled:
        log.warning("live feed not started: scoring is off (IFD_SCORING_ENABLED=false), "
                    "so there are no signals to serve")
    outputs = op.merge("outputs", *streams)
    if sink is not None:  # a sink of the caller's sees built signals only
        op.output("clickhouse", op.flat_map("build_signals", outputs, lambda x: built_signals([x])), sink)
    elif settings.embedded:
        keyed = op.key_on("route_to_chdb", outputs, lambda _x: "clickhouse")
        op.output("clickhouse", keyed, ClickHouseSink(settings, total_bytes, latency=latency))
    else:
        op.output("clickhouse", outputs, ClickHouseDynamicSink(settings, total_bytes,
                                                                   latency=latency))
    return flow


class ScoringLogic(StatefulBatchLogic[WindowResult | IcebergRows | AbsorptionRows,
                                      Signal | DeferredSignals, ScorerState]):
    """The scoring step's bytewax state: one :class:`ScorerState`, snapshotted copy-on-write.

    bytewax's ``stateful_map`` deep-copies its state at every epoch; this logic hands bytewax a
    :meth:`ScorerState.snapshot` instead, whose cost does not grow with the baselines held.
    bytewax hands it every item of an activation at once (a replay batch closes ~290 windows
    per shard): consecutive first-time windows are scored in one
    :meth:`~flows.scoring.Scorer.score_run`, with the same results as one at a time.
    Iceberg and absorption rows only feed the ``l3`` evidence; every signal then gets each
    scorer's score and the consensus (:mod:`flows.consensus`). Evidence that arrives after its
    window was scored is not counted in that window's consensus.
    """

    def __init__(self, scorer: Scorer, resumed: ScorerState | None,
                 scorers: list[tuple[SignalScorer, float]] | None = None,
                 latency: LatencyMeter | None = None, urgent_rank: int | None = None) -> None:
        self.scorer = scorer
        self.latency = latency
        self.scorers = scorers or []
        self.urgent_rank = urgent_rank
        """Signals of this class rank and above are built at once; the rest are deferred."""
        self.state = resumed if resumed is not None else scorer.new_state()

    def on_batch(self, values: list[WindowResult | IcebergRows | AbsorptionRows],
                 ) -> tuple[list[Signal | DeferredSignals], bool]:
        """Score closed windows and late corrections in arrival order, record L3 evidence.

        Per window: its urgent signals (class rank ≥ ``urgent_rank``), then at most one
        :class:`~flows.scoring.DeferredSignals` with the rest, built by the sinks.
        """
        out: list[Signal | DeferredSignals] = []
        run: list[WindowResult] = []
        for value in values:
            if isinstance(value, WindowResult) and not value.correction:
                run.append(value)
                continue
            out.extend(self._score_run(run))
            run = []
            if isinstance(value, IcebergRows | AbsorptionRows):
                self.state.l3.add(value)  # evidence for the windows after it
            else:
                out.extend(self._emit(value, *self.scorer.score_split(
                    self.state, value.parts, correction=True, urgent_rank=self.urgent_rank)))
        out.extend(self._score_run(run))
        return out, StatefulBatchLogic.RETAIN

    def _score_run(self, run: list[WindowResult]) -> list[Signal | DeferredSignals]:
        if not run:
            return []
        results = self.scorer.score_run(self.state, [v.parts for v in run],
                                        urgent_rank=self.urgent_rank)
        return [item for value, (signals, deferred) in zip(run, results, strict=True)
                for item in self._emit(value, signals, deferred)]

    def _emit(self, value: WindowResult, signals: list[Signal],
              deferred: DeferredSignals | None) -> list[Signal | DeferredSignals]:
        """One scored window's outputs, with the consensus and the scoring latency."""
        if self.scorers:
            l3 = self.state.l3
            signals = [with_consensus(s, self.scorers, l3.evidence(
                s.contract_key, int(s.window_start.timestamp()))) for s in signals]
            if deferred is not None:
                deferred.with_scorers(self.scorers, [l3.evidence(key, deferred.window_start_s)
                                                     for key in deferred.keys])
        out: list[Signal | DeferredSignals] = list(signals)
        if deferred is not None:
            out.append(deferred)
        if self.latency is not None and out and not value.correction:
            now = time.time()
            end_s = ((value.parts.window_start_ns or 0) + value.parts.window_ns) / 1e9  # each signal's
            self.latency.record("signal_scored", now,
                                [1e3 * (now - end_s)] * (len(signals) + len(deferred or ())))
        return out

    def snapshot(self) -> ScorerState:
        """Copy-on-write copy of the state (see :meth:`ScorerState.snapshot`)."""
        return self.state.snapshot()


def served_flow(host: str | None = None, port: int | None = None) -> Dataflow:
    """Return the flow with the live feed on (``ifd run --serve``).

    bytewax calls it from its command line: ``python -m bytewax.run
    "flows.ifd:served_flow(port=8765)"``. ``host``/``port`` replace ``IFD_FEED_HOST``/``PORT``.
    """
    settings = load_settings()
    changes: dict[str, Any] = {"enabled": True}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    feed = settings.feed.model_copy(update=changes)
    return build_flow(settings.model_copy(update={"feed": feed}))


def _urgent(item: Signal | DeferredSignals) -> Signal | None:
    """Signals built at once (the alerted class and above); deferred ones are below it."""
    return item if isinstance(item, Signal) else None


def _l3_evidence(item: StreamItem) -> IcebergRows | AbsorptionRows | None:
    """Pass iceberg and absorption rows on to scoring (they also go to the sink)."""
    return item if isinstance(item, IcebergRows | AbsorptionRows) else None


def _tape_rules(settings: Settings) -> TapeRules:
    s = settings.scoring
    return TapeRules(interval_ns=round(s.sweep_interval_s * 1e9), min_strikes=s.sweep_min_strikes,
                     min_volume=int(s.sweep_min_volume), block_min_lots=s.block_min_lots,
                     block_min_lots_by_product=dict(s.block_min_lots_by_product))


def _new_book(settings: Settings) -> BaselineBook:
    return BaselineBook(
        lookback_days=settings.scoring.lookback_days,
        min_days=settings.scoring.min_days,
        tod_bucket_s=settings.scoring.tod_bucket_s,
        window_s=settings.window_length_s,
    )


def _prepare_store(settings: Settings) -> None:
    """Create or migrate the ``ifd`` schema once, at flow build (never in a sink partition)."""
    store = open_store(settings)
    try:
        apply_schema(store)
    finally:
        store.close()


def _load_history(settings: Settings, first_day: int) -> BaselineBook | None:
    """Contract baselines from ``ifd.pressure_metrics`` for days before ``first_day`` (days since epoch)."""
    if settings.embedded and not settings.effective_chdb_path.exists():
        return None
    until_s = first_day * 86_400
    since_s = until_s - (settings.scoring.lookback_days * 2 + 7) * 86_400
    store = open_store(settings)
    try:
        table = load_history(store, since_s, until_s)
    finally:
        store.close()
    if table.num_rows == 0:
        return None
    book = _new_book(settings)
    add_history(book, table)
    log.info("baselines: %d windows of history over %d trading days loaded from ClickHouse",
             table.num_rows, len(book.trading_days))
    return book


def _bytewax_argv() -> list[str]:
    """Return the ``python -m bytewax.run`` arguments of this process ([] when not started that way)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return sys.argv[1:] if main_spec is not None and main_spec.name == "bytewax.run" else []


def bytewax_workers(argv: list[str] | None = None, env_addresses: str | None = None) -> int:
    """Return the run's total bytewax workers: ``-w/--workers-per-process`` × processes (``-a``).

    The default window shard count: one shard per worker spreads the window work over every
    worker, and no more keys than that (each shard costs a scoring call per window: measured
    in README "Scaling", 16 shards cost 25 % more CPU than 1 on one worker).
    """
    argv = _bytewax_argv() if argv is None else argv
    return workers_per_process(argv) * cluster_processes(argv, env_addresses)


def _flag(argv: list[str], short: str, long: str) -> str | None:
    """Return the value of ``-x V`` / ``--long V`` / ``--long=V`` in ``argv`` (the last one), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg in (short, long) and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(long + "="):
            value = arg.split("=", 1)[1]
    return value


def workers_per_process(argv: list[str] | None = None) -> int:
    """Return this process's bytewax workers (``-w/--workers-per-process``, default 1)."""
    value = _flag(_bytewax_argv() if argv is None else argv, "-w", "--workers-per-process")
    return max(1, int(value)) if value is not None and value.isdigit() else 1


def process_index(argv: list[str] | None = None, env_process_id: int | None = None) -> int | None:
    """Return this process's ``-i/--process-id`` (else ``BYTEWAX_PROCESS_ID``); None when unset."""
    value = _flag(_bytewax_argv() if argv is None else argv, "-i", "--process-id")
    if value is not None and value.strip().isdigit():
        return int(value)
    return env_process_id


def cluster_processes(argv: list[str] | None = None, env_addresses: str | None = None) -> int:
    """Return how many bytewax processes this run is one of (1 unless ``-a/--addresses`` lists more).

    Read from the ``python -m bytewax.run`` command line (``argv``, default ``sys.argv`` when
    ``__main__`` is ``bytewax.run``) or from ``BYTEWAX_ADDRESSES`` (bytewax's own variable).
    """
    addresses = env_addresses
    argv = _bytewax_argv() if argv is None else argv
    for i, arg in enumerate(argv):
        if arg in ("-a", "--addresses") and i + 1 < len(argv):
            addresses = argv[i + 1]
        elif arg.startswith("--addresses="):
            addresses = arg.split("=", 1)[1]
    return len([a for a in (addresses or "").split(";") if a.strip()]) or 1


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def _exit_with_recorded_status() -> None:
    """At process exit: exit with the code of a fatal error a source recorded (README "Exit codes")."""
    errors = fatal_errors()
    if not errors:
        return
    code = errors[-1].exit_code
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def __getattr__(name: str) -> Any:
    """Build ``flow`` on first access (``python -m bytewax.run flows.ifd``).

    A configuration or input error prints one line (no traceback) and exits
    with the error's code; fatal errors met while running set the exit code
    the same way once the flow has finished and flushed.
    """
    if name == "flow":
        try:
            built = build_flow()
        except PipelineError as exc:
            print(f"ifd: error: {exc}", file=sys.stderr, flush=True)  # noqa: T201 - CLI output
            raise SystemExit(exc.exit_code) from None
        atexit.register(_exit_with_recorded_status)
        warm_up_sweeps()
        # The start-up heap (modules, instrument catalog) is never scanned by the cyclic collector
        # again (Python docs, gc.freeze): each full collection of a replay then scans only what
        # the run allocates (10-day anchor replay: 0.14 s of full collections, 0.04 s frozen).
        gc.collect()
        gc.freeze()
        globals()["flow"] = built
        return built
    raise AttributeError(name)
