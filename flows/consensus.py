"""Pluggable signal scorers and their weighted consensus.

Every IFD signal (:mod:`flows.scoring`) is also scored by each configured scorer; the signal row
carries every score (``scores``, JSON) and their weighted mean (``consensus``). The class of a
signal stays the IFD score's (its thresholds are the evaluated ones); the consensus says how
far the other evidence agrees.

Built-in scorers:

- ``ifd``: the IFD confidence itself (:mod:`flows.scoring`).
- ``l3``: order-book evidence of a patient large trader in the same contract and window, from
  MBO inputs: contracts executed by icebergs (:mod:`flows.icebergs`) plus contracts absorbed at
  a holding level (:mod:`flows.absorption`), as a share of the window's volume (capped at 1).
  Without any such evidence (no MBO input, or nothing found) it abstains: its score is null
  and its weight leaves the mean.

``IFD_SCORING_SCORERS`` lists ``name:weight`` pairs, comma-separated (default ``ifd:1,l3:0.5``);
a name that is not built in is a dotted path ``package.module:Class`` (or ``…:function``) to a
user scorer: an object with a ``name`` and a ``score(signal, evidence) -> float | None`` in
[0, 1] (None: abstain), or a plain function of the same arguments. ``evidence`` is the
:class:`L3Evidence` of the signal's contract and window.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.errors import ConfigError
from models.records import AbsorptionRows, IcebergRows
from models.signals import Signal


@dataclass(frozen=True, slots=True)
class L3Evidence:
    """Order-book evidence of one contract and window (contracts)."""

    iceberg_volume: float = 0.0
    absorbed_volume: float = 0.0


class SignalScorer(Protocol):
    """What a scorer provides (module docstring)."""

    name: str

    def score(self, signal: Signal, evidence: L3Evidence) -> float | None:
        """Return a score in [0, 1] for ``signal``, or None to abstain."""
        ...


class IFDScorer:
    """The IFD confidence (:mod:`flows.scoring`)."""

    name = "ifd"

    def score(self, signal: Signal, evidence: L3Evidence) -> float:
        """Return the signal's own confidence."""
        return signal.confidence


class L3Scorer:
    """Iceberg and absorption volume as a share of the window's volume (module docstring)."""

    name = "l3"

    def score(self, signal: Signal, evidence: L3Evidence) -> float | None:
        """Return min(1, (iceberg + absorbed contracts) / window volume); None without evidence."""
        seen = evidence.iceberg_volume + evidence.absorbed_volume
        if seen <= 0 or signal.total_volume <= 0:
            return None
        return min(1.0, seen / signal.total_volume)


class _FunctionScorer:
    def __init__(self, name: str, fn: Callable[[Signal, L3Evidence], float | None]) -> None:
        self.name, self._fn = name, fn

    def score(self, signal: Signal, evidence: L3Evidence) -> float | None:
        return self._fn(signal, evidence)


BUILT_IN: dict[str, type] = {"ifd": IFDScorer, "l3": L3Scorer}


def load_scorers(spec: str) -> list[tuple[SignalScorer, float]]:
    """Parse ``name:weight,…`` (module docstring) into (scorer, weight) pairs.

    Raises
    ------
    ConfigError
        An empty list, a weight that is not a non-negative number, weights summing to 0, or a
        dotted path that does not import or names nothing callable (the message names it).
    """
    out: list[tuple[SignalScorer, float]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, weight_text = item.rpartition(":")
        try:
            weight = float(weight_text)
        except ValueError:
            weight = math.nan
        if not name or not math.isfinite(weight) or weight < 0:
            msg = (f"IFD_SCORING_SCORERS: {item!r} must be name:weight with a weight >= 0 "
                   "(e.g. ifd:1,l3:0.5)")
            raise ConfigError(msg)
        out.append((_scorer(name), weight))
    if not out or sum(w for _, w in out) <= 0:
        msg = "IFD_SCORING_SCORERS must list at least one scorer with a weight above 0"
        raise ConfigError(msg)
    return out


def _scorer(name: str) -> SignalScorer:
    if name in BUILT_IN:
        return BUILT_IN[name]()
    module_name, _, attr = name.partition(":")
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        msg = f"IFD_SCORING_SCORERS: cannot load scorer {name!r} ({type(exc).__name__}: {exc})"
        raise ConfigError(msg) from exc
    obj = target() if isinstance(target, type) else target
    if hasattr(obj, "score"):
        if not getattr(obj, "name", ""):
            obj.name = attr
        return obj
    if callable(obj):
        return _FunctionScorer(attr, obj)
    msg = f"IFD_SCORING_SCORERS: {name!r} is neither a scorer nor a function"
    raise ConfigError(msg)


@dataclass
class EvidenceBook:
    """L3 evidence per (contract key, window start s), kept for ``horizon_s`` of event time.

    ``window_s`` must be the flow's window length (the scorer builds it from its baseline book).
    """

    window_s: int = 300
    horizon_s: int = 3_600
    cells: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    newest_s: int = 0
    executed: dict[tuple, int] = field(default_factory=dict)
    """Iceberg identity → contracts executed as last reported (rows repeat as icebergs change)."""

    def _add(self, keys: Any, ts_ns: Any, volume: Any, column: int) -> None:
        for key, ts, vol in zip(keys.tolist(), ts_ns.tolist(), volume.tolist(), strict=True):
            start = ts // 1_000_000_000 // self.window_s * self.window_s
            self.cells.setdefault((str(key), start), [0.0, 0.0])[column] += float(vol)
            self.newest_s = max(self.newest_s, start)

    def add(self, rows: IcebergRows | AbsorptionRows) -> None:
        """Record icebergs or absorption events.

        Icebergs count their executed contracts in the window of their last update; a changed
        iceberg arrives again, so only the increase since its previous row counts. Absorption
        events count their absorbed contracts in the window of their first fill.
        """
        if isinstance(rows, AbsorptionRows):
            self._add(rows.contract_key, rows.first_ts, rows.absorbed, 1)
        else:
            seen = self.executed
            delta = []
            for ident, executed in zip(zip(rows.kind.tolist(), rows.instrument_id.tolist(),
                                           rows.price.tolist(), rows.first_ts.tolist(),
                                           strict=True), rows.executed.tolist(), strict=True):
                delta.append(max(0, executed - seen.get(ident, 0)))
                seen[ident] = max(executed, seen.get(ident, 0))
            self._add(rows.contract_key, rows.last_ts, np.asarray(delta, dtype=np.int64), 0)
        limit = self.newest_s - self.horizon_s
        if len(self.cells) > 4_096:  # forget windows past the horizon (scored long ago)
            self.cells = {k: v for k, v in self.cells.items() if k[1] >= limit}
        if len(self.executed) > 65_536:
            self.executed = {}

    def evidence(self, contract_key: str, window_start_s: int) -> L3Evidence:
        """Return the evidence of one contract and window (zeros when none)."""
        cell = self.cells.get((contract_key, window_start_s))
        return L3Evidence() if cell is None else L3Evidence(cell[0], cell[1])


def with_consensus(signal: Signal, scorers: list[tuple[SignalScorer, float]],
                   evidence: L3Evidence) -> Signal:
    """Return ``signal`` with every scorer's score (``scores``, JSON) and the weighted mean.

    A scorer's result is clipped to [0, 1]; one that abstains (None) is null in ``scores`` and
    out of the mean; one that raises or returns a non-number scores 0 and its error is named in
    ``scores`` (``"<name>_error"``), never dropping the signal.
    """
    scores: dict[str, Any] = {}
    total = weights = 0.0
    for scorer, weight in scorers:
        try:
            raw = scorer.score(signal, evidence)
            if raw is None:
                scores[scorer.name] = None
                continue
            value = float(raw)
            if not math.isfinite(value):
                msg = "not a finite number"
                raise ValueError(msg)  # noqa: TRY301
        except Exception as exc:  # noqa: BLE001 - a user scorer must not stop the flow
            scores[f"{scorer.name}_error"] = f"{type(exc).__name__}: {exc}"[:200]
            value = 0.0
        value = min(1.0, max(0.0, value))
        scores[scorer.name] = round(value, 6)
        total += weight * value
        weights += weight
    return signal.model_copy(update={"scores": json.dumps(scores, sort_keys=True),
                                     "consensus": round(total / weights, 6) if weights else 0.0})
