"""SmtpSender against a real aiosmtpd server on loopback: delivery and failure classes."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from mailbot.adapters.smtp import SmtpSender, SmtpSettings
from mailbot.errors import PermanentDeliveryError, TransientDeliveryError
from mailbot.ports import MailSender


def make_reply() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Support SI-Samu <support@example.test>"
    message["To"] = "Régulation SAMU 75 <regul@samu.example>"
    message["Subject"] = "[MB-42] Re: Panne réseau — informations manquantes"
    message["Message-ID"] = make_msgid(idstring="mb-42-ask", domain="example.test")
    message["In-Reply-To"] = "<orig-1@samu.example>"
    message["References"] = "<orig-1@samu.example>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("Bonjour,\n\nMerci d'indiquer le site concerné (ex. « Site: PAR01 »).\n")
    return message


def test_sender_satisfies_the_port(smtp_server) -> None:
    assert isinstance(SmtpSender(smtp_server.settings()), MailSender)


def test_delivery_is_recorded_with_headers_intact(smtp_server) -> None:
    reply = make_reply()
    SmtpSender(smtp_server.settings(envelope_from="bounces@example.test")).send(reply)

    (received,) = smtp_server.received
    assert received.mail_from == "bounces@example.test"  # never the requester's address
    assert received.rcpt_tos == ("regul@samu.example",)
    got = received.message
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Auto-Submitted"):
        assert got[name] == reply[name], name
    assert got.get_content().replace("\r\n", "\n") == reply.get_content()  # CRLF on the wire


def test_451_is_transient(smtp_server) -> None:
    smtp_server.mode = "451"
    with pytest.raises(TransientDeliveryError) as caught:
        SmtpSender(smtp_server.settings()).send(make_reply())
    assert caught.value.code == 451
    assert smtp_server.received == []
    # Once the server accepts again, the same message goes through.
    smtp_server.mode = "accept"
    SmtpSender(smtp_server.settings()).send(make_reply())
    assert len(smtp_server.received) == 1


def test_550_is_permanent(smtp_server) -> None:
    smtp_server.mode = "550"
    with pytest.raises(PermanentDeliveryError) as caught:
        SmtpSender(smtp_server.settings()).send(make_reply())
    assert caught.value.code == 550
    assert smtp_server.received == []


def test_message_without_recipient_is_permanent(smtp_server) -> None:
    reply = make_reply()
    del reply["To"]
    with pytest.raises(PermanentDeliveryError):
        SmtpSender(smtp_server.settings()).send(reply)
    assert smtp_server.received == []


def test_server_down_is_transient_then_delivery_resumes(smtp_server) -> None:
    sender = SmtpSender(smtp_server.settings())
    with smtp_server.down():
        with pytest.raises(TransientDeliveryError) as caught:
            sender.send(make_reply())
        assert caught.value.code is None
    sender.send(make_reply())
    assert len(smtp_server.received) == 1


def test_silent_server_times_out_as_transient() -> None:
    # Accepts the TCP connection but never sends the 220 greeting.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(TransientDeliveryError):
            SmtpSender(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=0.5)).send(make_reply())


def test_starttls_required_but_not_offered_never_falls_back_to_clear_text(smtp_server) -> None:
    with pytest.raises(TransientDeliveryError, match="STARTTLS"):
        SmtpSender(smtp_server.settings(security="starttls")).send(make_reply())
    assert smtp_server.received == []


def test_starttls_with_a_verified_certificate(smtp_tls_server) -> None:
    server, ca_file = smtp_tls_server
    SmtpSender(server.settings(security="starttls", ca_file=ca_file)).send(make_reply())
    assert len(server.received) == 1


def test_starttls_with_an_untrusted_certificate_is_transient_and_sends_nothing(smtp_tls_server) -> None:
    server, _ca_file = smtp_tls_server
    with pytest.raises(TransientDeliveryError):
        SmtpSender(server.settings(security="starttls")).send(make_reply())  # system CAs only
    assert server.received == []


def test_authenticated_submission_and_refused_password(smtp_tls_server) -> None:
    server, ca_file = smtp_tls_server
    user, password = server.credentials
    good = server.settings(security="starttls", ca_file=ca_file, username=user, password=password)
    SmtpSender(good).send(make_reply())
    assert len(server.received) == 1
    # 535 is about our session, not the message: retry once the operator fixed it.
    with pytest.raises(TransientDeliveryError) as caught:
        SmtpSender(replace(good, password="wrong")).send(make_reply())
    assert caught.value.code == 535
    assert len(server.received) == 1


def test_password_stays_out_of_repr_and_logs(smtp_server, caplog) -> None:
    settings = smtp_server.settings(username="bot", password="s3cr3t-pw")
    assert "s3cr3t-pw" not in repr(settings)
    # aiosmtpd does not offer AUTH on a clear-text session: a session-level refusal.
    with caplog.at_level(logging.DEBUG), pytest.raises(TransientDeliveryError):
        SmtpSender(settings).send(make_reply())
    assert "s3cr3t-pw" not in caplog.text


def test_plaintext_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ValueError, match="clear text"):
        SmtpSettings(host="smtp.example.org", security="none")
