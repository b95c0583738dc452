"""Input planning: expand ``IFD_SOURCE``, read headers, identify inputs, select their trades.

**Identity by content.** Each input is identified by a digest of its metadata
and of every byte of the file (:func:`content_id`), not by its name: that id
is part of every stored row's identity, so a renamed copy, another path to
the same file or a second listing of it never adds volume. The same content
listed twice in one run is read once (a warning names both paths).
Hashing runs at ~0.7-1 GB/s (blake2b; see the closing note of the input
integrity work for the measured figure).

**Trade selection.** Mixed DBN files and live sessions repeat the same trade
in several schemas (an MBO ``T``, a ``trades`` record, an ``mbp-1`` ``T``);
exactly one copy may count. The records' own rtypes decide, not the
header: a single-schema file whose first record disagrees with its header,
and every mixed-schema file, is scanned for where its trades are.

- ``IFD_TRADE_SCHEMA=auto`` (default): inputs that *overlap* — same dataset,
  shared instrument ids in their metadata symbology (or the same requested
  symbols when no mapping is present), and intersecting time ranges — form a
  group. A trade record of rtype *r*, instrument *i*, time *t* counts unless
  a richer rtype (mbo > mbp-10 > mbp-1 = tbbo > trades) of the group carries
  trades of *i* covering *t* (:mod:`models.selection`); the others are
  counted as ``duplicate_schema_trades``.
- an explicit schema: only that schema's trades count, everywhere.

Files whose schema is ``definition`` are read up front into the instrument
catalog; every other file (including non-trade schemas such as ohlcv or
statistics, whose records are counted as skipped) becomes one partition.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.dbn import (
    SCHEMA_RTYPE,
    DBNHeader,
    DBNReader,
    read_definitions,
    read_header,
    rtype_name,
)
from models.errors import SourceError
from models.records import F_SNAPSHOT, InstrumentDefinition
from models.selection import RTYPE_RANK, Coverage, TradeSelection, select

log = logging.getLogger(__name__)

__all__ = ["RTYPE_RANK", "DataInput", "InputPlan", "content_id", "expand_patterns", "partition_inputs",
           "plan_inputs", "split_series"]


@dataclass(frozen=True)
class DataInput:
    """One data file and which of its trades count.

    ``source_id`` is the file's content identity (:func:`content_id`), part
    of every stored row's identity: replaying the same file under another
    name, from another directory or through another path rewrites the same
    rows. ``trade_rtype`` is its primary counted rtype; ``selection`` decides
    per (rtype, instrument, time).
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
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    """(first path, repeated path) of inputs skipped because their content was already listed."""

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


def content_id(path: str | Path, header: DBNHeader) -> str:
    """Content identity of an input: ``b2:`` + blake2b-128 of its metadata and every byte of the file.

    Part of every stored row's identity, so the same file under another name
    or path rewrites the same rows instead of adding to them.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{header.dataset}|{header.schema}|{header.start_ns}|{header.end_ns}|".encode())
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return "b2:" + digest.hexdigest()


def _scan_coverage(path: str) -> tuple[list[Coverage], Counter[int]]:
    """Scan a file's records: per trade-bearing rtype, per instrument, first/last trade time."""
    log.info("scanning %s for its record types and trades", path)
    per: dict[int, dict[int, tuple[int, int]]] = {}
    counts: Counter[int] = Counter()
    with DBNReader(path, batch_records=1 << 16) as reader:
        for chunk in reader:
            for rtype, recs in chunk.trades.items():
                counts[rtype] += len(recs)
                trade = (recs["action"].view(np.uint8) == ord("T")) & ((recs["flags"] & F_SNAPSHOT) == 0)
                if not trade.any():
                    continue
                iid = recs["instrument_id"][trade].astype(np.int64)
                ts = recs["ts_event"][trade].astype(np.int64)
                ids, inv = np.unique(iid, return_inverse=True)
                lo = np.full(len(ids), np.iinfo(np.int64).max)
                hi = np.full(len(ids), np.iinfo(np.int64).min)
                np.minimum.at(lo, inv, ts)
                np.maximum.at(hi, inv, ts)
                known = per.setdefault(rtype, {})
                for i, a, b in zip(ids.tolist(), lo.tolist(), hi.tolist(), strict=True):
                    old = known.get(i)
                    known[i] = (a, b) if old is None else (min(old[0], a), max(old[1], b))
    return [Coverage.scanned(r, per[r]) for r in sorted(per)], counts


def _first_rtype(path: str) -> int | None:
    """Return the rtype of a file's first record (None if it holds none)."""
    with DBNReader(path, batch_records=1) as reader:
        chunk = reader.next_chunk()
    if chunk is None:
        return None
    for rtype, positions in chunk.positions.items():
        if len(positions) and int(positions[0]) == chunk.start_record:
            return rtype
    return -1  # a definition or another non-trade record first


def _coverages(header: DBNHeader) -> list[Coverage]:
    """Trade coverage of one data input (see :mod:`models.selection`)."""
    expected = SCHEMA_RTYPE.get(header.schema or "")
    if header.schema is not None and expected is None:
        return []  # ohlcv, statistics, ...: no trades
    if expected is not None:
        first = _first_rtype(header.path)
        if first in (expected, None):
            end = header.end_ns or 2**63 - 1
            ids = frozenset(header.symbol_by_id) or None
            return [Coverage.span(expected, ids, header.start_ns, end)]
        log.warning("%s: the header says schema %s but the records are %s: reading the records' "
                    "own types", header.path, header.schema,
                    rtype_name(first) if first is not None and first >= 0 else "not trades")
    coverages, _counts = _scan_coverage(header.path)
    return coverages


def plan_inputs(patterns: list[str], trade_schema: str = "auto") -> InputPlan:
    """Expand, read headers, identify inputs by content and resolve their trade selection.

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
    ids: list[str] = []
    first_path: dict[str, str] = {}
    for path in expand_patterns(patterns):
        header = read_header(path)
        ident = content_id(path, header)
        if ident in first_path:
            log.warning("%s has the same content as %s: read once", path, first_path[ident])
            plan.duplicates.append((first_path[ident], path))
            continue
        first_path[ident] = path
        plan.symbols.update(header.symbol_by_id)
        if header.schema == "definition":
            plan.definition_files.append(path)
            plan.definitions.extend(read_definitions(path))
        else:
            headers.append(header)
            ids.append(ident)
    if not headers:
        msg = f"IFD_SOURCE holds only definition files, no data: {patterns}"
        raise SourceError(msg)

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
    if trade_schema == "auto":
        coverages = [_coverages(h) for h in headers]
        selections = select(coverages, [root(i) for i in range(len(headers))])
    else:
        wanted = SCHEMA_RTYPE[trade_schema]
        selections = [TradeSelection.only(wanted) for _ in headers]
    for header, ident, selection in zip(headers, ids, selections, strict=True):
        if selection.blockers:
            log.info("%s: trades of %s count except where a richer schema carries them",
                     header.path, "/".join(sorted(rtype_name(r) for r in selection.counted)))
        plan.data.append(DataInput(header.path, ident, header, selection.rtype, selection))
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


SPLIT_NEVER = frozenset({"mbo"})
"""Schemas whose series stay whole: an MBO order book carries from file to file."""


def split_series(partitions: list[list[DataInput]], session_of: Callable[[int], int],
                 ) -> tuple[list[list[DataInput]], dict[str, DataInput]]:
    """Split file series into one partition per file where that changes no result.

    A series (:func:`partition_inputs`) is read by one source partition so that day *d*'s tick
    test sees day *d - 1*'s last trades. The tick memory resets at each CME session
    (:mod:`flows.aggressor`), so the only state a file needs from the files before it is the
    tick memory of the session it starts in. File *k* becomes its own partition when that
    session began after file *k - 1*'s start (``session_of(start[k-1]) != session_of(start[k])``,
    e.g. daily UTC files: the 17:00 CT open falls inside the previous file): every earlier trade
    of the session is then in file *k - 1*, which the new partition reads first as a warm-up
    (:attr:`models.batch.SourceBatch.warm_for_ns`). Other files stay in their series (hourly
    files within one session; headers without a start), and so do MBO series (the order book
    carries over) and mixed-schema files.

    Parameters
    ----------
    partitions : list[list[DataInput]]
        From :func:`partition_inputs`.
    session_of : callable
        Trading day of a time in ns UTC
        (:meth:`flows.exchange_time.CmeSessions.locate_ns`); non-decreasing in time.

    Returns
    -------
    (partitions, warm_from)
        The new partitions in time order, keyed by their first file's ``source_id`` as before,
        and for every partition that needs one, the file it warms up from (by partition key).
    """
    out: list[list[DataInput]] = []
    warm_from: dict[str, DataInput] = {}
    for series in partitions:
        current = [series[0]]
        out.append(current)
        for before, item in zip(series, series[1:], strict=False):
            schemas = {before.header.schema, item.header.schema}
            splittable = None not in schemas and not schemas & SPLIT_NEVER and \
                before.header.start_ns > 0 and item.header.start_ns > 0
            if splittable and session_of(before.header.start_ns) != session_of(item.header.start_ns):
                current = [item]
                out.append(current)
                warm_from[item.source_id] = before
            else:
                current.append(item)
    out.sort(key=lambda files: (files[0].header.start_ns, files[0].source_id))
    return out, warm_from

