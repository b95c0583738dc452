"""Baseline job: budget guard for Databento history, and baselines from DBN files."""

from __future__ import annotations

import os
from datetime import date
from types import SimpleNamespace

import polars as pl
import pytest

from samples.generator import generate_session
from sinks.clickhouse import ChdbStore
from tools.baseline_job import BudgetExceededError, fetch_history, main


class FakeHistorical:
    """Stands in for databento.Historical (no network here): prices and records calls."""

    def __init__(self, cost_usd: float) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.metadata = SimpleNamespace(get_cost=self._cost)
        self.timeseries = SimpleNamespace(get_range=self._get_range)
        self.cost_usd = cost_usd

    def _cost(self, **kw):
        self.calls.append(("get_cost", kw))
        return self.cost_usd

    def _get_range(self, **kw):
        self.calls.append(("get_range", kw))
        open(kw["path"], "wb").close()


def test_fetch_refuses_above_budget_and_downloads_nothing(tmp_path, capsys):
    client = FakeHistorical(cost_usd=7.5)  # x2 requests (data + definition) = $15
    with pytest.raises(BudgetExceededError, match=r"\$15.00 exceeds IFD_HISTORY_BUDGET_USD=10.00"):
        fetch_history(client, symbols=["NQ.OPT"], schema="tbbo", start=date(2026, 10, 1),
                      end=date(2026, 10, 29), budget_usd=10.0, out_dir=tmp_path)
    assert [c[0] for c in client.calls] == ["get_cost", "get_cost"]
    assert client.calls[0][1]["stype_in"] == "parent"
    assert "$15.00" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_fetch_within_budget_downloads_definitions_and_data(tmp_path):
    client = FakeHistorical(cost_usd=1.0)
    paths = fetch_history(client, symbols=["NQ.OPT"], schema="tbbo", start=date(2026, 10, 1),
                          end=date(2026, 10, 29), budget_usd=10.0, out_dir=tmp_path)
    assert [p.name for p in paths] == ["NQ_OPT-20261001-20261029.definition.dbn.zst",
                                       "NQ_OPT-20261001-20261029.tbbo.dbn.zst"]
    assert [c[1]["schema"] for c in client.calls if c[0] == "get_range"] == ["definition", "tbbo"]


def test_job_replays_dbn_files_and_writes_baselines_equal_to_independent_stats(
        tmp_path, monkeypatch, capsys):
    for day, seed in ((date(2026, 11, 18), 1), (date(2026, 11, 19), 2)):
        generate_session(tmp_path / "src", session_date=day, seed=seed, n_trades=4000)
    for name in list(os.environ):
        if name.startswith("IFD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IFD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IFD_SCORING_MIN_DAYS", "2")
    monkeypatch.setenv("IFD_PROGRESS_INTERVAL_S", "0")
    assert main(["--source", str(tmp_path / "src" / "*.dbn.zst")]) == 0
    assert "baselines for 2026-11-20" in capsys.readouterr().out

    store = ChdbStore(tmp_path / "data" / "chdb")
    try:
        windows = pl.from_arrow(store.query_arrow(
            "SELECT contract_key, toUnixTimestamp(window_start) AS ws, total_volume"
            " FROM ifd.pressure_metrics"))
        got = pl.from_arrow(store.query_arrow(
            "SELECT baseline_key, tod_bucket, days, volume_median FROM ifd.baselines FINAL"))
    finally:
        store.close()
    # independent: per day and 30-min bucket, sum / 6 windows; days without trades count as 0
    # (the sample's trades lie 00:00-20:00 UTC: inside the session of the same date)
    daily = (windows.with_columns(day=pl.col("ws") // 86_400,
                                  bucket=(pl.col("ws") % 86_400) // 1800 * 1800)
             .group_by("contract_key", "bucket", "day").agg(v=pl.col("total_volume").sum() / 6))
    # a contract's history starts on its first day with a window: contracts first seen on
    # the second day have one listed day, below IFD_SCORING_MIN_DAYS=2
    first_day = int(windows["ws"].min()) // 86_400
    listed = set(windows.filter((pl.col("ws") // 86_400) == first_day)["contract_key"].to_list())
    expected = {}
    for (key, bucket), group in daily.group_by("contract_key", "bucket"):
        if key not in listed:
            continue
        values = group["v"].to_list() + [0.0] * (2 - group.height)
        ct = (bucket - 6 * 3600) % 86_400  # both days are in CST (UTC-6): label on the CT clock
        expected[(key, f"{ct // 3600:02d}:{ct % 3600 // 60:02d}")] = sum(values) / 2
    assert got.height == len(expected) > 100
    for row in got.iter_rows(named=True):
        assert row["days"] == 2
        assert row["volume_median"] == pytest.approx(expected[(row["baseline_key"], row["tod_bucket"])])


def test_fetch_without_a_key_or_with_a_bad_budget_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    monkeypatch.setenv("IFD_DATA_DIR", str(tmp_path))
    assert main(["--fetch-days", "3"]) == 2
    assert "DATABENTO_API_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("DATABENTO_API_KEY", "db-test_not_a_real_key_QWERT")
    monkeypatch.setenv("IFD_HISTORY_BUDGET_USD", "-1")
    assert main(["--fetch-days", "3"]) == 2
    err = capsys.readouterr().err
    assert "IFD_HISTORY_BUDGET_USD" in err and "QWERT" not in err
