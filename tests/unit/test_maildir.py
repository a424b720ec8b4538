"""MaildirSource and MaildirSender on a temporary Maildir++ tree (no server)."""

from __future__ import annotations

import mailbox
import os
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient.imap_utf7 import decode as decode_mutf7

from mailbot.adapters.maildir import MaildirSender, MaildirSource
from mailbot.errors import MailboxError, TransientDeliveryError
from mailbot.ports import IGNORED, PROCESSED, QUARANTINE, MailSender, MailSource, RawMail


def raw_of(n: int) -> bytes:
    return (
        f"From: regul{n}@samu.example\nTo: support@example.test\n"
        f"Subject: Panne n°{n}\nMessage-ID: <m{n}@samu.example>\n\nCorps {n}\n"
    ).encode()


def deliver(root: Path, n: int, *, mtime: float | None = None) -> str:
    """Drop a mail into root/new the way an MTA does (tmp/ then rename); returns its key."""
    key = mailbox.Maildir(root, create=True).add(raw_of(n))
    if mtime is not None:
        os.utime(root / "new" / key, (mtime, mtime))
    return key


def test_implements_the_ports(tmp_path: Path) -> None:
    assert isinstance(MaildirSource(tmp_path / "in"), MailSource)
    assert isinstance(MaildirSender(tmp_path / "out"), MailSender)


def test_fetch_reads_new_and_cur_oldest_first_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    now = time.time()
    second = deliver(root, 2, mtime=now - 10)
    first = deliver(root, 1, mtime=now - 20)
    # A message a mail client already looked at sits in cur/ with an info suffix.
    os.rename(root / "new" / first, root / "cur" / f"{first}:2,S")
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    source = MaildirSource(root)
    mails = list(source.fetch_new())

    assert [m.raw for m in mails] == [raw_of(1), raw_of(2)]
    assert [m.key for m in mails] == [f"maildir:{first}", f"maildir:{second}"]
    assert all(isinstance(m, RawMail) and m.uid is None and m.uidvalidity is None for m in mails)
    after = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert after == before  # nothing renamed into cur/, nothing removed
    assert [m.raw for m in source.fetch_new(limit=1)] == [raw_of(1)]
    assert len(list(source.fetch_new())) == 2  # still there until moved


def test_move_renames_into_a_maildirpp_folder_named_in_modified_utf7(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, 1)
    deliver(root, 2)
    source = MaildirSource(root)
    first, second = source.fetch_new()

    source.move(first, PROCESSED)

    folder = root / ".Trait&AOk-"  # how Dovecot stores "Traité" on disk
    assert (folder / "maildirfolder").exists()
    assert [p.read_bytes() for p in (folder / "new").iterdir()] == [first.raw]
    assert [m.key for m in source.fetch_new()] == [second.key]
    # Any Maildir++ reader finds the folder under its real name.
    names = [decode_mutf7(name.encode()) for name in mailbox.Maildir(root).list_folders()]
    assert names == ["Traité"]

    source.move(second, QUARANTINE)
    assert list(source.fetch_new()) == []
    assert len(list((root / ".Quarantaine" / "new").iterdir())) == 1


def test_move_is_idempotent_and_refuses_unknown_mail(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, 1)
    source = MaildirSource(root)
    (mail,) = source.fetch_new()
    source.move(mail, IGNORED)
    source.move(mail, IGNORED)  # replay after a crash between move and bookkeeping
    assert len(list((root / ".Ignor&AOk-" / "new").iterdir())) == 1
    with pytest.raises(MailboxError):
        source.move(mail, PROCESSED)  # it is in Ignoré, not in the inbox
    ghost = RawMail(key="maildir:1700000000.M1P1Q1.nowhere", mailbox=str(root), uidvalidity=None, uid=None, raw=b"")
    with pytest.raises(MailboxError):
        source.move(ghost, PROCESSED)


def test_move_many_files_every_mail_and_can_be_replayed(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for n in range(4):
        deliver(root, n)
    source = MaildirSource(root)
    mails = list(source.fetch_new())
    source.move_many(mails[:3], PROCESSED)
    source.move_many(mails[:3], PROCESSED)   # replay after a crash: harmless
    source.move_many([], IGNORED)
    assert [m.key for m in source.fetch_new()] == [mails[3].key]
    assert sorted(p.read_bytes() for p in (root / ".Trait&AOk-" / "new").iterdir()) == sorted(
        m.raw for m in mails[:3])


def test_wait_for_new_sees_only_mail_not_handed_out_yet(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    deliver(root, 1)
    source = MaildirSource(root, poll_interval=0.05)
    assert source.wait_for_new(timeout=0) is True
    list(source.fetch_new())
    assert source.wait_for_new(timeout=0.1) is False  # fetched but not moved: not "new"

    timer = threading.Timer(0.1, deliver, args=(root, 2))
    timer.start()
    started = time.monotonic()
    try:
        assert source.wait_for_new(timeout=5) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 1.0


def test_sender_writes_a_readable_message_into_new(tmp_path: Path) -> None:
    message = EmailMessage()
    message["From"] = "support@example.test"
    message["To"] = "Régulation <regul@samu.example>"
    message["Subject"] = "[MB-7] Re: Écran noir au poste 3"
    message["Message-ID"] = "<mb-7-ask@example.test>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("Merci d'indiquer le site concerné.\n")
    out = tmp_path / "Sent"

    sender = MaildirSender(out)
    sender.send(message)

    (path,) = (out / "new").iterdir()
    (got,) = sender.messages()
    assert got["Subject"] == "[MB-7] Re: Écran noir au poste 3"
    assert got["Message-ID"] == "<mb-7-ask@example.test>"
    assert got["Auto-Submitted"] == "auto-replied"
    assert got.get_content() == "Merci d'indiquer le site concerné.\n"
    # The same file is readable as an ordinary Maildir by any MUA.
    assert mailbox.Maildir(out)[path.name]["Message-ID"] == "<mb-7-ask@example.test>"


def test_sender_failure_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content("x")
    with pytest.raises(TransientDeliveryError):
        MaildirSender(blocker / "Sent").send(message)
