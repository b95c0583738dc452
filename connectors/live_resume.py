"""Exact resume for a live feed: replay positions, replay de-duplication, sealed seconds.

Pure Python over raw DBN record bytes (no databento, bytewax or ClickHouse
import), so the rules can be tested alone. :class:`connectors.live.LiveFeed`
drives one :class:`LiveSequencer` per subscription.

Why
---
``databento.Live`` reconnects without replaying what it missed, so the feed
resubscribes with intraday replay (``start=``) and must then drop exactly the
records it already has, and nothing else. What repeats in a replay is the
*record*, byte for byte (the gateway re-sends the stored record); what does
not repeat is anything else. So:

* **De-duplication is a multiset of record bytes**, applied only to a replay
  connection's overlap. Each accepted data record is counted by its bytes.
  When a connection that replays from ``start`` opens, its *pending* multiset
  is every accepted record it may send again: the records kept since two
  overlaps before the position (Databento filters a replay on ``ts_event``;
  the second overlap also covers a gateway that filters on ``ts_recv``). Each arriving record
  found in *pending* is a replayed copy: it is dropped and its count
  decremented. Anything else, including a second print identical to a first
  one (an aggressor order that filled two resting orders at one price), is a
  first delivery and is kept. Sweeps (several prints of one order with equal
  ts_event, instrument_id and sequence at different prices) are distinct
  bytes, so distinct records.
* **The resume position advances on every data record**, definitions
  included: ``position = max(min(ts_event, ts_recv))`` over accepted records
  (``min`` so that neither a definition stamped days ago nor an outlier
  ``ts_event`` moves it wrongly). Gateway-made records (symbol mappings,
  system and error messages) never move it: the real gateway stamps them with
  the current time. A replay starts at ``position - overlap``.
  Until the first trade-schema record has been accepted, definitions replay
  from ``start=0`` (the whole available history: Databento keeps GLBX.MDP3
  definitions for the week), because during the initial definition burst a
  definition's ``ts_event`` may be far older than its neighbours'. With no
  data record at all, every subscription replays from ``start=0``.
* **Batches are whole ``ts_recv`` seconds.** A second is emitted once it is
  *sealed*: a record of another second was accepted after it, the gateway sent
  a heartbeat (it only does after a silence, so everything before it was sent),
  or the feed is closing. Each emitted piece of a second gets a split index
  (0 normally; 1, 2 … only if the same second is re-opened, e.g. by records
  arriving after a heartbeat, or when one second exceeds ``batch_records``,
  which cuts it into pieces of at most that many records, never inside a run
  of equal ``ts_event``: :func:`_piece_ends`). A part's identity is
  ``(second, split)``: unique within a run, and a replay after a restart cuts
  the same seconds the same way, so it rewrites the same rows.

Units: times are ns since the UNIX epoch (UTC); seconds are ``ts_recv // 1e9``.
References: Databento docs, "Live API: intraday replay" (replay filtered on
``ts_event`` for these schemas; ``start=0`` = all available history) and
"Raw API" (heartbeats after ``heartbeat_interval_s`` without data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NS = 1_000_000_000
UNDEF_TIMESTAMP = 2**64 - 1
RTYPE_DEFINITION = 0x13
RTYPE_ERROR = 0x15
RTYPE_SYMBOL_MAPPING = 0x16
RTYPE_SYSTEM = 0x17
GATEWAY_RTYPES = frozenset({RTYPE_ERROR, RTYPE_SYMBOL_MAPPING, RTYPE_SYSTEM})
"""Records the gateway makes itself; never de-duplicated, never a resume position."""

SPLIT_BASE = 4096
"""A unit id is ``second * SPLIT_BASE + split``: ``split`` must stay below this."""

DEFINITIONS = "definition"
DATA = "data"


def ts_event_of(raw: bytes) -> int:
    """``ts_event`` of a raw DBN record (bytes 8-16 of the record header), ns UTC."""
    return int.from_bytes(raw[8:16], "little")


def _piece_ends(records: list[bytes], size: int, *, complete: bool) -> list[int]:
    """End indices of the pieces a second's records are cut into, at most ``size`` records each.

    A cut never falls inside a run of consecutive records with equal ``ts_event`` (one match
    event: a spread trade and its leg prints, one aggressor filling several levels), unless the
    run alone is longer than ``size``: those records must reach the flow in one batch. A cut at
    ``i`` needs record ``i`` to be known (is it a new ``ts_event``?), so the pieces depend only
    on the records, never on when they arrived. ``complete``: the second has ended, the last
    piece takes the rest; otherwise the records after the last certain cut stay held.
    """
    ends: list[int] = []
    start, n = 0, len(records)
    while n - start > size:
        end = start + size
        while end > start and ts_event_of(records[end]) == ts_event_of(records[end - 1]):
            end -= 1
        ends.append(end if end > start else start + size)
        start = ends[-1]
    if complete and n > start:
        ends.append(n)
    return ends


@dataclass
class LiveResume:
    """What a live source needs after a restart (the bytewax snapshot of its partition).

    Attributes
    ----------
    position_ns : int | None
        Resume position of the emitted records (see module docstring); None
        before the first data record.
    trades_seen : bool
        A trade-schema record was emitted (definitions then replay from the
        data position instead of ``start=0``).
    seen : dict[bytes, int]
        Multiset of emitted data records a replay from the position can send again.
    splits : dict[int, int]
        ``ts_recv`` second → pieces of it emitted so far (recent seconds only).
    """

    position_ns: int | None = None
    trades_seen: bool = False
    seen: dict[bytes, int] = field(default_factory=dict)
    splits: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """One emitted piece of one ``ts_recv`` second: whole raw records, arrival order.

    Attributes
    ----------
    second : int
        ``ts_recv // 1e9`` of its records.
    split : int
        0, or the how-many-th piece of that second this is.
    records : list[bytes]
    """

    second: int
    split: int
    records: list[bytes]

    @property
    def unit_id(self) -> int:
        """``second * SPLIT_BASE + split``: the stored identity of everything made from this unit."""
        return self.second * SPLIT_BASE + self.split


@dataclass
class _Held:
    second: int
    records: list[bytes] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


class LiveSequencer:
    """Accept raw records of successive connections exactly once and cut them into :class:`Unit` s.

    Parameters
    ----------
    overlap_ns : int
        Replay starts this long before the resume position (covers
        ``ts_recv - ts_event`` latency), ns.
    trade_rtype : int
        rtype of the subscribed trade schema (flips ``trades_seen``).
    batch_records : int
        Most records per unit (a longer second is cut into pieces, see :func:`_piece_ends`).
    resume : LiveResume | None
        State from a snapshot.
    prune_min : int
        ``seen`` is pruned (amortised) once it holds twice its last size plus this many records.
    """

    def __init__(self, overlap_ns: int, trade_rtype: int, batch_records: int,
                 resume: LiveResume | None = None, *, prune_min: int = 4096) -> None:
        self.overlap_ns = overlap_ns
        self.trade_rtype = trade_rtype
        self.batch_records = batch_records
        resume = resume or LiveResume()
        self._position = resume.position_ns
        self.trades_seen = resume.trades_seen
        self._seen: dict[bytes, int] = dict(resume.seen)
        self._splits: dict[int, int] = dict(resume.splits)
        self._trades_emitted = resume.trades_seen
        self._held: list[_Held] = []
        self._sealed = False
        self._replays: set[int] = set()
        """Connections that replay (``start=`` given): only their records are de-duplicated."""
        self._pending: dict[int, dict[bytes, int]] = {}
        self._prune_min = prune_min
        self._prune_at = 2 * len(self._seen) + prune_min
        self.duplicates = 0
        self.accepted = 0

    # --- positions ----------------------------------------------------------------------
    @property
    def position_ns(self) -> int | None:
        """Newest position over accepted records (emitted or held), ns; None before any."""
        newest = max((max(h.positions) for h in self._held), default=-1)
        if self._position is not None and self._position > newest:
            return self._position
        return newest if newest >= 0 else None

    def replay_starts(self, received_position_ns: int | None) -> dict[str, int]:
        """``start=`` per subscription kind for a replay connection.

        Parameters
        ----------
        received_position_ns : int | None
            Newest position among records received but not yet accepted.

        Returns
        -------
        dict[str, int]
            ``{"definition": ns, "data": ns}``; 0 means the whole available history.
        """
        candidates = [p for p in (self.position_ns, received_position_ns) if p is not None]
        if not candidates:
            return {DEFINITIONS: 0, DATA: 0}
        data = max(0, max(candidates) - self.overlap_ns)
        return {DEFINITIONS: data if self.trades_seen else 0, DATA: data}

    def begin(self, gen: int, starts: dict[str, int] | None) -> None:
        """Register connection ``gen``; ``starts`` None for a live (no replay) connection.

        The connection's pending multiset is built when its first record is
        accepted, after every earlier connection's records.
        """
        if starts is not None:
            self._replays.add(gen)

    def _build_pending(self, gen: int) -> dict[bytes, int]:
        """Every accepted record a replay connection may send again.

        That is all of ``seen`` (pruned two overlaps behind the position) and
        the held records, whatever the starts: a gateway that filters the
        replay on ``ts_recv`` instead of ``ts_event`` re-sends a few records
        older than ``start``, and an entry that is never re-sent costs nothing.
        """
        if gen not in self._replays:
            return {}  # a live connection: first deliveries only
        pending = dict(self._seen)
        for held in self._held:
            for raw in held.records:
                pending[raw] = pending.get(raw, 0) + 1
        return pending

    # --- records ------------------------------------------------------------------------
    def accept(self, gen: int, raw: bytes, ts_event: int, ts_recv: int | None) -> bool:
        """Take one data record of connection ``gen``; False when it is a replayed copy.

        Parameters
        ----------
        gen : int
            Connection number (as given to :meth:`begin`), non-decreasing.
        raw : bytes
            The whole DBN record (not gateway-made).
        ts_event, ts_recv : int
            Its times, ns UTC (``ts_recv`` None or UNDEF when the schema has none).
        """
        pending = self._pending.get(gen)
        if pending is None:
            pending = self._pending[gen] = self._build_pending(gen)
            for old in [g for g in self._pending if g < gen]:
                del self._pending[old]  # an older connection sends nothing more
        if pending:
            count = pending.get(raw)
            if count:
                if count == 1:
                    del pending[raw]
                else:
                    pending[raw] = count - 1
                self.duplicates += 1
                return False
        recv = ts_recv if ts_recv is not None and ts_recv != UNDEF_TIMESTAMP else ts_event
        second = recv // NS
        if raw[1] == self.trade_rtype:
            self.trades_seen = True
        last = self._held[-1] if self._held else None
        if last is None or last.second != second or self._sealed:
            last = _Held(second)
            self._held.append(last)
            self._sealed = False
        last.records.append(raw)
        last.positions.append(min(ts_event, recv) if ts_event != UNDEF_TIMESTAMP else -1)
        self.accepted += 1
        return True

    def open_second(self) -> int | None:
        """Return the newest held ``ts_recv`` second while it is still open (not sealed), else None."""
        if self._held and not self._sealed:
            return self._held[-1].second
        return None

    def seal(self) -> None:
        """Mark the newest second complete (the gateway sent a heartbeat after a silence)."""
        if self._held:
            self._sealed = True

    @property
    def ready(self) -> bool:
        """Whether :meth:`take_units` has a complete second to give."""
        return len(self._held) > 1 or (bool(self._held) and self._sealed)

    def take_units(self, *, flush_all: bool = False, max_seconds: int | None = None) -> list[Unit]:
        """Pop complete units, oldest first (``flush_all``: also the open second).

        ``max_seconds`` caps the held seconds taken in one call (the rest stay held, so a
        snapshot still replays them after a restart): a feed that read far ahead (a reconnect's
        backlog, a compressed replay) hands the flow bounded batches instead of thousands at
        once, which bytewax 0.21.1 may deliver to the windows out of order (measured in the
        soak: a second's parts reached ``fold_window`` after parts hours later and were late).
        """
        out: list[Unit] = []
        keep_last = bool(self._held) and not (flush_all or self._sealed)
        ready = self._held[:-1] if keep_last else self._held
        later: list[_Held] = []
        if max_seconds is not None and len(ready) > max_seconds:
            ready, later = ready[:max_seconds], ready[max_seconds:]
        positions: list[int] = []
        for held in ready:
            out.extend(self._cut(held.second, held.records))
            positions.extend(held.positions)
        remaining = later + (self._held[-1:] if keep_last else [])
        if not later and remaining and len(remaining[0].records) > self.batch_records:
            # a very busy second: its first pieces are emitted before it ends
            open_second = remaining[0]
            whole = _piece_ends(open_second.records, self.batch_records, complete=False)[-1:]
            if whole:
                out.extend(self._cut(open_second.second, open_second.records[:whole[0]]))
                positions.extend(open_second.positions[:whole[0]])
                open_second.records = open_second.records[whole[0]:]
                open_second.positions = open_second.positions[whole[0]:]
        self._held = remaining
        if not self._held:
            self._sealed = False
        trade = self.trade_rtype
        for unit in out:
            for raw in unit.records:
                self._seen[raw] = self._seen.get(raw, 0) + 1
                if raw[1] == trade:
                    self._trades_emitted = True
        newest = max(positions, default=-1)
        if newest >= 0:
            if self._position is None or newest > self._position:
                self._position = newest
        if out:
            self._prune()
        return out

    def _cut(self, second: int, records: list[bytes]) -> list[Unit]:
        """Cut a second's records (or the complete head of an open one) into units."""
        units, start = [], 0
        for end in _piece_ends(records, self.batch_records, complete=True):
            split = self._splits.get(second, 0)
            if split >= SPLIT_BASE:
                msg = f"ts_recv second {second} was split more than {SPLIT_BASE - 1} times"
                raise OverflowError(msg)
            self._splits[second] = split + 1
            units.append(Unit(second, split, records[start:end]))
            start = end
        return units

    def _floors(self) -> tuple[int, int]:
        """Oldest ``ts_event`` kept for a future replay: (definitions, data).

        A replay starts one overlap behind the position; one more overlap
        covers records a ``ts_recv``-filtered replay re-sends from before it.
        """
        data = max(0, (self._position or 0) - 2 * self.overlap_ns)
        return (data if self._trades_emitted else 0), data

    def _prune(self) -> None:
        if len(self._seen) < self._prune_at:
            return
        def_floor, data_floor = self._floors()
        self._seen = {
            raw: n for raw, n in self._seen.items()
            if ts_event_of(raw) >= (def_floor if raw[1] == RTYPE_DEFINITION else data_floor)
        }
        floor_s = data_floor // NS - 1
        self._splits = {s: n for s, n in self._splits.items() if s >= floor_s}
        self._prune_at = 2 * len(self._seen) + self._prune_min

    @property
    def held_records(self) -> int:
        """Accepted records not yet emitted (the open second)."""
        return sum(len(h.records) for h in self._held)

    def snapshot(self) -> LiveResume:
        """State after the units emitted so far (held records are replayed after a restart)."""
        self._prune()
        return LiveResume(self._position, self._trades_emitted, dict(self._seen), dict(self._splits))


__all__ = ["DATA", "DEFINITIONS", "GATEWAY_RTYPES", "LiveResume", "LiveSequencer", "SPLIT_BASE",
           "Unit", "ts_event_of"]
