"""Truncated and corrupt DBN files: an exact prefix and an error naming the file, never silent loss.

Expected records come from databento_dbn's own decoder over the intact file,
never from the project's reader.
"""

from __future__ import annotations

import random
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from connectors.dbn import DBNReader
from models.errors import DBNDecodeError

KEYS = ("ts_event", "instrument_id", "sequence", "price", "size")


def reference_records(path: Path) -> list[tuple]:
    """Every record of ``path`` as key fields, decoded by databento_dbn (independent)."""
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb"), read_across_frames=True).read()
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
    decoder.write(raw)
    out = []
    for msg in decoder.decode():
        if isinstance(msg, dbn.Metadata):
            continue
        out.append(tuple(int(getattr(msg, k, 0) or 0) for k in KEYS) + (int(msg.rtype),))
    return out


def read_prefix(path: Path, batch_records: int) -> tuple[list[tuple], DBNDecodeError | None]:
    """Records the project's reader yields before it stops, and the error it stopped with."""
    got: list[tuple] = []
    try:
        with DBNReader(path, batch_records=batch_records) as reader:
            for chunk in reader:
                rows = []
                for rtype, recs in chunk.trades.items():
                    for pos, r in zip(chunk.positions[rtype].tolist(), recs, strict=True):
                        rows.append((pos, tuple(int(r[k]) if k in recs.dtype.names else 0
                                                for k in KEYS) + (rtype,)))
                got.extend(row for _pos, row in sorted(rows))
    except DBNDecodeError as exc:
        return got, exc
    return got, None


def frame_ends(data: bytes) -> set[int]:
    """Compressed offsets where a zstd frame ends (a file cut there is a valid, shorter file)."""
    ends, pos, rest = set(), 0, data
    while rest:
        obj = zstandard.ZstdDecompressor().decompressobj()
        obj.decompress(rest)
        pos += len(rest) - len(obj.unused_data)
        ends.add(pos)
        rest = obj.unused_data
    return ends


def block_ends(data: bytes) -> list[int]:
    """Compressed offsets where a zstd block (or frame) ends: the cuts a stream reader misses."""
    ends, pos = [], 0
    while pos + 4 <= len(data) and data[pos:pos + 4] == b"\x28\xb5\x2f\xfd":
        fhd = data[pos + 4]
        single = (fhd >> 5) & 1
        did = [0, 1, 2, 4][fhd & 3]
        fcs = [0 if not single else 1, 2, 4, 8][fhd >> 6]
        pos += 4 + 1 + (0 if single else 1) + did + fcs
        while True:
            header = int.from_bytes(data[pos:pos + 3], "little")
            last, btype, size = header & 1, (header >> 1) & 3, header >> 3
            pos += 3 + (1 if btype == 1 else size)
            ends.append(pos)
            if last:
                break
        if (fhd >> 2) & 1:
            pos += 4
        ends.append(pos)
    return sorted(set(e for e in ends if 0 < e < len(data)))


CASES = [("esu4-glbx-mdp3-20240701.mbp-1.dbn.zst", 150), ("esh4-glbx-mdp3-20231225.mbo.dbn.zst", 60)]


@pytest.mark.parametrize(("name", "n_random"), CASES)
def test_every_truncation_point_gives_an_exact_prefix_and_an_error(tmp_path, real_dir, name, n_random):
    src = real_dir / name
    data = src.read_bytes()
    full = reference_records(src)
    rng = random.Random(20261203)
    ends = block_ends(data)
    frames = frame_ends(data)
    cuts = sorted(set(ends[:: max(1, len(ends) // 60)] + rng.sample(range(1, len(data)), n_random))
                  | frames)
    errored = complete = at_frame_end = 0
    for cut in cuts:
        path = tmp_path / name
        path.write_bytes(data[:cut])
        try:
            got, err = read_prefix(path, batch_records=4096)
        except DBNDecodeError:  # cut inside the metadata header: nothing read, error raised
            errored += 1
            continue
        assert got == full[: len(got)], f"cut {cut}: records differ from the file's prefix"
        if err is None and cut in frames and cut < len(data):
            # zstd frames are self-contained: a file cut exactly where a frame ends is a valid,
            # shorter file (README limit); the reader still yields an exact prefix
            at_frame_end += 1
            continue
        if err is None:
            assert len(got) == len(full), f"cut {cut}: {len(full) - len(got)} records silently lost"
            complete += 1
        else:
            assert str(path) in str(err) and "truncated" in str(err)
            errored += 1
    assert errored == len(cuts) - complete - at_frame_end and errored > 0
    print(f"{name}: {len(cuts)} cuts ({len(ends)} block ends sampled), "  # noqa: T201 - figures
          f"{errored} errored with the file name, {complete} complete, {at_frame_end} at a frame "
          "end (valid shorter file), 0 silent losses inside a frame")


def test_corrupt_record_framing_stops_at_the_bad_record(tmp_path, real_dir):
    src = real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"
    raw = zstandard.ZstdDecompressor().stream_reader(src.open("rb"), read_across_frames=True).read()
    meta_len = int.from_bytes(raw[4:8], "little") + 8
    size = 80
    bad_index = 137
    corrupt = bytearray(raw)
    corrupt[meta_len + bad_index * size + 1] = 0x7E  # an rtype DBN does not have
    path = tmp_path / "bad.mbp-1.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(corrupt)))
    got, err = read_prefix(path, batch_records=50)
    assert err is not None and err.offset == meta_len + bad_index * size
    assert "#137" in str(err) and str(path) in str(err)
    assert got == reference_records(src)[:bad_index]


def test_corrupt_middle_frame_never_yields_altered_framing(tmp_path, real_dir):
    src = real_dir / "esu4-glbx-mdp3-20240701.mbp-1.dbn.zst"
    raw = zstandard.ZstdDecompressor().stream_reader(src.open("rb"), read_across_frames=True).read()
    meta_len = int.from_bytes(raw[4:8], "little") + 8
    body = raw[meta_len:]
    per_frame = 80 * 100
    cctx = zstandard.ZstdCompressor(write_checksum=False)
    frames = [cctx.compress(raw[:meta_len])] + [cctx.compress(body[i:i + per_frame])
                                                for i in range(0, len(body), per_frame)]
    full = reference_records(src)
    middle = len(frames) // 2
    outcomes = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        broken = bytearray(frames[middle])
        for at in rng.integers(12, len(broken), 6):
            broken[at] ^= 0xFF
        path = tmp_path / "mid.mbp-1.dbn.zst"
        path.write_bytes(b"".join(frames[:middle] + [bytes(broken)] + frames[middle + 1:]))
        got, err = read_prefix(path, batch_records=64)
        first_bad = (middle - 1) * 100  # first record of the corrupted frame
        assert got[:first_bad] == full[:first_bad][: len(got)]
        if err is not None:
            assert str(path) in str(err)
            assert err.offset >= meta_len + min(len(got), first_bad) * 80 - 80
            outcomes.add("error")
        else:
            outcomes.add("decoded")
    assert "error" in outcomes
