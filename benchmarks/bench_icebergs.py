"""Iceberg detection against the labelled MBO generator: precision and recall per kind.

Run::

    .venv/bin/python benchmarks/bench_icebergs.py                 # seeds 4 5 6 (not tuned on)
    .venv/bin/python benchmarks/bench_icebergs.py --seeds 1 2 3 --events 100000

Each seed writes a tape (:func:`samples.icebergs.generate_iceberg_tape`: a consistent simulated
book with native and synthetic icebergs and queue-joining noise) and runs the project's book and
detector (:class:`flows.book.OrderBooks`, :class:`flows.icebergs.IcebergTracker`) over it. A
detection matches a label of the same kind, resting side and price (native: the same order id;
synthetic: overlapping in time). Labels that never refilled (traded no more than one display)
are left out. A second synthetic row (``synthetic3+``) scores only the labels with at least the
detector's minimum of refills (:attr:`flows.icebergs.IcebergRules.min_synthetic_refills`: four
tranches or more); the first row keeps the one- and two-refill labels the detector does not
report by design. Targets (issue 13): precision and recall >= 0.9 on seeds not used for tuning
(seeds 1-3 and 7-9 were). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import databento as db  # noqa: E402

from flows.book import OrderBooks  # noqa: E402
from flows.icebergs import IcebergRules, IcebergTracker  # noqa: E402
from samples.icebergs import generate_iceberg_tape  # noqa: E402


def _match(label: dict, row: tuple) -> bool:
    if row[0] != label["kind"] or row[2] != label["side"] or row[3] != round(label["price"] * 1e9):
        return False
    if label["kind"] == "native":
        return row[4] == label["order_id"]
    return row[5] <= label["last_ts"] and row[6] >= label["first_ts"]


def main() -> None:
    """Generate, detect, print precision and recall per seed and kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--icebergs", type=int, default=30)
    args = parser.parse_args()
    print(f"{'seed':>4} {'kind':10} {'labels':>6} {'found':>6} {'precision':>9} {'recall':>7}")
    totals: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            tape = generate_iceberg_tape(Path(tmp), seed=seed, events=args.events,
                                         icebergs=args.icebergs)
            tracker = IcebergTracker()
            OrderBooks(icebergs=tracker).apply(db.DBNStore.from_file(tape.mbo_path).to_ndarray())
            tracker.expire(2**62)
            found = tracker.take()
            labels = [json.loads(line) for line in tape.labels_path.read_text().splitlines()]
            least = IcebergRules().min_synthetic_refills + 1  # tranches
            for kind in ("native", "synthetic", "synthetic3+"):
                base = kind.rstrip("3+")
                truth = [x for x in labels if x["kind"] == base and x["total"] > x["display"]]
                if kind != base:
                    truth = [x for x in truth if x["total"] >= least * x["display"]]
                rows = [r for r in found if r[0] == base]
                if kind != base:  # a detection of a shorter label is neither right nor wrong here
                    short = [x for x in labels if x["kind"] == base
                             and x["display"] < x["total"] < least * x["display"]]
                    rows = [r for r in rows if not any(_match(x, r) for x in short)]
                hit = sum(any(_match(x, r) for r in rows) for x in truth)
                right = sum(any(_match(x, r) for x in truth) for r in rows)
                t = totals.setdefault(kind, [0, 0, 0, 0])
                t[0] += len(truth)
                t[1] += len(rows)
                t[2] += hit
                t[3] += right
                print(f"{seed:>4} {kind:10} {len(truth):>6} {len(rows):>6} "
                      f"{right / max(len(rows), 1):>9.3f} {hit / max(len(truth), 1):>7.3f}")
    for kind, (n_truth, n_rows, hit, right) in totals.items():
        print(f"{'all':>4} {kind:10} {n_truth:>6} {n_rows:>6} {right / max(n_rows, 1):>9.3f} "
              f"{hit / max(n_truth, 1):>7.3f}")
    print("targets: precision >= 0.9 and recall >= 0.9 on seeds not used for tuning")


if __name__ == "__main__":
    main()
