"""ImapSource against a real Dovecot on loopback: fetch, move, reconnect, IDLE, TLS."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace

import pytest
from imapclient import DELETED, SEEN

from mailbot.adapters.imap import ImapSettings, ImapSource
from mailbot.errors import MailboxError
from mailbot.ports import IGNORED, PROCESSED, QUARANTINE, MailSource


def make_mail(n: int, subject: str = "Panne réseau") -> bytes:
    return (
        f"From: Régulation SAMU <regul{n}@samu.example>\r\n"
        f"To: support@example.test\r\n"
        f"Subject: {subject} {n}\r\n"
        f"Message-ID: <mail-{n}@samu.example>\r\n"
        f"Date: Mon, 03 Mar 2025 10:0{n % 10}:00 +0100\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"Le poste de régulation n°{n} ne joint plus le serveur.\r\n"
    ).encode()


@pytest.fixture
def source(imap_account: ImapSettings):
    src = ImapSource(imap_account)
    yield src
    src.close()


def test_source_satisfies_the_port(source: ImapSource) -> None:
    assert isinstance(source, MailSource)


def test_fetch_returns_appended_mails_in_uid_order_without_marking_them_seen(dovecot, imap_account) -> None:
    raws = [make_mail(n) for n in range(5)]
    uids = [dovecot.append(imap_account, raw) for raw in raws]
    # batch_size 2 forces three FETCH round trips for five mails.
    source = ImapSource(replace(imap_account, batch_size=2))
    try:
        mails = list(source.fetch_new())
        validity = dovecot.uidvalidity(imap_account)
        assert [m.uid for m in mails] == uids
        assert [m.raw for m in mails] == raws
        assert source.uidvalidity == validity
        assert {m.uidvalidity for m in mails} == {validity}
        assert mails[0].key == f"imap:INBOX:{validity}:{uids[0]}"
        assert "Le poste" not in repr(mails[0])  # mail bodies stay out of logs
        # BODY.PEEK[]: nothing marked \Seen, nothing removed.
        inbox = dovecot.read_folder(imap_account)
        assert [m.uid for m in inbox] == uids
        assert all(SEEN not in m.flags for m in inbox)
        # Fetching again sees the same mails; limit keeps the oldest.
        assert [m.uid for m in source.fetch_new(limit=2)] == uids[:2]
        assert len(list(source.fetch_new())) == 5
    finally:
        source.close()


def test_move_creates_accented_folder_and_removes_from_inbox_only_then(dovecot, imap_account, source) -> None:
    first, second, third = (make_mail(n) for n in range(3))
    for raw in (first, second, third):
        dovecot.append(imap_account, raw)
    mails = list(source.fetch_new())
    assert "Traité" not in dovecot.folders(imap_account)
    assert len(dovecot.read_folder(imap_account)) == 3  # fetching moved nothing

    source.move(mails[0], PROCESSED)
    source.move(mails[1], IGNORED)
    source.move(mails[2], "Quarantaine")  # a literal folder name works too

    assert {"Traité", "Ignoré", "Quarantaine"} <= set(dovecot.folders(imap_account))
    assert [m.raw for m in dovecot.read_folder(imap_account, "Traité")] == [first]
    assert [m.raw for m in dovecot.read_folder(imap_account, "Ignoré")] == [second]
    assert [m.raw for m in dovecot.read_folder(imap_account, "Quarantaine")] == [third]
    assert dovecot.read_folder(imap_account) == []
    # Moving again after a crash (already moved) is harmless.
    source.move(mails[0], PROCESSED)
    assert len(dovecot.read_folder(imap_account, "Traité")) == 1
    assert list(source.fetch_new()) == []


def test_folder_names_follow_the_server_hierarchy(dovecot, imap_account) -> None:
    dovecot.append(imap_account, make_mail(1))
    settings = replace(imap_account, folders={PROCESSED: "Support/Traité", QUARANTINE: "Q", IGNORED: "I"})
    with ImapSource(settings) as source:
        (mail,) = source.fetch_new()
        source.move(mail, PROCESSED)
    # Dovecot's Maildir++ delimiter is "."; "/" in the settings maps onto it.
    assert "Support.Traité" in dovecot.folders(imap_account)
    assert len(dovecot.read_folder(imap_account, "Support.Traité")) == 1


@pytest.mark.parametrize(
    ("ignored", "human_deleted_survives"),
    [
        (frozenset({"MOVE"}), True),  # COPY + \Deleted + UID EXPUNGE (UIDPLUS)
        (frozenset({"MOVE", "UIDPLUS"}), False),  # plain EXPUNGE: takes every \Deleted mail
    ],
    ids=["uidplus", "plain-expunge"],
)
def test_move_fallback_without_move_capability(dovecot, imap_account, caplog, ignored, human_deleted_survives) -> None:
    ours = make_mail(1)
    dovecot.append(imap_account, ours)
    # A mail a human flagged \Deleted in the inbox but did not expunge yet.
    flagged_uid = dovecot.append(imap_account, make_mail(2, "Corbeille"), flags=(DELETED,))
    with ImapSource(replace(imap_account, ignore_capabilities=ignored)) as source:
        mails = list(source.fetch_new())
        assert [m.raw for m in mails] == [ours]  # \Deleted mail is not offered
        with caplog.at_level(logging.WARNING, logger="mailbot.adapters.imap"):
            source.move(mails[0], PROCESSED)
    assert [m.raw for m in dovecot.read_folder(imap_account, "Traité")] == [ours]
    remaining = [m.uid for m in dovecot.read_folder(imap_account)]
    assert remaining == ([flagged_uid] if human_deleted_survives else [])
    assert ("plain EXPUNGE" in caplog.text) is (not human_deleted_survives)


@pytest.mark.parametrize(
    "ignored",
    [frozenset(), frozenset({"MOVE"})],
    ids=["uid-move", "copy-store-uid-expunge"],
)
def test_move_many_moves_exactly_the_given_mails(dovecot, imap_account, monkeypatch, ignored) -> None:
    import mailbot.adapters.imap as imap_module

    # Two UIDs per command, so that seven mails take several commands.
    monkeypatch.setattr(imap_module, "_MAX_UIDS_PER_COMMAND", 2)
    raws = [make_mail(n) for n in range(8)]
    uids = [dovecot.append(imap_account, raw) for raw in raws]
    # A mail a human flagged \Deleted: the UIDPLUS fallback must leave it alone.
    flagged_uid = dovecot.append(imap_account, make_mail(9, "Corbeille"), flags=(DELETED,))
    with ImapSource(replace(imap_account, ignore_capabilities=ignored)) as source:
        mails = list(source.fetch_new())
        assert [m.uid for m in mails] == uids
        kept = mails[3]   # a hole in the UID set: 1:3,5:8
        chosen = [m for m in mails if m is not kept]
        source.move_many(chosen[:4], PROCESSED)
        source.move_many(chosen[4:], QUARANTINE)
        source.move_many([], IGNORED)                 # nothing to do, no error
        source.move_many(chosen[:4], PROCESSED)       # replay after a crash: harmless
        assert [m.uid for m in source.fetch_new()] == [kept.uid]
    assert [m.raw for m in dovecot.read_folder(imap_account, "Traité")] == [m.raw for m in chosen[:4]]
    assert [m.raw for m in dovecot.read_folder(imap_account, "Quarantaine")] == [m.raw for m in chosen[4:]]
    assert "Ignoré" not in dovecot.folders(imap_account)
    assert [m.uid for m in dovecot.read_folder(imap_account)] == [kept.uid, flagged_uid]


def test_uid_set_is_written_as_ranges() -> None:
    from mailbot.adapters.imap import _uid_set

    assert _uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert _uid_set([5]) == "5"
    assert _uid_set([]) == ""


def test_reconnects_when_the_server_cuts_the_connection(dovecot, imap_account) -> None:
    raws = [make_mail(n) for n in range(3)]
    for raw in raws:
        dovecot.append(imap_account, raw)
    with ImapSource(replace(imap_account, batch_size=1)) as source:
        mails = source.fetch_new()
        first = next(mails)
        dovecot.kick(imap_account)  # server side: the session's process is killed
        time.sleep(0.2)
        # The next batch is fetched over a new connection...
        rest = list(mails)
        assert [m.raw for m in rest] == raws[1:]
        dovecot.kick(imap_account)
        time.sleep(0.2)
        # ...and a move after another cut goes through too.
        source.move(first, PROCESSED)
        for mail in rest:
            source.move(mail, PROCESSED)
    assert [m.raw for m in dovecot.read_folder(imap_account, "Traité")] == raws
    assert dovecot.read_folder(imap_account) == []


def test_wrong_password_is_a_clear_mailbox_error_without_retries(imap_account) -> None:
    wrong = "wrong-" + imap_account.password[::-1]
    source = ImapSource(replace(imap_account, password=wrong, backoff_initial=2.0))
    started = time.monotonic()
    with pytest.raises(MailboxError, match="login refused") as caught:
        list(source.fetch_new())
    assert time.monotonic() - started < 1.5  # refused logins are not retried
    assert imap_account.username in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(source)


def test_unreachable_server_gives_up_after_bounded_retries(imap_account) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = replace(imap_account, port=port, connect_attempts=3, backoff_initial=0.05)
    with pytest.raises(MailboxError, match="after 3 attempts"):
        ImapSource(settings).connect()


def test_uid_from_a_previous_uidvalidity_is_never_moved(dovecot) -> None:
    user = dovecot.new_user()
    dovecot.append(user, make_mail(1), folder="Intake")
    settings = dovecot.settings(user, inbox="Intake")
    with ImapSource(settings) as source:
        (old,) = source.fetch_new()
        old_validity = source.uidvalidity
    # A human (or a restore) deletes and recreates the folder: UIDs restart.
    with dovecot.client(user) as client:
        client.delete_folder("Intake")
        client.create_folder("Intake")
    dovecot.append(user, make_mail(2), folder="Intake")
    with ImapSource(settings) as source:
        (new,) = source.fetch_new()
        assert source.uidvalidity != old_validity
        assert new.uidvalidity == source.uidvalidity and new.key != old.key
        with pytest.raises(MailboxError, match="UIDVALIDITY"):
            source.move(old, PROCESSED)
        # In a batch too: a single stale mail stops the whole move, nothing moves.
        with pytest.raises(MailboxError, match="UIDVALIDITY"):
            source.move_many([new, old], PROCESSED)
    assert [m.raw for m in dovecot.read_folder(user, "Intake")] == [make_mail(2)]


def test_idle_wakes_up_soon_after_mail_arrives_from_another_client(dovecot, imap_account, source) -> None:
    assert list(source.fetch_new()) == []
    assert source.wait_for_new(timeout=0.3) is False

    timer = threading.Timer(0.3, dovecot.append, args=(imap_account, make_mail(1)))
    timer.start()
    started = time.monotonic()
    try:
        assert source.wait_for_new(timeout=10) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 2.0
    # The connection is usable right after IDLE.
    assert [m.raw for m in source.fetch_new()] == [make_mail(1)]
    # Mail already fetched (left in INBOX, e.g. awaiting retry) does not wake us.
    assert source.wait_for_new(timeout=0.2) is False


def test_wait_reports_mail_that_arrived_before_waiting(dovecot, imap_account, source) -> None:
    dovecot.append(imap_account, make_mail(1))
    started = time.monotonic()
    assert source.wait_for_new(timeout=10) is True
    assert time.monotonic() - started < 1.0


def test_polling_replaces_idle_when_the_server_lacks_it(dovecot, imap_account) -> None:
    with ImapSource(replace(imap_account, ignore_capabilities=frozenset({"IDLE"}), poll_interval=0.2)) as source:
        assert list(source.fetch_new()) == []
        assert source.wait_for_new(timeout=0.3) is False
        timer = threading.Timer(0.2, dovecot.append, args=(imap_account, make_mail(1)))
        timer.start()
        try:
            assert source.wait_for_new(timeout=5) is True
        finally:
            timer.join()


def test_idle_returns_when_the_server_drops_the_connection(dovecot, imap_account, source) -> None:
    assert list(source.fetch_new()) == []
    timer = threading.Timer(0.3, dovecot.kick, args=(imap_account,))
    timer.start()
    started = time.monotonic()
    try:
        assert source.wait_for_new(timeout=10) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 3.0
    dovecot.append(imap_account, make_mail(1))
    assert len(list(source.fetch_new())) == 1  # reconnected transparently


def test_xoauth2_login_with_a_token_callable(dovecot, imap_account) -> None:
    calls = []

    def token() -> str:
        calls.append(1)
        return dovecot.password  # the static passdb checks the token as a password

    dovecot.append(imap_account, make_mail(1))
    settings = replace(imap_account, password=None, oauth2_token=token)
    with ImapSource(settings) as source:
        assert len(list(source.fetch_new())) == 1
    assert calls == [1]
    log = dovecot.log_path.read_text(errors="replace")
    assert f"user=<{imap_account.username}>, method=XOAUTH2" in log


def test_secrets_never_reach_the_logs(dovecot, imap_account, caplog) -> None:
    dovecot.append(imap_account, make_mail(1))
    with caplog.at_level(logging.DEBUG):
        with ImapSource(imap_account) as source:
            list(source.fetch_new())
        with ImapSource(replace(imap_account, password=None, oauth2_token=lambda: dovecot.password)) as source:
            list(source.fetch_new())
    assert caplog.records  # imapclient does log the session at DEBUG
    assert dovecot.password not in caplog.text
    assert dovecot.password not in repr(imap_account)


def test_plaintext_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ValueError, match="clear text"):
        ImapSettings(host="imap.example.org", username="u", password="p", security="none")


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_verified_tls(dovecot, imap_account, security) -> None:
    dovecot.append(imap_account, make_mail(1))
    with ImapSource(dovecot.tls_settings(imap_account, security)) as source:
        assert [m.raw for m in source.fetch_new()] == [make_mail(1)]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_untrusted_certificate_is_refused_at_once(dovecot, imap_account, security) -> None:
    settings = dovecot.tls_settings(imap_account, security, ca_file=None, backoff_initial=2.0)
    started = time.monotonic()
    with pytest.raises(MailboxError, match="does not verify"):
        ImapSource(settings).connect()
    assert time.monotonic() - started < 1.5

