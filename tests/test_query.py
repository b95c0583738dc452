"""``python -m tools.query`` on a real embedded chdb store: every format round-trips the stored rows."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sinks.clickhouse import ChdbStore
from tools.query import main, split_format

COLUMNS = ("id", "symbol", "v", "n")
# strings CSV/TSV must quote or escape: comma, double quote, newline, tab, backslash, non-ASCII
ROWS = [
    (1, "ESM4 P5230", 12.5, None),
    (2, 'a,b "quoted"\nnext line\ttab \\ end', -3.25, 7),
    (3, "NQZ6 C20000 é", 0.0, -9_000_000_000),
]
DICTS = [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]
TS = [datetime(2024, 5, 9, 10, 0, tzinfo=UTC), datetime(2024, 5, 9, 10, 5, 0, 250_000, tzinfo=UTC)]
NESTED = [
    {"k": 1, "ts": TS[0], "tags": ["block", "sweep"], "counts": {"zero_size": 2, "undef_price": 1}},
    {"k": 2, "ts": TS[1], "tags": [], "counts": {}},
]
SQL = "SELECT id, symbol, v, n FROM t.x ORDER BY id"
NESTED_SQL = "SELECT k, ts, tags, counts FROM t.nested ORDER BY k"


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A chdb directory holding ``t.x`` (ROWS) and ``t.nested`` (NESTED), closed again."""
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.command("CREATE DATABASE IF NOT EXISTS t")
        store.command("CREATE TABLE t.x (id UInt32, symbol String, v Float64, n Nullable(Int64)) "
                      "ENGINE = MergeTree ORDER BY id")
        store.insert_arrow("t.x", pa.table({c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}),
                           dedup_token="x")
        store.command("CREATE TABLE t.nested (k UInt8, ts DateTime64(3, 'UTC'), tags Array(String), "
                      "counts Map(String, UInt64)) ENGINE = MergeTree ORDER BY k")
        store.command("INSERT INTO t.nested VALUES (1, '2024-05-09 10:00:00.000', ['block', 'sweep'], "
                      "{'zero_size': 2, 'undef_price': 1}), (2, '2024-05-09 10:05:00.250', [], {})")
    finally:
        store.close()
    monkeypatch.setenv("IFD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("IFD_CHDB_PATH", raising=False)
    monkeypatch.delenv("IFD_CLICKHOUSE_URL", raising=False)
    return tmp_path


def _csv_rows(data: bytes) -> list[tuple]:
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == list(COLUMNS)
    return [(int(a), b, float(c), None if d == "" else int(d)) for a, b, c, d in rows[1:]]


_TSV_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "0": "\0"}


def _tsv_rows(data: bytes) -> list[tuple]:
    lines = data.decode().split("\n")
    assert lines[-1] == "" and lines[0].split("\t") == list(COLUMNS)

    def field(text: str) -> str | None:
        return None if text == "\\N" else re.sub(r"\\(.)", lambda m: _TSV_UNESCAPE[m.group(1)], text)

    rows = [[field(f) for f in line.split("\t")] for line in lines[1:-1]]
    return [(int(a), b, float(c), None if d is None else int(d)) for a, b, c, d in rows]


def test_format_csv_clause_is_stripped_and_rows_parse_back_with_the_csv_module(store_dir, capsysbinary):
    assert main([SQL + " FORMAT CSV"]) == 0
    assert _csv_rows(capsysbinary.readouterr().out) == ROWS


def test_csv_to_an_output_file_equals_the_inserted_rows(store_dir, tmp_path):
    out = tmp_path / "x.csv"
    assert main(["--format", "csv", "--output", str(out), SQL]) == 0
    assert _csv_rows(out.read_bytes()) == ROWS


def test_tsv_escapes_tabs_newlines_and_backslashes_and_null_is_backslash_n(store_dir, capsysbinary):
    assert main([SQL + " FORMAT TabSeparatedWithNames"]) == 0
    out = capsysbinary.readouterr().out
    assert out.count(b"\n") == 1 + len(ROWS)  # the embedded newline is escaped, not written
    assert _tsv_rows(out) == ROWS


def test_jsonl_lines_each_parse_to_one_row(store_dir, capsysbinary):
    assert main(["--format", "jsonl", SQL]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert [json.loads(line) for line in lines] == DICTS


def test_json_is_one_array_of_row_objects(store_dir, capsysbinary):
    assert main([SQL + " FORMAT JSON"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == DICTS


def test_parquet_file_reads_back_with_pyarrow_types_kept(store_dir, tmp_path):
    out = tmp_path / "x.parquet"
    assert main(["--format", "parquet", "--output", str(out), SQL]) == 0
    table = pq.read_table(out)
    assert table.to_pylist() == DICTS
    assert table.schema.field("id").type == pa.uint32() and table.schema.field("n").nullable


def test_parquet_clause_to_stdout_writes_binary(store_dir, capsysbinary):
    assert main([SQL + " FORMAT Parquet"]) == 0
    assert pq.read_table(io.BytesIO(capsysbinary.readouterr().out)).to_pylist() == DICTS


def test_nested_columns_in_csv_are_json_cells_and_times_iso_in_jsonl(store_dir, capsysbinary):
    assert main(["--format", "csv", NESTED_SQL]) == 0
    rows = list(csv.DictReader(io.StringIO(capsysbinary.readouterr().out.decode(), newline="")))
    assert [(int(r["k"]), json.loads(r["tags"]), json.loads(r["counts"])) for r in rows] == [
        (e["k"], e["tags"], e["counts"]) for e in NESTED]
    assert main([NESTED_SQL + " FORMAT JSONEachRow"]) == 0
    got = [json.loads(line) for line in capsysbinary.readouterr().out.decode().splitlines()]
    assert [{**g, "ts": datetime.fromisoformat(g["ts"])} for g in got] == NESTED


def test_string_that_is_not_utf8_is_hex_not_a_crash(store_dir, capsysbinary):
    assert main(["SELECT unhex('ff00') AS b, 'é' AS e FORMAT JSONEachRow"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == {"b": "0xff00", "e": "é"}
    assert main(["--format", "csv", "SELECT unhex('ff00') AS b"]) == 0
    assert capsysbinary.readouterr().out.decode().splitlines() == ['"b"', '"0xff00"']


def test_nan_and_inf_are_json_null(store_dir, capsysbinary):
    assert main(["SELECT nan AS a, inf AS b, 1.5 AS c FORMAT JSONEachRow"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == {"a": None, "b": None, "c": 1.5}


def test_table_puts_every_value_in_its_column_one_row_per_line(store_dir, capsysbinary):
    assert main([SQL]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert len(lines) == 2 + len(ROWS)  # header, rule, rows: the newline in a value is escaped
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    cells = [[line.ljust(spans[-1][1])[a:b].strip() for a, b in spans] for line in lines]
    assert cells[0] == list(COLUMNS)
    shown = [[str(i), s.replace("\n", "\\n").replace("\t", "\\t"), f"{v:g}", "NULL" if n is None else str(n)]
             for i, s, v, n in ROWS]
    assert cells[2:] == shown
    assert lines[2].index("12.5") + 4 == spans[2][1]  # numbers are right-aligned


def test_table_max_rows_counts_the_rest(store_dir, capsysbinary):
    assert main(["--max-rows", "1", SQL]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("... 2 more rows")


def test_format_option_wins_over_the_clause(store_dir, capsysbinary):
    assert main(["--format", "jsonl", SQL + " FORMAT CSV"]) == 0
    assert [json.loads(line) for line in capsysbinary.readouterr().out.decode().splitlines()] == DICTS


@pytest.mark.parametrize(("tail", "fmt"), [
    (" FORMAT CSV", "csv"), (" format csvwithnames", "csv"), ("\nFORMAT JSONEachRow;", "jsonl"),
    (" FORMAT JSONLines SETTINGS max_threads = 1", "jsonl"), (" FORMAT TabSeparated", "tsv"),
    (" FORMAT TSVWithNames ; ", "tsv"), (" FORMAT JSON", "json"), (" FORMAT Parquet", "parquet"),
    (" FORMAT PrettyCompactMonoBlock", "table"), (" FORMAT PrettyNoEscapes", "table"),
])
def test_split_format_maps_clickhouse_names(tail, fmt):
    sql, got = split_format(SQL + tail)
    assert got == fmt
    assert sql == SQL + (" SETTINGS max_threads = 1" if "SETTINGS" in tail else "")


def test_split_format_leaves_other_sql_alone():
    for sql in ("SELECT format FROM t", "SELECT 'x FORMAT CSV'", "SELECT 1 AS format"):
        assert split_format(sql) == (sql, None)


def test_format_with_settings_runs(store_dir, capsysbinary):
    assert main([SQL + " FORMAT CSV SETTINGS max_threads = 1"]) == 0
    assert _csv_rows(capsysbinary.readouterr().out) == ROWS


def test_unsupported_format_clause_is_one_line_naming_the_supported_ones(store_dir, capsys):
    assert main([SQL + " FORMAT Vertical"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: FORMAT Vertical is not supported")
    for name in ("CSV", "TSV", "JSONEachRow", "Parquet", "Pretty"):
        assert name in err


def test_bad_sql_is_one_line_error_exit_1(store_dir, capsys):
    assert main(["SELECT nope FROM t.missing"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_store_that_cannot_open_is_one_line_error_exit_2(tmp_path, monkeypatch, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("IFD_CHDB_PATH", str(not_a_dir))
    monkeypatch.delenv("IFD_CLICKHOUSE_URL", raising=False)
    assert main(["SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the store") and err.count("\n") == 1


def test_bad_clickhouse_url_is_exit_2_and_hides_the_password(monkeypatch, capsys):
    monkeypatch.setenv("IFD_CLICKHOUSE_URL", "ifd:s3cretpw@db.internal:8123/ifd")
    assert main(["SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IFD_CLICKHOUSE_URL" in err and "s3cretpw" not in err


def test_unwritable_output_is_exit_2_and_nothing_written(store_dir, tmp_path, capsys):
    out = tmp_path / "missing" / "x.csv"
    assert main(["--format", "csv", "--output", str(out), SQL]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {out}")
    assert not out.exists()


def test_negative_max_rows_is_a_usage_error(store_dir, capsys):
    assert main(["--max-rows", "-1", SQL]) == 2
    assert "--max-rows" in capsys.readouterr().err


def test_module_runs_without_importing_pandas(store_dir):
    code = ("import sys; from tools.query import main; rc = main([sys.argv[1]]); "
            "assert 'pandas' not in sys.modules, 'pandas imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, SQL], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert "ESM4 P5230" in done.stdout
