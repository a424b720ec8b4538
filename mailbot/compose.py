"""Write the bot's reply: a ``ReplyPlan`` -> an ``email.message.EmailMessage``.

Role: turn what the dialogue decided into a short, polite French mail, from
the templates in ``rules/templates/*.txt`` that staff may edit, with the
headers an automatic responder must carry:

- ``Auto-Submitted: auto-replied`` (RFC 3834 §5), so that compliant robots
  never answer us; ``X-Auto-Response-Suppress: All`` (Exchange/Outlook:
  no out-of-office back, MS-OXCMAIL §2.1.3.2.20); ``Precedence: bulk`` for
  legacy vacation programs; ``X-Loop`` with our address;
- ``In-Reply-To`` and ``References`` (RFC 5322 §3.6.4) so that mail clients
  thread the answer, and ``[SAMU-000123]`` in the Subject plus our own
  ``X-Mailbot-Ticket`` header so that the answer finds its ticket;
- a ``Message-ID`` given by the caller (:func:`make_message_id` derives it
  from a seed), so a re-send after a crash carries the same id (RFC 1047).

Security (reliability §3.1): no header object parsed from the incoming mail
is ever copied. Everything that came from it (subject, names, message ids)
is rebuilt from cleaned text: control characters, CR/LF (also decoded from
RFC 2047 encoded words), U+2028/2029 and bidi controls are replaced by
spaces, the text is capped; message ids must be ``<left@right>`` with no
spaces; the recipient address is revalidated. CPython 3.11 before 3.11.10
lacks ``verify_generated_headers`` (CVE-2024-6923), so this cleaning is the
guard, and a last check refuses any header value still holding a line break.

Templates: Jinja2's ``SandboxedEnvironment`` (staff cannot reach Python
objects through a template), autoescape off (plain text), ``StrictUndefined``
so a misspelt placeholder is an error; :func:`check_templates` finds them
all when the rules are checked (``mailbot check-rules``), naming the file and
the placeholder. The variables a template may use are listed in
``TEMPLATE_VARIABLES``.

Import rule: pure core. Standard library (``email``, ``hashlib``), ``jinja2``,
:mod:`mailbot.dialogue`, :mod:`mailbot.loops`, :mod:`mailbot.rulebook`,
:mod:`mailbot.errors`. No I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import datetime as dt
import difflib
import email.utils
import functools
import hashlib
import re
import unicodedata
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from mailbot.dialogue import ReplyPlan
from mailbot.errors import RuleFileError
from mailbot.loops import ascii_address, is_valid_address
from mailbot.rulebook import Rulebook

__all__ = [
    "DEFAULT_SUBJECT",
    "REQUIRED_TEMPLATES",
    "TEMPLATE_VARIABLES",
    "check_templates",
    "clean_header_text",
    "clean_subject",
    "is_valid_message_id",
    "make_message_id",
    "render_body",
    "render_reply",
]

#: Templates the dialogue uses; check_templates reports any that is absent.
REQUIRED_TEMPLATES = ("ask_missing", "filed_ack", "call_hotline_a", "call_hotline_c",
                      "redirect_local_it", "reminder", "filed_incomplete")

#: The placeholders a template may use, and what they hold.
TEMPLATE_VARIABLES = {
    "greeting": "« Bonjour Prénom Nom, » (or « Bonjour, » when the name is unknown)",
    "name": "the writer's name, cleaned ('' when unknown)",
    "ticket": "the ticket number, e.g. SAMU-000123 ('' when no ticket)",
    "subject": "the subject of the writer's mail, cleaned",
    "questions": "the questions to ask, one per line; the « if possible » ones after a line « Si possible : »",
    "mandatory_questions": "only the mandatory questions, one per line",
    "optional_questions": "only the « if possible » questions, one per line",
    "checklist": "cas A: what to give on the phone, one per line",
    "still_missing": "filed_incomplete: the questions left unanswered, one per line",
    "cas": "A, B, C or D",
    "application": "portail, bandeau, nice, statistiques, selfcare (cas B) or ''",
    "application_name": "the application's name as users know it, or ''",
    "criticity": "1, 2 or 3 ('' when none)",
    "delay": "the deadline wording of the criticity, e.g. « sous 24 heures »",
    "round": "1 for the first request, 2 for the second",
    "filed": "true when the ticket is already passed to the support team",
    "staff": "taken, resolved: the name of the technician who took or resolved the ticket",
    "resolution": "resolved: the resolution text written by the technician",
}

DEFAULT_SUBJECT = "Votre demande au support SI-Samu"

_DELAYS = {1: "sous 24 heures", 2: "sous 48 à 72 heures", 3: "sous 4 à 5 jours ouvrés"}
_APP_NAMES = {
    "portail": "Portail SI-Samu",
    "bandeau": "Bandeau de communication",
    "nice": "Enregistrements des communications (Nice)",
    "statistiques": "Portail des statistiques",
    "selfcare": "Selfcare (règles de routage)",
}

# Control characters, NEL, line/paragraph separators and bidi controls
# (reliability §3.1 rule 3); CR/LF included.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# Reply/forward prefixes of the clients met in the corpora: Re, RE, TR
# (Outlook FR), Fwd/Fw, Réf, AW/WG (German Outlook), SV, Antw, Rép; also
# "RE[2]:" (some Outlook versions count).
_PREFIX = re.compile(r"^\s*((re|tr|fwd?|r[ée]f|aw|wg|sv|antw|r[ée]p|rif|enc)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_OUR_TAG = re.compile(r"\[\s*SAMU-\d+\s*\]\s*", re.IGNORECASE)
_MSG_ID = re.compile(r"^<[!-;=?-~]{1,500}@[!-;=?-~]{1,250}>$")   # printable ASCII, no <, >, spaces
_ID_DOMAIN = re.compile(r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$")
_TICKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
_POSSIBLY = re.compile(r"^\s*si possible\s*:\s*", re.IGNORECASE)
_MAX_REFERENCES = 20

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    """The compiled template for this text. Keyed by the text itself, so a
    rulebook reloaded with an edited template compiles the new text, and two
    rulebooks sharing a text share one compiled template (compiling costs
    about a millisecond; rendering a few microseconds)."""
    return _ENV.from_string(source)


# ----------------------------------------------------------------------------
# cleaning what came from the incoming mail

def clean_header_text(text: str | None, limit: int = 120) -> str:
    """Text from an incoming mail made safe for one of our header values:
    NFC, every control / line-break / bidi character replaced by a space,
    whitespace collapsed, capped to ``limit`` characters."""
    text = unicodedata.normalize("NFC", str(text or ""))
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text


def clean_subject(subject: str | None) -> str:
    """The writer's subject without Re:/TR:/Fwd: chains and without an older
    ticket tag of ours; '' when nothing is left."""
    text = clean_header_text(subject, limit=400)
    for _ in range(5):   # "RE: [SAMU-000001] TR: RE: …"
        before = text
        text = _PREFIX.sub("", text)
        text = _OUR_TAG.sub("", text).strip()
        if text == before:
            break
    return clean_header_text(text, limit=120)


def is_valid_message_id(value: str | None) -> bool:
    """``<left@right>``, printable ASCII, no spaces (RFC 5322 §3.6.4 msg-id,
    conservatively)."""
    return bool(value) and bool(_MSG_ID.match(value)) and value.count("@") == 1


def make_message_id(domain: str, seed: str) -> str:
    """A Message-ID that depends only on ``seed`` (e.g. the incoming mail's
    key and the reply's purpose): a re-send after a crash has the same id."""
    domain = domain.strip().lower()
    if not _ID_DOMAIN.match(domain):
        raise ValueError(f"not a usable Message-ID domain: {domain!r}")
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]
    return f"<mailbot.{digest}@{domain}>"


def _references(references: tuple[str, ...] | list[str], in_reply_to: str) -> list[str]:
    ids: list[str] = []
    for ref in [*references, in_reply_to]:
        ref = (ref or "").strip()
        if is_valid_message_id(ref) and ref not in ids:
            ids.append(ref)
    if len(ids) > _MAX_REFERENCES:
        # Keep the thread's root and the most recent ids (RFC 5322 §3.6.4;
        # what Thunderbird and Outlook do when trimming).
        ids = [ids[0], *ids[-(_MAX_REFERENCES - 1):]]
    return ids


# ----------------------------------------------------------------------------
# the text

def _question(rulebook: Rulebook, name: str, optional: bool = False) -> str:
    text = rulebook.questions.get(name) or f"{name.replace('_', ' ').capitalize()} ?"
    if optional:
        text = _POSSIBLY.sub("", text)
        text = text[:1].upper() + text[1:]
    return text


def _lines(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def template_context(plan: ReplyPlan, ticket_number: str | None, to_name: str, original_subject: str,
                     rulebook: Rulebook) -> dict[str, Any]:
    """The values a template sees (``TEMPLATE_VARIABLES``)."""
    ctx = plan.context
    name = clean_header_text(to_name, limit=80)
    if "@" in name:   # a display name that is an address says nothing about the person
        name = ""
    mandatory = [_question(rulebook, f) for f in plan.ask]
    optional = [_question(rulebook, f, optional=True) for f in plan.ask_optional]
    questions = _lines(mandatory)
    if optional:
        questions += ("\n\n" if questions else "") + "Si possible :\n" + _lines(optional)
    level = ctx.get("criticity")
    app = ctx.get("application") or ""
    return {
        "greeting": f"Bonjour {name}," if name else "Bonjour,",
        "name": name,
        "ticket": ticket_number or "",
        "subject": clean_subject(original_subject),
        "questions": questions,
        "mandatory_questions": _lines(mandatory),
        "optional_questions": _lines(optional),
        "checklist": _lines([_question(rulebook, f, optional=True) for f in ctx.get("checklist_fields", ())]),
        "still_missing": _lines([_question(rulebook, f) for f in ctx.get("missing_fields", ())]),
        "cas": ctx.get("cas") or "",
        "application": app,
        "application_name": _APP_NAMES.get(app, ""),
        "criticity": level if level is not None else "",
        "delay": _DELAYS.get(level, ""),
        "round": ctx.get("round", 0),
        "filed": bool(ctx.get("filed", False)),
        "staff": clean_header_text(ctx.get("staff", ""), 80),
        "resolution": str(ctx.get("resolution", "")),
    }


def render_body(plan: ReplyPlan, ticket_number: str | None, to_name: str, original_subject: str,
                rulebook: Rulebook) -> str:
    """The reply's text. Raises ``RuleFileError`` when the template is
    missing or wrong (run :func:`check_templates` at start-up to know first)."""
    source_name = f"templates/{plan.template}.txt"
    source = rulebook.templates.get(plan.template)
    if source is None:
        raise RuleFileError(source_name, plan.template, "", "template file missing")
    try:
        text = _compiled(source).render(
            template_context(plan, ticket_number, to_name, original_subject, rulebook))
    except jinja2.TemplateError as exc:
        raise RuleFileError(source_name, plan.template, "", f"template error: {exc}") from None
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


# ----------------------------------------------------------------------------
# the mail

def _safe(value: str) -> str:
    """Last guard before a header is set: no line break may survive."""
    if _CONTROL.search(value):
        raise ValueError("refusing a header value with control characters")
    return value


@functools.lru_cache(maxsize=1024)
def _header(name: str, value: str) -> Any:
    """The parsed header object of the ``SMTP`` policy for a value that comes
    back reply after reply (our From, the loop-prevention headers, a
    frequent writer's To). Parsing a header with the email package costs
    tens of microseconds; the header objects are immutable, and
    ``EmailMessage`` keeps one given to it as it is (``header_store_parse``)."""
    return SMTP.header_factory(name, value)


class _FoldOnce:
    """Mixin for a cached header object: its folded form (RFC 2047 encoded
    words for an accented display name cost about a millisecond to build
    with the email package) is computed once per output policy."""

    def fold(self, *, policy: Any) -> str:
        key = (policy.linesep, policy.max_line_length, policy.utf8)
        folds = self.__dict__.setdefault("_mailbot_folds", {})
        if key not in folds:
            folds[key] = super().fold(policy=policy)  # type: ignore[misc]
        return folds[key]


_FOLD_ONCE_CLASSES: dict[type, type] = {}


@functools.lru_cache(maxsize=1024)
def _address_header(name: str, display_name: str, addr_spec: str) -> Any:
    """:func:`_header` for an address header, built from the ``Address``
    object (not from its text, which would be parsed again), folded once."""
    value = Address(display_name=display_name, addr_spec=addr_spec)
    cls = type(SMTP.header_factory(name, value))
    sub = _FOLD_ONCE_CLASSES.get(cls)
    if sub is None:
        sub = _FOLD_ONCE_CLASSES[cls] = type(cls.__name__, (_FoldOnce, cls), {})
    return sub(name, value)


def render_reply(plan: ReplyPlan, ticket_number: str | None, to_addr: str, to_name: str,
                 original_subject: str, in_reply_to: str, references: tuple[str, ...],
                 rulebook: Rulebook, from_addr: str, message_id: str, now: dt.datetime,
                 *, from_name: str = "Support SI-Samu (réponse automatique)",
                 reply_to: str | None = None) -> EmailMessage:
    """The reply as an ``EmailMessage`` (policy ``SMTP``: CRLF line ends),
    ready for ``aiosmtplib.send``. Raises ``ValueError`` for an unusable
    recipient, sender, Message-ID or naive ``now``; ``RuleFileError`` for a
    broken template."""
    to_addr = ascii_address(to_addr or "")
    if to_addr is None:
        raise ValueError("the recipient address is not usable for a reply")
    if not is_valid_address(from_addr):
        raise ValueError(f"our From address is not usable: {from_addr!r}")
    if not is_valid_message_id(message_id):
        raise ValueError(f"not a valid Message-ID: {message_id!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    ticket = None
    if ticket_number:
        ticket = ticket_number.strip()
        if not _TICKET.match(ticket):
            raise ValueError(f"not a ticket number: {ticket_number!r}")

    body = render_body(plan, ticket, to_name, original_subject, rulebook)
    subject = clean_subject(original_subject) or DEFAULT_SUBJECT
    subject = f"[{ticket}] {subject}" if ticket else f"Re: {subject}"

    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address_header("From", _safe(clean_header_text(from_name, 80)), from_addr)
    msg["To"] = _address_header("To", _safe(clean_header_text(to_name, 80)), to_addr)
    if reply_to:
        if not is_valid_address(reply_to):
            raise ValueError(f"our Reply-To address is not usable: {reply_to!r}")
        msg["Reply-To"] = reply_to
    msg["Subject"] = _safe(subject)
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = message_id
    in_reply_to = (in_reply_to or "").strip()
    if is_valid_message_id(in_reply_to):
        msg["In-Reply-To"] = in_reply_to
    refs = _references(tuple(references or ()), in_reply_to)
    if refs:
        msg["References"] = " ".join(refs)
    msg["Auto-Submitted"] = _header("Auto-Submitted", "auto-replied")
    msg["X-Auto-Response-Suppress"] = _header("X-Auto-Response-Suppress", "All")
    msg["Precedence"] = _header("Precedence", "bulk")
    msg["X-Loop"] = _header("X-Loop", from_addr)
    if ticket:
        msg["X-Mailbot-Ticket"] = ticket   # loops.may_reply drops any mail carrying it
    msg.set_content(body, charset="utf-8")
    return msg


# ----------------------------------------------------------------------------
# checking the staff-editable templates

def check_templates(rulebook: Rulebook) -> list[RuleFileError]:
    """Every problem of the reply templates, each naming its file and the
    placeholder: a required template missing, a syntax error (with its line),
    an unknown placeholder (with a suggestion), or a failure to render with
    sample values. Empty list: all good."""
    problems: list[RuleFileError] = []
    for name in REQUIRED_TEMPLATES:
        if name not in rulebook.templates:
            problems.append(RuleFileError(f"templates/{name}.txt", name, "", "template file missing"))
    sample = ReplyPlan("sample", ask=("start_time",), ask_optional=("screenshots",),
                       context={"cas": "B", "application": "portail", "criticity": 2, "round": 1,
                                "checklist_fields": ("start_time",), "missing_fields": ("browser",),
                                "filed": False})
    for name, source in sorted(rulebook.templates.items()):
        where = f"templates/{name}.txt"
        try:
            ast = _ENV.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(RuleFileError(where, name, f"line {exc.lineno}", f"template syntax: {exc.message}"))
            continue
        unknown = sorted(meta.find_undeclared_variables(ast) - set(TEMPLATE_VARIABLES))
        for var in unknown:
            close = difflib.get_close_matches(var, list(TEMPLATE_VARIABLES), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            problems.append(RuleFileError(where, name, var, "unknown placeholder" + hint
                                          + "; known: " + ", ".join(sorted(TEMPLATE_VARIABLES))))
        if unknown:
            continue
        try:
            _ENV.from_string(source).render(template_context(sample, "SAMU-000001", "Alice Martin",
                                                             "Sujet", rulebook))
        except jinja2.TemplateError as exc:
            problems.append(RuleFileError(where, name, "", f"template error: {exc}"))
    return problems
