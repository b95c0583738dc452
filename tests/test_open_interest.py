"""Open interest from Databento statistics records: decoded, stored per contract, set against volume.

Expected values are written by hand from the records the test writes.
"""

from __future__ import annotations

import datetime as dt

import databento_dbn as dbn
import numpy as np
from bytewax.testing import run_main

from connectors.dbn import RTYPE_TRADES, DBNReader
from flows.ifd import build_flow
from models.settings import Settings
from sinks.clickhouse import ChdbStore
from tests.dbnfiles import NS, PX, T0, call_definition, records, write_dbn

DAY = 86_400 * NS
UNDEF_TS = 2**64 - 1


def _stat(iid: int, ts: int, quantity: int, stat_type: str = "OPEN_INTEREST",
          action: str = "NEW") -> bytes:
    return bytes(dbn.StatMsg(
        publisher_id=1, instrument_id=iid, ts_event=ts, ts_recv=ts + 1000, ts_ref=UNDEF_TS,
        price=2**63 - 1, quantity=quantity, stat_type=getattr(dbn.StatType, stat_type),
        sequence=1, update_action=getattr(dbn.StatUpdateAction, action)))


def test_reader_keeps_new_open_interest_figures_and_counts_other_statistics(tmp_path):
    blocks = [_stat(7, T0 + NS, 500), _stat(7, T0 + 2 * NS, 3, "CLEARED_VOLUME"),
              _stat(8, T0 + 3 * NS, 40), _stat(8, T0 + 4 * NS, 41, action="DELETE")]
    path = write_dbn(tmp_path / "s.statistics.dbn.zst", blocks, schema=dbn.Schema.STATISTICS)
    chunks = list(DBNReader(path))
    oi = {k: np.concatenate([c.open_interest[k] for c in chunks if c.open_interest]) for k in
          ("instrument_id", "quantity", "ts_event")}
    assert oi["instrument_id"].tolist() == [7, 8] and oi["quantity"].tolist() == [500, 40]
    assert oi["ts_event"].tolist() == [T0 + NS, T0 + 3 * NS]
    assert sum(c.skipped["statistics_other"] for c in chunks) == 2


def test_flow_stores_open_interest_and_the_view_sets_day_volume_against_it(tmp_path):
    # one CME trading day: T0 is 2023-11-14 22:10 UTC, 16:10 CST, before the 17:00 CT roll
    calls = [call_definition(101, 20_000, T0 + 30 * DAY), call_definition(102, 20_100, T0 + 30 * DAY)]
    definitions = write_dbn(tmp_path / "d.definition.dbn.zst", calls, schema=dbn.Schema.DEFINITION,
                            start=T0, end=T0 + DAY)
    stats = write_dbn(tmp_path / "s.statistics.dbn.zst",
                      [_stat(101, T0 + NS, 30), _stat(102, T0 + NS, 500)],
                      schema=dbn.Schema.STATISTICS, start=T0, end=T0 + DAY)
    ts = T0 + np.arange(10, 20) * NS
    trades = write_dbn(tmp_path / "t.trades.dbn.zst",
                       [records(RTYPE_TRADES, ts, [101] * 5 + [102] * 5, [PX] * 10, [10] * 10, "B")],
                       start=T0, end=T0 + DAY)
    settings = Settings(source=",".join(map(str, (definitions, stats, trades))), data_dir=tmp_path,
                        progress_interval_s=0)
    run_main(build_flow(settings))
    store = ChdbStore(tmp_path / "chdb")
    try:
        stored = store.query_arrow(
            "SELECT symbol, open_interest, toString(session_day) AS d FROM ifd.open_interest FINAL"
            " ORDER BY symbol").to_pylist()
        view = store.query_arrow(
            "SELECT contract_key, day_volume, prior_open_interest, volume_oi_ratio, opening"
            " FROM ifd.volume_vs_oi ORDER BY contract_key").to_pylist()
    finally:
        store.close()
    day = dt.datetime.fromtimestamp(T0 // NS, dt.UTC).date().isoformat()
    assert stored == [{"symbol": "QNZ6 C20000", "open_interest": 30, "d": day},
                      {"symbol": "QNZ6 C20100", "open_interest": 500, "d": day}]
    assert [(r["day_volume"], r["prior_open_interest"], r["opening"]) for r in view] == [
        (50, 30, 1), (50, 500, 0)]
    assert view[0]["volume_oi_ratio"] == 50 / 30
