"""Tests for samples.generator: DBN v3 synthetic NQ options files."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import databento
import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from samples import generator as sample

TICK = 50_000_000
N_TRADES = 60_000


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> sample.SampleFiles:
    return sample.generate_session(tmp_path_factory.mktemp("session"), n_trades=N_TRADES)


@pytest.fixture(scope="module")
def trades(session: sample.SampleFiles) -> np.ndarray:
    return databento.DBNStore.from_file(session.tbbo_path).to_ndarray()


@pytest.fixture(scope="module")
def defs(session: sample.SampleFiles) -> np.ndarray:
    return databento.DBNStore.from_file(session.definition_path).to_ndarray()


def test_file_names_and_metadata(session: sample.SampleFiles) -> None:
    assert session.definition_path.name == "nq-opt-glbx-mdp3-20261120.definition.dbn.zst"
    assert session.tbbo_path.name == "nq-opt-glbx-mdp3-20261120.tbbo.dbn.zst"
    store = databento.DBNStore.from_file(session.tbbo_path)
    meta = store.metadata
    assert meta.version == 3
    assert meta.dataset == "GLBX.MDP3"
    assert store.schema == databento.Schema.TBBO
    assert meta.stype_in == dbn.SType.PARENT and meta.stype_out == dbn.SType.INSTRUMENT_ID
    assert meta.symbols == ["NQ.OPT"]
    assert meta.mappings["NQZ6 C21500"][0]["symbol"].isdigit()
    assert meta.start < meta.end
    def_store = databento.DBNStore.from_file(session.definition_path)
    assert def_store.schema == databento.Schema.DEFINITION and def_store.metadata.version == 3


def test_tbbo_decodes_with_requested_count(session: sample.SampleFiles, trades: np.ndarray) -> None:
    assert len(trades) == N_TRADES
    assert np.all(trades["rtype"] == dbn.RType.MBP_1.value)
    df = databento.DBNStore.from_file(session.tbbo_path).to_df()
    assert len(df) == N_TRADES
    assert df["symbol"].str.match(r"^(NQZ6|QN[1-5][XZ]6|QNEX6) [CP]\d+$").all()


def test_raw_dbn_decoder_reads_file(session: sample.SampleFiles) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(session.tbbo_path.open("rb")).read()
    decoder = dbn.DBNDecoder()
    decoder.write(raw)
    records = decoder.decode()
    assert isinstance(records[0], dbn.Metadata) and records[0].version == 3
    assert sum(isinstance(r, dbn.MBP1Msg) for r in records) == N_TRADES


def test_definitions(defs: np.ndarray, trades: np.ndarray) -> None:
    assert 300 <= len(defs) <= 1000
    assert len(np.unique(defs["instrument_id"])) == len(defs)
    assert set(np.unique(trades["instrument_id"])) <= set(defs["instrument_id"].tolist())
    fut = defs[defs["instrument_class"] == b"F"]
    assert len(fut) == 1 and fut["raw_symbol"][0] == b"NQZ6" and fut["underlying"][0] == b"NQ"
    assert fut["expiration"][0] == np.datetime64("2026-12-18T13:30", "ns").astype(np.int64)
    opts = defs[np.isin(defs["instrument_class"], [b"C", b"P"])]
    assert len(opts) == len(defs) - 1
    assert {b"C", b"P"} <= set(opts["instrument_class"].tolist())
    assert np.all(opts["strike_price"] % (10 * 1_000_000_000) == 0)
    assert np.all(opts["underlying"] == b"NQZ6")
    assert len(np.unique(opts["expiration"])) >= 4
    per_expiry = np.unique(opts["expiration"], return_counts=True)[1] // 2
    assert np.all((per_expiry >= 30) & (per_expiry <= 60))
    assert np.all(opts["min_price_increment"] == TICK)
    assert np.all(opts["unit_of_measure_qty"] == 20 * 1_000_000_000)
    assert np.all(opts["security_type"] == b"OOF") and np.all(opts["exchange"] == b"XCME")
    assert np.all(opts["currency"] == b"USD") and np.all(opts["strike_price_currency"] == b"USD")
    pattern = re.compile(rb"^(NQZ6|QN[1-5][XZ]6|QNEX6) ([CP])(\d+)$")
    for row in opts[::37]:
        match = pattern.match(row["raw_symbol"])
        assert match is not None, row["raw_symbol"]
        assert match.group(2) == row["instrument_class"]
        assert int(match.group(3)) * 1_000_000_000 == row["strike_price"]


def test_trade_prices_against_bbo(trades: np.ndarray) -> None:
    side, price = trades["side"], trades["price"]
    bid, ask = trades["bid_px_00"], trades["ask_px_00"]
    assert np.all(bid < ask) and np.all(bid >= TICK)
    assert np.all(price % TICK == 0) and np.all(price >= TICK)
    assert np.array_equal(price[side == b"B"], ask[side == b"B"])
    assert np.array_equal(price[side == b"A"], bid[side == b"A"])
    n = side == b"N"
    assert np.all((price[n] >= bid[n]) & (price[n] <= ask[n]))
    assert np.any(2 * price[n] == bid[n] + ask[n])  # some N prints exactly at mid
    for col in ("bid_sz_00", "ask_sz_00", "bid_ct_00", "ask_ct_00"):
        assert np.all(trades[col] > 0)
    assert np.all(trades["bid_ct_00"] <= trades["bid_sz_00"])


def test_trade_flow_shape(trades: np.ndarray) -> None:
    side = trades["side"]
    assert abs(np.mean(side == b"N") - 0.06) < 0.01
    assert abs(np.mean(side == b"B") - 0.47) < 0.015 and abs(np.mean(side == b"A") - 0.47) < 0.015
    assert np.all(trades["action"] == b"T") and np.all(trades["flags"] == dbn.F_LAST)
    assert np.all(trades["depth"] == 0)
    ts = trades["ts_event"].astype(np.int64)
    assert np.all(np.diff(ts) >= 0)
    assert np.all(np.diff(trades["ts_recv"].astype(np.int64)) >= 0)
    assert np.all(trades["ts_recv"] > trades["ts_event"]) and np.all(trades["ts_in_delta"] > 0)
    assert np.all(np.diff(trades["sequence"].astype(np.int64)) > 0)
    size = trades["size"]
    assert size.min() >= 1 and np.mean(size <= 10) > 0.9 and size.max() >= 50
    day = np.datetime64("2026-11-20", "ns").astype(np.int64)
    minute = (ts - day) // (60 * 1_000_000_000)
    assert minute.min() >= 0 and minute.max() < 20 * 60
    rth = minute >= 13 * 60 + 30
    assert 0.85 < rth.mean() < 0.97
    per_min = np.bincount(minute[rth] - (13 * 60 + 30), minlength=390)
    assert per_min[:30].mean() > 1.5 * per_min[150:240].mean()  # U-shape: busy open
    assert per_min[-30:].mean() > 1.5 * per_min[150:240].mean()  # and busy close
    # quiet strikes: most (instrument, RTH minute) cells are empty
    cells = len(np.unique(trades["instrument_id"][rth].astype(np.int64) * 10_000 + minute[rth]))
    assert cells < 0.5 * len(np.unique(trades["instrument_id"])) * 390


def test_concentration_near_money_and_front_expiry(trades: np.ndarray, defs: np.ndarray) -> None:
    order = np.argsort(defs["instrument_id"])
    idx = order[np.searchsorted(defs["instrument_id"][order], trades["instrument_id"])]
    exp, strike = defs["expiration"][idx], defs["strike_price"][idx] / 1e9
    assert np.mean(exp == exp.min()) > 0.25
    assert np.mean(np.abs(strike - 21500.0) <= 300) > 0.6


def test_determinism(tmp_path: Path) -> None:
    a = sample.generate_session(tmp_path / "a", seed=3, n_trades=5_000)
    b = sample.generate_session(tmp_path / "b", seed=3, n_trades=5_000)
    c = sample.generate_session(tmp_path / "c", seed=4, n_trades=5_000)
    assert a.tbbo_path.read_bytes() == b.tbbo_path.read_bytes()
    assert a.definition_path.read_bytes() == b.definition_path.read_bytes()
    assert a.tbbo_path.read_bytes() != c.tbbo_path.read_bytes()


def test_generate_mbo_action_mix(tmp_path: Path) -> None:
    n = 20_000
    path = sample.generate_mbo(tmp_path / "bench.mbo.dbn.zst", n_records=n, instrument_count=12)
    store = databento.DBNStore.from_file(path)
    assert store.schema == databento.Schema.MBO and store.metadata.version == 3
    rec = store.to_ndarray()
    assert len(rec) == n
    assert np.all(rec["rtype"] == dbn.RType.MBO.value) and np.all(rec["flags"] == dbn.F_LAST)
    action = rec["action"]
    for code, share in ((b"A", 0.37), (b"C", 0.36), (b"M", 0.19), (b"F", 0.04), (b"T", 0.04)):
        assert abs(np.mean(action == code) - share) < 0.02, code
    assert set(np.unique(rec["side"][action != b"T"]).tolist()) == {b"A", b"B"}
    assert np.all(np.diff(rec["ts_event"].astype(np.int64)) >= 0)
    assert np.all(np.diff(rec["sequence"].astype(np.int64)) > 0)
    assert np.all(rec["price"] % TICK == 0) and np.all(rec["price"] > 0) and np.all(rec["size"] > 0)
    assert len(np.unique(rec["instrument_id"])) == 12
    adds = rec[action == b"A"]
    assert len(np.unique(adds["order_id"])) == len(adds)
    # an independent replay: every C/M/F acts on a resting order with its current side (C: and
    # its price and size; F: its price, part of its size, and the instrument's next order record
    # is the modify to what is left), and the books stay bounded
    book: dict[tuple[int, int], list[int]] = {}
    resting = dict.fromkeys(np.unique(rec["instrument_id"]).tolist(), 0)
    after_fill: dict[int, tuple[tuple[int, int], int]] = {}
    for r in rec[action != b"T"]:
        act, key = r["action"], (int(r["instrument_id"]), int(r["order_id"]))
        due = after_fill.pop(key[0], None)
        if due is not None:
            assert act == b"M" and due == (key, int(r["size"]))
        if act == b"A":
            assert key not in book
            book[key] = [r["side"], int(r["price"]), int(r["size"])]
            resting[key[0]] += 1
            assert resting[key[0]] <= sample.MBO_BOOK_CAP
            continue
        order = book[key]
        assert order[0] == r["side"]
        if act == b"C":
            assert order[1:] == [int(r["price"]), int(r["size"])]
            del book[key]
            resting[key[0]] -= 1
        elif act == b"M":
            assert int(r["size"]) <= order[2]
            order[1:] = [int(r["price"]), int(r["size"])]
        else:  # a fill changes nothing yet
            assert order[1] == int(r["price"]) and 0 < int(r["size"]) < order[2]
            after_fill[key[0]] = (key, order[2] - int(r["size"]))
    defs = databento.DBNStore.from_file(tmp_path / "bench.definition.dbn.zst").to_ndarray()
    assert set(np.unique(rec["instrument_id"]).tolist()) <= set(defs["instrument_id"].tolist())


def test_generate_trades(tmp_path: Path) -> None:
    path = sample.generate_trades(tmp_path / "bench.trades.dbn.zst", n_records=7_000)
    store = databento.DBNStore.from_file(path)
    assert store.schema == databento.Schema.TRADES and store.metadata.version == 3
    rec = store.to_ndarray()
    assert len(rec) == 7_000 and rec.dtype == np.dtype(dbn.TradeMsg._dtypes)
    assert np.all(rec["rtype"] == 0) and np.all(rec["action"] == b"T")
    assert np.all(np.diff(rec["ts_event"].astype(np.int64)) >= 0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--out",
        str(tmp_path),
        "--date",
        "2026-11-19",
        "--seed",
        "5",
        "--trades",
        "1000",
        "--mbo",
        "3000",
        "--trades-file",
        "2000",
    ]
    assert sample.main(argv) == 0
    out = capsys.readouterr().out
    assert "nq-opt-glbx-mdp3-20261119.tbbo.dbn.zst" in out and "1000" in out
    counts = {"tbbo": 1000, "mbo": 3000, "trades": 2000}
    for schema, count in counts.items():
        store = databento.DBNStore.from_file(
            tmp_path / f"nq-opt-glbx-mdp3-20261119.{schema}.dbn.zst"
        )
        assert len(store.to_ndarray()) == count


# --------------------------------------------------------------------------- sweeps
SWEEP_TRADES = 3_000


@pytest.fixture(scope="module")
def sweep_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    """Records (decoded by databento) of one seed with ``sweep_share`` 0.3 and 0."""
    out = tmp_path_factory.mktemp("sweeps")
    swept = sample.generate_session(out / "s", seed=7, n_trades=SWEEP_TRADES, sweep_share=0.3)
    plain = sample.generate_session(out / "p", seed=7, n_trades=SWEEP_TRADES)
    return (
        list(databento.DBNStore.from_file(swept.tbbo_path)),
        list(databento.DBNStore.from_file(plain.tbbo_path)),
    )


def _events(recs: list) -> dict[tuple[int, int, int, int], list]:
    """Records grouped by (ts_event, ts_recv, instrument_id, sequence), file order kept."""
    out: dict[tuple[int, int, int, int], list] = {}
    for r in recs:
        out.setdefault((r.ts_event, r.ts_recv, r.instrument_id, r.sequence), []).append(r)
    return out


def test_sweep_session_keeps_count_and_prints_equal_keys(sweep_pair) -> None:
    recs, _ = sweep_pair
    assert len(recs) == SWEEP_TRADES and all(isinstance(r, dbn.MBP1Msg) for r in recs)
    events = _events(recs)
    sweeps = [g for g in events.values() if len(g) > 1]
    aggressor_events = sum(g[0].side in ("B", "A") for g in events.values())
    assert 0.25 < len(sweeps) / aggressor_events < 0.35
    assert {len(g) for g in sweeps} == {2, 3, 4, 5}
    assert sum(len(g) for g in events.values()) == SWEEP_TRADES
    ts = [(r.ts_recv, r.ts_event, r.sequence) for r in recs]
    assert ts == sorted(ts)  # a sweep's prints are adjacent in the file


def test_sweep_prints_step_one_tick_per_level_from_the_touch(sweep_pair) -> None:
    recs, _ = sweep_pair
    for group in (g for g in _events(recs).values() if len(g) > 1):
        first = group[0]
        assert first.side in ("B", "A")
        touch = first.levels[0].ask_px if first.side == "B" else first.levels[0].bid_px
        assert first.price == touch
        step = TICK if first.side == "B" else -TICK
        dup = int(bytes(group[1]) == bytes(first))
        assert [r.price for r in group] == [
            first.price + step * max(j - dup, 0) for j in range(len(group))
        ]
        assert all(r.price >= TICK and r.size >= 1 for r in group)
        # every field but price and size is the leader's
        for r in group[1:]:
            assert (r.side, r.flags, r.ts_in_delta, r.levels[0].bid_px, r.levels[0].ask_sz) == (
                first.side,
                first.flags,
                first.ts_in_delta,
                first.levels[0].bid_px,
                first.levels[0].ask_sz,
            )


def test_sweep_duplicates_are_byte_identical_prints(sweep_pair) -> None:
    recs, _ = sweep_pair
    counts: dict[bytes, int] = {}
    for r in recs:
        counts[bytes(r)] = counts.get(bytes(r), 0) + 1
    repeated = [b for b, c in counts.items() if c > 1]
    sweeps = [g for g in _events(recs).values() if len(g) > 1]
    dup_sweeps = [g for g in sweeps if bytes(g[0]) == bytes(g[1])]
    assert len(repeated) == len(dup_sweeps) >= 3 and max(counts.values()) == 2
    assert len(dup_sweeps) < 0.05 * len(sweeps)
    assert len(counts) == SWEEP_TRADES - len(dup_sweeps)  # content de-dup must count multiplicity


def test_sweeps_rewrite_in_place_other_records_unchanged(sweep_pair) -> None:
    recs, plain = sweep_pair
    in_sweep = {id(r) for g in _events(recs).values() if len(g) > 1 for r in g[1:]}
    same = [bytes(a) == bytes(b) for a, b in zip(recs, plain, strict=True) if id(a) not in in_sweep]
    assert all(same) and len(same) == SWEEP_TRADES - len(in_sweep)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_sweep_share_out_of_range_raises(tmp_path: Path, share: float) -> None:
    with pytest.raises(ValueError, match="sweep_share"):
        sample.generate_session(tmp_path, n_trades=10, sweep_share=share)


def test_generate_trades_with_sweeps(tmp_path: Path) -> None:
    path = sample.generate_trades(tmp_path / "b.trades.dbn.zst", n_records=2_000, sweep_share=0.5)
    recs = list(databento.DBNStore.from_file(path))
    sweeps = [g for g in _events(recs).values() if len(g) > 1]
    assert len(recs) == 2_000 and all(isinstance(r, dbn.TradeMsg) for r in recs)
    assert len(sweeps) > 200 and all(len({r.side for r in g}) == 1 for g in sweeps)


def test_full_chain_lists_every_expiry_and_10_point_strike(tmp_path: Path) -> None:
    files = sample.generate_session(tmp_path, n_trades=20_000, full_chain=True)
    defs = databento.DBNStore.from_file(files.definition_path).to_ndarray()
    opts = defs[np.isin(defs["instrument_class"], [b"C", b"P"])]
    expiries = np.unique(opts["expiration"])
    assert len(expiries) == 14  # 12 weeklies, end-of-month, quarterly
    for expiry in expiries:
        strikes = np.unique(opts["strike_price"][opts["expiration"] == expiry]) // 1_000_000_000
        assert len(strikes) == 201 and np.all(np.diff(strikes) == 10)
    assert len(opts) == 14 * 201 * 2 and len(np.unique(opts["instrument_id"])) == len(opts)
    trades = databento.DBNStore.from_file(files.tbbo_path).to_ndarray()
    assert set(np.unique(trades["instrument_id"])) <= set(opts["instrument_id"].tolist())
    assert len(np.unique(trades["instrument_id"])) > 1000  # the flow sees thousands of contracts


@pytest.mark.parametrize("date", ["2026-11-20", "2026-06-19"])  # a CST and a CDT Friday (0DTE)
def test_globex_day_spans_17_00_ct_the_evening_before_to_16_00_ct(tmp_path: Path, date: str) -> None:
    day = dt.date.fromisoformat(date)
    chicago = ZoneInfo("America/Chicago")
    opens = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(17), chicago)
    closes = dt.datetime.combine(day, dt.time(16), chicago)
    open_ns, close_ns = int(opens.timestamp()) * 10**9, int(closes.timestamp()) * 10**9
    assert close_ns - open_ns == 23 * 3600 * 10**9
    files = sample.generate_session(tmp_path, session_date=day, n_trades=40_000, full_chain=True,
                                    globex_day=True)
    store = databento.DBNStore.from_bytes(files.tbbo_path.read_bytes())
    assert (store.metadata.start, store.metadata.end) == (open_ns, close_ns)
    trades = store.to_ndarray()
    ts = trades["ts_event"].astype(np.int64)
    assert open_ns <= ts.min() < open_ns + 3600 * 10**9  # the evening trades
    assert ts.max() < close_ns
    after_20_utc = int(dt.datetime.combine(day, dt.time(20), dt.UTC).timestamp()) * 10**9
    assert (ts >= after_20_utc).sum() > 0  # the hour(s) after the 20:00 UTC expiry trade too
    defs = databento.DBNStore.from_bytes(files.definition_path.read_bytes()).to_ndarray()
    assert (defs["ts_recv"].astype(np.int64) <= trades["ts_recv"].astype(np.int64).min()).all()
    expiry = dict(zip(defs["instrument_id"].tolist(), defs["expiration"].tolist(), strict=True))
    expires = np.array([expiry[i] for i in trades["instrument_id"].tolist()], dtype=np.int64)
    assert (ts < expires).all()  # nothing trades at or after its expiration (the 0DTE weekly)
    zero_dte = expires == after_20_utc
    assert zero_dte.any() and ts[zero_dte].max() < after_20_utc


@pytest.mark.parametrize("date", ["2026-12-25", "2026-11-27"])  # closed; an early close
def test_globex_day_needs_a_full_session(tmp_path: Path, date: str) -> None:
    with pytest.raises(ValueError, match=f"full CME Globex session on {date}"):
        sample.generate_session(tmp_path, session_date=dt.date.fromisoformat(date), n_trades=100,
                                globex_day=True)


def test_write_slice_keeps_exactly_the_ts_recv_range(session: sample.SampleFiles, trades: np.ndarray,
                                                     tmp_path: Path) -> None:
    lo, hi = int(trades["ts_recv"][1000]), int(trades["ts_recv"][5000])
    out = tmp_path / "slice.tbbo.dbn.zst"
    kept = sample.write_slice(session.tbbo_path, out, lo, hi)
    got = databento.DBNStore.from_file(out).to_ndarray()
    want = trades[(trades["ts_recv"] >= lo) & (trades["ts_recv"] < hi)]
    assert kept == len(want) == len(got) > 0
    assert got.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="not a DBN v3 file"):
        bad = tmp_path / "bad.dbn.zst"
        bad.write_bytes(zstandard.ZstdCompressor().compress(b"not dbn at all"))
        sample.write_slice(bad, tmp_path / "x.dbn.zst", lo, hi)
