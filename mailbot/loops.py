"""May the bot answer this mail? Loop prevention before any automatic reply.

Role: one question, ``may_reply(...) -> (yes/no, reason in plain words)``,
asked for every mail the dialogue wants to answer. It follows the decision
order of the reliability notes §2.8 (after RFC 3834 and what Zammad, RT,
Mailman and django-helpdesk check), first match wins:

1. our own mail coming back (our address, our ``X-Mailbot-Ticket`` header,
   ``X-Loop`` naming us) — a loop;
2. bounces and reports: a null return path (RFC 5321 ``MAIL FROM:<>``),
   ``mailer-daemon``/``postmaster``, ``multipart/report`` (RFC 3464/6522);
3. automatic mail: ``Auto-Submitted`` other than ``no`` (RFC 3834 §5, and
   RFC 5436 ``auto-notified``), ``X-Autoreply``/``X-Autorespond``,
   ``Precedence: auto_reply``, an out-of-office verdict;
4. lists and bulk: ``Precedence: bulk/junk/list`` (RFC 2076), any ``List-*``
   header (RFC 2369, RFC 2919, RFC 8058);
5. Exchange/Outlook asked us not to answer (``X-Auto-Response-Suppress: All``
   or ``AutoReply``/``OOF``, MS-OXCMAIL §2.1.3.2.20) — a request, not proof of
   a robot, honoured anyway;
6. no usable reply address (Reply-To, else From, revalidated: reliability
   §3.1 rule 4), or a ``noreply``-style robot address;
7. too many replies to this sender in the last hour.

The recent reply times are passed in (the store knows them), so this module
reads no clock and no database.

Import rule: pure core. Standard library and :mod:`mailbot.model` only.
"""

from __future__ import annotations

import datetime as dt
import re

from mailbot.model import ParsedMail, Verdict

__all__ = ["OWN_TICKET_HEADER", "ascii_address", "is_robot_address", "is_valid_address", "may_reply", "reply_address"]

#: The header we put on every mail we send; a mail carrying it is ours.
OWN_TICKET_HEADER = "x-mailbot-ticket"

# Reliability §3.1 rule 4: a conservative addr-spec (no quotes, spaces or
# control characters, ASCII or IDNA domain, at most 254 characters).
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$")

# System and robot mailboxes (RT's mailer-daemon/postmaster check and
# Zammad's send_no_auto_response_reg_exp fallback).
_ROBOT_LOCAL = re.compile(
    r"^(mailer-daemon|mail-daemon|postmaster|abuse|root|bounces?|"
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|ne[-_.]?pas[-_.]?repondre|nepasrepondre)"
    r"([-+._].*)?$", re.IGNORECASE)

_SUPPRESS = re.compile(r"\b(all|autoreply|oof)\b", re.IGNORECASE)


def is_valid_address(address: str) -> bool:
    """True for an addr-spec we are willing to put in a reply's To (and on
    the SMTP envelope): one address, plain characters only."""
    if not address or len(address) > 254 or address.count("@") != 1:
        return False
    local, domain = address.rsplit("@", 1)
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return bool(_DOMAIN.match(domain)) and not any(p.startswith("-") or p.endswith("-") for p in domain.split("."))


def ascii_address(address: str) -> str | None:
    """The address, lower-cased, with an IDNA (``xn--``) domain so it can go
    on the SMTP envelope and in a header as is; None when not valid."""
    address = (address or "").strip().lower()
    if not is_valid_address(address):
        return None
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def is_robot_address(address: str) -> bool:
    """``noreply``, ``no-reply``, ``mailer-daemon``, ``postmaster``… addresses."""
    return bool(_ROBOT_LOCAL.match(address.rpartition("@")[0] or address))


def reply_address(mail: ParsedMail) -> str | None:
    """Where a reply goes: Reply-To when present, else From (RFC 5322 §3.6.2,
    as a mail client replies), revalidated; None when neither is usable."""
    for candidate in (mail.reply_to, mail.from_addr):
        if (candidate or "").strip():
            return ascii_address(candidate)
    return None


def _addr_in_header(value: str) -> str:
    m = re.search(r"<([^<>]*)>", value)
    return (m.group(1) if m else value).strip().lower()


def may_reply(mail: ParsedMail, verdict: Verdict, own_addresses: set[str],
              recent_replies_to_sender: list[dt.datetime], now: dt.datetime,
              max_per_hour: int = 5) -> tuple[bool, str]:
    """(may we send an automatic reply to this mail?, why — logged)."""
    own = {a.strip().lower() for a in own_addresses if a}
    h = mail.header
    if mail.error:
        return False, f"the mail could not be read ({mail.error})"

    # 1. Our own mail coming back, directly or through a forwarding rule.
    senders = {mail.from_addr.lower(), (mail.reply_to or "").lower(),
               _addr_in_header(h("sender")), _addr_in_header(h("return-path"))} - {""}
    if senders & own:
        return False, "loop: the mail comes from our own address"
    if mail.has_header(OWN_TICKET_HEADER):
        return False, "loop: the mail carries our own X-Mailbot-Ticket header"
    for value in mail.headers.get("x-loop", ()):
        if _addr_in_header(value) in own or value.strip().lower() in ("yes", "true"):
            return False, "loop: X-Loop names us"

    # 2. Bounces and delivery reports.
    if verdict.kind == "bounce":
        return False, "bounce (delivery status notification): never answered"
    if h("return-path").strip() == "<>":
        return False, "null return path (Return-Path: <>): a bounce or an automatic reply"
    if mail.content_type.lower() == "multipart/report" or any(
            t in ("message/delivery-status", "message/global-delivery-status",
                  "message/disposition-notification") for t in mail.mime_types):
        return False, "delivery or read report (multipart/report): never answered"

    # 3. Automatic replies (RFC 3834).
    auto = h("auto-submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return False, f"automatic mail (Auto-Submitted: {auto[:40]}): RFC 3834 says never answer it"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if mail.has_header(name):
            return False, f"automatic reply ({name} header)"
    precedence = h("precedence").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return False, "automatic reply (Precedence: auto_reply)"
    if verdict.kind == "autoreply":
        return False, "automatic reply (out-of-office or acknowledgement): never answered"

    # 4. Lists and bulk mail.
    if precedence in ("bulk", "junk", "list"):
        return False, f"bulk or list mail (Precedence: {precedence})"
    if any(name.startswith("list-") for name in mail.headers):
        return False, "mailing-list mail (List-* header)"
    if verdict.kind == "noise":
        return False, "not an incident (noise): never answered"

    # 5. Outlook/Exchange asked not to be auto-answered.
    suppress = h("x-auto-response-suppress")
    if suppress and (_SUPPRESS.search(suppress) or suppress.strip() == "-1"):
        return False, f"the sender asked for no automatic reply (X-Auto-Response-Suppress: {suppress[:40]})"

    # 6. A usable human address to answer.
    if not mail.from_addr and not mail.reply_to:
        return False, "no usable From or Reply-To address"
    if is_robot_address(mail.from_addr):
        return False, "the sender is a robot address (noreply, mailer-daemon, postmaster…)"
    target = reply_address(mail)
    if target is None:
        return False, "no usable From or Reply-To address (invalid after revalidation)"
    if target in own:
        return False, "loop: the reply would go to our own address"
    if is_robot_address(target):
        return False, "the reply address is a robot address (noreply, mailer-daemon, postmaster…)"

    # 7. Rate limit per sender (reliability §2.5).
    hour_ago = now - dt.timedelta(hours=1)
    recent = sum(1 for t in recent_replies_to_sender if hour_ago < t <= now)
    if recent >= max_per_hour:
        return False, f"rate limited: {recent} replies to this sender in the last hour (max {max_per_hour})"
    return True, f"reply allowed to {target}"
