"""Faults: kill -9 at each crash point, SMTP outage, IMAP connection cut, UIDVALIDITY change, poison mail.

The crash tests run the real program (``python -m mailbot run --once``)
against Dovecot, the recording aiosmtpd server and a SQLite file, with
``MAILBOT_CRASH_AT`` naming the step where it SIGKILLs itself
(:mod:`mailbot.faults`), then run it again without: every mail must end in
exactly one outcome and one folder, with one ticket effect and at most one
reply (a re-send after a crash between the server's 250 and our commit
carries the same Message-ID, RFC 1047). The other faults run the service
in-process against the same real servers.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailbot.adapters.imap import ImapSource
from mailbot.adapters.store import Store
from mailbot.adapters.store_schema import outbox
from mailbot.faults import CRASH_POINTS
from tests.conftest import REPO, shared_or_skip
from tests.integration.test_mailbox_loop import (
    STAFF,
    SUPPORT,
    Clock,
    close,
    make_service,
    message_ids,
)

FOLDERS = ("Traité", "Ignoré", "Quarantaine")
# A cas B (ticket + question), a cas A (ticket + hotline reply + staff alert),
# a cas D (redirect, no ticket), an out-of-office (ignored).
MAILS = ("002.eml", "001.eml", "003.eml", "006.eml")
EXPECTED_TICKETS = 2


def corpus(name: str) -> bytes:
    return (shared_or_skip("corpus", "dev", "messages") / name).read_bytes()


def write_config(tmp: Path, dovecot, account: str, smtp_port: int, **extra: str) -> Path:
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
batch_size = 3
timeout_seconds = 10
[smtp]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout_seconds = 1
[bot]
address = "{SUPPORT}"
[staff]
alert_to = ["{STAFF}"]
[database]
url = "sqlite:///{tmp / 'mailbot.db'}"
[poll]
max_attempts = 3
[outbox]
first_retry_seconds = 0.2
max_retry_seconds = 0.5
[dialogue]
replies_per_sender_per_hour = 100
[logging]
file = "{tmp / 'mailbot.log'}"
{extra.get('more', '')}
""", encoding="utf-8")
    return config


def run_bot(config: Path, dovecot, crash_at: str | None = None, marker: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_CRASH")}
    env["MAILBOT_TEST_IMAP_PASSWORD"] = dovecot.password
    env["PYTHONPATH"] = str(REPO)
    if crash_at:
        env["MAILBOT_CRASH_AT"] = crash_at
    if marker:
        env["MAILBOT_CRASH_MARKER"] = marker
    return subprocess.run([sys.executable, "-m", "mailbot", "run", "--once", "--config", str(config)],
                          env=env, capture_output=True, timeout=120, cwd=config.parent, check=False)


def db(tmp: Path) -> Store:
    return Store.open(f"sqlite:///{tmp / 'mailbot.db'}", migrate=False)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_crash_point_then_restart(point, tmp_path, dovecot, smtp_server):
    account = dovecot.new_user()
    for name in MAILS:
        raw = corpus(name)
        dovecot.append(account, raw)
    config = write_config(tmp_path, dovecot, account, smtp_server.port)

    killed = run_bot(config, dovecot, crash_at=point)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    # Restart until the outbox is drained (a lease taken by the killed
    # process expires after 2 x the SMTP timeout).
    for _ in range(4):
        done = run_bot(config, dovecot)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        with db(tmp_path) as store, store.read() as tx:
            counts = tx.outbox_counts()
        if not counts.get("pending") and not counts.get("sending"):
            break
        time.sleep(2.1)

    # Every mail: out of INBOX, in exactly one folder, one final outcome.
    assert dovecot.read_folder(account, "INBOX") == []
    in_folders = collections.Counter(mid for f in FOLDERS for mid in message_ids(dovecot, account, f))
    assert sorted(in_folders.values()) == [1] * len(MAILS)
    with db(tmp_path) as store, store.read() as tx:
        assert tx.mail_counts() == {"processed": 3, "ignored": 1}
        assert len(tx.list_tickets()) == EXPECTED_TICKETS
        rows = tx.conn.execute(sa.select(outbox.c.mail_id, outbox.c.purpose, outbox.c.message_id,
                                         outbox.c.status)).all()
    # One reply per answered mail (+ the staff alert of the cas A), all sent.
    assert collections.Counter((r.mail_id, r.purpose) for r in rows).most_common(1)[0][1] == 1
    assert sorted(r.purpose for r in rows) == ["reply", "reply", "reply", "staff_alert"]
    assert {r.status for r in rows} == {"sent"}
    # The recorder: one distinct Message-ID per outbox row; a second copy
    # only in the window between the server's 250 and our commit.
    received = collections.Counter(str(m.message["Message-ID"]) for m in smtp_server.received)
    assert set(received) == {r.message_id for r in rows}
    copies = sorted(received.values())
    if point == "after_send_before_mark":
        assert copies == [1, 1, 1, 2]
    else:
        assert copies == [1, 1, 1, 1]


def test_poison_mail_is_quarantined_after_max_attempts_rest_processed(tmp_path, dovecot, smtp_server):
    account = dovecot.new_user()
    killer = corpus("002.eml").replace(b"Subject:", b"X-Test-Poison: kill\nSubject:", 1)
    nested = _nested_mime(300)
    headers = _many_headers(20_000)
    for raw in (killer, nested, headers, corpus("008.eml"), corpus("010.eml")):
        dovecot.append(account, raw)
    config = write_config(tmp_path, dovecot, account, smtp_server.port)
    runs = []
    for _ in range(4):
        started = time.monotonic()
        runs.append(run_bot(config, dovecot, crash_at="after_fetch", marker="X-Test-Poison: kill"))
        assert time.monotonic() - started < 60
        if len(runs) == 2:
            # The second attempt comes after the fresh mails: they are done.
            assert len(dovecot.read_folder(account, "INBOX")) == 1
    assert [r.returncode for r in runs] == [-9, -9, -9, 0]
    assert dovecot.read_folder(account, "INBOX") == []
    [quarantined] = dovecot.read_folder(account, "Quarantaine")
    assert b"X-Test-Poison" in quarantined.raw
    in_folders = collections.Counter(mid for f in FOLDERS for mid in message_ids(dovecot, account, f))
    assert sorted(in_folders.values()) == [1] * 5
    with db(tmp_path) as store, store.read() as tx:
        counts = tx.mail_counts()
        reasons = {tx.mail(i).reason for i in range(1, 6) if tx.mail(i).outcome == "quarantined"}
    assert sum(counts.values()) == 5 and "pending" not in counts
    assert "gave up after 3 attempts" in reasons


def _nested_mime(depth: int) -> bytes:
    head = (b"From: Marc Petit <m.petit@ch-nested.test>\r\nTo: support@si-samu.test\r\n"
            b"Subject: Portail inaccessible\r\nMessage-ID: <nested-300@ch-nested.test>\r\nMIME-Version: 1.0\r\n")
    body = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    body += b"Content-Type: text/plain\r\n\r\nLe portail ne marche plus depuis ce matin.\r\n"
    body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + body


def _many_headers(n: int) -> bytes:
    return (b"From: Anne Noel <a.noel@ch-headers.test>\r\nTo: support@si-samu.test\r\n"
            b"Subject: Bandeau\r\nMessage-ID: <headers-20000@ch-headers.test>\r\n"
            + b"".join(b"X-Filler-%d: x\r\n" % i for i in range(n))
            + b"\r\nLe bandeau est gris depuis ce matin sur mon poste.\r\n")


def test_smtp_outage_delays_replies_then_they_go_out(engine, dovecot, smtp_server, tmp_path):
    account = dovecot.new_user()
    clock = Clock()
    service = make_service(engine, f"sqlite:///{tmp_path / 'm.db'}", dovecot.settings(account),
                           smtp_server.settings(), clock=clock)
    try:
        with smtp_server.down():
            for name in ("002.eml", "007.eml"):
                dovecot.append(account, corpus(name))
            report = service.poll_once()
            assert report.processed == 2          # intake goes on while SMTP is down
            assert service.send_outbox() == 0
            clock.offset += dt.timedelta(seconds=2)
            assert service.send_outbox() == 0
            with service.store.read() as tx:
                assert tx.outbox_counts() == {"pending": 2}
        assert smtp_server.received == []
        clock.offset += dt.timedelta(seconds=10)
        assert service.send_outbox() == 2
        assert len(smtp_server.received) == 2
        assert service.send_outbox() == 0
    finally:
        close(service)


class KickingSource:
    """The real ImapSource; the server cuts the connection (``doveadm kick``)
    after the first mail of the fetch has been handed out."""

    def __init__(self, inner: ImapSource, kick) -> None:
        self.inner, self.kick, self.kicked = inner, kick, 0

    def fetch_new(self, limit=None):
        for n, mail in enumerate(self.inner.fetch_new(limit)):
            yield mail
            if n == 0 and not self.kicked:
                self.kicked += 1
                self.kick()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_imap_connection_cut_mid_fetch_reconnects_and_continues(engine, dovecot, smtp_server, tmp_path):
    account = dovecot.new_user()
    imap = dovecot.settings(account, batch_size=2)
    for name in ("002.eml", "003.eml", "007.eml", "010.eml", "011.eml"):
        dovecot.append(account, corpus(name))
    source = KickingSource(ImapSource(imap), lambda: dovecot.kick(account))
    kicks = []

    def kick_between_mails(name, raw=None):
        if name == "after_move" and not kicks:
            kicks.append(1)
            dovecot.kick(account)

    service = make_service(engine, f"sqlite:///{tmp_path / 'm.db'}", imap, smtp_server.settings(),
                           source=source, crash=kick_between_mails)
    try:
        report = service.poll_once()
        assert source.kicked == 1 and kicks == [1]
        assert report.processed + report.ignored == 5
        assert dovecot.read_folder(account, "INBOX") == []
    finally:
        close(service)


def test_uidvalidity_change_makes_no_duplicate(engine, dovecot, smtp_server, tmp_path, caplog):
    account = dovecot.new_user()
    folder = "Support"
    imap = dovecot.settings(account, inbox=folder)
    raws = [corpus(n) for n in ("002.eml", "003.eml", "007.eml")]
    for raw in raws:
        dovecot.append(account, raw, folder=folder)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    service = make_service(engine, url, imap, smtp_server.settings())
    try:
        assert service.poll_once().processed == 3
        assert service.send_outbox() == 3
    finally:
        close(service)
    before = dovecot.uidvalidity(account, folder)
    # The mailbox is rebuilt (restore from backup, migration): same mails,
    # new UIDVALIDITY; plus one really new mail.
    time.sleep(1.1)
    with dovecot.client(account) as client:
        client.delete_folder(folder)
    for raw in [*raws, corpus("010.eml")]:
        dovecot.append(account, raw, folder=folder)
    assert dovecot.uidvalidity(account, folder) != before
    service = make_service(engine, url, imap, smtp_server.settings())
    try:
        with caplog.at_level(logging.CRITICAL, logger="mailbot.service"):
            report = service.poll_once()
        assert (report.already_done, report.processed) == (3, 1)
        assert any("UIDVALIDITY" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)
        assert service.send_outbox() == 1
        with service.store.read() as tx:
            assert len(tx.list_tickets()) == 3     # 002, 007, 010 (003 is cas D: no ticket)
        assert len(smtp_server.received) == 4
        assert dovecot.read_folder(account, folder) == []
    finally:
        close(service)
