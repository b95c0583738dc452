"""Columnar baseline book: vectorised adds and statistics against an independent computation,
copy-on-write snapshots and pickling."""

from __future__ import annotations

import pickle
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from flows.baselines import BaselineBook
from tests.sessions import session_midnights

DAY = 86_400
SESSIONS = session_midnights("2024-10-24", 14)  # CME trading days across the 2024-11-03 DST end
D0 = SESSIONS[0]
SLOT = 1800
CHICAGO = ZoneInfo("America/Chicago")


def _random_history(seed: int = 3, days: int = 12, keys: int = 40):
    rng = np.random.default_rng(seed)
    rows = []  # (key, window_start_s, volume, trades, imbalance)
    for d in range(days):
        for k in rng.choice(keys, size=keys // 2, replace=False).tolist():
            for w in rng.choice(6, size=rng.integers(1, 4), replace=False).tolist():
                v = int(rng.integers(1, 200))
                rows.append((f"K{k}", SESSIONS[d] + 13 * 3600 + w * 300, v,
                             int(rng.integers(1, v + 1)), int(rng.integers(0, v + 1))))
    return rows


def _expected(rows, key: str, scored_start_s: int, lookback: int, min_days: int):
    """Independent baseline: plain dict sums per day of the bucket, numpy statistics.

    Every row lies 13:00-13:30 UTC of a session date, so the UTC date is the trading day;
    the bucket is the half hour of the America/Chicago wall clock (zoneinfo), which moves by
    one hour against UTC at the DST change inside the history.
    """
    def ct_half_hour(s: int) -> int:
        local = datetime.fromtimestamp(s, CHICAGO)
        return local.hour * 2 + local.minute // 30

    day = scored_start_s // DAY
    bucket = ct_half_hour(scored_start_s)
    all_days = sorted({s // DAY for _, s, *_ in rows})
    prior = [d for d in all_days if d < day][-lookback:]
    if len(prior) < min_days:
        return None
    cells: dict[int, list[int]] = {}
    for k, s, v, t, i in rows:
        if k == key and ct_half_hour(s) == bucket and s // DAY in prior:
            c = cells.setdefault(s // DAY, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + v, c[1] + t, c[2] + i
    if not cells:
        return None
    table = np.array([cells.get(d, [0, 0, 0]) for d in prior], dtype=float)
    vol = table[:, 0] / 6
    med = np.median(vol)
    mad = np.median(np.abs(vol - med))
    avg = table[:, 0].sum() / table[:, 1].sum()
    scale = max(1.4826 * mad, np.sqrt(2 * vol.mean() * avg + 1))
    return med, scale, avg, np.median(table[:, 1] / 6), table[:, 2].sum() / table[:, 0].sum()


def test_vectorised_adds_and_statistics_equal_an_independent_computation():
    rows = _random_history()
    book = BaselineBook(lookback_days=8, min_days=5)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))  # add_many sorts by day and bucket itself
    book.add_many([rows[i][0] for i in order], np.array([rows[i][1] for i in order]),
                  np.array([rows[i][2] for i in order]), np.array([rows[i][3] for i in order]),
                  np.array([rows[i][4] for i in order]))
    scored = SESSIONS[12] + 13 * 3600 + 600
    keys = [f"K{k}" for k in range(45)]  # 5 never seen
    got = book.baselines(book.known(keys), scored)
    checked = 0
    for i, key in enumerate(keys):
        want = _expected(rows, key, scored, 8, 5)
        if want is None:
            assert not got.valid[i]
            continue
        checked += 1
        b = got.at(i, "contract")
        assert b is not None and b.days == 8
        np.testing.assert_allclose(
            [b.volume_median, b.volume_scale, b.avg_trade_size, b.trades_median, b.abs_imbalance],
            want, rtol=1e-12)
    assert checked > 30


def test_snapshot_is_copy_on_write_both_ways_and_pickles_equal():
    book = BaselineBook(lookback_days=20, min_days=1)
    t, t2 = D0 + 13 * 3600, SESSIONS[1] + 13 * 3600
    book.add("A", t, 10, 2, 4)
    snap = book.snapshot()
    book.add("A", t, 5, 1, 1)        # the live book writes after the snapshot
    book.add("B", t2, 7, 7, 0)       # a new key and a new day
    assert snap.cell("A", t) == (10, 2, 4) and snap.cell("B", t2) is None
    assert book.cell("A", t) == (15, 3, 5) and book.cell("B", t2) == (7, 7, 0)
    snap.add("A", t, 100, 1, 0)      # and the snapshot never writes into the live book
    assert book.cell("A", t) == (15, 3, 5) and snap.cell("A", t) == (110, 3, 4)

    clone = pickle.loads(pickle.dumps(book))  # noqa: S301 - our own bytes
    # 13:00 UTC = 08:00 CDT (Oct 24) / 07:00 CST (Oct 25 is still CDT): 15 h after the 17:00 CT open
    assert clone.cell_keys() == book.cell_keys() == [("A", 15 * 3600), ("B", 15 * 3600)]
    assert clone.cell("A", t) == (15, 3, 5)
    clone.add("A", t, 1, 1, 1)
    assert book.cell("A", t) == (15, 3, 5)


def test_days_beyond_the_lookback_are_dropped():
    book = BaselineBook(lookback_days=3, min_days=1)
    noon = 17 * 3600  # 12:00 CDT
    for d in range(6):
        book.add("A", SESSIONS[d] + noon, d + 1, 1, 0)
    assert book.trading_days == [SESSIONS[d] // DAY for d in (2, 3, 4, 5)]
    assert book.cell("A", SESSIONS[1] + noon) is None
    assert book.cell("A", SESSIONS[2] + noon) == (3, 1, 0)
    b = book.baseline("A", "contract", SESSIONS[6] + noon)
    assert b is not None and b.days == 3
    assert b.volume_median == pytest.approx(5 / 6)  # days 3, 4, 5 → volumes 4, 5, 6 ÷ 6 windows
