"""Staff actions end to end: the real mailbox loop fills the store, ``mailbot tickets`` acts on it.

The bot runs as the real program (``python -m mailbot run --once --config``)
against Dovecot (IMAP, loopback) and the recording aiosmtpd server; the
desk's commands run through click's ``CliRunner`` on the same configuration
and SQLite file. Scenario (issue 4, acceptance): three incidents of
criticity 1, 2 and 3 arrive; their deadlines follow the criticity; ``take``
-> the writer receives « prise en charge par … » at the SMTP server;
``escalate`` -> ``show`` lists it in the history; ``resolve`` -> the writer
receives the resolution; the writer answers it -> the next run reopens the
ticket; ``list --overdue --at`` finds the late tickets at fixed times.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from click.testing import CliRunner

from mailbot.adapters.store import Store
from mailbot.cli_staff import tickets
from tests.conftest import REPO, shared_or_skip

UTC = dt.UTC
BOT = "support@si-samu.test"
ON_DUTY = "astreinte@si-samu.test"
# Labelled dev mails: 001 cas A (criticity 1), 002 cas B portail (criticity 2,
# complete), 007 cas B nice (criticity 3).
MAILS = {1: "001.eml", 2: "002.eml", 3: "007.eml"}


def write_config(tmp: Path, dovecot, account: str, smtp_port: int) -> Path:
    config = tmp / "config.toml"
    config.write_text(f"""
[mailbox]
kind = "imap"
[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
username = "{account}"
password_env = "MAILBOT_TEST_IMAP_PASSWORD"
idle = false
timeout_seconds = 10
[smtp]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout_seconds = 5
[bot]
address = "{BOT}"
[staff]
alert_to = ["{ON_DUTY}"]
timezone = "Europe/Paris"
[database]
url = "sqlite:///{tmp / 'mailbot.db'}"
[dialogue]
replies_per_sender_per_hour = 100
[logging]
file = "{tmp / 'mailbot.log'}"
""", encoding="utf-8")
    return config


class Desk:
    """The bot (a subprocess) and ``mailbot tickets`` (CliRunner) on one configuration."""

    def __init__(self, config: Path, dovecot) -> None:
        self.config = config
        self.env = {"MAILBOT_TEST_IMAP_PASSWORD": dovecot.password}

    def run_bot(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_CRASH")}
        env.update(self.env, PYTHONPATH=str(REPO))
        done = subprocess.run([sys.executable, "-m", "mailbot", "run", "--once", "--config", str(self.config)],
                              env=env, capture_output=True, timeout=120, cwd=self.config.parent, check=False)
        log = self.config.parent / "mailbot.log"
        assert done.returncode == 0, done.stderr.decode()[-2000:] + (log.read_text()[-2000:] if log.exists() else "")

    def tickets(self, *args: str) -> str:
        result = CliRunner().invoke(tickets, [*args, "--config", str(self.config)], env=self.env,
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.config.parent / 'mailbot.db'}", migrate=False)


def mails_to(smtp_server, address: str) -> list[EmailMessage]:
    return [m.message for m in smtp_server.received if address in m.rcpt_tos]


def text(msg: EmailMessage) -> str:
    return msg.get_content().replace("\r\n", "\n")


def test_staff_lifecycle_on_a_store_filled_by_the_mailbox_loop(tmp_path, dovecot, smtp_server):
    messages = shared_or_skip("corpus", "dev", "messages")
    account = dovecot.new_user()
    for name in MAILS.values():
        dovecot.append(account, (messages / name).read_bytes())
    desk = Desk(write_config(tmp_path, dovecot, account, smtp_server.port), dovecot)
    desk.run_bot()

    # --- the loop made three tickets; deadlines follow the criticity
    with desk.store() as store, store.read() as tx:
        by_level = {t.criticity: t for t in tx.list_tickets()}
    assert sorted(by_level) == [1, 2, 3]
    assert {level: t.deadline - t.created_at for level, t in by_level.items()} == {
        1: dt.timedelta(hours=24), 2: dt.timedelta(hours=72), 3: dt.timedelta(days=5)}
    ticket = by_level[2]
    writer = ticket.writer_addr
    assert ticket.status == "à traiter" and writer.endswith("@ch-valmont.test")
    before = len(mails_to(smtp_server, writer))      # the bot's acknowledgement
    listed = desk.tickets("list")
    assert ticket.number in listed and "à traiter" in listed

    # --- take: the writer receives « prise en charge par Alice Martin »
    assert "taken in charge by Alice Martin" in desk.tickets("take", ticket.number, "--by", "Alice Martin")
    desk.run_bot()
    received = mails_to(smtp_server, writer)
    assert len(received) == before + 1
    taken = received[-1]
    assert f"Votre demande {ticket.number} est prise en charge par Alice Martin" in text(taken)
    assert f"[{ticket.number}]" in str(taken["Subject"]) and taken["Auto-Submitted"] == "auto-replied"
    with desk.store() as store, store.read() as tx:
        first_in = tx.messages(ticket.id)[0].message_id
    assert first_in in str(taken["References"])     # threaded under the writer's mail

    # --- escalate: the history shows it; the writer gets nothing
    desk.tickets("escalate", ticket.number, "--team", "applications-metier", "--by", "Alice Martin",
                 "--note", "anomalie éditeur")
    shown = desk.tickets("show", ticket.number)
    assert "escaladé" in shown
    assert "escalated" in shown and "Applications métier: anomalie éditeur" in shown
    desk.run_bot()
    assert len(mails_to(smtp_server, writer)) == before + 1

    # --- resolve: the writer receives the resolution
    resolution = "Le correctif de l'éditeur est installé : la main courante s'affiche de nouveau."
    desk.tickets("resolve", ticket.number, resolution, "--by", "Alice Martin")
    desk.run_bot()
    received = mails_to(smtp_server, writer)
    assert len(received) == before + 2
    resolved_mail = received[-1]
    assert resolution in text(resolved_mail) and f"{ticket.number} est résolue" in text(resolved_mail)
    with desk.store() as store, store.read() as tx:
        assert tx.ticket(ticket.id).status == "résolu"
        assert set(tx.outbox_counts()) == {"sent"}   # everything went out

    # --- the writer answers the resolution: the next run reopens the ticket
    answer = EmailMessage()
    answer["From"] = f"Thomas Lefebvre <{writer}>"
    answer["To"] = BOT
    answer["Subject"] = f"RE: {resolved_mail['Subject']}"
    answer["Date"] = format_datetime(dt.datetime.now(UTC))
    answer["Message-ID"] = make_msgid(domain="ch-valmont.test")
    answer["In-Reply-To"] = resolved_mail["Message-ID"]
    answer["References"] = f"{resolved_mail['References']} {resolved_mail['Message-ID']}"
    answer.set_content("Bonjour,\n\nLe problème est revenu ce matin : la main courante ne s'affiche "
                       "plus sur le portail, pour les 4 ARM.\n\nCordialement,\nThomas Lefebvre\n")
    dovecot.append(account, answer.as_bytes())
    desk.run_bot()
    with desk.store() as store, store.read() as tx:
        reopened = tx.ticket(ticket.id)
        history = tx.events(ticket.id)
    assert reopened.status in ("à traiter", "pris en charge")
    assert any(e.data.get("old") == "résolu" and e.data.get("new") == reopened.status for e in history)
    assert reopened.number in desk.tickets("list", "--open")

    # --- overdue at fixed times (the reopened ticket is open again)
    def overdue(hours: float) -> set[str]:
        at = (by_level[1].created_at + dt.timedelta(hours=hours)).isoformat()
        out = desk.tickets("list", "--overdue", "--at", at)
        return {t.number for t in by_level.values() if t.number in out}

    assert overdue(1) == set()
    assert overdue(25) == {by_level[1].number}
    assert overdue(73) == {by_level[1].number, by_level[2].number}
    assert overdue(24 * 5 + 1) == {t.number for t in by_level.values()}
