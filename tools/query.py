r"""Run SQL against the configured ClickHouse (embedded chdb or server) and print the result.

Embedded chdb has no ``clickhouse-client``; this is its command line::

    python -m tools.query "SELECT window_start, symbol, bid_volume, ask_volume, dominant_side
                           FROM ifd.pressure_metrics ORDER BY total_volume DESC LIMIT 10"
    python -m tools.query --format csv "SELECT * FROM ifd.ifd_signals" > signals.csv
    python -m tools.query "SELECT * FROM ifd.dead_letters FORMAT JSONEachRow"
    python -m tools.query --format parquet --output parts.parquet "SELECT * FROM ifd.pressure_parts"

The query always runs as Arrow; the result is then written here:

| ``--format`` | FORMAT clause names (any case)              | output                                   |
|--------------|---------------------------------------------|------------------------------------------|
| ``table``    | Pretty, PrettyCompact, ... (any ``Pretty*``)| aligned text, first ``--max-rows`` rows  |
| ``csv``      | CSV, CSVWithNames                           | RFC 4180, header row (also for ``CSV``)  |
| ``tsv``      | TSV, TabSeparated, TSVWithNames, ...        | header; ``\t \n \\`` escaped, NULL ``\N`` |
| ``json``     | JSON                                        | one array of row objects (not           |
|              |                                             | ClickHouse's ``{"meta", "data"}`` object)|
| ``jsonl``    | JSONEachRow, JSONLines, NDJSON              | one object per line                      |
| ``parquet``  | Parquet                                     | Arrow types kept; needs ``--output`` or  |
|              |                                             | a redirected stdout                      |

In csv/tsv/table, arrays, maps and tuples are written as JSON text. Bytes (and a ClickHouse
``String`` that is not valid UTF-8) are text when they decode, else hex ``0x…``; parquet keeps
such a column as ``binary``. In JSON, NaN and ±inf become ``null``, decimals numbers, times ISO 8601.
``--format`` wins over a FORMAT clause. Chdb returns ``DateTime`` (not ``DateTime64``) columns
as epoch seconds (UInt32); cast them (``toDateTime64(x, 0, 'UTC')``) for readable times.

Uses the same settings as the flow (``IFD_CLICKHOUSE_URL`` / ``IFD_CHDB_PATH`` /
``IFD_DATA_DIR``). Stop the flow first when embedded: chdb allows one process per data
directory, so during a run this waits 5 s for its lock, then stops with an error saying so.
Errors print one line ``error: ...`` to stderr: exit 1 when the query fails,
2 for usage, settings, opening the store or writing the output.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, BinaryIO
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import TOOL_LOCK_TIMEOUT_S, open_store

FORMATS = ("table", "csv", "tsv", "json", "jsonl", "parquet")
CLICKHOUSE_FORMATS = {
    "csv": "csv", "csvwithnames": "csv",
    "tsv": "tsv", "tabseparated": "tsv", "tsvwithnames": "tsv", "tabseparatedwithnames": "tsv",
    "json": "json",
    "jsoneachrow": "jsonl", "jsonlines": "jsonl", "ndjson": "jsonl",
    "parquet": "parquet",
}
"""ClickHouse output format names (lower case) → ours; any ``pretty*`` name is ``table``."""
SUPPORTED_CLAUSES = ("CSV, CSVWithNames, TSV, TabSeparated, TSVWithNames, TabSeparatedWithNames, "
                     "JSON, JSONEachRow, JSONLines, NDJSON, Parquet, Pretty*")
# `FORMAT <name>` at the very end, optionally followed by a SETTINGS clause (ClickHouse accepts
# both orders) and a semicolon. A FORMAT inside a trailing string literal does not match:
# the name must be followed by the end, `;` or SETTINGS.
_FORMAT_CLAUSE = re.compile(
    r"\s+FORMAT\s+([A-Za-z]\w*)(\s+SETTINGS\s+(?:[^']|'(?:[^'\\]|\\.)*')*?)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL)


def split_format(sql: str) -> tuple[str, str | None]:
    """Strip a trailing ``FORMAT <name>`` clause.

    Parameters
    ----------
    sql : str
        One statement, maybe ending in ``FORMAT <name> [SETTINGS ...] [;]``.

    Returns
    -------
    tuple of (str, str or None)
        The SQL without the clause (a trailing SETTINGS clause kept), and the name from
        :data:`FORMATS` it maps to (None when there is no clause).

    Raises
    ------
    ValueError
        The clause names a format this command cannot write; the message lists those it can.
    """
    match = _FORMAT_CLAUSE.search(sql)
    if not match:
        return sql, None
    name = match.group(1).lower()
    fmt = "table" if name.startswith("pretty") else CLICKHOUSE_FORMATS.get(name)
    if fmt is None:
        msg = (f"FORMAT {match.group(1)} is not supported here; use one of {SUPPORTED_CLAUSES} "
               f"or --format {{{','.join(FORMATS)}}}")
        raise ValueError(msg)
    return sql[: match.start()] + (match.group(2) or ""), fmt


def _bytes_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()


def _plain(value: Any) -> Any:
    """Turn one Arrow ``to_pylist`` value into JSON-ready Python (NaN/inf → None)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, bytes):
        return _bytes_text(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, UUID):
        return str(value)
    return str(value)


def _utf8_checked(table: pa.Table) -> pa.Table:
    """Re-type as ``binary`` each string column holding bytes that are not UTF-8.

    A ClickHouse ``String`` is any bytes, but chdb labels it Arrow ``string``; Arrow then fails
    on the first invalid value when converting or writing.
    """
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                column = pa.chunked_array(
                    [chunk.view(pa.binary() if pa.types.is_string(chunk.type) else pa.large_binary())
                     for chunk in column.chunks],
                    pa.binary() if pa.types.is_string(column.type) else pa.large_binary())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return [_plain(r) for r in table.to_pylist(maps_as_pydicts="lossy")]


_CSV_NATIVE = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
               pa.types.is_large_string, pa.types.is_decimal, pa.types.is_date,
               pa.types.is_timestamp, pa.types.is_time, pa.types.is_null)


def _cell_text(value: Any) -> str | None:
    """One value of a column Arrow cannot write as text, as text (nested → JSON)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return _bytes_text(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(_plain(value), ensure_ascii=False, default=str)
    return str(value)


def _textual(table: pa.Table) -> pa.Table:
    """Return ``table`` with every column pyarrow.csv cannot write turned into strings.

    Dictionary columns are decoded; lists, maps, structs, binary, UUID and other extension
    types become ``string`` (see :func:`_cell_text`); numbers, strings, decimals, dates and
    timestamps stay native so Arrow formats them.
    """
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        if not any(is_type(column.type) for is_type in _CSV_NATIVE):
            values = column.to_pylist(maps_as_pydicts="lossy")
            column = pa.chunked_array([pa.array([_cell_text(v) for v in values], pa.string())])
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _string_columns(table: pa.Table) -> list[list[str | None]]:
    """Every column of a :func:`_textual` table as Python strings (Arrow's formatting)."""
    out = []
    for column in table.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        out.append(column.to_pylist())
    return out


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _tsv(table: pa.Table) -> bytes:
    r"""ClickHouse TabSeparatedWithNames: ``\ \t \n \r \0`` escaped, NULL as ``\N``."""
    table = _textual(table)
    columns = _string_columns(table)
    lines = ["\t".join(n.translate(_TSV_ESCAPES) for n in table.column_names)]
    for row in zip(*columns, strict=True):
        lines.append("\t".join("\\N" if v is None else v.translate(_TSV_ESCAPES) for v in row))
    return ("\n".join(lines) + "\n").encode()


_TABLE_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text_table(table: pa.Table, max_rows: int) -> str:
    """Aligned text: numbers right-aligned, other columns left; NULL shown as ``NULL``."""
    shown = _textual(table.slice(0, max_rows))
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in shown.schema.types]
    columns = [["NULL" if v is None else v.translate(_TABLE_ESCAPES) for v in col]
               for col in _string_columns(shown)]
    names = shown.column_names
    widths = [max([len(n)] + [len(v) for v in col]) for n, col in zip(names, columns, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()

    lines = [line(names), line(["-" * w for w in widths])]
    lines.extend(line(list(row)) for row in zip(*columns, strict=True))
    return "\n".join(lines)


def write_result(table: pa.Table, fmt: str, out: BinaryIO, *, max_rows: int = 100) -> None:
    """Write ``table`` to the binary stream ``out`` in ``fmt``.

    Parameters
    ----------
    table : pyarrow.Table
        The query result.
    fmt : str
        One of :data:`FORMATS` (see the module docstring for each).
    out : BinaryIO
        Destination, written as bytes (text formats are UTF-8).
    max_rows : int
        Rows shown by ``table``; the others are counted on a last line. Other formats write all.

    Raises
    ------
    ValueError
        ``fmt`` is not one of :data:`FORMATS`.
    pyarrow.ArrowException
        Arrow cannot convert a column.
    """
    table = _utf8_checked(table)
    if fmt == "parquet":
        pq.write_table(table, out)
    elif fmt == "csv":
        buf = io.BytesIO()
        pa_csv.write_csv(_textual(table), buf)
        out.write(buf.getvalue())
    elif fmt == "tsv":
        out.write(_tsv(table))
    elif fmt == "json":
        out.write(json.dumps(_rows(table), ensure_ascii=False, allow_nan=False).encode() + b"\n")
    elif fmt == "jsonl":
        out.write(b"".join(json.dumps(r, ensure_ascii=False, allow_nan=False).encode() + b"\n"
                           for r in _rows(table)))
    elif fmt == "table":
        if table.num_columns == 0 or table.num_rows == 0:
            out.write(b"(no rows)\n")
            return
        out.write(_text_table(table, max_rows).encode() + b"\n")
        if table.num_rows > max_rows:
            out.write(f"... {table.num_rows - max_rows:,} more rows (--max-rows)\n".encode())
    else:
        msg = f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        raise ValueError(msg)


def _max_rows(text: str) -> int:
    value = int(text)
    if value < 0:
        msg = "must be >= 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def _fail(message: object, code: int) -> int:
    first = str(message).strip().splitlines()
    print(f"error: {first[0] if first else type(message).__name__}", file=sys.stderr)  # noqa: T201
    return code


def main(argv: list[str] | None = None, prog: str = "python -m tools.query") -> int:
    """Run one query and write its result.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 written, 1 the query failed, 2 usage, settings, store or output error.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("sql", help="one SQL statement (a trailing FORMAT clause is understood)")
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="output format (default: the SQL's FORMAT clause, else table)")
    parser.add_argument("--output", "-o", default="-", help="file to write; - = stdout")
    parser.add_argument("--max-rows", type=_max_rows, default=100, help="rows to print in table format")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        sql, clause = split_format(args.sql)
    except ValueError as exc:
        return _fail(exc, 2)
    fmt = args.format or clause or "table"
    if fmt == "parquet" and args.output == "-" and sys.stdout.isatty():
        return _fail("parquet is binary: give --output PATH or redirect stdout", 2)
    try:
        store = open_store(load_settings(), lock_timeout_s=TOOL_LOCK_TIMEOUT_S)
    except PipelineError as exc:
        return _fail(exc, 2)
    except OSError as exc:  # e.g. IFD_CHDB_PATH is a file: the store creates the directory
        return _fail(f"cannot open the store: {exc}", 2)
    try:
        table = store.query_arrow(sql)
    except PipelineError as exc:
        return _fail(exc, 1)
    except pa.ArrowException as exc:  # the result was not Arrow: a FORMAT left inside the SQL
        return _fail(f"the result is not Arrow ({exc}); put FORMAT last or use --format", 1)
    finally:
        store.close()
    try:
        if args.output == "-":
            write_result(table, fmt, sys.stdout.buffer, max_rows=args.max_rows)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as fh:
                write_result(table, fmt, fh, max_rows=args.max_rows)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error flushing at exit
        return 0
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}", 2)
    except pa.ArrowException as exc:
        return _fail(f"cannot write the result as {fmt}: {exc}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
