"""Database schema of the persistent store (SQLAlchemy Core tables).

Adapter layer: imports SQLAlchemy; nothing in the pure core may import this
module. The tables are the source of truth for Alembic's ``compare_metadata``
check in the tests; the migrations in ``mailbot/migrations/versions`` create
them explicitly (a migration must never change when this file changes).

Conventions:
- every timestamp is a timezone-aware UTC ``datetime`` (``UTCDateTime``):
  ``timestamptz`` on PostgreSQL, an ISO text on SQLite stored as naive UTC so
  that text comparison is time comparison;
- JSON is ``JSONB`` on PostgreSQL and JSON text on SQLite;
- vocabularies (statuses, outcomes) are checked in Python, not with CHECK
  constraints, so adding a value needs no table rebuild on SQLite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

UTC = dt.timezone.utc

# --- vocabularies -----------------------------------------------------------

#: Outcome of one incoming mail (reliability §1.5: every mail ends in exactly
#: one recorded outcome; ``pending`` = claimed, not finished yet).
MAIL_OUTCOMES = ("pending", "processed", "ignored", "quarantined")
FINAL_MAIL_OUTCOMES = ("processed", "ignored", "quarantined")

#: Ticket statuses of the support desk (issue 4), in French as staff see them.
TICKET_STATUSES = (
    "nouveau",
    "en attente d'informations",
    "à traiter",
    "pris en charge",
    "escaladé",
    "résolu",
    "clos",
    "incomplet",
)
#: Statuses for which no deadline runs any more.
TICKET_DONE_STATUSES = ("résolu", "clos")
#: Waiting for the person who wrote (our question is unanswered).
TICKET_WAITING_STATUS = "en attente d'informations"

#: ``sending`` is a lease taken by the sender worker (reliability §1.5 rule 8):
#: a row stuck in it after a crash is re-sent with the same Message-ID.
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")

MESSAGE_DIRECTIONS = ("in", "out")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both databases.

    Naive datetimes are refused: the service passes its clock's ``now`` and a
    naive value would silently mean "local time" on one machine and UTC on
    another.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no time zones: store naive UTC text, compared as text.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# One row per distinct incoming mail (by content hash). Idempotency key of
# reliability §1.5 rule 3: the sha256 of the raw bytes is unique; the
# Message-ID is indexed but NOT unique (the same Message-ID legitimately comes
# twice through two aliases with different Received headers, and a forged one
# must not suppress someone else's mail); the IMAP location is recorded but is
# meaningless after a UIDVALIDITY change (RFC 3501 §2.3.1.1).
mails_seen = sa.Table(
    "mails_seen",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("message_id", sa.String(998), nullable=True, index=True),
    sa.Column("sender", sa.String(320), nullable=False, server_default=""),
    sa.Column("source", sa.String(200), nullable=False, server_default=""),
    sa.Column("mailbox", sa.String(200), nullable=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=True),
    sa.Column("uid", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_attempt", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("mails_seen.id"), nullable=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=True, index=True),
    sa.Index("ix_mails_seen_source_mailbox_uidvalidity_uid", "source", "mailbox", "uidvalidity", "uid"),
    sqlite_autoincrement=True,
)

# Last UIDVALIDITY seen per mailbox: a change means every stored UID is void
# and the mailbox is scanned again (content hashes prevent duplicates).
mailbox_state = sa.Table(
    "mailbox_state",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("mailbox", sa.String(200), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=True),
    sa.Column("last_uid", sa.BigInteger, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # Set from the id in the creating transaction; never reused because the
    # id is never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL).
    sa.Column("number", sa.String(32), nullable=True, unique=True),
    sa.Column("status", sa.String(40), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=True),
    sa.Column("cas", sa.String(1), nullable=True),
    sa.Column("application", sa.String(40), nullable=True),
    sa.Column("criticity", sa.Integer, nullable=True),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("site_code", sa.String(20), nullable=True, index=True),
    sa.Column("site_name", sa.String(200), nullable=True),
    sa.Column("writer_addr", sa.String(320), nullable=False, server_default=""),
    sa.Column("writer_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("team", sa.String(100), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deadline", UTCDateTime, nullable=True, index=True),
    sa.Column("filed_at", UTCDateTime, nullable=True),
    sa.Column("taken_at", UTCDateTime, nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("last_question_at", UTCDateTime, nullable=True),
    sa.Column("flagged_incomplete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reply_undeliverable", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("linked_ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=True),
    sa.Column("thread_subject", sa.Text, nullable=False, server_default=""),
    sa.Column("fields", json_type(), nullable=False),
    sa.Column("missing", json_type(), nullable=False),
    sa.Column("ask_counts", json_type(), nullable=False),
    sqlite_autoincrement=True,
)

# Every address seen in the thread's From/To/Cc (policy §8: only a
# participant's answer continues the ticket).
ticket_participants = sa.Table(
    "ticket_participants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("ticket_id", "address", name="uq_ticket_participants_ticket_id_address"),
)

# Each mail in and each reply out. Threading is a lookup of the
# In-Reply-To/References ids (RFC 5322 §3.6.4) in ``message_id``.
ticket_messages = sa.Table(
    "ticket_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False, index=True),
    sa.Column("direction", sa.String(3), nullable=False),
    sa.Column("message_id", sa.String(998), nullable=True, index=True),
    sa.Column("in_reply_to", sa.String(998), nullable=True),
    sa.Column("references", json_type(), nullable=False),
    sa.Column("sender", sa.String(320), nullable=False, server_default=""),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("body_text", sa.Text, nullable=False, server_default=""),
    sa.Column("new_text", sa.Text, nullable=False, server_default=""),
    sa.Column("mail_id", sa.Integer, sa.ForeignKey("mails_seen.id"), nullable=True),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id"), nullable=True),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False, index=True),
    sa.Column("message_row_id", sa.Integer, sa.ForeignKey("ticket_messages.id"), nullable=True),
    sa.Column("filename", sa.Text, nullable=False, server_default=""),
    sa.Column("content_type", sa.String(200), nullable=False, server_default=""),
    sa.Column("size", sa.BigInteger, nullable=False),
    # NULL when the part was larger than the store's cap (size still recorded).
    sa.Column("content", sa.LargeBinary, nullable=True),
    sa.Column("added_at", UTCDateTime, nullable=False),
)

# Append-only history: the migrations add triggers refusing UPDATE and DELETE.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("data", json_type(), nullable=False),
    sa.Index("ix_events_ticket_id_id", "ticket_id", "id"),
    sqlite_autoincrement=True,
)

# Replies to send. ``(cause, purpose)`` is unique: at most one reply of each
# purpose per incoming mail, even when the mail is processed again after a
# crash (reliability G4). ``message_id`` and ``raw`` are fixed at creation so
# a re-send in the RFC 1047 window carries the same Message-ID.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=True, index=True),
    sa.Column("mail_id", sa.Integer, sa.ForeignKey("mails_seen.id"), nullable=True),
    sa.Column("cause", sa.String(998), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(998), nullable=False, unique=True),
    sa.Column("to_addr", sa.String(320), nullable=False),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("cause", "purpose", name="uq_outbox_cause_purpose"),
    sa.Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_outbox_to_addr_created_at", "to_addr", "created_at"),
)
