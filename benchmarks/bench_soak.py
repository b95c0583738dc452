"""Soak: a whole simulated NQ.OPT session on the full chain through the live flow, with faults.

Run::

    .venv/bin/python benchmarks/bench_soak.py                      # 400,000 trades, 5,628 options
    .venv/bin/python benchmarks/bench_soak.py --trades 100000 --drops 3

The generator writes one whole CME Globex day (23 h of event time, 17:00 CT the evening before to
16:00 CT: the evening and overnight session, then the RTH open peak, the 0DTE weekly's expiry peak
at 20:00 UTC and the last hour; ``samples.generator``, ``full_chain``: 12 weeklies +
end-of-month + quarterly, every 10-pt strike within 1000 pts; ``globex_day``). The project's local
Databento gateway (``tests/live_gateway.py``) plays it as fast as the flow reads (event time
compressed) with ``--drops`` TCP resets at random points, a gap a naive reconnect would lose, and a
stall inside a second with heartbeats. The real live flow (``flows.ifd``, embedded chdb, bytewax
epochs of 10 s) reads it to its idle exit. Printed, never asserted:

* records/s (wall, start-up included) and trades/s;
* peak and final RSS, and RSS at 25 / 50 / 75 % of the run (flat = the last within 10 % of the
  50 % figure);
* snapshot time per 10 s epoch: every state copy bytewax makes (``copy.deepcopy`` in its
  operators and windowing, the scoring state's ``snapshot``, the live source's resume point),
  summed per epoch, mean and max, as wall time and as the copies' own thread CPU time (wall
  time also counts waits for the GIL that the in-process gateway and the store's writer hold),
  with the garbage collections that ran inside them, and per kind of state for the whole run;
* missing and duplicated trades: stored windows against an independent polars computation over
  the raw file (``tests.reference``), per (contract, window);
* ``ifd.latency`` per stage. In compressed event time the wall-clock stages measure how far the
  replayed past is behind now, not the pipeline: they are printed for completeness only.

``--realtime-minutes M`` adds a second phase that measures latency for real: a full-chain
session generated for today, sliced to the next M minutes of ``ts_recv``, played by the gateway
in real time (each record sent when the wall clock reaches its ``ts_recv``) with one drop, through
the live flow with 60-s windows, scoring on and alerts (``--alert-class``, default MONITOR) posted
to a local webhook; prints the signals stored per class, ``ifd.latency`` per stage (sample-weighted
over minutes: median of the minute p50s, worst minute p95/p99) and the window end → alert figure
beyond the allowed lateness. Before it, ``--history-days`` (default 20) earlier weekdays of the
same generator (other seeds), cut to the played time of day ± 1 h, are replayed into the run's
store, so the flow starts with full baselines as a deployed one does::

    .venv/bin/python benchmarks/bench_soak.py --skip-soak --realtime-minutes 6 --realtime-at 13:27 \
        --alert-class STRONG
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import multiprocessing
import random
import re
import sys
import tempfile
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bytewax.operators as bw_ops  # noqa: E402
import bytewax.operators.windowing as bw_win  # noqa: E402
import databento  # noqa: E402
from bytewax.testing import run_main  # noqa: E402

import connectors.live_source as live_source  # noqa: E402
import flows.ifd as ifd  # noqa: E402
from models.errors import clear_fatal_errors, fatal_errors  # noqa: E402
from models.settings import AlertSettings, Settings  # noqa: E402
from samples.generator import generate_session, write_slice  # noqa: E402
from sinks.clickhouse import ChdbStore  # noqa: E402
from tests.flowrun import stored_windows  # noqa: E402
from tests.live_gateway import Faults, LiveGateway  # noqa: E402
from tests.liverun import KEY, live_settings  # noqa: E402
from tests.reference import lee_ready_windows, trades_frame  # noqa: E402

EPOCH_S = 10.0


class SnapshotTimer:
    """Wall time spent in state copies, bucketed per epoch (10 s of the run).

    Garbage collections that run inside a copy (its allocations trigger them) are timed
    apart through :data:`gc.callbacks`, so the figure says how much of a snapshot is the
    collector's, not the copy's.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.per_epoch: dict[int, float] = {}
        self.gc_per_epoch: dict[int, float] = {}
        self.calls = 0
        self.gc_runs: dict[int, int] = {}
        self.cpu_per_epoch: dict[int, float] = {}
        """Thread CPU time of the copies: their own cost, without waits for the GIL."""
        self.by_what: dict[str, tuple[int, float, float]] = {}
        """What was copied (callable, or the type deep-copied) → (copies, wall s, CPU s)."""
        self._lock = threading.Lock()
        self._inside = threading.local()
        self._gc_began: float | None = None

    def _epoch(self) -> int:
        return int((time.monotonic() - self.t0) // EPOCH_S)

    def add(self, seconds: float, cpu_s: float, what: str) -> None:
        epoch = self._epoch()
        with self._lock:
            self.per_epoch[epoch] = self.per_epoch.get(epoch, 0.0) + seconds
            self.cpu_per_epoch[epoch] = self.cpu_per_epoch.get(epoch, 0.0) + cpu_s
            self.calls += 1
            n, total, cpu = self.by_what.get(what, (0, 0.0, 0.0))
            self.by_what[what] = (n + 1, total + seconds, cpu + cpu_s)

    def on_gc(self, phase: str, info: dict) -> None:
        """``gc.callbacks`` hook: time collections that run inside a timed copy."""
        if not getattr(self._inside, "depth", 0):
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        elif self._gc_began is not None:
            spent, self._gc_began = time.perf_counter() - self._gc_began, None
            epoch = self._epoch()
            with self._lock:
                self.gc_per_epoch[epoch] = self.gc_per_epoch.get(epoch, 0.0) + spent
                gen = int(info.get("generation", -1))
                self.gc_runs[gen] = self.gc_runs.get(gen, 0) + 1

    def wrap(self, fn):  # noqa: ANN001, ANN201 - any callable
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            depth = getattr(self._inside, "depth", 0)
            self._inside.depth = depth + 1
            began, began_cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._inside.depth = depth
                if depth == 0:
                    what = fn.__qualname__
                    if fn is copy.deepcopy and args:
                        what = f"deepcopy({type(args[0]).__name__})"
                    self.add(time.perf_counter() - began, time.thread_time() - began_cpu, what)
        return timed


def install_timers(timer: SnapshotTimer) -> None:
    """Time every snapshot path of the flow (see module docstring)."""
    timed_copy = types.SimpleNamespace(**{k: getattr(copy, k) for k in dir(copy) if not k.startswith("__")})
    timed_copy.deepcopy = timer.wrap(copy.deepcopy)
    bw_ops.copy = timed_copy  # type: ignore[attr-defined]
    bw_win.copy = timed_copy  # type: ignore[attr-defined]
    ifd.ScoringLogic.snapshot = timer.wrap(ifd.ScoringLogic.snapshot)  # type: ignore[method-assign]
    part = live_source._LivePartition  # noqa: SLF001
    part.snapshot = timer.wrap(part.snapshot)  # type: ignore[method-assign]


class RssSampler(threading.Thread):
    """RSS of this process every 0.25 s (``/proc/self/status``), MB."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()

    def run(self) -> None:
        self.t0 = time.monotonic()
        while not self._stop_event.wait(0.25):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.monotonic() - self.t0,
                                         int(line.split()[1]) / 1024))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def at(self, fraction: float) -> float:
        end = self.samples[-1][0]
        return next(mb for t, mb in self.samples if t >= fraction * end)

    def at_monotonic(self, when: float) -> float:
        """RSS at the first sample taken at or after ``time.monotonic()`` value ``when``, MB."""
        return next((mb for t, mb in self.samples if t >= when - self.t0), self.samples[-1][1])


def faults_for(rng: random.Random, gw: LiveGateway, drops: int) -> Faults:
    total = len(gw.timeline_keys())
    # one drop per connection, counted from its (replay) start: the run sees every drop
    points = [rng.randint(total // (4 * drops), total // (drops + 1)) for _ in range(drops)]
    inside = gw.positions_inside_second(["definition", "tbbo"])
    stall = rng.choice([n for n in inside if n > total // 2] or [total // 2])
    return Faults(drop_after=points, drop_reset=True, gap_records=200, stalls=[stall],
                  heartbeats_in_stall=True, stall_heartbeats=2, gateway_clock="wall",
                  close_after_end=False)  # a real gateway stays open with heartbeats


_SIGNAL_LINE = re.compile(r"^IFD (?:STRONG|MODERATE|MONITOR) .*? (\d{4}-\d{2}-\d{2} \d{2}:\d{2})Z", re.M)
"""A signal's title (a single alert's title, or a line of a digest): its window start, UTC."""


class _Hook(BaseHTTPRequestHandler):
    """The webhook: one JSON line per POST (arrival time, window starts of its signals)."""

    out: Any = None

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        now = time.time()
        text = f"{body.get('title', '')}\n{body.get('message', '')}"
        self.out.write(json.dumps({"at": now, "starts": _SIGNAL_LINE.findall(text)}) + "\n")
        self.out.flush()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def _serve_hook(out_path: str, ports: Any) -> None:
    """Run the webhook in its own process (a real channel's CPU is not the flow's)."""
    with open(out_path, "a") as out:  # noqa: PTH123 - one file, line-buffered by flush
        _Hook.out = out
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        ports.put(server.server_address[1])
        server.serve_forever()


def _serve_gateway(paths: list[str], faults: Faults, ports: Any, stop: Any) -> None:
    """Run the local gateway in its own process (a real gateway's CPU is not the flow's)."""
    with LiveGateway([Path(p) for p in paths], api_key=KEY, faults=faults) as gw:
        ports.put(gw.port)
        stop.wait()


def _rows(data_dir: Path, sql: str) -> list[dict]:
    store = ChdbStore(data_dir / "chdb")
    try:
        return store.query_arrow(sql).to_pylist()
    finally:
        store.close()


def signal_classes(data_dir: Path) -> str:
    """Signals stored per class and windows that produced them, e.g. ``STRONG 3 / MONITOR 410``."""
    rows = _rows(data_dir, "SELECT signal_class AS c, count() AS n, uniqExact(window_start) AS w "
                           "FROM ifd.ifd_signals FINAL GROUP BY c ORDER BY n")
    return ", ".join(f"{r['c']} {r['n']:,} ({r['n'] / r['w']:.1f} per window)" for r in rows) or "none"


def latency_rows(data_dir: Path) -> list[dict]:
    return _rows(data_dir, "SELECT stage, sum(samples) AS n, "
                           "quantileExactWeighted(0.5)(p50_ms, samples) AS p50, max(p95_ms) AS p95, "
                           "max(p99_ms) AS p99, max(max_ms) AS mx FROM ifd.latency FINAL "
                           "GROUP BY stage ORDER BY stage")


def seed_history(settings: Settings, days: int, trades: int, seed: int, tmp: Path,
                 played: tuple[int, int], shift_ns: int) -> None:
    """Store ``days`` earlier weekdays of history in ``settings.data_dir`` for the baselines.

    Each day is a session of the same generator and size (another seed), cut to the played
    time of day ± 1 h (``played``: ns since epoch UTC, today) and shifted like the played slice,
    so the baseline slots (30 min) the real-time windows fall in hold full history. It is
    replayed through the project's own flow, scoring off, into the same data directory.
    """
    began = time.monotonic()
    sources: list[str] = []
    date, day_ns = dt.datetime.now(dt.UTC).date(), 86_400 * 1_000_000_000
    back = 0
    while len(sources) < 2 * days:
        date -= dt.timedelta(days=1)
        back += 1
        if date.weekday() >= 5:  # the played time of day falls in no session on Sat/Sun (UTC)
            continue
        files = generate_session(tmp / "history-src" / f"{date}", session_date=date, n_trades=trades,
                                 seed=seed + 1_000 + back, full_chain=True)
        sliced = tmp / "history" / files.tbbo_path.name
        lo, hi = played[0] - back * day_ns - 3_600_000_000_000, played[1] - back * day_ns + 3_600_000_000_000
        write_slice(files.tbbo_path, sliced, lo, hi, shift_ns=shift_ns)
        sources += [str(files.definition_path), str(sliced)]
    history = settings.model_copy(update={"mode": "replay", "source": ",".join(sources),
                                          "scoring": settings.scoring.model_copy(update={"enabled": False})})
    run_main(ifd.build_flow(history, alerts=None))
    print(f"history: {days} earlier weekdays ({date} on), the played time of day +-1 h, replayed into "
          f"the run's store in {time.monotonic() - began:.0f} s")


def realtime_phase(minutes: float, trades: int, seed: int, tmp: Path, at: dt.time | None = None,
                   alert_class: str = "MONITOR", history_days: int = 0) -> None:
    """Latency in real time: today's session, the next ``minutes`` of it, paced by ts_recv.

    ``at`` (UTC time of day) plays the session from that time of day instead of from now, shifted
    so that it starts now (the session has trades from 00:00 to 20:00 UTC only). Alerts of
    ``alert_class`` and above go to a webhook in another process, which times each signal.
    """
    today = dt.datetime.now(dt.UTC).date()
    files = generate_session(tmp / "rt-src", session_date=today, n_trades=trades, seed=seed,
                             full_chain=True)
    settings = Settings(mode="live", data_dir=tmp / "rt-run", progress_interval_s=0,
                        window_length_s=60, scoring={"enabled": True})
    length = int(minutes * 60e9)

    def played_from(start: int) -> int:
        return start if at is None else int(dt.datetime.combine(today, at, dt.UTC).timestamp() * 1e9)

    if history_days:  # the played time of day moves by the minutes this takes: history holds +-1 h
        now = time.time_ns()
        seed_history(settings, history_days, trades, seed, tmp, (played_from(now), played_from(now) + length),
                     now - played_from(now))
    # the slice starts once the gateway has loaded and the flow has started (30 s from now), so
    # the gateway's live start (the wall clock at connect) precedes its first trade
    start = time.time_ns() + 30 * 1_000_000_000
    lo = played_from(start)
    hi = lo + length
    sliced = tmp / "rt" / files.tbbo_path.name
    kept = write_slice(files.tbbo_path, sliced, lo, hi, shift_ns=start - lo)
    played = f"{dt.datetime.fromtimestamp(lo / 1e9, dt.UTC):%H:%M:%S} UTC"
    if not kept:
        print(f"real-time phase skipped: the generated session has no trades at {played} "
              f"({today}: 00:00-20:00 UTC only); pass --realtime-at HH:MM")
        return
    print(f"real-time phase: {kept:,} trades over {minutes:g} min of today's session from "
          f"{played}, played from 30 s on "
          f"({kept / (minutes * 60):.1f} trades/s), one drop, 60-s windows")
    spawn = multiprocessing.get_context("spawn")
    ports = spawn.Queue()
    hook_log = tmp / "webhook.jsonl"
    hook = spawn.Process(target=_serve_hook, args=(str(hook_log), ports), daemon=True)
    hook.start()
    alerts = AlertSettings(urls=f"json://127.0.0.1:{ports.get(timeout=60)}/ifd", jsonl_path=None,
                           min_class=alert_class, max_per_minute=10_000)
    n_defs = len(databento.DBNStore.from_file(files.definition_path).to_ndarray())
    faults = Faults(drop_after=[n_defs + kept // 2], drop_reset=True, realtime=True, gateway_clock="wall",
                    close_after_end=False)
    stop = spawn.Event()
    gateway = spawn.Process(target=_serve_gateway, daemon=True,
                            args=([str(files.definition_path), str(sliced)], faults, ports, stop))
    gateway.start()
    live = live_settings(ports.get(timeout=120), idle_exit_s=30.0, batch_records=65_536,
                         heartbeat_interval_s=1, heartbeat_grace_s=2.0)
    clear_fatal_errors()
    run_main(ifd.build_flow(settings, live=live, alerts=alerts))
    stop.set()
    gateway.join(timeout=60)
    hook.terminate()
    hook.join()
    posts = [json.loads(line) for line in hook_log.read_text().splitlines()]
    window_starts = [(post["at"], ws) for post in posts for ws in post["starts"]]
    expected = lee_ready_windows(trades_frame(sliced), window_s=60)
    got = stored_windows(tmp / "rt-run")
    print(f"  fatal: {fatal_errors() or 'none'}; {alert_class}+ alert messages posted: {len(posts)} "
          f"carrying {len(window_starts):,} signals; windows equal to the polars reference: "
          f"{sum(got.get(k) == v for k, v in expected.items()):,} of {len(expected):,}")
    print(f"  signals stored by class: {signal_classes(tmp / 'rt-run')}")
    lateness_ms = 1e3 * settings.allowed_lateness_s
    if window_starts:  # measured at the receiving end, independent of ifd.latency
        ends = [dt.datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC).timestamp()
                + settings.window_length_s for _, s in window_starts]
        beyond = np.array([1e3 * (at - end) - lateness_ms
                           for (at, _), end in zip(window_starts, ends, strict=True)])
        p50, p95, p99 = np.percentile(beyond, [50, 95, 99])
        print(f"  window end -> alert received at the webhook, beyond the {lateness_ms:.0f} ms lateness: "
              f"p50 {p50:,.1f} ms  p95 {p95:,.1f} ms  p99 {p99:,.1f} ms  max {beyond.max():,.1f} ms "
              f"({len(beyond):,} signals)")
    for row in latency_rows(tmp / "rt-run"):
        beyond = row["stage"] in ("window_written", "signal_scored")
        extra = f"  (p99 beyond the {lateness_ms:.0f} ms lateness: {row['p99'] - lateness_ms:,.1f} ms)" \
            if beyond else ""
        print(f"  {row['stage']:<16} samples {row['n']:>7,}  p50 {row['p50']:>9,.1f} ms  worst p95 "
              f"{row['p95']:>9,.1f} ms  worst p99 {row['p99']:>9,.1f} ms  max {row['mx']:>9,.1f} ms"
              f"{extra}")


def _time_of_day(text: str) -> dt.time:
    """``HH:MM`` (UTC) for ``--realtime-at``; argparse names the option when it is malformed."""
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        msg = f"expected HH:MM (UTC), got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--drops", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--realtime-minutes", type=float, default=0.0,
                        help="also run the real-time latency phase for this long (0: skip)")
    parser.add_argument("--realtime-at", default=None, metavar="HH:MM", type=_time_of_day,
                        help="play the session from this time of day (UTC), shifted to now")
    parser.add_argument("--alert-class", default="MONITOR", choices=["MONITOR", "MODERATE", "STRONG"],
                        help="lowest signal class alerted in the real-time phase")
    parser.add_argument("--realtime-trades", type=int, default=2_000_000,
                        help="trades in the whole generated day the real-time slice is cut from")
    parser.add_argument("--history-days", type=int, default=20,
                        help="earlier weekdays of history for the real-time phase's baselines (0: none)")
    parser.add_argument("--skip-soak", action="store_true", help="run only the real-time phase")
    args = parser.parse_args()
    if args.skip_soak:
        with tempfile.TemporaryDirectory() as tmp_name:
            realtime_phase(args.realtime_minutes, args.realtime_trades, args.seed, Path(tmp_name),
                           args.realtime_at, args.alert_class, args.history_days)
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        began = time.monotonic()
        files = generate_session(tmp / "src", n_trades=args.trades, seed=args.seed, sweep_share=0.2,
                                 full_chain=True, globex_day=True)
        print(f"generated {args.trades:,} trades on the full chain in {time.monotonic() - began:.1f} s")
        timer = SnapshotTimer()
        install_timers(timer)
        gc.callbacks.append(timer.on_gc)
        sampler = RssSampler()
        rng = random.Random(args.seed)
        with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY) as gw:
            gw.faults = faults_for(rng, gw, args.drops)
            gw._drop_queue = list(gw.faults.drop_after)  # noqa: SLF001 - faults chosen from the timeline
            gw._stall_queue = list(gw.faults.stalls)  # noqa: SLF001
            records = len(gw.timeline_keys())
            gw_recv = [e.ts_recv for e in gw._entries(None)]  # noqa: SLF001
            settings = Settings(mode="live", data_dir=tmp / "run", progress_interval_s=0,
                                scoring={"enabled": True})
            live = live_settings(gw.port, idle_exit_s=5.0, batch_records=65_536,
                                 heartbeat_interval_s=1, replay_horizon_s=365 * 86_400.0)
            clear_fatal_errors()
            sampler.start()
            t0 = time.monotonic()
            run_main(ifd.build_flow(settings, live=live, alerts=None))
            wall = time.monotonic() - t0 - live.idle_exit_s
            sampler.stop()
            reconnects = gw.sessions - 1
        fatal = fatal_errors()
        print(f"records played: {records:,} ({args.drops} drops, 1 stall, gap 200 on naive reconnects); "
              f"sessions: {reconnects + 1}; fatal: {fatal or 'none'}")
        print(f"throughput: {records / wall:,.0f} records/s, {args.trades / wall:,.0f} trades/s "
              f"({wall:.1f} s wall, start-up included, idle exit excluded)")
        units = len({ts // 1_000_000_000 for ts in gw_recv})
        span_h = (max(gw_recv) - min(gw_recv)) / 3.6e12
        print(f"live units (ts_recv seconds holding records): {units:,}, {1e3 * wall / units:.2f} ms "
              f"each; {span_h:.1f} h of event time in {wall:.0f} s: {span_h * 3600 / wall:.0f}x faster "
              f"than real time")
        rss = [mb for _, mb in sampler.samples]
        print(f"RSS: peak {max(rss):.0f} MB, final {rss[-1]:.0f} MB (close included: last flush, "
              f"chdb); at 25/50/75/90 % of the run: {sampler.at(0.25):.0f} / {sampler.at(0.5):.0f} / "
              f"{sampler.at(0.75):.0f} / {sampler.at(0.9):.0f} MB; 90 % vs 50 %: "
              f"{100 * (sampler.at(0.9) / sampler.at(0.5) - 1):+.1f} %, end vs 50 %: "
              f"{100 * (rss[-1] / sampler.at(0.5) - 1):+.1f} %")
        if gw.day_sent_at is not None:  # the session's end: its last record sent, before the close
            sent = sampler.at_monotonic(gw.day_sent_at)
            print(f"RSS when the day's last record was sent ({gw.day_sent_at - sampler.t0:.1f} s "
                  f"of {sampler.samples[-1][0]:.1f} s): {sent:.0f} MB, "
                  f"{100 * (sent / sampler.at(0.5) - 1):+.1f} % vs 50 %")
        epochs = [timer.per_epoch.get(e, 0.0) for e in range(int(wall // EPOCH_S) + 1)]
        in_gc = [timer.gc_per_epoch.get(e, 0.0) for e in range(len(epochs))]
        cpu = [timer.cpu_per_epoch.get(e, 0.0) for e in range(len(epochs))]
        print(f"snapshot time per 10 s epoch ({len(epochs)} epochs of the session, "
              f"{timer.calls:,} copies in the whole run): wall mean "
              f"{1e3 * sum(epochs) / len(epochs):.1f} ms, max {1e3 * max(epochs):.1f} ms; the "
              f"copies' own CPU mean {1e3 * sum(cpu) / len(cpu):.1f} ms, max {1e3 * max(cpu):.1f} ms "
              f"(wall includes waits for the GIL held by other threads); "
              f"garbage collections inside them mean {1e3 * sum(in_gc) / len(in_gc):.1f} ms "
              f"(by generation: {dict(sorted(timer.gc_runs.items()))})")
        print("  whole run, close included: what was copied  copies  wall ms  CPU ms")
        for what, (n, total, own) in sorted(timer.by_what.items(), key=lambda x: -x[1][1])[:5]:
            print(f"  {what:<40} {n:>5}  {1e3 * total:8.1f}  {1e3 * own:7.1f}")

        expected = lee_ready_windows(trades_frame(files.tbbo_path))
        got = stored_windows(tmp / "run")
        missing = sum(max(0, v["trades"] - got.get(k, {}).get("trades", 0)) for k, v in expected.items())
        doubled = sum(max(0, v["trades"] - expected.get(k, {}).get("trades", 0)) for k, v in got.items())
        same = sum(got.get(k) == v for k, v in expected.items())
        print(f"trades missing: {missing:,}, duplicated: {doubled:,}; (contract, window) rows equal to "
              f"the polars reference: {same:,} of {len(expected):,} (stored {len(got):,})")

        lat = _rows(tmp / "run", "SELECT stage, sum(samples) AS n, quantileExact(0.5)(p50_ms) AS p50, "
                                 "max(p95_ms) AS p95, max(p99_ms) AS p99 FROM ifd.latency FINAL "
                                 "GROUP BY stage ORDER BY stage")
        print("ifd.latency (compressed event time: wall-clock stages show the replayed past's age):")
        for row in lat:
            print(f"  {row['stage']:<16} samples {row['n']:>9,}  p50 {row['p50']:>14,.1f} ms  "
                  f"worst p95 {row['p95']:>14,.1f} ms  worst p99 {row['p99']:>14,.1f} ms")
        if args.realtime_minutes > 0:
            realtime_phase(args.realtime_minutes, args.realtime_trades, args.seed, tmp, args.realtime_at,
                           args.alert_class, args.history_days)


if __name__ == "__main__":
    main()
