"""Logging configuration: one line per event, Message-ID first, redacted.

Adapter-level module (configures the process's ``logging``); the core only
calls ``logging.getLogger(__name__)``. Masking itself is pure and lives in
``mailbot.masking``.

Line format::

    2024-05-02 09:14:03,512 INFO <CAF3x@mail.gmail.com> mailbot.dialogue: ticket SAMU-000123 opened
    2024-05-02 09:14:04,020 INFO - mailbot.adapters.scheduler: job poll done

The field after the level is the Message-ID of the mail the line is about
(``-`` for lines about no mail), as in Mailman's logs, so that
``grep '<CAF3x@mail.gmail.com>'`` gives a mail's whole story. Use
:func:`mail_logger` to get a logger that adds it.

Every handler installed here carries a :class:`RedactionFilter`: NIR numbers,
French phone numbers, dates of birth and registered secrets are masked in
every line (tracebacks included); at WARNING and above the local part of
e-mail addresses is masked as well (warnings and errors are what gets pasted
into tickets and chats; Zulip does the same).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mailbot.masking import mask_text

if TYPE_CHECKING:
    from mailbot.config import Secret, Settings

FORMAT = "%(asctime)s %(levelname)s %(mail_id)s %(name)s: %(message)s"

#: Library loggers pinned at WARNING whatever the configured level: at DEBUG,
#: imapclient logs the whole IMAP stream (FETCH responses are entire patient
#: mails; its IMAPlibLoggerAdapter only hides LOGIN/AUTHENTICATE lines),
#: mail-parser logs attachment file names, and APScheduler logs every job
#: run at INFO.
QUIET_LOGGERS = ("imapclient", "imaplib", "mailparser", "aiosmtplib", "aiosmtpd", "apscheduler", "asyncio")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: Secret | str | None) -> None:
    """Mask ``value`` in every log line from now on (a password, a token).

    Its URL-encoded form is registered too, since a password inside a
    database URL is written percent-encoded.
    """
    if value is None:
        return
    text = value if isinstance(value, str) else value.reveal()
    if not text:
        return
    with _secrets_lock:
        _secrets.add(text)
        _secrets.add(quote(text, safe=""))


def registered_secrets() -> frozenset[str]:
    with _secrets_lock:
        return frozenset(_secrets)


class RedactionFilter(logging.Filter):
    """Masks personal data and secrets in a record, in place, before any handler writes it.

    Attach it to handlers (not loggers): a filter on a logger does not see
    records that propagate from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "mail_id"):
            record.mail_id = "-"
        emails = record.levelno >= logging.WARNING
        secrets = registered_secrets()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- bad format arguments: logging reports them as usual
            return True
        record.msg = mask_text(message, emails=emails, secrets=secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            # The formatter would render the traceback later, unmasked;
            # render it now and hand it the masked text (Formatter.format uses
            # exc_text when set). Exception messages can quote mail content
            # (HeaderParseError quotes the header value).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, emails=emails, secrets=secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, emails=emails, secrets=secrets)
        return True


def clean_message_id(message_id: str | None) -> str:
    """A Message-ID made safe for one log field: no spaces, no line breaks, bounded.

    A forged Message-ID with CR/LF would otherwise start a fake log line.
    """
    if not message_id:
        return "<no-message-id>"
    cleaned = "".join(c if c.isprintable() and not c.isspace() else "?" for c in message_id.strip())
    return cleaned[:200] or "<no-message-id>"


class MailLogger(logging.LoggerAdapter):
    """A logger whose lines carry one mail's Message-ID (see :func:`mail_logger`)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        # Merge rather than replace the caller's extra (LoggerAdapter's
        # default before Python 3.13 drops it).
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def mail_logger(logger: logging.Logger, message_id: str | None) -> MailLogger:
    """``logger`` with every line tagged with ``message_id``.

    >>> log = mail_logger(logging.getLogger("mailbot.dialogue"), "<a1@x.fr>")
    >>> log.info("ticket %s opened", "SAMU-000123")  # doctest: +SKIP
    ... INFO <a1@x.fr> mailbot.dialogue: ticket SAMU-000123 opened
    """
    return MailLogger(logger, {"mail_id": clean_message_id(message_id)})


_MARK = "_mailbot_handler"


def configure_logging(settings: Settings) -> logging.Handler:
    """Install the mailbot handler on the root logger, per ``settings.logging``.

    Writes to ``settings.logging.file`` (a ``WatchedFileHandler``, which
    reopens the file after logrotate moves it) or to standard error -- never
    standard output, which belongs to the commands' results. Registers the
    settings' secrets with the redaction filter. Calling it again replaces
    the handler it installed before. Returns the handler.
    """
    for secret in settings.secrets():
        register_secret(secret)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if settings.logging.file is not None:
        handler = logging.handlers.WatchedFileHandler(settings.logging.file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _MARK, True)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactionFilter())
    root.addHandler(handler)
    root.setLevel(settings.logging.level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
