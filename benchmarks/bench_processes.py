"""One process vs ``-w 2`` vs two processes (``-i 0/1 -a``) on the same multi-day replay, in one run.

Every run is ``python -m bytewax.run flows.ifd`` into a fresh embedded chdb over the same generated
NQ options input (``samples.labelled``, cached under ``data/bench``). Figures are wall seconds
(what scaling buys) and the CPU seconds of all processes together, the best of ``--repeat``; the
speed-up is one process's wall time over the other's. The stored rows of every run are compared
with the one-worker run (row count, volume, and a checksum over every metrics row and signal), so a
faster run that stores something else is reported as DIFFERENT. Printed, never asserted.

Run::

    .venv/bin/python benchmarks/bench_processes.py                     # 10 days x 100k trades
    .venv/bin/python benchmarks/bench_processes.py --days 12 --trades-per-day 170000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samples.labelled import generate_labelled_days  # noqa: E402

STORED = """
import sys
from pathlib import Path
from sinks.clickhouse import ChdbStore
store = ChdbStore(Path(sys.argv[1]) / "chdb")
m = store.query_arrow(
    "SELECT count() AS n, sum(total_volume) AS v, sum(cityHash64(contract_key, window_start, "
    "bid_volume, ask_volume, unknown_volume, total_trades)) AS h FROM ifd.pressure_metrics")
s = store.query_arrow(
    "SELECT count() AS n, sum(cityHash64(contract_key, window_start, toString(signal_class), "
    "round(confidence, 9))) AS h FROM ifd.ifd_signals FINAL")
print(f"rows={m.column('n')[0]} volume={m.column('v')[0]} signals={s.column('n')[0]} "
      f"checksum={m.column('h')[0].as_py() ^ s.column('h')[0].as_py():x}")
store.close()
"""


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def run(files: list[Path], processes: int, workers: int) -> tuple[float, float, str]:
    """One run of ``processes`` × ``workers``; returns (wall s, CPU s of all processes, stored)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IFD_SOURCE=",".join(map(str, files)), IFD_DATA_DIR=tmp,
                   IFD_PROGRESS_INTERVAL_S="0", IFD_ALERT_JSONL_PATH="")
        base = [sys.executable, "-m", "bytewax.run", "flows.ifd", "-w", str(workers)]
        if processes > 1:
            addresses = ";".join(f"127.0.0.1:{p}" for p in _ports(processes))
            cmds = [[*base, "-i", str(i), "-a", addresses] for i in range(processes)]
        else:
            cmds = [base]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for c in cmds]
        errors = [p.communicate()[1] for p in procs]
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for proc, err in zip(procs, errors, strict=True):
            if proc.returncode != 0:
                msg = f"{processes} x {workers} failed (rc {proc.returncode}):\n{err[-3000:]}"
                raise SystemExit(msg)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        stored = subprocess.run([sys.executable, "-c", STORED, tmp], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
    return wall, cpu, stored


def main() -> None:
    """Generate (cached), run each layout, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--trades-per-day", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    out = ROOT / "data" / "bench" / f"anchor-d{args.days}-s{args.seed}-t{args.trades_per_day}"
    print(f"generating {args.days} days x {args.trades_per_day:,} trades in {out} (cached) ...",
          flush=True)
    days = generate_labelled_days(out, n_days=args.days, seed=args.seed,
                                  trades_per_day=args.trades_per_day, first_scored_day=args.days // 2)
    files = days.definition_paths + days.tbbo_paths
    print(f"{len(files)} files, {os.cpu_count()} CPUs", flush=True)
    layouts = {"1 process x 1 worker": (1, 1), "1 process x 2 workers (-w 2)": (1, 2),
               "2 processes x 1 worker (-i/-a)": (2, 1)}
    results = {}
    for name, (processes, workers) in layouts.items():
        tries = [run(files, processes, workers) for _ in range(args.repeat)]
        results[name] = min(tries)
    base_wall, _, base_stored = results["1 process x 1 worker"]
    print(f"{'layout':32} {'wall s':>7} {'CPU s':>7} {'speed-up':>8}  stored")
    for name, (wall, cpu, stored) in results.items():
        same = "same as 1 worker" if stored == base_stored else f"DIFFERENT: {stored}"
        print(f"{name:32} {wall:7.2f} {cpu:7.2f} {base_wall / wall:7.2f}x  {same}")
    print(f"1 worker stored: {base_stored}")


if __name__ == "__main__":
    main()
