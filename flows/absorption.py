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

from flows.book_core import FREE, AbsorptionParams, AbsorptionState, rows_to_table, shard_of

HELD, BROKE = "held", "broke"


@dataclass(frozen=True, slots=True)
class AbsorptionRules:
    """Thresholds of an absorption event (module docstring)."""

    gap_ns: int = 5_000_000_000
    min_volume: int = 50
    min_ratio: float = 3.0


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
        self.states = [AbsorptionState(self._params())]

    def _params(self) -> AbsorptionParams:
        r = self.rules
        return AbsorptionParams(r.gap_ns, r.min_volume, r.min_ratio)

    def shard(self, shards: int) -> None:
        """Spread the open runs over ``shards`` states, by the book's instrument hash."""
        if len(self.states) == shards:
            return
        runs = np.concatenate([s.runs[s.runs[:, 0] != FREE] for s in self.states])
        done = [d for s in self.states for d in s.done]
        self.states = []
        for k in range(shards):
            state = AbsorptionState(self._params())
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

    def __deepcopy__(self, memo: dict) -> AbsorptionTracker:
        """Copy in O(open runs)."""
        out = AbsorptionTracker.__new__(AbsorptionTracker)
        out.rules = self.rules
        out.states = [s.copy() for s in self.states]
        memo[id(self)] = out
        return out
