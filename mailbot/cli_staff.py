"""``mailbot tickets list|show|take|assign|escalate|note|resolve|close|reopen|export``.

Role: the support desk's command line over :mod:`mailbot.staff` (register it
with ``main.add_command(tickets)`` in :mod:`mailbot.cli`). An adapter at the
edge: reads the configuration (``--config FILE``, else the embedded default,
like ``mailbot run``), opens the store, reads the wall clock, prints. Mails
the actions queue (to the writer for ``take`` and ``resolve``) leave with the
next outbox run of ``mailbot run``.

Everything printed is masked (patient identifiers, phone numbers) except
``show --originals``.

Import rule: adapter level: ``click``, :mod:`mailbot.config`, the store,
:mod:`mailbot.staff`, :mod:`mailbot.teams`, :mod:`mailbot.rulefiles`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from mailbot.adapters.store_schema import TICKET_STATUSES
from mailbot.errors import ConfigError, RuleFileError
from mailbot.masking import mask_text

__all__ = ["tickets"]

UTC = dt.UTC


@dataclass
class _Context:
    settings: Any
    store: Any
    desk: Any
    zone: ZoneInfo


def _config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                        help="Configuration file (default: the one given to `tickets`, else the embedded default).")(func)


@contextmanager
def _desk(config: str | None) -> Iterator[_Context]:
    from mailbot.adapters.store import Store
    from mailbot.config import load_config
    from mailbot.rulefiles import load_rulebook
    from mailbot.staff import DeskSettings, StaffDesk
    from mailbot.teams import load_teams

    if config is None:
        config = (click.get_current_context().find_object(dict) or {}).get("config")
    try:
        settings = load_config(Path(config) if config else None, os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        rulebook = load_rulebook(settings.rules.path)
        teams = load_teams(settings.rules.path)
    except RuleFileError as exc:
        raise click.ClickException(f"rule error: {exc}") from None
    store = Store.open(settings.database.dsn.reveal(), ticket_prefix=settings.bot.ticket_prefix)
    desk_settings = DeskSettings(bot_address=_reply_from(settings.bot.address), from_name=settings.bot.from_name,
                                 message_id_domain=settings.bot.message_id_domain)
    desk = StaffDesk(store, rulebook, teams, desk_settings, clock=lambda: dt.datetime.now(UTC))
    try:
        yield _Context(settings, store, desk, settings.staff.zone)
    finally:
        store.close()


def _reply_from(address: str) -> str:
    """The From of our mails, as the mailbox loop writes it: an address on
    ``localhost`` (the embedded default) has no dotted domain, which the
    reply composer refuses; the loop then answers as
    ``…@localhost.localdomain`` (RFC 6761 reserves both), and so do we."""
    from mailbot.loops import is_valid_address

    if is_valid_address(address):
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@localhost.localdomain" if domain.lower() == "localhost" else address


def _run(action: Callable[[], Any]) -> Any:
    from mailbot.staff import StaffActionError

    try:
        return action()
    except StaffActionError as exc:
        raise click.ClickException(str(exc)) from None
    except RuleFileError as exc:
        raise click.ClickException(f"rule error: {exc}") from None


def _when(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "-"


def _parse_at(value: str | None, zone: ZoneInfo) -> dt.datetime:
    if not value:
        return dt.datetime.now(UTC)
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date and time like 2026-11-03T14:30", param_hint="--at") from None
    return (at if at.tzinfo else at.replace(tzinfo=zone)).astimezone(UTC)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- group

@click.group()
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Configuration file (default: the embedded default, everything under var/).")
@click.pass_context
def tickets(ctx: click.Context, config: str | None) -> None:
    """The ticket backlog: list, show, and the desk's actions."""
    ctx.ensure_object(dict)["config"] = config


# --------------------------------------------------------------------------- list

def _ticket_json(t: Any, now: dt.datetime) -> dict[str, Any]:
    return {
        "number": t.number, "site": t.site_code, "site_name": t.site_name, "status": t.status,
        "assignee": t.assignee, "team": t.team, "criticity": t.criticity, "cas": t.cas,
        "application": t.application, "title": mask_text(t.title, emails=True),
        "created_at": t.created_at.isoformat(), "deadline": t.deadline.isoformat() if t.deadline else None,
        "overdue": t.is_overdue(now), "writer": t.writer_addr,
    }


@tickets.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(TICKET_STATUSES),
              help="Only this status (repeat for several).")
@click.option("--criticity", "criticities", multiple=True, type=click.IntRange(1, 3), help="1, 2 or 3 (repeatable).")
@click.option("--cas", "cases", multiple=True, type=click.Choice(["A", "B", "C", "D"], case_sensitive=False),
              help="Case A, B, C or D (repeatable).")
@click.option("--site", "sites", multiple=True, help="Site trigram (repeatable).")
@click.option("--assignee", default=None, help="Only the tickets of this person.")
@click.option("--overdue", is_flag=True, help="Deadline passed, not resolved or closed.")
@click.option("--waiting", is_flag=True, help="Waiting for the writer's answer.")
@click.option("--open", "open_only", is_flag=True, help="Only tickets not resolved or closed.")
@click.option("--at", "at", default=None, help="Judge deadlines at this time (ISO 8601, staff time zone); default now.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of the table.")
@_config_option
def list_cmd(statuses, criticities, cases, sites, assignee, overdue, waiting, open_only, at, as_json, config):
    """One line per ticket: number, site, status, person in charge, criticity, deadline, title."""
    from mailbot.staff import list_tickets

    with _desk(config) as c:
        now = _parse_at(at, c.zone)
        found = _run(lambda: list_tickets(
            c.store, status=list(statuses) or None, criticity=list(criticities) or None,
            cas=[x.upper() for x in cases] or None, site=list(sites) or None, assignee=assignee,
            overdue=overdue, waiting_for_writer=waiting, open_only=open_only, now=now))
        if as_json:
            click.echo(json.dumps([_ticket_json(t, now) for t in found], ensure_ascii=False, indent=2))
            return
        if not found:
            click.echo("no ticket matches")
            return
        click.echo(f"{'ticket':<12} {'site':<5} {'status':<26} {'in charge':<18} {'crit':<4} "
                   f"{'deadline':<17}  title")
        for t in found:
            late = "!" if t.is_overdue(now) else " "
            click.echo(f"{t.number:<12} {t.site_code or '?':<5} {_cut(t.status, 26):<26} "
                       f"{_cut(t.assignee or '-', 18):<18} {t.criticity or '-'!s:<4} "
                       f"{_when(t.deadline, c.zone):<16}{late}  {_cut(mask_text(t.title, emails=True), 70)}")
        late_count = sum(t.is_overdue(now) for t in found)
        click.echo(f"{len(found)} ticket(s)" + (f", {late_count} overdue (!)" if late_count else ""))


# --------------------------------------------------------------------------- show

@tickets.command("show")
@click.argument("number")
@click.option("--originals", is_flag=True, help="Do not mask patient identifiers (for those who need them).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@_config_option
def show_cmd(number: str, originals: bool, as_json: bool, config: str | None) -> None:
    """The ticket, its participants, its messages and its history."""
    from mailbot.staff import show

    with _desk(config) as c:
        view = _run(lambda: show(c.store, number, originals=originals))
        t, zone = view.ticket, c.zone
        if as_json:
            click.echo(json.dumps(_view_json(view), ensure_ascii=False, indent=2, default=str))
            return
        lines = [
            f"{t.number}  {t.title}",
            f"  status     {t.status}" + (f"  (escalated to {_team_name(c, t.team)})" if t.team else ""),
            f"  in charge  {t.assignee or '-'}",
            f"  site       {t.site_code or 'inconnu'}" + (f" – {t.site_name}" if t.site_name else ""),
            f"  case       {t.cas or '-'}" + (f" / {t.application}" if t.application else ""),
            f"  criticity  {t.criticity or '-'}   deadline {_when(t.deadline, zone)}"
            + ("  OVERDUE" if t.is_overdue(dt.datetime.now(UTC)) else ""),
            (f"  created    {_when(t.created_at, zone)}   taken {_when(t.taken_at, zone)}   "
             f"resolved {_when(t.resolved_at, zone)}   closed {_when(t.closed_at, zone)}"),
            f"  writer     {t.writer_name + ' ' if t.writer_name else ''}<{t.writer_addr}>",
        ]
        if t.fields:
            lines.append("  fields")
            lines += [f"    {k}: {v}" for k, v in t.fields.items()]
        if t.missing:
            lines.append(f"  missing    {', '.join(t.missing)}")
        if view.participants:
            lines.append("  participants  " + ", ".join(f"{p.address} ({p.role})" for p in view.participants))
        if view.attachments:
            lines.append("  attachments")
            lines += [f"    {a.filename or '(sans nom)'}  {a.content_type}  {a.size} bytes"
                      + ("" if a.stored else "  (too big: not kept)") for a in view.attachments]
        lines.append("")
        lines.append("messages")
        for m in view.messages:
            arrow = "<-" if m.direction == "in" else "->"
            lines.append(f"  {_when(m.at, zone)}  {arrow} {m.sender}  {m.subject}")
            text = (m.new_text or m.body_text or "").strip()
            lines += [f"      {line}" for line in text.splitlines()[:12]]
        lines.append("")
        lines.append("history")
        for e in view.events:
            lines.append(f"  {_when(e.at, zone)}  {e.actor:<24} {e.type:<20} {_event_text(e)}")
        click.echo("\n".join(lines))


def _team_name(c: _Context, team_id: str) -> str:
    team = c.desk.teams.get(team_id)
    return team.name if team is not None else team_id


def _event_text(e: Any) -> str:
    d = e.data
    if e.type in ("note",):
        return d.get("text", "").replace("\n", " / ")
    if e.type == "resolved":
        return _cut(d.get("text", "").replace("\n", " / "), 100)
    if e.type == "escalated":
        return f"-> {d.get('team_name') or d.get('team')}" + (f": {d['note']}" if d.get("note") else "")
    if e.type in ("taken", "assigned"):
        return f"-> {d.get('assignee')}"
    if e.type == "reopened":
        return f"{d.get('old')} -> {d.get('new')}" + (f" ({d['reason']})" if d.get("reason") else "")
    if "old" in d and "new" in d:
        return f"{d.get('old')} -> {d.get('new')}"
    shown = {k: v for k, v in d.items() if k not in ("mail_id", "outbox_id", "message_id")}
    return _cut(json.dumps(shown, ensure_ascii=False, default=str), 100) if shown else ""


def _view_json(view: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(view)
    for a in out["attachments"]:
        a.pop("content", None)
    return out


# --------------------------------------------------------------------------- actions

def _done(c: _Context, t: Any, what: str) -> None:
    click.echo(f"{t.number}: {what} (status « {t.status} »"
               + (f", in charge: {t.assignee}" if t.assignee else "") + ")")


@tickets.command("take")
@click.argument("number")
@click.option("--by", "by", required=True, help="Your name, as the writer will read it.")
@_config_option
def take_cmd(number: str, by: str, config: str | None) -> None:
    """Take the ticket in charge; the writer is told by mail who took it."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.take(number, by))
        _done(c, t, f"taken in charge by {t.assignee}; the writer will be told")


@tickets.command("assign")
@click.argument("number")
@click.option("--to", "to", required=True, help="Who gets the ticket.")
@click.option("--by", "by", required=True, help="Your name.")
@_config_option
def assign_cmd(number: str, to: str, by: str, config: str | None) -> None:
    """Give the ticket to a technician (no mail to the writer)."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.assign(number, to, by))
        _done(c, t, f"assigned to {t.assignee}")


@tickets.command("escalate")
@click.argument("number")
@click.option("--team", "team", required=True, help="Team id from rules/teams.toml (e.g. n2-reseau).")
@click.option("--by", "by", required=True, help="Your name.")
@click.option("--note", "note", default="", help="Why, for the team (kept in the history).")
@_config_option
def escalate_cmd(number: str, team: str, by: str, note: str, config: str | None) -> None:
    """Escalate to a team of rules/teams.toml (no mail to the writer)."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.escalate(number, team, by, note=note))
        _done(c, t, f"escalated to {c.desk.teams[t.team].name}")


@tickets.command("note")
@click.argument("number")
@click.argument("text")
@click.option("--by", "by", required=True, help="Your name.")
@_config_option
def note_cmd(number: str, text: str, by: str, config: str | None) -> None:
    """Add an internal note to the history (never sent to the writer)."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.note(number, text, by))
        _done(c, t, "note added")


@tickets.command("resolve")
@click.argument("number")
@click.argument("text")
@click.option("--by", "by", required=True, help="Your name (signs the mail).")
@_config_option
def resolve_cmd(number: str, text: str, by: str, config: str | None) -> None:
    """Mark resolved and mail TEXT (the resolution) to the writer."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.resolve(number, text, by))
        _done(c, t, "resolved; the resolution will be mailed to the writer")


@tickets.command("close")
@click.argument("number")
@click.option("--by", "by", required=True, help="Your name.")
@_config_option
def close_cmd(number: str, by: str, config: str | None) -> None:
    """Close the ticket (no mail)."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.close(number, by))
        _done(c, t, "closed")


@tickets.command("reopen")
@click.argument("number")
@click.option("--by", "by", required=True, help="Your name.")
@click.option("--reason", "reason", default="", help="Why (kept in the history).")
@_config_option
def reopen_cmd(number: str, by: str, reason: str, config: str | None) -> None:
    """Reopen a resolved or closed ticket."""
    with _desk(config) as c:
        t = _run(lambda: c.desk.reopen(number, by, reason=reason))
        _done(c, t, "reopened")


# --------------------------------------------------------------------------- export

@tickets.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@_config_option
def export_cmd(fmt: str, output: str | None, config: str | None) -> None:
    """Every ticket with its history, for the desk's reporting."""
    try:
        from mailbot.export import export_tickets
    except ImportError:
        raise click.ClickException("export is not available in this installation (mailbot.export is missing)") from None
    with _desk(config) as c:
        with c.store.read() as tx:
            all_tickets = tx.list_tickets()
            all_events = tx.events()
        data = export_tickets(all_tickets, all_events, fmt)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if output:
        Path(output).write_bytes(data)
        click.echo(f"{len(all_tickets)} ticket(s) written to {output}", err=True)
    else:
        click.echo(data, nl=False)
