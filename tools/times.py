"""Times typed by people: ISO 8601, dates, ``now``/``today``/``yesterday`` and ``-2h``-style offsets.

:func:`parse_when` turns what a trader types at the command line into an aware UTC datetime:

| typed                          | means                                                      |
|--------------------------------|------------------------------------------------------------|
| ``2026-10-23T14:30``           | that instant in ``tz`` (a zone in the text wins)            |
| ``2026-10-23`` (``--since``)   | 00:00 of that day in ``tz``; as an end (``end=True``) the   |
|                                | end of that day (00:00 the next day)                        |
| ``now``                        | the current instant                                        |
| ``today`` / ``yesterday``      | 00:00 of that day in ``tz`` (as an end: the day's end)      |
| ``-2h``, ``-30m``, ``-3d``,    | that long before now (``s``, ``m``, ``h``, ``d``, ``w``);   |
| ``-1w``, ``+15m``              | ``+`` after now                                            |

``tz`` is ``utc`` or ``ct`` (exchange time, America/Chicago; ``exchange`` is an alias).

Raises :class:`models.errors.UsageError`-style :class:`ValueError` with a message naming the
accepted forms (the CLI prints it on one line and exits 2).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONES = {"utc": ZoneInfo("UTC"), "ct": ZoneInfo("America/Chicago"),
         "exchange": ZoneInfo("America/Chicago")}
"""``--tz`` names → zones (CME's exchange time is US Central)."""
FORMS = "ISO 8601 (2026-10-23T14:30), a date (2026-10-23), now, today, yesterday or -2h/-30m/-3d/-1w"
_OFFSET = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days|w|wk)$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400,
          "days": 86400, "w": 604800, "wk": 604800}


def zone(name: str) -> ZoneInfo:
    """Return the zone of a ``--tz`` name (``utc``, ``ct``, ``exchange``); ValueError otherwise."""
    try:
        return ZONES[name.strip().lower()]
    except KeyError:
        msg = f"unknown time zone {name!r}: use utc or ct (exchange time, America/Chicago)"
        raise ValueError(msg) from None


def parse_when(text: str, *, tz: str = "utc", end: bool = False,
               now: datetime | None = None) -> datetime:
    """Return the aware UTC instant ``text`` names (table in the module docstring).

    Parameters
    ----------
    text : str
        What was typed.
    tz : str
        Zone of a time or date without one: ``utc`` or ``ct``.
    end : bool
        The value ends a range: a bare date (or ``today``/``yesterday``) means the end of that day.
    now : datetime | None
        The current instant (aware; tests pass one), default the clock.

    Raises
    ------
    ValueError
        ``text`` is none of the accepted forms, or ``tz`` is unknown.
    """
    zone_info = zone(tz)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    raw = text.strip()
    word = raw.lower()
    if word == "now":
        return now
    if word in ("today", "yesterday"):
        day = now.astimezone(zone_info).date() - timedelta(days=word == "yesterday")
        return _day_edge(day, zone_info, end)
    match = _OFFSET.match(word)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return now + sign * timedelta(seconds=float(match.group(2)) * _UNITS[match.group(3)])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return _day_edge(date.fromisoformat(raw), zone_info, end)
        value = datetime.fromisoformat(raw.replace(" ", "T", 1) if " " in raw else raw)
    except ValueError:
        msg = f"cannot read the time {text!r}: expected {FORMS}"
        raise ValueError(msg) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone_info)
    return value.astimezone(UTC)


def _day_edge(day: date, zone_info: ZoneInfo, end: bool) -> datetime:
    start = datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=zone_info)
    return start.astimezone(UTC)
