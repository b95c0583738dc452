"""Baseline job: recompute 20-day baselines into ``ifd.baselines``.

::

    python -m tools.baseline_job                                  # from ClickHouse history
    python -m tools.baseline_job --source 'data/history/*.dbn.zst'  # replay DBN files first
    python -m tools.baseline_job --fetch-days 20 --symbols NQ.OPT   # Databento Historical (cost-checked)

Steps:

1. ``--fetch-days N`` (optional): price the request with Databento's
   ``metadata.get_cost`` first, print it, and refuse (exit 2) when it exceeds
   ``IFD_HISTORY_BUDGET_USD`` (default 0: fetching is off unless a budget is
   set); otherwise download with ``timeseries.get_range`` into
   ``<data_dir>/history/`` and replay it. The API key comes from
   ``DATABENTO_API_KEY`` and is never printed.
2. ``--source`` (or the fetched files): run the IFD dataflow with scoring off,
   writing ``ifd.pressure_metrics``.
3. Read ``ifd.pressure_metrics`` for the lookback before ``--as-of`` (default:
   the day after the latest window) and write one row per (contract, 30-min
   bucket) to ``ifd.baselines`` with the same statistics the scorer uses
   (:class:`flows.baselines.BaselineBook`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from flows.baselines import BaselineBook, add_history
from flows.exchange_time import CHICAGO, cme_sessions
from models.errors import ConfigError, PipelineError
from models.settings import Settings, load_settings
from sinks.clickhouse import apply_schema, load_history, open_store

log = logging.getLogger("ifd.baseline_job")


class BudgetExceededError(PipelineError):
    """A Databento request would cost more than ``IFD_HISTORY_BUDGET_USD``."""


class HistoricalClient(Protocol):
    """The part of ``databento.Historical`` the job uses."""

    metadata: Any
    timeseries: Any


def fetch_history(
    client: HistoricalClient,
    *,
    symbols: list[str],
    schema: str,
    start: date,
    end: date,
    budget_usd: float,
    out_dir: Path,
    dataset: str = "GLBX.MDP3",
) -> list[Path]:
    """Price, then (within budget) download a date range as DBN files.

    Returns
    -------
    list[Path]
        The definition and data files written (``.dbn.zst``).

    Raises
    ------
    BudgetExceededError
        ``metadata.get_cost`` for the request exceeds ``budget_usd``; nothing
        is downloaded.
    """
    request = dict(dataset=dataset, symbols=symbols, stype_in="parent",
                   start=start.isoformat(), end=end.isoformat())
    cost = float(client.metadata.get_cost(schema=schema, **request))
    cost += float(client.metadata.get_cost(schema="definition", **request))
    print(f"Databento cost for {schema}+definition {symbols} {start}..{end}: ${cost:,.2f} "
          f"(budget ${budget_usd:,.2f})", flush=True)
    if cost > budget_usd:
        msg = (f"refusing to fetch: estimated cost ${cost:,.2f} exceeds IFD_HISTORY_BUDGET_USD="
               f"{budget_usd:,.2f}")
        raise BudgetExceededError(msg)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{'-'.join(s.replace('.', '_') for s in symbols)}-{start:%Y%m%d}-{end:%Y%m%d}"
    paths = []
    for what in ("definition", schema):
        path = out_dir / f"{stem}.{what}.dbn.zst"
        client.timeseries.get_range(schema=what, path=str(path), **request)
        paths.append(path)
    return paths


def baselines_table(book: BaselineBook, as_of: date) -> pa.Table:
    """Every contract-scope baseline valid for ``as_of`` as an ``ifd.baselines`` block.

    ``as_of`` is a CME trading day (a non-trading day means the next one); ``tod_bucket`` is
    the bucket's start on the exchange clock, ``HH:MM`` America/Chicago.
    """
    open_s = cme_sessions().open_of((as_of - date(1970, 1, 1)).days)
    rows: dict[str, list] = {name: [] for name in (
        "as_of", "baseline_key", "scope", "tod_bucket", "days", "volume_median", "volume_scale",
        "avg_trade_size", "trades_median", "abs_imbalance")}
    for key, bucket in book.cell_keys():
        baseline = book.baseline(key, "contract", open_s + bucket)
        if baseline is None:
            continue
        rows["as_of"].append(as_of)
        rows["baseline_key"].append(key)
        rows["scope"].append(baseline.scope)
        rows["tod_bucket"].append(f"{datetime.fromtimestamp(open_s + bucket, CHICAGO):%H:%M}")
        rows["days"].append(baseline.days)
        rows["volume_median"].append(baseline.volume_median)
        rows["volume_scale"].append(baseline.volume_scale)
        rows["avg_trade_size"].append(baseline.avg_trade_size)
        rows["trades_median"].append(baseline.trades_median)
        rows["abs_imbalance"].append(baseline.abs_imbalance)
    return pa.table({**rows, "as_of": pa.array(rows["as_of"], pa.date32()),
                     "days": pa.array(rows["days"], pa.uint32())})


def compute_baselines(settings: Settings, as_of: date | None = None) -> tuple[date, int]:
    """Read history from ClickHouse, write ``ifd.baselines`` for ``as_of``.

    Returns
    -------
    (date, int)
        The ``as_of`` day used and the number of baseline rows written.
    """
    store = open_store(settings)
    try:
        apply_schema(store)
        if as_of is None:
            latest = store.query_arrow(
                "SELECT toUnixTimestamp(max(window_start)) AS t FROM ifd.pressure_metrics")
            t = latest.column("t")[0].as_py() if latest.num_rows else None
            if not t:
                msg = "ifd.pressure_metrics is empty: replay history first (--source/--fetch-days)"
                raise ConfigError(msg)
            as_of = datetime.fromtimestamp(t, UTC).date() + timedelta(days=1)
        until_s = int(datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp())
        since_s = until_s - (settings.scoring.lookback_days * 2 + 7) * 86_400
        history = load_history(store, since_s, until_s)
        book = BaselineBook(lookback_days=settings.scoring.lookback_days,
                            min_days=settings.scoring.min_days,
                            tod_bucket_s=settings.scoring.tod_bucket_s,
                            window_s=settings.window_length_s)
        if history.num_rows:
            add_history(book, history)
        table = baselines_table(book, as_of)
        if table.num_rows:
            store.insert_arrow("ifd.baselines", table, dedup_token=f"baselines-{as_of}-{table.num_rows}")
        return as_of, table.num_rows
    finally:
        store.close()


def replay(settings: Settings, sources: list[str]) -> None:
    """Run the dataflow over ``sources`` with scoring off (fills ``ifd.pressure_metrics``)."""
    from bytewax.testing import run_main

    from flows.ifd import build_flow

    replay_settings = settings.model_copy(update={
        "source": ",".join(sources), "scoring": settings.scoring.model_copy(update={"enabled": False})})
    run_main(build_flow(replay_settings))


def main(argv: list[str] | None = None, prog: str = "python -m tools.baseline_job") -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", type=date.fromisoformat, help="day to compute baselines for")
    parser.add_argument("--source", help="DBN files/globs to replay first (comma-separated)")
    parser.add_argument("--fetch-days", type=int, default=0,
                        help="fetch this many calendar days before --as-of from Databento")
    parser.add_argument("--symbols", default="NQ.OPT", help="parent symbols to fetch")
    parser.add_argument("--schema", default="tbbo", choices=["tbbo", "trades", "mbp-1", "mbo"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = load_settings()
        sources = [s for s in (args.source or "").split(",") if s]
        if args.fetch_days:
            import databento

            key, budget = settings.history.key(), settings.history.budget_usd
            end = args.as_of or datetime.now(UTC).date()
            files = fetch_history(
                databento.Historical(key), symbols=args.symbols.split(","), schema=args.schema,
                start=end - timedelta(days=args.fetch_days), end=end, budget_usd=budget,
                out_dir=settings.data_dir / "history")
            sources.extend(str(f) for f in files)
        if sources:
            replay(settings, sources)
        as_of, rows = compute_baselines(settings, args.as_of)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {rows:,} baselines for {as_of} into ifd.baselines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
