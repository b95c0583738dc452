"""CME session dates for tests, from exchange_calendars (independent of flows.exchange_time)."""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache

import exchange_calendars as xc
import numpy as np


@lru_cache(maxsize=8)
def session_midnights(first: str, n: int) -> tuple[int, ...]:
    """UTC midnight (s since epoch) of the first ``n`` CMES session dates on or after ``first``."""
    with warnings.catch_warnings():  # exchange_calendars reads Series.values (pandas 3)
        warnings.simplefilter("ignore", DeprecationWarning)
        sessions = xc.get_calendar("CMES", start="2020-01-02").sessions
    dates = [d.date() for d in sessions if d.date() >= dt.date.fromisoformat(first)][:n]
    assert len(dates) == n
    return tuple(int((d - dt.date(1970, 1, 1)).days) * 86_400 for d in dates)


def session_day(midnight_s: int) -> int:
    """Days since epoch of a UTC midnight (the session label's day number)."""
    return int(np.int64(midnight_s) // 86_400)
