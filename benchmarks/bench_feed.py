"""Reading results while a run holds embedded chdb: the live feed under load (issue 14).

Replays the bundled sample (generated on first use) in this process with the feed server
(:mod:`sinks.feed`), ``--clients`` WebSocket clients connected before the run and one HTTP poller
asking ``GET /signals`` and ``GET /health`` every ``--poll-ms`` during it; the same replay without
the feed is the reference. Prints, per configuration (medians over ``--repeat`` runs): the flow's
wall time, the cost of the feed as a ratio to the run without it, the latency percentiles of the
HTTP answers given *while the flow ran*, how many signals the poller could already see before the
run ended, and whether every client received every signal once. Figures are printed, never
asserted (2-core machines are noisy).

Run::

    .venv/bin/python benchmarks/bench_feed.py                       # 0 and 50 clients, 3 repeats
    .venv/bin/python benchmarks/bench_feed.py --clients 0 10 50 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402


class Client(threading.Thread):
    """A WebSocket client counting the signals it receives."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.keys: list[tuple[str, str, str]] = []

    def run(self) -> None:
        with connect(self.url, open_timeout=30) as ws:
            try:
                for text in ws:
                    m = json.loads(text)
                    self.keys.append((m["window_start"], m["contract_key"], m["signal_class"]))
            except ConnectionClosed:
                pass


class Poller(threading.Thread):
    """GET /signals and /health every ``every_s`` until stopped; records latencies (s)."""

    def __init__(self, port: int, every_s: float) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.every_s = every_s
        self.stop = threading.Event()
        self.latency: list[float] = []
        self.seen = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for path in ("/signals?limit=10000", "/health"):
                t0 = time.perf_counter()
                with urllib.request.urlopen(self.base + path, timeout=30) as r:  # noqa: S310
                    body = json.loads(r.read())
                self.latency.append(time.perf_counter() - t0)
                if path.startswith("/signals"):
                    rows = body if isinstance(body, list) else body.get("signals", [])
                    self.seen = max(self.seen, len(rows))
            self.stop.wait(self.every_s)


def run_once(clients: int | None, poll_s: float) -> dict[str, float]:
    """One sample replay; ``clients`` None = without the feed."""
    from bytewax.testing import run_main

    from flows.ifd import build_flow
    from models.settings import FeedSettings, Settings
    from samples import ensure_sample
    from sinks.feed import FeedServer

    cache = Path(tempfile.gettempdir()) / "ifd-bench-feed-sample"
    sample = ensure_sample(cache)
    with tempfile.TemporaryDirectory(prefix="ifd-bench-feed-") as tmp:
        settings = Settings(data_dir=Path(tmp), source=",".join(sample), progress_interval_s=0)
        if clients is None:
            t0 = time.perf_counter()
            run_main(build_flow(settings, alerts=None))
            return {"wall_s": time.perf_counter() - t0}
        server = FeedServer(FeedSettings(port=0)).start()
        try:
            readers = [Client(f"ws://127.0.0.1:{server.port}/ws") for _ in range(clients)]
            for r in readers:
                r.start()
            while server.hub.health()["clients"] < clients:
                time.sleep(0.01)
            poller = Poller(server.port, poll_s)
            poller.start()
            t0 = time.perf_counter()
            run_main(build_flow(settings, alerts=None, feed=server))
            wall = time.perf_counter() - t0
            poller.stop.set()
            poller.join(30)
            during = np.array(poller.latency) * 1e3
            seen_during = poller.seen
            total = int(server.hub.health().get("published", 0)) or seen_during
        finally:
            server.stop()
        for r in readers:
            r.join(30)
        complete = sum(len(r.keys) == len(set(r.keys)) == total for r in readers)
        return {"wall_s": wall, "p50_ms": float(np.percentile(during, 50)) if len(during) else np.nan,
                "p99_ms": float(np.percentile(during, 99)) if len(during) else np.nan,
                "requests": len(during), "seen_during": seen_during, "signals": total,
                "complete_clients": complete}


def main() -> None:
    """Parse arguments, run every configuration, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[0, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll-ms", type=float, default=50.0)
    args = parser.parse_args()
    rows = []
    configs: list[int | None] = [None, *args.clients]
    for config in configs:
        runs = [run_once(config, args.poll_ms / 1e3) for _ in range(args.repeat)]
        rows.append((config, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    base = rows[0][1]["wall_s"]
    print(f"{'configuration':<22}{'wall s':>8}{'vs no feed':>11}{'HTTP p50 ms':>12}{'p99 ms':>8}"
          f"{'requests':>9}{'seen/total':>12}{'clients complete':>17}")
    for config, r in rows:
        name = "no feed" if config is None else f"feed, {config} WS clients"
        extra = "" if config is None else (
            f"{r['p50_ms']:>12.2f}{r['p99_ms']:>8.2f}{r['requests']:>9.0f}"
            f"{r['seen_during']:>6.0f}/{r['signals']:<5.0f}{r['complete_clients']:>11.0f}/{config}")
        print(f"{name:<22}{r['wall_s']:>8.2f}{r['wall_s'] / base:>10.2f}×{extra}")


if __name__ == "__main__":
    main()
