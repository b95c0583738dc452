"""Snapshot cost of the scoring state against its size (issue 11: ≤ 5 % of a 10 s epoch).

Builds a :class:`flows.scoring.ScorerState` whose baseline book holds ``contracts`` contracts
(plus one strike-distance bucket key per 10 contracts) × every 30-minute slot × ``days`` trading
days, then times what bytewax does at each epoch: ``ScoringLogic.snapshot()`` (copy-on-write),
followed by a day's worth of scoring writes to the live book (the copy a write triggers is
counted), and, for runs with recovery, pickling the snapshot. Figures are printed, never asserted.

Run::

    .venv/bin/python benchmarks/bench_snapshot.py                  # 661 and 10,000 contracts x 21 days
    .venv/bin/python benchmarks/bench_snapshot.py --contracts 5000 --days 21
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.baselines import BaselineBook  # noqa: E402
from flows.scoring import ScorerState  # noqa: E402

DAY = 86_400
EPOCH_S = 10.0


def build(contracts: int, days: int) -> tuple[ScorerState, list[str]]:
    """State with every contract and bucket key traded in every slot of every day."""
    book = BaselineBook(lookback_days=20, min_days=5)
    keys = [f"NQ|C|{i}" for i in range(contracts)] + [f"NQ|C|b{i}" for i in range(contracts // 10)]
    codes = book.codes(keys)
    rng = np.random.default_rng(1)
    first = 20_000
    for d in range(days):
        for slot in range(48):
            n = len(codes)
            book.add_codes(codes, (first + d) * DAY + slot * 1800, rng.integers(1, 100, n),
                           rng.integers(1, 20, n), rng.integers(0, 50, n))
    return ScorerState(book=book, forwards={("NQ", 1): 20_000.0}), keys


def measure(contracts: int, days: int, repeat: int) -> None:
    """Print the snapshot, first-write and pickle times for one state size."""
    state, keys = build(contracts, days)
    book = state.book
    codes = book.codes(keys)
    now_s = (20_000 + days - 1) * DAY + 13 * 3600
    snap_s, write_s, pickle_s, size = [], [], [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        snap = state.snapshot()
        t1 = time.perf_counter()
        # the epoch's scoring writes: one window of every contract (the first write copies the day)
        book.add_codes(codes, now_s, np.ones(len(codes), dtype=np.int64),
                       np.ones(len(codes), dtype=np.int64), np.zeros(len(codes), dtype=np.int64))
        t2 = time.perf_counter()
        blob = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
        t3 = time.perf_counter()
        snap_s.append(t1 - t0)
        write_s.append(t2 - t1)
        pickle_s.append(t3 - t2)
        size = len(blob)
    snap_ms, write_ms, pickle_ms = (1e3 * float(np.median(x)) for x in (snap_s, write_s, pickle_s))
    print(f"{contracts:>9,} {days:>5} {book._n_rows:>10,} {snap_ms:>9.3f} {write_ms:>12.3f} "
          f"{100 * (snap_ms + write_ms) / 1e3 / EPOCH_S:>8.3f}% {pickle_ms:>10.1f} {size / 1e6:>8.1f}")


def main() -> None:
    """Measure every requested size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, nargs="*", default=[661, 10_000])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'contracts':>9} {'days':>5} {'book rows':>10} {'snapshot':>9} {'first write':>12} "
          f"{'of epoch':>9} {'pickle ms':>10} {'MB':>8}")
    print(f"{'':>9} {'':>5} {'':>10} {'ms':>9} {'ms':>12} {'(10 s)':>9} {'(recovery)':>10}")
    for n in args.contracts:
        measure(n, args.days, args.repeat)


if __name__ == "__main__":
    main()
