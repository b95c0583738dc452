"""Backfill of a live gap older than the replay horizon from Databento Historical (issue 15).

The real ``databento.Historical`` client talks HTTPS to :class:`tests.historical_stub.HistoricalStub`;
expected windows come from the raw trades file (``tests.reference``), never from the flow.
"""

from __future__ import annotations

import logging
import time

import pytest

from connectors.live_backfill import HistoricalBackfill, decode_timeline, plan_backfill
from samples.generator import generate_session
from sinks.clickhouse import ChdbStore
from tests.historical_stub import HistoricalStub
from tests.live_gateway import Faults, LiveGateway, _decode_file
from tests.liverun import KEY, run_live
from tests.reference import lee_ready_windows, trades_frame

NS = 1_000_000_000


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    files = generate_session(tmp_path_factory.mktemp("backfill-src"), n_trades=3000, seed=3)
    return files.definition_path, files.tbbo_path


@pytest.fixture
def stub_factory(day, tmp_path, monkeypatch):
    started: list[HistoricalStub] = []

    def make(**kwargs: object) -> HistoricalStub:
        stub = HistoricalStub({"definition": day[0], "tbbo": day[1]}, KEY, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stub.ca_bundle(tmp_path / "ca.pem")))
        started.append(stub.__enter__())
        return stub

    yield make
    for stub in started:
        stub.__exit__()


def _backfills(tmp_path) -> list[dict]:
    store = ChdbStore(tmp_path / "chdb")
    try:
        return store.query_arrow("SELECT * FROM ifd.backfills FINAL ORDER BY requested_at").to_pylist()
    finally:
        store.close()


def test_plan_ends_inside_the_horizon_and_starts_definitions_at_midnight():
    now = 1_800_000_000 * NS
    plan = plan_backfill(dataset="GLBX.MDP3", symbols=["NQ.OPT"], stype_in="parent", schema="tbbo",
                         data_start_ns=now - 30 * 3600 * NS, definitions_start_ns=0, now_ns=now,
                         horizon_ns=24 * 3600 * NS, margin_ns=3600 * NS)
    assert plan.end_ns == now - 23 * 3600 * NS
    midnight = (now - 30 * 3600 * NS) // (86_400 * NS) * 86_400 * NS
    assert [r["start"] for r in plan.requests()] == [midnight, now - 30 * 3600 * NS]
    assert [r["schema"] for r in plan.requests()] == ["definition", "tbbo"]
    with pytest.raises(ValueError, match="margin"):
        plan_backfill(dataset="GLBX.MDP3", symbols=["NQ.OPT"], stype_in="parent", schema="tbbo",
                      data_start_ns=0, definitions_start_ns=0, now_ns=now, horizon_ns=3600 * NS,
                      margin_ns=3600 * NS)


def test_timeline_merges_schemas_in_ts_recv_order_upgraded_to_v3(day):
    payloads = []
    for path in day:
        raw = path.read_bytes()
        payloads.append(raw)
    records = decode_timeline(payloads)
    expected = []
    for path in day:
        _, recs = _decode_file(path)  # v3 bytes, independent decode
        expected += [(getattr(r, "ts_recv", r.ts_event), r.ts_event, bytes(r)) for r in recs]
    expected.sort(key=lambda e: (e[0], e[1]))
    assert [r.raw for r in records] == [e[2] for e in expected]
    assert all(r.raw[0] * 4 == len(r.raw) for r in records)  # length byte = whole v3 record


def test_the_real_historical_client_fetches_the_priced_range(stub_factory, day):
    stub = stub_factory(cost_per_mb=1.0)
    _, trades = _decode_file(day[1])
    start, end = trades[100].ts_event, trades[2000].ts_event
    plan = plan_backfill(dataset="GLBX.MDP3", symbols=["NQ.OPT"], stype_in="parent", schema="tbbo",
                         data_start_ns=start, definitions_start_ns=start,
                         now_ns=end + 86_400 * NS - 60 * NS, horizon_ns=86_400 * NS,
                         margin_ns=60 * NS)
    assert plan.end_ns == end
    outcome = HistoricalBackfill(KEY, budget_usd=100.0, gateway=stub.url).run(plan)
    assert outcome.outcome == "done", outcome.error
    want = {bytes(r) for r in stub.selected("tbbo", start, end)}
    got_trades = [r.raw for r in outcome.records if r.raw[1] == trades[0].rtype]
    assert len(got_trades) == sum(start <= t.ts_event < end for t in trades)
    assert set(got_trades) == want
    assert outcome.cost_usd == pytest.approx(stub.cost("definition", start, end)
                                             + stub.cost("tbbo", start, end))


def test_over_budget_is_refused_without_downloading(stub_factory, day):
    stub = stub_factory(cost_per_mb=1000.0)
    _, trades = _decode_file(day[1])
    start = trades[0].ts_event
    plan = plan_backfill(dataset="GLBX.MDP3", symbols=["NQ.OPT"], stype_in="parent", schema="tbbo",
                         data_start_ns=start, definitions_start_ns=start,
                         now_ns=trades[-1].ts_event + 86_400 * NS, horizon_ns=86_400 * NS,
                         margin_ns=60 * NS)
    outcome = HistoricalBackfill(KEY, budget_usd=1.0, gateway=stub.url).run(plan)
    assert outcome.outcome == "refused"
    assert "IFD_LIVE_BACKFILL_BUDGET_USD" in outcome.error
    assert not [p for p, _ in stub.requests if p.endswith("get_range")]


def _horizon_mid_session(trades: list, index: int) -> float:
    """A replay horizon that puts 'now - horizon' at trade ``index`` of the generated (past) day."""
    return time.time() - trades[index].ts_event / NS


def test_gap_beyond_the_horizon_is_backfilled_and_counted_exactly_once(tmp_path, day,
                                                                      stub_factory, caplog):
    stub = stub_factory(cost_per_mb=1.0)
    _, trades = _decode_file(day[1])
    # the drop comes after ~1/3 of the records; the horizon reaches back only to 2/3
    faults = Faults(drop_after=[1000], drop_reset=True, gap_records=40)
    with caplog.at_level(logging.DEBUG), LiveGateway([day[0], day[1]], api_key=KEY,
                                                     faults=faults) as gw:
        out = run_live(tmp_path, gw.port, replay_horizon_s=_horizon_mid_session(trades, 2000),
                       backfill_budget_usd=50.0, backfill_margin_s=60.0,
                       historical_gateway=stub.url)
    assert out["fatal"] == []
    assert out["windows"] == lee_ready_windows(trades_frame(day[1]))
    rows = _backfills(tmp_path)
    assert [r["outcome"] for r in rows] == ["done"]
    row = rows[0]
    fetched = {f["schema"]: (int(f["start"]), int(f["end"]))
               for p, f in stub.requests if p.endswith("timeseries.get_range")}
    assert set(fetched) == {"definition", "tbbo"}
    lo, hi = fetched["tbbo"]
    # the range starts before the drop (the resume position) and ends inside the horizon
    assert lo < trades[1000].ts_event < trades[2000].ts_event < hi
    assert row["records"] == sum(len(stub.selected(s, *fetched[s])) for s in fetched)
    assert row["cost_usd"] == pytest.approx(sum(stub.cost(s, *fetched[s]) for s in fetched))
    assert row["duplicates"] > 0  # the overlap before the drop was fetched again and dropped
    assert KEY not in caplog.text and KEY[-5:] not in caplog.text


def test_backfill_off_stops_with_the_setting_named(tmp_path, day, stub_factory):
    stub = stub_factory()
    _, trades = _decode_file(day[1])
    with LiveGateway([day[0], day[1]], api_key=KEY,
                     faults=Faults(drop_after=[1000], drop_reset=True)) as gw:
        out = run_live(tmp_path, gw.port, replay_horizon_s=_horizon_mid_session(trades, 2000),
                       historical_gateway=stub.url)
    assert len(out["fatal"]) == 1
    assert "IFD_LIVE_BACKFILL_BUDGET_USD" in str(out["fatal"][0])
    assert stub.requests == []  # off: Historical is never asked


def test_backfill_over_budget_stops_and_the_refusal_is_stored(tmp_path, day, stub_factory, caplog):
    stub = stub_factory(cost_per_mb=1000.0)
    _, trades = _decode_file(day[1])
    with caplog.at_level(logging.DEBUG), LiveGateway(
            [day[0], day[1]], api_key=KEY, faults=Faults(drop_after=[1000], drop_reset=True)) as gw:
        out = run_live(tmp_path, gw.port, replay_horizon_s=_horizon_mid_session(trades, 2000),
                       backfill_budget_usd=0.5, backfill_margin_s=60.0, historical_gateway=stub.url)
    assert len(out["fatal"]) == 1
    assert "IFD_LIVE_BACKFILL_BUDGET_USD" in str(out["fatal"][0])
    rows = _backfills(tmp_path)
    assert [(r["outcome"], r["records"]) for r in rows] == [("refused", 0)]
    assert rows[0]["cost_usd"] > 0.5 and rows[0]["budget_usd"] == 0.5
    assert not [p for p, _ in stub.requests if p.endswith("get_range")]
    assert KEY not in caplog.text and KEY not in rows[0]["error"]


def test_failed_backfill_is_retried_then_gives_up_with_a_clear_error(tmp_path, day, stub_factory):
    stub = stub_factory(fail_range=True)
    _, trades = _decode_file(day[1])
    with LiveGateway([day[0], day[1]], api_key=KEY,
                     faults=Faults(drop_after=[1000], drop_reset=True)) as gw:
        out = run_live(tmp_path, gw.port, replay_horizon_s=_horizon_mid_session(trades, 2000),
                       backfill_budget_usd=50.0, backfill_margin_s=60.0,
                       historical_gateway=stub.url, reconnect_max_attempts=3)
    assert len(out["fatal"]) == 1
    rows = _backfills(tmp_path)
    assert rows and {r["outcome"] for r in rows} == {"failed"}
    assert all("500" in r["error"] or "Internal" in r["error"] for r in rows)
    assert KEY not in " ".join(r["error"] for r in rows)



def test_fallback_catches_up_from_historical_then_returns_to_live(tmp_path, day, stub_factory):
    _, trades = _decode_file(day[1])
    # Historical has the day up to trade 2000; the gateway drops after 1000 records and is down
    # for 3 s: two reconnect attempts (≤ 0.1 s apart) fail, then the feed falls back
    available = trades[2000].ts_event
    stub = stub_factory(cost_per_mb=1.0, available_end_ns=available)
    faults = Faults(drop_after=[1000], drop_reset=True, down_after_drop_s=3.0)
    with LiveGateway([day[0], day[1]], api_key=KEY, faults=faults) as gw:
        out = run_live(tmp_path, gw.port, reconnect_max_attempts=2, reconnect_initial_s=0.01,
                       reconnect_max_s=0.1, fallback_enabled=True, fallback_poll_s=0.05,
                       backfill_budget_usd=50.0, historical_gateway=stub.url)
        down, subscriptions = gw.down_periods, list(gw.subscriptions)
    assert out["fatal"] == []
    assert out["windows"] == lee_ready_windows(trades_frame(day[1]))
    assert down == 1
    rows = _backfills(tmp_path)
    fetched = [r for r in rows if r["kind"] == "fallback" and r["records"]]
    assert fetched and all(r["outcome"] == "done" for r in rows)
    # the catch-up delivered the trades up to Historical's end
    trade_req = [f for p, f in stub.requests if p.endswith("timeseries.get_range")
                 and f["schema"] == "tbbo"]
    assert max(int(f["end"]) for f in trade_req) <= available
    assert int(trade_req[0]["start"]) < trades[1000].ts_event
    # back to live: the connection after the refusals replays from where the catch-up ended
    last_start = max(int(s["start"]) for s in subscriptions
                     if s["schema"] == "tbbo" and s["start"] is not None)
    assert last_start >= max(int(f["end"]) for f in trade_req) - 2 * NS - 1_000_000
    assert "historical" in {u["mode"] for u in out["usage"]}


def test_a_fatal_give_up_still_emits_every_trade_received(tmp_path, day):
    # the gateway goes down for good after 1000 records: two reconnects fail, the run stops
    # with a clear error, and every trade received before the drop is stored (none held back)
    faults = Faults(drop_after=[1000], drop_reset=False, down_after_drop_s=600.0)
    with LiveGateway([day[0], day[1]], api_key=KEY, faults=faults) as gw:
        out = run_live(tmp_path, gw.port, reconnect_max_attempts=2)
        sent = [r for r in gw.sent_by_connection[0] if r[1] == 1]  # rtype 1: MBP-1 (tbbo)
    assert len(out["fatal"]) == 1 and "giving up after 2 reconnect attempts" in str(out["fatal"][0])
    assert 0 < len(sent) < 3000
    assert sum(w["trades"] for w in out["windows"].values()) == len(sent)
