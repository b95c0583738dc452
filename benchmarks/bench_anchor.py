"""This project against a plain polars script on the same DBN input, in one run.

Both pipelines run as fresh subprocesses on the same generated multi-day NQ options input
(realistic generator, 661 real-shaped contracts): the project as ``python -m bytewax.run flows.ifd``
(embedded chdb) with scoring on and off, the anchor as ``benchmarks/polars_anchor.py`` (decode,
aggressor side, per contract-window sums, chdb insert). Each figure is CPU seconds (user + sys of
the child) net of the same pipeline's start-up (a run on a one-day input of 100 trades), the best of
``--repeat`` runs; rates are trades per CPU second. The stored window totals of the two are
compared (rows and volume). Figures are printed, never asserted.

Run::

    .venv/bin/python benchmarks/bench_anchor.py                      # 12 days x 170k trades
    .venv/bin/python benchmarks/bench_anchor.py --days 10 --trades-per-day 60000 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samples.labelled import generate_labelled_days  # noqa: E402

PROJECT_STORED = """
import sys
from pathlib import Path
from models.settings import Settings
from sinks.clickhouse import open_store
store = open_store(Settings(data_dir=Path(sys.argv[1])))
t = store.query_arrow("SELECT count() AS n, sum(total_volume) AS v FROM ifd.pressure_metrics")
print(f"PROJECT rows={t.column('n')[0].as_py()} volume={t.column('v')[0].as_py()}")
store.close()
"""


def _cpu_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; return (child CPU s, wall s, stdout); exit with its stderr on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        message = f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}"
        raise SystemExit(message)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, proc.stdout


def project(files: list[Path], scoring: bool) -> tuple[float, float, str]:
    """One project run into a fresh embedded store; returns (CPU s, wall s, stored totals)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, IFD_SOURCE=",".join(map(str, files)), IFD_DATA_DIR=tmp,
                   IFD_PROGRESS_INTERVAL_S="0", IFD_SCORING_ENABLED=str(scoring).lower(),
                   IFD_ALERT_JSONL_PATH=str(Path(tmp) / "alerts.jsonl"),
                   IFD_ALERT_OUTBOX_PATH=str(Path(tmp) / "outbox.sqlite"))
        cpu, wall, _ = _cpu_run([sys.executable, "-m", "bytewax.run", "flows.ifd"], env)
        stored = ""
        if any("tbbo" in p.name for p in files):
            stored = subprocess.run([sys.executable, "-c", PROJECT_STORED, tmp], cwd=ROOT, env=env,
                                    capture_output=True, text=True, check=True).stdout.strip()
    return cpu, wall, stored


def anchor(pairs: list[Path]) -> tuple[float, float, str]:
    """One polars anchor run into a fresh chdb; returns (CPU s, wall s, its totals line)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "polars_anchor.py"), str(Path(tmp) / "db"),
               *map(str, pairs)]
        cpu, wall, out = _cpu_run(cmd, dict(os.environ))
    return cpu, wall, out.strip()


def main() -> None:
    """Generate (cached), run every pipeline, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--trades-per-day", type=int, default=170_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    out = ROOT / "data" / "bench" / f"anchor-d{args.days}-s{args.seed}-t{args.trades_per_day}"
    print(f"generating {args.days} days x {args.trades_per_day:,} trades in {out} (cached) ...",
          flush=True)
    days = generate_labelled_days(out, n_days=args.days, seed=args.seed,
                                  trades_per_day=args.trades_per_day, first_scored_day=args.days // 2)
    import databento as db

    trades = sum(db.DBNStore.from_file(p).to_ndarray().shape[0] for p in days.tbbo_paths)
    pairs = [p for pair in zip(days.definition_paths, days.tbbo_paths, strict=True) for p in pair]
    files = days.definition_paths + days.tbbo_paths
    tiny = generate_labelled_days(out.with_name(out.name + "-startup"), n_days=1, seed=args.seed,
                                  trades_per_day=100, first_scored_day=0)
    empty = [tiny.definition_paths[0], tiny.tbbo_paths[0]]  # start-up: the same work on 100 trades
    print(f"{trades:,} trades, {len(files)} files", flush=True)

    def best(run, *a) -> tuple[float, float, str]:
        results = [run(*a) for _ in range(args.repeat)]
        return min(results, key=lambda r: r[0])

    start_project = best(project, empty, True)[0]
    start_anchor = best(anchor, empty)[0]
    runs = {
        "polars script (DBN -> chdb)": (best(anchor, pairs), start_anchor),
        "project, scoring off": (best(project, files, False), start_project),
        "project, scoring on": (best(project, files, True), start_project),
    }
    print(f"start-up CPU s: project {start_project:.2f}, polars {start_anchor:.2f}")
    print(f"{'pipeline':32} {'CPU s':>7} {'net s':>7} {'wall s':>7} {'M trades/s':>11} {'vs polars':>9}")
    anchor_rate = None
    for name, ((cpu, wall, stored), start) in runs.items():
        net = max(cpu - start, 1e-9)
        rate = trades / net / 1e6
        anchor_rate = anchor_rate or rate
        print(f"{name:32} {cpu:7.2f} {net:7.2f} {wall:7.2f} {rate:11.3f} {rate / anchor_rate:8.2f}x"
              f"   {stored}")


if __name__ == "__main__":
    main()
