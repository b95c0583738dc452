"""Content checks on normalised trades: implausible records become dead letters.

Framing (rtype, record length, truncation) is checked by the reader
(:mod:`connectors.dbn`); this module checks what a valid frame can still get
wrong — a corrupt middle frame of a file without checksum, a clock glitch,
a record from the wrong file — before a trade can reach a window:

| check (per trade)                                              | dead-letter reason     |
|----------------------------------------------------------------|------------------------|
| ``ts_event`` or ``ts_recv`` = ``UNDEF_TIMESTAMP`` (2^64 − 1)   | ``undef_timestamp``    |
| ``ts_event`` outside the input's range (DBN header ``start`` / | ``ts_out_of_range``    |
| ``end``) widened by ``max_skew_ns``, or                        |                        |
| ``abs(ts_recv - ts_event) > max_skew_ns``                      |                        |
| instrument id neither in the input's metadata symbology nor in | ``unknown_instrument`` |
| any definition, when the input has symbology (a Databento      |                        |
| historical file maps every id it holds)                        |                        |

The input's event clock (its watermark, which closes windows) advances only
on records that pass the time checks (:func:`plausible_clock`), so one
record stamped 400 days ahead cannot make every later window "late".
Sources: Databento "Standards and conventions" (``UNDEF_TIMESTAMP``,
``ts_event``/``ts_recv``), DBN metadata (``start``/``end`` of the request).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import replace

import numpy as np

from flows.normalise import NormalisedBatch
from models.batch import DecodedChunk
from models.records import DeadLetters

MAX_SKEW_NS = 3_600 * 1_000_000_000
"""Default tolerance (1 h) between ``ts_event`` and ``ts_recv``, and around the header range."""


def _time_ok(ts_event: np.ndarray, ts_recv: np.ndarray, valid_ns: tuple[int, int] | None,
             max_skew_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (defined, plausible) bool masks; inputs are int64 (UNDEF_TIMESTAMP reads as -1)."""
    defined = (ts_event >= 0) & (ts_recv >= 0)
    ok = defined & (np.abs(ts_recv - np.where(defined, ts_event, ts_recv)) <= max_skew_ns)
    if valid_ns is not None:
        start, end = valid_ns
        ok &= (ts_event >= start - max_skew_ns) & (ts_event < min(end, 2**62) + max_skew_ns)
    return defined, ok


def plausible_clock(chunk: DecodedChunk, valid_ns: tuple[int, int] | None,
                    max_skew_ns: int = MAX_SKEW_NS) -> int:
    """Largest ``ts_event`` (ns UTC) among the chunk's market records that pass the time checks; 0 if none.

    Considers every record of the trade-bearing rtypes (book events too),
    never definitions or gateway-made records.
    """
    clock = 0
    for records in chunk.trades.values():
        if not len(records):
            continue
        ts_event = records["ts_event"].astype(np.int64)
        ts_recv = records["ts_recv"].astype(np.int64)
        _defined, ok = _time_ok(ts_event, ts_recv, valid_ns, max_skew_ns)
        if ok.any():
            clock = max(clock, int(ts_event[ok].max()))
    return clock


def validate_trades(
    norm: NormalisedBatch,
    *,
    source: str,
    rtype: int,
    valid_ns: tuple[int, int] | None,
    known_ids: Container[int] | None = None,
    is_defined: Container[int] | None = None,
    max_skew_ns: int = MAX_SKEW_NS,
) -> NormalisedBatch:
    """Move implausible trades of ``norm`` to its dead letters (see module table).

    Parameters
    ----------
    norm : NormalisedBatch
        Output of :func:`flows.normalise.normalise_chunk`.
    source : str
        Input id stamped on dead letters.
    rtype : int
        Record type stamped on the new dead letters.
    valid_ns : (int, int) | None
        The input's header range, ns UTC (end exclusive); None = unknown.
    known_ids : container of int | None
        Ids of the input's metadata symbology; None or empty = no check.
    is_defined : container of int | None
        Ids with a definition (in files or in-stream); they are always known.
    max_skew_ns : int
        Tolerance, ns.

    Returns
    -------
    NormalisedBatch
        Same skip counts; trades that failed a check appended to the dead letters.
    """
    t = norm.trades
    if not len(t):
        return norm
    defined, ok = _time_ok(t.ts_event, t.ts_recv, valid_ns, max_skew_ns)
    time_ok = ok
    if known_ids:
        ids, which = np.unique(t.instrument_id, return_inverse=True)
        known = np.array([(i in known_ids) or (is_defined is not None and i in is_defined)
                          for i in ids.tolist()], dtype=bool)[which]
        ok = ok & known
    if ok.all():
        return norm
    bad = ~ok
    # reason strings only for the failing rows: a time failure wins over an unknown id
    reason = np.where(~time_ok[bad], np.where(defined[bad], "ts_out_of_range", "undef_timestamp"),
                      "unknown_instrument").astype(object)
    dead = norm.dead_letters
    new = DeadLetters(
        source=source,
        position=t.position[bad],
        reason=reason,
        rtype=np.full(int(bad.sum()), rtype, dtype=np.uint8),
        instrument_id=t.instrument_id[bad].astype(np.uint32),
        ts_event=np.maximum(t.ts_event[bad], 0),
        price=t.price[bad],
        size=t.size[bad],
    )
    if len(dead):
        new = DeadLetters(
            source, *(np.concatenate([getattr(dead, f), getattr(new, f)])
                      for f in ("position", "reason", "rtype", "instrument_id", "ts_event",
                                "price", "size")))
    trades = t.take(ok)
    return replace(norm, trades=trades, dead_letters=new)
