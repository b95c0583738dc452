"""Peak RSS against the number of days replayed (issue 11: a 20-day run within 10 % of a 5-day run).

Generates (cached) ``--days`` labelled NQ options days, then replays the first 5 days and all of
them with the production command (``python -m bytewax.run flows.ifd``, embedded chdb, scoring on),
each in a fresh subprocess that prints its own peak RSS, ``--repeat`` times alternating (peak RSS
of one run varies by ±30 MB with the timing of embedded chdb's thread pools, so medians are
compared). Figures are printed, never asserted.

Run::

    .venv/bin/python benchmarks/bench_rss.py                 # 20 days x 40k trades, median of 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samples.labelled import generate_labelled_days  # noqa: E402

WRAPPER = ("import resource, runpy, sys; sys.argv=['bytewax.run','flows.ifd'];"
           "\ntry:\n    runpy.run_module('bytewax.run', run_name='__main__')\n"
           "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def peak_rss_mb(files: list[Path]) -> float:
    """Peak RSS (MB) of one production run over ``files``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IFD_SOURCE=",".join(map(str, files)), IFD_DATA_DIR=tmp,
                   IFD_PROGRESS_INTERVAL_S="0", IFD_ALERT_JSONL_PATH=str(Path(tmp) / "a.jsonl"),
                   IFD_ALERT_OUTBOX_PATH=str(Path(tmp) / "outbox.sqlite"))
        proc = subprocess.run([sys.executable, "-c", WRAPPER], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = f"flow failed:\n{proc.stderr[-3000:]}"
        raise SystemExit(message)
    kb = next(int(line.split()[1]) for line in proc.stdout.splitlines()
              if line.startswith("PEAK_RSS_KB"))
    return kb / 1024


def main() -> None:
    """Generate, replay 5 days and all days, print both peaks and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--trades-per-day", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    out = ROOT / "data" / "bench" / f"rss-d{args.days}-s{args.seed}-t{args.trades_per_day}"
    days = generate_labelled_days(out, n_days=args.days, seed=args.seed,
                                  trades_per_day=args.trades_per_day, first_scored_day=5)
    shorts, fulls = [], []
    for _ in range(args.repeat):
        shorts.append(peak_rss_mb(days.definition_paths[:5] + days.tbbo_paths[:5]))
        fulls.append(peak_rss_mb(days.definition_paths + days.tbbo_paths))
    short, full = statistics.median(shorts), statistics.median(fulls)
    print(f"peak RSS (MB), 5 days: {' '.join(f'{v:.0f}' for v in shorts)}; {args.days} days: "
          f"{' '.join(f'{v:.0f}' for v in fulls)}")
    print(f"medians: 5 days {short:.0f} MB, {args.days} days {full:.0f} MB, ratio {full / short:.2f} "
          f"({(full - short) / (args.days - 5):+.1f} MB per extra day)")


if __name__ == "__main__":
    main()
