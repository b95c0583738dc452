"""MBO replay with the L3 analytics (order book, footprint, icebergs) on and off, in one run.

Run::

    .venv/bin/python benchmarks/bench_l3.py                                  # 10 M records, 400 options
    .venv/bin/python benchmarks/bench_l3.py --records 2000000 --instruments 100

The generated MBO input (:func:`samples.generator.generate_mbo`) is cached under
``data/bench/``. Each run is the production command (``python -m bytewax.run flows.ifd``) in a
fresh subprocess with ``IFD_L3_ENABLED`` true or false, into its own embedded store; it prints
records/s (wall, start-up included) and peak RSS. Targets (issue 13): ≥ 2 M records/s with L3 on,
peak RSS ≤ 600 MB. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_replay import end_to_end  # noqa: E402
from samples.generator import generate_mbo  # noqa: E402


def main() -> None:
    """Generate (cached), run L3 on and off, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--instruments", type=int, default=400)
    parser.add_argument("--batch-records", type=int, default=262_144)
    args = parser.parse_args()
    out = ROOT / "data" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"l3-{args.records}-{args.instruments}.mbo.dbn.zst"
    if not path.exists():
        print(f"generating {args.records:,} MBO records over {args.instruments} options ...",
              flush=True)
        generate_mbo(path, n_records=args.records, instrument_count=args.instruments)
    definitions = path.with_name(path.name.replace(".mbo.dbn.zst", ".definition.dbn.zst"))
    sources = [definitions, path] if definitions.exists() else [path]
    print(f"{'L3':4} {'wall s':>8} {'M rec/s':>8} {'peak RSS MB':>12}")
    for enabled in (False, True):
        os.environ["IFD_L3_ENABLED"] = str(enabled).lower()
        elapsed, rss_kb, _summary = end_to_end(sources, args.batch_records)
        print(f"{'on' if enabled else 'off':4} {elapsed:8.2f} {args.records / elapsed / 1e6:8.2f} "
              f"{rss_kb / 1024:12.0f}", flush=True)
    print("targets: >= 2 M records/s with L3 on, peak RSS <= 600 MB")


if __name__ == "__main__":
    main()
