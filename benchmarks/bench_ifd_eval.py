"""Labelled evaluation of IFD signals vs the naive "pressure ratio > 2" rule.

Run::

    .venv/bin/python benchmarks/bench_ifd_eval.py                 # 25 days, seed 21
    .venv/bin/python benchmarks/bench_ifd_eval.py --days 30 --seed 5

Generates N trading days with ground truth (:mod:`samples.labelled`: days
1-20 build baselines; institutional blocks/sweeps/accumulations and
market-maker churn/spreads are injected), replays them through the real
dataflow (``flows.ifd.build_flow``) and compares, on the scored days:

- **IFD**: signals of class ≥ the given class (MODERATE by default; every class
  is printed), matched on (instrument, window) and direction;
- **naive**: every window whose ask/bid (or bid/ask) volume ratio exceeds 2.

Precision = matched signals / signals; recall = labelled institutional
(contract, window) cells detected with the right direction / all of them;
FP rate (all) = signalled unlabelled windows / unlabelled traded windows;
FP rate (MM) = signalled market-maker windows / market-maker windows.

A second table splits the null windows (every scored traded window without an
institutional label) by condition, first match wins: UDS vertical legs and churn
(market-maker labels), the spread instruments' own rows, the holiday-shortened
sessions (CME early closes: the default 25 days end with Thanksgiving and the day
after), the regular-hours open window (08:30 CT, with the generator's open burst), the
session's evening (17:00-19:00 CT: the Sunday-evening open after a weekend or holiday apart
from the weekday ones), the weekly expiring on a scored day (its 0DTE session, with a
two-sided ATM surge in the last 2 hours), the expiry
listed mid-history (:data:`samples.labelled.LATE_EXPIRY`), and the rest; for each it prints the
false positives of class ≥ ``--min-class`` and their number per scored day.
The days cross the 2026-11-01 DST change, so every condition is scored on a
history that spans it. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bytewax.testing import TestingSink, run_main  # noqa: E402

from benchmarks.naive_rule import naive_pressure_signal  # noqa: E402
from flows.exchange_time import CHICAGO, cme_sessions, locate_one  # noqa: E402
from flows.ifd import build_flow  # noqa: E402
from models.records import WindowResult  # noqa: E402
from models.settings import Settings  # noqa: E402
from models.signals import Signal, SignalClass  # noqa: E402
from samples.labelled import SPREAD_ID_BASE, generate_labelled_days  # noqa: E402

RANK = {SignalClass.MONITOR: 1, SignalClass.MODERATE: 2, SignalClass.STRONG: 3}


def _cell(iid: int, window_start: datetime) -> tuple[int, int]:
    return iid, int(window_start.timestamp())


def evaluate(predicted: dict, institutional: dict, mm: set, traded: set) -> dict[str, float]:
    """Precision / recall / FP rates of ``predicted`` ({cell: direction}) against labels."""
    hits = {c for c, d in predicted.items() if institutional.get(c) == d}
    negatives = traded - institutional.keys()
    false = {c for c in predicted if c not in institutional}
    return {
        "signals": len(predicted),
        "precision": len(hits) / len(predicted) if predicted else 0.0,
        "recall": len(hits) / len(institutional) if institutional else 0.0,
        "fp_rate_all": len(false & negatives) / len(negatives) if negatives else 0.0,
        "fp_rate_mm": len(set(predicted) & mm) / len(mm) if mm else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=25)
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 10, 26),
                        help="first calendar day (default: 25 days cross the DST change and end "
                             "with the Thanksgiving and day-after early closes)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--trades-per-day", type=int, default=40_000)
    parser.add_argument("--min-class", default="MODERATE", choices=[c.value for c in SignalClass])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "eval")
    args = parser.parse_args()

    out = args.out / f"d{args.days}-s{args.seed}-t{args.trades_per_day}-{args.first_day:%Y%m%d}"
    started = time.perf_counter()
    days = generate_labelled_days(out, n_days=args.days, seed=args.seed,
                                  trades_per_day=args.trades_per_day, first_day=args.first_day)
    scored_from = days.days[days.first_scored_day]
    gen_s = time.perf_counter() - started

    items: list = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(source=",".join(str(p) for p in days.definition_paths + days.tbbo_paths),
                            data_dir=Path(tmp), progress_interval_s=0)
        started = time.perf_counter()
        run_main(build_flow(settings, sink=TestingSink(items), alerts=None))
        flow_s = time.perf_counter() - started

    first_scored = (scored_from - date(1970, 1, 1)).days

    def scored(ts: datetime) -> bool:  # by CME session: the 17:00 CT evening opens the next day
        return locate_one(int(ts.timestamp()))[0] >= first_scored

    institutional: dict = {}
    mm: set = set()
    kinds: dict = {}  # every labelled cell → its kind, for the null-condition table
    for line in days.labels_path.read_text().splitlines():
        label = json.loads(line)
        start = datetime.fromisoformat(label["window_start"].replace("Z", "+00:00"))
        kinds[_cell(label["instrument_id"], start)] = label["kind"]
        if not scored(start):
            continue
        cell = _cell(label["instrument_id"], start)
        if label["label"] == "institutional":
            institutional[cell] = label["direction"]
        else:
            mm.add(cell)

    sides: dict = defaultdict(lambda: [0, 0])
    for item in items:
        if isinstance(item, WindowResult):
            for p in item.parts.to_parts():
                start = datetime.fromtimestamp(p.window_start_ns / 1e9, UTC)
                if scored(start):
                    sides[_cell(p.instrument_id, start)][0] += p.bid_volume
                    sides[_cell(p.instrument_id, start)][1] += p.ask_volume
    traded = set(sides)
    naive = {c: d.value for c, (bid, ask) in sides.items()
             if (d := naive_pressure_signal(bid, ask)) is not None}
    signals = [s for s in items if isinstance(s, Signal) and scored(s.window_start)]

    print(f"{args.days} days (scored from {scored_from}), {len(traded):,} traded contract-windows "
          f"scored, {len(institutional)} institutional cells, {len(mm)} MM cells; "
          f"generate {gen_s:.1f} s, replay+score {flow_s:.1f} s")
    header = f"{'rule':22} {'signals':>8} {'precision':>10} {'recall':>8} {'FP rate':>8} {'FP MM':>7}"
    print(header)
    rows = [(f"IFD >= {c.value}", {_cell(s.instrument_id, s.window_start): s.direction.value
                                    for s in signals if RANK[s.signal_class] >= RANK[c]})
            for c in (SignalClass.MONITOR, SignalClass.MODERATE, SignalClass.STRONG)]
    rows.append(("naive ratio > 2", naive))
    for name, predicted in rows:
        r = evaluate(predicted, institutional, mm, traded)
        marker = " <" if name == f"IFD >= {args.min_class}" else ""
        print(f"{name:22} {r['signals']:>8,} {r['precision']:>10.3f} {r['recall']:>8.3f} "
              f"{r['fp_rate_all']:>8.2%} {r['fp_rate_mm']:>7.1%}{marker}")
    print(f"targets (IFD >= {args.min_class}): precision >= 0.8, recall >= 0.8, FP rate < 30 %; "
          f"FP rate = signalled share of unlabelled traded windows / of MM windows")

    late = set(days.late_listed_ids)
    sessions = cme_sessions()
    short_days = {d for d in days.days
                  if sessions.close_second((d - date(1970, 1, 1)).days) < 86_400}
    zero_dte = set(days.zero_dte_ids)
    expiry_day = days.days[days.zero_dte_day] if days.zero_dte_day >= 0 else None
    n_scored = len(days.days) - days.first_scored_day

    def condition(cell: tuple[int, int]) -> str:
        iid, start_s = cell
        if kinds.get(cell) == "spread":
            return "UDS vertical legs (MM)"
        if kinds.get(cell) == "churn":
            return "two-sided churn (MM)"
        if SPREAD_ID_BASE <= iid < SPREAD_ID_BASE + 1_000_000:
            return "spread instrument rows"
        local = datetime.fromtimestamp(start_s, CHICAGO)
        if local.date() in short_days:
            return "holiday-shortened session"
        if iid in zero_dte and local.date() == expiry_day:
            return "0DTE expiry-day ATM surge"
        if f"{local:%H:%M}" == "08:30":
            return "08:30 CT open window"
        if 17 <= local.hour < 19:
            day, _ = locate_one(start_s)
            if sessions.open_of(day - 1) == sessions.open_of(day):
                return "Sunday-evening open 17-19 CT"
            return "weekday evening 17-19 CT"
        if iid in late:
            return "expiry listed mid-history"
        return "other null windows"

    chosen = {_cell(s.instrument_id, s.window_start) for s in signals
              if RANK[s.signal_class] >= RANK[SignalClass(args.min_class)]}
    nulls = traded - institutional.keys()
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cell in nulls:
        row = table[condition(cell)]
        row[0] += 1
        row[1] += cell in chosen
    print(f"\nnull windows by condition, false positives >= {args.min_class} "
          f"({n_scored} scored days)")
    print(f"{'condition':28} {'windows':>9} {'FP':>5} {'FP/day':>7}")
    for name in sorted(table, key=lambda k: -table[k][0]):
        windows, fp = table[name]
        print(f"{name:28} {windows:>9,} {fp:>5} {fp / n_scored:>7.2f}")
    total = sum(fp for _, fp in table.values())
    print(f"{'all null windows':28} {len(nulls):>9,} {total:>5} {total / n_scored:>7.2f}"
          f"   (target: <= 1 FP per scored day)")


if __name__ == "__main__":
    main()
