"""Exchange time: CME trading days (17:00 CT roll, holidays, early closes) and CT buckets.

Expected values are written from CME Globex hours (17:00 CT open the evening before,
16:00/17:00 CT close, 12:00 CT on early-close days) and the America/Chicago DST dates, not
from the code under test.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from flows.baselines import BaselineBook
from flows.exchange_time import _weekday_roll, cme_sessions, exchange_clock

H = 3600


def _s(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp())


def _day(iso_date: str) -> int:
    return (dt.date.fromisoformat(iso_date) - dt.date(1970, 1, 1)).days


@pytest.mark.parametrize(("utc", "session", "hours_since_open"), [
    ("2023-12-25T23:00", "2023-12-26", 0.0),     # Christmas evening 17:00 CST opens Dec 26
    ("2023-12-25T12:00", "2023-12-26", 0.0),     # the holiday itself: no session, next one
    ("2023-12-22T22:59", "2023-12-22", 23 + 59 / 60),  # Friday 16:59 CST
    ("2024-03-10T22:00", "2024-03-11", 0.0),     # Sunday 17:00 CDT (DST began that morning)
    ("2024-03-08T14:30", "2024-03-08", 15.5),    # 08:30 CST
    ("2024-03-11T13:30", "2024-03-11", 15.5),    # 08:30 CDT: same time since the open
    ("2024-03-09T15:00", "2024-03-11", 0.0),     # Saturday: Monday's session, before its open
    ("2029-03-12T13:30", "2029-03-12", 15.5),    # beyond the calendar: weekday rule, CDT
    ("2029-03-09T23:30", "2029-03-12", 0.0),     # Friday 17:30 CST beyond the calendar
    ("1999-06-01T01:00", "1999-06-01", 3.0),     # before the calendar: Monday 20:00 CDT
])
def test_locate_gives_the_trading_day_and_seconds_since_its_1700_ct_open(
        utc: str, session: str, hours_since_open: float) -> None:
    day, second = cme_sessions().locate(np.array([_s(utc)]))
    assert day.tolist() == [_day(session)]
    assert second.tolist() == [round(hours_since_open * H)]


def test_early_close_and_full_sessions() -> None:
    sessions = cme_sessions()
    assert sessions.close_second(_day("2024-01-15")) == 19 * H  # MLK day: 12:00 CST close
    assert sessions.close_second(_day("2024-01-16")) == 24 * H
    assert sessions.close_second(_day("2023-12-25")) == 24 * H  # not a session


def test_calendar_and_weekday_rule_agree_away_from_holidays() -> None:
    rng = np.random.default_rng(1)
    ts = rng.integers(_s("2025-01-06T00:00"), _s("2025-05-23T00:00"), size=20_000)
    # closed 2025-01-09 (national day of mourning) and Good Friday; early closes (12:00 CT)
    # on MLK and Presidents' Day, after which the next session's evening begins
    special = {_day(d) for d in ("2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18")}
    day, second = cme_sessions().locate(ts)
    rule_day, rule_second = _weekday_roll(ts)
    keep = ~np.isin(rule_day, list(special))
    assert keep.mean() > 0.9
    np.testing.assert_array_equal(day[keep], rule_day[keep])
    np.testing.assert_array_equal(second[keep], rule_second[keep])


def test_exchange_clock_reads_chicago_time() -> None:
    assert exchange_clock(_s("2024-07-01T13:30")) == "08:30 CT"
    assert exchange_clock(_s("2024-12-02T14:30")) == "08:30 CT"


def _at(iso_utc: str) -> int:
    return _s(iso_utc)


def test_baseline_bucket_follows_the_chicago_clock_across_a_dst_change() -> None:
    # 08:30 CT: 13:30 UTC before the 2024-11-03 DST end, 14:30 UTC after it
    book = BaselineBook(lookback_days=20, min_days=5)
    before = ["2024-10-28", "2024-10-29", "2024-10-30", "2024-10-31", "2024-11-01"]
    after = ["2024-11-04", "2024-11-05", "2024-11-06"]
    for i, d in enumerate(before):
        book.add("K", _at(f"{d}T13:30"), 60 + 6 * i, 6, 0)
    for i, d in enumerate(after):
        book.add("K", _at(f"{d}T14:30"), 90 + 6 * i, 6, 0)
        book.add("K", _at(f"{d}T13:30"), 6000, 6, 0)  # 07:30 CST: another bucket
    b = book.baseline("K", "contract", _at("2024-11-07T14:35"))
    assert b is not None and b.days == 8
    daily = sorted([60, 66, 72, 78, 84, 90, 96, 102])
    assert b.volume_median == pytest.approx(np.median(daily) / 6)


def test_sunday_open_and_holiday_evening_count_with_the_next_trading_day() -> None:
    book = BaselineBook(lookback_days=20, min_days=1)
    book.add("K", _at("2023-12-22T15:00"), 1, 1, 0)   # Friday Dec 22
    book.add("K", _at("2023-12-25T23:30"), 2, 1, 0)   # Christmas evening 17:30 CST
    book.add("K", _at("2023-12-26T15:00"), 3, 1, 0)
    book.add("K", _at("2024-01-07T23:30"), 4, 1, 0)   # Sunday 17:30 CST
    assert book.trading_days == [_day(d) for d in ("2023-12-22", "2023-12-26", "2024-01-08")]
    assert book.cell("K", _at("2023-12-25T23:30")) == (2, 1, 0)
    assert book.cell("K", _at("2023-12-26T23:35")) is None  # 17:35 CST Dec 26 is Dec 27's


def test_early_closed_session_is_absent_not_zero_after_its_close() -> None:
    book = BaselineBook(lookback_days=20, min_days=1)
    days = ["2024-01-10", "2024-01-11", "2024-01-12", "2024-01-15", "2024-01-16"]
    for d in days:  # 08:00 CST every day; 14:00 CST except MLK day (closed 12:00 CST)
        book.add("K", _at(f"{d}T14:00"), 60, 6, 0)
        if d != "2024-01-15":
            book.add("K", _at(f"{d}T20:00"), 60, 6, 0)
    morning = book.baseline("K", "contract", _at("2024-01-17T14:00"))
    afternoon = book.baseline("K", "contract", _at("2024-01-17T20:00"))
    assert morning is not None and morning.days == 5
    assert afternoon is not None and afternoon.days == 4  # MLK day left out, not a zero
    assert afternoon.volume_median == pytest.approx(10.0)
