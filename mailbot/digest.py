"""The staff digest and the criticity-1 alert (issue 4 item 3: "auto-triaged summaries").

Role: turn tickets read from the store into what support staff read on their
phone: a :class:`Digest` (plain data: new tickets since the last digest
grouped by criticity; overdue and due within 4 h; waiting for the person who
wrote, and for how long; incomplete tickets; counts per site, case and
criticity), rendered to a subject, a plain-text and an HTML body
(:func:`render_digest`) and wrapped in a ``multipart/alternative`` mail
(:func:`build_digest_message`); and the short immediate alert for each
criticity-1 ticket (:func:`render_alert`).

Patient data (issue 4 item 4): every string that came from a mail (title,
fields, names, event details) goes through :func:`mailbot.masking.mask_text`
(with e-mail local parts) when a :class:`DigestLine` is built, before any
template sees it; templates never receive a ticket record.

Templates: ``rules/templates/digest.html.j2``, ``digest.txt.j2`` and
``alert.txt.j2``, editable by staff, rendered in Jinja2's
``SandboxedEnvironment`` with ``StrictUndefined`` (HTML autoescaped). The
HTML is built for mail clients and phones: one column, system fonts, inline
CSS only (Gmail and Outlook drop or rewrite ``<style>`` blocks), no image or
external resource, colour always doubled by a text label.

Headers: ``Auto-Submitted: auto-generated`` (RFC 3834 §5: not a reply, a
robot's own mail, so that vacation responders stay quiet),
``X-Auto-Response-Suppress: All`` (Exchange), ``Precedence: bulk``.

Import rule: pure core except :func:`load_templates`, which reads the three
template files (like :mod:`mailbot.rulefiles`). Standard library, ``jinja2``,
:mod:`mailbot.masking`, :mod:`mailbot.deadlines`, :mod:`mailbot.sites`,
:mod:`mailbot.compose`, :mod:`mailbot.errors`. No clock: ``now`` is passed in.
Ticket and event records are duck-typed (``TicketRecord`` / ``EventRecord``
of the store) so that this module does not import the adapter.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailbot.compose import clean_header_text, is_valid_message_id, make_message_id
from mailbot.deadlines import DONE_STATUSES, due_within, is_overdue
from mailbot.errors import RuleFileError
from mailbot.masking import mask_text
from mailbot.sites import UNKNOWN_CODE, UNKNOWN_NAME

__all__ = [
    "CRITICITY_LABELS",
    "DUE_SOON_HOURS",
    "FIELD_LABELS",
    "Digest",
    "DigestLine",
    "DigestTemplates",
    "build_digest",
    "build_digest_message",
    "check_templates",
    "digest_line",
    "digest_subject",
    "duration_text",
    "load_templates",
    "render_alert",
    "render_digest",
]

UTC = dt.UTC
DUE_SOON_HOURS = 4.0
WAITING = "en attente d'informations"
INCOMPLETE = "incomplet"
TEMPLATE_FILES = {"html": "digest.html.j2", "text": "digest.txt.j2", "alert": "alert.txt.j2"}
_DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "rules" / "templates"

CRITICITY_LABELS = {1: "Criticité 1 – sous 24 h", 2: "Criticité 2 – sous 72 h",
                    3: "Criticité 3 – sous 5 jours", None: "Sans criticité"}
CASE_LABELS = {"A": "réception des appels", "B": "application SI-Samu",
               "C": "matériel SI-Samu", "D": "hors SI-Samu", None: "non classé"}
_CRITICITY_SHORT = {1: "sous 24 h", 2: "sous 72 h", 3: "sous 5 jours", None: "sans criticité"}
#: Field names (policy §5) as staff read them, in the order they are shown.
FIELD_LABELS = {
    "impacted_lines": "lignes", "reception": "réception", "impact_scope": "impact",
    "bandeau_state": "bandeau", "features": "fonctions", "requested_action": "action",
    "routing_name": "routage", "equipment": "équipement", "error_message": "message",
    "browser": "navigateur", "browser_version": "version", "auth_mode": "connexion",
    "environment": "environnement", "phone_state": "téléphone", "selfcare_state": "Selfcare",
    "start_time": "début", "users_impacted": "utilisateurs", "reproducibility": "reproductible",
    "device_type": "appareil", "otn_tests": "tests OTN", "screenshots": "captures",
}
_KEY_FIELDS = ("impacted_lines", "reception", "impact_scope", "bandeau_state", "features",
               "requested_action", "routing_name", "equipment", "error_message", "browser")
_MAX_KEY_FIELDS = 4
_BROWSERS = {"firefox": "Firefox", "chrome": "Chrome", "edge": "Edge", "safari": "Safari"}
_EVENT_LABELS = {
    "created": "créé", "mail_in": "courriel reçu", "reply_queued": "réponse préparée",
    "reply_sent": "réponse envoyée", "question": "question posée", "status_change": "statut changé",
    "taken": "pris en charge", "assigned": "assigné", "escalated": "escaladé", "note": "note interne",
    "resolved": "résolu", "closed": "clos", "reopened": "rouvert", "flagged_incomplete": "marqué incomplet",
    "reply_undeliverable": "réponse non distribuée", "criticity_change": "criticité changée",
    "field_change": "information ajoutée", "completed": "complété", "staff_alerted": "alerte envoyée",
}
_DAYS = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")


# ----------------------------------------------------------------------------
# data

@dataclass(frozen=True)
class DigestLine:
    """One ticket as the digest shows it. Every text is already masked."""

    ticket_id: int
    number: str
    title: str
    site_code: str            # "?" when unknown
    site_name: str            # "site inconnu" when unknown
    status: str
    criticity: int | None
    cas: str | None
    application: str | None
    created: str              # local time, e.g. "lun. 16/11 08:10"
    age: str                  # "3 h 20", "2 j 4 h"
    deadline: str             # local time, or "—"
    due: str                  # "dans 3 h 20", "en retard de 2 h", ""
    overdue: bool
    due_soon: bool
    incomplete: bool
    waiting_for: str          # how long the writer has not answered, "" when not waiting
    key_fields: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()
    assignee: str = ""
    team: str = ""
    last_event: str = ""

    @property
    def summary(self) -> str:
        """The key fields as one short text: "lignes 15, 116117 · réception nulle"."""
        return " · ".join(f"{k} {v}" for k, v in self.key_fields)


@dataclass(frozen=True)
class Digest:
    """Everything the digest shows, as plain values (see :func:`build_digest`)."""

    generated_at: dt.datetime
    since: dt.datetime | None
    timezone: str
    generated_local: str
    since_local: str
    new_by_criticity: tuple[tuple[int | None, str, tuple[DigestLine, ...]], ...]
    overdue: tuple[DigestLine, ...]
    due_soon: tuple[DigestLine, ...]
    waiting: tuple[DigestLine, ...]
    incomplete: tuple[DigestLine, ...]
    counts_by_site: tuple[tuple[str, str, int], ...]
    counts_by_case: tuple[tuple[str, str, int], ...]
    counts_by_criticity: tuple[tuple[str, str, int], ...]
    counts_by_status: tuple[tuple[str, int], ...]
    open_total: int
    new_total: int
    due_soon_hours: float = DUE_SOON_HOURS

    @property
    def is_empty(self) -> bool:
        return not (self.new_total or self.overdue or self.due_soon or self.waiting or self.incomplete)


@dataclass(frozen=True)
class DigestTemplates:
    """Sources of the three templates (staff-editable)."""

    html: str
    text: str
    alert: str


# ----------------------------------------------------------------------------
# formatting helpers

def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def _zone(tz: Any) -> dt.tzinfo:
    if tz is None:
        return ZoneInfo("Europe/Paris")
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _local(value: dt.datetime | None, zone: dt.tzinfo) -> str:
    if value is None:
        return "—"
    local = value.astimezone(zone)
    return f"{_DAYS[local.weekday()]} {local:%d/%m %H:%M}"


def duration_text(delta: dt.timedelta) -> str:
    """French short duration: "12 min", "3 h 20", "2 j 4 h"."""
    minutes = int(abs(delta).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d}" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} j {hours} h" if hours else f"{days} j"


def _mask(value: Any, limit: int = 60) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, bool):
        value = "oui" if value else "non"
    text = mask_text(clean_header_text(str(value if value is not None else ""), limit=500), emails=True)
    if len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return mask_text(text, emails=True)


def _key_fields(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name in _KEY_FIELDS:
        value = fields.get(name)
        if value in (None, "", [], ()):
            continue
        if name == "browser":
            value = _BROWSERS.get(str(value), str(value))
            if fields.get("browser_version"):
                value = f"{value} {fields['browser_version']}"
        text = _mask(value, 60 if name in ("error_message", "features", "equipment") else 40)
        if name == "error_message":
            text = f"« {text} »"
        out.append((FIELD_LABELS[name], text))
        if len(out) >= _MAX_KEY_FIELDS:
            break
    if fields.get("environment") == "formation":
        out.append(("environnement", "formation"))
    return tuple(out)


def _event_text(event: Any, now: dt.datetime) -> str:
    if event is None:
        return ""
    label = _EVENT_LABELS.get(getattr(event, "type", ""), str(getattr(event, "type", "")).replace("_", " "))
    actor = str(getattr(event, "actor", "") or "")
    who = "" if actor in ("", "mailbot") else f" par {actor}"
    at = getattr(event, "at", None)
    ago = f" il y a {duration_text(now - _aware(at, 'event.at'))}" if at is not None else ""
    return _mask(f"{label}{who}{ago}", 80)


def digest_line(ticket: Any, now: dt.datetime, *, tz: Any = None, last_event: Any = None,
                last_question_at: dt.datetime | None = None, due_soon_hours: float = DUE_SOON_HOURS) -> DigestLine:
    """A ticket record as one masked digest line."""
    now = _aware(now, "now")
    zone = _zone(tz)
    created = _aware(ticket.created_at, "created_at")
    overdue = is_overdue(ticket, now)
    soon = due_within(ticket, now, due_soon_hours)
    due = ""
    if ticket.deadline is not None and ticket.status not in DONE_STATUSES:
        left = _aware(ticket.deadline, "deadline") - now
        due = f"en retard de {duration_text(left)}" if overdue else f"dans {duration_text(left)}"
    waiting = ""
    if ticket.status == WAITING:
        asked = last_question_at or getattr(ticket, "last_question_at", None) or ticket.updated_at
        waiting = duration_text(now - _aware(asked, "last_question_at"))
    code = ticket.site_code or UNKNOWN_CODE
    name = ticket.site_name or (UNKNOWN_NAME if not ticket.site_code else "")
    missing = tuple(FIELD_LABELS.get(m, m.replace("_", " ")) for m in (getattr(ticket, "missing", ()) or ()))
    return DigestLine(
        ticket_id=ticket.id,
        number=ticket.number,
        title=_mask(ticket.title or "(sans titre)", 90),
        site_code=_mask(code, 8),
        site_name=_mask(name, 60),
        status=ticket.status,
        criticity=ticket.criticity,
        cas=ticket.cas,
        application=ticket.application,
        created=_local(created, zone),
        age=duration_text(now - created),
        deadline=_local(ticket.deadline, zone),
        due=due,
        overdue=overdue,
        due_soon=soon,
        incomplete=bool(ticket.flagged_incomplete) or ticket.status == INCOMPLETE,
        waiting_for=waiting,
        key_fields=_key_fields(ticket.fields or {}),
        missing=missing,
        assignee=_mask(ticket.assignee or "", 40),
        team=_mask(ticket.team or "", 40),
        last_event=_event_text(last_event, now),
    )


def _far_future() -> dt.datetime:
    return dt.datetime.max.replace(tzinfo=UTC)


def build_digest(
    tickets: Iterable[Any],
    *,
    now: dt.datetime,
    since: dt.datetime | None,
    tz: Any = None,
    last_events: Mapping[int, Any] | None = None,
    last_question_at: Mapping[int, dt.datetime] | None = None,
    due_soon_hours: float = DUE_SOON_HOURS,
) -> Digest:
    """Group ``tickets`` (the store's ``TicketRecord``: pass every ticket, or
    at least every open one plus those created since ``since``).

    - new: created at or after ``since`` (all of them when ``since`` is None),
      grouped by criticity 1, 2, 3, then none; newest first;
    - overdue: open (not résolu/clos) with the deadline passed, most late first;
    - due soon: open, deadline within ``due_soon_hours``, soonest first;
    - waiting: status « en attente d'informations », longest wait first
      (from ``last_question_at[ticket.id]``, else the ticket's own
      ``last_question_at``, else its last update);
    - incomplete: open and flagged incomplete (or status « incomplet »);
    - counts per site, case, criticity and status: open tickets.

    ``tz``: the desk's zone for the times shown (``Settings.staff.zone``).
    """
    now = _aware(now, "now")
    since = _aware(since, "since") if since is not None else None
    zone = _zone(tz)
    last_events = last_events or {}
    last_question_at = last_question_at or {}
    records = list(tickets)

    def line(t: Any) -> DigestLine:
        return digest_line(t, now, tz=zone, last_event=last_events.get(t.id),
                           last_question_at=last_question_at.get(t.id), due_soon_hours=due_soon_hours)

    lines = {t.id: line(t) for t in records}
    open_tickets = [t for t in records if t.status not in DONE_STATUSES]

    new = [t for t in records if since is None or _aware(t.created_at, "created_at") >= since]
    new.sort(key=lambda t: (_aware(t.created_at, "created_at"), t.id), reverse=True)
    groups = []
    for level in (1, 2, 3, None):
        members = tuple(lines[t.id] for t in new if t.criticity == level)
        if members or level is not None:
            groups.append((level, CRITICITY_LABELS[level], members))

    def by_deadline(t: Any) -> tuple[dt.datetime, int]:
        return (_aware(t.deadline, "deadline") if t.deadline else _far_future(), t.id)

    overdue = sorted((t for t in open_tickets if is_overdue(t, now)), key=by_deadline)
    soon = sorted((t for t in open_tickets if due_within(t, now, due_soon_hours)), key=by_deadline)

    def asked(t: Any) -> dt.datetime:
        value = last_question_at.get(t.id) or getattr(t, "last_question_at", None) or t.updated_at
        return _aware(value, "last_question_at")

    waiting = sorted((t for t in open_tickets if t.status == WAITING), key=lambda t: (asked(t), t.id))
    incomplete = sorted((t for t in open_tickets if lines[t.id].incomplete),
                        key=lambda t: (_aware(t.created_at, "created_at"), t.id))

    sites: Counter[tuple[str, str]] = Counter()
    for t in open_tickets:
        sites[(lines[t.id].site_code, lines[t.id].site_name)] += 1
    by_site = tuple(sorted(((c, n, k) for (c, n), k in sites.items()),
                           key=lambda r: (-r[2], r[0] == UNKNOWN_CODE, r[0])))
    cases = Counter(t.cas for t in open_tickets)
    by_case = tuple((c or "?", CASE_LABELS.get(c, str(c)), cases[c])
                    for c in ("A", "B", "C", "D", None) if cases.get(c))
    crits = Counter(t.criticity for t in open_tickets)
    by_crit = tuple((f"C{c}" if c else "C–", _CRITICITY_SHORT[c], crits[c])
                    for c in (1, 2, 3, None) if crits.get(c))
    statuses = Counter(t.status for t in open_tickets)
    by_status = tuple(sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))

    return Digest(
        generated_at=now,
        since=since,
        timezone=str(getattr(zone, "key", zone)),
        generated_local=_local(now, zone),
        since_local=_local(since, zone) if since is not None else "",
        new_by_criticity=tuple(groups),
        overdue=tuple(lines[t.id] for t in overdue),
        due_soon=tuple(lines[t.id] for t in soon),
        waiting=tuple(lines[t.id] for t in waiting),
        incomplete=tuple(lines[t.id] for t in incomplete),
        counts_by_site=by_site,
        counts_by_case=by_case,
        counts_by_criticity=by_crit,
        counts_by_status=by_status,
        open_total=len(open_tickets),
        new_total=len(new),
        due_soon_hours=due_soon_hours,
    )


# ----------------------------------------------------------------------------
# templates

def load_templates(folder: Path | str | None = None) -> DigestTemplates:
    """Read the three templates from ``<rules>/templates`` (``folder`` is the
    templates folder; None: the packaged ``rules/templates``). The only file
    access of this module."""
    base = Path(folder) if folder is not None else _DEFAULT_TEMPLATES_DIR
    sources = {}
    for key, name in TEMPLATE_FILES.items():
        path = base / name
        try:
            sources[key] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuleFileError(f"templates/{name}", "", "", "template file missing") from None
        except UnicodeDecodeError as exc:
            raise RuleFileError(f"templates/{name}", "", "", f"not UTF-8 text: {exc}") from None
    return DigestTemplates(**sources)


_DEFAULT: DigestTemplates | None = None


def _templates(templates: DigestTemplates | None) -> DigestTemplates:
    global _DEFAULT
    if templates is not None:
        return templates
    if _DEFAULT is None:
        _DEFAULT = load_templates()
    return _DEFAULT


_HTML_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True)
_TEXT_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                 trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _render(env: SandboxedEnvironment, key: str, source: str, context: Mapping[str, Any]) -> str:
    name = f"templates/{TEMPLATE_FILES[key]}"
    try:
        return env.from_string(source).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise RuleFileError(name, "", f"line {exc.lineno}", f"template syntax: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RuleFileError(name, "", "", f"template error: {exc}") from None


def _tidy(text: str) -> str:
    """Trailing spaces off, except the signature separator "-- " (RFC 3676 §4.3)."""
    lines = [line if line == "-- " else line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines) + "\n"


def digest_subject(digest: Digest) -> str:
    parts = [f"{digest.new_total} nouveau{'x' if digest.new_total != 1 else ''}"]
    if digest.overdue:
        parts.append(f"{len(digest.overdue)} en retard")
    new_c1 = sum(len(g[2]) for g in digest.new_by_criticity if g[0] == 1)
    if new_c1:
        parts.append(f"{new_c1} criticité 1")
    return f"Synthèse support SI-Samu – {digest.generated_local} : " + ", ".join(parts)


def render_digest(digest: Digest, templates: DigestTemplates | None = None) -> tuple[str, str, str]:
    """``(subject, text, html)`` of the digest."""
    tpl = _templates(templates)
    subject = digest_subject(digest)
    context = {"digest": digest, "subject": subject}
    text = _render(_TEXT_ENV, "text", tpl.text, context)
    text = _tidy(text)
    html = _render(_HTML_ENV, "html", tpl.html, context)
    return subject, text, html


def check_templates(templates: DigestTemplates) -> list[RuleFileError]:
    """Render the templates with sample data; the problems found (empty: fine)."""
    now = dt.datetime(2026, 11, 16, 7, 30, tzinfo=UTC)

    @dataclass
    class _Sample:
        id: int = 1
        number: str = "SAMU-000001"
        status: str = WAITING
        title: str = "Portail – main courante : ne s'affiche plus"
        site_code: str | None = "VAL"
        site_name: str | None = "CH de Valmont"
        criticity: int | None = 1
        cas: str | None = "B"
        application: str | None = "portail"
        created_at: dt.datetime = now - dt.timedelta(hours=30)
        updated_at: dt.datetime = now - dt.timedelta(hours=5)
        deadline: dt.datetime | None = now - dt.timedelta(hours=6)
        last_question_at: dt.datetime | None = now - dt.timedelta(hours=5)
        flagged_incomplete: bool = True
        assignee: str | None = None
        team: str | None = None
        writer_addr: str = "a@example.test"
        writer_name: str = "A"
        fields: dict[str, Any] = field(default_factory=lambda: {"features": ["main courante"]})
        missing: tuple[str, ...] = ("browser",)

    problems = []
    sample = _Sample()
    digest = build_digest([sample], now=now, since=now - dt.timedelta(days=2))
    for key, call in (("html", lambda: render_digest(digest, templates)),
                      ("alert", lambda: render_alert(sample, now=now, from_addr="bot@example.test",
                                                     to_addrs=["x@example.test"], templates=templates))):
        try:
            call()
        except RuleFileError as exc:
            problems.append(exc)
        except Exception as exc:  # noqa: BLE001 -- report any template failure, named
            problems.append(RuleFileError(f"templates/{TEMPLATE_FILES[key]}", "", "", str(exc)))
    return problems


# ----------------------------------------------------------------------------
# mails

def _headers(msg: EmailMessage, *, from_addr: str, from_name: str, to_addrs: Sequence[str], subject: str,
             now: dt.datetime, message_id: str | None, seed: str) -> None:
    to = [a.strip() for a in to_addrs if a and a.strip()]
    if not to:
        raise ValueError("no recipient: set [staff] digest_to / alert_to")
    domain = from_addr.rpartition("@")[2] or "localhost"
    message_id = message_id or make_message_id(domain, seed)
    if not is_valid_message_id(message_id):
        raise ValueError(f"not a valid Message-ID: {message_id!r}")
    msg["From"] = Address(display_name=clean_header_text(from_name, 80), addr_spec=from_addr)
    msg["To"] = ", ".join(to)
    msg["Subject"] = clean_header_text(subject, 200)
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = message_id
    # RFC 3834 §5: a robot's own mail, not a reply; nobody's robot answers it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"   # Exchange / Outlook (MS-OXCMAIL §2.1.3.2.20)
    msg["Precedence"] = "bulk"
    msg["X-Loop"] = from_addr


def build_digest_message(
    digest: Digest,
    *,
    from_addr: str,
    to_addrs: Sequence[str],
    from_name: str = "Support SI-Samu (synthèse automatique)",
    message_id: str | None = None,
    templates: DigestTemplates | None = None,
) -> EmailMessage:
    """The digest as a ``multipart/alternative`` mail (text first, HTML
    second: RFC 2046 §5.1.4, the last part is the preferred one)."""
    subject, text, html = render_digest(digest, templates)
    msg = EmailMessage(policy=SMTP)
    _headers(msg, from_addr=from_addr, from_name=from_name, to_addrs=to_addrs, subject=subject,
             now=digest.generated_at, message_id=message_id,
             seed=f"digest:{digest.generated_at.isoformat()}:{','.join(sorted(to_addrs))}")
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def render_alert(
    ticket: Any,
    *,
    now: dt.datetime,
    from_addr: str,
    to_addrs: Sequence[str],
    tz: Any = None,
    from_name: str = "Support SI-Samu (alerte automatique)",
    message_id: str | None = None,
    templates: DigestTemplates | None = None,
) -> EmailMessage:
    """The immediate alert for a criticity-1 ticket to the on-duty address
    (``[staff] alert_to``): short, plain text, masked. The Message-ID is
    derived from the ticket, so a re-run after a crash sends the same mail."""
    now = _aware(now, "now")
    line = digest_line(ticket, now, tz=tz)
    level = f"C{line.criticity}" if line.criticity else "C?"
    subject = f"[ALERTE {level}] {line.number} {line.site_code} – {line.title}"
    tpl = _templates(templates)
    body = _render(_TEXT_ENV, "alert", tpl.alert, {"ticket": line, "subject": subject,
                                                     "now_local": _local(now, _zone(tz))})
    body = _tidy(body)
    msg = EmailMessage(policy=SMTP)
    _headers(msg, from_addr=from_addr, from_name=from_name, to_addrs=to_addrs, subject=subject, now=now,
             message_id=message_id, seed=f"alert:{line.number}:{level}")
    msg["X-Mailbot-Ticket"] = line.number
    msg["Importance"] = "high"   # Outlook's flag; X-Priority for older clients
    msg["X-Priority"] = "1"
    msg.set_content(body, charset="utf-8")
    return msg
