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

HELD, BROKE = "held", "broke"


@dataclass(frozen=True, slots=True)
class AbsorptionRules:
    """Thresholds of an absorption event (module docstring)."""

    gap_ns: int = 5_000_000_000
    min_volume: int = 50
    min_ratio: float = 3.0


@dataclass(slots=True)
class _Run:
    start_size: int
    first_ts: int
    last_ts: int
    absorbed: int = 0
    fills: int = 0
    emptied: bool = False


@dataclass
class AbsorptionTracker:
    """Open absorption runs per level and the events finished since the last :meth:`take`."""

    rules: AbsorptionRules = field(default_factory=AbsorptionRules)
    runs: dict[tuple[int, int, int], _Run] = field(default_factory=dict)
    """(instrument_id, resting side byte, price) → its open run."""
    done: list[tuple] = field(default_factory=list)

    def fill(self, iid: int, side: int, price: int, size: int, level_size: int, ts: int) -> None:
        """Record a fill of ``size`` at a level that showed ``level_size`` contracts before it."""
        key = (iid, side, price)
        run = self.runs.get(key)
        if run is not None and ts - run.last_ts > self.rules.gap_ns:
            self._finish(key, run, HELD)
            run = None
        if run is None:
            run = self.runs[key] = _Run(start_size=level_size, first_ts=ts, last_ts=ts)
        run.absorbed += size
        run.fills += 1
        run.last_ts = ts
        run.emptied = False

    def traded_out(self, iid: int, side: int, price: int, ts: int) -> None:
        """Record that fills emptied the level (broken, unless a later fill shows it refilled)."""
        run = self.runs.get((iid, side, price))
        if run is not None:
            run.emptied = True

    def refilled(self, iid: int, side: int, price: int) -> None:
        """Record a new order at a level fills had just emptied (the level holds)."""
        run = self.runs.get((iid, side, price))
        if run is not None:
            run.emptied = False

    def expire(self, now_ns: int) -> None:
        """Finish the runs with no fill for ``gap_ns`` before ``now_ns`` (they held)."""
        limit = now_ns - self.rules.gap_ns
        for key, run in list(self.runs.items()):
            if run.last_ts < limit:
                self._finish(key, run, HELD)

    def _finish(self, key: tuple[int, int, int], run: _Run, outcome: str) -> None:
        self.runs.pop(key, None)
        outcome = BROKE if run.emptied else outcome
        r = self.rules
        if run.absorbed >= r.min_volume and run.absorbed >= r.min_ratio * max(run.start_size, 1):
            self.done.append((key[0], chr(key[1]), key[2], run.absorbed, run.start_size,
                              run.fills, run.first_ts, run.last_ts, outcome))

    def take(self) -> list[tuple]:
        """Return the finished events and forget them.

        Each is (instrument_id, resting side, price, absorbed, start_size, fills, first_ts,
        last_ts, outcome).
        """
        out, self.done = self.done, []
        return out

    def __deepcopy__(self, memo: dict) -> AbsorptionTracker:
        """Copy in O(open runs)."""
        out = AbsorptionTracker(rules=self.rules,
                                runs={k: _Run(v.start_size, v.first_ts, v.last_ts, v.absorbed,
                                              v.fills, v.emptied) for k, v in self.runs.items()},
                                done=list(self.done))
        memo[id(self)] = out
        return out
