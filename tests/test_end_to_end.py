"""`python -m bytewax.run flows.ifd` exactly as README runs it, then ClickHouse read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.clickhouse import ChdbStore
from tests.reference import lee_ready_windows, trades_frame

ROOT = Path(__file__).resolve().parents[1]


def _run(data_dir: Path, source: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFD_")}
    env["IFD_DATA_DIR"] = str(data_dir)
    if source:
        env["IFD_SOURCE"] = source
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.ifd"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _windows(data_dir: Path) -> dict[tuple[int, int], dict[str, int]]:
    store = ChdbStore(data_dir / "chdb")
    try:
        rows = store.query_arrow(
            "SELECT instrument_id, toUnixTimestamp(window_start) AS w, bid_volume AS bid,"
            " ask_volume AS ask, unknown_volume AS unknown, total_trades AS trades"
            " FROM ifd.pressure_metrics"
        ).to_pylist()
    finally:
        store.close()
    return {(r.pop("instrument_id"), r.pop("w")): r for r in rows}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sample")
    return data_dir, _run(data_dir)


def test_default_run_generates_sample_and_prints_summary(sample_run):
    data_dir, output = sample_run
    assert (data_dir / "sample" / "nq-opt-glbx-mdp3-20261120.tbbo.dbn.zst").is_file()
    assert "IFD run summary" in output
    assert "dead letters          0" in output


def test_default_run_windows_equal_independent_lee_ready(sample_run):
    data_dir, _ = sample_run
    tbbo = data_dir / "sample" / "nq-opt-glbx-mdp3-20261120.tbbo.dbn.zst"
    expected = lee_ready_windows(trades_frame(tbbo))
    assert _windows(data_dir) == expected
    assert sum(v["trades"] for v in expected.values()) == 60_000


def test_default_run_rows_are_option_contracts_and_strike_view_adds_up(sample_run):
    data_dir, _ = sample_run
    store = ChdbStore(data_dir / "chdb")
    try:
        per_type = store.query_arrow(
            "SELECT option_type, count() AS n, countIf(strike IS NULL OR expiration IS NULL) AS bad,"
            " sum(total_volume) AS v FROM ifd.pressure_metrics GROUP BY option_type"
            " ORDER BY option_type").to_pylist()
        by_strike = store.query_arrow(
            "SELECT sum(total_volume) AS v, max(expirations) AS e FROM ifd.pressure_by_strike"
        ).to_pylist()[0]
        parts = store.query_arrow("SELECT count() AS n FROM ifd.ingest_batches").to_pylist()
    finally:
        store.close()
    assert [r["option_type"] for r in per_type] == ["C", "P"]
    assert all(r["bad"] == 0 for r in per_type)
    assert by_strike["v"] == sum(r["v"] for r in per_type)
    assert by_strike["e"] > 1  # the strike view really spans several expiries
    assert parts[0]["n"] >= 1


def test_replaying_the_same_files_leaves_final_numbers_unchanged(sample_run):
    data_dir, _ = sample_run
    before = _windows(data_dir)
    _run(data_dir)
    assert _windows(data_dir) == before


def test_real_esh4_mbo_replay_writes_correct_rows(tmp_path, real_dir):
    path = real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    output = _run(tmp_path, str(path))
    assert "records read          68,792" in output
    assert _windows(tmp_path) == lee_ready_windows(trades_frame(path))
