"""The local LSG fixture (tests/live_gateway.py) driven by the real ``databento.Live`` client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import databento as db
import databento_dbn as dbn
import pytest
from databento.common.error import BentoError

from samples.generator import generate_session
from tests.live_gateway import Faults, LiveGateway

KEY = "db-test_fixture_key_XYZab"
DATASET = "GLBX.MDP3"
TRADES = "esu4-glbx-mdp3-20240701.trades.dbn.zst"
DEFS = "esu4-glbx-mdp3.definition.dbn.zst"
GATEWAY_MADE = (dbn.SystemMsg, dbn.ErrorMsg, dbn.SymbolMappingMsg)


def key(rec) -> tuple[int, int, int]:
    return (rec.ts_event, rec.instrument_id, int(getattr(rec, "sequence", 0) or 0))


def data(recs: list) -> list:
    return [r for r in recs if not isinstance(r, GATEWAY_MADE)]


def live(gw: LiveGateway, **kw) -> db.Live:
    return db.Live(key=kw.pop("key", KEY), gateway="127.0.0.1", port=gw.port, **kw)


class Received(list):
    """Records of one iteration; ``metadata`` as seen while streaming (the client drops it on close)."""

    metadata: dbn.Metadata | None = None


def iterate(client: db.Live) -> Received:
    """Iterate until the gateway closes; the records so far are kept on an exception."""
    out = Received()
    try:
        for rec in client:
            if out.metadata is None:
                out.metadata = client.metadata
            out.append(rec)
    except BentoError as exc:
        exc.records = out  # type: ignore[attr-defined]
        raise
    return out


@pytest.fixture(scope="module")
def es_files(real_dir: Path) -> list[Path]:
    return [real_dir / TRADES, real_dir / DEFS]


@pytest.fixture(scope="module")
def es_trades(real_dir: Path) -> list:
    return list(db.DBNStore.from_file(real_dir / TRADES))


@pytest.fixture(scope="module")
def nq_day(tmp_path_factory: pytest.TempPathFactory):
    return generate_session(tmp_path_factory.mktemp("nq"), n_trades=2000)


@pytest.fixture(autouse=True)
def _no_thread_leak():
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("lsg-")]
    assert not leaked


def test_happy_path_trades_raw_symbol(es_files, es_trades):
    with LiveGateway(es_files, api_key=KEY) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4", stype_in="raw_symbol")
        recs = iterate(client)
    trades = [r for r in recs if isinstance(r, dbn.TradeMsg)]
    assert len(trades) == 120 == len(data(recs))
    assert [r.ts_event for r in trades] == [r.ts_event for r in es_trades]
    assert [key(r) for r in trades] == [key(r) for r in es_trades] == gw.sent_keys
    # gateway-made records before the data: ack then the symbol mapping
    ack, mapping = recs[0], recs[1]
    assert isinstance(ack, dbn.SystemMsg) and ack.code == dbn.SystemCode.SUBSCRIPTION_ACK
    assert ack.msg == "Subscription request 0 for trades data succeeded"
    assert isinstance(mapping, dbn.SymbolMappingMsg) and mapping.stype_out_symbol == "ESU4"
    assert client.symbology_map == {118: "ESU4"}
    meta = recs.metadata
    assert meta.dataset == DATASET and meta.schema == dbn.Schema.TRADES
    assert meta.stype_in == dbn.SType.RAW_SYMBOL and meta.stype_out == dbn.SType.INSTRUMENT_ID
    assert meta.start == es_trades[0].ts_event
    assert gw.connections == gw.auth_attempts == gw.sessions == 1
    assert gw.records_sent == 120 and gw.handler_errors == [] and gw.open_connections == 0
    assert gw.subscriptions == [
        {
            "connection": 0,
            "schema": "trades",
            "stype_in": "raw_symbol",
            "symbols": ["ESU4"],
            "start": None,
            "snapshot": 0,
            "id": 0,
            "is_last": 1,
        }
    ]


def test_definition_and_trades_parent(es_files, es_trades):
    with LiveGateway(es_files, api_key=KEY) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="definition", symbols="ES.FUT", stype_in="parent")
        client.subscribe(dataset=DATASET, schema="trades", symbols="ES.FUT", stype_in="parent")
        received = iterate(client)
    recs = data(received)
    assert isinstance(recs[0], dbn.InstrumentDefMsg) and recs[0].raw_symbol == "ESU4"  # earliest ts_recv
    assert [r.ts_event for r in recs[1:]] == [r.ts_event for r in es_trades]
    assert received.metadata.schema is None and received.metadata.stype_in == dbn.SType.PARENT
    assert [s["id"] for s in gw.subscriptions] == [0, 1]


def test_generated_options_day(nq_day):
    defs = list(db.DBNStore.from_file(nq_day.definition_path))
    with LiveGateway([nq_day.definition_path, nq_day.tbbo_path], api_key=KEY) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="definition", symbols="NQ.OPT", stype_in="parent")
        client.subscribe(dataset=DATASET, schema="tbbo", symbols="NQ.OPT", stype_in="parent")
        recs = iterate(client)
    got = data(recs)
    assert sum(isinstance(r, dbn.InstrumentDefMsg) for r in got) == len(defs)
    assert sum(isinstance(r, dbn.MBP1Msg) for r in got) == 2000
    ts_recv = [r.ts_recv for r in got]
    assert ts_recv == sorted(ts_recv)
    assert len(client.symbology_map) == len({d.instrument_id for d in defs})
    assert gw.handler_errors == []


@pytest.mark.parametrize(
    "faults,key_", [(Faults(reject_auth=True), KEY), (None, "db-test_wrong_key_XYZcd")]
)
def test_auth_rejected(es_files, faults, key_):
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw, key=key_)
        with pytest.raises(BentoError, match="Authentication failed"):
            client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
    assert gw.auth_attempts == 1 and gw.sessions == 0 and gw.subscriptions == []


def test_intraday_replay_start(es_files, es_trades):
    start = es_trades[59].ts_event
    with LiveGateway(es_files, api_key=KEY) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4", start=start)
        received = iterate(client)
    trades = data(received)
    assert trades[0].ts_event >= start
    assert [key(r) for r in trades] == [key(r) for r in es_trades if r.ts_event >= start]
    assert gw.subscriptions[0]["start"] == start and received.metadata.start == start


def test_drop_then_resume_with_start(es_files, es_trades):
    with LiveGateway(es_files, api_key=KEY, faults=Faults(drop_after=[50])) as gw:
        first = live(gw)
        first.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        got1 = data(iterate(first))  # graceful close: iteration just ends
        assert len(got1) == 50
        second = live(gw)
        second.subscribe(dataset=DATASET, schema="trades", symbols="ESU4", start=got1[-1].ts_event)
        got2 = data(iterate(second))
    assert all(r.ts_event >= got1[-1].ts_event for r in got2)
    assert {key(r) for r in got1} | {key(r) for r in got2} == {key(r) for r in es_trades}
    assert gw.connections == 2 and [s["start"] for s in gw.subscriptions] == [None, got1[-1].ts_event]


def test_naive_reconnect_loses_gap(es_files, es_trades):
    with LiveGateway(es_files, api_key=KEY, faults=Faults(drop_after=[50], gap_records=10)) as gw:
        first = live(gw)
        first.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        got1 = data(iterate(first))
        second = live(gw)
        second.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        received2 = iterate(second)
        got2 = data(received2)
    all_keys = [key(r) for r in es_trades]
    missed = set(all_keys) - {key(r) for r in got1 + got2}
    assert len(got1) == 50 and len(got2) == 60
    assert missed == set(all_keys[50:60]) and gw.gap_skipped == 10
    assert received2.metadata.start == es_trades[60].ts_event  # live "now" after the gap


def test_client_auto_reconnect_after_reset(es_files, es_trades):
    gaps: list = []
    faults = Faults(drop_after=[50], drop_reset=True, gap_records=10)
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw, reconnect_policy="reconnect")
        client.add_reconnect_callback(lambda start, end: gaps.append((start.value, end.value)))
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        got = data(iterate(client))
    assert [key(r) for r in got] == [key(r) for r in es_trades[:50] + es_trades[60:]]
    assert gaps == [(es_trades[49].ts_event, es_trades[60].ts_event)]
    assert gw.connections == 2 and [s["start"] for s in gw.subscriptions] == [None, None]


def test_error_msg_then_close(es_files, es_trades):
    faults = Faults(error_after=(30, int(dbn.ErrorCode.INTERNAL_ERROR), "Internal error: boom"))
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        with pytest.raises(BentoError, match="boom") as info:
            iterate(client)
    recs = info.value.records
    assert len(data(recs)) == 30
    err = recs[-1]
    assert isinstance(err, dbn.ErrorMsg) and err.err == "Internal error: boom"
    assert err.code == dbn.ErrorCode.INTERNAL_ERROR and err.ts_event == es_trades[29].ts_event


def test_system_msgs_in_stream(es_files):
    faults = Faults(
        system_after=[
            (0, int(dbn.SystemCode.SLOW_READER_WARNING), "slow 0"),
            (10, int(dbn.SystemCode.SLOW_READER_WARNING), "slow 10"),
        ]
    )
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        recs = iterate(client)
    warnings = [
        (i, r)
        for i, r in enumerate(recs)
        if isinstance(r, dbn.SystemMsg) and r.code == dbn.SystemCode.SLOW_READER_WARNING
    ]
    assert [r.msg for _, r in warnings] == ["slow 0", "slow 10"]
    assert len(data(recs[: warnings[0][0]])) == 0 and len(data(recs[: warnings[1][0]])) == 10
    assert len(data(recs)) == 120 and gw.records_sent == 120


def test_stall_keeps_socket_open(es_files):
    got: list = []
    with LiveGateway(es_files, api_key=KEY, faults=Faults(stall_after=20, delay_s=0.001)) as gw:
        client = live(gw, heartbeat_interval_s=5)
        client.add_callback(got.append)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        client.start()
        deadline = time.monotonic() + 5
        while len(data(got)) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        n = len(got)
        time.sleep(0.5)
        assert len(got) == n and len(data(got)) == 20
        assert client.is_connected() and gw.open_connections == 1
        assert gw.heartbeats_sent == 0
        client.terminate()
    assert gw.open_connections == 0 and gw.handler_errors == []


def test_heartbeats_after_end(es_files):
    faults = Faults(heartbeat_interval_s=0.1, end_linger_s=0.45)
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        recs = iterate(client)
    last_trade = max(i for i, r in enumerate(recs) if isinstance(r, dbn.TradeMsg))
    beats = [r for r in recs[last_trade + 1 :] if isinstance(r, dbn.SystemMsg) and r.is_heartbeat()]
    assert len(beats) >= 2 and len(beats) == gw.heartbeats_sent == len(recs) - last_trade - 1
    assert all(b.ts_event == recs[last_trade].ts_event for b in beats)


def test_zstd_and_ts_out(es_files, es_trades):
    with LiveGateway(es_files, api_key=KEY) as gw:
        client = live(gw, compression=dbn.Compression.ZSTD, ts_out=True)
        client.subscribe(dataset=DATASET, schema="trades", symbols="118", stype_in="instrument_id")
        received = iterate(client)
    trades = data(received)
    assert [key(r) for r in trades] == [key(r) for r in es_trades]
    assert received.metadata.ts_out and all(r.ts_out == r.ts_event for r in trades)


# ------------------------------------------------------------------ issue 8: faults for exactly-once
NQ_SCHEMAS = ["definition", "tbbo"]


def wait_until(predicate, what: str, timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` (a failure bound, not a synchronisation delay)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def raw(recs: list) -> list[bytes]:
    return [bytes(r) for r in data(recs)]


def subscribe_nq(client: db.Live, schemas=NQ_SCHEMAS, start=None) -> None:
    for schema in schemas:
        client.subscribe(dataset=DATASET, schema=schema, symbols="NQ.OPT", stype_in="parent", start=start)


@pytest.fixture(scope="module")
def nq_sweeps(tmp_path_factory: pytest.TempPathFactory):
    return generate_session(tmp_path_factory.mktemp("nq-sweeps"), n_trades=2000, sweep_share=0.3)


@pytest.fixture(scope="module")
def nq_records(nq_day) -> tuple[list, list]:
    """(definitions, tbbo) of ``nq_day`` decoded by databento (the independent view)."""
    return (
        list(db.DBNStore.from_file(nq_day.definition_path)),
        list(db.DBNStore.from_file(nq_day.tbbo_path)),
    )


def test_sweep_session_served_intact_every_print(nq_sweeps):
    trades = list(db.DBNStore.from_file(nq_sweeps.tbbo_path))
    with LiveGateway([nq_sweeps.definition_path, nq_sweeps.tbbo_path], api_key=KEY) as gw:
        client = live(gw)
        subscribe_nq(client, ["tbbo"])
        got = raw(iterate(client))
    assert got == [bytes(r) for r in trades] == gw.sent_by_connection[0] == gw.sent_records
    by_key: dict[tuple[int, int, int], int] = {}
    for r in trades:
        by_key[key(r)] = by_key.get(key(r), 0) + 1
    assert len(trades) == 2000 and max(by_key.values()) >= 3
    assert sum(c > 1 for c in by_key.values()) > 100  # sweeps: several prints per key
    content: dict[bytes, int] = {}
    for b in got:
        content[b] = content.get(b, 0) + 1
    assert 0 < sum(c == 2 for c in content.values()) < 30  # byte-identical prints, both delivered
    assert gw.sent_keys == [key(r) for r in trades]


@pytest.mark.parametrize("where", ["zero", "mid_definitions", "before_first_trade"])
def test_drop_during_definitions_then_start_replays_the_rest(nq_day, nq_records, where):
    defs, tbbo = nq_records
    files = [nq_day.definition_path, nq_day.tbbo_path]
    with LiveGateway(files, api_key=KEY) as probe:
        first_trade = probe.first_position("tbbo", NQ_SCHEMAS)
    assert first_trade == len(defs)  # definitions' ts_recv = session start, before any trade
    n = {"zero": 0, "mid_definitions": len(defs) // 2, "before_first_trade": first_trade}[where]
    with LiveGateway(files, api_key=KEY, faults=Faults(drop_after=[n])) as gw:
        first = live(gw)
        subscribe_nq(first)
        recs1 = data(iterate(first))
        got1 = raw(recs1)
        start = recs1[-1].ts_event if recs1 else 0  # resume at the last ts_event; none: full replay
        second = live(gw)
        subscribe_nq(second, start=start)
        received2 = iterate(second)
        got2 = raw(received2)
    assert got1 == [bytes(r) for r in defs[:n]] == gw.sent_by_connection[0]
    # every definition and trade has ts_event >= start: the replay is the whole day again
    assert sorted(got2) == sorted(bytes(r) for r in defs + tbbo)
    assert got2 == gw.sent_by_connection[1] and len(got2) == len(defs) + 2000
    assert received2.metadata.start == (start or defs[0].ts_event)
    assert [s["start"] for s in gw.subscriptions] == [None, None, start, start]
    assert gw.handler_errors == []


@pytest.mark.parametrize("inside", ["second", "sweep"])
def test_drop_inside_a_ts_recv_second_then_start_resumes(nq_day, nq_sweeps, inside):
    files = nq_day if inside == "second" else nq_sweeps
    tbbo = list(db.DBNStore.from_file(files.tbbo_path))
    with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY) as probe:
        positions = probe.positions_inside_second("tbbo")
    # independent: the positions are exactly the adjacent pairs of one ts_recv second
    sec = [r.ts_recv // 1_000_000_000 for r in tbbo]
    assert positions == [n for n in range(1, len(tbbo)) if sec[n - 1] == sec[n]]
    if inside == "second":
        n = positions[len(positions) // 2]
    else:  # between two prints of one sweep: equal ts_event, ts_recv, instrument, sequence
        n = next(n for n in positions if key(tbbo[n - 1]) == key(tbbo[n]))
    faults = Faults(drop_after=[n])
    with LiveGateway([files.definition_path, files.tbbo_path], api_key=KEY, faults=faults) as gw:
        first = live(gw)
        subscribe_nq(first, ["tbbo"])
        recs1 = data(iterate(first))
        start = recs1[-1].ts_event
        second = live(gw)
        subscribe_nq(second, ["tbbo"], start=start)
        recs2 = data(iterate(second))
    assert raw(recs1) == [bytes(r) for r in tbbo[:n]] == gw.sent_by_connection[0]
    assert recs1[-1].ts_recv // 1_000_000_000 == tbbo[n].ts_recv // 1_000_000_000
    assert raw(recs2) == [bytes(r) for r in tbbo if r.ts_event >= start] == gw.sent_by_connection[1]
    overlap = sum(r.ts_event >= start for r in recs1)  # re-sent by the replay: the client de-dups
    assert overlap >= 1 and len(recs1) + len(recs2) == len(tbbo) + overlap


def test_stalls_consumed_one_per_connection(es_files, es_trades):
    faults = Faults(stalls=[20, None, 5])
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:

        def stalled_session(index: int, n: int, start=None) -> list:
            got: list = []
            client = live(gw)
            client.add_callback(got.append)
            client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4", start=start)
            client.start()
            wait_until(lambda: index in gw.stalled, f"stall of connection {index}")
            wait_until(lambda: len(data(got)) == n, f"{n} records before the stall")
            assert client.is_connected() and gw.heartbeats_sent == 0
            client.terminate()
            wait_until(lambda: gw.open_connections == 0, "the gateway to see the client leave")
            return data(got)

        got0 = stalled_session(0, 20)
        third = live(gw)  # no stall: the live rest of the day, then the graceful close
        third.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        got1 = data(iterate(third))
        got2 = stalled_session(2, 5, start=es_trades[0].ts_event)
    assert [key(r) for r in got0] == [key(r) for r in es_trades[:20]]
    assert [key(r) for r in got1] == [key(r) for r in es_trades[20:]]
    assert [key(r) for r in got2] == [key(r) for r in es_trades[:5]]
    assert gw.stalled == [0, 2] and [len(gw.sent_by_connection[i]) for i in range(3)] == [20, 100, 5]
    assert gw.handler_errors == []


def test_stall_after_and_stalls_earlier_wins(es_files):
    with LiveGateway(es_files, api_key=KEY, faults=Faults(stall_after=30, stalls=[12])) as gw:
        got: list = []
        client = live(gw)
        client.add_callback(got.append)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        client.start()
        wait_until(lambda: gw.stalled == [0], "the stall")
        wait_until(lambda: len(data(got)) == 12, "12 records")
        client.terminate()
    assert gw.records_sent == 12


def test_heartbeats_in_stall(es_files, es_trades):
    got: list = []
    faults = Faults(stalls=[10], heartbeats_in_stall=True, heartbeat_interval_s=0.02)
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw)
        client.add_callback(got.append)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        client.start()

        def beats() -> list:
            return [r for r in list(got) if isinstance(r, dbn.SystemMsg) and r.is_heartbeat()]

        wait_until(lambda: len(beats()) >= 3, "3 heartbeats in the stall")
        assert client.is_connected() and gw.stalled == [0]
        client.terminate()
    recs = list(got)
    last = max(i for i, r in enumerate(recs) if isinstance(r, dbn.TradeMsg))
    assert [key(r) for r in data(recs)] == [key(r) for r in es_trades[:10]]
    assert all(isinstance(r, dbn.SystemMsg) and r.is_heartbeat() for r in recs[last + 1 :])
    assert all(b.ts_event == es_trades[9].ts_event for b in beats())  # simulated clock
    assert gw.records_sent == 10 and gw.heartbeats_sent >= len(beats())


def test_wall_clock_gateway_records(es_files, es_trades):
    faults = Faults(gateway_clock="wall", heartbeat_interval_s=0.02, end_linger_s=0.1)
    before = time.time_ns()
    with LiveGateway(es_files, api_key=KEY, faults=faults) as gw:
        client = live(gw, ts_out=True)
        client.subscribe(dataset=DATASET, schema="trades", symbols="ESU4")
        recs = iterate(client)
    after = time.time_ns()
    made = [r for r in recs if isinstance(r, GATEWAY_MADE)]
    ack, mapping = made[0], made[1]
    assert ack.code == dbn.SystemCode.SUBSCRIPTION_ACK and isinstance(mapping, dbn.SymbolMappingMsg)
    beats = [r for r in made if isinstance(r, dbn.SystemMsg) and r.is_heartbeat()]
    assert len(beats) >= 1 and len(made) == 2 + len(beats)
    for r in made:
        assert before <= r.ts_event <= after and before <= r.ts_out <= after
    assert before <= mapping.start_ts <= after
    assert [r.ts_event for r in made] == sorted(r.ts_event for r in made)
    # data records unchanged (the simulated day), only their ts_out is the send time
    trades = data(recs)
    without_ts_out = [bytes([b[0] - 2]) + b[1:-8] for b in (bytes(r) for r in trades)]
    assert without_ts_out == gw.sent_records and len(trades) == 120
    assert [key(r) for r in trades] == [key(r) for r in es_trades]
    assert all(before <= r.ts_out <= after for r in trades)
    assert recs.metadata.start == es_trades[0].ts_event


def test_replay_filters_on_ts_event_in_timeline_order_then_live_to_the_end(nq_day, nq_records):
    defs, tbbo = nq_records
    start = tbbo[700].ts_event
    with LiveGateway([nq_day.definition_path, nq_day.tbbo_path], api_key=KEY) as gw:
        client = live(gw)
        subscribe_nq(client, start=start)
        got = raw(iterate(client))
    day = sorted(defs + tbbo, key=lambda r: (r.ts_recv, r.ts_event))  # stable: file order
    assert got == [bytes(r) for r in day if r.ts_event >= start]
    assert got[-1] == bytes(tbbo[-1]) and gw.live_position == len(day)


def test_helpers_and_validation(es_files):
    with LiveGateway(es_files, api_key=KEY) as gw:
        assert gw.first_position("definition") == 0  # the ESU4 definition precedes its trades
        assert gw.first_position("trades", ["trades"]) == 0
        assert gw.timeline_records("trades") == gw.timeline_records(["trades"])
        assert len(gw.timeline_records()) == 121
        with pytest.raises(ValueError, match="mbo"):
            gw.first_position("mbo")
    with pytest.raises(ValueError, match="gateway_clock"):
        Faults(gateway_clock="utc")
