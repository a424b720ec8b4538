"""Tests of the persistent store, run on SQLite and on PostgreSQL.

PostgreSQL runs when ``MAILBOT_TEST_PG_URL`` names a server (CI:
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets its own
schema, dropped afterwards, so runs never collide. Without the variable the
PostgreSQL variants are skipped with a visible reason.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailbot.adapters.store import RetryPolicy, Store, TicketNotFound, normalize_message_id
from mailbot.adapters.store_schema import metadata

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PG_URL = os.environ.get("MAILBOT_TEST_PG_URL")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="MAILBOT_TEST_PG_URL not set: PostgreSQL variant skipped"),
        ],
    ),
]

StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StoreFactory]:
    """A factory of stores on one fresh database (call it twice for two
    independent connections pools, as two processes would have)."""
    opened: list[Store] = []
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'mailbot.db'}"
        cleanup = None
    else:
        schema = f"mailbot_test_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        # libpq "options": every connection of this store works in the schema.
        url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )

        def cleanup() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()

    def factory(**options) -> Store:
        store = Store.open(url, **options)
        opened.append(store)
        return store

    factory.url = url  # type: ignore[attr-defined]
    yield factory
    for store in opened:
        store.close()
    if cleanup:
        cleanup()


@pytest.fixture
def store(open_store: StoreFactory) -> Store:
    return open_store()


def at(minutes: float) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


# --- schema ---------------------------------------------------------------------

def test_migrations_build_the_whole_schema_from_scratch(store: Store) -> None:
    assert store.schema_revision() == "0001"
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert {
        "mails_seen", "mailbox_state", "tickets", "ticket_participants", "ticket_messages",
        "attachments", "events", "outbox", "alembic_version",
    } <= names
    # The hand-written migration and the schema module describe the same tables.
    assert diff == []


def test_opening_again_keeps_data_and_does_not_migrate_twice(open_store: StoreFactory) -> None:
    first = open_store()
    with first.transaction() as tx:
        number = tx.create_ticket(now=NOW, title="Bandeau bloqué").number
    second = open_store()
    second.migrate()
    assert second.schema_revision() == "0001"
    with second.read() as tx:
        assert tx.ticket_by_number(number).title == "Bandeau bloqué"


def test_sqlite_store_is_durable_wal_with_foreign_keys(tmp_path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/sub/dir/m.db")
    try:
        with store.engine.connect() as conn:
            pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                       ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 10000}
    finally:
        store.close()


# --- incoming mails: idempotency ----------------------------------------------------

def test_same_bytes_after_uidvalidity_change_are_recognised(store: Store) -> None:
    with store.transaction() as tx:
        claim = tx.claim_mail(content_hash="h1" * 32, message_id="<m1@site.fr>", sender="arm@chu.fr",
                              source="imap:bot", mailbox="INBOX", uidvalidity=100, uid=7, now=NOW)
        assert claim.is_new and not claim.already_done and claim.attempts == 1
        ticket = tx.create_ticket(now=NOW)
        tx.set_mail_outcome(claim.mail_id, "processed", now=NOW, ticket_id=ticket.id)

    # The mailbox was recreated: new UIDVALIDITY, new UID, same bytes.
    with store.transaction() as tx:
        again = tx.claim_mail(content_hash="h1" * 32, message_id="<m1@site.fr>", sender="arm@chu.fr",
                              source="imap:bot", mailbox="INBOX", uidvalidity=200, uid=1, now=at(60))
        assert again.already_done and not again.is_new
        assert (again.mail_id, again.outcome, again.ticket_id) == (claim.mail_id, "processed", ticket.id)
        # The new location is recorded, the old one is not valid any more.
        assert tx.mail_at("imap:bot", "INBOX", 200, 1).id == claim.mail_id
        assert tx.mail_at("imap:bot", "INBOX", 100, 7) is None
        assert tx.mail_counts() == {"processed": 1}


def test_pending_mail_counts_each_attempt(store: Store) -> None:
    for expected in (1, 2, 3):
        with store.transaction() as tx:
            claim = tx.claim_mail(content_hash="p" * 64, now=at(expected), source="maildir")
        assert (claim.attempts, claim.already_done, claim.outcome) == (expected, False, "pending")
    with store.transaction() as tx:
        tx.set_mail_outcome(claim.mail_id, "quarantined", now=at(4), reason="RecursionError")
    with store.transaction() as tx:
        final = tx.claim_mail(content_hash="p" * 64, now=at(5))
        assert (final.already_done, final.outcome, final.attempts) == (True, "quarantined", 3)
        assert tx.mail(final.mail_id).finished_at == at(4)


def test_same_message_id_from_same_sender_is_a_duplicate_delivery(store: Store) -> None:
    with store.transaction() as tx:
        first = tx.claim_mail(content_hash="a" * 64, message_id="<x1@chu.fr>", sender="ARM@chu.fr", now=NOW)
        ticket = tx.create_ticket(now=NOW)
        tx.set_mail_outcome(first.mail_id, "processed", now=NOW, ticket_id=ticket.id)
    with store.transaction() as tx:
        # Same mail through a second alias: other Received headers, other hash.
        copy = tx.claim_mail(content_hash="b" * 64, message_id="x1@chu.fr", sender="arm@chu.fr", now=at(1))
        # A stranger reusing the Message-ID must not make a real mail vanish.
        forged = tx.claim_mail(content_hash="c" * 64, message_id="<x1@chu.fr>", sender="evil@example.org",
                               now=at(2))
    assert copy.already_done and copy.outcome == "ignored"
    assert (copy.duplicate_of, copy.ticket_id) == (first.mail_id, ticket.id)
    assert not forged.already_done and forged.outcome == "pending"


def test_two_pollers_claiming_the_same_mails_record_each_once(open_store: StoreFactory) -> None:
    # E.g. a second bot instance started by mistake, or the MTA pipe and the
    # IMAP poller seeing the same delivery: one row per mail, every attempt counted.
    stores = [open_store(), open_store()]
    hashes = [f"{i:064x}" for i in range(25)]
    barrier = threading.Barrier(len(stores))
    claims: list = []
    errors: list[BaseException] = []

    def work(store: Store) -> None:
        try:
            barrier.wait()
            for h in hashes:
                with store.transaction() as tx:
                    claims.append(tx.claim_mail(content_hash=h, message_id=f"<{h[-6:]}@x>", now=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(c.is_new for c in claims) == len(hashes)
    with stores[0].read() as tx:
        assert tx.mail_counts() == {"pending": len(hashes)}
        assert {tx.mail(c.mail_id).attempts for c in claims} == {2}


def test_mailbox_state_remembers_uidvalidity(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.mailbox_state("imap:bot", "INBOX") is None
        tx.set_mailbox_state("imap:bot", "INBOX", uidvalidity=100, last_uid=5, now=NOW)
        state = tx.set_mailbox_state("imap:bot", "INBOX", uidvalidity=4_000_000_000, last_uid=9, now=at(1))
    assert (state.uidvalidity, state.last_uid, state.updated_at) == (4_000_000_000, 9, at(1))


# --- the unit of work ---------------------------------------------------------------

def test_ticket_outcome_and_reply_are_written_together_or_not_at_all(store: Store) -> None:
    with store.transaction() as tx:
        claim = tx.claim_mail(content_hash="u" * 64, now=NOW)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW)
        tx.enqueue_outbox(cause=f"mail:{claim.mail_id}", purpose="ask", message_id="<r1@bot>",
                          to_addr="arm@chu.fr", raw=b"x", now=NOW, ticket_id=ticket.id)
        tx.set_mail_outcome(claim.mail_id, "processed", now=NOW, ticket_id=ticket.id)
        raise RuntimeError("crash before commit")
    with store.read() as tx:
        assert tx.count_tickets() == 0
        assert tx.due_outbox(at(1)) == []
        assert tx.mail(claim.mail_id).outcome == "pending"


def test_naive_datetimes_are_refused_and_others_come_back_in_utc(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.transaction() as tx:
        tx.create_ticket(now=dt.datetime(2026, 11, 20, 8, 0))
    paris = dt.timezone(dt.timedelta(hours=1))
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=dt.datetime(2026, 11, 20, 9, 0, tzinfo=paris))
    assert ticket.created_at == NOW and ticket.created_at.tzinfo == UTC


# --- outbox ---------------------------------------------------------------------------

def test_enqueue_twice_for_the_same_cause_keeps_one_reply(store: Store) -> None:
    with store.transaction() as tx:
        row, created = tx.enqueue_outbox(cause="mail:1", purpose="ask_missing", message_id="<reply.1@bot.fr>",
                                         to_addr="ARM@chu.fr", raw=b"first", subject="[SAMU-000001] Q", now=NOW)
    # The mail is processed again after a crash: a new reply is built...
    with store.transaction() as tx:
        again, created_again = tx.enqueue_outbox(cause="mail:1", purpose="ask_missing",
                                                 message_id="<reply.2@bot.fr>", to_addr="arm@chu.fr",
                                                 raw=b"second", now=at(5))
        other, other_created = tx.enqueue_outbox(cause="mail:1", purpose="staff_alert", message_id="<alert.1@bot.fr>",
                                                 to_addr="astreinte@samu.fr", raw=b"alert", now=at(5))
        due = tx.due_outbox(at(5))
    # ...but the first one, with its Message-ID and bytes, is what will be sent.
    assert created and not created_again and other_created
    assert (again.id, again.message_id, again.raw) == (row.id, "<reply.1@bot.fr>", b"first")
    assert [r.id for r in due] == [row.id, other.id]
    assert row.to_addr == "arm@chu.fr"


def test_retry_backs_off_then_gives_up(store: Store) -> None:
    with store.transaction() as tx:
        row, _ = tx.enqueue_outbox(cause="mail:9", purpose="ask", message_id="<r9@bot>", to_addr="a@b.fr",
                                   raw=b"r", now=NOW)
    now = NOW
    waits = []
    for _ in range(6):
        with store.transaction() as tx:
            assert [r.id for r in tx.claim_outbox(now)] == [row.id]
            row = tx.schedule_outbox_retry(row.id, now=now, error="SMTPConnectError")
            waits.append((row.next_attempt_at - now).total_seconds())
            # Not due before its time, due at its time.
            assert tx.due_outbox(row.next_attempt_at - dt.timedelta(seconds=1)) == []
            assert [r.id for r in tx.due_outbox(row.next_attempt_at)] == [row.id]
        now = row.next_attempt_at
    assert waits == [300, 600, 1200, 2400, 4000, 4000]
    assert (row.status, row.attempts, row.last_error) == ("pending", 6, "SMTPConnectError")

    with store.transaction() as tx:
        row = tx.schedule_outbox_retry(row.id, now=NOW + dt.timedelta(days=5), error="SMTPConnectError")
        assert tx.due_outbox(NOW + dt.timedelta(days=30)) == []
    assert row.status == "failed" and "gave up" in row.last_error


def test_a_send_interrupted_by_a_crash_is_retried_with_the_same_message_id(store: Store) -> None:
    with store.transaction() as tx:
        row, _ = tx.enqueue_outbox(cause="mail:3", purpose="ask", message_id="<r3@bot>", to_addr="a@b.fr",
                                   raw=b"r", now=NOW)
    with store.transaction() as tx:
        (taken,) = tx.claim_outbox(NOW, lease=dt.timedelta(minutes=5))
    assert taken.status == "sending"
    with store.transaction() as tx:  # the worker died: nobody else takes it during the lease
        assert tx.claim_outbox(at(4)) == []
        (again,) = tx.claim_outbox(at(5))
        sent = tx.mark_outbox_sent(again.id, now=at(5))
    assert again.message_id == "<r3@bot>" and again.raw == b"r"
    assert (sent.status, sent.sent_at, sent.attempts) == ("sent", at(5), 1)
    with store.transaction() as tx:  # a bounce arrives later for this reply
        assert tx.outbox_by_message_id("r3@bot").id == row.id
        bounced = tx.mark_outbox_failed(row.id, now=at(30), error="bounce 5.1.1")
        assert tx.outbox_counts() == {"failed": 1}
    assert (bounced.status, bounced.attempts) == ("failed", 1)


def test_retry_policy_is_configurable(open_store: StoreFactory) -> None:
    store = open_store(retry=RetryPolicy(base=dt.timedelta(seconds=2), cap=dt.timedelta(seconds=30)))
    with store.transaction() as tx:
        row, _ = tx.enqueue_outbox(cause="c", purpose="p", message_id="<c@bot>", to_addr="a@b.fr", raw=b"", now=NOW)
        delays = [(tx.schedule_outbox_retry(row.id, now=NOW, error="421").next_attempt_at - NOW).seconds
                  for _ in range(6)]
    assert delays == [2, 4, 8, 16, 30, 30]


def test_two_senders_never_take_the_same_row(open_store: StoreFactory) -> None:
    a, b = open_store(), open_store()
    with a.transaction() as tx:
        for i in range(2):
            tx.enqueue_outbox(cause=f"mail:{i}", purpose="ask", message_id=f"<r{i}@bot>", to_addr="a@b.fr",
                              raw=b"", now=NOW)
    if a.dialect == "postgresql":
        # Both claim at the same time: the second skips the row the first locked.
        with a.transaction() as tx1, b.transaction() as tx2:
            first = tx1.claim_outbox(NOW, limit=1)
            second = tx2.claim_outbox(NOW, limit=1)
    else:
        # SQLite serialises writers: the second sees the first's lease.
        with a.transaction() as tx1:
            first = tx1.claim_outbox(NOW, limit=1)
        with b.transaction() as tx2:
            second = tx2.claim_outbox(NOW, limit=1)
    assert len(first) == len(second) == 1 and first[0].id != second[0].id


def test_reply_times_per_address_for_rate_limits(store: Store) -> None:
    with store.transaction() as tx:
        for i, minute in enumerate((0, 10, 70)):
            tx.enqueue_outbox(cause=f"m{i}", purpose="ask", message_id=f"<t{i}@bot>", to_addr="ARM@chu.fr",
                              raw=b"", now=at(minute))
        tx.enqueue_outbox(cause="m9", purpose="ask", message_id="<t9@bot>", to_addr="other@chu.fr", raw=b"",
                          now=at(5))
        assert tx.reply_times_to("arm@chu.fr", since=at(5)) == [at(10), at(70)]


# --- tickets ----------------------------------------------------------------------------

def test_ticket_numbers_are_unique_and_readable_under_concurrent_creation(open_store: StoreFactory) -> None:
    stores = [open_store(), open_store()]
    per_worker = 15
    barrier = threading.Barrier(len(stores))
    numbers: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(store: Store) -> None:
        try:
            barrier.wait()
            for i in range(per_worker):
                with store.transaction() as tx:
                    number = tx.create_ticket(now=at(i)).number
                with lock:
                    numbers.append(number)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(numbers) == len(set(numbers)) == per_worker * len(stores)
    assert all(re.fullmatch(r"SAMU-\d{6}", n) for n in numbers)
    with stores[0].read() as tx:
        assert sorted(t.number for t in tx.list_tickets()) == sorted(numbers)


def test_ticket_lookup_by_number_as_written_in_a_subject(store: Store) -> None:
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW)
        assert ticket.number == "SAMU-000001"
        assert tx.ticket_by_number("[samu-1]").id == ticket.id
        assert tx.ticket_by_number("SAMU-000001").id == ticket.id
        assert tx.ticket_by_number("SAMU-000002") is None
        assert tx.ticket_by_number("INC-000001") is None
        with pytest.raises(TicketNotFound):
            tx.update_ticket(999, now=NOW, status="clos")
        with pytest.raises(ValueError, match="unknown ticket status"):
            tx.update_ticket(ticket.id, now=NOW, status="fermé")


def test_thread_lookup_by_the_message_ids_we_sent_and_received(store: Store) -> None:
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW, writer_addr="ARM@chu-nice.fr")
        other = tx.create_ticket(now=NOW)
        tx.add_message(ticket.id, direction="in", at=NOW, message_id="<in1@chu-nice.fr>", sender="arm@chu-nice.fr",
                       subject="Bandeau bloqué", body_text="Bonjour, né le 01/02/1960 ...", new_text="Bonjour")
        row, _ = tx.enqueue_outbox(cause="mail:1", purpose="ask", message_id="<ask1@bot.fr>", to_addr="arm@chu-nice.fr",
                                   raw=b"", now=at(1), ticket_id=ticket.id)
        tx.add_message(ticket.id, direction="out", at=at(1), message_id=row.message_id,
                       in_reply_to="<in1@chu-nice.fr>", references=["in1@chu-nice.fr"], outbox_id=row.id)
        tx.add_message(other.id, direction="in", at=NOW, message_id="<else@x.fr>")
        for address, role in (("ARM@chu-nice.fr", "from"), ("samu@bot.fr", "to"), ("cadre@chu-nice.fr", "cc")):
            tx.add_participant(ticket.id, address, role, now=NOW)
        assert not tx.add_participant(ticket.id, "arm@CHU-nice.fr", "cc", now=NOW)

    with store.read() as tx:
        # A client writing In-Reply-To without angle brackets still threads.
        assert tx.ticket_by_message_ids(["ask1@bot.fr"]).id == ticket.id
        assert tx.ticket_by_message_ids([None, "<unknown@x>", "<in1@chu-nice.fr>"]).id == ticket.id
        assert tx.ticket_by_message_ids(["<else@x.fr>", "<ask1@bot.fr>"]).id == other.id  # first given wins
        assert tx.ticket_by_message_ids(["<nothing@x>"]) is None
        assert tx.is_participant(ticket.id, "Cadre@CHU-Nice.fr")
        assert not tx.is_participant(ticket.id, "stranger@example.org")
        assert [(p.address, p.role) for p in tx.participants(ticket.id)] == [
            ("arm@chu-nice.fr", "from"), ("samu@bot.fr", "to"), ("cadre@chu-nice.fr", "cc")]
        msgs = tx.messages(ticket.id)
        assert [m.direction for m in msgs] == ["in", "out"]
        assert msgs[0].body_text == "Bonjour, né le 01/02/1960 ..."  # originals kept unmasked
        assert msgs[1].references == ("<in1@chu-nice.fr>",) and msgs[1].outbox_id == row.id


def test_attachments_over_the_cap_keep_only_their_description(open_store: StoreFactory) -> None:
    store = open_store(attachment_cap=1000)
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW)
        small = tx.add_attachment(ticket.id, filename="capture écran.png", content_type="image/png",
                                  content=b"\x89PNG" + b"\0" * 100, now=NOW)
        big = tx.add_attachment(ticket.id, filename="../../etc/passwd", content_type="application/pdf",
                                content=b"x" * 5000, now=NOW)
        assert [(a.filename, a.size, a.stored) for a in tx.attachments(ticket.id)] == [
            ("capture écran.png", 104, True), ("../../etc/passwd", 5000, False)]
        assert tx.attachment_content(small.id) == b"\x89PNG" + b"\0" * 100
        assert tx.attachment_content(big.id) is None


def test_events_are_append_only_and_kept_in_order(store: Store) -> None:
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW)
        tx.add_event(ticket.id, "mail_in", at=NOW, actor="arm@chu.fr")
        tx.add_event(ticket.id, "reply_out", at=NOW, data={"purpose": "ask"})
        tx.add_event(ticket.id, "status_change", at=at(10), actor="Julie Martin",
                     data={"from": "nouveau", "to": "pris en charge"})
        # Written later but dated earlier (a late mail): still shown after.
        tx.add_event(ticket.id, "note", at=at(5), actor="Julie Martin", data={"text": "rappelé à 9h05"})
        tx.add_event(None, "undeliverable", at=at(11), data={"message_id": "<x@bot>"})
    with store.read() as tx:
        history = tx.events(ticket.id)
        assert [e.type for e in history] == ["mail_in", "reply_out", "status_change", "note"]
        assert history[2].data == {"from": "nouveau", "to": "pris en charge"} and history[2].actor == "Julie Martin"
        assert [e.type for e in tx.events(since=at(6))] == ["status_change", "undeliverable"]
        assert [e.type for e in tx.events(types=["note"])] == ["note"]
    for sql in ("UPDATE events SET actor = 'someone'", "DELETE FROM events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.transaction() as tx:
            tx.conn.exec_driver_sql(sql)
    with store.read() as tx:
        assert len(tx.events()) == 5 and {e.actor for e in tx.events()} != {"someone"}


@pytest.fixture
def backlog(store: Store) -> dict[str, int]:
    """Tickets of every kind the staff filters must tell apart."""
    day = dt.timedelta(days=1)
    specs = {
        "overdue_c1": dict(status="pris en charge", criticity=1, cas="A", site_code="NCE", deadline=NOW - 2 * day),
        "overdue_waiting": dict(status="en attente d'informations", criticity=2, cas="B", application="portail",
                                site_code="NCE", deadline=NOW - dt.timedelta(minutes=1)),
        "due_soon": dict(status="à traiter", criticity=2, cas="B", application="nice", site_code="LYO",
                         deadline=NOW + dt.timedelta(hours=3)),
        "later": dict(status="nouveau", criticity=3, cas="B", application="statistiques", site_code="LYO",
                      deadline=NOW + 4 * day),
        "resolved_late": dict(status="résolu", criticity=1, cas="A", site_code="NCE", deadline=NOW - day),
        "incomplete": dict(status="incomplet", criticity=2, cas="C", site_code=None, deadline=NOW + day,
                           flagged_incomplete=True),
        "no_deadline": dict(status="en attente d'informations", cas="B", application="selfcare", site_code="LYO"),
    }
    ids = {}
    with store.transaction() as tx:
        for i, (name, values) in enumerate(specs.items()):
            ids[name] = tx.create_ticket(now=NOW - dt.timedelta(days=3) + dt.timedelta(hours=i), **values).id
    return ids


def test_ticket_filters_with_a_fixed_clock(store: Store, backlog: dict[str, int]) -> None:
    names = {v: k for k, v in backlog.items()}

    def listed(**filters) -> list[str]:
        with store.read() as tx:
            return [names[t.id] for t in tx.list_tickets(**filters)]

    assert listed(overdue_at=NOW) == ["overdue_c1", "overdue_waiting"]
    assert listed(overdue_at=NOW - dt.timedelta(hours=1)) == ["overdue_c1"]
    assert listed(overdue_at=NOW, criticity=1) == ["overdue_c1"]
    assert listed(due_before=NOW + dt.timedelta(hours=4)) == ["overdue_c1", "overdue_waiting", "due_soon"]
    assert listed(waiting_for_writer=True) == ["overdue_waiting", "no_deadline"]
    assert listed(status=["nouveau", "à traiter"]) == ["due_soon", "later"]
    assert listed(cas="A") == ["overdue_c1", "resolved_late"]
    assert listed(site_code="LYO", application="nice") == ["due_soon"]
    assert listed(incomplete=True) == ["incomplete"]
    assert listed(open_only=True, criticity=[1, 3]) == ["overdue_c1", "later"]
    assert listed(created_since=NOW - dt.timedelta(days=3) + dt.timedelta(hours=5)) == ["incomplete", "no_deadline"]
    assert listed(limit=2, newest_first=True) == ["no_deadline", "incomplete"]
    with store.read() as tx:
        assert tx.count_tickets(overdue_at=NOW) == 2
        assert tx.ticket_counts("site_code") == {"NCE": 3, "LYO": 3, None: 1}
        assert tx.ticket_counts("criticity", open_only=True) == {1: 1, 2: 3, 3: 1, None: 1}
        assert tx.ticket(backlog["overdue_c1"]).is_overdue(NOW)
        assert not tx.ticket(backlog["resolved_late"]).is_overdue(NOW)


def test_json_fields_round_trip_with_accents(store: Store) -> None:
    fields = {
        "features": ["main courante", "réécoute", "messagerie instantanée"],
        "error_message": "Accès refusé — « session expirée »",
        "impacted_lines": ["15", "116117"],
        "users_impacted": 12,
        "screenshots": True,
        "start_time": "2026-11-20T08:10:00",
    }
    with store.transaction() as tx:
        ticket = tx.create_ticket(now=NOW, title="Portail : réécoute impossible", site_name="SAMU 06 — Nice",
                                  fields=fields, missing=("auth_mode", "environment"),
                                  ask_counts={"auth_mode": 1}, thread_subject="RE: TR: problème d'accès")
    with store.transaction() as tx:
        updated = tx.update_ticket(ticket.id, now=at(30), fields={**ticket.fields, "auth_mode": "otp_sms"},
                                   missing=("environment",), ask_counts={"auth_mode": 1, "environment": 2},
                                   status="en attente d'informations", last_question_at=at(30))
    with store.read() as tx:
        again = tx.ticket(ticket.id)
        raw = tx.conn.execute(sa.text("SELECT fields FROM tickets")).scalar()
    assert again == updated
    assert again.fields == {**fields, "auth_mode": "otp_sms"}
    assert again.missing == ("environment",) and again.ask_counts == {"auth_mode": 1, "environment": 2}
    assert (again.title, again.site_name, again.thread_subject) == (
        "Portail : réécoute impossible", "SAMU 06 — Nice", "RE: TR: problème d'accès")
    assert (again.status, again.created_at, again.updated_at) == ("en attente d'informations", NOW, at(30))
    # Stored readable, not as \\u escapes (SQLite gives text, PostgreSQL JSONB a dict).
    assert "réécoute" in (raw if isinstance(raw, str) else str(raw))


def test_message_id_normalisation() -> None:
    assert normalize_message_id("  <a.b@c.fr> (comment)") == "<a.b@c.fr>"
    assert normalize_message_id("a.b@c.fr") == "<a.b@c.fr>"
    assert normalize_message_id("") is None and normalize_message_id("<>") is None
