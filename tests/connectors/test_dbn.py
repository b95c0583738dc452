"""The columnar DBN reader against databento's own decoder, and its error messages."""

from __future__ import annotations

import databento as db
import numpy as np
import pytest
import zstandard

from connectors.dbn import RTYPE_DEFINITION, RTYPE_MBP1, RTYPE_TRADES, DBNReader, read_header
from models.errors import DBNDecodeError
from tests.dbnfiles import NS, PX, T0, records, write_dbn

ALL_REAL = [
    "esh4-glbx-mdp3-20231225.mbo.dbn.zst",
    "esu4-glbx-mdp3-20240701.trades.dbn.zst",
    "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst",
    "esm4-opt-glbx-mdp3-20240509.mbp-1.dbn.zst",
    "fixtures/test_data.mbp-10.dbn.zst",
    "fixtures/test_data.tbbo.dbn.zst",
    "fixtures/test_data.mbo.dbn.zst",
]


@pytest.mark.parametrize("name", ALL_REAL)
@pytest.mark.parametrize("batch", [1, 333, 65_536])
def test_reader_records_equal_databento_decode(real_dir, name, batch):
    path = real_dir / name
    expected = db.DBNStore.from_file(path).to_ndarray()
    with DBNReader(path, batch_records=batch) as reader:
        chunks = list(reader)
    (rtype,) = {r for c in chunks for r in c.trades}
    got = np.concatenate([c.trades[rtype] for c in chunks])
    assert len(got) == len(expected)
    for field in ("ts_event", "instrument_id", "price", "size", "action", "side", "flags"):
        assert np.array_equal(got[field], expected[field]), field
    positions = np.concatenate([c.positions[rtype] for c in chunks])
    assert np.array_equal(positions, np.arange(len(expected)))
    assert all(c.n_records <= batch for c in chunks)


def test_reader_resumes_exactly_after_a_chunk(real_dir):
    path = real_dir / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    with DBNReader(path, batch_records=1000) as reader:
        first = [reader.next_chunk() for _ in range(3)]
        rest = list(reader)
    resume = first[-1]
    with DBNReader(path, batch_records=1000, resume_offset=resume.end_offset,
                   resume_record=resume.start_record + resume.n_records) as again:
        resumed = list(again)
    assert [c.start_record for c in resumed] == [c.start_record for c in rest]
    for a, b in zip(resumed, rest, strict=True):
        assert np.array_equal(a.trades[0xA0], b.trades[0xA0])


def test_v1_definitions_are_upgraded(real_dir):
    with DBNReader(real_dir / "esm4-opt-glbx-mdp3-20240509.definition.dbn.zst") as reader:
        defs = [d for c in reader for d in c.definitions]
    assert sorted(d.raw_symbol for d in defs) == ["ESM4 P5230", "ESM4 P5250"]
    assert {d.strike_price for d in defs} == {5230 * 10**9, 5250 * 10**9}


def test_mixed_file_groups_rtypes_and_decodes_inline_definition(tmp_path, real_dir):
    raw = zstandard.ZstdDecompressor().stream_reader(
        (real_dir / "fixtures/test_data.definition.dbn.zst").open("rb")).read()
    definition = raw[8 + int.from_bytes(raw[4:8], "little"):]  # v3 record bytes
    t = records(RTYPE_TRADES, [T0 + NS, T0 + 3 * NS], 1, PX, 1, "B")
    m = records(RTYPE_MBP1, [T0 + 2 * NS], 1, PX, 1, "A", bid=PX, ask=PX + NS)
    path = write_dbn(tmp_path / "mixed.dbn", [definition, t[:1], m, t[1:]], schema=None,
                     compress=False)
    with DBNReader(path) as reader:
        (chunk,) = list(reader)
    assert chunk.n_records == 4
    assert list(chunk.positions[RTYPE_TRADES]) == [1, 3]
    assert list(chunk.positions[RTYPE_MBP1]) == [2]
    assert [d.raw_symbol for d in chunk.definitions] == ["ESH1"]
    assert chunk.max_ts_event == T0 + 3 * NS
    assert RTYPE_DEFINITION not in chunk.trades


def test_not_dbn_names_file_and_offset(tmp_path):
    path = tmp_path / "notes.dbn"
    path.write_bytes(b"hello, this is not market data")
    with pytest.raises(DBNDecodeError, match=r"notes\.dbn: not a DBN file .* offset 0"):
        read_header(path)


def test_unsupported_version_is_rejected(tmp_path):
    path = tmp_path / "v9.dbn"
    path.write_bytes(b"DBN\x09" + (10).to_bytes(4, "little") + b"\0" * 10)
    with pytest.raises(DBNDecodeError, match="unsupported DBN version 9"):
        read_header(path)


def test_truncated_record_names_file_record_and_offset(tmp_path):
    t = records(RTYPE_TRADES, [T0 + NS, T0 + 2 * NS], 1, PX, 1, "B")
    path = write_dbn(tmp_path / "cut.trades.dbn", [t], compress=False)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    header_len = len(data) - 2 * 48
    with pytest.raises(DBNDecodeError) as err, DBNReader(path) as reader:
        list(reader)
    assert "cut.trades.dbn" in str(err.value)
    assert "truncated record #1" in str(err.value)
    assert err.value.offset == header_len + 48


def test_corrupt_zstd_names_file(tmp_path, real_dir):
    data = bytearray((real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst").read_bytes())
    data[2000:2400] = b"\xff" * 400
    path = tmp_path / "corrupt.mbp-1.dbn.zst"
    path.write_bytes(bytes(data))
    with pytest.raises(DBNDecodeError, match=r"corrupt\.mbp-1\.dbn\.zst: file is corrupt: corrupt zstd"), \
            DBNReader(path) as reader:
        list(reader)


def test_zero_length_record_is_an_error_not_a_hang(tmp_path):
    t = records(RTYPE_TRADES, [T0 + NS], 1, PX, 1, "B")
    blob = bytearray(t.tobytes())
    blob[0] = 0
    path = write_dbn(tmp_path / "zero.dbn", [bytes(blob)], schema=None, compress=False)
    with pytest.raises(DBNDecodeError, match="invalid length 0"), DBNReader(path) as reader:
        list(reader)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_trade_records_read_identically_in_dbn_versions_1_to_3(tmp_path, version):
    t = records(RTYPE_TRADES, T0 + np.arange(5) * NS, [1, 2, 1, 2, 1], PX, [1, 2, 3, 4, 5], "B")
    path = write_dbn(tmp_path / f"v{version}.trades.dbn.zst", [t], version=version)
    assert read_header(path).version == version
    expected = db.DBNStore.from_file(path).to_ndarray()
    with DBNReader(path) as reader:
        (chunk,) = list(reader)
    assert np.array_equal(chunk.trades[RTYPE_TRADES]["size"], expected["size"])
    assert np.array_equal(chunk.trades[RTYPE_TRADES]["ts_event"], expected["ts_event"])


def test_zstd_stream_reads_of_any_size_return_the_bytes_in_order(tmp_path):
    """Reads smaller and larger than the decompressed pieces, across frames, give the input."""
    from connectors.dbn import _ZstdFrames

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 4, size, dtype=np.uint8).tobytes() for size in (5, 300_000, 1, 70_000)]
    path = tmp_path / "multi.zst"
    path.write_bytes(b"".join(zstandard.ZstdCompressor().compress(f) for f in frames))
    with path.open("rb") as raw:
        stream = _ZstdFrames(raw)
        got = []
        for n in [0, 3, 2, 1, 200_000, 7, 150_000, 10**6, 5]:
            got.append(stream.read(n))
            assert len(got[-1]) <= n
    assert b"".join(got) == b"".join(frames)
    assert [len(g) for g in got] == [0, 3, 2, 1, 200_000, 7, 150_000, 370_006 - 350_013, 0]
