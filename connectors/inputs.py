"""Input planning: expand ``IFD_SOURCE``, read headers, pick each input's trade schema.

Mixed DBN files and live sessions repeat the same trade in several schemas
(an MBO ``T``, a ``trades`` record, an ``mbp-1`` ``T``). Exactly one schema's
trades may count for any instrument and time, so each data input gets one
*trade rtype* (or none):

- ``IFD_TRADE_SCHEMA=auto`` (default): inputs that *overlap* — same dataset,
  shared instrument ids in their metadata symbology (or the same requested
  symbols when no mapping is present), and intersecting time ranges — form a
  group; the group takes trades from the richest trade-bearing schema present
  (mbo > mbp-10 > mbp-1 = tbbo > trades). Inputs of other schemas in that
  group contribute no trades (counted as ``duplicate_schema_trades``).
  A mixed-schema file is scanned once to learn which rtypes it holds.
- an explicit schema: only that schema's trades count, everywhere.

Files whose schema is ``definition`` are read up front into the instrument
catalog; every other file (including non-trade schemas such as ohlcv or
statistics, whose records are counted as skipped) becomes one partition.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path

from connectors.dbn import (
    RTYPE_MBO,
    RTYPE_MBP1,
    RTYPE_MBP10,
    RTYPE_TRADES,
    SCHEMA_RTYPE,
    DBNHeader,
    read_definitions,
    read_header,
    rtype_name,
    scan_rtypes,
)
from connectors.selection import TradeSelection
from models.errors import SourceError
from models.records import InstrumentDefinition

log = logging.getLogger(__name__)

RTYPE_RANK = {RTYPE_MBO: 4, RTYPE_MBP10: 3, RTYPE_MBP1: 2, RTYPE_TRADES: 1}
"""Richness of each trade-bearing rtype (higher wins under ``auto``)."""


@dataclass(frozen=True)
class DataInput:
    """One data file and the rtype whose trades count for it (None: no trades).

    ``source_id`` is the file name: it is part of every stored row's identity,
    so replaying the same file from another directory or through another
    relative path rewrites the same rows.
    """

    path: str
    source_id: str
    header: DBNHeader
    trade_rtype: int | None
    selection: TradeSelection | None = None


@dataclass
class InputPlan:
    """What the source will read.

    Attributes
    ----------
    data : list[DataInput]
        One partition each, in ``IFD_SOURCE`` order.
    definition_files : list[str]
    definitions : list[InstrumentDefinition]
        Read from ``definition_files``.
    symbols : dict[int, str]
        Metadata symbology of every input, instrument_id → raw symbol.
    """

    data: list[DataInput] = field(default_factory=list)
    definition_files: list[str] = field(default_factory=list)
    definitions: list[InstrumentDefinition] = field(default_factory=list)
    symbols: dict[int, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Size on disk of all data inputs (progress denominator)."""
        return sum(Path(d.path).stat().st_size for d in self.data)


def expand_patterns(patterns: list[str]) -> list[str]:
    """Expand paths/globs in order, dropping repeats.

    Raises
    ------
    SourceError
        A plain path does not exist or a glob matches nothing.
    """
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern))
            if not matches:
                msg = f"IFD_SOURCE pattern {pattern!r} matches no file"
                raise SourceError(msg)
        else:
            if not Path(pattern).is_file():
                msg = f"IFD_SOURCE file {pattern!r} does not exist"
                raise SourceError(msg)
            matches = [pattern]
        out.extend(m for m in matches if m not in out)
    return out


def _overlaps(a: DBNHeader, b: DBNHeader) -> bool:
    if a.dataset != b.dataset:
        return False
    if a.symbol_by_id and b.symbol_by_id:
        shared = not a.symbol_by_id.keys().isdisjoint(b.symbol_by_id.keys())
    else:
        shared = not set(a.symbols).isdisjoint(b.symbols)
    a_end = a.end_ns or 2**63
    b_end = b.end_ns or 2**63
    return shared and a.start_ns < b_end and b.start_ns < a_end


def _present_rtypes(header: DBNHeader) -> frozenset[int]:
    if header.schema is None:
        log.info("scanning mixed-schema file %s for its record types", header.path)
        counts = scan_rtypes(header.path)
        return frozenset(r for r in counts if r in RTYPE_RANK)
    rtype = SCHEMA_RTYPE.get(header.schema)
    return frozenset() if rtype is None else frozenset({rtype})


def plan_inputs(patterns: list[str], trade_schema: str = "auto") -> InputPlan:
    """Expand, read headers and resolve each data input's trade rtype.

    Parameters
    ----------
    patterns : list[str]
        Paths or globs (``IFD_SOURCE`` split on commas).
    trade_schema : str
        ``auto`` or a schema name (see module docstring).

    Raises
    ------
    SourceError
        Missing files, or no data file among the inputs.
    DBNDecodeError
        A file is not valid DBN.
    """
    plan = InputPlan()
    headers: list[DBNHeader] = []
    for path in expand_patterns(patterns):
        header = read_header(path)
        plan.symbols.update(header.symbol_by_id)
        if header.schema == "definition":
            plan.definition_files.append(path)
            plan.definitions.extend(read_definitions(path))
        else:
            headers.append(header)
    if not headers:
        msg = f"IFD_SOURCE holds only definition files, no data: {patterns}"
        raise SourceError(msg)

    present = [_present_rtypes(h) for h in headers]
    group = list(range(len(headers)))  # union-find over overlapping inputs

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(headers)):
        for j in range(i + 1, len(headers)):
            if _overlaps(headers[i], headers[j]):
                group[root(i)] = root(j)
    best: dict[int, int] = {}
    for i, rtypes in enumerate(present):
        for rtype in rtypes:
            r = root(i)
            if RTYPE_RANK[rtype] > RTYPE_RANK.get(best.get(r, -1), 0):
                best[r] = rtype

    wanted = None if trade_schema == "auto" else SCHEMA_RTYPE[trade_schema]
    for i, header in enumerate(headers):
        target = best.get(root(i)) if wanted is None else wanted
        chosen = target if target in present[i] else None
        if present[i] and chosen is None:
            log.warning(
                "%s: its %s trades are not counted (IFD_TRADE_SCHEMA=%s takes %s trades)",
                header.path,
                "/".join(sorted(rtype_name(r) for r in present[i])),
                trade_schema,
                rtype_name(target) if target is not None else "no",
            )
        plan.data.append(DataInput(header.path, Path(header.path).name, header, chosen))
    seen: dict[str, str] = {}
    for data in plan.data:
        other = seen.setdefault(data.source_id, data.path)
        if other != data.path:
            msg = (
                f"two inputs share the file name {data.source_id!r} ({other}, {data.path}); "
                "file names identify stored rows, rename one"
            )
            raise SourceError(msg)
    return plan


def partition_inputs(data: list[DataInput]) -> list[list[DataInput]]:
    """Group data inputs into partitions read sequentially, in time order.

    Files of one series — same dataset, schema and requested symbols, with
    time ranges that do not overlap (e.g. one file per trading day) — form
    one partition, so day *d* is processed before day *d + 1* (baselines and
    tick tests need that order). Overlapping files get separate partitions.

    Returns
    -------
    list[list[DataInput]]
        Partitions, each sorted by start time; a partition's key is its first
        file's ``source_id``.
    """
    groups: list[list[DataInput]] = []
    for item in sorted(data, key=lambda d: (d.header.start_ns, d.source_id)):
        h = item.header
        signature = (h.dataset, h.schema, h.symbols)
        for group in groups:
            last = group[-1].header
            if (last.dataset, last.schema, last.symbols) == signature and last.end_ns and \
                    last.end_ns <= h.start_ns:
                group.append(item)
                break
        else:
            groups.append([item])
    return groups
