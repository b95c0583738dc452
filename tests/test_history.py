"""Baselines loaded from ClickHouse history at start equal baselines built online."""

from __future__ import annotations

from bytewax.testing import TestingSink, run_main

from flows.ifd import build_flow
from models.settings import Settings
from models.signals import Signal
from samples.labelled import generate_labelled_days
from sinks.clickhouse import ChdbStore


def _signals(items):
    return {s.alert_key: (s.signal_class, s.direction, round(s.confidence, 9), s.baseline_windows,
                          s.baseline_scope)
            for s in items if isinstance(s, Signal)}


def _settings(tmp_path, files, name):
    return Settings(source=",".join(str(f) for f in files), data_dir=tmp_path / name,
                    progress_interval_s=0)


def test_day_six_scored_from_clickhouse_history_equals_one_continuous_run(tmp_path):
    days = generate_labelled_days(tmp_path / "src", n_days=6, first_scored_day=5,
                                  trades_per_day=12_000)
    pairs = list(zip(days.definition_paths, days.tbbo_paths, strict=True))
    everything = [f for pair in pairs for f in pair]

    continuous: list = []
    run_main(build_flow(_settings(tmp_path, everything, "one"), sink=TestingSink(continuous),
                        alerts=None))
    last_day = days.days[-1]
    expected = {k: v for k, v in _signals(continuous).items() if str(last_day) in k}
    assert any(v[3] == 5 and v[4] == "contract" for v in expected.values())

    # run 1 writes days 1-5 to ClickHouse; run 2 sees only day 6 and must load the history
    first_five = [f for pair in pairs[:5] for f in pair]
    run_main(build_flow(_settings(tmp_path, first_five, "split"), alerts=None))
    store = ChdbStore(tmp_path / "split" / "chdb")
    try:
        n = store.query_arrow("SELECT count() AS n FROM ifd.pressure_metrics").to_pylist()[0]["n"]
    finally:
        store.close()
    assert n > 1000
    resumed: list = []
    run_main(build_flow(_settings(tmp_path, list(pairs[5]), "split"), sink=TestingSink(resumed),
                        alerts=None))
    contract_scoped = {k: v for k, v in expected.items() if v[4] == "contract"}
    got = {k: v for k, v in _signals(resumed).items() if k in contract_scoped}
    assert got == contract_scoped
