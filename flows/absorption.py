"""Absorption: aggressive volume soaked up at one price level that holds.

An *absorption run* starts at the first fill at a resting price level (instrument, resting side,
price) and collects every later fill there until nothing trades there for
:attr:`AbsorptionRules.gap_ns`; a level traded out and refilled at once (the next fill comes)
stays one run. The run ``broke`` when its last fill traded the level out (the price moved
through), else it ``held``. A finished run is an **absorption event** when it
absorbed at least :attr:`AbsorptionRules.min_volume` contracts and at least
:attr:`AbsorptionRules.min_ratio` times the size the level showed when the run started: the
passive side kept refilling (hidden size, icebergs or new orders) and the price did not move.
This is the common order-flow reading of absorption (a large aggressor flow that does not move
the price); the thresholds are this project's defaults, not a published rule.

Fed by :class:`flows.book.OrderBooks` (fills at the resting order's own price, with the
level's size before the fill; levels traded out and refilled). Auction fills (the opening
uncross fills resting orders away from their price) are not absorption.

Units: prices int64 fixed-point 1e-9 USD price points, sizes contracts,
timestamps ns since epoch UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flows.book_core import FREE, AbsorptionRules, AbsorptionState, rows_to_table, shard_of

HELD, BROKE = "held", "broke"


@dataclass(slots=True)
class _Run:
    """An open run as pickled before the runs were compiled (read by ``__setstate__`` only)."""

    start_size: int
    first_ts: int
    last_ts: int
    absorbed: int = 0
    fills: int = 0
    emptied: bool = False


@dataclass
class AbsorptionTracker:
    """Open absorption runs per level and the events finished since the last :meth:`take`.

    The runs live in compiled arrays (:class:`flows.book_core.AbsorptionState`), one per book
    shard (:class:`flows.book.OrderBooks`): the book's loop feeds every fill, level traded out
    and refill to them without a Python call.
    """

    rules: AbsorptionRules = field(default_factory=AbsorptionRules)
    states: list[AbsorptionState] = field(init=False)

    def __post_init__(self) -> None:
        self.states = [AbsorptionState(self.rules)]


    def shard(self, shards: int) -> None:
        """Spread the open runs over ``shards`` states, by the book's instrument hash."""
        if len(self.states) == shards:
            return
        runs = np.concatenate([s.runs[s.runs[:, 0] != FREE] for s in self.states])
        done = [d for s in self.states for d in s.done]
        self.states = []
        for k in range(shards):
            state = AbsorptionState(self.rules)
            mine = runs[shard_of(runs[:, 0] >> 1, shards) == k]
            state.runs = rows_to_table(mine, 64)
            state.count[0] = len(mine)
            self.states.append(state)
        self.states[0].done = done

    def expire(self, now_ns: int) -> None:
        """Finish the runs with no fill for ``gap_ns`` before ``now_ns`` (they held)."""
        for state in self.states:
            state.expire(now_ns)

    def take(self) -> list[tuple]:
        """Return the finished events (by first fill, then level) and forget them.

        Each is (instrument_id, resting side, price, absorbed, start_size, fills, first_ts,
        last_ts, outcome).
        """
        rows = np.concatenate([s.take() for s in self.states])
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0], rows[:, 5]))]
        return [(int(k) >> 1, "A" if k & 1 else "B", int(p), int(a), int(s), int(f), int(t0),
                 int(t1), BROKE if b else HELD) for k, p, a, s, f, t0, t1, b in rows.tolist()]

    def __setstate__(self, state: dict) -> None:
        """Load a pickle; one from before the compiled runs (a ``runs`` dict) is converted."""
        if "states" in state:
            self.__dict__.update(state)
            return
        self.rules = state.get("rules", AbsorptionRules())
        self.__post_init__()
        old = state.get("runs", {})
        rows = np.array([[2 * iid + (0 if side == ord("B") else 1), price, r.start_size,
                          r.first_ts, r.last_ts, r.absorbed, r.fills, int(r.emptied)]
                         for (iid, side, price), r in old.items()], dtype=np.int64).reshape(-1, 8)
        first = self.states[0]
        first.runs, first.count[0] = rows_to_table(rows, 64), len(rows)
        done = state.get("done", [])
        if done:
            first.done.append(np.array(
                [[2 * d[0] + (0 if d[1] == "B" else 1), d[2], d[3], d[4], d[5], d[6], d[7],
                  int(d[8] == BROKE)] for d in done], dtype=np.int64))

    def __deepcopy__(self, memo: dict) -> AbsorptionTracker:
        """Copy in O(open runs)."""
        out = AbsorptionTracker.__new__(AbsorptionTracker)
        out.rules = self.rules
        out.states = [s.copy() for s in self.states]
        memo[id(self)] = out
        return out
