"""Per-minute latency rows of a live run (``ifd.latency``, issue 15) against the raw input."""

from __future__ import annotations

import pytest

from samples.generator import generate_session
from sinks.clickhouse import ChdbStore
from tests.live_gateway import Faults, LiveGateway, _decode_file
from tests.liverun import KEY, run_live
from tests.reference import lee_ready_windows, trades_frame


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    files = generate_session(tmp_path_factory.mktemp("latency-src"), n_trades=1500, seed=5)
    return files.definition_path, files.tbbo_path


def test_every_trade_and_closed_window_is_a_latency_sample(tmp_path, day):
    with LiveGateway([day[0], day[1]], api_key=KEY, faults=Faults(drop_after=[700])) as gw:
        out = run_live(tmp_path, gw.port)
    assert out["fatal"] == []
    expected = lee_ready_windows(trades_frame(day[1]))
    assert out["windows"] == expected
    store = ChdbStore(tmp_path / "chdb")
    try:
        rows = store.query_arrow("SELECT * FROM ifd.latency FINAL ORDER BY minute, stage").to_pylist()
    finally:
        store.close()
    by_stage: dict[str, int] = {}
    for row in rows:
        by_stage[row["stage"]] = by_stage.get(row["stage"], 0) + row["samples"]
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
    _, records = _decode_file(day[1])
    # every trade once (the replayed copies after the drop are dropped before processing)
    assert by_stage["record"] == len(records)
    # one sample per closed window (one shard here): the distinct windows holding trades
    assert by_stage["window_written"] == len({start for _instrument, start in expected})
    assert set(by_stage) == {"record", "window_written"}  # scoring is off in run_live


class _Client:
    """Just enough of ``databento.Live`` to hand the feed records from the test."""

    def __init__(self, **_kwargs: object) -> None:
        self.callback = None

    def subscribe(self, **_kwargs: object) -> None:
        return None

    def add_callback(self, callback, _on_error=None) -> None:  # noqa: ANN001
        self.callback = callback

    def start(self) -> None:
        return None

    def is_connected(self) -> bool:
        return True

    def stop(self) -> None:
        return None


@pytest.mark.parametrize("grace", [0.2, 0.0])
def test_a_live_second_is_emitted_once_the_clock_passes_its_end(day, grace):
    from connectors.live import LiveFeed
    from tests.liverun import live_settings

    _, records = _decode_file(day[1])
    second = records[0].ts_recv // 1_000_000_000
    same = [r for r in records if r.ts_recv // 1_000_000_000 == second]
    clock = [second + 0.5]
    clients: list[_Client] = []

    def factory(**kwargs: object) -> _Client:
        clients.append(_Client(**kwargs))
        return clients[-1]

    feed = LiveFeed(live_settings(1, seal_grace_s=grace, heartbeat_interval_s=5,
                                  heartbeat_grace_s=100.0),
                    client_factory=factory, now=lambda: clock[0])
    try:
        assert feed.poll()[0] == []  # connects
        for record in same:
            clients[0].callback(record)
        assert feed.poll()[0] == []  # the second is still open
        clock[0] = second + 1 + 0.25
        batches, _ = feed.poll()
        if grace:
            assert [b.chunk.n_records for b in batches] == [len(same)]
            assert [b.seq for b in batches] == [second * 4096]
        else:  # waits for a later second's record or a heartbeat, as before
            assert batches == []
    finally:
        feed.close()


@pytest.mark.parametrize(("lateness", "arrive_at", "poll_at", "bound_binds"), [
    (10.0, 1.2, 1.25, False),  # keeps up: the extrapolated ts_recv clock, under the bound
    (10.0, 0.5, 6.0, True),    # read ahead / polled late: 1 s + grace past the second's start
    (1.0, 0.5, 6.0, True),     # short lateness: lateness / 2 past the second's start
    (0.0, 0.5, 1.25, None),    # no lateness: no clock (0)
])
def test_a_batch_clock_follows_the_connection_but_never_outruns_its_records(
        day, lateness, arrive_at, poll_at, bound_binds):
    from connectors.live import LiveFeed
    from tests.liverun import live_settings

    _, records = _decode_file(day[1])
    second = records[0].ts_recv // 1_000_000_000
    same = [r for r in records if r.ts_recv // 1_000_000_000 == second]
    newest = max(r.ts_recv for r in same)
    clock = [second + arrive_at]
    clients: list[_Client] = []

    def factory(**kwargs: object) -> _Client:
        clients.append(_Client(**kwargs))
        return clients[-1]

    feed = LiveFeed(live_settings(1, seal_grace_s=0.2, heartbeat_interval_s=5,
                                  heartbeat_grace_s=100.0),
                    client_factory=factory, now=lambda: clock[0], lateness_s=lateness)
    try:
        assert feed.poll()[0] == []  # connects
        for record in same:
            clients[0].callback(record)
        clock[0] = second + poll_at
        batches, _ = feed.poll()
        assert [b.chunk.n_records for b in batches] == [len(same)]
        if bound_binds is None:
            assert batches[0].clock_ns == 0
            return
        extrapolated = newest + round((poll_at - arrive_at) * 1e9)
        bound = second * 1_000_000_000 + round(min(1.2, lateness / 2) * 1e9)
        assert (extrapolated > bound) == bound_binds  # the case tests what it says
        assert abs(batches[0].clock_ns - min(extrapolated, bound)) <= 1_000
    finally:
        feed.close()
