"""Run SQL against the configured ClickHouse (embedded chdb or server) and print the result.

Embedded chdb has no ``clickhouse-client``; this is its command line::

    python -m sinks.query "SELECT window_start, symbol, bid_volume, ask_volume, dominant_side
                           FROM ifd.pressure_metrics ORDER BY total_volume DESC LIMIT 10"
    python -m sinks.query --format csv "SELECT * FROM ifd.ifd_signals" > signals.csv
    python -m sinks.query "SELECT * FROM ifd.dead_letters FORMAT JSONEachRow"
    python -m sinks.query --format parquet --output parts.parquet "SELECT * FROM ifd.pressure_parts"

Formats: ``table`` (default, aligned text), ``csv`` (with a header row),
``tsv``, ``json`` (one array), ``jsonl`` (one object per line), ``parquet``.
A trailing ``FORMAT <name>`` clause in the SQL selects the same formats by
ClickHouse's names (CSV, CSVWithNames, TSV, TabSeparated, TSVWithNames, JSON,
JSONEachRow, JSONLines, Parquet, Pretty...).

Uses the same settings as the flow (``IFD_CLICKHOUSE_URL`` / ``IFD_CHDB_PATH`` /
``IFD_DATA_DIR``). Stop the flow first when embedded: chdb allows one process
per data directory. Errors print one line and exit 1 (query) or 2 (usage).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import open_store

FORMATS = ("table", "csv", "tsv", "json", "jsonl", "parquet")
CLICKHOUSE_FORMATS = {
    "csv": "csv", "csvwithnames": "csv", "tsv": "tsv", "tabseparated": "tsv",
    "tsvwithnames": "tsv", "tabseparatedwithnames": "tsv", "json": "json",
    "jsoneachrow": "jsonl", "jsonlines": "jsonl", "ndjson": "jsonl", "parquet": "parquet",
    "pretty": "table", "prettycompact": "table", "prettyspace": "table",
    "prettycompactmonoblock": "table",
}
_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z]+)\s*;?\s*$", re.IGNORECASE)


def split_format(sql: str) -> tuple[str, str | None]:
    """Strip a trailing ``FORMAT <name>`` clause; return (sql, our format name or None).

    Raises
    ------
    ValueError
        The clause names a format this command cannot write.
    """
    match = _FORMAT_CLAUSE.search(sql)
    if not match:
        return sql, None
    name = match.group(1).lower()
    if name not in CLICKHOUSE_FORMATS:
        msg = (f"FORMAT {match.group(1)} is not supported here; use one of "
               f"{', '.join(sorted({'CSV', 'TSV', 'JSON', 'JSONEachRow', 'Parquet', 'Pretty'}))} "
               f"or --format {{{','.join(FORMATS)}}}")
        raise ValueError(msg)
    return sql[: match.start()], CLICKHOUSE_FORMATS[name]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _text_table(table: pa.Table, max_rows: int) -> str:
    names = table.column_names
    rows = [["" if v is None else str(v) for v in row.values()]
            for row in table.slice(0, max_rows).to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    lines = ["  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    lines.extend("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def write_result(table: pa.Table, fmt: str, out: BinaryIO, *, max_rows: int = 100) -> None:
    """Write ``table`` to the binary stream ``out`` in ``fmt`` (see module docstring)."""
    if fmt == "parquet":
        pq.write_table(table, out)
        return
    if fmt in ("csv", "tsv"):
        buf = io.BytesIO()
        pa_csv.write_csv(table, buf, pa_csv.WriteOptions(delimiter="," if fmt == "csv" else "\t"))
        out.write(buf.getvalue())
        return
    rows = [_plain(r) for r in table.to_pylist()]
    if fmt == "json":
        out.write(json.dumps(rows, ensure_ascii=False).encode() + b"\n")
    elif fmt == "jsonl":
        out.write(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
    else:
        if table.num_columns == 0 or table.num_rows == 0:
            out.write(b"(no rows)\n")
            return
        out.write(_text_table(table, max_rows).encode() + b"\n")
        if table.num_rows > max_rows:
            out.write(f"... {table.num_rows - max_rows:,} more rows\n".encode())


def main(argv: list[str] | None = None) -> int:
    """Run one query and write its result; return a process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m sinks.query", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("sql", help="one SQL statement (a trailing FORMAT clause is understood)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: table, or the SQL's FORMAT clause)")
    parser.add_argument("--output", "-o", default="-", help="file to write; - = stdout")
    parser.add_argument("--max-rows", type=int, default=100, help="rows to print in table format")
    args = parser.parse_args(argv)
    try:
        sql, clause = split_format(args.sql)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    fmt = args.format or clause or "table"
    try:
        store = open_store(load_settings())
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    try:
        table = store.query_arrow(sql)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    finally:
        store.close()
    if args.output == "-":
        write_result(table, fmt, sys.stdout.buffer, max_rows=args.max_rows)
        sys.stdout.buffer.flush()
    else:
        with open(args.output, "wb") as fh:
            write_result(table, fmt, fh, max_rows=args.max_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
