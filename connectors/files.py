"""bytewax source replaying DBN files: one resumable partition per file series (or per file).

The partition emits one :class:`SourceBatch` (a columnar
:class:`~connectors.dbn.DecodedChunk`) per ``next_batch`` call. Its snapshot
is the position just after the last emitted record, so with bytewax recovery
enabled a restarted run continues exactly where the snapshot was taken; with
the downstream sink keyed by (source, seq) this supports exactly-once final
numbers.

File partitions (:func:`connectors.inputs.split_series`, ``IFD_REPLAY_PARTITIONS=file``):
a partition with a warm-up file first re-reads it as warm-up batches
(:attr:`~models.batch.SourceBatch.warm_for_ns`), then its own file. The partitions one
process reads run in time order, at most ``concurrency`` at a time (its workers), so every
process works on the earliest days it has and the merged event clock
(:class:`flows.clock.PartitionClock`) holds back about one file's parts, not the whole replay.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from connectors.dbn import DBNReader, DecodedChunk, SourceBatch
from connectors.inputs import DataInput
from models.errors import DBNDecodeError, record_fatal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilePosition:
    """Partition snapshot: which file of the series, and where its next batch starts."""

    offset: int
    record: int
    seq: int
    file_index: int = 0
    warming: bool = False
    """True while the partition's warm-up file is read: a resume starts the warm-up again."""


WAIT = timedelta(milliseconds=2)
"""How long the next file partition in line waits before it looks again; the one after it waits
twice that, and so on, up to :data:`MAX_WAIT` (a long replay's hundreds of waiting partitions
then cost no polling)."""
MAX_WAIT = timedelta(seconds=1)


class LocalOrder:
    """The file partitions one process reads, earliest first, ``concurrency`` at a time.

    Shared by the partitions built from one :class:`DBNFileSource` (thread-safe: with ``-w N``
    several worker threads build them). Ordering only: a partition never waits for a partition
    that is not built in this process.
    """

    def __init__(self, order: list[str], concurrency: int) -> None:
        self._rank = {key: i for i, key in enumerate(order)}
        self._concurrency = max(1, concurrency)
        self._open: list[int] = []  # ranks of the open partitions, sorted
        self._lock = threading.Lock()

    def register(self, key: str) -> None:
        """Count a partition built in this process as open."""
        with self._lock:
            rank = self._rank.get(key, 0)
            at = bisect.bisect_left(self._open, rank)
            if at == len(self._open) or self._open[at] != rank:
                self._open.insert(at, rank)

    def done(self, key: str) -> None:
        """Close ``key``: it emitted its last batch (or was closed)."""
        with self._lock:
            rank = self._rank.get(key, 0)
            at = bisect.bisect_left(self._open, rank)
            if at < len(self._open) and self._open[at] == rank:
                del self._open[at]

    def behind(self, key: str) -> int:
        """Return 0 if ``key`` may read now, else how many partitions must finish first."""
        with self._lock:
            earlier = bisect.bisect_left(self._open, self._rank.get(key, 0))
        return max(0, earlier - self._concurrency + 1)


def _valid_range(start_ns: int, end_ns: int) -> tuple[int, int] | None:
    """Return the header's request range as a plausible ``ts_event`` range (end 0 = open)."""
    if start_ns <= 0 and end_ns <= 0:
        return None
    return (start_ns, end_ns if end_ns > 0 else 2**63 - 1)


class _DBNFilePartition(StatefulSourcePartition[SourceBatch, FilePosition]):
    """Reads a series of files one after another (see ``partition_inputs``)."""

    def __init__(
        self, key: str, files: list[DataInput], batch_records: int, resume: FilePosition | None,
        warm_from: DataInput | None = None, order: LocalOrder | None = None,
    ) -> None:
        self._key = key
        self._files = files
        self._batch_records = batch_records
        self._index = 0 if resume is None else resume.file_index
        self._failed = False
        self._order = order
        self._behind = 0
        self._warm: DBNReader | None = None
        self._warm_from = warm_from
        self._warm_seq = 0
        self._position: FilePosition
        self._open(resume)
        if warm_from is not None and (resume is None or resume.warming):
            self._position = FilePosition(self._position.offset, 0, 0, 0, warming=True)
            self._open_warm_up(warm_from)
        if order is not None:
            order.register(key)

    def _open_warm_up(self, data: DataInput) -> None:
        try:
            self._warm = DBNReader(data.path, batch_records=self._batch_records)
        except DBNDecodeError as exc:
            self._warm_failed(exc)

    def _warm_failed(self, exc: DBNDecodeError) -> None:
        assert self._warm_from is not None
        log.warning("%s: tick-test warm-up from %s stopped (%s); the first trades of the file "
                    "may take another tick-test side than in a series run",
                    self._files[0].path, self._warm_from.path, exc)
        self._end_warm_up()

    def _end_warm_up(self) -> None:
        if self._warm is not None:
            self._warm.close()
        self._warm = None
        self._position = FilePosition(self._position.offset, 0, 0, 0)

    def _warm_up_batch(self) -> list[SourceBatch]:
        """Read the next warm-up batch; [] once the warm-up file is done (then the own files)."""
        assert self._warm is not None and self._warm_from is not None
        try:
            chunk = self._warm.next_chunk()
        except DBNDecodeError as exc:
            self._warm_failed(exc)
            return []
        if chunk is None:
            self._end_warm_up()
            return []
        data = self._warm_from
        batch = SourceBatch(
            source=data.source_id, seq=self._warm_seq, trade_rtype=data.trade_rtype, chunk=chunk,
            bytes_read=0, total_bytes=0, eof=False, partition=self._key,
            selection=data.selection,
            valid_ns=_valid_range(self._warm.header.start_ns, self._warm.header.end_ns),
            path=data.path, warm_for_ns=self._files[0].header.start_ns,
        )
        self._warm_seq += 1
        return [batch]

    def _open(self, resume: FilePosition | None) -> None:
        data = self._files[self._index]
        self._seq = 0 if resume is None else resume.seq
        self._reader = DBNReader(
            data.path,
            batch_records=self._batch_records,
            resume_offset=None if resume is None else resume.offset,
            resume_record=0 if resume is None else resume.record,
        )
        self._position = resume or FilePosition(
            self._reader.header.records_offset, 0, 0, self._index)

    @override
    def next_batch(self) -> list[SourceBatch]:
        if self._failed:
            self._finish()
            raise StopIteration
        self._behind = 0 if self._order is None else self._order.behind(self._key)
        if self._behind:
            return []
        if self._warm is not None:
            warm = self._warm_up_batch()
            if warm:
                return warm
        try:
            chunk = self._reader.next_chunk()
            if chunk is None and self._position.record == 0:
                self._warn_empty()
            while chunk is None and self._index + 1 < len(self._files):
                self._reader.close()
                self._index += 1
                self._open(None)
                chunk = self._reader.next_chunk()
                if chunk is None:
                    self._warn_empty()
        except DBNDecodeError as exc:
            return [self._error_batch(exc)]
        if chunk is None:
            self._finish()
            raise StopIteration
        data = self._files[self._index]
        batch = SourceBatch(
            source=data.source_id,
            seq=self._seq,
            trade_rtype=data.trade_rtype,
            chunk=chunk,
            bytes_read=self._reader.compressed_position,
            total_bytes=self._reader.total_bytes,
            eof=self._reader.exhausted,
            partition=self._key,
            selection=data.selection,
            valid_ns=_valid_range(self._reader.header.start_ns, self._reader.header.end_ns),
            path=data.path,
            last=self._reader.exhausted and self._index + 1 == len(self._files),
        )
        self._seq += 1
        self._position = FilePosition(chunk.end_offset, chunk.start_record + chunk.n_records,
                                      self._seq, self._index)
        if batch.last:
            self._finish()
        return [batch]

    def _finish(self) -> None:
        """Let the next partition of this process start (its last batch is out)."""
        if self._order is not None:
            self._order.done(self._key)

    def _warn_empty(self) -> None:
        log.warning("%s holds no records after its metadata: an empty request, or a file cut "
                    "at the end of its first zstd frame (re-fetch it if data was expected)",
                    self._files[self._index].path)

    def _error_batch(self, exc: DBNDecodeError) -> SourceBatch:
        """Build the partition's final batch after a decode error: no records, the error, ``last``.

        The records before the fault were already emitted; the run exits
        non-zero at the end (``record_fatal``) and its summary says it is partial.
        """
        later = len(self._files) - self._index - 1
        text = str(exc) + (f"; {later} later file(s) of this series not read" if later else "")
        log.error("input error: %s", text)
        record_fatal(exc)
        self._failed = True
        data = self._files[self._index]
        record = self._position.record
        batch = SourceBatch(
            source=data.source_id,
            seq=self._seq,
            trade_rtype=data.trade_rtype,
            chunk=DecodedChunk(start_record=record, n_records=0, end_offset=self._position.offset),
            bytes_read=self._reader.compressed_position,
            total_bytes=self._reader.total_bytes,
            eof=True,
            partition=self._key,
            selection=data.selection,
            valid_ns=_valid_range(self._reader.header.start_ns, self._reader.header.end_ns),
            path=data.path,
            error=text,
            last=True,
        )
        self._seq += 1
        self._position = FilePosition(self._position.offset, record, self._seq, self._index)
        return batch

    @override
    def next_awake(self) -> datetime | None:
        if not self._behind:
            return None
        return datetime.now(UTC) + min(MAX_WAIT, WAIT * 2 ** min(self._behind - 1, 10))

    @override
    def snapshot(self) -> FilePosition:
        return self._position

    @override
    def close(self) -> None:
        self._finish()
        self._reader.close()
        if self._warm is not None:
            self._warm.close()


class DBNFileSource(FixedPartitionedSource[SourceBatch, FilePosition]):
    """Replay DBN files (``.dbn``/``.dbn.zst``, versions 1-3, any schema).

    Parameters
    ----------
    partitions : list[list[DataInput]]
        From :func:`connectors.inputs.partition_inputs`: each inner list is a
        series of files read in order by one partition, keyed by its first
        file's name.
    batch_records : int
        Records per emitted batch.
    warm_from : dict[str, DataInput] | None
        File partitions (:func:`connectors.inputs.split_series`): partition key → the file it
        re-reads first as warm-up. Set, the partitions one process reads go in time order,
        ``concurrency`` at a time.
    process : (index, count) | None
        With file partitions: this process's ``-i`` and the number of processes; each lists
        every ``count``-th partition from ``index`` (None: every process lists every partition
        and bytewax assigns them).
    concurrency : int
        Workers of this process (``-w``): file partitions read at once.

    Notes
    -----
    Supports exactly-once processing with bytewax recovery: the snapshot is
    the file index and byte offset after the last emitted record. Decode
    errors raise :class:`~models.errors.DBNDecodeError` naming the file and
    offset.
    """

    def __init__(self, partitions: list[list[DataInput]], *, batch_records: int = 262_144,
                 warm_from: dict[str, DataInput] | None = None,
                 process: tuple[int, int] | None = None, concurrency: int = 1) -> None:
        self._partitions = {files[0].source_id: files for files in partitions}
        self._batch_records = batch_records
        self._warm_from = warm_from or {}
        keys = list(self._partitions)
        if process is not None and self._warm_from:
            index, count = process
            keys = keys[index::count]  # interleaved: every process starts on the earliest days
        self._local = keys
        self._order = LocalOrder(keys, concurrency) if self._warm_from else None

    @override
    def list_parts(self) -> list[str]:
        return list(self._local)

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> _DBNFilePartition:
        return _DBNFilePartition(for_part, self._partitions[for_part], self._batch_records,
                                 resume_state, self._warm_from.get(for_part), self._order)
