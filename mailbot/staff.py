"""Staff actions on tickets: take, assign, escalate, note, resolve, close, reopen; list and show.

Role: the Python API the dashboard and ``mailbot tickets`` (``cli_staff``)
call (issue 4 item 2). Each action runs in ONE store transaction that
re-reads the ticket (row locked on PostgreSQL), checks the transition, updates
the ticket, appends one history event whose actor is the staff member, and,
when the writer must be told, queues the mail as an outbox row: the outbox
job sends it exactly once (reliability §1.5), with a Message-ID derived from
the event (``make_message_id(domain, "event:<id>:taken")``), so a retry never
makes a second, different mail. Nothing here speaks SMTP.

Mails to the writer:

- ``take`` -> template ``rules/templates/taken.txt`` (« votre demande
  SAMU-000123 est prise en charge par … »);
- ``resolve`` -> ``rules/templates/resolved.txt`` with the resolution text;
- ``note``, ``assign``, ``escalate``, ``close``, ``reopen`` never write to
  the writer. ``escalate`` notifies the team's address when
  ``rules/teams.toml`` gives one, with a masked summary only (patient data
  stays in the store, reliability §3.8).

The writer's mail is threaded like the bot's replies (:func:`mailbot.compose.
render_reply` builds the headers: ``In-Reply-To``/``References`` to the last
message of the thread, RFC 5322 §3.6.4; ``[SAMU-000123]`` in the subject;
``Auto-Submitted: auto-replied``, RFC 3834), so the writer's answer finds its
ticket, and an answer to a resolved ticket reopens it: the mailbox loop sees
``dialogue.thread_decision(...) == "reopen"`` and should apply
:func:`reopen_in` in its own transaction (same status rule as a staff
reopen: "pris en charge" when someone is assigned, else "à traiter").

Display: :func:`show` masks patient identifiers (:func:`mailbot.masking.
mask_text`) in every text it returns unless ``originals=True``.

Import rule: service level. Standard library, ``jinja2`` (sandbox, as in
:mod:`mailbot.compose`), the pure core (compose, masking, loops, teams,
rulebook, errors) and the store's record types and vocabulary
(:mod:`mailbot.adapters.store`). The store is handed in; time comes from
``now=`` or the ``clock`` given, never from ``datetime.now()``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailbot.adapters.store import (
    AttachmentRecord,
    EventRecord,
    MessageRecord,
    Participant,
    Store,
    TicketNotFound,
    TicketRecord,
    Tx,
)
from mailbot.adapters.store_schema import TICKET_DONE_STATUSES, TICKET_STATUSES
from mailbot.compose import clean_header_text, make_message_id, render_reply, template_context
from mailbot.dialogue import ReplyPlan
from mailbot.errors import MailbotError, RuleFileError
from mailbot.loops import ascii_address
from mailbot.masking import mask_text
from mailbot.rulebook import Rulebook
from mailbot.teams import Teams, UnknownTeam

__all__ = [
    "ACTION_EVENTS",
    "DeskSettings",
    "StaffActionError",
    "StaffDesk",
    "TicketView",
    "list_tickets",
    "reopen_in",
    "reopened_status",
    "show",
]

UTC = dt.UTC

NEW = "nouveau"
WAITING = "en attente d'informations"
TO_HANDLE = "à traiter"
TAKEN = "pris en charge"
ESCALATED = "escaladé"
RESOLVED = "résolu"
CLOSED = "clos"
INCOMPLETE = "incomplet"
#: Statuses in which the desk still has work to do.
OPEN_STATUSES = tuple(s for s in TICKET_STATUSES if s not in TICKET_DONE_STATUSES)

#: History event type written by each action.
ACTION_EVENTS = {
    "take": "taken", "assign": "assigned", "escalate": "escalated", "note": "note",
    "resolve": "resolved", "close": "closed", "reopen": "reopened",
}

MAX_NOTE = 20_000          # characters of a note or a resolution text
MAX_NAME = 80              # characters of a staff name

# Control characters other than TAB and LF, NEL, U+2028/2029, bidi controls:
# free text from staff goes into a mail body (never a header).
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


class StaffActionError(MailbotError):
    """The action cannot be done (unknown ticket or team, a transition the
    desk's workflow forbids, an empty name or text). The message says why,
    in words a technician can act on."""


@dataclass(frozen=True)
class DeskSettings:
    """What the desk needs of the configuration (``[bot]``)."""

    bot_address: str = "mailbot@localhost.localdomain"
    from_name: str = "Support informatique SAMU"
    message_id_domain: str = "localhost.localdomain"


@dataclass(frozen=True)
class TicketView:
    """A ticket with its thread, for display (masked unless ``originals``)."""

    ticket: TicketRecord
    participants: tuple[Participant, ...]
    messages: tuple[MessageRecord, ...]
    attachments: tuple[AttachmentRecord, ...]
    events: tuple[EventRecord, ...]
    masked: bool


# ----------------------------------------------------------------------------
# helpers

def _aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _name(value: str | None, what: str = "staff member") -> str:
    """A staff name as it goes into the history and a mail (one line)."""
    name = clean_header_text(value, MAX_NAME)
    if not name:
        raise StaffActionError(f"the {what}'s name is empty: give it with --by / --to")
    return name


def _text(value: str | None, what: str) -> str:
    text = unicodedata.normalize("NFC", str(value or "")).replace("\r\n", "\n").replace("\r", "\n")
    text = _BODY_CONTROL.sub(" ", text).strip()
    if not text:
        raise StaffActionError(f"the {what} text is empty")
    if len(text) > MAX_NOTE:
        raise StaffActionError(f"the {what} text is too long ({len(text)} characters, at most {MAX_NOTE})")
    return text


def _find(tx: Tx, ticket: TicketRecord | int | str, *, for_update: bool = False) -> TicketRecord:
    """The ticket from a record, an id, or a number as staff type it
    (``SAMU-000123``, ``samu-123``, ``[SAMU-123]`` or just ``123``)."""
    if isinstance(ticket, TicketRecord):
        ticket_id = ticket.id
    elif isinstance(ticket, int):
        ticket_id = ticket
    else:
        text = str(ticket).strip()
        if re.fullmatch(r"\d{1,9}", text):
            ticket_id = int(text)
        else:
            found = tx.ticket_by_number(text)
            if found is None:
                raise StaffActionError(f"no ticket {text!r} (numbers look like {tx.store.format_number(123)})")
            ticket_id = found.id
    try:
        return tx.ticket(ticket_id, for_update=for_update)
    except TicketNotFound:
        raise StaffActionError(f"no ticket {tx.store.format_number(ticket_id)}") from None


def _refuse(record: TicketRecord, action: str, why: str) -> StaffActionError:
    return StaffActionError(f"cannot {action} {record.number}: {why} (status « {record.status} »)")


def reopened_status(ticket: TicketRecord) -> str:
    """Where a reopened ticket goes: back to its technician when it has one."""
    return TAKEN if ticket.assignee else TO_HANDLE


def reopen_in(tx: Tx, ticket: TicketRecord | int | str, *, by: str, now: dt.datetime,
              reason: str = "", via: str = "staff", data: dict[str, Any] | None = None) -> TicketRecord:
    """Reopen a resolved or closed ticket inside the caller's transaction.

    The mailbox loop calls it when the writer answers a resolved ticket
    (``dialogue.thread_decision`` says ``"reopen"``; ``by`` = the writer's
    address, ``via="mail"``); :meth:`StaffDesk.reopen` calls it for staff.
    The earlier resolution stays in the history; ``resolved_at`` and
    ``closed_at`` are cleared so the next resolution is measured afresh.
    """
    now = _aware(now)
    record = _find(tx, ticket, for_update=True)
    if record.status not in TICKET_DONE_STATUSES:
        raise _refuse(record, "reopen", "it is not resolved or closed")
    new_status = reopened_status(record)
    updated = tx.update_ticket(record.id, now=now, status=new_status, resolved_at=None, closed_at=None)
    payload = {"old": record.status, "new": new_status, "via": via, "reason": reason}
    payload.update(data or {})
    tx.add_event(record.id, ACTION_EVENTS["reopen"], at=now, actor=by, data=payload)
    return updated


# ----------------------------------------------------------------------------
# listing and showing

def list_tickets(store: Store, *, status: str | list[str] | None = None, criticity: int | list[int] | None = None,
                 cas: str | list[str] | None = None, site: str | list[str] | None = None,
                 assignee: str | None = None, overdue: bool = False, waiting_for_writer: bool = False,
                 open_only: bool = False, now: dt.datetime | None = None,
                 limit: int | None = None) -> list[TicketRecord]:
    """Tickets matching every filter given, oldest first.

    ``overdue``: deadline passed at ``now`` and not resolved/closed (``now``
    is then required); ``waiting_for_writer``: our question is unanswered
    (status "en attente d'informations"); ``site``: the site's trigram.
    """
    if status is not None:
        for s in [status] if isinstance(status, str) else status:
            if s not in TICKET_STATUSES:
                raise StaffActionError(f"unknown status {s!r}; one of: {', '.join(TICKET_STATUSES)}")
    filters: dict[str, Any] = {"status": status, "criticity": criticity, "cas": cas, "assignee": assignee}
    if site is not None:
        filters["site_code"] = [s.upper() for s in ([site] if isinstance(site, str) else site)]
    if overdue:
        if now is None:
            raise ValueError("overdue=True needs now=")
        filters["overdue_at"] = _aware(now)
    if waiting_for_writer:
        filters["waiting_for_writer"] = True
    if open_only:
        filters["open_only"] = True
    with store.read() as tx:
        return tx.list_tickets(limit=limit, **{k: v for k, v in filters.items() if v is not None})


def _mask(text: str | None) -> str:
    return mask_text(text or "")


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_value(v) for v in value)
    return value


def show(store: Store, number: TicketRecord | int | str, *, originals: bool = False) -> TicketView:
    """The ticket, its participants, messages, attachments and history.

    Texts are masked (NIR, dates of birth, phone numbers) unless
    ``originals``: the store keeps the originals for those who need them.
    """
    with store.read() as tx:
        ticket = _find(tx, number)
        view = TicketView(ticket, tuple(tx.participants(ticket.id)), tuple(tx.messages(ticket.id)),
                          tuple(tx.attachments(ticket.id)), tuple(tx.events(ticket.id)), masked=not originals)
    if originals:
        return view
    t = view.ticket
    ticket = dataclasses.replace(t, title=_mask(t.title), thread_subject=_mask(t.thread_subject),
                                 fields=_mask_value(dict(t.fields)))
    messages = tuple(dataclasses.replace(m, subject=_mask(m.subject), body_text=_mask(m.body_text),
                                         new_text=_mask(m.new_text)) for m in view.messages)
    events = tuple(dataclasses.replace(e, data=_mask_value(dict(e.data))) for e in view.events)
    return dataclasses.replace(view, ticket=ticket, messages=messages, events=events)


# ----------------------------------------------------------------------------
# the desk

class StaffDesk:
    """Staff actions over a :class:`~mailbot.adapters.store.Store`.

    ``rulebook`` gives the mail templates (``taken``, ``resolved``),
    ``teams`` the escalation targets, ``clock`` the time when an action is
    called without ``now``. Every action returns the updated ticket.
    """

    def __init__(self, store: Store, rulebook: Rulebook, teams: Teams, settings: DeskSettings = DeskSettings(),
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store
        self.rulebook = rulebook
        self.teams = teams
        self.settings = settings
        self.clock = clock

    def _now(self, now: dt.datetime | None) -> dt.datetime:
        if now is None:
            if self.clock is None:
                raise ValueError("give now= or build the desk with a clock")
            now = self.clock()
        return _aware(now)

    # -- reading ---------------------------------------------------------------

    def list_tickets(self, **filters: Any) -> list[TicketRecord]:
        if filters.get("overdue") and filters.get("now") is None:
            filters["now"] = self._now(None)
        return list_tickets(self.store, **filters)

    def show(self, number: TicketRecord | int | str, *, originals: bool = False) -> TicketView:
        return show(self.store, number, originals=originals)

    # -- actions ---------------------------------------------------------------

    def take(self, ticket: TicketRecord | int | str, who: str, now: dt.datetime | None = None) -> TicketRecord:
        """``who`` takes the ticket in charge: status "pris en charge",
        assignee, ``taken_at``; the writer is told by mail who took it."""
        who, now = _name(who), self._now(now)
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            if record.status in TICKET_DONE_STATUSES:
                raise _refuse(record, "take", "it is finished; reopen it first")
            if record.status == TAKEN and record.assignee == who:
                raise _refuse(record, "take", f"{who} already has it in charge")
            updated = tx.update_ticket(record.id, now=now, status=TAKEN, assignee=who,
                                       taken_at=record.taken_at or now)
            event = tx.add_event(record.id, ACTION_EVENTS["take"], at=now, actor=who,
                                 data={"old": record.status, "new": TAKEN, "assignee": who,
                                       "previous_assignee": record.assignee})
            self._mail_writer(tx, updated, event, "taken", who, now)
            return tx.ticket(record.id)

    def assign(self, ticket: TicketRecord | int | str, who: str, by: str,
               now: dt.datetime | None = None) -> TicketRecord:
        """Give the ticket to ``who`` (status unchanged; no mail: the writer
        hears from the technician when they take it)."""
        who, by, now = _name(who, "assignee"), _name(by), self._now(now)
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            if record.status == CLOSED:
                raise _refuse(record, "assign", "it is closed; reopen it first")
            if record.assignee == who:
                raise _refuse(record, "assign", f"it is already assigned to {who}")
            updated = tx.update_ticket(record.id, now=now, assignee=who)
            tx.add_event(record.id, ACTION_EVENTS["assign"], at=now, actor=by,
                         data={"assignee": who, "previous_assignee": record.assignee})
            return updated

    def escalate(self, ticket: TicketRecord | int | str, team_id: str, by: str, now: dt.datetime | None = None,
                 note: str = "") -> TicketRecord:
        """Pass the ticket to a team of ``rules/teams.toml``: status
        "escaladé", ``team``; the team's address (if any) gets a masked
        summary. Nothing goes to the writer."""
        by, now = _name(by), self._now(now)
        try:
            team = self.teams.get_team(team_id)
        except UnknownTeam as exc:
            raise StaffActionError(str(exc)) from None
        note = _text(note, "note") if (note or "").strip() else ""
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            if record.status in TICKET_DONE_STATUSES:
                raise _refuse(record, "escalate", "it is finished; reopen it first")
            if record.status == ESCALATED and record.team == team.id:
                raise _refuse(record, "escalate", f"it is already escalated to {team.name}")
            updated = tx.update_ticket(record.id, now=now, status=ESCALATED, team=team.id)
            event = tx.add_event(record.id, ACTION_EVENTS["escalate"], at=now, actor=by,
                                 data={"old": record.status, "new": ESCALATED, "team": team.id,
                                       "team_name": team.name, "previous_team": record.team, "note": note})
            if team.address:
                self._mail_team(tx, updated, event, team.address, team.name, by, now)
            return tx.ticket(record.id)

    def note(self, ticket: TicketRecord | int | str, text: str, by: str, now: dt.datetime | None = None) -> TicketRecord:
        """An internal note in the history. NEVER mailed to the writer."""
        by, now, text = _name(by), self._now(now), _text(text, "note")
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            tx.add_event(record.id, ACTION_EVENTS["note"], at=now, actor=by, data={"text": text})
            # Touch updated_at only: a note is activity on the ticket.
            return tx.update_ticket(record.id, now=now)

    def resolve(self, ticket: TicketRecord | int | str, text: str, by: str,
                now: dt.datetime | None = None) -> TicketRecord:
        """Status "résolu", ``resolved_at``; the resolution text is mailed to
        the writer (an answer to it reopens the ticket)."""
        by, now, text = _name(by), self._now(now), _text(text, "resolution")
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            if record.status == RESOLVED:
                raise _refuse(record, "resolve", "it is already resolved")
            if record.status == CLOSED:
                raise _refuse(record, "resolve", "it is closed; reopen it first")
            updated = tx.update_ticket(record.id, now=now, status=RESOLVED, resolved_at=now,
                                       assignee=record.assignee or by, taken_at=record.taken_at or now)
            event = tx.add_event(record.id, ACTION_EVENTS["resolve"], at=now, actor=by,
                                 data={"old": record.status, "new": RESOLVED, "text": text})
            self._mail_writer(tx, updated, event, "resolved", by, now, resolution=text)
            return tx.ticket(record.id)

    def close(self, ticket: TicketRecord | int | str, by: str, now: dt.datetime | None = None) -> TicketRecord:
        """Status "clos", ``closed_at`` (normally after "résolu"; an open
        ticket may be closed too: a duplicate, a mistake). No mail. A later
        answer from the writer starts a new ticket, linked to this one."""
        by, now = _name(by), self._now(now)
        with self.store.transaction() as tx:
            record = _find(tx, ticket, for_update=True)
            if record.status == CLOSED:
                raise _refuse(record, "close", "it is already closed")
            updated = tx.update_ticket(record.id, now=now, status=CLOSED, closed_at=now)
            tx.add_event(record.id, ACTION_EVENTS["close"], at=now, actor=by,
                         data={"old": record.status, "new": CLOSED})
            return updated

    def reopen(self, ticket: TicketRecord | int | str, by: str, now: dt.datetime | None = None,
               reason: str = "") -> TicketRecord:
        """Back to "à traiter", or "pris en charge" when someone is assigned."""
        by, now = _name(by), self._now(now)
        reason = _text(reason, "reason") if (reason or "").strip() else ""
        with self.store.transaction() as tx:
            return reopen_in(tx, ticket, by=by, now=now, reason=reason)

    # -- mails -------------------------------------------------------------------

    def _render(self, template: str, ticket: TicketRecord, extras: dict[str, str]) -> str:
        source = self.rulebook.templates.get(template)
        where = f"templates/{template}.txt"
        if source is None:
            raise RuleFileError(where, template, "", "template file missing")
        ctx = template_context(ReplyPlan(template), ticket.number, ticket.writer_name, ticket.thread_subject,
                               self.rulebook)
        ctx.update(extras)
        try:
            text = _ENV.from_string(source).render(ctx)
        except jinja2.TemplateError as exc:
            raise RuleFileError(where, template, "", f"template error: {exc}") from None
        text = "\n".join(line.rstrip() for line in text.strip().splitlines())
        return re.sub(r"\n{3,}", "\n\n", text) + "\n"

    def _mail_writer(self, tx: Tx, ticket: TicketRecord, event: EventRecord, purpose: str, staff: str,
                     now: dt.datetime, resolution: str = "") -> None:
        """Queue the ``taken`` / ``resolved`` mail to the writer, in the
        thread; recorded as an outgoing message and a ``reply_queued`` event
        (or ``reply_suppressed`` when the ticket has no usable address)."""
        to_addr = ascii_address(ticket.writer_addr or "")
        if to_addr is None:
            tx.add_event(ticket.id, "reply_suppressed", at=now, actor="mailbot",
                         data={"purpose": purpose, "reason": "no usable address for the writer"})
            return
        body = self._render(purpose, ticket, {"staff": staff, "resolution": resolution})
        messages = tx.messages(ticket.id)
        in_reply_to = next((m.message_id for m in reversed(messages) if m.message_id), None) or ""
        refs = tuple(m.message_id for m in messages if m.message_id)
        message_id = make_message_id(self.settings.message_id_domain, f"event:{event.id}:{purpose}")
        # compose builds and checks every header (cleaning, threading,
        # RFC 3834 marks); the body, which carries staff-written text, is
        # rendered above with the extra placeholders ``staff``/``resolution``.
        book = dataclasses.replace(self.rulebook, templates={**self.rulebook.templates, purpose: ""})
        msg = render_reply(ReplyPlan(purpose), ticket.number, to_addr, ticket.writer_name, ticket.thread_subject,
                           in_reply_to, refs, book, self.settings.bot_address, message_id, now,
                           from_name=self.settings.from_name)
        msg.set_content(body, charset="utf-8")
        row, created = tx.enqueue_outbox(cause=f"event:{event.id}", purpose=purpose, message_id=message_id,
                                         to_addr=to_addr, raw=msg.as_bytes(), now=now,
                                         subject=str(msg["Subject"]), ticket_id=ticket.id)
        if not created:
            return
        tx.add_message(ticket.id, direction="out", at=now, message_id=message_id, in_reply_to=in_reply_to or None,
                       references=refs, sender=self.settings.bot_address, subject=str(msg["Subject"]),
                       body_text=body, outbox_id=row.id)
        tx.add_event(ticket.id, "reply_queued", at=now, actor="mailbot",
                     data={"template": purpose, "outbox_id": row.id, "message_id": message_id})

    def _mail_team(self, tx: Tx, ticket: TicketRecord, event: EventRecord, to_addr: str, team_name: str,
                   by: str, now: dt.datetime) -> None:
        """The escalation notice to a team: masked, no mail text quoted."""
        message_id = make_message_id(self.settings.message_id_domain, f"event:{event.id}:escalation")
        title = clean_header_text(mask_text(ticket.title, emails=True), 100)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = self.settings.bot_address
        msg["To"] = to_addr
        msg["Subject"] = f"[{ticket.number}] Escalade vers {clean_header_text(team_name, 60)} : {title}"
        msg["Date"] = email.utils.format_datetime(now)
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"     # RFC 3834 §5: not a reply, still never answered
        msg["X-Auto-Response-Suppress"] = "All"
        msg["X-Loop"] = self.settings.bot_address
        msg["X-Mailbot-Ticket"] = ticket.number
        deadline = ticket.deadline.strftime("%Y-%m-%d %H:%M UTC") if ticket.deadline else "-"
        note = mask_text(str(event.data.get("note") or ""), emails=True)
        lines = [
            f"Le ticket {ticket.number} est escaladé vers {team_name} par {by}.",
            "",
            f"Titre : {title}",
            f"Site : {ticket.site_code or 'inconnu'}{' – ' + ticket.site_name if ticket.site_name else ''}",
            f"Cas : {ticket.cas or '-'}{' / ' + ticket.application if ticket.application else ''}",
            f"Criticité : {ticket.criticity or '-'}   Échéance : {deadline}",
        ]
        if note:
            lines += ["", "Note :", note]
        lines += ["", f"Le détail est dans l'outil : mailbot tickets show {ticket.number}"]
        msg.set_content("\n".join(lines) + "\n", charset="utf-8")
        row, created = tx.enqueue_outbox(cause=f"event:{event.id}", purpose="escalation", message_id=message_id,
                                         to_addr=to_addr, raw=msg.as_bytes(), now=now,
                                         subject=str(msg["Subject"]), ticket_id=ticket.id)
        if created:
            tx.add_event(ticket.id, "team_notified", at=now, actor="mailbot",
                         data={"team": event.data.get("team"), "outbox_id": row.id})
