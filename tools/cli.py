"""``ifd``: the one command of the pipeline.

::

    ifd run                         # the dataflow (python -m bytewax.run flows.ifd)
    ifd run --serve                 # ... with the live signal feed on ws://127.0.0.1:8765/ws
    ifd run -w 2                    # bytewax options pass through: -w -i -a -r -s -b
    ifd signals --since yesterday --min-class MODERATE --format csv > signals.csv
    ifd signals --since -2h --underlying NQ --side BUY --tz ct
    ifd query "SELECT count() FROM ifd.pressure_metrics"
    ifd report --start 2026-10-23 --out report.png
    ifd sample --out data/sample
    ifd baseline --as-of 2026-10-26

Times (``--since``, ``--until``, ``report --start/--end``) take ISO 8601, a date, ``now``,
``today``, ``yesterday`` or an offset such as ``-2h``/``-30m``/``-3d``, in UTC or, with ``--tz
ct``, exchange time (America/Chicago) (:mod:`tools.times`). A usage error prints one line
``error: …`` and exits 2; settings errors name the variable. ``python -m bytewax.run flows.ifd``
keeps working; ``ifd run`` runs exactly that.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NoReturn

import pyarrow as pa

from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import TOOL_LOCK_TIMEOUT_S, open_store
from tools.query import write_result
from tools.times import FORMS, parse_when, zone

SIGNAL_FORMATS = ("table", "csv", "json", "jsonl", "parquet")
CLASSES = ("MONITOR", "MODERATE", "STRONG")
SIGNAL_COLUMNS = (
    "window_start", "symbol", "underlying", "expiration", "strike", "option_type", "direction",
    "sentiment", "signal_class", "confidence", "total_volume", "bid_volume", "ask_volume",
    "premium_usd", "days_to_expiry", "moneyness_pct", "sweep_strikes", "block_trades", "reason",
)
"""Columns of ``ifd signals`` (``--all-columns``: every column of ``ifd.ifd_signals``)."""
_TIME_COLUMNS = ("window_start", "window_end", "expiration", "inserted_at")
_ROUNDED = {"confidence": "round(confidence, 3)", "premium_usd": "round(premium_usd)",
            "days_to_expiry": "round(days_to_expiry, 2)", "moneyness_pct": "round(moneyness_pct, 2)"}
"""Display rounding of the default columns (``--all-columns`` keeps full precision)."""


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's ``--help``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)  # noqa: T201
        raise SystemExit(2)


def _fail(message: object, code: int = 2) -> int:
    lines = str(message).strip().splitlines()
    print(f"error: {lines[0] if lines else type(message).__name__}", file=sys.stderr)  # noqa: T201
    return code


# --- ifd run ------------------------------------------------------------------------------------

_BYTEWAX_OPTIONS = (
    ("-w", "--workers-per-process", "worker threads per process (bytewax; default 1)"),
    ("-i", "--process-id", "this process's id in a -a cluster (bytewax)"),
    ("-a", "--addresses", 'every process\'s host:port, ";"-separated (bytewax)'),
    ("-r", "--recovery-directory", "recovery partitions directory: snapshots for restarts (bytewax)"),
    ("-s", "--snapshot-interval", "seconds between snapshots (bytewax; default 10)"),
    ("-b", "--backup-interval", "seconds of extra snapshots to keep (bytewax)"),
)


def bytewax_command(args: argparse.Namespace) -> list[str]:
    """Return the ``python -m bytewax.run`` arguments ``ifd run`` stands for."""
    target = "flows.ifd"
    if args.serve:
        target = f"flows.ifd:served_flow(host={args.host!r}, port={args.port!r})"
    out = [target]
    for short, long, _ in _BYTEWAX_OPTIONS:
        value = getattr(args, long.lstrip("-").replace("-", "_"))
        if value is not None:
            out += [short, str(value)]
    return out


def _run(args: argparse.Namespace) -> int:
    argv = bytewax_command(args)
    sys.argv = ["python -m bytewax.run", *argv]
    runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    return 0


# --- ifd signals --------------------------------------------------------------------------------


def signals_query(args: argparse.Namespace, now: datetime | None = None,
                  ) -> tuple[str, dict[str, object]]:
    """Return the SQL and bound parameters of ``ifd signals`` for parsed ``args``.

    Raises
    ------
    UsageError
        A time, class, side or option type the command cannot read.
    """
    where: list[str] = []
    params: dict[str, object] = {}
    try:
        if args.since:
            params["since"] = parse_when(args.since, tz=args.tz, now=now).timestamp()
            where.append("window_start >= fromUnixTimestamp64Milli(toInt64({since:Float64} * 1000))")
        if args.until:
            params["until"] = parse_when(args.until, tz=args.tz, end=True, now=now).timestamp()
            where.append("window_start < fromUnixTimestamp64Milli(toInt64({until:Float64} * 1000))")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    classes = [c.strip().upper() for c in (args.signal_class or "").split(",") if c.strip()]
    bad = [c for c in classes if c not in CLASSES]
    if bad:
        msg = f"--class takes {', '.join(CLASSES)} (comma-separated), got {', '.join(bad)}"
        raise UsageError(msg)
    if args.min_class:
        floor = args.min_class.upper()
        if floor not in CLASSES:
            msg = f"--min-class must be one of {', '.join(CLASSES)}, got {args.min_class!r}"
            raise UsageError(msg)
        classes = [c for c in (classes or CLASSES) if CLASSES.index(c) >= CLASSES.index(floor)]
        if not classes:
            msg = f"--class {args.signal_class} has nothing at or above --min-class {floor}"
            raise UsageError(msg)
    if classes:
        names = []
        for i, name in enumerate(classes):
            params[f"class{i}"] = name
            names.append(f"{{class{i}:String}}")
        where.append(f"signal_class IN ({', '.join(names)})")
    if args.underlying:
        params["underlying"] = args.underlying
        where.append("startsWith(underlying, {underlying:String})")
    if args.symbol:
        params["symbol"] = args.symbol
        where.append("symbol = {symbol:String}")
    if args.side:
        side = args.side.upper()
        if side not in ("BUY", "SELL"):
            msg = f"--side must be BUY or SELL, got {args.side!r}"
            raise UsageError(msg)
        params["side"] = side
        where.append("direction = {side:String}")
    if args.type:
        kind = args.type.upper()
        if kind not in ("C", "P", "F"):
            msg = f"--type must be C, P or F, got {args.type!r}"
            raise UsageError(msg)
        params["kind"] = kind
        where.append("option_type = {kind:String}")
    if args.expiry:
        try:
            params["expiry"] = datetime.fromisoformat(args.expiry).date().isoformat()
        except ValueError:
            msg = f"--expiry must be a date (YYYY-MM-DD), got {args.expiry!r}"
            raise UsageError(msg) from None
        where.append("toDate(expiration) = toDate({expiry:String})")
    if args.strike is not None:
        params["strike"] = args.strike
        where.append("abs(strike - {strike:Float64}) < 1e-6")
    zone_name = zone(args.tz).key
    columns = ["*"] if args.all_columns else list(SIGNAL_COLUMNS)
    if args.all_columns:
        select = "*"
    else:
        select = ", ".join(f"toTimeZone({c}, '{zone_name}') AS {c}" if c in _TIME_COLUMNS
                           else f"{_ROUNDED[c]} AS {c}" if c in _ROUNDED else c for c in columns)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    limit = f"LIMIT {int(args.limit)}" if args.limit else ""
    sql = (f"SELECT * FROM (SELECT {select} FROM ifd.ifd_signals FINAL {clause} "  # noqa: S608
           f"ORDER BY window_start DESC, symbol {limit}) ORDER BY window_start, symbol")
    return sql, params


def _signals(args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output == "-" and sys.stdout.isatty():
        return _fail("parquet is binary: give --output PATH or redirect stdout")
    try:
        sql, params = signals_query(args)
    except UsageError as exc:
        return _fail(exc)
    return _query_and_write(sql, params, args.format, args.output, max_rows=args.max_rows)


def _query_and_write(sql: str, params: dict[str, object], fmt: str, output: str, *,
                     max_rows: int) -> int:
    try:
        store = open_store(load_settings(), lock_timeout_s=TOOL_LOCK_TIMEOUT_S)
    except PipelineError as exc:
        return _fail(exc)
    except OSError as exc:
        return _fail(f"cannot open the store: {exc}")
    try:
        table = store.query_arrow(sql, params)
    except PipelineError as exc:
        return _fail(exc, 1)
    finally:
        store.close()
    try:
        if output == "-":
            write_result(table, fmt, sys.stdout.buffer, max_rows=max_rows)
            sys.stdout.buffer.flush()
        else:
            with open(output, "wb") as fh:
                write_result(table, fmt, fh, max_rows=max_rows)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc.strerror or exc}")
    except pa.ArrowException as exc:
        return _fail(f"cannot write the result as {fmt}: {exc}", 1)
    return 0


# --- the parser ---------------------------------------------------------------------------------


def _delegate(name: str) -> Callable[[list[str]], int]:
    """Return the ``main(argv)`` of a subcommand that keeps its own parser."""

    def call(argv: list[str]) -> int:
        if name == "query":
            from tools.query import main
        elif name == "report":
            from tools.png_report import main
        elif name == "baseline":
            from tools.baseline_job import main
        else:
            from samples.generator import main
        return int(main(argv, prog=f"ifd {name}") or 0)

    return call


DELEGATED = {
    "query": "run SQL against the store; --format table|csv|tsv|json|jsonl|parquet (ifd query --help)",
    "report": "PNG report of a session's signals per strike (ifd report --help)",
    "sample": "generate the bundled sample DBN files (ifd sample --help)",
    "baseline": "compute or fetch 20-day baselines (ifd baseline --help)",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ifd`` parser (``run`` and ``signals``; the delegated commands are listed)."""
    parser = _Parser(prog="ifd", description=__doc__.splitlines()[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="\n".join(f"  ifd {k:9} {v}" for k, v in DELEGATED.items()))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run the dataflow (replay or live, per IFD_MODE)",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                         description="Run the IFD dataflow: python -m bytewax.run flows.ifd.")
    run.add_argument("--serve", action="store_true",
                     help="serve the live signal feed (WebSocket /ws, GET /signals, GET /health)")
    run.add_argument("--host", default=None, help="feed interface (default IFD_FEED_HOST, 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="feed port (default IFD_FEED_PORT, 8765)")
    for short, long, text in _BYTEWAX_OPTIONS:
        run.add_argument(short, long, default=None, help=text)
    signals = sub.add_parser(
        "signals", help="list or export stored signals",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=f"List stored IFD signals (ifd.ifd_signals), newest last. Times: {FORMS}.")
    signals.add_argument("--since", help="from this time (window start)")
    signals.add_argument("--until", help="before this time (a date: through its end)")
    signals.add_argument("--tz", default="utc", choices=["utc", "ct", "exchange"],
                         help="zone of times typed and shown (ct = exchange time, America/Chicago)")
    signals.add_argument("--class", dest="signal_class", help="classes, e.g. STRONG,MODERATE")
    signals.add_argument("--min-class", help="this class or stronger (MONITOR < MODERATE < STRONG)")
    signals.add_argument("--underlying", help="underlying prefix, e.g. NQ or NQZ6")
    signals.add_argument("--symbol", help="one contract's symbol, e.g. 'NQZ6 C21500'")
    signals.add_argument("--expiry", help="expiration date, YYYY-MM-DD")
    signals.add_argument("--strike", type=float, help="strike, USD index points")
    signals.add_argument("--side", help="BUY (lifted offers) or SELL (hit bids)")
    signals.add_argument("--type", help="C, P or F")
    signals.add_argument("--limit", type=int, default=100, help="latest N signals (0: all)")
    signals.add_argument("--all-columns", action="store_true", help="every column of the table")
    signals.add_argument("--format", "-f", default="table", choices=SIGNAL_FORMATS,
                         help="output format")
    signals.add_argument("--output", "-o", default="-", help="file to write; - = stdout")
    signals.add_argument("--max-rows", type=int, default=100, help="rows shown in table format")
    for name, text in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ifd``; return the exit code (0 done, 1 a query failed, 2 a usage/settings error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0])(args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "run":
        return _run(args)
    if args.command == "signals":
        return _signals(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
