"""GcPacer: full collections only at the paced times, thresholds restored, nesting."""

from __future__ import annotations

import gc

import pytest

from models.gc_pacing import GcPacer


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _cycles_alive() -> int:
    return sum(isinstance(o, _Cycle) for o in gc.get_objects())


@pytest.fixture
def restore_gc():  # noqa: ANN201 - fixture
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_full_collections_run_half_a_window_after_each_close_only() -> None:
    # 60 s windows, 10 s lateness: closes at :10, paced collections at :40 of each minute
    clock = _Clock(1_000_020.0)  # 1_000_020 = 16_667 min + 0 s, i.e. :00
    pacer = GcPacer(60, 10, clock=clock)
    gc.set_threshold(10**9, 10**9)  # no automatic young collection frees the cycle by chance
    before = gc.get_threshold()
    pacer.start()
    assert gc.get_threshold()[:2] == before[:2]
    assert gc.get_threshold()[2] > 10**9  # automatic full collections off
    assert pacer.due_s == 1_000_020.0 + 40
    _Cycle()  # unreachable at once: only a collection frees it
    assert _cycles_alive() == 1
    for now in (1_000_030.0, 1_000_059.9):  # :10 (a close) and just before :40: nothing due
        clock.now = now
        assert pacer.tick() is None
    assert _cycles_alive() == 1
    clock.now = 1_000_060.0  # :40
    assert pacer.tick() is not None
    assert _cycles_alive() == 0
    assert pacer.tick() is None  # once per window
    assert pacer.due_s == 1_000_060.0 + 60
    clock.now = 1_000_200.0  # two windows later: one collection, not one per missed slot
    assert pacer.tick() is not None
    assert pacer.tick() is None
    assert pacer.collections == 2
    pacer.stop()
    assert gc.get_threshold() == before


@pytest.mark.usefixtures("restore_gc")
def test_nested_pacers_restore_the_thresholds_when_the_last_stops() -> None:
    before = gc.get_threshold()
    first, second = GcPacer(300, 10), GcPacer(300, 10)
    first.start()
    second.start()
    first.stop()
    assert gc.get_threshold()[2] > 10**9  # the second one still runs
    second.stop()
    assert gc.get_threshold() == before
    second.stop()  # idempotent
    assert gc.get_threshold() == before


@pytest.mark.usefixtures("restore_gc")
def test_the_last_stop_collects_what_the_pacing_left_instead_of_the_next_allocation() -> None:
    pacer = GcPacer(300, 10, clock=_Clock(1_000_020.0))
    pacer.start()
    gc.set_threshold(10**9, 10**9, 2**31 - 1)  # nothing automatic frees the cycle by chance
    _Cycle()
    assert _cycles_alive() == 1
    pacer.stop()  # thresholds back to what start() saved, heap unfrozen, one full collection
    assert _cycles_alive() == 0


def test_a_window_must_have_a_length() -> None:
    with pytest.raises(ValueError, match="positive window length"):
        GcPacer(0, 10)
