"""SMTP sender over aiosmtplib: the production ``MailSender``.

Import rule: ``mailbot.errors``, ``aiosmtplib``, ``asyncio``, ``socket`` and
``ssl``. No other adapter, no core module.

``send()`` is synchronous for its caller (the outbox job sends one row at a
time): each call opens one TCP connection, runs one aiosmtplib transaction
over it in its own event loop with ``asyncio.run``, and waits until the
connection is closed. It must not be called from inside a running event loop.

TLS (reliability note G9): aiosmtplib's default ``start_tls=None`` means
"STARTTLS if the server offers it", so a stripped EHLO would silently send in
clear text. We always pass ``start_tls=True`` or ``use_tls=True`` explicitly,
with a verifying ``ssl.create_default_context()``; ``security="none"`` passes
both as False and is refused unless the host is a loopback address.

Failure mapping (RFC 5321 §4.2.1 reply classes), used by the outbox to decide
between "retry later" and "give up and alert":

* 4xx replies, connection refused, timeouts, a dropped connection, TLS errors
  -> ``TransientDeliveryError``.
* 5xx replies to MAIL FROM, RCPT TO or DATA (about this message) ->
  ``PermanentDeliveryError``.
* 5xx replies that are about *our* session, not the message (greeting, EHLO,
  AUTH: a wrong password is ``535``) -> ``TransientDeliveryError`` too: the
  operator fixes the configuration and the queued replies still go out
  instead of being marked failed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from mailbot.ports import is_loopback
from mailbot.errors import PermanentDeliveryError, TransientDeliveryError

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]


# Upper bound on waiting for a connection to finish closing after a send.
_CLOSE_WAIT_SECONDS = 2.0




@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """Relay settings for :class:`SmtpSender`.

    ``envelope_from`` is the SMTP ``MAIL FROM`` (the bot's bounce address, RFC
    5321 §4.5.5); when None, aiosmtplib takes it from the ``Sender``/``From``
    header. ``password`` never appears in ``repr``.
    """

    host: str
    port: int | None = None
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 60.0
    envelope_from: str | None = None
    local_hostname: str | None = None

    def __post_init__(self) -> None:
        if self.security not in ("tls", "starttls", "none"):
            raise ValueError(f"smtp security must be 'tls', 'starttls' or 'none', not {self.security!r}")
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f"smtp security 'none' sends mail (and any password) in clear text; it is only "
                f"accepted for a loopback host, not {self.host!r}"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("smtp username and password go together")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        # RFC 8314 §3.3 (implicit TLS submission) and RFC 6409 (submission).
        return {"tls": 465, "starttls": 587, "none": 25}[self.security]


class SmtpSender:
    """``MailSender`` handing each message to one SMTP relay.

    Example::

        sender = SmtpSender(SmtpSettings(host="smtp.example.org", username="bot",
                                         password=os.environ["MAILBOT_SMTP_PASSWORD"]))
        try:
            sender.send(reply)
        except TransientDeliveryError:
            ...  # leave the outbox row pending, retry with back-off
        except PermanentDeliveryError:
            ...  # mark the row failed and alert
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def __repr__(self) -> str:
        s = self._settings
        return f"SmtpSender({s.host}:{s.effective_port}, {s.security})"

    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its To/Cc/Bcc recipients or raise a ``DeliveryError``.

        Returns normally once the server accepted the final ``.`` with 250 for
        at least one recipient; recipients refused individually are logged
        (by count, never by address).
        """
        s = self._settings
        where = f"{s.host}:{s.effective_port}"
        message_id = message.get("Message-ID", "(no Message-ID)")
        try:
            # Our own TCP connection, handed to aiosmtplib, so that we can see
            # when it is really closed (see _send) and close it in any case.
            sock = socket.create_connection((s.host, s.effective_port), timeout=s.timeout)
        except OSError as exc:
            raise TransientDeliveryError(f"{message_id}: cannot connect to {where}: {exc}") from exc
        try:
            refused, _reply = asyncio.run(self._send(message, sock))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused: permanent only if every refusal is 5xx.
            codes = [r.code for r in exc.recipients]
            text = f"{message_id}: all recipients refused by {where} (codes {codes})"
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentDeliveryError(text, codes[0]) from exc
            raise TransientDeliveryError(text, codes[0] if codes else None) from exc
        except (
            aiosmtplib.SMTPConnectResponseError,
            aiosmtplib.SMTPHeloError,
            aiosmtplib.SMTPAuthenticationError,
        ) as exc:
            raise TransientDeliveryError(
                f"{message_id}: {where} refused the session: {exc.code} {exc.message}", exc.code
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"{message_id}: {where} replied {exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(text, exc.code) from exc
            raise TransientDeliveryError(text, exc.code) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # E.g. STARTTLS demanded but not offered: never fall back to clear text.
            raise TransientDeliveryError(f"{message_id}: {where}: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused, timeout, disconnect, TLS handshake or
            # certificate failure (TimeoutError and ssl.SSLError are OSErrors).
            raise TransientDeliveryError(
                f"{message_id}: cannot deliver via {where}: {type(exc).__name__}: {exc}"
            ) from exc
        except ValueError as exc:
            # Checked after OSError: ssl.SSLCertVerificationError is also a
            # ValueError. Here aiosmtplib found no sender or no recipient in
            # the headers, so the message can never be delivered as it is.
            raise PermanentDeliveryError(f"{message_id}: not deliverable as composed: {exc}") from exc
        finally:
            sock.close()
        if refused:
            log.warning("%s: %d recipient(s) refused by %s, sent to the others", message_id, len(refused), where)
        log.info("%s: accepted by %s", message_id, where)

    async def _send(
        self, message: EmailMessage, sock: socket.socket
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        s = self._settings
        context = ssl.create_default_context(cafile=s.ca_file) if s.security != "none" else None
        try:
            return await aiosmtplib.send(
                message,
                sender=s.envelope_from,
                hostname=s.host,  # still used for TLS server name checks
                sock=sock,
                username=s.username,
                password=s.password,
                local_hostname=s.local_hostname,
                timeout=s.timeout,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                validate_certs=s.security != "none",
                tls_context=context,
            )
        finally:
            # aiosmtplib's close() only *starts* closing the transport (for
            # TLS, a close_notify exchange with the peer follows). Let that
            # finish before asyncio.run() closes the loop, or the socket would
            # leak; bounded, since a dead peer never answers.
            deadline = time.monotonic() + min(s.timeout, _CLOSE_WAIT_SECONDS)
            while sock.fileno() != -1 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
