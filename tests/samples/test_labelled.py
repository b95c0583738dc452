"""Tests for samples.labelled: labelled multi-day NQ options tape (DBN v3 + labels.jsonl).

Expected values are recomputed with numpy from the decoded files, not taken from the generator.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import databento
import databento_dbn as dbn
import numpy as np
import pytest

from samples import labelled

N_DAYS, FIRST_SCORED, TRADES = 4, 2, 3000
WIN_NS = 300 * 1_000_000_000
KEYS = {
    "day",
    "window_start",
    "instrument_id",
    "symbol",
    "label",
    "kind",
    "direction",
    "strength",
    "volume",
    "trades",
    "baseline_volume",
}
KINDS = {
    "institutional": {"block", "sweep", "accumulation"},
    "mm": {"churn", "spread"},
}


def _generate(out: Path, **kw) -> labelled.LabelledDays:
    args = dict(n_days=N_DAYS, first_scored_day=FIRST_SCORED, trades_per_day=TRADES, events_per_day=8)
    return labelled.generate_labelled_days(out, **(args | kw))


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> labelled.LabelledDays:
    return _generate(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def tbbo(gen: labelled.LabelledDays) -> dict[str, np.ndarray]:
    return {
        d.isoformat(): databento.DBNStore.from_file(p).to_ndarray()
        for d, p in zip(gen.days, gen.tbbo_paths, strict=True)
    }


@pytest.fixture(scope="module")
def labels(gen: labelled.LabelledDays) -> list[dict]:
    return [json.loads(line) for line in gen.labels_path.read_text(encoding="utf-8").splitlines()]


def _window(trades: np.ndarray, row: dict) -> np.ndarray:
    start = np.datetime64(row["window_start"].removesuffix("Z"), "ns").astype(np.int64)
    ts = trades["ts_event"].astype(np.int64)
    return trades[(trades["instrument_id"] == row["instrument_id"]) & (ts >= start) & (ts < start + WIN_NS)]


def _vol(trades: np.ndarray, side: bytes) -> int:
    return int(trades["size"][trades["side"] == side].astype(np.int64).sum())


def test_days_and_file_names(gen: labelled.LabelledDays) -> None:
    assert gen.days == [
        dt.date(2026, 10, 19),
        dt.date(2026, 10, 20),
        dt.date(2026, 10, 21),
        dt.date(2026, 10, 22),
    ]
    assert gen.first_scored_day == FIRST_SCORED
    assert [p.name for p in gen.tbbo_paths][0] == "nq-opt-glbx-mdp3-20261019.tbbo.dbn.zst"
    assert [p.name for p in gen.definition_paths][-1] == "nq-opt-glbx-mdp3-20261022.definition.dbn.zst"
    assert gen.labels_path.name == "labels.jsonl"
    assert all(p.parent == gen.labels_path.parent for p in gen.tbbo_paths + gen.definition_paths)


def test_weekends_skipped() -> None:
    days = labelled.trading_days(dt.date(2026, 10, 23), 3)  # Friday
    assert days == [dt.date(2026, 10, 23), dt.date(2026, 10, 26), dt.date(2026, 10, 27)]


def test_definitions_identical_chain_every_day(gen: labelled.LabelledDays) -> None:
    every = [databento.DBNStore.from_file(p).to_ndarray() for p in gen.definition_paths]
    for day, d in zip(gen.days, every, strict=True):
        assert np.all(d["ts_event"] == np.datetime64(day, "ns").astype(np.int64))
    defs = [d[d["instrument_class"] != b"T"] for d in every]  # outrights; spreads are per day
    first = defs[0]
    assert len(first) > 300 and len(np.unique(first["instrument_id"])) == len(first)
    end_of_last_day = np.datetime64(gen.days[-1] + dt.timedelta(days=1), "ns").astype(np.int64)
    assert first["expiration"].astype(np.int64).min() > end_of_last_day
    for d in defs:
        np.testing.assert_array_equal(d["instrument_id"], first["instrument_id"])
        np.testing.assert_array_equal(d["raw_symbol"], first["raw_symbol"])
        np.testing.assert_array_equal(d["expiration"], first["expiration"])
        np.testing.assert_array_equal(d["strike_price"], first["strike_price"])
    store = databento.DBNStore.from_file(gen.definition_paths[0])
    assert store.schema == databento.Schema.DEFINITION and store.metadata.version == 3


def test_tbbo_records(gen: labelled.LabelledDays, tbbo: dict[str, np.ndarray]) -> None:
    counts = []
    for day, path, def_path in zip(gen.days, gen.tbbo_paths, gen.definition_paths, strict=True):
        ids = set(databento.DBNStore.from_file(def_path).to_ndarray()["instrument_id"].tolist())
        store = databento.DBNStore.from_file(path)
        assert store.schema == databento.Schema.TBBO and store.metadata.version == 3
        t = tbbo[day.isoformat()]
        counts.append(len(t))
        ts, recv = t["ts_event"].astype(np.int64), t["ts_recv"].astype(np.int64)
        assert np.all(t["rtype"] == dbn.RType.MBP_1.value) and np.all(t["action"] == b"T")
        assert np.all(np.diff(ts) >= 0) and np.all(np.diff(t["sequence"].astype(np.int64)) > 0)
        assert np.all(recv >= ts) and np.all(recv - ts < 1_000_000)
        assert np.all(t["flags"] == dbn.F_LAST) and np.all(t["depth"] == 0)
        start = np.datetime64(day, "ns").astype(np.int64)
        assert ts.min() >= _evening_open_ns(day) and ts.max() < start + 20 * 3600 * 10**9
        assert set(np.unique(t["instrument_id"]).tolist()) <= ids
        buy, sell = t["side"] == b"B", t["side"] == b"A"
        assert np.all(t["price"][buy] == t["ask_px_00"][buy]) and np.all(
            t["price"][sell] == t["bid_px_00"][sell]
        )
        assert np.all(t["bid_px_00"] < t["ask_px_00"]) and np.all(t["price"] % 50_000_000 == 0)
        shares = np.array([buy.mean(), sell.mean(), (t["side"] == b"N").mean()])
        np.testing.assert_allclose(shares, [0.47, 0.47, 0.06], atol=0.03)
        rth = (ts - start) >= (13 * 3600 + 1800) * 10**9
        assert 0.85 < rth.mean() < 0.97
    assert len(set(counts)) == len(counts)  # day-to-day activity varies
    assert 0.75 * TRADES < min(counts) and max(counts) < 1.25 * TRADES + 2000


def _evening_open_ns(day: dt.date) -> int:
    """17:00 America/Chicago of the calendar day before ``day``: the CME Globex session open."""
    opened = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(17, 0), ZoneInfo("America/Chicago"))
    return int(opened.timestamp()) * 10**9


def test_sessions_open_at_17_ct_the_evening_before_with_a_larger_sunday_open(
    gen: labelled.LabelledDays, tbbo: dict[str, np.ndarray]
) -> None:
    first_window, evening = {}, {}
    for day in gen.days:
        ts = tbbo[day.isoformat()]["ts_event"].astype(np.int64)
        opened = _evening_open_ns(day)
        first_window[day] = ((ts >= opened) & (ts < opened + WIN_NS)).sum() / len(ts)  # share
        evening[day] = ((ts >= opened) & (ts < opened + 2 * 3600 * 10**9)).sum() / len(ts)
    monday, *weekdays = gen.days  # 2026-10-19 opens Sunday 17:00 CT, the others on weekdays
    assert monday.weekday() == 0 and all(d.weekday() in (1, 2, 3) for d in weekdays)
    assert all(evening[d] > first_window[d] > 0 for d in gen.days)
    assert first_window[monday] > 2 * max(first_window[d] for d in weekdays)


def test_determinism(gen: labelled.LabelledDays, tmp_path: Path) -> None:
    again = _generate(tmp_path / "again")
    for a, b in zip(
        gen.tbbo_paths + gen.definition_paths, again.tbbo_paths + again.definition_paths, strict=True
    ):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert gen.labels_path.read_bytes() == again.labels_path.read_bytes()
    other = _generate(tmp_path / "other", seed=22)
    assert other.tbbo_paths[0].read_bytes() != gen.tbbo_paths[0].read_bytes()


def test_label_schema(gen: labelled.LabelledDays, labels: list[dict], tbbo: dict[str, np.ndarray]) -> None:
    assert labels
    symbols = {}
    for t in databento.DBNStore.from_file(gen.definition_paths[0]).to_ndarray():
        symbols[int(t["instrument_id"])] = t["raw_symbol"].decode()
    for row in labels:
        assert set(row) == KEYS
        assert row["kind"] in KINDS[row["label"]]
        assert row["day"] in tbbo
        start = dt.datetime.fromisoformat(row["window_start"])
        assert start.date().isoformat() == row["day"] and start.second == 0 and start.minute % 5 == 0
        assert dt.time(13, 30) <= start.time() <= dt.time(19, 55)
        assert symbols[row["instrument_id"]] == row["symbol"]
        assert isinstance(row["volume"], int) and row["volume"] > 0 and row["trades"] >= 1
        if row["label"] == "institutional":
            assert row["direction"] in {"BUY", "SELL"} and row["strength"] in {"strong", "weak"}
        else:
            assert row["direction"] is None and row["strength"] is None
    keys = [(r["day"], r["window_start"], r["instrument_id"]) for r in labels]
    assert len(keys) == len(set(keys))  # at most one label per contract and window


def test_institutional_only_on_scored_days(gen: labelled.LabelledDays, labels: list[dict]) -> None:
    scored = {d.isoformat() for d in gen.days[FIRST_SCORED:]}
    inst_days = {r["day"] for r in labels if r["label"] == "institutional"}
    mm_days = {r["day"] for r in labels if r["label"] == "mm"}
    assert inst_days == scored
    assert {d.isoformat() for d in gen.days[:FIRST_SCORED]} <= mm_days
    assert {r["kind"] for r in labels} == {"block", "sweep", "accumulation", "churn", "spread"}


def test_institutional_windows_are_one_sided(labels: list[dict], tbbo: dict[str, np.ndarray]) -> None:
    rows = [r for r in labels if r["label"] == "institutional"]
    assert rows
    for row in rows:
        w = _window(tbbo[row["day"]], row)
        side = b"B" if row["direction"] == "BUY" else b"A"
        labelled_vol = _vol(w, side)
        assert labelled_vol >= row["volume"], row
        assert labelled_vol >= 0.8 * int(w["size"].astype(np.int64).sum()), row
        if row["kind"] == "block":
            big = w[(w["side"] == side) & (w["size"] >= 50)]
            assert 1 <= len(big) <= 5 and int(big["size"].sum()) == row["volume"], row
            assert np.ptp(big["ts_event"].astype(np.int64)) < 5 * 10**9
        if row["kind"] == "accumulation":
            assert 15 <= row["trades"] <= 40 and len(w) >= row["trades"], row
            assert 10 * (row["trades"] - 4) <= row["volume"] <= 40 * row["trades"], row


def test_sweeps_hit_adjacent_strikes_within_two_seconds(
    gen: labelled.LabelledDays, labels: list[dict], tbbo: dict[str, np.ndarray]
) -> None:
    defs = databento.DBNStore.from_file(gen.definition_paths[0]).to_ndarray()
    by_id = {int(d["instrument_id"]): d for d in defs}
    groups = defaultdict(list)
    for row in labels:
        if row["kind"] == "sweep":
            d = by_id[row["instrument_id"]]
            groups[(row["day"], row["window_start"], int(d["expiration"]), d["instrument_class"])].append(row)
    assert groups
    for (day, _, exp, cls), rows in groups.items():
        assert 3 <= len(rows) <= 8
        assert len({r["direction"] for r in rows}) == 1
        strikes = sorted(int(by_id[r["instrument_id"]]["strike_price"]) for r in rows)
        grid = np.unique(
            defs["strike_price"][(defs["expiration"] == exp) & (defs["instrument_class"] == cls)]
        )
        pos = np.searchsorted(grid, strikes)
        assert np.all(np.diff(pos) == 1)  # adjacent listed strikes
        big = []
        for r in rows:
            assert 20 <= r["volume"] <= 150
            w = _window(tbbo[day], r)
            side = b"B" if r["direction"] == "BUY" else b"A"
            big.append(w["ts_event"][w["side"] == side].astype(np.int64))
        # some 2-second span holds prints of every strike
        t_all = np.sort(np.concatenate(big))
        assert any(all(np.any((b >= t) & (b <= t + 2 * 10**9)) for b in big) for t in t_all)


def test_mm_churn_is_balanced(labels: list[dict], tbbo: dict[str, np.ndarray]) -> None:
    rows = [r for r in labels if r["kind"] == "churn"]
    assert rows
    for row in rows:
        w = _window(tbbo[row["day"]], row)
        buy, sell = _vol(w, b"B"), _vol(w, b"A")
        assert buy + sell >= row["volume"] and len(w) >= row["trades"] >= 30
        assert abs(buy - sell) <= 0.3 * max(buy, sell), row


def _prints(trades: np.ndarray) -> set[tuple[int, int, bytes]]:
    return {
        (int(t), int(s), bytes(sd))
        for t, s, sd in zip(trades["ts_event"], trades["size"], trades["side"], strict=True)
    }


def test_mm_spreads_are_uds_verticals_with_side_n_leg_prints(
        gen: labelled.LabelledDays, labels: list[dict], tbbo: dict[str, np.ndarray]) -> None:
    # CME's shape of a spread match: the spread instrument prints with an aggressor, each leg
    # prints side N on its outright at the same ts_event for the same size (ratio 1:1)
    legs_of: dict[int, dict[int, bytes]] = {}
    for path in gen.definition_paths:
        d = databento.DBNStore.from_file(path).to_ndarray()
        for r in d[d["instrument_class"] == b"T"]:
            assert r["leg_count"] == 2 and r["leg_ratio_qty_numerator"] == 1
            legs = legs_of.setdefault(int(r["instrument_id"]), {})
            legs[int(r["leg_instrument_id"])] = bytes(r["leg_side"])
    assert legs_of and all(sorted(v.values()) == [b"A", b"B"] for v in legs_of.values())
    rows = [r for r in labels if r["kind"] == "spread"]
    assert rows
    for row in rows:
        trades = tbbo[row["day"]]
        mine = _window(trades, row)
        spreads = [sid for sid, legs in legs_of.items() if row["instrument_id"] in legs]
        assert spreads, row
        sprint = trades[np.isin(trades["instrument_id"], spreads)]
        matched = 0
        for t in mine[mine["side"] == b"N"]:
            same = sprint[(sprint["ts_event"] == t["ts_event"]) & (sprint["size"] == t["size"])]
            if len(same):
                assert set(same["side"].tolist()) <= {b"A", b"B"}
                matched += int(t["size"])
        assert matched == row["volume"], row
        assert 5 <= row["volume"] <= 50 * row["trades"] and 1 <= row["trades"] <= 4


def test_baseline_and_strength(
    gen: labelled.LabelledDays, labels: list[dict], tbbo: dict[str, np.ndarray]
) -> None:
    labelled_cells = defaultdict(set)  # (instrument, time of day) -> days with a label
    for r in labels:
        labelled_cells[(r["instrument_id"], r["window_start"][11:])].add(r["day"])
    checked = 0
    for row in labels:
        index = [d.isoformat() for d in gen.days].index(row["day"])
        if index == 0:
            assert row["baseline_volume"] is None
            continue
        prior = [d.isoformat() for d in gen.days[max(0, index - 20) : index]]
        vols = []
        for day in prior:
            w = _window(tbbo[day], row | {"window_start": day + row["window_start"][10:]})
            vols.append(int(w["size"].astype(np.int64).sum()))
        mean = float(np.mean(vols))
        assert row["baseline_volume"] <= mean + 0.01  # history without injected prints
        if not labelled_cells[(row["instrument_id"], row["window_start"][11:])] & set(prior):
            assert row["baseline_volume"] == pytest.approx(mean, abs=0.006)
            checked += 1
        if row["strength"] == "weak":
            assert 2.9 <= row["volume"] / row["baseline_volume"] <= 4.2, row
        elif row["strength"] == "strong":
            assert row["volume"] >= 10 * row["baseline_volume"] - 1e-9, row
    assert checked > 0


def test_weak_events_with_enough_history(tmp_path: Path) -> None:
    gen = _generate(tmp_path, n_days=3, trades_per_day=20_000, events_per_day=10, mm_bursts_per_day=2)
    rows = [json.loads(line) for line in gen.labels_path.read_text(encoding="utf-8").splitlines()]
    weak = [r for r in rows if r["strength"] == "weak"]
    assert weak and {r["strength"] for r in rows if r["label"] == "institutional"} == {"weak", "strong"}
    trades = {
        d.isoformat(): databento.DBNStore.from_file(p).to_ndarray()
        for d, p in zip(gen.days, gen.tbbo_paths, strict=True)
    }
    for row in weak:
        w = _window(trades[row["day"]], row)
        assert _vol(w, b"B" if row["direction"] == "BUY" else b"A") >= row["volume"]
        assert 2.9 * row["baseline_volume"] <= row["volume"] <= 4.2 * row["baseline_volume"]


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="first_scored_day"):
        labelled.generate_labelled_days(tmp_path, n_days=0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--days", "2", "--trades", "800", "--first-scored-day", "1", "--seed", "5"]
    assert labelled.main(args) == 0
    text = capsys.readouterr().out
    assert "nq-opt-glbx-mdp3-20261020.tbbo.dbn.zst" in text and "labels.jsonl" in text
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    for kind in {r["kind"] for r in rows}:
        assert kind in text
    assert f"{len(rows)} labels" in text
