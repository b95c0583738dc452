"""Live source under injected faults: drops survived, records replayed, reconnect times.

Run::

    .venv/bin/python benchmarks/bench_live_faults.py            # 20,000 trades, 8 drops
    .venv/bin/python benchmarks/bench_live_faults.py --trades 50000 --drops 20

Serves a generated NQ.OPT day from the local Databento-protocol gateway
(tests/live_gateway.py) with connection resets at random records and a
"gap" on every reconnect (records a naive resubscribe would never see), reads
it with :class:`connectors.live.LiveFeed`, and prints: trades received once vs
the file, duplicates dropped after replays, and reconnect times (drop
detected → first new trade). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import databento as db  # noqa: E402
import numpy as np  # noqa: E402

from connectors.live import LiveFeed  # noqa: E402
from connectors.sample import generate_session  # noqa: E402
from models.settings import LiveSettings  # noqa: E402
from tests.live_gateway import Faults, LiveGateway  # noqa: E402

KEY = "db-test_benchmark_key_ABCDE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--drops", type=int, default=8)
    parser.add_argument("--gap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    files = generate_session(tmp, n_trades=args.trades, seed=args.seed)
    ref = db.DBNStore.from_file(files.tbbo_path).to_ndarray()
    expected = set(zip(ref["ts_event"].tolist(), ref["instrument_id"].tolist(),
                       ref["sequence"].tolist(), strict=True))
    rng = random.Random(args.seed)
    per_connection = sorted(rng.sample(range(200, args.trades // args.drops), args.drops))
    faults = Faults(drop_after=per_connection, drop_reset=True, gap_records=args.gap)
    settings = LiveSettings(
        api_key=KEY, gateway="127.0.0.1", port=1, session="always", schema_name="tbbo",
        reconnect_initial_s=0.05, reconnect_max_s=1.0, heartbeat_interval_s=2,
        heartbeat_grace_s=1.0, idle_exit_s=3.0, replay_horizon_s=30 * 86_400.0,
    )
    got: list[tuple[int, int, int]] = []
    reconnect_ms: list[float] = []
    with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY, faults=faults) as gw:
        feed = LiveFeed(settings.model_copy(update={"port": gw.port}))
        started = time.perf_counter()
        seen_reconnects, dropped_at = 0, None
        while not feed.finished and time.perf_counter() - started < 300:
            batch, _ = feed.poll()
            if feed.reconnects > seen_reconnects:
                seen_reconnects, dropped_at = feed.reconnects, time.perf_counter()
            if batch is not None:
                for rows in batch.chunk.trades.values():
                    if len(rows) and dropped_at is not None:
                        reconnect_ms.append((time.perf_counter() - dropped_at) * 1e3)
                        dropped_at = None
                    got.extend(zip(rows["ts_event"].tolist(), rows["instrument_id"].tolist(),
                                   rows["sequence"].tolist(), strict=True))
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
        feed.close()
        sessions, gap_skipped = gw.sessions, gw.gap_skipped
    unique = set(got)
    print(f"trades in file {len(expected):,}; received {len(got):,} (unique {len(unique):,}); "
          f"missing {len(expected - unique)}; duplicates passed {len(got) - len(unique)}")
    print(f"connections {sessions} (drops injected {len(per_connection)}, plus end-of-stream "
          f"reconnects until idle exit); duplicates dropped after replays "
          f"{feed.counters.get('replayed_duplicates', 0):,}; records a naive resubscribe "
          f"would have lost {gap_skipped:,}")
    if reconnect_ms:
        arr = np.array(reconnect_ms)
        print(f"reconnect time (drop detected → first new trade): median {np.median(arr):.0f} ms, "
              f"max {arr.max():.0f} ms over {len(arr)} reconnects; run {elapsed:.1f} s")


if __name__ == "__main__":
    main()
