"""Ports: the small interfaces the service layer talks to, and their value types.

Import rule: standard library only (``typing``, ``dataclasses``, ``email``
types for annotations). The concrete adapters in ``mailbot.adapters`` implement
these protocols; the core and the service never import an adapter.

Error contract (classes in ``mailbot.errors``):

* ``MailSource`` methods raise ``MailboxError`` when the mailbox cannot be
  reached or refuses an operation.
* ``MailSender.send`` raises ``TransientDeliveryError`` (4xx reply, connection
  refused, timeout: retry later) or ``PermanentDeliveryError`` (5xx reply about
  this message: give up and alert).
"""

from __future__ import annotations

import ipaddress

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol, runtime_checkable

#: Outcome keys accepted by ``MailSource.move`` besides literal folder names.
#: The adapters map them to the configured folder names (defaults in French,
#: as the staff see them in their mail client).
PROCESSED = "processed"
QUARANTINE = "quarantine"
IGNORED = "ignored"

DEFAULT_FOLDERS: dict[str, str] = {
    PROCESSED: "Traité",
    QUARANTINE: "Quarantaine",
    IGNORED: "Ignoré",
}


@dataclass(frozen=True)
class RawMail:
    """One message as fetched, before any parsing.

    ``key`` is unique and stable for as long as the message stays where it is:
    ``"imap:<mailbox>:<uidvalidity>:<uid>"`` for IMAP (RFC 3501 §2.3.1.1: UID
    plus UIDVALIDITY never names another message) or ``"maildir:<name>"`` for a
    local Maildir. ``uidvalidity`` and ``uid`` are None for Maildir.
    ``raw`` is left out of ``repr`` because mail can carry patient data.
    """

    key: str
    mailbox: str
    uidvalidity: int | None
    uid: int | None
    raw: bytes = field(repr=False)


@runtime_checkable
class MailSource(Protocol):
    """Where incoming mail is read from (IMAP INBOX or a local Maildir)."""

    def fetch_new(self, limit: int | None = None) -> Iterator[RawMail]:
        """Yield the messages still in the inbox, oldest first.

        Never changes server state: no ``\\Seen`` flag (IMAP ``BODY.PEEK[]``),
        nothing removed. At most ``limit`` messages when given.
        """
        ...

    def move(self, mail: RawMail, folder: str) -> None:
        """Move ``mail`` out of the inbox into ``folder``.

        ``folder`` is an outcome key (``PROCESSED``, ``QUARANTINE``,
        ``IGNORED``) mapped through the adapter's configuration, or a folder
        name used as is. The folder is created when absent. Call only after
        the outcome of the message is durably recorded.
        """
        ...

    def move_many(self, mails: Sequence[RawMail], folder: str) -> None:
        """Move every mail of ``mails`` into ``folder``, in as few server
        round trips as the mailbox allows (one ``UID MOVE`` with a UID set
        for IMAP). Same contract as :meth:`move` for each mail: call only
        after the outcome of every one of them is durably recorded;
        idempotent; on error some may have moved and the others are still in
        the inbox (a later poll finds them already done and moves them).
        """
        ...

    def wait_for_new(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if new mail may have arrived."""
        ...

    def close(self) -> None:
        """Release the connection or files; safe to call twice."""
        ...


@runtime_checkable
class MailSender(Protocol):
    """Where outgoing mail goes (SMTP relay or a local Maildir for the demo)."""

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` over for delivery, or raise a ``DeliveryError``."""
        ...


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1):
    the only hosts plain-text IMAP/SMTP (``security = "none"``) may reach."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
