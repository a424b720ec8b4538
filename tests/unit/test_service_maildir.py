"""The unit of work (mailbot.service) on a local Maildir, a Maildir "sent" box and SQLite.

No server: fast checks of what the service guarantees for one mail — one
outcome, one ticket effect, at most one reply — and of what the writer and
the staff see (the reply's wording, the staff alert, the folders).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import shutil
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from mailbot.adapters.maildir import MaildirSender, MaildirSource
from mailbot.adapters.store import Store
from mailbot.errors import PermanentDeliveryError, TransientDeliveryError
from mailbot.service import Service, ServiceSettings
from tests.conftest import shared_or_skip

UTC = dt.UTC
BOT = "support@si-samu.test"
STAFF = "astreinte@si-samu.test"


class Killed(BaseException):
    """Stands for SIGKILL in-process: not an Exception, so nothing catches it."""


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def __call__(self) -> dt.datetime:
        return self.now


class Bot:
    """A service over tmp Maildirs and a SQLite file; ``restart()`` = a new process."""

    def __init__(self, root: Path, engine, crash=None, sender=None, **settings) -> None:
        self.root = root
        self.engine = engine
        self.clock = Clock()
        self.inbox = root / "inbox"
        self.sent = MaildirSender(root / "sent")
        self.settings = ServiceSettings(bot_address=BOT, own_addresses=frozenset({BOT}),
                                        message_id_domain="si-samu.test", staff_alert_to=(STAFF,),
                                        max_attempts=3, **settings)
        self.store: Store | None = None
        self.restart(crash=crash, sender=sender)

    def restart(self, crash=None, sender=None) -> None:
        if self.store is not None:
            self.store.close()
        self.store = Store.open(f"sqlite:///{self.root / 'var' / 'mailbot.db'}")
        self.source = MaildirSource(self.inbox)
        self.service = Service(self.engine, self.store, self.source, sender or self.sent, self.settings,
                               self.clock, crash=crash or (lambda *a: None))

    def deliver(self, raw: bytes, name: str) -> None:
        new = self.inbox / "new"
        new.mkdir(parents=True, exist_ok=True)
        (new / name).write_bytes(raw)

    def folder(self, name: str) -> list[str]:
        path = self.source.folder_path(name)
        return sorted(p.name for sub in ("new", "cur") if (path / sub).is_dir() for p in (path / sub).iterdir())

    def inbox_left(self) -> list[str]:
        return sorted(p.name for sub in ("new", "cur") if (self.inbox / sub).is_dir()
                      for p in (self.inbox / sub).iterdir())

    def tickets(self):
        with self.store.read() as tx:
            return tx.list_tickets()



@pytest.fixture
def bot(tmp_path, engine):
    b = Bot(tmp_path, engine)
    yield b
    b.store.close()


def corpus_mail(name: str) -> bytes:
    return (shared_or_skip("corpus", "dev", "messages") / name).read_bytes()


def answer(to_reply: EmailMessage, sender: str, text: str, n: int = 1) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = BOT
    msg["Subject"] = f"RE: {to_reply['Subject']}"
    msg["Date"] = email.utils.format_datetime(dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    msg["Message-ID"] = f"<answer-{n}@client.test>"
    msg["In-Reply-To"] = to_reply["Message-ID"]
    msg["References"] = to_reply["Message-ID"]
    msg.set_content(text + "\n\n> " + "\n> ".join(to_reply.get_content().splitlines()) + "\n")
    return msg.as_bytes()


# --------------------------------------------------------------------------


def test_cas_a_is_filed_at_once_with_hotline_reply_and_staff_alert(bot):
    bot.deliver(corpus_mail("001.eml"), "m1")
    report = bot.service.poll_once()
    assert (report.processed, report.quarantined) == (1, 0)
    [ticket] = bot.tickets()
    assert (ticket.cas, ticket.criticity, ticket.status) == ("A", 1, "à traiter")
    assert ticket.deadline == ticket.created_at + dt.timedelta(hours=24)
    assert bot.inbox_left() == [] and len(bot.folder("processed")) == 1

    assert bot.service.send_outbox() == 2
    sent = {str(m["To"]).split("<")[-1].strip(">"): m for m in bot.sent.messages()}
    reply = next(m for to, m in sent.items() if to != STAFF)
    body = reply.get_content()
    assert "TÉLÉPHONEZ MAINTENANT" in body and ticket.number in body
    assert reply["Subject"].startswith(f"[{ticket.number}]")
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] and reply["In-Reply-To"] in reply["References"]
    alert = sent[STAFF]
    assert "Criticité 1" in alert["Subject"] and alert["Auto-Submitted"] == "auto-generated"


def test_cas_d_gets_a_redirection_and_no_ticket(bot):
    bot.deliver(corpus_mail("003.eml"), "m1")
    bot.service.poll_once()
    assert bot.tickets() == []
    assert bot.service.send_outbox() == 1
    [reply] = bot.sent.messages()
    assert "[SAMU-" not in reply["Subject"]
    assert "informatique" in reply.get_content().lower()
    assert len(bot.folder("processed")) == 1


def test_unreadable_mail_is_quarantined_and_the_rest_processed(bot):
    bot.deliver(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "a-garbage")
    bot.deliver(corpus_mail("002.eml"), "b-good")
    report = bot.service.poll_once()
    assert (report.quarantined, report.processed) == (1, 1)
    assert len(bot.folder("quarantine")) == 1 and len(bot.folder("processed")) == 1
    with bot.store.read() as tx:
        counts = tx.mail_counts()
    assert counts == {"quarantined": 1, "processed": 1}


def test_autoreply_bounce_and_noise_are_filed_as_ignored_without_reply(bot):
    for name in ("006.eml", "016.eml", "011.eml"):
        bot.deliver(corpus_mail(name), name)
    report = bot.service.poll_once()
    assert report.ignored == 3
    assert bot.service.send_outbox() == 0
    assert len(bot.folder("ignored")) == 3


def test_crash_after_commit_then_restart_gives_one_ticket_and_one_reply(bot):
    def kill_after_commit(name, raw=None):
        if name == "after_commit":
            raise Killed

    bot.restart(crash=kill_after_commit)
    bot.deliver(corpus_mail("002.eml"), "m1")
    with pytest.raises(Killed):
        bot.service.poll_once()
    assert bot.inbox_left() == ["m1"]           # committed, not moved
    bot.restart()
    report = bot.service.poll_once()
    assert report.already_done == 1 and report.processed == 0
    assert bot.inbox_left() == [] and len(bot.folder("processed")) == 1
    assert len(bot.tickets()) == 1
    assert bot.service.send_outbox() == 1 and bot.service.send_outbox() == 0
    assert len(bot.sent.messages()) == 1


def test_same_bytes_again_make_no_second_ticket_nor_reply(bot):
    raw = corpus_mail("002.eml")
    bot.deliver(raw, "m1")
    bot.service.poll_once()
    bot.deliver(raw, "m1-again")    # a human moved it back to the inbox
    report = bot.service.poll_once()
    assert report.already_done == 1
    assert len(bot.tickets()) == 1
    assert bot.service.send_outbox() == 1


def test_mail_that_kills_the_bot_is_quarantined_after_max_attempts(bot):
    poison = corpus_mail("002.eml").replace(b"Subject:", b"X-Poison: yes\r\nSubject:", 1)

    def kill_on_poison(name, raw=None):
        if name == "after_fetch" and raw and b"X-Poison" in raw:
            raise Killed

    bot.deliver(poison, "a-poison")
    bot.deliver(corpus_mail("004.eml"), "b-good")
    for _ in range(bot.settings.max_attempts):
        bot.restart(crash=kill_on_poison)
        with pytest.raises(Killed):
            bot.service.poll_once()
    bot.restart(crash=kill_on_poison)
    report = bot.service.poll_once()
    assert report.quarantined == 1
    assert len(bot.folder("quarantine")) == 1 and len(bot.folder("processed")) == 1
    with bot.store.read() as tx:
        [rec] = [m for m in (tx.mail(i) for i in (1, 2)) if m.outcome == "quarantined"]
    assert rec.reason == "gave up after 3 attempts"


def test_answer_in_thread_completes_the_ticket(bot):
    bot.deliver(corpus_mail("002.eml"), "m1")
    bot.deliver((shared_or_skip("corpus", "dev", "conversations") / "01-first.eml").read_bytes(), "m2")
    bot.service.poll_once()
    waiting = [t for t in bot.tickets() if t.status == "en attente d'informations"]
    assert len(waiting) == 1
    bot.service.send_outbox()
    question = next(m for m in bot.sent.messages() if waiting[0].number in m["Subject"])
    assert "navigateur" in question.get_content().lower()
    text = ("Bonjour, Firefox 128.5.0esr, connexion par OTP reçu par mail, c'est en production, "
            "et on est 4 ARM à avoir le souci.")
    bot.deliver(answer(question, waiting[0].writer_addr, text), "m3")
    bot.clock.now += dt.timedelta(hours=1)
    bot.service.poll_once()
    ticket = next(t for t in bot.tickets() if t.id == waiting[0].id)
    assert ticket.status == "à traiter" and ticket.missing == ()
    assert ticket.fields["browser"] == "firefox"
    assert len(bot.tickets()) == 2          # no new ticket for the answer


def test_stranger_quoting_a_ticket_opens_a_linked_ticket(bot):
    bot.deliver(corpus_mail("002.eml"), "m1")
    bot.service.poll_once()
    bot.service.send_outbox()
    [first] = bot.tickets()
    [ours] = bot.sent.messages()
    stranger = answer(ours, "someone@elsewhere.test",
                      "Bonjour, chez nous le portail est bloqué aussi depuis ce matin, la main courante ne répond pas.")
    bot.deliver(stranger, "m2")
    bot.service.poll_once()
    tickets = bot.tickets()
    assert len(tickets) == 2
    assert tickets[1].linked_ticket_id == first.id and tickets[1].writer_addr == "someone@elsewhere.test"


class FlakySender:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)


def test_relay_down_keeps_replies_and_sends_them_later(bot):
    relay = FlakySender(TransientDeliveryError("connection refused"))
    bot.restart(sender=relay)
    bot.deliver(corpus_mail("002.eml"), "m1")
    bot.service.poll_once()
    assert bot.service.send_outbox() == 0
    relay.error = None
    assert bot.service.send_outbox() == 0          # back-off not over yet
    bot.clock.now += dt.timedelta(hours=2)
    assert bot.service.send_outbox() == 1 and len(relay.sent) == 1


def test_refused_reply_flags_the_ticket(bot):
    bot.restart(sender=FlakySender(PermanentDeliveryError("550 unknown user", 550)))
    bot.deliver(corpus_mail("002.eml"), "m1")
    bot.service.poll_once()
    bot.service.send_outbox()
    [ticket] = bot.tickets()
    assert ticket.reply_undeliverable


def test_reminder_then_incomplete_after_silence(bot):
    bot.deliver((shared_or_skip("corpus", "dev", "conversations") / "01-first.eml").read_bytes(), "m1")
    bot.service.poll_once()
    assert bot.service.run_reminders() == 0
    bot.clock.now += dt.timedelta(hours=25)
    assert bot.service.run_reminders() == 1
    assert bot.service.run_reminders() == 0
    bot.clock.now += dt.timedelta(hours=25)
    assert bot.service.run_incomplete_timeouts() == 1
    [ticket] = bot.tickets()
    assert ticket.status == "incomplet" and ticket.flagged_incomplete
    assert bot.service.send_outbox() == 3       # first request, second request, "filed as incomplete"
    subjects = [m["Subject"] for m in bot.sent.messages()]
    assert all(ticket.number in s for s in subjects)


def test_ingest_records_once(bot):
    raw = corpus_mail("002.eml")
    assert bot.service.ingest(raw) == "processed"
    assert bot.service.ingest(raw) == "already_done"
    assert bot.service.ingest(b"") == "quarantined"
    assert len(bot.tickets()) == 1


def test_cli_ingest_exit_codes(tmp_path):
    import subprocess
    import sys

    raw = corpus_mail("003.eml")
    config = tmp_path / "config.toml"
    config.write_text('[mailbox]\nkind = "stdin"\n[bot]\naddress = "support@si-samu.test"\n', encoding="utf-8")
    run = lambda data, cfg: subprocess.run([sys.executable, "-m", "mailbot", "ingest", "--config", str(cfg)],
                                           input=data, capture_output=True, timeout=120, check=False)
    done = run(raw, config)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.strip() == b"processed"
    assert run(b"\x00\x01garbage" * 100, config).returncode == 0      # quarantined, not bounced
    # The database cannot be opened (its folder is a file): try again later.
    (tmp_path / "blocked").write_text("")
    bad = tmp_path / "bad.toml"
    bad.write_text('[mailbox]\nkind = "stdin"\n[database]\nurl = "sqlite:///blocked/x/mailbot.db"\n', encoding="utf-8")
    assert run(raw, bad).returncode == 75
    shutil.rmtree(tmp_path / "var", ignore_errors=True)
