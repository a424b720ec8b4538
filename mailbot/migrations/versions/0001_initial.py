"""Initial schema: mails seen, mailbox state, tickets, their thread, events, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Spelled out in full (not imported from ``store_schema``) so that this
revision keeps creating the same tables whatever later code looks like.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("number", sa.String(32), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=True),
        sa.Column("cas", sa.String(1), nullable=True),
        sa.Column("application", sa.String(40), nullable=True),
        sa.Column("criticity", sa.Integer, nullable=True),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("site_code", sa.String(20), nullable=True),
        sa.Column("site_name", sa.String(200), nullable=True),
        sa.Column("writer_addr", sa.String(320), nullable=False, server_default=""),
        sa.Column("writer_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("team", sa.String(100), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("deadline", True),
        _ts("filed_at", True),
        _ts("taken_at", True),
        _ts("resolved_at", True),
        _ts("closed_at", True),
        _ts("last_question_at", True),
        sa.Column("flagged_incomplete", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reply_undeliverable", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("linked_ticket_id", sa.Integer, nullable=True),
        sa.Column("thread_subject", sa.Text, nullable=False, server_default=""),
        _json("fields"),
        _json("missing"),
        _json("ask_counts"),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.UniqueConstraint("number", name="uq_tickets_number"),
        sa.ForeignKeyConstraint(["linked_ticket_id"], ["tickets.id"], name="fk_tickets_linked_ticket_id_tickets"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_index("ix_tickets_site_code", "tickets", ["site_code"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_index("ix_tickets_deadline", "tickets", ["deadline"])

    op.create_table(
        "mails_seen",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("sender", sa.String(320), nullable=False, server_default=""),
        sa.Column("source", sa.String(200), nullable=False, server_default=""),
        sa.Column("mailbox", sa.String(200), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=True),
        sa.Column("uid", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("first_seen"),
        _ts("last_attempt"),
        _ts("finished_at", True),
        sa.Column("duplicate_of", sa.Integer, nullable=True),
        sa.Column("ticket_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mails_seen"),
        sa.UniqueConstraint("content_hash", name="uq_mails_seen_content_hash"),
        sa.ForeignKeyConstraint(["duplicate_of"], ["mails_seen.id"], name="fk_mails_seen_duplicate_of_mails_seen"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_mails_seen_ticket_id_tickets"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mails_seen_message_id", "mails_seen", ["message_id"])
    op.create_index("ix_mails_seen_ticket_id", "mails_seen", ["ticket_id"])
    op.create_index(
        "ix_mails_seen_source_mailbox_uidvalidity_uid", "mails_seen", ["source", "mailbox", "uidvalidity", "uid"]
    )

    op.create_table(
        "mailbox_state",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("mailbox", sa.String(200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=True),
        sa.Column("last_uid", sa.BigInteger, nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("source", "mailbox", name="pk_mailbox_state"),
    )

    op.create_table(
        "ticket_participants",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        _ts("added_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_participants"),
        sa.UniqueConstraint("ticket_id", "address", name="uq_ticket_participants_ticket_id_address"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_ticket_participants_ticket_id_tickets"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=True),
        sa.Column("mail_id", sa.Integer, nullable=True),
        sa.Column("cause", sa.String(998), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("to_addr", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at"),
        sa.Column("last_error", sa.Text, nullable=True),
        _ts("created_at"),
        _ts("sent_at", True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("cause", "purpose", name="uq_outbox_cause_purpose"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_outbox_ticket_id_tickets"),
        sa.ForeignKeyConstraint(["mail_id"], ["mails_seen.id"], name="fk_outbox_mail_id_mails_seen"),
    )
    op.create_index("ix_outbox_ticket_id", "outbox", ["ticket_id"])
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_to_addr_created_at", "outbox", ["to_addr", "created_at"])

    op.create_table(
        "ticket_messages",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("in_reply_to", sa.String(998), nullable=True),
        _json("references"),
        sa.Column("sender", sa.String(320), nullable=False, server_default=""),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        _ts("at"),
        sa.Column("body_text", sa.Text, nullable=False, server_default=""),
        sa.Column("new_text", sa.Text, nullable=False, server_default=""),
        sa.Column("mail_id", sa.Integer, nullable=True),
        sa.Column("outbox_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ticket_messages"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_ticket_messages_ticket_id_tickets"),
        sa.ForeignKeyConstraint(["mail_id"], ["mails_seen.id"], name="fk_ticket_messages_mail_id_mails_seen"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name="fk_ticket_messages_outbox_id_outbox"),
    )
    op.create_index("ix_ticket_messages_ticket_id", "ticket_messages", ["ticket_id"])
    op.create_index("ix_ticket_messages_message_id", "ticket_messages", ["message_id"])

    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("message_row_id", sa.Integer, nullable=True),
        sa.Column("filename", sa.Text, nullable=False, server_default=""),
        sa.Column("content_type", sa.String(200), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
        _ts("added_at"),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_attachments_ticket_id_tickets"),
        sa.ForeignKeyConstraint(
            ["message_row_id"], ["ticket_messages.id"], name="fk_attachments_message_row_id_ticket_messages"
        ),
    )
    op.create_index("ix_attachments_ticket_id", "attachments", ["ticket_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=True),
        _ts("at"),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        _json("data"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name="fk_events_ticket_id_tickets"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_ticket_id_id", "events", ["ticket_id", "id"])

    # The history is append-only, enforced by the database itself so that no
    # code path (nor a hurried SQL session) can rewrite it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION mailbot_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'events are append-only';
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION mailbot_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
        op.execute("DROP FUNCTION IF EXISTS mailbot_events_append_only()")
    for name in (
        "events",
        "attachments",
        "ticket_messages",
        "outbox",
        "ticket_participants",
        "mailbox_state",
        "mails_seen",
        "tickets",
    ):
        op.drop_table(name)
