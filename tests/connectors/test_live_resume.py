"""connectors.live_resume: exact replay de-duplication and stable unit identity.

The property test plays a gateway in pure Python over real CME files: random
drops, heartbeats, crashes with a restart from the last snapshot, and a
store that keeps one row per unit id (last write wins, like
ReplacingMergeTree). The stored records must equal the file's records
exactly, as a multiset of record bytes read by databento's own decoder.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import databento as db
import pytest

from connectors.live_resume import (
    NS,
    RTYPE_DEFINITION,
    LiveResume,
    LiveSequencer,
    Unit,
)

MBO = "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
TRADES = "esu4-glbx-mdp3-20240701.trades.dbn.zst"
MBP1 = "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"
DEFS = "esu4-glbx-mdp3.definition.dbn.zst"
RTYPE_OF = {MBO: 0xA0, TRADES: 0x00, MBP1: 0x01}


def timeline(paths: list[Path]) -> list[tuple[int, int, bytes]]:
    """(ts_recv, ts_event, raw) of every record, in live order (ts_recv, ts_event, file, record)."""
    rows = []
    for fi, path in enumerate(paths):
        for ri, rec in enumerate(db.DBNStore.from_file(path)):
            rows.append((rec.ts_recv, rec.ts_event, fi, ri, bytes(rec)))
    rows.sort(key=lambda r: r[:4])
    return [(r[0], r[1], r[4]) for r in rows]


def replayed(tl, starts: dict[str, int] | None, live_from: int, on: str = "ts_event") -> list[int]:
    """Timeline indices a connection gets: ``ts_event >= start`` per kind (Databento), else live.

    ``on="ts_recv"`` plays a gateway that filters the replay on ``ts_recv`` instead.
    """
    if starts is None:
        return list(range(live_from, len(tl)))
    out = []
    for i, (recv, event, raw) in enumerate(tl):
        start = starts["definition"] if raw[1] == RTYPE_DEFINITION else starts["data"]
        if (event if on == "ts_event" else recv) >= start:
            out.append(i)
    return out


def play(tl, trade_rtype: int, rng: random.Random, *, drops: int, crashes: int,
         batch_records: int = 64, overlap_ns: int = 2 * NS,
         on: str = "ts_event") -> tuple[dict[int, list[bytes]], LiveSequencer]:
    """Stream ``tl`` through sequencers under faults; return the unit store (id → records)."""
    store: dict[int, list[bytes]] = {}
    n = len(tl)
    drop_at = set(rng.sample(range(n), min(drops, n)))
    crash_at = set(rng.sample(sorted(set(range(n)) - drop_at), min(crashes, n)))
    seq = LiveSequencer(overlap_ns, trade_rtype, batch_records, prune_min=1)
    snapshot: LiveResume | None = None
    gen, live_pos, delivered_total = 1, 0, 0
    seq.begin(gen, None)
    plan = replayed(tl, None, 0)
    while True:
        interrupted = None
        for idx in plan:
            recv, event, raw = tl[idx]
            seq.accept(gen, raw, event, recv)
            live_pos = max(live_pos, idx + 1)
            delivered_total += 1
            # a gateway heartbeat only after a silence: here, where the next second starts
            if idx + 1 < n and tl[idx + 1][0] // NS != recv // NS and rng.random() < 0.2:
                seq.seal()
            for unit in seq.take_units():
                store[unit.unit_id] = unit.records
            if rng.random() < 0.05:
                snapshot = seq.snapshot()
            if delivered_total in drop_at:
                interrupted = "drop"
                break
            if delivered_total in crash_at:
                interrupted = "crash"
                break
        if interrupted is None:
            for unit in seq.take_units(flush_all=True):
                store[unit.unit_id] = unit.records
            return store, seq
        if interrupted == "crash":  # held records and post-snapshot state are gone
            seq = LiveSequencer(overlap_ns, trade_rtype, batch_records, snapshot, prune_min=1)
            gen = 0
            starts = seq.replay_starts(None)
        else:
            starts = seq.replay_starts(None)
        gen += 1
        seq.begin(gen, starts)
        plan = replayed(tl, starts, live_pos, on)


def data_multiset(tl) -> Counter:
    return Counter(raw for _r, _e, raw in tl)


@pytest.fixture(scope="module")
def mbo_day(real_dir: Path):
    return timeline([real_dir / MBO])


@pytest.fixture(scope="module")
def es_day(real_dir: Path):
    return timeline([real_dir / DEFS, real_dir / TRADES])


def stored(store: dict[int, list[bytes]]) -> Counter:
    out: Counter = Counter()
    for records in store.values():
        out.update(records)
    return out


def test_mbo_file_has_sweeps_with_equal_keys_that_stay_distinct(mbo_day):
    keys = Counter((raw[8:16], raw[4:8]) for _r, _e, raw in mbo_day if raw[1] == 0xA0)
    assert max(keys.values()) > 1  # equal (ts_event, instrument_id): prints of one sweep
    store, seq = play(mbo_day, 0xA0, random.Random(1), drops=0, crashes=0)
    assert stored(store) == data_multiset(mbo_day)
    assert seq.duplicates == 0  # a first delivery is never de-duplicated


@pytest.mark.parametrize("seed", range(12))
def test_random_drops_and_crashes_store_every_record_exactly_once_mbo(mbo_day, seed):
    rng = random.Random(seed)
    store, _ = play(mbo_day, 0xA0, rng, drops=rng.randint(1, 8), crashes=rng.randint(0, 3),
                    batch_records=rng.choice([7, 64, 100_000]),
                    overlap_ns=rng.choice([2 * NS, 600 * NS]),
                    on="ts_recv" if seed % 3 == 2 else "ts_event")
    assert stored(store) == data_multiset(mbo_day)


@pytest.mark.parametrize("seed", range(8))
def test_random_drops_and_crashes_store_every_record_exactly_once_with_definitions(es_day, seed):
    rng = random.Random(100 + seed)
    # drops concentrated early: inside the definition burst and before the first trade
    store, _ = play(es_day, 0x00, rng, drops=rng.randint(1, 4), crashes=rng.randint(0, 2),
                    batch_records=rng.choice([3, 50]), overlap_ns=rng.choice([2 * NS, 600 * NS]))
    assert stored(store) == data_multiset(es_day)


def test_drop_before_any_data_replays_everything_from_start_zero():
    seq = LiveSequencer(2 * NS, 0x00, 100)
    assert seq.replay_starts(None) == {"definition": 0, "data": 0}


def test_definitions_replay_from_zero_until_the_first_trade(es_day):
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    first_trade = next(i for i, (_r, _e, raw) in enumerate(es_day) if raw[1] == 0x00)
    for recv, event, raw in es_day[:first_trade]:
        seq.accept(1, raw, event, recv)
    starts = seq.replay_starts(None)
    assert starts["definition"] == 0 and starts["data"] > 0
    recv, event, raw = es_day[first_trade]
    seq.accept(1, raw, event, recv)
    starts = seq.replay_starts(None)
    assert starts["definition"] == starts["data"] == min(event, recv) - 2 * NS


def _trade(ts_recv: int, price: int, ts_event: int | None = None) -> bytes:
    """A 48-byte trades record with the fields that matter here (rtype 0, ts_event, price, ts_recv)."""
    ts_event = ts_recv - 1000 if ts_event is None else ts_event
    header = bytes([12, 0x00, 1, 0]) + (7).to_bytes(4, "little") + ts_event.to_bytes(8, "little")
    body = price.to_bytes(8, "little", signed=True) + (1).to_bytes(4, "little") + b"TBN\x00"
    body += ts_recv.to_bytes(8, "little") + (0).to_bytes(4, "little") + (42).to_bytes(4, "little")
    raw = header + body
    assert len(raw) == 48
    return raw


def test_identical_prints_are_counted_by_multiplicity_in_a_replay():
    t0 = 1_700_000_000 * NS
    a, b = _trade(t0, 100), _trade(t0, 100)  # two byte-identical prints: two trades
    c = _trade(t0 + 10, 101)
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    assert seq.accept(1, a, t0 - 1000, t0)  # first connection drops after one of the pair
    seq.begin(2, seq.replay_starts(None))
    kept = [seq.accept(2, r, t0 - 1000, t0) for r in (a, b, c)]
    assert kept == [False, True, True]
    (unit,) = seq.take_units(flush_all=True)
    assert unit.records == [a, b, c]


def test_a_second_split_by_a_heartbeat_gets_a_new_split_index_not_the_same_identity():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    seq.accept(1, _trade(t0 + 1, 1), t0, t0 + 1)
    seq.seal()
    first = seq.take_units()
    seq.accept(1, _trade(t0 + 2, 2), t0, t0 + 2)
    second = seq.take_units(flush_all=True)
    assert [u.unit_id for u in first + second] == [t0 // NS * 4096, t0 // NS * 4096 + 1]


def test_an_open_second_waits_until_a_later_second_or_a_heartbeat():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    seq.accept(1, _trade(t0, 1), t0, t0)
    assert seq.take_units() == []
    seq.accept(1, _trade(t0 + NS, 2), t0 + NS, t0 + NS)
    (unit,) = seq.take_units()
    assert isinstance(unit, Unit) and unit.second == t0 // NS and len(unit.records) == 1
    assert seq.held_records == 1


def test_a_capped_take_hands_seconds_over_in_order_and_snapshots_only_what_it_gave():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    for i in range(7):  # seconds t0 .. t0+6, one trade each; the last one is still open
        seq.accept(1, _trade(t0 + i * NS, i), t0 + i * NS, t0 + i * NS)
    first = seq.take_units(max_seconds=4)
    assert [u.second for u in first] == [t0 // NS + i for i in range(4)]
    assert seq.ready and seq.held_records == 3
    assert seq.snapshot().position_ns == t0 + 3 * NS  # the held seconds replay after a restart
    second = seq.take_units(max_seconds=4)
    assert [u.second for u in second] == [t0 // NS + 4, t0 // NS + 5]  # the open second stays
    assert not seq.ready and seq.held_records == 1
    seq.accept(1, _trade(t0 + 6 * NS + 1, 7), t0 + 6 * NS, t0 + 6 * NS + 1)  # same second: joins it
    (last,) = seq.take_units(flush_all=True, max_seconds=4)
    assert last.second == t0 // NS + 6 and len(last.records) == 2 and last.split == 0
    assert seq.held_records == 0 and seq.snapshot().position_ns == t0 + 6 * NS


def test_a_busy_second_is_cut_at_fixed_counts():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 4)
    seq.begin(1, None)
    for i in range(10):
        seq.accept(1, _trade(t0 + i, i), t0, t0 + i)
    units = seq.take_units()
    assert [len(u.records) for u in units] == [4, 4] and [u.split for u in units] == [0, 1]
    units = seq.take_units(flush_all=True)
    assert [len(u.records) for u in units] == [2] and units[0].split == 2


@pytest.mark.parametrize("seed", range(20))
def test_busy_second_pieces_never_split_a_match_event_and_do_not_depend_on_arrival(seed):
    # one ts_recv second of match events (equal ts_event: a spread and its legs, a multi-level
    # fill) of 1-6 prints; pieces of at most 5 records, polled after random arrivals
    rng = random.Random(seed)
    t0, size = 1_700_000_000 * NS, 5
    records, event = [], t0
    while len(records) < 60:
        event += rng.randint(1, 3)
        records += [_trade(t0 + len(records), len(records), ts_event=event)
                    for _ in range(rng.randint(1, 6))]

    def pieces(poll_every: int) -> list[list[bytes]]:
        seq = LiveSequencer(2 * NS, 0x00, size)
        seq.begin(1, None)
        out = []
        for i, raw in enumerate(records):
            seq.accept(1, raw, int.from_bytes(raw[8:16], "little"), t0 + i)
            if i % poll_every == 0:
                out += [u.records for u in seq.take_units()]
        return out + [u.records for u in seq.take_units(flush_all=True)]

    cut = pieces(1)
    assert [r for piece in cut for r in piece] == records and max(map(len, cut)) <= size
    run_length = Counter(r[8:16] for r in records)  # ts_event → prints (events are contiguous)
    for before, after in zip(cut, cut[1:], strict=False):  # a run of <= 5 is never cut
        event = before[-1][8:16]
        assert event != after[0][8:16] or run_length[event] > size
    assert pieces(rng.randint(2, 9)) == cut == pieces(10**6)


def test_a_match_event_longer_than_a_piece_is_cut_at_the_fixed_count():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 4)
    seq.begin(1, None)
    for i in range(9):
        seq.accept(1, _trade(t0 + i, i, ts_event=t0), t0, t0 + i)
    assert [len(u.records) for u in seq.take_units(flush_all=True)] == [4, 4, 1]


def test_snapshot_covers_emitted_records_only():
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    seq.accept(1, _trade(t0, 1), t0 - 5, t0)
    seq.accept(1, _trade(t0 + NS, 2), t0 + NS - 5, t0 + NS)  # open second: held
    seq.take_units()
    snap = seq.snapshot()
    assert snap.position_ns == t0 - 5 and sum(snap.seen.values()) == 1 and snap.trades_seen
    restored = LiveSequencer(2 * NS, 0x00, 100, snap)
    restored.begin(1, restored.replay_starts(None))
    assert not restored.accept(1, _trade(t0, 1), t0 - 5, t0)  # emitted before: replayed copy
    assert restored.accept(1, _trade(t0 + NS, 2), t0 + NS - 5, t0 + NS)  # was only held: new


def test_gateway_clock_never_moves_the_position():
    """A replay start comes from data records only (mappings stamped 'now' are not accepted)."""
    t0 = 1_700_000_000 * NS
    seq = LiveSequencer(2 * NS, 0x00, 100)
    seq.begin(1, None)
    seq.accept(1, _trade(t0, 1), t0 - 5, t0)
    starts = seq.replay_starts(None)
    assert starts["data"] == t0 - 5 - 2 * NS
