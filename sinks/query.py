"""Run SQL against the configured ClickHouse (embedded chdb or server) and print the result.

Embedded chdb has no ``clickhouse-client``; this is its command line::

    python -m sinks.query "SELECT window_start, symbol, bid_volume, ask_volume, dominant_side
                           FROM ifd.pressure_metrics ORDER BY total_volume DESC LIMIT 10"

Uses the same settings as the flow (``IFD_CLICKHOUSE_URL`` / ``IFD_CHDB_PATH`` /
``IFD_DATA_DIR``). Stop the flow first when embedded: chdb allows one process
per data directory.
"""

from __future__ import annotations

import argparse
import sys

from models.errors import PipelineError
from models.settings import load_settings
from sinks.clickhouse import open_store


def main(argv: list[str] | None = None) -> int:
    """Print the query result as a table; return a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m sinks.query", description=__doc__.splitlines()[0])
    parser.add_argument("sql", help="one SQL statement")
    parser.add_argument("--max-rows", type=int, default=100, help="rows to print (default 100)")
    args = parser.parse_args(argv)
    try:
        store = open_store(load_settings())
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        table = store.query_arrow(args.sql)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if table.num_columns == 0:
        print("(no rows)")
        return 0
    frame = table.slice(0, args.max_rows).to_pandas()
    print(frame.to_string(index=False))
    if table.num_rows > args.max_rows:
        print(f"... {table.num_rows - args.max_rows:,} more rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
