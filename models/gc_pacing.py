"""Full garbage collections at quiet times (live): never during a window close.

CPython's cyclic collector runs a full (generation 2) collection whenever enough objects have
survived the younger ones, with the GIL held throughout. This process's heap (the modules of
databento, polars, numba and pyarrow, the instrument catalog, the flow's state) makes one
take 50-220 ms (measured in the real-time soak on 2 cores, ~290,000 tracked objects), so a
full collection that starts during a window close delays every signal and alert of it by as
much. Live, :class:`GcPacer`:

- collects once and freezes the start-up heap (:func:`gc.freeze`: never scanned again);
- turns automatic full collections off (a generation-2 threshold no count reaches); the
  young generations stay automatic (≤ 6 ms each, measured);
- runs one full collection per window, half a window after each close (window end +
  lateness + window / 2 on the wall clock, which live event time follows), when no window is
  due.

The setting is process-wide: pacers nest (the first one started changes the thresholds, the
last one stopped restores them and unfreezes). Source of the mechanism: the Python
documentation of :mod:`gc` (``freeze``, ``set_threshold``).
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_NEVER = 2**31 - 1
"""Generation-2 threshold that turns automatic full collections off."""

_LOCK = threading.Lock()
_ACTIVE = 0
_SAVED: tuple[int, ...] | None = None


class GcPacer:
    """Full collections half a window after each close; see the module docstring.

    Parameters
    ----------
    window_s : float
        Window length, s (> 0).
    lateness_s : float
        Allowed lateness, s: window ``[k·w, (k+1)·w)`` closes at ``(k+1)·w + lateness``.
    clock : callable
        Wall clock, s since epoch UTC (tests pass their own).

    Raises
    ------
    ValueError
        ``window_s`` is not positive.
    """

    def __init__(self, window_s: float, lateness_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        if window_s <= 0:
            msg = f"GcPacer needs a positive window length, got {window_s}"
            raise ValueError(msg)
        self.window_s = window_s
        self.phase_s = (lateness_s + window_s / 2) % window_s
        self._clock = clock
        self._slot: int | None = None
        self._started = False
        self.collections = 0
        """Full collections run by :meth:`tick`."""
        self.collected_s = 0.0
        """Seconds spent in them."""

    def start(self) -> None:
        """Collect and freeze the heap, turn automatic full collections off (idempotent)."""
        global _ACTIVE, _SAVED  # noqa: PLW0603 - one process-wide collector
        if self._started:
            return
        self._started = True
        with _LOCK:
            _ACTIVE += 1
            if _ACTIVE == 1:
                _SAVED = gc.get_threshold()
                gc.collect()
                gc.freeze()
                gc.set_threshold(_SAVED[0], _SAVED[1], _NEVER)
        self._slot = self._slot_at(self._clock())

    def stop(self) -> None:
        """Undo :meth:`start` once the last pacer stops (then one full collection runs)."""
        global _ACTIVE, _SAVED  # noqa: PLW0603 - one process-wide collector
        if not self._started:
            return
        self._started = False
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0 and _SAVED is not None:
                gc.set_threshold(*_SAVED)
                gc.unfreeze()
                _SAVED = None
                # the unfrozen heap and everything since the last paced collection are due a
                # full collection: run it here, not inside whatever allocates next (at the
                # end of a live run, bytewax's last snapshot: measured ~300 ms there)
                gc.collect()

    @property
    def due_s(self) -> float:
        """Wall time (s since epoch UTC) of the next paced collection."""
        now = self._clock()
        slot = self._slot_at(now) if self._slot is None else self._slot
        return (slot + 1) * self.window_s + self.phase_s

    def tick(self) -> float | None:
        """Run the full collection when its time has come; return its seconds, else None."""
        if not self._started:
            return None
        slot = self._slot_at(self._clock())
        if self._slot is not None and slot <= self._slot:
            return None
        self._slot = slot
        began = time.perf_counter()
        found = gc.collect()
        spent = time.perf_counter() - began
        self.collections += 1
        self.collected_s += spent
        log.debug("gc: paced full collection, %d objects freed in %.1f ms", found, 1e3 * spent)
        return spent

    def _slot_at(self, now_s: float) -> int:
        return math.floor((now_s - self.phase_s) / self.window_s)
