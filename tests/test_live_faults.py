"""Randomised fault schedules on a sweep-heavy live day: ClickHouse totals equal the file's, exactly.

Each seed draws drops (before any data, inside the initial definitions, right before the first
trade, between two records of one ``ts_recv`` second, anywhere), TCP resets or graceful closes,
a gap a naive reconnect would lose, a stall inside a second (with or without heartbeats), and a
gateway that stamps its own records with the wall clock. The real dataflow runs against the
local gateway into embedded chdb; the expected windows come from polars over databento's decoder.
"""

from __future__ import annotations

import random

import pytest

from samples.generator import generate_session
from tests.live_gateway import Faults, LiveGateway
from tests.liverun import KEY, run_live
from tests.reference import lee_ready_windows, trades_frame

SCHEMAS = ["definition", "tbbo"]


@pytest.fixture(scope="module")
def sweep_day(tmp_path_factory):
    files = generate_session(tmp_path_factory.mktemp("sweeps"), n_trades=1500, seed=17,
                             sweep_share=0.3)
    return files.definition_path, files.tbbo_path


@pytest.fixture(scope="module")
def expected(sweep_day):
    return lee_ready_windows(trades_frame(sweep_day[1]))


def schedule(seed: int, gw: LiveGateway) -> tuple[Faults, float, list[str]]:
    """A seeded fault schedule, the replay overlap (s) and a description (for the failure message).

    A stall is a *dead* one (no data, no heartbeats: the feed must notice and replay) or a
    *pause* (heartbeats, then the stream goes on: the second it cut is re-opened and stored
    as a second piece with its own identity).

    The generated day is sparse (one trade every ~30 s), so long overlaps make every replay
    re-send many records that were already emitted: exactly what de-duplication must drop.
    """
    rng = random.Random(seed)
    first_trade = gw.first_position("tbbo", SCHEMAS)
    inside = [n for n in gw.positions_inside_second(SCHEMAS) if n > first_trade]
    total = len(gw.timeline_keys())
    kinds = ["before any data", "in the definitions", "before the first trade",
             "inside a second", "anywhere"]
    drops, said = [], []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(kinds)
        at = {
            "before any data": 0,
            "in the definitions": rng.randint(1, first_trade - 1),
            "before the first trade": first_trade,
            "inside a second": rng.choice(inside),
            "anywhere": rng.randint(1, total - 1),
        }[kind]
        drops.append(at)
        said.append(f"drop {kind} ({at})")
    stalls: list[int | None] = []
    stall_kind = rng.choice(["none", "none", "dead", "pause"])
    if stall_kind != "none":  # on the first connection, whose positions are in live order
        stalls = [rng.choice(inside)]
        drops = [None, *drops]
        said.append(f"{stall_kind} stall inside a second at {stalls[0]} on the first connection")
    faults = Faults(
        drop_after=drops,
        drop_reset=rng.random() < 0.5,
        gap_records=rng.choice([0, 25, 300]),
        stalls=stalls,
        heartbeats_in_stall=stall_kind == "pause",
        stall_heartbeats=2 if stall_kind == "pause" else 0,  # then the stream goes on
        heartbeat_interval_s=0.3 if stall_kind == "pause" else None,
        gateway_clock=rng.choice(["sim", "wall"]),
    )
    overlap_s = rng.choice([2.0, 120.0, 3600.0])
    said.append(f"reset={faults.drop_reset} gap={faults.gap_records} clock={faults.gateway_clock} "
                f"overlap={overlap_s} s")
    return faults, overlap_s, said


@pytest.mark.parametrize("seed", range(20))
def test_fault_schedule_loses_and_doubles_no_trade(tmp_path, sweep_day, expected, seed):
    with LiveGateway(list(sweep_day), api_key=KEY) as probe:
        faults, overlap_s, said = schedule(seed, probe)
    with LiveGateway(list(sweep_day), api_key=KEY, faults=faults) as gw:
        out = run_live(tmp_path, gw.port, replay_overlap_s=overlap_s)
        assert gw.handler_errors == []
        sessions = gw.sessions
    got, want = out["windows"], expected
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    assert not out["fatal"], out["fatal"]
    assert got == want, (seed, said, sessions, list(missing.items())[:5])
    drops = [d for d in faults.drop_after if d is not None]
    assert sessions >= len(drops) + 1  # every drop forced a reconnect
