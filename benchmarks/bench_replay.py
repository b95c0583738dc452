"""Replay throughput into chdb: end-to-end rec/s next to decode-only rec/s, and peak RSS.

Run::

    .venv/bin/python benchmarks/bench_replay.py                 # 5 M MBO + 2 M trades
    .venv/bin/python benchmarks/bench_replay.py --mbo 1000000 --trades 500000

Generated inputs are cached under ``data/bench/``. Each end-to-end run happens
in a fresh subprocess (``python -m bytewax.run flows.ifd``, the production
command) so its peak RSS is its own; decode-only runs the same DBN reader
without the dataflow. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.dbn import DBNReader  # noqa: E402
from samples.generator import generate_mbo, generate_trades  # noqa: E402


def decode_only(path: Path, batch_records: int) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    with DBNReader(path, batch_records=batch_records) as reader:
        for chunk in reader:
            n += chunk.n_records
    return n, time.perf_counter() - start


def end_to_end(sources: list[Path], batch_records: int) -> tuple[float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IFD_SOURCE=",".join(map(str, sources)), IFD_DATA_DIR=tmp,
                   IFD_BATCH_RECORDS=str(batch_records), IFD_PROGRESS_INTERVAL_S="0")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c",
             "import resource, runpy, sys; sys.argv=['bytewax.run','flows.ifd'];"
             "\ntry:\n    runpy.run_module('bytewax.run', run_name='__main__')\n"
             "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        message = f"flow failed:\n{proc.stderr[-3000:]}"
        raise SystemExit(message)
    rss = next(int(line.split()[1]) for line in proc.stdout.splitlines()
               if line.startswith("PEAK_RSS_KB"))
    summary = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("  "))
    return elapsed, rss, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbo", type=int, default=5_000_000)
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--batch-records", type=int, default=262_144)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench")
    args = parser.parse_args()

    cases = []
    if args.mbo:
        path = args.out / f"bench-mbo-{args.mbo}.mbo.dbn.zst"
        if not path.exists():
            generate_mbo(path, n_records=args.mbo)
        cases.append(("mbo", path))
    if args.trades:
        path = args.out / f"bench-trades-{args.trades}.trades.dbn.zst"
        if not path.exists():
            generate_trades(path, n_records=args.trades)
        cases.append(("trades", path))

    print(f"{'schema':8} {'records':>11} {'decode rec/s':>14} {'e2e rec/s':>12} "
          f"{'flow rec/s':>12} {'e2e/decode':>10} {'e2e s':>7} {'peak RSS':>9}")
    for name, path in cases:
        defs = path.with_name(path.name.split(".")[0] + ".definition.dbn.zst")
        n, dec_s = decode_only(path, args.batch_records)
        e2e_s, rss_kb, summary = end_to_end([path, defs] if defs.exists() else [path],
                                            args.batch_records)
        flow_s = float(next(line.split()[1] for line in summary.splitlines()
                            if line.strip().startswith("elapsed")).replace(",", ""))
        print(f"{name:8} {n:>11,} {n / dec_s:>14,.0f} {n / e2e_s:>12,.0f} {n / flow_s:>12,.0f} "
              f"{(n / e2e_s) / (n / dec_s):>10.2f} {e2e_s:>7.2f} {rss_kb / 1024:>7.0f}MB")
        print(summary)
    print("e2e: wall clock of `python -m bytewax.run flows.ifd` (interpreter and library start,"
          " schema creation, final flush);\nflow: from sink start to the final flush"
          " (the run summary's elapsed); decode: DBN reader alone.")


if __name__ == "__main__":
    main()
