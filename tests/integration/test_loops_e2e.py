"""Mail loops, end to end: robots that answer everything never get more than one reply.

Against Dovecot and the recording SMTP server, with the service in-process
(several poll/send cycles each): an autoresponder that answers every mail it
gets (with ``Auto-Submitted``, and a plain "Je suis absent" with no header at
all), a delivery failure report (DSN) for our reply, a mailing-list mail, a
mail from our own address. The bot must never answer any of them, and the
exchange must stop (no ping-pong).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from tests.conftest import shared_or_skip
from tests.integration import test_mailbox_loop as loop_helpers
from tests.integration.test_mailbox_loop import SUPPORT, close, make_service

db_url = loop_helpers.db_url   # the SQLite / PostgreSQL fixture, shared

UTC = dt.UTC
USER = "c.durand@ch-absent.test"
_n = itertools.count(1)


def incident(sender: str = USER, **headers: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Claire Durand <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = "Portail SI-Samu : main courante bloquée"
    msg["Date"] = email.utils.format_datetime(dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = f"<incident-{next(_n)}@ch-absent.test>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Bonjour,\n\nDepuis ce matin 8h30 la main courante du portail ne s'ouvre plus sur mon poste.\n\n"
                    "Claire Durand, ARM\n")
    return msg.as_bytes()


def out_of_office(to_reply: EmailMessage, with_header: bool) -> bytes:
    """What an absent user's mail client sends back to every mail it gets."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Claire Durand <{USER}>"
    msg["To"] = SUPPORT
    msg["Date"] = email.utils.format_datetime(dt.datetime.now(UTC))
    msg["Message-ID"] = f"<ooo-{next(_n)}@ch-absent.test>"
    msg["In-Reply-To"] = to_reply["Message-ID"]
    if with_header:
        msg["Subject"] = f"Réponse automatique : {to_reply['Subject']}"
        msg["Auto-Submitted"] = "auto-replied"
        text = "Je suis absente du bureau jusqu'au 30 novembre. Pour toute urgence, contactez le cadre de garde."
    else:
        # Some clients (old Outlook rules, webmails) send no header at all.
        msg["Subject"] = f"RE: {to_reply['Subject']}"
        text = "Bonjour,\n\nJe suis absente jusqu'au lundi 30 novembre inclus, avec un accès limité à ma messagerie.\n"
    msg.set_content(text)
    return msg.as_bytes()


def dsn_for(original: EmailMessage) -> bytes:
    """An RFC 3464 delivery status notification (multipart/report, RFC 6522)
    returning our reply's headers, as Postfix writes it."""
    returned = "".join(f"{k}: {v}\r\n" for k, v in original.items() if k in ("From", "To", "Subject", "Message-ID"))
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.ch-absent.test>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.format_datetime(dt.datetime.now(UTC))}\r\n"
        f"Message-ID: <dsn-{next(_n)}@mx.ch-absent.test>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n'
        "\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.ch-absent.test.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.ch-absent.test\r\n\r\n"
        f"Final-Recipient: rfc822; {USER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        "\r\n--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{returned}"
        "\r\n--BOUNDARY--\r\n"
    ).encode()


def replies_to(smtp_server, address: str) -> list[EmailMessage]:
    return [m.message for m in smtp_server.received if address in m.rcpt_tos]


@pytest.mark.parametrize("with_header", [True, False], ids=["auto-submitted", "no-header"])
def test_autoresponder_gets_one_reply_and_no_ping_pong(with_header, engine, dovecot, smtp_server, db_url):
    account = dovecot.new_user()
    service = make_service(engine, db_url, dovecot.settings(account), smtp_server.settings())
    try:
        dovecot.append(account, incident())
        answered = 0
        for _cycle in range(5):
            service.poll_once()
            service.send_outbox()
            # The absent user's client answers every mail it received.
            for msg in replies_to(smtp_server, USER)[answered:]:
                dovecot.append(account, out_of_office(msg, with_header))
            answered = len(replies_to(smtp_server, USER))
        assert answered == 1
        assert dovecot.read_folder(account, "INBOX") == []
        assert len(dovecot.read_folder(account, "Ignoré")) == 1
        with service.store.read() as tx:
            [ticket] = tx.list_tickets()
            history = [e.type for e in tx.events(ticket.id)]
        assert "autoreply" in history          # the out-of-office joined the thread's history
    finally:
        close(service)


def test_bounce_of_our_reply_flags_the_ticket_and_is_not_answered(engine, dovecot, smtp_server, db_url):
    account = dovecot.new_user()
    service = make_service(engine, db_url, dovecot.settings(account), smtp_server.settings())
    try:
        dovecot.append(account, incident())
        service.poll_once()
        service.send_outbox()
        [ours] = replies_to(smtp_server, USER)
        dovecot.append(account, dsn_for(ours))
        for _ in range(3):
            service.poll_once()
            service.send_outbox()
        assert len(smtp_server.received) == 1
        assert len(dovecot.read_folder(account, "Ignoré")) == 1
        with service.store.read() as tx:
            [ticket] = tx.list_tickets()
            assert ticket.reply_undeliverable
            assert tx.outbox_by_message_id(ours["Message-ID"]).status == "failed"
    finally:
        close(service)


def test_list_mail_and_own_mail_get_no_reply(engine, dovecot, smtp_server, db_url):
    account = dovecot.new_user()
    service = make_service(engine, db_url, dovecot.settings(account), smtp_server.settings())
    try:
        dovecot.append(account, incident(sender="liste-arm@lists.ch-absent.test",
                                         List_Id="<arm.lists.ch-absent.test>", Precedence="list"))
        dovecot.append(account, incident(sender=SUPPORT))
        for _ in range(3):
            service.poll_once()
            service.send_outbox()
        assert smtp_server.received == []
        assert dovecot.read_folder(account, "INBOX") == []
    finally:
        close(service)


def test_our_own_reply_coming_back_is_not_answered(engine, dovecot, smtp_server, db_url):
    """A forwarding rule sends our reply back to the support mailbox: no loop."""
    shared_or_skip("corpus", "dev")
    account = dovecot.new_user()
    service = make_service(engine, db_url, dovecot.settings(account), smtp_server.settings())
    try:
        dovecot.append(account, incident())
        returned = 0
        for _ in range(4):
            service.poll_once()
            service.send_outbox()
            for mail in smtp_server.received[returned:]:
                dovecot.append(account, b"Delivered-To: " + SUPPORT.encode() + b"\r\n" + mail.raw)
            returned = len(smtp_server.received)
        assert len(smtp_server.received) == 1
        assert len(dovecot.read_folder(account, "Ignoré")) + len(dovecot.read_folder(account, "Traité")) == 2
        assert dovecot.read_folder(account, "INBOX") == []
    finally:
        close(service)
