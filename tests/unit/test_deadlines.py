"""Deadlines from criticity (policy §4), around the clock or in business hours, DST-safe."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from mailbot.config import BusinessHoursSection, DeadlinesSection
from mailbot.deadlines import (
    business_hours_between,
    deadline,
    due_within,
    is_overdue,
    remaining,
)

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


def paris(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


@dataclass
class T:
    status: str
    deadline: dt.datetime | None


def test_policy_defaults_from_creation():
    created = paris(2026, 11, 16, 8, 10)           # Monday
    assert deadline(1, created) == paris(2026, 11, 17, 8, 10)
    assert deadline(2, created) == paris(2026, 11, 19, 8, 10)
    assert deadline(3, created) == paris(2026, 11, 21, 8, 10)
    assert deadline(None, created) is None
    assert deadline(1, created).tzinfo == UTC


def test_configured_hours():
    settings = DeadlinesSection(level1_hours=4, level2_hours=48, level3_hours=96)
    created = paris(2026, 11, 16, 8, 0)
    assert deadline(1, created, settings) == paris(2026, 11, 16, 12, 0)
    assert deadline(2, created, settings) == paris(2026, 11, 18, 8, 0)
    assert deadline(3, created, settings) == paris(2026, 11, 20, 8, 0)


def test_24_real_hours_across_the_spring_dst_change():
    # Last Sunday of March 2027: 02:00 -> 03:00 in Paris. 24 h later is 09:00 on the wall clock.
    created = paris(2027, 3, 27, 8, 0)
    assert deadline(1, created) == paris(2027, 3, 28, 9, 0)
    assert deadline(1, created) - created.astimezone(UTC) == dt.timedelta(hours=24)


def test_business_hours_skip_nights_and_weekends():
    settings = DeadlinesSection(business_hours=BusinessHoursSection())   # mon-fri 08:00-18:00
    # Friday 17:00 + 24 working hours: 1 h Fri, 10 h Mon, 10 h Tue, 3 h Wed -> Wed 11:00
    assert deadline(1, paris(2026, 11, 20, 17, 0), settings, PARIS) == paris(2026, 11, 25, 11, 0)
    # Created on Saturday night: counting starts Monday 08:00
    assert deadline(1, paris(2026, 11, 21, 23, 0), settings, "Europe/Paris") == paris(2026, 11, 25, 12, 0)
    # Monday 08:00 and Monday 06:00 (before opening) give the same deadline
    assert deadline(1, paris(2026, 11, 16, 8, 0), settings, PARIS) == paris(2026, 11, 18, 12, 0)
    assert deadline(1, paris(2026, 11, 16, 6, 0), settings, PARIS) == paris(2026, 11, 18, 12, 0)


def test_business_hours_on_the_autumn_dst_weekend():
    # Sunday 25 October 2026 clocks go back; Monday's window is still 08:00-18:00 local.
    settings = DeadlinesSection(level1_hours=5, business_hours=BusinessHoursSection())
    assert deadline(1, paris(2026, 10, 24, 12, 0), settings, PARIS) == paris(2026, 10, 26, 13, 0)


def test_custom_days_and_hours():
    hours = BusinessHoursSection(days=("mon", "tue", "wed", "thu", "fri", "sat"), start="07:30", end="19:30")
    settings = DeadlinesSection(business_hours=hours)
    # Saturday 19:00 + 24 h: 0.5 h Sat, (Sunday off), 12 h Mon, 11.5 h Tue -> Tue 19:00
    assert deadline(1, paris(2026, 11, 21, 19, 0), settings, PARIS) == paris(2026, 11, 24, 19, 0)


def test_business_hours_between():
    hours = BusinessHoursSection()
    assert business_hours_between(paris(2026, 11, 20, 17, 0), paris(2026, 11, 23, 9, 30), hours, PARIS) \
        == dt.timedelta(hours=2, minutes=30)
    assert business_hours_between(paris(2026, 11, 20, 17, 0), paris(2026, 11, 23, 9, 30), None) \
        == dt.timedelta(hours=64, minutes=30)


def test_overdue_and_due_within_with_a_fixed_clock():
    now = paris(2026, 11, 16, 12, 0)
    late = T("à traiter", paris(2026, 11, 16, 11, 59))
    soon = T("pris en charge", paris(2026, 11, 16, 15, 30))
    later = T("escaladé", paris(2026, 11, 16, 16, 1))
    resolved_late = T("résolu", paris(2026, 11, 16, 11, 0))
    closed = T("clos", paris(2026, 11, 16, 13, 0))
    no_deadline = T("nouveau", None)
    assert is_overdue(late, now) and not due_within(late, now, 4)
    assert not is_overdue(soon, now) and due_within(soon, now, 4)
    assert not due_within(later, now, 4) and due_within(later, now, 5)
    assert not is_overdue(resolved_late, now) and not due_within(closed, now, 4)
    assert not is_overdue(no_deadline, now) and not due_within(no_deadline, now) and remaining(no_deadline, now) is None
    assert remaining(late, now) == dt.timedelta(minutes=-1)


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        deadline(1, dt.datetime(2026, 11, 16, 8, 0))
