"""Exports for the desk's reporting: times to take in charge and to resolve, deadline met or missed."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailbot.export import COLUMNS, export_rows, export_tickets, summary

PARIS = ZoneInfo("Europe/Paris")
T0 = dt.datetime(2026, 11, 16, 8, 0, tzinfo=PARIS)
NOW = T0 + dt.timedelta(days=3)


@dataclass
class Ticket:
    id: int
    number: str
    status: str
    criticity: int | None
    cas: str | None = "B"
    application: str | None = "portail"
    site_code: str | None = "VAL"
    site_name: str | None = "CH de Valmont"
    title: str = "Portail – main courante : ne s'affiche plus"
    created_at: dt.datetime = T0
    taken_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    deadline: dt.datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    ticket_id: int
    type: str
    at: dt.datetime
    data: dict[str, Any] = field(default_factory=dict)


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


TICKETS = [
    Ticket(1, "SAMU-000001", "résolu", 1, cas="A", application=None, taken_at=h(0.5), resolved_at=h(6),
           deadline=h(24)),
    Ticket(2, "SAMU-000002", "clos", 2, taken_at=h(10), resolved_at=h(80), closed_at=h(90), deadline=h(72)),
    Ticket(3, "SAMU-000003", "pris en charge", 1, site_code=None, site_name=None, taken_at=h(2), deadline=h(24)),
    Ticket(4, "SAMU-000004", "à traiter", 3, deadline=h(120)),
    Ticket(5, "SAMU-000005", "clos", None, cas="D", application=None, closed_at=h(1)),
    Ticket(6, "SAMU-000006", "clos", 2, closed_at=h(30), deadline=h(72),
           title="rappeler le 06 12 34 56 78"),
]


def test_rows_with_times_and_deadline_outcome():
    rows = {r["number"]: r for r in export_rows(TICKETS, now=NOW, tz=PARIS)}
    r1 = rows["SAMU-000001"]
    assert (r1["hours_to_take"], r1["hours_to_resolve"], r1["deadline_status"]) == (0.5, 6.0, "met")
    assert r1["created"] == "2026-11-16T08:00+01:00" and r1["cas"] == "A"
    assert rows["SAMU-000002"]["deadline_status"] == "missed"           # resolved after 80 h > 72 h
    assert rows["SAMU-000003"]["deadline_status"] == "missed"           # open, due 24 h ago
    assert rows["SAMU-000003"]["site"] == "?"
    assert rows["SAMU-000003"]["hours_to_resolve"] is None
    assert rows["SAMU-000004"]["deadline_status"] == "pending"          # open, due in 2 days
    assert rows["SAMU-000005"]["deadline_status"] == "none"
    assert rows["SAMU-000006"]["deadline_status"] == "met"              # closed without resolution, in time
    assert rows["SAMU-000006"]["title"] == "rappeler le [TEL]"


def test_history_gives_first_take_and_last_resolution():
    reopened = Ticket(7, "SAMU-000007", "résolu", 2, taken_at=h(1), resolved_at=h(5), deadline=h(72))
    events = [Event(7, "taken", h(1)), Event(7, "resolved", h(5)), Event(7, "reopened", h(6)),
              Event(7, "taken", h(7)), Event(7, "resolved", h(75))]
    [row] = export_rows([reopened], events, now=NOW)
    assert row["hours_to_take"] == 1.0 and row["hours_to_resolve"] == 75.0
    assert row["deadline_status"] == "missed"
    [row] = export_rows([reopened], {7: events[:2]}, now=NOW)
    assert row["deadline_status"] == "met"


def test_csv_opens_in_a_spreadsheet():
    text = export_tickets(TICKETS, fmt="csv", now=NOW)
    assert text.startswith("\ufeff") and "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert tuple(rows[0]) == COLUMNS
    assert [r["number"] for r in rows] == [t.number for t in TICKETS]
    assert rows[2]["resolved"] == "" and rows[0]["hours_to_take"] == "0.5"


def test_json_has_rows_and_summary():
    data = json.loads(export_tickets(TICKETS, fmt="json", now=NOW))
    assert len(data["tickets"]) == 6
    s = data["summary"]
    assert s["by_cas"] == {"A": 1, "B": 4, "D": 1}
    assert s["by_criticity"] == {"1": 2, "2": 2, "3": 1, "none": 1}
    assert s["by_site"] == {"?": 1, "VAL": 5}
    assert s["deadline"] == {"met": 2, "missed": 2, "none": 1, "pending": 1}
    assert s["mean_hours_to_take"] == round((0.5 + 10 + 2) / 3, 2)


def test_summary_from_tickets_directly():
    assert summary(tickets=TICKETS, now=NOW)["tickets"] == 6


def test_unknown_format():
    with pytest.raises(ValueError, match="csv, json"):
        export_tickets(TICKETS, fmt="xlsx")
