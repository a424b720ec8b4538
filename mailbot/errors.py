"""Exception hierarchy.

Pure: standard library only. Two families, after Zulip's e-mail gateway:
errors that are the *sender's* doing (answerable politely) and errors that
are the *operator's* (bad rule file, mailbox down: logged, mail quarantined).
"""

from __future__ import annotations


class MailbotError(Exception):
    """Base of every error mailbot raises on purpose."""


class SenderError(MailbotError):
    """The mail itself is the problem; the sender can be told."""


class OperatorError(MailbotError):
    """Configuration, rule files or infrastructure: for the operator."""


class RuleFileError(OperatorError):
    """A rule file is wrong. Names the file, the entry and the key."""

    def __init__(self, source: str, entry: str, key: str, message: str) -> None:
        self.source = source
        self.entry = entry
        self.key = key
        self.message = message
        where = source
        if entry:
            where += f", entry {entry!r}"
        if key:
            where += f", key {key!r}"
        super().__init__(f"{where}: {message}")


class ConfigError(OperatorError):
    """The configuration file is wrong (unknown key, bad value, missing secret)."""


class MailboxError(OperatorError):
    """The mailbox (IMAP server or local Maildir) refused or failed an operation.

    Raised for a refused login, a connection that could not be re-established
    after bounded retries, or a command the server answered with NO/BAD.
    """


class DeliveryError(OperatorError):
    """An outgoing message could not be handed to the mail server.

    ``code`` is the SMTP reply code when the server gave one (RFC 5321 §4.2),
    else None (connection refused, timeout, TLS failure).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Try again later: 4xx reply, connection refused, timeout, TLS or login trouble."""


class PermanentDeliveryError(DeliveryError):
    """The server refused this message for good (5xx about sender, recipient or data)."""
