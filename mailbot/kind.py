"""What kind of mail is this (policy §1): incident, followup, autoreply, bounce, noise.

Pure: reads a ``ParsedMail`` and a ``Reading`` of its text.

Headers first, in the order the mail world made them reliable:
- bounces: ``multipart/report`` with a delivery-status part (RFC 3464), or a
  mailer-daemon / postmaster sender, or an empty ``Return-Path: <>`` with
  a delivery-failure subject;
- automatic replies: ``Auto-Submitted`` other than ``no`` (RFC 3834),
  ``X-Autoreply``, ``X-Autorespond``, ``Precedence: auto_reply``,
  ``X-Auto-Response-Suppress`` set by Exchange on its own automatic mails;
- lists and bulk: ``List-Id``, ``List-Unsubscribe``, ``Precedence: bulk/junk/list``;
- calendar invitations (text/calendar) with no text of their own.
Then wording, because many Outlook and webmail out-of-office notices carry
no header at all: an absence notice in French, English or German.
Finally a follow-up: a reply in a thread (``Re:``, In-Reply-To, our ticket
tag) or a resolution notice ("c'est revenu, vous pouvez fermer").
"""

from __future__ import annotations

import re

from mailbot.model import Hit, ParsedMail
from mailbot.reading import Reading

_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|undelivered|returned mail|delivery (status )?notification|delivery failure|"
    r"failure notice|non remis|non distribu|échec de (la )?remise|message not delivered|"
    r"mail delivery failed|unzustellbar)", re.I)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|bounce[s]?)[@+]", re.I)
_AUTO_SUBJECT = re.compile(
    r"^(réponse automatique|r[ée]ponse automatique|automatic reply|auto(matic)?[- ]?reply|"
    r"out of office|absence|abwesenheit|autosvar|respuesta automática|abwesend)\b", re.I)
_REPLY_SUBJECT = re.compile(r"^\s*(re|r[ée]f|aw|sv|antw|rép)\s*(\[\d+\])?\s*:", re.I)
_TICKET_TAG = re.compile(r"\[(SI-Samu|SAMU)[ -]?#?[A-Z]*-?\d{3,}[^\]]*\]|\bINC-\d{5,}\b|\[SAMU-\d+\]", re.I)


def detect_kind(mail: ParsedMail, reading: Reading, own_addresses: tuple[str, ...] = ()) -> tuple[str, list[Hit]]:
    """Return the kind and the rules that decided it."""
    h = mail.header
    ctype = mail.content_type.lower()
    report_type = h("content-type").lower()
    if ctype == "multipart/report" and ("delivery-status" in report_type or
                                        "message/delivery-status" in mail.mime_types):
        return "bounce", [Hit("headers#multipart-report", "multipart/report; delivery-status", "kind")]
    if "message/delivery-status" in mail.mime_types or "message/global-delivery-status" in mail.mime_types:
        return "bounce", [Hit("headers#delivery-status-part", "message/delivery-status", "kind")]
    if _DAEMON.match(mail.from_addr) or (_BOUNCE_SUBJECT.search(mail.subject) and
                                         h("return-path").strip() in ("<>", "")):
        return "bounce", [Hit("headers#mailer-daemon", mail.from_addr or mail.subject, "kind")]
    if "message/feedback-report" in mail.mime_types or "feedback-report" in report_type:
        # ARF abuse report (RFC 5965): a robot's message about a robot's message
        return "noise", [Hit("headers#feedback-report", "message/feedback-report", "kind")]
    if ctype == "multipart/report" and "disposition-notification" in report_type:
        return "autoreply", [Hit("headers#read-receipt", "message/disposition-notification", "kind")]

    auto = h("auto-submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return "autoreply", [Hit("headers#auto-submitted", f"Auto-Submitted: {auto}", "kind")]
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if mail.has_header(name):
            return "autoreply", [Hit(f"headers#{name}", name, "kind")]
    precedence = h("precedence").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return "autoreply", [Hit("headers#precedence", f"Precedence: {precedence}", "kind")]
    if precedence in ("bulk", "junk", "list"):
        return "noise", [Hit("headers#precedence", f"Precedence: {precedence}", "kind")]
    if mail.has_header("list-id") or mail.has_header("list-unsubscribe") or mail.has_header("list-post"):
        return "noise", [Hit("headers#list", h("list-id") or "List-Unsubscribe", "kind")]
    if own_addresses and mail.from_addr in own_addresses:
        return "noise", [Hit("headers#own-address", mail.from_addr, "kind")]
    if "text/calendar" in mail.mime_types and len(mail.new_text.split()) < 40:
        return "noise", [Hit("headers#calendar", "text/calendar", "kind")]
    if _AUTO_SUBJECT.match(mail.subject):
        return "autoreply", [Hit("headers#auto-subject", mail.subject[:60], "kind")]
    if "auto" in h("x-auto-response-suppress").lower() and mail.has_header("x-ms-exchange-generated-message-source"):
        return "autoreply", [Hit("headers#exchange-generated", "X-Auto-Response-Suppress", "kind")]

    words = len(mail.new_text.split())
    body_hits = [x for x in reading.of("kind.out-of-office", "kind.auto-ack") if x.part != 0 or True]
    if body_hits and words < 120:
        problem = reading.of("calls.reception-lost", "state.failure")
        if len(problem) <= 1 or reading.has("kind.auto-ack"):
            first = body_hits[0]
            return "autoreply", [Hit(first.signal, first.text, "kind")]
    spam = reading.of("kind.spam")
    if len(spam) >= 2 and not reading.has("calls.reception-lost"):
        return "noise", [Hit(spam[0].signal, ", ".join(s.text for s in spam[:3]), "kind")]

    is_reply = bool(_REPLY_SUBJECT.match(mail.subject) or mail.in_reply_to or mail.references)
    tagged = bool(_TICKET_TAG.search(mail.subject))
    resolved = reading.of("kind.resolved")
    if resolved and words < 150:
        return "followup", [Hit(resolved[0].signal, resolved[0].text, "kind")]
    if is_reply and tagged:
        return "followup", [Hit("headers#reply-to-ticket", mail.subject[:80], "kind")]
    if is_reply and any(not q.forwarded and _TICKET_TAG.search(q.text[:400] + q.subject) for q in mail.quoted):
        return "followup", [Hit("headers#reply-quotes-ticket", mail.subject[:80], "kind")]
    return "incident", []
