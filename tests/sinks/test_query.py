"""``python -m sinks.query``: every output format round-trips the stored rows."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from sinks.clickhouse import ChdbStore
from sinks.query import main, split_format

ROWS = [(1, "ESM4 P5230", 12.5), (2, "ESM4 C5300", -3.25), (3, "NQZ6 C20000", 0.0)]


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    store = ChdbStore(tmp_path / "chdb")
    try:
        store.command("CREATE DATABASE IF NOT EXISTS t")
        store.command("CREATE TABLE t.x (id UInt32, symbol String, v Float64) ENGINE = MergeTree ORDER BY id")
        store.command("INSERT INTO t.x VALUES " + ", ".join(f"({i}, '{s}', {v})" for i, s, v in ROWS))
    finally:
        store.close()
    monkeypatch.setenv("IFD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("IFD_CLICKHOUSE_URL", raising=False)
    return tmp_path


SQL = "SELECT id, symbol, v FROM t.x ORDER BY id"


def test_csv_from_a_format_clause_round_trips(store_dir, capsysbinary):
    assert main([SQL + " FORMAT CSV"]) == 0
    rows = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode())))
    assert rows[0] == ["id", "symbol", "v"]
    assert [(int(a), b, float(c)) for a, b, c in rows[1:]] == ROWS


def test_jsonl_and_json(store_dir, capsysbinary):
    assert main(["--format", "jsonl", SQL]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert [(r["id"], r["symbol"], r["v"]) for r in map(json.loads, lines)] == ROWS
    assert main([SQL + " FORMAT JSON"]) == 0
    assert [tuple(r.values()) for r in json.loads(capsysbinary.readouterr().out)] == ROWS


def test_parquet_to_a_file(store_dir, tmp_path):
    out = tmp_path / "x.parquet"
    assert main(["--format", "parquet", "--output", str(out), SQL]) == 0
    assert [tuple(r.values()) for r in pq.read_table(out).to_pylist()] == ROWS


def test_table_shows_every_value(store_dir, capsysbinary):
    assert main([SQL]) == 0
    text = capsysbinary.readouterr().out.decode()
    for _i, symbol, v in ROWS:
        assert symbol in text and str(v) in text


def test_unsupported_format_clause_is_one_line_error(store_dir, capsys):
    assert main([SQL + " FORMAT Vertical"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FORMAT Vertical is not supported" in err


def test_bad_sql_is_one_line_error(store_dir, capsys):
    assert main(["SELECT nope FROM t.missing"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_split_format_leaves_other_sql_alone():
    assert split_format("SELECT format FROM t") == ("SELECT format FROM t", None)
    assert split_format("SELECT 1 format tsv;") == ("SELECT 1", "tsv")
