"""Replays of the real CME files in ../shared/data/real against independent polars numbers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from connectors.inputs import plan_inputs
from flows.instruments import InstrumentCatalog
from tests.flowrun import contract_rows, per_window, run_flow, stats
from tests.reference import lee_ready_windows, trades_frame


def _by_instrument(items):
    """(instrument_id, window_start_s) → numbers, from the flow's output."""
    return per_window(items, by="instrument_id")


def test_esh4_mbo_windows_equal_polars_lee_ready(tmp_path, real_dir):
    path = real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    items = run_flow(tmp_path, [path], batch_records=5000)
    expected = lee_ready_windows(trades_frame(path))
    assert _by_instrument(items) == expected
    assert sum(v["trades"] for v in expected.values()) == 2973
    # MBO: only T counts (6,371 F fills and 8,725 snapshot adds are not trades)
    assert sum(s.trades for s in stats(items)) == 2973
    assert sum(s.records for s in stats(items)) == 68_792


def test_esh4_mbo_n_side_trade_is_classified_by_tick_test(tmp_path, real_dir):
    items = run_flow(tmp_path, [real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"])
    total = Counter()
    for p in contract_rows(items):
        total.update(flag=p.flag_volume, tick=p.tick_volume,
                     unknown=p.unknown_volume, quote=p.quote_volume)
    assert total["tick"] + total["unknown"] > 0  # the one N trade
    assert total["quote"] == 0  # MBO carries no BBO


def test_esu4_trades_windows_equal_polars_and_map_to_future(tmp_path, real_dir):
    path = real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"
    items = run_flow(tmp_path, [path, real_dir / "esu4-glbx-mdp3.definition.dbn.zst"])
    assert _by_instrument(items) == lee_ready_windows(trades_frame(path))
    rows = contract_rows(items)
    assert {p.key for p in rows} == {"F|ESU4"}
    assert all(p.option_type == "F" and p.strike_price is None for p in rows)
    assert sum(s.undefined_instrument_trades for s in stats(items)) == 0


def test_esu4_mbp1_trades_equal_trades_file(tmp_path, real_dir):
    trades = run_flow(tmp_path / "t", [real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst"])
    mbp1 = run_flow(tmp_path / "m", [real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"])
    assert per_window(mbp1) == per_window(trades)
    assert sum(v["trades"] for v in per_window(mbp1).values()) == 120
    expected = lee_ready_windows(trades_frame(real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"))
    assert _by_instrument(mbp1) == expected


def test_trades_and_mbp1_together_count_each_trade_once(tmp_path, real_dir):
    items = run_flow(
        tmp_path,
        [real_dir / "esu4-glbx-mdp3-20240701.trades.dbn.zst",
         real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"],
    )
    assert sum(v["trades"] for v in per_window(items).values()) == 120
    skipped = Counter()
    for s in stats(items):
        skipped.update(s.skipped)
    assert skipped["duplicate_schema_trades"] == 120


def test_option_definitions_map_to_strike_type_expiry_underlying(real_dir):
    plan = plan_inputs([str(real_dir / "esm4-opt-glbx-mdp3-20240509.definition.dbn.zst"),
                        str(real_dir / "esm4-opt-glbx-mdp3-20240509.mbp-1.dbn.zst")])
    catalog = InstrumentCatalog(plan.definitions, plan.symbols)
    contracts = {catalog.resolve(d.instrument_id).symbol: catalog.resolve(d.instrument_id)
                 for d in plan.definitions}
    assert set(contracts) == {"ESM4 P5230", "ESM4 P5250"}
    for symbol, strike in (("ESM4 P5230", 5230), ("ESM4 P5250", 5250)):
        c = contracts[symbol]
        assert c.strike_price == strike * 10**9
        assert c.option_type == "P"
        assert c.underlying == "ESM4"
        assert datetime.fromtimestamp(c.expiration_ns / 1e9, UTC).date().isoformat() == "2024-06-21"
        assert c.key == f"ESM4|2024-06-21T13:30:00Z|P|{strike}|ESM4"


def test_option_quotes_without_trades_write_no_window_and_count_book_events(tmp_path, real_dir):
    items = run_flow(tmp_path, [real_dir / "esm4-opt-glbx-mdp3-20240509.definition.dbn.zst",
                                real_dir / "esm4-opt-glbx-mdp3-20240509.mbp-1.dbn.zst"])
    assert contract_rows(items) == []
    s = stats(items)
    assert sum(x.records for x in s) == 560
    assert sum(sum(x.skipped.values()) for x in s) == 560


def test_every_fixture_schema_is_processed_or_skipped_with_a_count(tmp_path, real_dir):
    fixtures = sorted((real_dir / "fixtures").glob("*.dbn.zst"))
    items = run_flow(tmp_path, fixtures)
    by_source = {}
    for s in stats(items):
        acc = by_source.setdefault(Path(s.path).name, Counter())
        acc["records"] += s.records
        acc["accounted"] += s.trades + sum(s.dead_letters.values()) + sum(s.skipped.values())
    data_fixtures = {f.name for f in fixtures if ".definition." not in f.name}
    assert set(by_source) == data_fixtures
    for source, acc in by_source.items():
        assert acc["records"] > 0, source
        assert acc["accounted"] == acc["records"], source
    # all fixtures overlap (ESH1, same day): trades only from the richest schema, mbo
    mbo = trades_frame(real_dir / "fixtures" / "test_data.mbo.dbn.zst")
    assert sum(v["trades"] for v in per_window(items).values()) == mbo.height
