"""A source whose partitions run the per-stream step themselves: no exchange of raw batches.

bytewax routes a keyed stateful step's items to the worker that owns the key (a hash of it), not
to the worker that read them. With the per-stream step (normalise, aggressor side, per
contract-window parts) as a ``stateful_map`` keyed by source partition, every raw batch of a
partition read on one worker but keyed to another was pickled and sent across: with 2 processes
that was a decoded ~20 MB batch per file, the step that made 2 processes slower than one.

:class:`ProcessedSource` wraps a :class:`~bytewax.inputs.FixedPartitionedSource` and applies
the step inside each partition, on the worker that reads it; the partition's snapshot is its
reader position together with the step's state, taken at the same point, so a resumed run
continues both from the same record. Only the step's (small, aggregated) outputs are exchanged
downstream.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

Step = Callable[[Any, Any], tuple[Any, list[Any]]]
"""``step(state | None, item) -> (state, items)``: ``stateful_map`` semantics, a list out."""


@dataclass(frozen=True)
class ProcessedPosition:
    """Partition snapshot: the wrapped partition's snapshot and the step's state after it."""

    inner: Any
    state: Any


class _ProcessedPartition(StatefulSourcePartition[Any, ProcessedPosition]):
    def __init__(self, inner: StatefulSourcePartition, step: Step, state: Any) -> None:
        self._inner = inner
        self._step = step
        self._state = state

    @override
    def next_batch(self) -> list[Any]:
        out: list[Any] = []
        for item in self._inner.next_batch():
            self._state, items = self._step(self._state, item)
            out.extend(items)
        return out

    @override
    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    @override
    def snapshot(self) -> ProcessedPosition:
        # a copy: bytewax pickles the snapshot later, after this partition has moved on
        return ProcessedPosition(self._inner.snapshot(), copy.deepcopy(self._state))

    @override
    def close(self) -> None:
        self._inner.close()


class ProcessedSource(FixedPartitionedSource[Any, ProcessedPosition]):
    """``inner``'s partitions, each item passed through ``step`` with per-partition state.

    Parameters
    ----------
    inner : FixedPartitionedSource
        The reading source (DBN files, live); its partitions and their keys are kept.
    step : callable
        ``step(state, item) -> (state, items)``; ``state`` is None for a partition's first
        item. Called on the worker that owns the partition, in read order. Exceptions propagate
        (the step names the offending file/record itself).

    Notes
    -----
    A resume state that is not a :class:`ProcessedPosition` (a snapshot taken before this
    wrapper existed) resumes the reader with a fresh step state.
    """

    def __init__(self, inner: FixedPartitionedSource, step: Step) -> None:
        self.inner = inner
        self._step = step

    @override
    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ProcessedPartition:
        if isinstance(resume_state, ProcessedPosition):
            inner_state, state = resume_state.inner, resume_state.state
        else:
            inner_state, state = resume_state, None
        return _ProcessedPartition(self.inner.build_part(step_id, for_part, inner_state),
                                   self._step, state)
