"""Persistent store: mails seen, tickets and their thread, history, outbox.

Adapter layer (SQLAlchemy 2 Core + Alembic); only the service, the staff API
and the composition root import it, never the pure core. SQLite by default
(``sqlite:///var/mailbot.db``), PostgreSQL by URL
(``postgresql+psycopg://user@host/db``).

Contract:
- ``Store.open(url)`` creates/upgrades the schema (``alembic upgrade head``,
  run in code from ``mailbot/migrations``).
- All work happens in a unit of work: ``with store.transaction() as tx:``
  commits on exit, rolls back on exception, so the ticket, the mail's outcome
  and the outbox row are written atomically (reliability §1.5).
- Methods return frozen dataclasses, never ORM objects or rows: callers never
  hold a session.
- Time is always passed in (``now=``, ``at=``) as an aware datetime; the store
  never reads the clock and returns aware UTC datetimes.

Durability (reliability §1.5 rule 2): SQLite runs in WAL mode with
``synchronous=FULL`` (in WAL, NORMAL may lose the last commits on power loss),
foreign keys on, a busy timeout, and writers take the lock up front with
``BEGIN IMMEDIATE`` so two writers queue instead of failing with
SQLITE_BUSY when a read transaction tries to upgrade itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import StaticPool

from mailbot.adapters.store_schema import (
    FINAL_MAIL_OUTCOMES,
    MAIL_OUTCOMES,
    MESSAGE_DIRECTIONS,
    OUTBOX_STATUSES,
    TICKET_DONE_STATUSES,
    TICKET_STATUSES,
    TICKET_WAITING_STATUS,
    attachments,
    events,
    mailbox_state,
    mails_seen,
    metadata,
    outbox,
    ticket_messages,
    ticket_participants,
    tickets,
)

__all__ = [
    "DEFAULT_URL", "Store", "Tx", "RetryPolicy", "MailClaim", "MailRecord", "MailboxState",
    "TicketRecord", "Participant", "MessageRecord", "AttachmentRecord", "EventRecord",
    "OutboxRow", "TicketNotFound", "alembic_config", "normalize_message_id",
    "TICKET_STATUSES", "MAIL_OUTCOMES", "OUTBOX_STATUSES", "metadata",
]

DEFAULT_URL = "sqlite:///var/mailbot.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant: serialises concurrent ``Store.open`` upgrades on PostgreSQL.
_MIGRATION_LOCK_KEY = 0x6D61696C626F74


class TicketNotFound(LookupError):
    """No ticket with that id."""


# --- records ----------------------------------------------------------------

@dataclass(frozen=True)
class MailClaim:
    """What ``claim_mail`` found. ``already_done``: the mail (same bytes, or the
    same Message-ID from the same sender) already has a final outcome: do not
    process it again, only file it away according to ``outcome``."""

    mail_id: int
    is_new: bool
    already_done: bool
    outcome: str
    attempts: int
    ticket_id: int | None = None
    duplicate_of: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class MailRecord:
    id: int
    content_hash: str
    message_id: str | None
    sender: str
    source: str
    mailbox: str | None
    uidvalidity: int | None
    uid: int | None
    outcome: str
    reason: str | None
    attempts: int
    first_seen: dt.datetime
    last_attempt: dt.datetime
    finished_at: dt.datetime | None
    duplicate_of: int | None
    ticket_id: int | None


@dataclass(frozen=True)
class MailboxState:
    source: str
    mailbox: str
    uidvalidity: int | None
    last_uid: int | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class TicketRecord:
    id: int
    number: str
    status: str
    kind: str | None
    cas: str | None
    application: str | None
    criticity: int | None
    title: str
    site_code: str | None
    site_name: str | None
    writer_addr: str
    writer_name: str
    assignee: str | None
    team: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deadline: dt.datetime | None
    filed_at: dt.datetime | None
    taken_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    last_question_at: dt.datetime | None
    flagged_incomplete: bool
    reply_undeliverable: bool
    linked_ticket_id: int | None
    thread_subject: str
    fields: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    ask_counts: dict[str, int] = field(default_factory=dict)

    def is_overdue(self, now: dt.datetime) -> bool:
        return (
            self.deadline is not None
            and self.deadline < now
            and self.status not in TICKET_DONE_STATUSES
        )


@dataclass(frozen=True)
class Participant:
    ticket_id: int
    address: str
    role: str
    added_at: dt.datetime


@dataclass(frozen=True)
class MessageRecord:
    id: int
    ticket_id: int
    direction: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    sender: str
    subject: str
    at: dt.datetime
    body_text: str
    new_text: str
    mail_id: int | None
    outbox_id: int | None


@dataclass(frozen=True)
class AttachmentRecord:
    """``stored`` is False when the part exceeded the store's size cap: its
    name, type and size are kept, its bytes are not."""

    id: int
    ticket_id: int
    message_row_id: int | None
    filename: str
    content_type: str
    size: int
    stored: bool
    added_at: dt.datetime


@dataclass(frozen=True)
class EventRecord:
    id: int
    ticket_id: int | None
    at: dt.datetime
    actor: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    ticket_id: int | None
    mail_id: int | None
    cause: str
    purpose: str
    message_id: str
    to_addr: str
    subject: str
    raw: bytes = field(repr=False)
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


@dataclass(frozen=True)
class RetryPolicy:
    """Outbox back-off: Postfix's defaults (``minimal_backoff_time=300s``,
    ``maximal_backoff_time=4000s``, ``maximal_queue_lifetime=5d``), doubling
    after each failed attempt. CI scales them down."""

    base: dt.timedelta = dt.timedelta(seconds=300)
    cap: dt.timedelta = dt.timedelta(seconds=4000)
    max_age: dt.timedelta = dt.timedelta(days=5)

    def delay(self, attempts: int) -> dt.timedelta:
        """Wait after the ``attempts``-th failed attempt (1 -> base)."""
        exponent = min(max(attempts - 1, 0), 32)
        return min(self.base * (2**exponent), self.cap)


_R = TypeVar("_R")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _record(cls: type[_R], row: Any, **overrides: Any) -> _R:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    m = row._mapping
    values = {name: m[name] for name in names if name in m}
    values.update(overrides)
    return cls(**values)


def _ticket(row: Any) -> TicketRecord:
    m = row._mapping
    return _record(
        TicketRecord,
        row,
        fields=dict(m["fields"] or {}),
        missing=tuple(m["missing"] or ()),
        ask_counts=dict(m["ask_counts"] or {}),
        flagged_incomplete=bool(m["flagged_incomplete"]),
        reply_undeliverable=bool(m["reply_undeliverable"]),
    )


def _outbox(row: Any) -> OutboxRow:
    return _record(OutboxRow, row, raw=bytes(row._mapping["raw"]))


# --- normalisation ------------------------------------------------------------

_MSGID = re.compile(r"<([^<>\s]+)>")


def normalize_message_id(value: str | None) -> str | None:
    """``<id@host>`` form of a Message-ID / In-Reply-To value, None if empty.

    Clients disagree on the brackets (some write In-Reply-To without them, some
    add a comment after: RFC 5322 §3.6.4 obsolete syntax), so lookups compare
    the bracketed first id. The id itself is compared exactly.
    """
    if not value:
        return None
    text = value.strip()
    match = _MSGID.search(text)
    core = match.group(1) if match else text.strip("<> \t\r\n")
    return f"<{core}>" if core else None


def _addr(value: str | None) -> str:
    return (value or "").strip().lower()


def _json_dumps(value: Any) -> str:
    # Keep accents readable in the database (policy values are French).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations (no .ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escaping
    return cfg


def _many(value: Any) -> list[Any] | None:
    """A filter value: one value, or an iterable of values."""
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


# --- the store ----------------------------------------------------------------

class Store:
    """Entry point: owns the engine and hands out units of work."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        ticket_prefix: str = "SAMU",
        attachment_cap: int = 10 * 1024 * 1024,
        retry: RetryPolicy = RetryPolicy(),
        dedupe_window: dt.timedelta = dt.timedelta(days=7),
    ) -> None:
        self.engine = engine
        self.ticket_prefix = ticket_prefix
        self.attachment_cap = attachment_cap
        self.retry = retry
        self.dedupe_window = dedupe_window
        self.dialect = engine.dialect.name
        # Statements of the hot path, built once and executed with their
        # parameters: SQLAlchemy then reuses the compiled form without
        # rebuilding and re-hashing the statement for every mail.
        self._statements: dict[str, Any] = {}

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        migrate: bool = True,
        busy_timeout_ms: int = 10_000,
        **options: Any,
    ) -> Store:
        """Connect, configure and (by default) upgrade the schema to head.

        SQLite: the file's folder is created if absent. PostgreSQL: a schema
        other than ``public`` is chosen in the URL with libpq's options,
        ``...?options=-csearch_path%3Dmailbot``.
        ``options`` go to ``Store(...)``: ``ticket_prefix``, ``attachment_cap``
        (bytes), ``retry`` (:class:`RetryPolicy`), ``dedupe_window``.
        """
        sa_url = sa.make_url(url)
        backend = sa_url.get_backend_name()
        if backend == "sqlite":
            engine = _sqlite_engine(sa_url, busy_timeout_ms)
        elif backend == "postgresql":
            engine = sa.create_engine(sa_url, json_serializer=_json_dumps, pool_pre_ping=True)
        else:
            raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
        store = cls(engine, **options)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """``alembic upgrade head`` in one transaction (idempotent)."""
        with self.engine.connect() as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Tx]:
        """A unit of work: commit on normal exit, rollback on exception.

        ``readonly=True`` opens a deferred transaction on SQLite (does not
        take the write lock); use it for listings and digests.
        """
        with self.engine.connect() as conn:
            if readonly:
                conn = conn.execution_options(mailbot_readonly=True)
            with conn.begin():
                yield Tx(self, conn)

    def read(self) -> AbstractContextManager[Tx]:
        """Shorthand for ``transaction(readonly=True)``."""
        return self.transaction(readonly=True)

    def format_number(self, ticket_id: int) -> str:
        return f"{self.ticket_prefix}-{ticket_id:06d}"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_engine(url: sa.URL, busy_timeout_ms: int) -> sa.Engine:
    database = url.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "connect_args": {"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    }
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN: pysqlite's own implicit
        # BEGIN is DEFERRED and only sent before DML, which breaks both
        # transactional DDL and lock ordering (SQLAlchemy pysqlite docs,
        # "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        readonly = conn.get_execution_options().get("mailbot_readonly")
        conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return engine


_TICKET_WRITABLE = frozenset(c.name for c in tickets.columns) - {"id", "number", "created_at", "updated_at"}


class Tx:
    """Operations inside one transaction. Obtain with ``store.transaction()``."""

    def __init__(self, store: Store, conn: sa.Connection) -> None:
        self.store = store
        self.conn = conn

    # -- helpers --
    def _insert(self, table: sa.Table) -> Any:
        if self.store.dialect == "postgresql":
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)

    def _first(self, stmt: Any) -> Any:
        return self.conn.execute(stmt).first()

    def _stmt(self, name: str, build: Any) -> Any:
        """The statement ``name``, built by ``build()`` once per store."""
        cache = self.store._statements
        stmt = cache.get(name)
        if stmt is None:
            stmt = cache[name] = build()
        return stmt

    # -- incoming mails -------------------------------------------------------

    def claim_mail(
        self,
        *,
        content_hash: str,
        now: dt.datetime,
        message_id: str | None = None,
        sender: str = "",
        source: str = "",
        mailbox: str | None = None,
        uidvalidity: int | None = None,
        uid: int | None = None,
    ) -> MailClaim:
        """Record one more processing attempt of a mail, before parsing it.

        Known by its bytes (same sha256, e.g. found again after a UIDVALIDITY
        change or moved back to INBOX by a human): returns the stored outcome,
        and counts one more attempt while it is still ``pending`` (poison
        mail cap, like Mailman's ``_bak_count``). New bytes but the same
        Message-ID from the same sender within the dedupe window: recorded as
        ``ignored``, a duplicate delivery (the same mail through two aliases
        differs only in its Received/Delivered-To headers). Commit the claim
        on its own, before parsing, so a crash still counts the attempt.
        """
        mid = normalize_message_id(message_id)
        sender = _addr(sender)
        location = {"source": source, "mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid}
        by_hash = self._stmt("mail_by_hash", lambda: sa.select(mails_seen).where(
            mails_seen.c.content_hash == sa.bindparam("content_hash")))
        row = self.conn.execute(by_hash, {"content_hash": content_hash}).first()
        if row is None:
            dup = None
            if mid:
                dup_stmt = self._stmt("mail_dup", lambda: (
                    sa.select(mails_seen)
                    .where(
                        mails_seen.c.message_id == sa.bindparam("mid"),
                        mails_seen.c.sender == sa.bindparam("sender"),
                        mails_seen.c.first_seen >= sa.bindparam("since", type_=mails_seen.c.first_seen.type),
                        mails_seen.c.duplicate_of.is_(None),
                    )
                    .order_by(mails_seen.c.id)
                    .limit(1)
                ))
                dup = self.conn.execute(
                    dup_stmt, {"mid": mid, "sender": sender, "since": now - self.store.dedupe_window}).first()
            values: dict[str, Any] = dict(
                content_hash=content_hash, message_id=mid, sender=sender, first_seen=now,
                last_attempt=now, attempts=1, outcome="pending", **location,
            )
            if dup is not None:
                values.update(
                    outcome="ignored", reason=f"duplicate delivery of mail #{dup.id}",
                    finished_at=now, duplicate_of=dup.id, ticket_id=dup.ticket_id,
                )
            stmt = self._stmt("claim_insert", lambda: (
                self._insert(mails_seen)
                .on_conflict_do_nothing(index_elements=["content_hash"])
                .returning(mails_seen.c.id)
            ))
            new_id = self.conn.execute(stmt, values).scalar()
            if new_id is not None:
                return MailClaim(
                    mail_id=new_id, is_new=True, already_done=dup is not None,
                    outcome=values["outcome"], attempts=1, ticket_id=values.get("ticket_id"),
                    duplicate_of=values.get("duplicate_of"), reason=values.get("reason"),
                )
            # Lost a race with another claimer of the same bytes: fall through.
            row = self.conn.execute(by_hash, {"content_hash": content_hash}).first()
        changes: dict[str, Any] = {k: v for k, v in location.items() if v not in (None, "")}
        if row.outcome not in FINAL_MAIL_OUTCOMES:
            changes.update(attempts=mails_seen.c.attempts + 1, last_attempt=now)
        if changes:
            self.conn.execute(sa.update(mails_seen).where(mails_seen.c.id == row.id).values(**changes))
        rec = self.mail(row.id)
        return MailClaim(
            mail_id=rec.id, is_new=False, already_done=rec.outcome in FINAL_MAIL_OUTCOMES,
            outcome=rec.outcome, attempts=rec.attempts, ticket_id=rec.ticket_id,
            duplicate_of=rec.duplicate_of, reason=rec.reason,
        )

    def set_mail_outcome(
        self,
        mail_id: int,
        outcome: str,
        *,
        now: dt.datetime,
        reason: str | None = None,
        ticket_id: int | None = None,
    ) -> MailRecord:
        """Record the mail's outcome; ``reason`` is an error class or a
        classification reason, never mail text (patient data, G8)."""
        if outcome not in MAIL_OUTCOMES:
            raise ValueError(f"unknown mail outcome {outcome!r}; expected one of {MAIL_OUTCOMES}")
        values: dict[str, Any] = {"outcome": outcome, "reason": reason}
        values["finished_at"] = now if outcome in FINAL_MAIL_OUTCOMES else None
        if ticket_id is not None:
            values["ticket_id"] = ticket_id
        stmt = self._stmt("mail_outcome", lambda: sa.update(mails_seen)
                          .where(mails_seen.c.id == sa.bindparam("_mail_id")).returning(*mails_seen.c))
        row = self.conn.execute(stmt, {"_mail_id": mail_id, **values}).first()
        if row is None:
            raise LookupError(f"no mail #{mail_id}")
        return _record(MailRecord, row)

    def mail(self, mail_id: int) -> MailRecord:
        stmt = self._stmt("mail", lambda: sa.select(mails_seen).where(mails_seen.c.id == sa.bindparam("id")))
        row = self.conn.execute(stmt, {"id": mail_id}).first()
        if row is None:
            raise LookupError(f"no mail #{mail_id}")
        return _record(MailRecord, row)

    def mail_at(self, source: str, mailbox: str, uidvalidity: int, uid: int) -> MailRecord | None:
        """The mail last seen at this IMAP location (valid only while the
        mailbox's UIDVALIDITY is unchanged, RFC 3501 §2.3.1.1)."""
        row = self._first(
            sa.select(mails_seen)
            .where(
                mails_seen.c.source == source, mails_seen.c.mailbox == mailbox,
                mails_seen.c.uidvalidity == uidvalidity, mails_seen.c.uid == uid,
            )
            .order_by(mails_seen.c.id.desc())
            .limit(1)
        )
        return None if row is None else _record(MailRecord, row)

    def mails_at(self, source: str, mailbox: str, uidvalidity: int, uids: Iterable[int]) -> dict[int, MailRecord]:
        """:meth:`mail_at` for many UIDs of one mailbox in one query:
        UID -> the mail last seen there (UIDs never seen are left out)."""
        wanted = sorted(set(uids))
        if not wanted:
            return {}
        stmt = self._stmt("mails_at", lambda: (
            sa.select(mails_seen)
            .where(
                mails_seen.c.source == sa.bindparam("source"), mails_seen.c.mailbox == sa.bindparam("mailbox"),
                mails_seen.c.uidvalidity == sa.bindparam("uidvalidity"),
                mails_seen.c.uid.in_(sa.bindparam("uids", expanding=True)),
            )
            .order_by(mails_seen.c.id)
        ))
        found: dict[int, MailRecord] = {}
        for start in range(0, len(wanted), 500):
            rows = self.conn.execute(stmt, {"source": source, "mailbox": mailbox, "uidvalidity": uidvalidity,
                                            "uids": wanted[start : start + 500]})
            for row in rows:
                found[row.uid] = _record(MailRecord, row)   # ordered by id: the last one wins
        return found

    def mail_counts(self) -> dict[str, int]:
        """Number of mails per outcome."""
        rows = self.conn.execute(
            sa.select(mails_seen.c.outcome, sa.func.count()).group_by(mails_seen.c.outcome)
        )
        return {outcome: n for outcome, n in rows}

    def mailbox_state(self, source: str, mailbox: str) -> MailboxState | None:
        row = self._first(
            sa.select(mailbox_state).where(
                mailbox_state.c.source == source, mailbox_state.c.mailbox == mailbox
            )
        )
        return None if row is None else _record(MailboxState, row)

    def set_mailbox_state(
        self, source: str, mailbox: str, *, uidvalidity: int | None, last_uid: int | None, now: dt.datetime
    ) -> MailboxState:
        values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": now}
        stmt = self._insert(mailbox_state).values(source=source, mailbox=mailbox, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["source", "mailbox"], set_=values)
        self.conn.execute(stmt)
        state = self.mailbox_state(source, mailbox)
        assert state is not None
        return state

    # -- tickets --------------------------------------------------------------

    def _check_ticket_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(values) - _TICKET_WRITABLE
        if unknown:
            raise TypeError(f"unknown ticket column(s): {', '.join(sorted(unknown))}")
        out = dict(values)
        if "status" in out and out["status"] not in TICKET_STATUSES:
            raise ValueError(f"unknown ticket status {out['status']!r}; expected one of {TICKET_STATUSES}")
        if "fields" in out:
            out["fields"] = dict(out["fields"] or {})
        if "missing" in out:
            out["missing"] = list(out["missing"] or ())
        if "ask_counts" in out:
            out["ask_counts"] = {str(k): int(v) for k, v in (out["ask_counts"] or {}).items()}
        if "writer_addr" in out:
            out["writer_addr"] = _addr(out["writer_addr"])
        return out

    def create_ticket(self, *, now: dt.datetime, status: str = "nouveau", **values: Any) -> TicketRecord:
        """Insert a ticket and give it its readable number (``SAMU-000123``),
        derived from its id in the same transaction: unique under concurrent
        creation, never reused."""
        values = self._check_ticket_values({"status": status, **values})
        values.setdefault("fields", {})
        values.setdefault("missing", [])
        values.setdefault("ask_counts", {})
        stmt = self._stmt("ticket_insert", lambda: sa.insert(tickets).returning(tickets.c.id))
        ticket_id = self.conn.execute(stmt, {"created_at": now, "updated_at": now, **values}).scalar_one()
        number = self._stmt("ticket_number", lambda: sa.update(tickets)
                            .where(tickets.c.id == sa.bindparam("_ticket_id")).returning(*tickets.c))
        row = self.conn.execute(number, {"_ticket_id": ticket_id,
                                         "number": self.store.format_number(ticket_id)}).one()
        return _ticket(row)

    def update_ticket(self, ticket_id: int, *, now: dt.datetime, **changes: Any) -> TicketRecord:
        """Change columns of a ticket (``updated_at`` = ``now``). The caller
        records the matching event (``add_event``): the store does not guess
        who did it."""
        values = self._check_ticket_values(changes)
        stmt = self._stmt("ticket_update", lambda: sa.update(tickets)
                          .where(tickets.c.id == sa.bindparam("_ticket_id")).returning(*tickets.c))
        row = self.conn.execute(stmt, {"_ticket_id": ticket_id, "updated_at": now, **values}).first()
        if row is None:
            raise TicketNotFound(ticket_id)
        return _ticket(row)

    def ticket(self, ticket_id: int, *, for_update: bool = False) -> TicketRecord:
        """The ticket; ``for_update`` locks its row until commit on PostgreSQL
        (read-modify-write of ``fields`` by two workers; SQLite writers are
        already serialised by BEGIN IMMEDIATE)."""
        if for_update:
            stmt = self._stmt("ticket_for_update", lambda: sa.select(tickets)
                              .where(tickets.c.id == sa.bindparam("id")).with_for_update())
        else:
            stmt = self._stmt("ticket", lambda: sa.select(tickets).where(tickets.c.id == sa.bindparam("id")))
        row = self.conn.execute(stmt, {"id": ticket_id}).first()
        if row is None:
            raise TicketNotFound(ticket_id)
        return _ticket(row)

    def ticket_by_number(self, number: str) -> TicketRecord | None:
        """Lookup by the readable number, as written in a subject tag
        (``[samu-123]``, ``SAMU-000123``: case and zero padding ignored)."""
        match = re.fullmatch(r"\s*\[?\s*([A-Za-z]+)-0*(\d+)\s*\]?\s*", number or "")
        if not match or match.group(1).upper() != self.store.ticket_prefix.upper():
            return None
        row = self._first(sa.select(tickets).where(tickets.c.number == self.store.format_number(int(match.group(2)))))
        return None if row is None else _ticket(row)

    def ticket_by_message_ids(self, message_ids: Iterable[str | None]) -> TicketRecord | None:
        """The ticket whose thread holds one of these Message-IDs (a mail we
        received or a reply we queued), trying them in the order given: pass
        In-Reply-To first, then References newest first (RFC 5322 §3.6.4)."""
        wanted = [m for m in (normalize_message_id(v) for v in message_ids) if m]
        if not wanted:
            return None
        found: dict[str, int] = {}
        for table in (ticket_messages, outbox):
            rows = self.conn.execute(
                sa.select(table.c.message_id, table.c.ticket_id)
                .where(table.c.message_id.in_(wanted), table.c.ticket_id.is_not(None))
                .order_by(table.c.id)
            )
            for mid, tid in rows:
                found.setdefault(mid, tid)
        for mid in wanted:
            if mid in found:
                return self.ticket(found[mid])
        return None

    def _ticket_filters(
        self,
        *,
        status: Any = None,
        criticity: Any = None,
        cas: Any = None,
        application: Any = None,
        site_code: Any = None,
        assignee: Any = None,
        overdue_at: dt.datetime | None = None,
        due_before: dt.datetime | None = None,
        waiting_for_writer: bool | None = None,
        open_only: bool = False,
        incomplete: bool | None = None,
        created_since: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        updated_since: dt.datetime | None = None,
    ) -> list[Any]:
        c = tickets.c
        where: list[Any] = []
        for column, value in (
            (c.status, status), (c.criticity, criticity), (c.cas, cas),
            (c.application, application), (c.site_code, site_code), (c.assignee, assignee),
        ):
            values = _many(value)
            if values is not None:
                where.append(column.in_(values))
        not_done = c.status.not_in(TICKET_DONE_STATUSES)
        if overdue_at is not None:
            where += [c.deadline.is_not(None), c.deadline < overdue_at, not_done]
        if due_before is not None:
            where += [c.deadline.is_not(None), c.deadline <= due_before, not_done]
        if waiting_for_writer is not None:
            where.append(c.status == TICKET_WAITING_STATUS if waiting_for_writer else c.status != TICKET_WAITING_STATUS)
        if open_only:
            where.append(not_done)
        if incomplete is not None:
            where.append(c.flagged_incomplete.is_(sa.true() if incomplete else sa.false()))
        if created_since is not None:
            where.append(c.created_at >= created_since)
        if created_before is not None:
            where.append(c.created_at < created_before)
        if updated_since is not None:
            where.append(c.updated_at >= updated_since)
        return where

    def list_tickets(self, *, limit: int | None = None, offset: int = 0, newest_first: bool = False,
                     **filters: Any) -> list[TicketRecord]:
        """Tickets matching every filter given. Filters: ``status``,
        ``criticity``, ``cas``, ``application``, ``site_code``, ``assignee``
        (one value or several); ``overdue_at=now`` (deadline passed, not
        resolved/closed); ``due_before=t``; ``waiting_for_writer``;
        ``open_only``; ``incomplete``; ``created_since``/``created_before``;
        ``updated_since``. Ordered by creation."""
        order = (tickets.c.created_at.desc(), tickets.c.id.desc()) if newest_first else (
            tickets.c.created_at, tickets.c.id)
        stmt = sa.select(tickets).where(*self._ticket_filters(**filters)).order_by(*order).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_ticket(r) for r in self.conn.execute(stmt)]

    def count_tickets(self, **filters: Any) -> int:
        stmt = sa.select(sa.func.count()).select_from(tickets).where(*self._ticket_filters(**filters))
        return int(self.conn.execute(stmt).scalar_one())

    def ticket_counts(self, by: str, **filters: Any) -> dict[Any, int]:
        """Counts grouped by one column (``status``, ``criticity``, ``cas``,
        ``site_code``, ``application``, ``assignee``...), with the same filters."""
        if by not in tickets.c or by in ("fields", "missing", "ask_counts"):
            raise ValueError(f"cannot group tickets by {by!r}")
        column = tickets.c[by]
        stmt = (
            sa.select(column, sa.func.count())
            .where(*self._ticket_filters(**filters))
            .group_by(column)
        )
        return {key: n for key, n in self.conn.execute(stmt)}

    # -- thread: participants, messages, attachments -----------------------------

    def add_participant(self, ticket_id: int, address: str, role: str, *, now: dt.datetime) -> bool:
        """Add an address of the thread (role ``from``/``to``/``cc``); False
        when it was already there (its first role is kept)."""
        address = _addr(address)
        if not address:
            return False
        stmt = self._stmt("participant_insert", lambda: (
            self._insert(ticket_participants)
            .on_conflict_do_nothing(index_elements=["ticket_id", "address"])
        ))
        params = {"ticket_id": ticket_id, "address": address, "role": role, "added_at": now}
        return self.conn.execute(stmt, params).rowcount == 1

    def participants(self, ticket_id: int) -> list[Participant]:
        rows = self.conn.execute(
            sa.select(ticket_participants)
            .where(ticket_participants.c.ticket_id == ticket_id)
            .order_by(ticket_participants.c.id)
        )
        return [_record(Participant, r) for r in rows]

    def is_participant(self, ticket_id: int, address: str) -> bool:
        row = self._first(
            sa.select(ticket_participants.c.id).where(
                ticket_participants.c.ticket_id == ticket_id, ticket_participants.c.address == _addr(address)
            )
        )
        return row is not None

    def add_message(
        self,
        ticket_id: int,
        *,
        direction: str,
        at: dt.datetime,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: Iterable[str] = (),
        sender: str = "",
        subject: str = "",
        body_text: str = "",
        new_text: str = "",
        mail_id: int | None = None,
        outbox_id: int | None = None,
    ) -> MessageRecord:
        """Record a mail of the thread: ``direction`` ``in`` (received; body
        kept unmasked, the store is where originals live) or ``out``."""
        if direction not in MESSAGE_DIRECTIONS:
            raise ValueError(f"direction must be one of {MESSAGE_DIRECTIONS}")
        refs = [r for r in (normalize_message_id(x) for x in references) if r]
        stmt = self._stmt("message_insert", lambda: sa.insert(ticket_messages).returning(*ticket_messages.c))
        row = self.conn.execute(stmt, dict(  # noqa: C408 (column names read better as keywords)
            ticket_id=ticket_id, direction=direction, at=at,
            message_id=normalize_message_id(message_id), in_reply_to=normalize_message_id(in_reply_to),
            references=refs, sender=_addr(sender), subject=subject, body_text=body_text,
            new_text=new_text, mail_id=mail_id, outbox_id=outbox_id,
        )).one()
        return _record(MessageRecord, row, references=tuple(row._mapping["references"] or ()))

    def messages(self, ticket_id: int, *, message_row_id: int | None = None) -> list[MessageRecord]:
        stmt = sa.select(ticket_messages).where(ticket_messages.c.ticket_id == ticket_id)
        if message_row_id is not None:
            stmt = stmt.where(ticket_messages.c.id == message_row_id)
        rows = self.conn.execute(stmt.order_by(ticket_messages.c.at, ticket_messages.c.id))
        return [_record(MessageRecord, r, references=tuple(r._mapping["references"] or ())) for r in rows]

    def add_attachment(
        self,
        ticket_id: int,
        *,
        filename: str,
        content_type: str,
        now: dt.datetime,
        content: bytes | None = None,
        size: int | None = None,
        message_row_id: int | None = None,
    ) -> AttachmentRecord:
        """Keep an attachment; bytes over ``store.attachment_cap`` are dropped
        (name, type and size kept). The file name is only a label, never a
        path (reliability §3.5)."""
        if size is None:
            size = len(content) if content is not None else 0
        keep = content if content is not None and len(content) <= self.store.attachment_cap else None
        stmt = self._stmt("attachment_insert", lambda: sa.insert(attachments).returning(
            *(col for col in attachments.columns if col.name != "content")))
        row = self.conn.execute(stmt, dict(  # noqa: C408 (column names read better as keywords)
            ticket_id=ticket_id, message_row_id=message_row_id, filename=filename or "",
            content_type=content_type or "", size=size, content=keep, added_at=now,
        )).one()
        return _record(AttachmentRecord, row, stored=keep is not None)

    def attachments(self, ticket_id: int) -> list[AttachmentRecord]:
        a = attachments.c
        rows = self.conn.execute(
            sa.select(*(col for col in attachments.columns if col.name != "content"),
                      a.content.is_not(None).label("stored"))
            .where(a.ticket_id == ticket_id)
            .order_by(a.id)
        )
        return [_record(AttachmentRecord, r, stored=bool(r._mapping["stored"])) for r in rows]

    def attachment_content(self, attachment_id: int) -> bytes | None:
        value = self.conn.execute(
            sa.select(attachments.c.content).where(attachments.c.id == attachment_id)
        ).scalar()
        return None if value is None else bytes(value)

    # -- history ----------------------------------------------------------------

    def add_event(
        self,
        ticket_id: int | None,
        type: str,
        *,
        at: dt.datetime,
        actor: str = "mailbot",
        data: Mapping[str, Any] | None = None,
    ) -> EventRecord:
        """Append to the history (the database refuses UPDATE/DELETE on it).
        ``actor``: ``mailbot``, a staff name, or the writer's address."""
        stmt = self._stmt("event_insert", lambda: sa.insert(events).returning(*events.c))
        row = self.conn.execute(
            stmt, {"ticket_id": ticket_id, "at": at, "actor": actor, "type": type, "data": dict(data or {})}
        ).one()
        return _record(EventRecord, row, data=dict(row.data))

    def events(
        self,
        ticket_id: int | None = None,
        *,
        since: dt.datetime | None = None,
        types: Iterable[str] | None = None,
    ) -> list[EventRecord]:
        """History in the order it was written (ties on ``at`` keep that order)."""
        stmt = sa.select(events)
        if ticket_id is not None:
            stmt = stmt.where(events.c.ticket_id == ticket_id)
        if since is not None:
            stmt = stmt.where(events.c.at >= since)
        if types is not None:
            stmt = stmt.where(events.c.type.in_(list(types)))
        rows = self.conn.execute(stmt.order_by(events.c.id))
        return [_record(EventRecord, r, data=dict(r.data)) for r in rows]

    # -- outbox -----------------------------------------------------------------

    def enqueue_outbox(
        self,
        *,
        cause: str,
        purpose: str,
        message_id: str,
        to_addr: str,
        raw: bytes,
        now: dt.datetime,
        subject: str = "",
        ticket_id: int | None = None,
        mail_id: int | None = None,
    ) -> tuple[OutboxRow, bool]:
        """Queue a fully built mail (``raw`` RFC 5322 bytes carrying
        ``message_id``). ``cause`` names what triggered it (e.g.
        ``mail:<id>`` for an incoming mail, ``event:<id>`` for a staff
        action); at most one row per ``(cause, purpose)``: the second call
        returns the existing row and ``False``, and its raw is discarded."""
        mid = normalize_message_id(message_id)
        if not mid:
            raise ValueError("an outgoing mail needs its Message-ID")
        stmt = self._stmt("outbox_insert", lambda: (
            self._insert(outbox)
            .on_conflict_do_nothing(index_elements=["cause", "purpose"])
            .returning(*outbox.c)
        ))
        new = self.conn.execute(stmt, dict(  # noqa: C408 (column names read better as keywords)
            cause=cause, purpose=purpose, message_id=mid, to_addr=_addr(to_addr), subject=subject,
            raw=bytes(raw), status="pending", attempts=0, next_attempt_at=now, created_at=now,
            ticket_id=ticket_id, mail_id=mail_id,
        )).first()
        if new is not None:
            return _outbox(new), True
        row = self._first(sa.select(outbox).where(outbox.c.cause == cause, outbox.c.purpose == purpose))
        return _outbox(row), False

    def outbox_row(self, outbox_id: int) -> OutboxRow:
        stmt = self._stmt("outbox_row", lambda: sa.select(outbox).where(outbox.c.id == sa.bindparam("id")))
        row = self.conn.execute(stmt, {"id": outbox_id}).first()
        if row is None:
            raise LookupError(f"no outbox row #{outbox_id}")
        return _outbox(row)

    def outbox_by_message_id(self, message_id: str) -> OutboxRow | None:
        """Our queued mail with this Message-ID (to mark a bounced reply)."""
        row = self._first(sa.select(outbox).where(outbox.c.message_id == normalize_message_id(message_id)))
        return None if row is None else _outbox(row)

    def _due(self, now: dt.datetime) -> Any:
        # ``sending`` rows whose lease ran out: the worker died mid-send.
        return sa.and_(outbox.c.status.in_(("pending", "sending")), outbox.c.next_attempt_at <= now)

    def due_outbox(self, now: dt.datetime, *, limit: int = 100) -> list[OutboxRow]:
        """Rows to send now (pending and due, or an expired ``sending`` lease)."""
        rows = self.conn.execute(
            sa.select(outbox).where(self._due(now)).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
        )
        return [_outbox(r) for r in rows]

    def claim_outbox(
        self, now: dt.datetime, *, limit: int = 10, lease: dt.timedelta = dt.timedelta(minutes=5)
    ) -> list[OutboxRow]:
        """Take due rows for sending: status ``sending`` until ``now + lease``
        (longer than the SMTP timeout). Commit before sending. Two workers
        never take the same row (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
        SQLite writers are serialised)."""
        stmt = (
            sa.select(outbox.c.id)
            .where(self._due(now))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        if self.store.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(self.conn.execute(stmt).scalars())
        if not ids:
            return []
        self.conn.execute(
            sa.update(outbox).where(outbox.c.id.in_(ids)).values(status="sending", next_attempt_at=now + lease)
        )
        rows = self.conn.execute(sa.select(outbox).where(outbox.c.id.in_(ids)).order_by(outbox.c.id))
        return [_outbox(r) for r in rows]

    def mark_outbox_sent(self, outbox_id: int, *, now: dt.datetime) -> OutboxRow:
        self.conn.execute(
            sa.update(outbox).where(outbox.c.id == outbox_id).values(
                status="sent", sent_at=now, attempts=outbox.c.attempts + 1, last_error=None
            )
        )
        return self.outbox_row(outbox_id)

    def schedule_outbox_retry(self, outbox_id: int, *, now: dt.datetime, error: str) -> OutboxRow:
        """A temporary failure (4xx, refused, timeout): retry after the
        back-off of :class:`RetryPolicy`; past its ``max_age`` the row is
        ``failed`` (the caller alerts). ``error``: a class, not mail text."""
        row = self.outbox_row(outbox_id)
        attempts = row.attempts + 1
        policy = self.store.retry
        if now - row.created_at >= policy.max_age:
            values: dict[str, Any] = {"status": "failed", "last_error": f"{error} (gave up after {attempts} attempts)"}
        else:
            values = {"status": "pending", "next_attempt_at": now + policy.delay(attempts), "last_error": error}
        self.conn.execute(sa.update(outbox).where(outbox.c.id == outbox_id).values(attempts=attempts, **values))
        return self.outbox_row(outbox_id)

    def mark_outbox_failed(self, outbox_id: int, *, now: dt.datetime, error: str) -> OutboxRow:
        """A permanent failure: 5xx at send time, or a bounce received later
        for a row already ``sent`` (then the attempt count is kept)."""
        row = self.outbox_row(outbox_id)
        attempts = row.attempts + (1 if row.status in ("pending", "sending") else 0)
        self.conn.execute(
            sa.update(outbox).where(outbox.c.id == outbox_id).values(
                status="failed", attempts=attempts, last_error=error
            )
        )
        return self.outbox_row(outbox_id)

    def reply_times_to(self, address: str, *, since: dt.datetime) -> list[dt.datetime]:
        """When we queued mails to this address since ``since`` (per-sender
        reply rate limits, reliability §2.5), oldest first."""
        stmt = self._stmt("reply_times", lambda: (
            sa.select(outbox.c.created_at)
            .where(outbox.c.to_addr == sa.bindparam("to_addr"),
                   outbox.c.created_at >= sa.bindparam("since", type_=outbox.c.created_at.type))
            .order_by(outbox.c.created_at)
        ))
        rows = self.conn.execute(stmt, {"to_addr": _addr(address), "since": since})
        return [r[0] for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        rows = self.conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status))
        return {status: n for status, n in rows}
