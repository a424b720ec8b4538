"""Deadlines from criticity (policy §4): when a ticket must be handled.

Role: level 1 within 24 h of creation, level 2 within 72 h, level 3 within
5 days (hours configurable in ``[staff.deadlines]``), counted around the
clock or, when ``[staff.deadlines.business_hours]`` is set, only inside the
working days and hours, in the desk's time zone (Europe/Paris).

Time zones: all arithmetic is done on UTC instants. Python subtracts two
aware datetimes of the *same* ``tzinfo`` on the wall clock, so a naive
``local + timedelta(hours=24)`` across the last Sunday of March would give
23 or 25 real hours; here 24 h is always 24 real hours, and a business day
08:00–18:00 is its 10 real hours even on the day clocks change. Returned
datetimes are aware UTC (what the store keeps).

Import rule: pure core. Standard library (``datetime``, ``zoneinfo``) only;
settings are duck-typed (any object with ``level1_hours``,
``level2_hours``, ``level3_hours`` and ``business_hours`` having ``days``,
``start``, ``end``), so the core does not import :mod:`mailbot.config`.
No clock: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_HOURS", "DONE_STATUSES", "business_hours_between", "deadline", "due_within",
    "is_overdue", "remaining",
]

UTC = dt.UTC
#: Statuses for which no deadline runs any more (mailbot.adapters.store_schema).
DONE_STATUSES = ("résolu", "clos")
#: Policy §4 defaults, hours from creation.
DEFAULT_HOURS = {1: 24.0, 2: 72.0, 3: 120.0}
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_DAYS = 3660   # ten years of calendar: a guard against a misconfiguration loop


class _Ticket(Protocol):
    status: str
    deadline: dt.datetime | None


def _zone(tz: Any) -> dt.tzinfo:
    if tz is None:
        return ZoneInfo("Europe/Paris")
    if isinstance(tz, str):
        return ZoneInfo(tz)
    return tz


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def _hours_for(level: int, settings: Any) -> float:
    if settings is None:
        return DEFAULT_HOURS[level]
    return float(getattr(settings, f"level{level}_hours", DEFAULT_HOURS[level]))


def _clock(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    hours, minutes = str(value).split(":")
    return dt.time(int(hours), int(minutes))


def _windows(start_utc: dt.datetime, business: Any, zone: dt.tzinfo):
    """Working windows ``(begin, end)`` as UTC instants, from the local day
    of ``start_utc`` on. A wall time that does not exist (spring forward)
    is taken with ``fold=0`` and normalised by the UTC round trip."""
    days = {(_DAY_NAMES.index(d) if isinstance(d, str) else int(d)) for d in business.days}
    open_at, close_at = _clock(business.start), _clock(business.end)
    day = start_utc.astimezone(zone).date()
    for _ in range(_MAX_DAYS):
        if day.weekday() in days:
            begin = dt.datetime.combine(day, open_at, tzinfo=zone).astimezone(UTC)
            end = dt.datetime.combine(day, close_at, tzinfo=zone).astimezone(UTC)
            if end > begin:
                yield begin, end
        day += dt.timedelta(days=1)
    raise ValueError("business hours give no working time in ten years: check [staff.deadlines.business_hours]")


def deadline(criticity: int | None, created_at: dt.datetime, settings_deadlines: Any = None,
             tz: Any = None) -> dt.datetime | None:
    """When a ticket of this ``criticity`` created at ``created_at`` must be
    handled (aware UTC), or ``None`` without criticity (cas D, non-incidents).

    ``settings_deadlines``: ``Settings.staff.deadlines`` (None: policy §4
    defaults, around the clock). ``tz``: the zone of the business hours
    (``Settings.staff.zone`` or a name; default Europe/Paris).

    With business hours, only time inside a working window counts: a level 1
    ticket (24 h) created on Friday 17:00 with 08:00–18:00 Monday to Friday
    is due on Wednesday 11:00 (1 h Friday + 10 h Monday + 10 h Tuesday + 3 h).
    A ticket created outside the hours starts counting at the next opening.
    """
    if criticity not in (1, 2, 3):
        return None
    created = _aware(created_at, "created_at")
    hours = _hours_for(int(criticity), settings_deadlines)
    business = getattr(settings_deadlines, "business_hours", None) if settings_deadlines is not None else None
    if business is None:
        return created + dt.timedelta(hours=hours)
    left = dt.timedelta(hours=hours)
    for begin, end in _windows(created, business, _zone(tz)):
        if end <= created:
            continue
        start = max(begin, created)
        available = end - start
        if left <= available:
            return start + left
        left -= available
    raise AssertionError("unreachable")  # _windows raises first


def business_hours_between(start: dt.datetime, end: dt.datetime, business: Any, tz: Any = None) -> dt.timedelta:
    """Working time between two instants (for reports); ``business`` None:
    plain elapsed time."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        return dt.timedelta(0)
    if business is None:
        return end - start
    total = dt.timedelta(0)
    for begin, close in _windows(start, business, _zone(tz)):
        if begin >= end:
            break
        lo, hi = max(begin, start), min(close, end)
        if hi > lo:
            total += hi - lo
    return total


def is_overdue(ticket: _Ticket, now: dt.datetime) -> bool:
    """Deadline passed and the ticket neither resolved nor closed."""
    return (ticket.deadline is not None and ticket.status not in DONE_STATUSES
            and _aware(ticket.deadline, "deadline") < _aware(now, "now"))


def due_within(ticket: _Ticket, now: dt.datetime, hours: float = 4) -> bool:
    """Not overdue yet, but due within ``hours`` of ``now`` (still open)."""
    if ticket.deadline is None or ticket.status in DONE_STATUSES:
        return False
    due, now = _aware(ticket.deadline, "deadline"), _aware(now, "now")
    return now <= due <= now + dt.timedelta(hours=hours)


def remaining(ticket: _Ticket, now: dt.datetime) -> dt.timedelta | None:
    """Time left before the deadline (negative when overdue), None without deadline."""
    if ticket.deadline is None:
        return None
    return _aware(ticket.deadline, "deadline") - _aware(now, "now")
