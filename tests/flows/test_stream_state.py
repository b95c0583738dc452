"""The stream step's state: bytewax deep-copies it every epoch, so the copy must be independent."""

from __future__ import annotations

import copy
import dataclasses
import pickle

from flows.aggressor import TickState
from flows.instruments import add_version
from flows.pressure import WindowTracker
from flows.stream import StreamState
from tests.flows.test_pressure import FUTURE, PUT, SEC, T0, WINDOW_NS


def _state() -> StreamState:
    tracker = WindowTracker(10 * SEC)
    tracker.open_until["ESM4|P|5230#0"] = T0 + WINDOW_NS
    return StreamState(tick=TickState({101: 7 * 10**9}, {101: 1}, {101: 19_895}), tracker=tracker,
                       definitions={101: [PUT]}, watermark_ns=T0)


def test_deep_copy_of_the_stream_state_is_independent_of_later_writes_both_ways():
    live = _state()
    snap = copy.deepcopy(live)
    # the live state moves on: a new version of a known id, a new id, ticks, trackers, clock
    newer = dataclasses.replace(PUT, ts_recv=PUT.ts_recv + 60 * SEC, raw_symbol="ESM4 P5230 v2")
    assert add_version(live.definitions[101], newer)
    live.definitions[102] = [FUTURE]
    live.tick.last_price[101], live.tick.last_direction[102] = 8 * 10**9, -1
    live.tick.last_session[101] = 19_896
    live.tracker.open_until["ESM4|P|5230#0"] = T0 + 2 * WINDOW_NS
    live.watermark_ns = T0 + WINDOW_NS
    assert snap.definitions == {101: [PUT]}
    assert (snap.tick.last_price, snap.tick.last_direction, snap.tick.last_session) == (
        {101: 7 * 10**9}, {101: 1}, {101: 19_895})
    assert snap.tracker.open_until == {"ESM4|P|5230#0": T0 + WINDOW_NS}
    assert snap.tracker.lateness_ns == 10 * SEC and snap.watermark_ns == T0
    # and a restored snapshot writing never reaches the live state
    snap.definitions[101].append(FUTURE)
    snap.tick.last_price[103] = 1
    assert live.definitions[101] == [PUT, newer] and 103 not in live.tick.last_price
    # the copy is what a pickle round trip (recovery) would restore
    back = pickle.loads(pickle.dumps(_state()))
    fresh = copy.deepcopy(_state())
    assert (back.definitions, back.tick, back.watermark_ns, back.books) == (
        fresh.definitions, fresh.tick, fresh.watermark_ns, fresh.books)
    assert back.tracker.open_until == fresh.tracker.open_until
