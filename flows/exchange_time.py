"""Exchange time: the CME Globex trading day and time of day in America/Chicago.

CME Globex equity-index futures and options trade in one session per *trading day* that opens
at 17:00 America/Chicago on the previous calendar day (Sunday for Monday's session, the
holiday's evening for the day after a holiday) and closes at 16:00 CT, with a 16:00-17:00
maintenance break; holidays remove a session, and some sessions close early (12:00 CT).
Source: CME Group "Trading Hours" for Equity Index products, and the ``CMES`` calendar of
`exchange_calendars <https://github.com/gerrymanoim/exchange_calendars>`_, which this module
reads: every session's label (the trading day), its open (17:00 CT the evening before) and its
close (17:00 CT, or the early close).

Two numbers locate a timestamp in exchange time (:meth:`CmeSessions.locate`):

- **session day**: the trading day, as days since 1970-01-01 of its label date. A timestamp
  between a close and the next open (weekend, holiday) belongs to the *next* session, so the
  Sunday-evening open and the evening of a holiday count with the following trading day.
- **session second**: seconds since that session's open (17:00 CT), which is DST-correct by
  construction: 08:30 CT is 15.5 h after the open in winter and in summer, while in UTC it is
  14:30 or 13:30. Before the open (a weekend print) it is 0.

Beyond the calendar's range (exchange_calendars lists ~20 years back and one year ahead) the
rule falls back to the 17:00 CT roll with Saturday/Sunday skipped and no holidays.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

CHICAGO = ZoneInfo("America/Chicago")
"""The exchange's time zone (CME Group: all Globex hours are Central Time)."""
ROLL_HOUR_CT = 17
"""Hour (CT) at which the CME trading day rolls to the next one."""
_DAY_S = 86_400


class CmeSessions:
    """CME Globex sessions (exchange_calendars ``CMES``) as int64 arrays, vectorised lookups.

    Attributes
    ----------
    days : ndarray of int64, shape (s,)
        Session labels, days since 1970-01-01.
    open_s, close_s : ndarray of int64, shape (s,)
        Session open and close, s since epoch UTC.
    """

    def __init__(self, calendar: str = "CMES", start: str = "2000-01-03") -> None:
        import exchange_calendars as xc  # heavy import: only when exchange time is first used

        with warnings.catch_warnings():  # exchange_calendars 4.x reads Series.values (pandas 3)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            cal = xc.get_calendar(calendar, start=start)
        self.days = cal.sessions.values.astype("datetime64[D]").astype(np.int64)
        self.open_s = _epoch_s(cal.opens)
        self.close_s = _epoch_s(cal.closes)

    def locate(self, ts_s: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Trading day and seconds since its open of each timestamp (module docstring).

        Parameters
        ----------
        ts_s : int or array-like of int64, shape (n,)
            s since epoch UTC.

        Returns
        -------
        (day, second) : ndarray of int64, shape (n,) each
            Session day (days since epoch of the label date) and seconds since the session's
            17:00 CT open (0 for timestamps before it).
        """
        ts = np.atleast_1d(np.asarray(ts_s, dtype=np.int64))
        idx = np.searchsorted(self.close_s, ts, side="right")
        inside = (idx < len(self.days)) & (ts >= self.open_s[0])
        day = np.empty(len(ts), dtype=np.int64)
        second = np.empty(len(ts), dtype=np.int64)
        i = idx[inside]
        day[inside] = self.days[i]
        second[inside] = np.maximum(ts[inside] - self.open_s[i], 0)
        if not inside.all():
            out = ~inside
            day[out], second[out] = _weekday_roll(ts[out])
        return day, second

    def locate_ns(self, ts_ns: np.ndarray) -> np.ndarray:
        """Session day (int64[n]) of timestamps in ns since epoch UTC (e.g. ``ts_event``)."""
        return self.locate(np.asarray(ts_ns, dtype=np.int64) // 1_000_000_000)[0]

    def open_of(self, day: int) -> int:
        """Open (s since epoch UTC) of the first session on or after trading day ``day``."""
        if self.days[0] <= day <= self.days[-1]:
            return int(self.open_s[np.searchsorted(self.days, day)])
        return _weekday_open(dt.date(1970, 1, 1) + dt.timedelta(days=day))[1]

    def close_second(self, day: int) -> int:
        """Length of session ``day`` in seconds from its open (24 h, or less on an early close).

        Days outside the calendar (holidays, out of range) get a full 24 h.
        """
        i = int(np.searchsorted(self.days, day))
        if i < len(self.days) and self.days[i] == day:
            return int(self.close_s[i] - self.open_s[i])
        return _DAY_S


def _weekday_roll(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fallback: 17:00 CT roll, weekends to Monday, no holidays (per unique hour via zoneinfo)."""
    hours, inverse = np.unique(ts // 3600, return_inverse=True)
    day = np.empty(len(hours), dtype=np.int64)
    open_s = np.empty(len(hours), dtype=np.int64)
    for j, hour in enumerate(hours.tolist()):
        local = dt.datetime.fromtimestamp(hour * 3600, CHICAGO)
        day[j], open_s[j] = _weekday_open(
            local.date() + dt.timedelta(days=1 if local.hour >= ROLL_HOUR_CT else 0))
    return day[inverse], np.maximum(ts - open_s[inverse], 0)


def _weekday_open(label: dt.date) -> tuple[int, int]:
    """(day number, open s UTC) of the first weekday session on or after ``label``."""
    while label.weekday() >= 5:
        label += dt.timedelta(days=1)
    opened = dt.datetime.combine(label - dt.timedelta(days=1), dt.time(ROLL_HOUR_CT), CHICAGO)
    return (label - dt.date(1970, 1, 1)).days, int(opened.timestamp())


@lru_cache(maxsize=1)
def cme_sessions() -> CmeSessions:
    """Return the process-wide :class:`CmeSessions` (built once, ~0.1 s)."""
    return CmeSessions()


@lru_cache(maxsize=4096)
def exchange_clock(ts_s: int) -> str:
    """``HH:MM CT`` wall-clock time in America/Chicago of a timestamp (s since epoch UTC), cached."""
    return f"{dt.datetime.fromtimestamp(ts_s, CHICAGO):%H:%M} CT"


@lru_cache(maxsize=8192)
def locate_one(ts_s: int) -> tuple[int, int]:
    """(session day, seconds since its open) of one timestamp (s since epoch UTC), cached."""
    day, second = cme_sessions().locate(ts_s)
    return int(day[0]), int(second[0])


def _epoch_s(times: object) -> np.ndarray:
    """int64 s since epoch of a tz-aware (UTC) pandas Series of session times."""
    return np.asarray(times.dt.tz_convert(None).to_numpy(), dtype="datetime64[s]").astype(np.int64)  # type: ignore[attr-defined]
