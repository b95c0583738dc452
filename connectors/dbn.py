"""Columnar DBN decoding: ``.dbn`` / ``.dbn.zst`` → numpy structured arrays.

The reader streams the (optionally zstd-compressed) file in micro-batches and
views trade-bearing records straight out of the decompressed bytes with
``numpy.frombuffer`` — no Python object per record. Layouts are those of
``databento_dbn`` (``MBOMsg._dtypes`` …), which are identical in DBN versions
1, 2 and 3 for these record types (Databento, "DBN encoding" / version
upgrade notes: only definition, statistics, error, system and symbol-mapping
records changed).

| rtype (schema)               | what the reader yields                        |
|------------------------------|-----------------------------------------------|
| 0x00 ``trades``              | ``TradeMsg`` structured array                 |
| 0x01 ``mbp-1`` / ``tbbo``    | ``MBP1Msg`` structured array                  |
| 0x0A ``mbp-10``              | ``MBP10Msg`` structured array                 |
| 0xA0 ``mbo``                 | ``MBOMsg`` structured array                   |
| 0x13 ``definition``          | :class:`~models.records.InstrumentDefinition` |
| anything else                | counted in ``DecodedChunk.skipped`` by name   |

Single-schema files take a fast path (one ``frombuffer`` per batch, validated
vectorially); mixed-schema files (schema ``None`` in the metadata, as written
by live sessions) are walked record by record to find boundaries, then
gathered per rtype with one fancy-index each.

Errors name the file and the decompressed byte offset:
:class:`~models.errors.DBNDecodeError` for a bad magic, unsupported version,
zero-length record, truncated header or record, or a corrupt zstd stream.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import databento_dbn as dbn
import numpy as np
import zstandard

from models.batch import (  # noqa: F401 - re-exported: the reader's public contract
    RTYPE_DEFINITION,
    RTYPE_MBO,
    RTYPE_MBP1,
    RTYPE_MBP10,
    RTYPE_STATISTICS,
    RTYPE_TRADES,
    SCHEMA_RTYPE,
    STAT_OPEN_INTEREST,
    TRADE_RTYPE_DTYPES,
    DecodedChunk,
    SourceBatch,
    rtype_name,
)
from models.errors import DBNDecodeError
from models.records import (
    UNDEF_PRICE,
    UNDEF_TIMESTAMP,
    InstrumentDefinition,
    SpreadLeg,
    merge_leg_records,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DBN_MAGIC = b"DBN"
PRELUDE_LEN = 8
"""``b"DBN"`` + version byte + uint32 LE metadata length."""
RECORD_HEADER_LEN = 16

_GATEWAY_RTYPES = np.array([int(dbn.RType.ERROR), int(dbn.RType.SYMBOL_MAPPING), int(dbn.RType.SYSTEM)],
                           dtype=np.uint8)
"""Records a gateway makes (error, symbol mapping, system): their ts_event is the gateway clock."""

_RTYPE_NAMES = {int(v): v.name.lower() for v in dbn.RType.variants()}
_KNOWN_RTYPES = np.array(sorted(_RTYPE_NAMES), dtype=np.uint8)
DEFINITION_SIZES = {1: 360, 2: 400, 3: 520}
"""Bytes of an ``InstrumentDefMsg`` per DBN version (databento_dbn V1/V2/current)."""


@functools.lru_cache(maxsize=8)
def _expected_lengths(version: int, ts_out: bool) -> np.ndarray:
    """Rtype → record length in bytes for fixed-size rtypes, -1 where the length may vary."""
    extra = 8 if ts_out else 0
    out = np.full(256, -1, dtype=np.int64)
    for rtype, dtype in TRADE_RTYPE_DTYPES.items():
        out[rtype] = dtype.itemsize + extra
    out[RTYPE_DEFINITION] = DEFINITION_SIZES.get(version, -1 - extra) + extra
    return out


@dataclass(frozen=True)
class DBNHeader:
    """The metadata of one DBN input.

    Attributes
    ----------
    path : str
        File path as given.
    version : int
        DBN version byte of the file (1, 2 or 3).
    schema : str | None
        Schema name (``"mbo"``), or None for a mixed-schema file.
    dataset : str
        e.g. ``"GLBX.MDP3"``.
    start_ns, end_ns : int
        Requested time range, ns since epoch UTC (``end_ns`` may be 0 if unknown).
    symbols : tuple[str, ...]
        Requested symbols (raw or parent, e.g. ``"NQ.OPT"``).
    symbol_by_id : dict[int, str]
        Symbology fallback from metadata mappings: instrument_id → raw symbol.
    ts_out : bool
        Whether each record carries an extra 8-byte gateway send timestamp.
    records_offset : int
        Decompressed byte offset of the first record.
    """

    path: str
    version: int
    schema: str | None
    dataset: str
    start_ns: int
    end_ns: int
    symbols: tuple[str, ...]
    symbol_by_id: dict[int, str]
    ts_out: bool
    records_offset: int


class _Truncated(Exception):  # noqa: N818 - internal signal, never escapes the reader
    """The compressed stream ended inside a zstd frame after ``produced`` decompressed bytes."""

    def __init__(self, produced: int) -> None:
        super().__init__(produced)
        self.produced = produced


class _Corrupt(Exception):  # noqa: N818 - internal signal, never escapes the reader
    """A zstd block failed to decode after ``produced`` decompressed bytes."""

    def __init__(self, produced: int, exc: zstandard.ZstdError) -> None:
        super().__init__(produced, exc)
        self.produced, self.exc = produced, exc


class _ZstdFrames:
    """Decompress concatenated zstd frames from ``raw`` and notice a frame cut short.

    ``zstandard``'s stream reader returns a clean end of data when the file
    stops inside a frame, so a ``.dbn.zst`` cut where a block ends on a record
    boundary would read as a shorter, valid file. Here each frame must reach
    its end (``decompressobj().eof``, zstd frame format, RFC 8878 §3.1.1);
    when the file ends first, every byte that could be decoded is returned,
    then :class:`_Truncated` is raised.
    """

    CHUNK = 1 << 17
    """Compressed bytes fed at a time (one zstd block at most is 128 KiB), so a corrupt block
    loses no decoded output from the blocks before it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._pieces: list[bytes] = []
        """Decompressed output not yet read, in order (joined once per ``read``: one copy)."""
        self._held = 0
        self._raw_eof = False
        self._error: zstandard.ZstdError | None = None
        self._error_at = 0
        self.produced = 0

    def _feed(self, data: bytes) -> None:
        while data:
            self._in_frame = True
            try:
                out = self._obj.decompress(data)
            except zstandard.ZstdError as exc:  # raised once the bytes before it are read
                self._error, self._error_at = exc, self.produced
                self._raw_eof = True
                return
            if out:
                self._pieces.append(out)
                self._held += len(out)
            self.produced += len(out)
            if not self._obj.eof:
                return
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._in_frame = False

    def read(self, n: int) -> bytes:
        while self._held < n and not self._raw_eof:
            data = self._raw.read(self.CHUNK)
            if not data:
                self._raw_eof = True
                break
            self._feed(data)
        out = self._take(n)
        if not out and n > 0 and self._error is not None:
            raise _Corrupt(self._error_at, self._error)
        if not out and n > 0 and self._raw_eof and self._in_frame:
            raise _Truncated(self.produced)
        return out

    def _take(self, n: int) -> bytes:
        """Return the first ``n`` held bytes (all of them if fewer), copied once."""
        pieces, taken, size = self._pieces, 0, 0
        while taken < len(pieces) and size + len(pieces[taken]) <= n:
            size += len(pieces[taken])
            taken += 1
        head = pieces[:taken]
        if taken < len(pieces) and size < n:  # split the piece that crosses n
            cut = n - size
            head.append(pieces[taken][:cut])
            pieces[taken] = pieces[taken][cut:]
        del pieces[:taken]
        out = head[0] if len(head) == 1 else b"".join(head)
        self._held -= len(out)
        return out


def _open_stream(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """Open ``path`` and return ``(decompressed_stream, raw_file)``."""
    raw = path.open("rb")
    magic = raw.read(4)
    raw.seek(0)
    if magic == ZSTD_MAGIC:
        return _ZstdFrames(raw), raw  # type: ignore[return-value]
    return raw, raw


def _read_exact(stream: BinaryIO, n: int, path: str, offset: int, what: str) -> bytes:
    try:
        data = stream.read(n)
    except zstandard.ZstdError as exc:
        raise DBNDecodeError(path, offset, f"corrupt zstd stream: {exc}") from exc
    except _Truncated as exc:
        raise DBNDecodeError(path, exc.produced, f"file is truncated inside the {what}") from None
    except _Corrupt as exc:
        raise DBNDecodeError(path, exc.produced, f"corrupt zstd stream in the {what}: {exc.exc}") from None
    if len(data) < n:
        raise DBNDecodeError(path, offset + len(data), f"truncated {what}: need {n} bytes")
    return data


def _symbol_by_id(metadata: dbn.Metadata) -> dict[int, str]:
    out: dict[int, str] = {}
    for raw_symbol, intervals in metadata.mappings.items():
        for interval in intervals:
            sym = interval["symbol"] if isinstance(interval, dict) else interval.symbol
            if sym.isdigit():
                out[int(sym)] = raw_symbol
    return out


def _parse_header(stream: BinaryIO, path: str) -> DBNHeader:
    prelude = _read_exact(stream, PRELUDE_LEN, path, 0, "DBN metadata prelude")
    if prelude[:3] != DBN_MAGIC:
        raise DBNDecodeError(path, 0, f"not a DBN file (magic {prelude[:3]!r}, expected b'DBN')")
    version = prelude[3]
    if version not in (1, 2, 3):
        raise DBNDecodeError(path, 3, f"unsupported DBN version {version} (supported: 1, 2, 3)")
    meta_len = int.from_bytes(prelude[4:8], "little")
    body = _read_exact(stream, meta_len, path, PRELUDE_LEN, "DBN metadata")
    try:
        metadata = dbn.Metadata.decode(prelude + body)
    except Exception as exc:  # databento_dbn raises a plain Exception subclass
        raise DBNDecodeError(path, PRELUDE_LEN, f"invalid DBN metadata: {exc}") from exc
    schema = metadata.schema
    return DBNHeader(
        path=path,
        version=version,
        schema=None if schema is None else str(schema.value if hasattr(schema, "value") else schema),
        dataset=str(metadata.dataset),
        start_ns=int(metadata.start),
        end_ns=0 if metadata.end is None or metadata.end >= UNDEF_TIMESTAMP else int(metadata.end),
        symbols=tuple(metadata.symbols),
        symbol_by_id=_symbol_by_id(metadata),
        ts_out=bool(metadata.ts_out),
        records_offset=PRELUDE_LEN + meta_len,
    )


def read_header(path: str | Path) -> DBNHeader:
    """Read only the metadata header of a DBN file.

    Raises
    ------
    DBNDecodeError
        Not DBN, unsupported version, or truncated/corrupt header.
    OSError
        The file cannot be opened.
    """
    stream, raw = _open_stream(Path(path))
    try:
        return _parse_header(stream, str(path))
    finally:
        raw.close()


def _leg_from_msg(msg: dbn.InstrumentDefMsg) -> tuple[SpreadLeg, ...]:
    """Return the leg this record describes (DBN v3 leg fields; none when ``leg_count`` is 0)."""
    if not int(msg.leg_count):
        return ()
    side = str(getattr(msg.leg_side, "value", msg.leg_side) or "N")
    numerator, denominator = int(msg.leg_ratio_qty_numerator), int(msg.leg_ratio_qty_denominator)
    ratio = max(1, numerator // denominator if denominator else numerator)
    return (SpreadLeg(index=int(msg.leg_index), instrument_id=int(msg.leg_instrument_id),
                      side=1 if side == "B" else -1 if side == "A" else 0, ratio=ratio),)


def _definition_from_msg(msg: dbn.InstrumentDefMsg) -> InstrumentDefinition:
    strike = int(msg.strike_price)
    expiration = int(msg.expiration)
    return InstrumentDefinition(
        instrument_id=int(msg.instrument_id),
        raw_symbol=str(msg.raw_symbol),
        instrument_class=str(msg.instrument_class),
        underlying=str(msg.underlying),
        expiration_ns=None if expiration >= UNDEF_TIMESTAMP else expiration,
        strike_price=None if strike == UNDEF_PRICE else strike,
        ts_recv=int(msg.ts_recv),
        legs=_leg_from_msg(msg),
        multiplier=_multiplier(msg),
    )


def _multiplier(msg: dbn.InstrumentDefMsg) -> float | None:
    """USD per index point per contract: ``unit_of_measure_qty`` of an ``IPNT`` instrument."""
    qty = int(msg.unit_of_measure_qty)
    if qty <= 0 or qty == UNDEF_PRICE or str(msg.unit_of_measure) != "IPNT":
        return None
    return qty / 1e9


class DBNReader:
    """Iterate a DBN file as :class:`DecodedChunk` micro-batches.

    Parameters
    ----------
    path : str | pathlib.Path
        ``.dbn`` or ``.dbn.zst`` file (zstd is detected by magic, not name).
    batch_records : int
        Target records per chunk (the last chunk may be shorter).
    resume_offset : int | None
        Decompressed byte offset to resume from (a previous chunk's
        ``end_offset``); None starts at the first record.
    resume_record : int
        File-wide index of the record at ``resume_offset``.

    Raises
    ------
    DBNDecodeError
        While iterating, on any malformed content (see module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_records: int = 65_536,
        resume_offset: int | None = None,
        resume_record: int = 0,
    ) -> None:
        self.path = str(path)
        self.batch_records = batch_records
        self._stream, self._raw = _open_stream(Path(path))
        self.header = _parse_header(self._stream, self.path)
        self.total_bytes = Path(path).stat().st_size
        self._offset = self.header.records_offset
        self._record = resume_record
        self._carry = b""
        self._eof = False
        self._extra = 8 if self.header.ts_out else 0
        self._stream_error: DBNDecodeError | None = None
        """Set when the compressed stream ended early or is corrupt; raised once the whole
        records before the fault have been returned."""
        self._def_decoder_version = self.header.version
        if resume_offset is not None and resume_offset > self._offset:
            self._skip_to(resume_offset)
        expected = SCHEMA_RTYPE.get(self.header.schema or "")
        self._uniform_rtype = expected
        self._uniform_size = (
            TRADE_RTYPE_DTYPES[expected].itemsize + self._extra if expected is not None else 0
        )

    def _skip_to(self, offset: int) -> None:
        remaining = offset - self._offset
        while remaining > 0:
            got = self._read(min(remaining, 1 << 24))
            if not got:
                raise DBNDecodeError(self.path, self._offset, "resume offset beyond end of file")
            remaining -= len(got)
            self._offset += len(got)

    def _read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except zstandard.ZstdError as exc:
            raise DBNDecodeError(self.path, self._offset, f"corrupt zstd stream: {exc}") from exc
        except _Truncated as exc:
            raise DBNDecodeError(self.path, exc.produced, "file is truncated: it ends inside a "
                                 "zstd frame") from None
        except _Corrupt as exc:
            raise DBNDecodeError(self.path, exc.produced, f"corrupt zstd stream: {exc.exc}") from None

    def _raise_stream_error(self) -> None:
        """Raise the stream fault met earlier, once only partial bytes remain before it."""
        err = self._stream_error
        if err is not None:
            raise DBNDecodeError(err.path, err.offset,
                                 err.reason.replace("{record}", str(self._record - 1)))

    def _fault(self, exc: DBNDecodeError, have: int) -> DBNDecodeError:
        """Re-word a stream fault met after ``have`` buffered bytes (records before it come first)."""
        kind = "truncated" if "truncated" in exc.reason else "corrupt"
        return DBNDecodeError(
            self.path, max(exc.offset, self._offset + have),
            f"file is {kind}: {exc.reason}; records up to #{{record}} were read, "
            "the rest of the file is lost (re-fetch it)",
        )

    @property
    def exhausted(self) -> bool:
        """True once every record has been returned."""
        return self._eof and not self._carry

    @property
    def compressed_position(self) -> int:
        """Bytes of the underlying (compressed) file consumed so far."""
        try:
            return min(self._raw.tell(), self.total_bytes)
        except (OSError, ValueError):
            return self.total_bytes

    def close(self) -> None:
        """Close the file."""
        self._raw.close()

    def __enter__(self) -> DBNReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[DecodedChunk]:
        while True:
            chunk = self.next_chunk()
            if chunk is None:
                return
            yield chunk

    def next_chunk(self) -> DecodedChunk | None:
        """Decode the next micro-batch; None at end of file.

        Raises
        ------
        DBNDecodeError
            Malformed or truncated content; the message names file and offset.
        """
        if self._eof and not _whole_record(self._carry):
            self._raise_stream_error()
        if self._eof and not self._carry:
            return None
        if self._uniform_size:
            want = self.batch_records * self._uniform_size
        else:  # unknown sizes: read ahead, the walk stops at batch_records records
            want = max(self.batch_records * 64, 1 << 16)
        buf = self._fill(want)
        if not _whole_record(buf):
            self._carry = buf
            self._raise_stream_error()
        if not buf:
            return None
        if self._uniform_rtype is not None:
            chunk = self._decode_uniform(buf)
            if chunk is not None:
                return chunk
            # not uniform (interleaved or mislabelled records): walk, with room for other sizes
            self._carry = buf
            buf = self._fill(max(self.batch_records * 64, 1 << 16))
            if not _whole_record(buf):
                self._carry = buf
                self._raise_stream_error()
        return self._decode_walk(buf)

    def _fill(self, want: int) -> bytes:
        """Return carried-over bytes plus fresh data, up to ``want`` bytes."""
        buf = self._carry
        while len(buf) < want and not self._eof:
            try:
                data = self._read(want - len(buf))
            except DBNDecodeError as exc:  # keep the whole records before the fault
                self._stream_error = self._fault(exc, len(buf))
                self._eof = True
                break
            if not data:
                self._eof = True
            buf += data
        self._carry = b""
        return buf

    def _truncated(self, buf_len: int, need: int) -> DBNDecodeError:
        return DBNDecodeError(
            self.path,
            self._offset,
            f"truncated record #{self._record}: {buf_len} trailing bytes, record needs {need}",
        )

    def _decode_uniform(self, buf: bytes) -> DecodedChunk | None:
        """Fast path for single-schema files; None if the bytes are not uniform."""
        size = self._uniform_size
        n = len(buf) // size
        if n == 0:
            if self._eof:
                raise self._truncated(len(buf), size)
            return None
        rtype = self._uniform_rtype
        assert rtype is not None
        head = np.frombuffer(buf, dtype=np.uint8, count=n * size).reshape(n, size)
        if not (np.all(head[:, 0] == size // 4) and np.all(head[:, 1] == rtype)):
            return None  # interleaved system/mapping records: walk this chunk
        dtype = TRADE_RTYPE_DTYPES[rtype]
        if self._extra:
            records = np.ascontiguousarray(head[:, : dtype.itemsize]).view(dtype).reshape(n)
        else:
            records = np.frombuffer(buf, dtype=dtype, count=n)
        if n > 1 and (not self._eof or len(buf) > n * size):
            # never split one match event (equal ts_event: a spread and its legs, one
            # aggressor filling several levels) across chunks: its trailing run waits
            ts = records["ts_event"]
            changes = np.flatnonzero(ts[1:] != ts[:-1])
            if len(changes):
                n = int(changes[-1]) + 1
                records = records[:n]
        self._carry = buf[n * size :]  # a partial tail raises on the next call
        chunk = DecodedChunk(
            start_record=self._record,
            n_records=n,
            end_offset=self._offset + n * size,
            trades={rtype: records},
            positions={rtype: np.arange(self._record, self._record + n, dtype=np.int64)},
            max_ts_event=int(records["ts_event"].max()),
        )
        self._offset += n * size
        self._record += n
        return chunk

    def _decode_walk(self, buf: bytes) -> DecodedChunk:
        """General path: find record boundaries, then gather per rtype."""
        chunk, consumed = decode_records(
            buf, path=self.path, start_record=self._record, start_offset=self._offset,
            version=self.header.version, ts_out=self.header.ts_out, limit=self.batch_records,
        )
        self._carry = buf[consumed:]  # a partial tail raises on the next call
        self._offset += consumed
        self._record += chunk.n_records
        return chunk


def _whole_record(buf: bytes) -> bool:
    """Return True when ``buf`` starts with at least one whole record."""
    return len(buf) >= RECORD_HEADER_LEN and RECORD_HEADER_LEN <= buf[0] * 4 <= len(buf)


def decode_records(
    buf: bytes,
    *,
    path: str,
    start_record: int = 0,
    start_offset: int = 0,
    version: int = 3,
    ts_out: bool = False,
    limit: int | None = None,
) -> tuple[DecodedChunk, int]:
    """Decode concatenated DBN records (no metadata header) into a columnar chunk.

    Used by the file reader's mixed-schema path and by the live feed (whose
    records arrive as raw bytes from the Databento client).

    Parameters
    ----------
    buf : bytes
        Whole records, possibly followed by a partial one.
    path : str
        Input name for error messages.
    start_record, start_offset : int
        Stream-wide index and byte offset of ``buf[0]``.
    version : int
        DBN version of the records (definitions are upgraded to v3).
    ts_out : bool
        Whether records carry a trailing gateway timestamp.
    limit : int | None
        Stop after this many records.

    Returns
    -------
    (DecodedChunk, int)
        The chunk and the number of bytes consumed (whole records only).

    Raises
    ------
    DBNDecodeError
        A zero-length record, or not even one whole record in ``buf``.
    """
    view = memoryview(buf)
    total = len(buf)
    offsets: list[int] = []
    pos = 0
    cap = limit if limit is not None else total
    while pos < total and len(offsets) < cap:
        length = view[pos] * 4
        if length < RECORD_HEADER_LEN:
            raise DBNDecodeError(
                path, start_offset + pos,
                f"record #{start_record + len(offsets)} has invalid length {length}",
            )
        if pos + length > total:
            break
        offsets.append(pos)
        pos += length
    if not offsets:  # fewer bytes than one record left
        need = view[pos] * 4 if pos < total else RECORD_HEADER_LEN
        raise DBNDecodeError(
            path, start_offset + pos,
            f"truncated record #{start_record}: {total - pos} trailing bytes, record needs {need}",
        )
    off = np.asarray(offsets, dtype=np.int64)
    raw = np.frombuffer(buf, dtype=np.uint8)
    rtypes = raw[off + 1]
    lengths = raw[off].astype(np.int64) * 4
    expected = _expected_lengths(version, ts_out)[rtypes]
    bad = ~np.isin(rtypes, _KNOWN_RTYPES) | ((expected >= 0) & (lengths != expected))
    if bad.any():  # framing is lost from here: keep the records before it, then stop
        j = int(np.argmax(bad))
        if j == 0:
            rtype, length = int(rtypes[0]), int(lengths[0])
            what = (f"unknown rtype 0x{rtype:02x}" if not np.isin(rtype, _KNOWN_RTYPES) else
                    f"{rtype_name(rtype)} record of {length} bytes, expected {int(expected[0])}")
            raise DBNDecodeError(path, start_offset + int(off[0]),
                                 f"corrupt record #{start_record}: {what}")
        pos = int(off[j])
        off, rtypes = off[:j], rtypes[:j]
    index = np.arange(start_record, start_record + len(off), dtype=np.int64)
    chunk = DecodedChunk(start_record=start_record, n_records=len(off), end_offset=0)
    ts_event = np.zeros(len(off), dtype=np.uint64)
    for rtype in np.unique(rtypes).tolist():
        sel = rtypes == rtype
        starts = off[sel]
        ts_event[sel] = raw[starts[:, None] + np.arange(8, 16)].copy().view("<u8").ravel()
        dtype = TRADE_RTYPE_DTYPES.get(rtype)
        if dtype is not None:
            rows = raw[starts[:, None] + np.arange(dtype.itemsize)]
            chunk.trades[rtype] = np.ascontiguousarray(rows).view(dtype).reshape(-1)
            chunk.positions[rtype] = index[sel]
        elif rtype == RTYPE_DEFINITION:
            chunk.definitions.extend(
                _decode_definitions(view, starts, path, start_offset, version, ts_out))
        elif rtype == RTYPE_STATISTICS:
            stats = _stat_dtype(version)
            rows = np.ascontiguousarray(raw[starts[:, None] + np.arange(stats.itemsize)])
            recs = rows.view(stats).reshape(-1)
            undef = np.iinfo(recs["quantity"].dtype).max
            oi = ((recs["stat_type"] == STAT_OPEN_INTEREST) & (recs["update_action"] == 1)
                  & (recs["quantity"] != undef))
            chunk.open_interest = _concat_oi(chunk.open_interest, recs[oi])
            if (~oi).any():
                chunk.skipped["statistics_other"] += int((~oi).sum())
        else:
            chunk.skipped[rtype_name(rtype)] += int(sel.sum())
    # gateway-made records (error, symbol mapping, system) carry the gateway's clock, not event time
    made = np.isin(rtypes, _GATEWAY_RTYPES)
    chunk.max_ts_event = int(ts_event[~made].max()) if not made.all() else 0
    chunk.end_offset = start_offset + pos
    return chunk, pos


def _stat_dtype(version: int) -> np.dtype:
    """``StatMsg`` layout: DBN v3 (``quantity`` int64) or v1/v2 (int32)."""
    return np.dtype(dbn.StatMsg._dtypes if version >= 3 else dbn.v1.StatMsg._dtypes)


def _concat_oi(held: dict[str, np.ndarray], recs: np.ndarray) -> dict[str, np.ndarray]:
    """Append open-interest records to a chunk's columns."""
    new: dict[str, np.ndarray] = {"instrument_id": recs["instrument_id"].astype(np.uint32),
           "ts_event": recs["ts_event"].astype(np.int64), "ts_recv": recs["ts_recv"].astype(np.int64),
           "quantity": recs["quantity"].astype(np.int64)}
    if not held:
        return new
    return {k: np.concatenate([held[k], new[k]]) for k in new}


def _decode_definitions(
    view: memoryview, starts: np.ndarray, path: str, offset: int, version: int, ts_out: bool
) -> list[InstrumentDefinition]:
    decoder = dbn.DBNDecoder(
        has_metadata=False,
        ts_out=ts_out,
        input_version=version,
        upgrade_policy=dbn.VersionUpgradePolicy.UPGRADE_TO_V3,  # type: ignore[arg-type]  # stub types members as int
    )
    for start in starts.tolist():
        decoder.write(bytes(view[start : start + view[start] * 4]))
    try:
        msgs = decoder.decode()
    except Exception as exc:  # databento_dbn.DBNError is not exported as a class
        raise DBNDecodeError(path, offset, f"bad definition record: {exc}") from exc
    return merge_leg_records(
        [_definition_from_msg(m) for m in msgs if isinstance(m, dbn.InstrumentDefMsg)])


def read_definitions(path: str | Path) -> list[InstrumentDefinition]:
    """Read every instrument definition in a DBN file (any schema, any version).

    Returns
    -------
    list[InstrumentDefinition]
        In file order.

    Raises
    ------
    DBNDecodeError
        Malformed content.
    """
    out: list[InstrumentDefinition] = []
    with DBNReader(path, batch_records=1 << 16) as reader:
        for chunk in reader:
            out.extend(chunk.definitions)
    return out


def scan_rtypes(path: str | Path) -> Counter[int]:
    """Count records per rtype in a DBN file (used to resolve mixed-schema inputs)."""
    counts: Counter[int] = Counter()
    with DBNReader(path, batch_records=1 << 16) as reader:
        for chunk in reader:
            for rtype, rows in chunk.trades.items():
                counts[rtype] += len(rows)
            counts[RTYPE_DEFINITION] += len(chunk.definitions)
    return counts


__all__ = [
    "DBNHeader",
    "DBNReader",
    "SourceBatch",
    "DecodedChunk",
    "decode_records",
    "SCHEMA_RTYPE",
    "TRADE_RTYPE_DTYPES",
    "read_definitions",
    "read_header",
    "rtype_name",
    "scan_rtypes",
]
