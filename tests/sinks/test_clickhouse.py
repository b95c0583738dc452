"""ClickHouse sink on a real engine (chdb): view numbers, idempotency, retries."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from flows.pressure import merge_parts
from models.errors import SinkFatalError, SinkRetryableError
from models.records import PartBlock, WindowPart, WindowResult
from sinks.clickhouse import ChdbStore, IFDWriter, apply_schema
from tests.partblocks import block_of

W0 = 1_715_248_800 * 10**9
W_NS = 300 * 10**9


def _part(rng: random.Random, key: str, window: int, seq: int) -> WindowPart:
    bid, ask, unk = rng.randint(0, 50), rng.randint(0, 50), rng.randint(0, 5)
    return WindowPart(
        key=key, window_start_ns=W0 + window * W_NS, window_end_ns=W0 + (window + 1) * W_NS,
        source="s.dbn", seq=seq, instrument_id=hash(key) % 1000, symbol=key, underlying="NQZ6",
        expiration_ns=1_797_600_000 * 10**9, strike_price=21_500 * 10**9, option_type="C",
        defined=True, bid_volume=bid, ask_volume=ask, unknown_volume=unk,
        buy_trades=rng.randint(1, 9), sell_trades=rng.randint(0, 9), unknown_trades=rng.randint(0, 2),
        notional=rng.uniform(0, 1e4), max_trade_size=rng.randint(1, 60),
        first_ts_ns=W0 + window * W_NS + rng.randint(0, 10**9),
        last_ts_ns=W0 + window * W_NS + rng.randint(10**9, 2 * 10**9),
        flag_volume=bid + ask, quote_volume=0, tick_volume=0,
    )


@pytest.fixture
def store(tmp_path):
    s = ChdbStore(tmp_path / "chdb")
    apply_schema(s)
    apply_schema(s)  # idempotent
    yield s
    s.close()


def _metrics(store):
    rows = store.query_arrow(
        "SELECT contract_key, toUnixTimestamp64Milli(window_start) AS ws, bid_volume, ask_volume,"
        " total_volume, total_trades, pressure_ratio, vwap, avg_trade_size, max_trade_size,"
        " dominant_side, dominance_confidence, parts FROM ifd.pressure_metrics"
    ).to_pylist()
    return {(r["contract_key"], r["ws"]): r for r in rows}


def test_view_recomputes_the_python_merge_from_parts(store):
    rng = random.Random(5)
    parts = [_part(rng, f"K{k}", w, seq) for k in range(4) for w in range(3) for seq in range(3)]
    writer = IFDWriter(store, batch_rows=7)
    for i in range(0, len(parts), 5):
        writer.add(block_of(parts[i:i + 5], W_NS))
    writer.flush()
    got = _metrics(store)
    assert len(got) == 12
    for (key, ws), row in got.items():
        group = [p for p in parts if p.key == key and p.window_start_ns // 10**6 == ws]
        m = merge_parts(group)
        assert row["parts"] == len(group) == 3
        assert (row["bid_volume"], row["ask_volume"], row["total_volume"], row["total_trades"]) \
            == (m.bid_volume, m.ask_volume, m.total_volume, m.total_trades)
        assert row["max_trade_size"] == m.max_trade_size
        assert row["dominant_side"] == m.dominant_side.value
        assert row["dominance_confidence"] == pytest.approx(m.dominance_confidence)
        assert row["avg_trade_size"] == pytest.approx(m.avg_trade_size)
        assert row["vwap"] == pytest.approx(m.vwap)
        if m.pressure_ratio is None:
            assert row["pressure_ratio"] is None
        else:
            assert row["pressure_ratio"] == pytest.approx(m.pressure_ratio)


def test_replayed_and_reemitted_parts_do_not_change_final_numbers(store):
    rng = random.Random(9)
    parts = [_part(rng, "K", w, seq) for w in range(2) for seq in range(4)]
    writer = IFDWriter(store)
    writer.add(block_of(parts, W_NS))
    writer.flush()
    before = _metrics(store)
    writer.add(block_of(parts[2:5], W_NS))  # re-emission after a restart
    writer.flush()
    writer.add(block_of(parts, W_NS))  # full replay of the same files
    writer.flush()
    assert _metrics(store) == before
    late = _part(rng, "K", 0, 99)  # a genuinely new (late) part adds
    writer.add(block_of([late], W_NS))
    writer.flush()
    after = _metrics(store)[("K", W0 // 10**6)]
    assert after["bid_volume"] == before[("K", W0 // 10**6)]["bid_volume"] + late.bid_volume


class FlakyStore:
    def __init__(self, inner, failures: int, error: Exception):
        self.inner, self.failures, self.error, self.calls = inner, failures, error, 0

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.inner.insert_arrow(table, data, dedup_token=dedup_token)


def test_retryable_insert_errors_are_retried_then_written_once(store):
    flaky = FlakyStore(store, 2, SinkRetryableError("Code: 252. TOO_MANY_PARTS"))
    writer = IFDWriter(flaky, max_attempts=4, backoff_initial_s=0)
    writer.add(block_of([_part(random.Random(1), "K", 0, 0)], W_NS))
    writer.flush()
    assert flaky.calls == 3
    assert store.query_arrow("SELECT count() AS n FROM ifd.pressure_parts").to_pylist() == [{"n": 1}]


def test_fatal_insert_error_is_not_retried(store):
    flaky = FlakyStore(store, 10, SinkFatalError("Code: 60. UNKNOWN_TABLE"))
    writer = IFDWriter(flaky, max_attempts=4)
    writer.add(block_of([_part(random.Random(1), "K", 0, 0)], W_NS))
    with pytest.raises(SinkFatalError, match="UNKNOWN_TABLE"):
        writer.flush()
    assert flaky.calls == 1


def test_persistent_retryable_error_gives_up_with_fatal_error(store):
    flaky = FlakyStore(store, 10, SinkRetryableError("Code: 209. SOCKET_TIMEOUT"))
    writer = IFDWriter(flaky, max_attempts=3, backoff_initial_s=0)
    writer.add(block_of([_part(random.Random(1), "K", 0, 0)], W_NS))
    with pytest.raises(SinkFatalError, match="giving up on insert into ifd.pressure_parts"):
        writer.flush()
    assert flaky.calls == 3


def test_pipelined_writer_stores_every_row_once_and_raises_its_insert_error_at_flush(store):
    rng = random.Random(7)
    parts = [_part(rng, f"K{i % 5}", i % 3, i) for i in range(40)]
    writer = IFDWriter(store, batch_rows=6, pipelined=True)
    for i in range(0, len(parts), 4):
        writer.add(block_of(parts[i:i + 4], W_NS))
        writer.flush(wait=False)  # the flow's periodic flush: leaves one insert in flight
    writer.close()
    stored = store.query_arrow("SELECT count() AS n, sum(bid_volume) AS bid FROM ifd.pressure_parts")
    assert stored.to_pylist() == [{"n": 40, "bid": sum(p.bid_volume for p in parts)}]
    assert writer.rows_written["ifd.pressure_parts"] == 40 and writer.pending == 0

    flaky = FlakyStore(store, 10, SinkFatalError("Code: 60. UNKNOWN_TABLE"))
    failing = IFDWriter(flaky, pipelined=True)
    failing.add(block_of([_part(rng, "K", 0, 0)], W_NS))
    failing.flush(wait=False)  # submitted: the error is the writer thread's
    with pytest.raises(SinkFatalError, match="UNKNOWN_TABLE"):
        failing.close()


def test_every_sink_item_has_one_registered_table_that_exists(store):
    import typing

    from flows.scoring import DeferredSignals
    from sinks.bytewax_sink import SinkItem
    from sinks.clickhouse import TABLES

    # a window's rows are written as its PartBlock, deferred signals as the Signals they build
    item_types = set(typing.get_args(SinkItem)) - {WindowResult, DeferredSignals} | {PartBlock}
    assert {spec.item_type for spec in TABLES} == item_types
    assert len({spec.table for spec in TABLES}) == len(TABLES)
    names = {f"ifd.{r['name']}" for r in store.query_arrow(
        "SELECT name FROM system.tables WHERE database = 'ifd'").to_pylist()}
    assert {spec.table for spec in TABLES} <= names


def test_writer_refuses_an_item_with_no_table(store):
    with pytest.raises(TypeError, match="no ClickHouse table for dict"):
        IFDWriter(store).add({"a": 1})


def test_values_are_bound_not_formatted_into_sql(store):
    hostile = "NQZ6'; DROP TABLE ifd.pressure_parts; --"
    got = store.query_arrow("SELECT {u:String} AS u, {n:Int64} + 1 AS n", {"u": hostile, "n": 41})
    assert got.to_pylist() == [{"u": hostile, "n": 42}]
    with pytest.raises(SinkFatalError, match="plain identifiers"):
        store.insert_arrow("ifd.pressure_parts; DROP", pa.table({"a": [1]}), dedup_token="t")
    with pytest.raises(SinkFatalError, match="plain identifiers"):
        store.insert_arrow("ifd.usage", pa.table({"a": [1]}), dedup_token="t' SELECT 1")


_OPEN_IN_CHILD = """
import sys
from pathlib import Path
from models.errors import SinkFatalError
from sinks.clickhouse import ChdbStore
try:
    store = ChdbStore(Path(sys.argv[1]), lock_timeout_s=float(sys.argv[2]))
except SinkFatalError as exc:
    print("refused", exc)
else:
    print("opened", store.query_arrow("SELECT count() AS n FROM ifd.pressure_parts").column("n")[0])
    store.close()
"""


def _open_in_child(path, timeout_s: float):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-c", _OPEN_IN_CHILD, str(path), str(timeout_s)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_process_waits_for_the_directory_lock_then_opens_the_same_data(tmp_path):
    path = tmp_path / "chdb"
    store = ChdbStore(path)
    apply_schema(store)
    refused = _open_in_child(path, 0.2)  # the lock is held throughout: refused however slow the machine
    out, err = refused.communicate(timeout=120)
    assert out.startswith("refused"), err[-2000:]
    assert "in use by another process" in out and "chdb.lock" in out
    waiting = _open_in_child(path, 120)
    writer = IFDWriter(store)
    rng = random.Random(1)
    writer.add(block_of([_part(rng, "NQ C21500", 0, 0), _part(rng, "NQ P21500", 0, 1)], W_NS))
    writer.flush()
    store.close()
    out, err = waiting.communicate(timeout=120)
    assert out.split() == ["opened", "2"], err[-2000:]  # it saw what this process wrote
