"""One event clock per window key over several source partitions: the slowest partition sets it.

bytewax keeps one event clock per key and moves it to the largest item time
it has seen. When two partitions feed the same key — e.g. day 1 ``tbbo`` and
day 2 ``trades`` read at once — the faster partition's items would push the
clock past the other's open windows and make its data "late". The step here
sits between the partitions and the window operator (one state per window
key) and releases items in event-time order of the *slowest* partition:

- every partition reports its progress to every window key after each batch
  (:class:`Progress`: its plausible watermark, :mod:`flows.validate`; and
  ``done`` on its final batch);
- an item of time ``t`` is held until every partition that is not done has
  reported progress ≥ ``t``;
- each time the common progress (the minimum over partitions not done)
  advances, one :class:`~models.records.Heartbeat` at that time follows the
  released items, so quiet keys still close their windows.

Held items are window parts (a few rows per contract and window), so the
memory held is bounded by how far apart the partitions are in event time.
A single partition (and live mode) does not use this step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.records import Heartbeat, PartBlock

NEVER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Progress:
    """One window key's news: partition ``partition`` has read up to event time ``ts_ns`` (ns UTC)."""

    key: str
    partition: str
    ts_ns: int
    done: bool = False


@dataclass
class ClockState:
    """Per window key: each partition's progress and the items held back."""

    progress: dict[str, int] = field(default_factory=dict)
    held: list[tuple[int, int, PartBlock]] = field(default_factory=list)
    """(event time, arrival number, part block), released in that order."""
    released_ns: int = 0
    arrivals: int = 0


class PartitionClock:
    """Merge the event clocks of ``partitions`` for each window key (see module docstring).

    Parameters
    ----------
    partitions : iterable of str
        Every source partition key that feeds the window keys.
    floors : dict[str, int] | None
        A partition's progress before it reports any (ns UTC; default 0): a time none of its
        items will precede. With one partition per file, a file's partition may start only
        after the earlier files of its process; its floor (its first file's start less the
        tolerated skew, :mod:`flows.validate`) lets the keys release the earlier files'
        parts meanwhile.
    """

    def __init__(self, partitions: list[str], floors: dict[str, int] | None = None) -> None:
        self.partitions = tuple(partitions)
        self.floors = dict(floors or {})

    def new_state(self) -> ClockState:
        """State for a window key seen for the first time."""
        return ClockState()

    def _common(self, state: ClockState) -> int:
        return min(state.progress.get(p, self.floors.get(p, 0)) for p in self.partitions)

    def step(
        self, state: ClockState | None, item: PartBlock | Heartbeat | Progress
    ) -> tuple[ClockState, list[PartBlock | Heartbeat]]:
        """Take one item of a window key; return the items now due, in event-time order.

        Raises
        ------
        TypeError
            ``item`` is a :class:`Heartbeat`: with merged clocks the partitions send
            :class:`Progress` instead, and this step makes the heartbeats.
        """
        state = state or self.new_state()
        if isinstance(item, Heartbeat):
            msg = f"merged partition clocks got a Heartbeat for {item.key!r}; partitions must send Progress"
            raise TypeError(msg)
        if isinstance(item, Progress):
            ts = NEVER if item.done else item.ts_ns
            if ts > state.progress.get(item.partition, self.floors.get(item.partition, 0)):
                state.progress[item.partition] = ts
        else:
            state.held.append((item.last_ts_ns, state.arrivals, item))
            state.arrivals += 1
        common = self._common(state)
        out: list[PartBlock | Heartbeat] = []
        if state.held:
            due = [h for h in state.held if h[0] <= common]
            if due:
                state.held = [h for h in state.held if h[0] > common]
                due.sort(key=lambda h: (h[0], h[1]))
                out.extend(h[2] for h in due)
        if common != NEVER and common > state.released_ns:
            state.released_ns = common
            key = item.key
            out.append(Heartbeat(key, common))
        return state, out
