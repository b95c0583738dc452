"""bytewax source replaying DBN files: one resumable partition per file series.

The partition emits one :class:`SourceBatch` (a columnar
:class:`~connectors.dbn.DecodedChunk`) per ``next_batch`` call. Its snapshot
is the position just after the last emitted record, so with bytewax recovery
enabled a restarted run continues exactly where the snapshot was taken; with
the downstream sink keyed by (source, seq) this supports exactly-once final
numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
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


def _valid_range(start_ns: int, end_ns: int) -> tuple[int, int] | None:
    """Return the header's request range as a plausible ``ts_event`` range (end 0 = open)."""
    if start_ns <= 0 and end_ns <= 0:
        return None
    return (start_ns, end_ns if end_ns > 0 else 2**63 - 1)


class _DBNFilePartition(StatefulSourcePartition[SourceBatch, FilePosition]):
    """Reads a series of files one after another (see ``partition_inputs``)."""

    def __init__(
        self, key: str, files: list[DataInput], batch_records: int, resume: FilePosition | None
    ) -> None:
        self._key = key
        self._files = files
        self._batch_records = batch_records
        self._index = 0 if resume is None else resume.file_index
        self._failed = False
        self._open(resume)

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
            raise StopIteration
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
        return [batch]

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
        return None

    @override
    def snapshot(self) -> FilePosition:
        return self._position

    @override
    def close(self) -> None:
        self._reader.close()


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

    Notes
    -----
    Supports exactly-once processing with bytewax recovery: the snapshot is
    the file index and byte offset after the last emitted record. Decode
    errors raise :class:`~models.errors.DBNDecodeError` naming the file and
    offset.
    """

    def __init__(self, partitions: list[list[DataInput]], *, batch_records: int = 262_144) -> None:
        self._partitions = {files[0].source_id: files for files in partitions}
        self._batch_records = batch_records

    @override
    def list_parts(self) -> list[str]:
        return list(self._partitions)

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> _DBNFilePartition:
        return _DBNFilePartition(for_part, self._partitions[for_part], self._batch_records,
                                 resume_state)
