"""Ticket exports for the desk's reporting (issue 4 item 5).

Role: ``mailbot tickets export --format csv|json``: one row per ticket with
its number, site, case, application, criticity, status, times of creation,
taking in charge and resolution, the time to take in charge and to resolve
(hours), its deadline and whether it was met; and :func:`summary`, counts
per case, criticity, site and deadline met/missed.

What "met" means: the ticket was resolved (or, never resolved, closed) at or
before its deadline -> ``met``; after it, or still open with the deadline
passed at ``now`` -> ``missed``; still open and not yet due -> ``pending``;
no criticity, hence no deadline -> ``none``. A ticket reopened and resolved
again is judged on its LAST resolution (what the writer lived through).

Times: ISO 8601 in the desk's zone (``tz``), so that a spreadsheet shows
the hours staff saw; durations in hours with two decimals. Exports carry no
mail text except the title, which is masked like everywhere else (no
writer address: reporting is about sites, not people). CSV is written with
the standard ``csv`` module (RFC 4180 quoting, CRLF line ends) and a UTF-8
byte order mark, because Excel opens a BOM-less UTF-8 CSV as Windows-1252
and garbles the accents.

Import rule: pure core. Standard library, :mod:`mailbot.masking`,
:mod:`mailbot.deadlines`, :mod:`mailbot.sites`. Records are duck-typed
(the store's ``TicketRecord`` / ``EventRecord``). No clock: ``now`` is
passed in.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.deadlines import DONE_STATUSES
from mailbot.masking import mask_text
from mailbot.sites import UNKNOWN_CODE

__all__ = ["COLUMNS", "FORMATS", "export_rows", "export_tickets", "summary"]

UTC = dt.UTC
FORMATS = ("csv", "json")
COLUMNS = (
    "number", "site", "site_name", "cas", "application", "criticity", "status", "title",
    "created", "taken", "resolved", "closed", "hours_to_take", "hours_to_resolve",
    "deadline", "deadline_status",
)
TAKEN_TYPES = ("taken",)
RESOLVED_TYPES = ("resolved",)


def _zone(tz: Any) -> dt.tzinfo:
    if tz is None:
        return ZoneInfo("Europe/Paris")
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


def _iso(value: dt.datetime | None, zone: dt.tzinfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="minutes") if value is not None else None


def _hours(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 3600, 2)


def _times_from_events(events: Sequence[Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(first taking in charge, last resolution) from the history."""
    taken = resolved = None
    for event in events:
        kind = getattr(event, "type", "")
        data = getattr(event, "data", {}) or {}
        at = _utc(getattr(event, "at", None))
        if kind in TAKEN_TYPES or (kind == "status_change" and data.get("new") == "pris en charge"):
            taken = taken or at
        if kind in RESOLVED_TYPES or (kind == "status_change" and data.get("new") == "résolu"):
            resolved = at
    return taken, resolved


def deadline_status(ticket: Any, done_at: dt.datetime | None, now: dt.datetime | None) -> str:
    """``met``, ``missed``, ``pending`` or ``none`` (see the module docstring)."""
    due = _utc(ticket.deadline)
    if due is None:
        return "none"
    if done_at is not None and ticket.status in DONE_STATUSES:
        return "met" if done_at <= due else "missed"
    current = _utc(now)
    if current is not None and current > due:
        return "missed"
    return "pending"


def export_rows(tickets: Iterable[Any], events: Mapping[int, Sequence[Any]] | Sequence[Any] | None = None,
                *, now: dt.datetime | None = None, tz: Any = None) -> list[dict[str, Any]]:
    """One dict per ticket, keys :data:`COLUMNS`. ``events``: the history,
    either ``{ticket_id: [events]}`` or one flat list (grouped by
    ``ticket_id`` here); without it the ticket's own ``taken_at`` /
    ``resolved_at`` are used."""
    zone = _zone(tz)
    by_ticket: dict[int | None, list[Any]] = {}
    if isinstance(events, Mapping):
        by_ticket = {int(k): list(v) for k, v in events.items()}
    elif events is not None:
        for event in events:
            by_ticket.setdefault(getattr(event, "ticket_id", None), []).append(event)
    rows = []
    for t in tickets:
        ev_taken, ev_resolved = _times_from_events(by_ticket.get(t.id, ()))
        created = _utc(t.created_at)
        taken = ev_taken or _utc(t.taken_at)
        resolved = ev_resolved or _utc(t.resolved_at)
        closed = _utc(getattr(t, "closed_at", None))
        if t.status not in DONE_STATUSES:
            resolved_shown = None   # reopened: the old resolution no longer stands
        else:
            resolved_shown = resolved
        done_at = resolved_shown or (closed if t.status == "clos" else None)
        rows.append({
            "number": t.number,
            "site": t.site_code or UNKNOWN_CODE,
            "site_name": t.site_name or "",
            "cas": t.cas,
            "application": t.application,
            "criticity": t.criticity,
            "status": t.status,
            "title": mask_text(t.title or "", emails=True),
            "created": _iso(created, zone),
            "taken": _iso(taken, zone),
            "resolved": _iso(resolved_shown, zone),
            "closed": _iso(closed, zone),
            "hours_to_take": _hours(created, taken),
            "hours_to_resolve": _hours(created, resolved_shown),
            "deadline": _iso(_utc(t.deadline), zone),
            "deadline_status": deadline_status(t, done_at, now),
        })
    return rows


def export_tickets(tickets: Iterable[Any], events: Mapping[int, Sequence[Any]] | Sequence[Any] | None = None,
                   fmt: str = "csv", *, now: dt.datetime | None = None, tz: Any = None) -> str:
    """The tickets as CSV (header line, comma-separated RFC 4180,
    UTF-8 BOM, CRLF) or JSON (``{"tickets": [...], "summary": {...}}``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    rows = export_rows(tickets, events, now=now, tz=tz)
    if fmt == "json":
        return json.dumps({"tickets": rows, "summary": summary(rows)}, ensure_ascii=False, indent=2) + "\n"
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def summary(rows: Iterable[Mapping[str, Any]] | None = None, *, tickets: Iterable[Any] | None = None,
            events: Any = None, now: dt.datetime | None = None, tz: Any = None) -> dict[str, Any]:
    """Counts per case, criticity, site, status and deadline outcome, with
    mean hours to take in charge and to resolve. Give the rows of
    :func:`export_rows`, or ``tickets`` (and ``events``, ``now``)."""
    if rows is None:
        rows = export_rows(tickets or (), events, now=now, tz=tz)
    rows = list(rows)

    def count(key: str) -> dict[str, int]:
        counter = Counter("none" if r[key] is None else str(r[key]) for r in rows)
        return dict(sorted(counter.items()))

    return {
        "tickets": len(rows),
        "by_cas": count("cas"),
        "by_criticity": count("criticity"),
        "by_site": count("site"),
        "by_status": count("status"),
        "deadline": count("deadline_status"),
        "mean_hours_to_take": _mean([r["hours_to_take"] for r in rows if r["hours_to_take"] is not None]),
        "mean_hours_to_resolve": _mean([r["hours_to_resolve"] for r in rows if r["hours_to_resolve"] is not None]),
    }
