"""The local LSG fixture (tests/live_gateway.py) driven by the real ``databento.Live`` client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import databento as db
import databento_dbn as dbn
import pytest
from databento.common.error import BentoError

from connectors.sample import generate_session
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
