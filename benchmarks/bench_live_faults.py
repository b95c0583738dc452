"""Live source under random faults on sweep-heavy days: trades missing/doubled, replays, reconnect times.

Run::

    .venv/bin/python benchmarks/bench_live_faults.py                       # 20 seeds, 5,000 trades each
    .venv/bin/python benchmarks/bench_live_faults.py --seeds 40 --trades 20000 --alert-trials 20

Each seed generates an NQ.OPT day in which 30 % of aggressor events are sweeps (several prints
with equal ts_event, instrument_id and sequence; a few byte-identical), serves it from the local
Databento-protocol gateway (tests/live_gateway.py) with drops at random record positions
(before any data, inside the initial definitions, before the first trade, inside a ts_recv
second, anywhere), TCP resets or graceful closes, a gap a naive reconnect would lose, a stall
inside a second, and gateway records stamped with the wall clock, and reads it with
:class:`connectors.live.LiveFeed`. Emitted trade records are compared, as a multiset of record
bytes, with the file's records decoded by databento. Then the alert outbox is killed with
``kill -9`` while a slow channel (0.1 s per POST) delivers (benchmarks/bench_alert_kill.py).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import databento as db  # noqa: E402
import numpy as np  # noqa: E402

from connectors.live import LiveFeed  # noqa: E402
from models.settings import LiveSettings  # noqa: E402
from samples.generator import generate_session  # noqa: E402
from tests.live_gateway import Faults, LiveGateway  # noqa: E402

KEY = "db-test_benchmark_key_ABCDE"
SCHEMAS = ["definition", "tbbo"]


def faults_for(rng: random.Random, gw: LiveGateway, drops: int) -> Faults:
    """Random drop points of every kind, resets, a gap, maybe a stall, wall-clock gateway records."""
    first_trade = gw.first_position("tbbo", SCHEMAS)
    inside = [n for n in gw.positions_inside_second(SCHEMAS) if n > first_trade]
    total = len(gw.timeline_keys())
    choices = [lambda: 0, lambda: rng.randint(1, first_trade - 1), lambda: first_trade,
               lambda: rng.choice(inside), lambda: rng.randint(1, total - 1)]
    points = [rng.choice(choices)() for _ in range(drops)]
    stalls = [None] * rng.randint(0, drops) + [rng.choice(inside)] if rng.random() < 0.3 else []
    return Faults(drop_after=points, drop_reset=rng.random() < 0.5, gap_records=200,
                  stalls=stalls, gateway_clock="wall")


def run_seed(seed: int, n_trades: int, drops: int, tmp: Path) -> dict:
    files = generate_session(tmp / f"s{seed}", n_trades=n_trades, seed=seed, sweep_share=0.3)
    ref = db.DBNStore.from_file(files.tbbo_path)
    expected = Counter(bytes(rec) for rec in ref)
    keys = Counter((r.ts_event, r.instrument_id, r.sequence) for r in ref)
    rng = random.Random(seed)
    settings = LiveSettings(
        api_key=KEY, gateway="127.0.0.1", port=1, session="always", schema_name="tbbo",
        reconnect_initial_s=0.05, reconnect_max_s=0.5, heartbeat_interval_s=1,
        heartbeat_grace_s=0.5, idle_exit_s=2.5, replay_horizon_s=30 * 86_400.0,
        replay_overlap_s=rng.choice([2.0, 120.0, 3600.0]),
    )
    with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY) as probe:
        faults = faults_for(rng, probe, drops)
    got: Counter = Counter()
    reconnect_ms: list[float] = []
    with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY, faults=faults) as gw:
        feed = LiveFeed(settings.model_copy(update={"port": gw.port}))
        started = time.perf_counter()
        seen_reconnects, dropped_at, accepted = 0, None, 0
        while not feed.finished and time.perf_counter() - started < 300:
            batches, _ = feed.poll()
            if feed.reconnects > seen_reconnects:
                seen_reconnects, dropped_at = feed.reconnects, time.perf_counter()
                accepted = feed.sequencer.accepted
            if dropped_at is not None and feed.sequencer.accepted > accepted:
                reconnect_ms.append((time.perf_counter() - dropped_at) * 1e3)
                dropped_at = None
            for batch in batches:
                for rows in batch.chunk.trades.values():
                    got.update(rows[i].tobytes() for i in range(len(rows)))
            time.sleep(0.001)
        feed.close()
        sessions = gw.sessions
    return {
        "trades": sum(expected.values()), "sweep_keys": sum(1 for n in keys.values() if n > 1),
        "missing": sum((expected - got).values()), "doubled": sum((got - expected).values()),
        "replayed_dropped": feed.counters.get("replayed_duplicates", 0), "sessions": sessions,
        "reconnect_ms": reconnect_ms, "drops": len(faults.drop_after), "stall": bool(faults.stalls),
        "overlap_s": settings.replay_overlap_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trades", type=int, default=5000)
    parser.add_argument("--drops", type=int, default=4, help="drops per day")
    parser.add_argument("--alert-trials", type=int, default=20, help="kill -9 trials (0 = skip)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    rows = []
    for seed in range(args.seeds):
        r = run_seed(seed, args.trades, args.drops, tmp)
        rows.append(r)
        print(f"seed {seed:2d}: {r['trades']:,} trades ({r['sweep_keys']} sweep keys), "
              f"{r['drops']} drops{' + stall' if r['stall'] else ''}, overlap {r['overlap_s']:g} s, "
              f"{r['sessions']} connections: missing {r['missing']}, doubled {r['doubled']}, "
              f"replayed copies dropped {r['replayed_dropped']:,}", flush=True)
    lat = np.array([ms for r in rows for ms in r["reconnect_ms"]])
    print(f"\n{args.seeds} seeds, {sum(r['trades'] for r in rows):,} trades: "
          f"missing {sum(r['missing'] for r in rows)}, doubled {sum(r['doubled'] for r in rows)}; "
          f"replayed copies dropped {sum(r['replayed_dropped'] for r in rows):,}")
    if len(lat):
        print(f"reconnect (drop detected → first new record): p50 {np.percentile(lat, 50):.0f} ms, "
              f"p99 {np.percentile(lat, 99):.0f} ms over {len(lat)} reconnects")
    if args.alert_trials:
        from benchmarks.bench_alert_kill import run_kill_trials

        res = run_kill_trials(n_trials=args.alert_trials, n_signals=40, seed=1)
        print(f"alerts after kill -9 with a 0.1 s channel, {args.alert_trials} trials: {res}")


if __name__ == "__main__":
    main()
