"""The unit of work: one incoming mail -> one recorded outcome, one ticket effect, at most one reply.

Role: the service layer between the pure core (parsing, triage, dialogue,
compose, loops) and the adapters (mail source, store, mail sender). It carries
out what the core decides, in the order that makes the guarantees of
reliability §0 hold (G1 nothing lost, G2 idempotent effects, G3 poison mail
cannot block the queue, G4 at most one reply per incoming mail, G5 SMTP
outages delay replies, never drop them):

1. **claim** the mail in its own committed transaction (content hash,
   Message-ID, source location). A mail already finished (the bot crashed
   between its commit and its MOVE, or a UIDVALIDITY change shows the same
   bytes again) is only filed away again; a mail claimed more than
   ``max_attempts`` times (it killed the bot each time) is quarantined
   without being parsed again (Mailman's ``MAX_BAK_COUNT``).
2. **parse, find the thread, triage, decide** (policy §6, §8): In-Reply-To /
   References against every Message-ID of the store (received and sent),
   else our subject tag ``[SAMU-000123]``; only a participant continues a
   ticket (``dialogue.thread_decision``).
3. **one transaction** writes the ticket, its participants, the message, the
   attachments, the history events, the outbox rows (the reply, a staff
   alert) and the mail's outcome. A reply's Message-ID is derived from the
   mail's content hash and the reply's purpose, and the outbox allows one
   row per (cause, purpose): processing the same mail again can never queue
   a second, different reply.
4. **move** the mail out of the inbox only after that commit (IMAP MOVE,
   Maildir rename). A poll moves the finished mails of its batch together
   at the end of the batch (``MailSource.move_many``: one ``UID MOVE`` per
   folder); a crash before that move leaves them in the inbox, where the
   next poll finds them already done (step 1) and only moves them.
5. The **outbox** is sent separately (:meth:`Service.send_outbox`): rows are
   leased and committed before SMTP, marked sent after the server's 250. A
   crash between the two re-sends the same bytes with the same Message-ID
   (the RFC 1047 window, the only duplicate allowed).

Any error while handling one mail quarantines that mail (outcome + folder)
and the loop goes on with the next one; a store that cannot be reached stops
the poll without quarantining anything (:class:`TransientError`), and a
mailbox error stops it too (the mail stays in the inbox for the next poll).

Named crash points (``after_fetch``, ``after_commit``, ``after_move``,
``after_outbox_commit_before_send``, ``after_send_before_mark``) call the
``crash`` hook (:func:`mailbot.faults.crash_point`), for the fault tests.

Import rule: the standard library (``email`` to rebuild queued messages,
``hashlib``, ``logging``), :mod:`mailbot.ports`, :mod:`mailbot.model`,
:mod:`mailbot.errors`, the pure core modules and :mod:`mailbot.logsetup`'s
``mail_logger``. No I/O library: the store, the source and the sender are
handed in (see :mod:`mailbot.app`), and time comes from the ``clock`` given.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

from mailbot.compose import (
    clean_header_text,
    clean_subject,
    make_message_id,
    render_reply,
)
from mailbot.deadlines import deadline
from mailbot.titles import make_title
from mailbot.dialogue import (
    FILED_STATUSES,
    WAITING,
    Decision,
    TicketState,
    decide_followup,
    decide_new,
    decide_reminder,
    facts_of,
    thread_decision,
)
from mailbot.dialogue import Settings as DialogueSettings
from mailbot.errors import (
    MailbotError,
    PermanentDeliveryError,
    RuleFileError,
    TransientDeliveryError,
)
from mailbot.logsetup import mail_logger
from mailbot.loops import may_reply, reply_address
from mailbot.masking import mask_text
from mailbot.model import ParsedMail, Verdict
from mailbot.parsing import parse_message
from mailbot.ports import (
    IGNORED,
    PROCESSED,
    QUARANTINE,
    MailSender,
    MailSource,
    RawMail,
)

__all__ = ["PollReport", "Service", "ServiceSettings", "TransientError"]

log = logging.getLogger(__name__)

UTC = dt.UTC

#: Mail outcomes (store vocabulary) -> outcome keys of ``MailSource.move``.
FOLDER_OF = {"processed": PROCESSED, "ignored": IGNORED, "quarantined": QUARANTINE}

#: Verdict kinds that never make a ticket of their own: filed in "Ignoré".
_IGNORED_KINDS = ("autoreply", "bounce", "noise")

# Cheap header reads for the claim (before the full parse): first 64 KB only.
_HEAD_LIMIT = 65536
_MSGID_HEADER = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{1,900}>)", re.IGNORECASE | re.MULTILINE)
_FROM_HEADER = re.compile(rb"^from:[ \t]*([^\r\n]{0,900})", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_BARE = re.compile(r"([^\s<>\"',;:]+@[^\s<>\"',;:]+)")
# In a DSN (RFC 3464) the returned message's id sits in an Original-Message-ID
# or Message-ID line of the message/rfc822(-headers) part; some MTAs (qmail,
# Exim) quote the returned headers as plain text in the body instead.
_RETURNED_IDS = re.compile(rb"^[ \t>]*(?:original-)?message-id:[ \t]*(<[^<>\s]{1,900}>)", re.IGNORECASE | re.MULTILINE)
_DSN_FAILED = re.compile(rb"^action:[ \t]*failed", re.IGNORECASE | re.MULTILINE)
_DSN_DELAYED = re.compile(rb"^action:[ \t]*delayed", re.IGNORECASE | re.MULTILINE)


class TransientError(MailbotError):
    """The store (or another piece of infrastructure) is unavailable: stop
    now, try again later. Nothing was quarantined and nothing was moved."""


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs of the configuration (built by :mod:`mailbot.app`)."""

    bot_address: str = "mailbot@localhost"
    from_name: str = "Support informatique SAMU"
    own_addresses: frozenset[str] = frozenset({"mailbot@localhost"})
    message_id_domain: str = "localhost"
    ticket_prefix: str = "SAMU"
    source_name: str = "maildir"              # names the mailbox in the store (source column)
    max_attempts: int = 3                     # [poll] max_attempts
    poll_batch: int = 200                     # mails handled per poll_once at most
    replies_per_hour: int = 5                 # [dialogue] replies_per_sender_per_hour
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    staff_alert_to: tuple[str, ...] = ()      # [staff] alert_to
    outbox_lease: dt.timedelta = dt.timedelta(minutes=2)   # > the SMTP timeout
    outbox_batch: int = 100
    deadlines: Any = None                     # [staff] deadlines (None: the policy's 24/72/120 h)
    timezone: Any = None                      # [staff] timezone, for business hours
    sites: Any = None                         # mailbot.sites.Sites from rules/sites.toml


@dataclass
class PollReport:
    """Counts of one poll, per outcome."""

    fetched: int = 0
    processed: int = 0
    ignored: int = 0
    quarantined: int = 0
    already_done: int = 0
    replies_queued: int = 0

    def count(self, outcome: str) -> None:
        if outcome == "already_done":
            self.already_done += 1
        elif outcome in ("processed", "ignored", "quarantined"):
            setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def progressed(self) -> int:
        """Mails that got an outcome (or were filed away) in this poll."""
        return self.processed + self.ignored + self.quarantined + self.already_done


@dataclass
class _Result:
    outcome: str                 # processed | ignored | quarantined
    ticket_id: int | None = None
    reason: str | None = None
    replies: int = 0
    action: str = ""


class _Quarantine(Exception):
    """Internal: this mail goes to quarantine, with a reason (not mail text)."""


def _addr_of(value: str) -> str:
    m = _ANGLE.search(value) or _BARE.search(value)
    return m.group(1).strip().lower() if m else ""


def _quick_headers(raw: bytes) -> tuple[str | None, str]:
    """(Message-ID, sender address) read cheaply from the header block, for
    the claim; the full parse comes after the claim is committed."""
    end = raw.find(b"\r\n\r\n", 0, _HEAD_LIMIT)
    if end < 0:
        end = raw.find(b"\n\n", 0, _HEAD_LIMIT)
    head = raw[: end if end >= 0 else _HEAD_LIMIT]
    mid = _MSGID_HEADER.search(head)
    frm = _FROM_HEADER.search(head)
    message_id = mid.group(1).decode("ascii", "replace") if mid else None
    sender = _addr_of(frm.group(1).decode("utf-8", "replace")) if frm else ""
    return message_id, sender


class Service:
    """Carries out the bot's work: poll, outbox, reminders, timeouts, stdin ingest.

    ``store`` is a :class:`mailbot.adapters.store.Store` (duck-typed: the
    service only calls ``transaction()`` and the ``Tx`` methods).
    ``store_errors`` are the exception classes that mean "the database is
    unavailable" (SQLAlchemy's ``OperationalError``...), given by the
    composition root so this module imports no database library.
    """

    def __init__(
        self,
        engine: Any,
        store: Any,
        source: MailSource,
        sender: MailSender,
        settings: ServiceSettings,
        clock: Callable[[], dt.datetime],
        crash: Callable[..., None] | None = None,
        store_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        from mailbot import faults

        self.engine = engine
        self.rulebook = engine.rulebook
        self.store = store
        self.source = source
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.crash = crash if crash is not None else faults.crash_point
        self.store_errors = store_errors
        self._tag = re.compile(rf"\[\s*{re.escape(settings.ticket_prefix)}-0*(\d{{1,9}})\s*\]", re.IGNORECASE)
        self._uidvalidity_seen: dict[str, int] = {}
        # send_outbox may run in the poll thread (right after a poll) and in
        # the outbox job's thread: the lease in the store keeps them apart,
        # this lock only avoids two threads racing for the same SMTP window.
        self._send_lock = threading.Lock()

    # ------------------------------------------------------------------ time

    def _now(self) -> dt.datetime:
        now = self.clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the service clock must give aware datetimes")
        return now.astimezone(UTC)

    def _is_store_error(self, exc: BaseException) -> bool:
        return bool(self.store_errors) and isinstance(exc, self.store_errors)

    def _tx(self, readonly: bool = False):
        return self.store.transaction(readonly=readonly)

    # ================================================================ polling

    def poll_once(self, stop: threading.Event | None = None) -> PollReport:
        """Handle the mails waiting in the inbox (at most ``poll_batch``).

        Raises :class:`TransientError` when the store is unavailable and
        ``MailboxError`` when the mailbox is; both leave every unfinished mail
        in the inbox for the next poll.
        """
        report = PollReport()
        # Let the mailbox catch up first: an IMAP server reports messages
        # appended by other sessions only at a command boundary (RFC 3501
        # §7.3.1: EXISTS comes after a command), so a UID SEARCH on a long
        # open session can miss the newest mail; the cheap check of
        # wait_for_new(0) is that boundary. (The adapter should NOOP before
        # its SEARCH; until then, this keeps mail from waiting a whole poll.)
        self.source.wait_for_new(0)
        mails = list(self.source.fetch_new(self.settings.poll_batch))
        report.fetched = len(mails)
        mails = self._retries_last(mails)
        # Mails whose outcome is committed, waiting for the one batched move
        # at the end of the batch (one IMAP round trip per folder instead of
        # one per mail). A crash before that move leaves them in the inbox:
        # the next poll finds them already done and only moves them.
        moves: list[tuple[RawMail, str]] = []
        try:
            for raw in mails:
                if stop is not None and stop.is_set():
                    log.info("stop requested: leaving the rest of the batch in the inbox")
                    break
                self._check_uidvalidity(raw)
                result = self._run_unit(raw.raw, raw, move=True, moves=moves)
                report.count(result.outcome)
                report.replies_queued += result.replies
        except BaseException:
            # The poll stops (store or mailbox unavailable, rule files to
            # fix...): still file away what is committed, if the mailbox lets
            # us, and report the error that stopped the poll.
            try:
                self._move_batch(moves)
            except Exception as exc:  # noqa: BLE001 - the original error matters more
                log.warning("could not move the finished mails of the batch (%s); the next poll will",
                            type(exc).__name__)
            raise
        self._move_batch(moves)
        return report

    def _move_batch(self, moves: list[tuple[RawMail, str]]) -> None:
        """Move the finished mails of a batch, one ``move_many`` per folder,
        then pass the ``after_move`` crash point for each."""
        if not moves:
            return
        by_folder: dict[str, list[RawMail]] = {}
        for raw, folder in moves:
            by_folder.setdefault(folder, []).append(raw)
        move_many = getattr(self.source, "move_many", None)
        for folder, raws in by_folder.items():
            if move_many is not None:
                move_many(raws, folder)
            else:   # a source without batched moves: one at a time
                for raw in raws:
                    self.source.move(raw, folder)
        moves.clear()
        for raws in by_folder.values():
            for raw in raws:
                self.crash("after_move", raw.raw)

    def drain(self, stop: threading.Event | None = None, max_polls: int = 10_000) -> PollReport:
        """Poll until the inbox is empty (or nothing moves any more)."""
        total = PollReport()
        for _ in range(max_polls):
            report = self.poll_once(stop)
            for name in ("fetched", "processed", "ignored", "quarantined", "already_done", "replies_queued"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            if (report.fetched < self.settings.poll_batch or report.progressed == 0
                    or (stop is not None and stop.is_set())):
                break
        return total

    def _retries_last(self, mails: list[RawMail]) -> list[RawMail]:
        """Mails already tried (claimed, not finished: they may have killed
        the bot) go after the fresh ones, so a poison mail delays nobody."""
        located = [m for m in mails if m.uid is not None and m.uidvalidity is not None]
        if len(mails) < 2 or not located:
            return mails
        retried: set[str] = set()
        try:
            with self._tx(readonly=True) as tx:
                places: dict[tuple[str, int], list[RawMail]] = {}
                for m in located:
                    places.setdefault((m.mailbox, m.uidvalidity), []).append(m)   # type: ignore[arg-type]
                for (mailbox, uidvalidity), group in places.items():
                    known = tx.mails_at(self.settings.source_name, mailbox, uidvalidity, [m.uid for m in group])
                    retried.update(m.key for m in group
                                   if m.uid in known and known[m.uid].outcome == "pending")
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            raise
        if not retried:
            return mails
        return [m for m in mails if m.key not in retried] + [m for m in mails if m.key in retried]

    def _check_uidvalidity(self, raw: RawMail) -> None:
        """RFC 3501 §2.3.1.1: a new UIDVALIDITY voids every stored UID. Log it
        loudly and record it; content hashes keep the re-scan from making
        duplicates."""
        if raw.uidvalidity is None:
            return
        name = raw.mailbox
        if self._uidvalidity_seen.get(name) == raw.uidvalidity:
            return
        now = self._now()
        try:
            with self._tx() as tx:
                state = tx.mailbox_state(self.settings.source_name, name)
                if state is not None and state.uidvalidity not in (None, raw.uidvalidity):
                    log.critical(
                        "UIDVALIDITY of %s changed from %s to %s: every stored UID is void; "
                        "the mailbox is read again and known mails are recognised by their content",
                        name, state.uidvalidity, raw.uidvalidity,
                    )
                if state is None or state.uidvalidity != raw.uidvalidity:
                    tx.set_mailbox_state(self.settings.source_name, name, uidvalidity=raw.uidvalidity,
                                         last_uid=raw.uid, now=now)
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            raise
        self._uidvalidity_seen[name] = raw.uidvalidity

    def _handle(self, raw: RawMail) -> _Result:
        """The whole unit of work for one fetched mail, including the move."""
        moves: list[tuple[RawMail, str]] = []
        result = self._run_unit(raw.raw, raw, move=True, moves=moves)
        self._move_batch(moves)
        return result

    def ingest(self, raw: bytes) -> str:
        """One mail from standard input (an MTA pipe): the same unit of work,
        without any move. Returns the outcome (``processed``, ``ignored``,
        ``quarantined``, or ``already_done`` for a mail seen before).
        Raises :class:`TransientError` when the store is unavailable (the
        CLI exits 75, EX_TEMPFAIL, and the MTA keeps the mail)."""
        return self._run_unit(raw, None, move=False).outcome

    # ---------------------------------------------------------------- one mail

    def _run_unit(self, raw_bytes: bytes, raw: RawMail | None, move: bool,
                  moves: list[tuple[RawMail, str]] | None = None) -> _Result:
        """Claim, process, commit; then file the mail away: into ``moves``
        (moved by the caller after the batch) when given, else at once."""
        content_hash = hashlib.sha256(raw_bytes).hexdigest()
        message_id, sender = _quick_headers(raw_bytes)
        mlog = mail_logger(log, message_id)
        now = self._now()
        try:
            with self._tx() as tx:
                claim = tx.claim_mail(
                    content_hash=content_hash, now=now, message_id=message_id, sender=sender,
                    source=self.settings.source_name if raw is not None else "stdin",
                    mailbox=raw.mailbox if raw is not None else None,
                    uidvalidity=raw.uidvalidity if raw is not None else None,
                    uid=raw.uid if raw is not None else None,
                )
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            raise
        if claim.already_done:
            # Finished before (a crash between commit and move, the same
            # bytes after a UIDVALIDITY change, a duplicate delivery): only
            # file it away where its outcome says.
            mlog.info("already %s (mail #%d): filed away again", claim.outcome, claim.mail_id)
            if move and raw is not None:
                self._file_away(raw, FOLDER_OF.get(claim.outcome, IGNORED), moves)
            return _Result("already_done", claim.ticket_id)

        if claim.attempts > self.settings.max_attempts:
            reason = f"gave up after {self.settings.max_attempts} attempts"
            self._quarantine(claim.mail_id, raw, reason, mlog, move, moves)
            return _Result("quarantined", reason=reason)

        if claim.attempts > 1 and moves:
            # Tried before and not finished: it may kill the bot again. File
            # away the finished mails of the batch first, so that a poison
            # mail delays nobody (they would otherwise stay in the inbox).
            self._move_batch(moves)

        # Claimed and committed, not processed yet: a crash from here on
        # (the parser killed by a poison mail) counts one attempt.
        self.crash("after_fetch", raw_bytes)
        try:
            result = self._process(raw_bytes, claim.mail_id, content_hash)
        except _Quarantine as why:
            reason = str(why)
            self._quarantine(claim.mail_id, raw, reason, mlog, move, moves)
            return _Result("quarantined", reason=reason)
        except TransientError:
            raise
        except RuleFileError as exc:
            # A broken template or rule is the operator's to fix; quarantining
            # every mail meanwhile would hide them all. Stop the poll instead.
            raise TransientError(f"rule files need fixing: {exc}") from exc
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            reason = f"error while processing: {type(exc).__name__}"
            # One line, masked by the log filter; the traceback at debug level
            # only (exception texts can quote mail content).
            mlog.error("%s: %s", reason, mask_text(str(exc)[:300], emails=True))
            mlog.debug("traceback", exc_info=True)
            self._quarantine(claim.mail_id, raw, reason, mlog, move, moves)
            return _Result("quarantined", reason=reason)

        self.crash("after_commit", raw_bytes)
        mlog.info("%s (%s)%s%s", result.outcome, result.action or "-",
                  f", ticket #{result.ticket_id}" if result.ticket_id else "",
                  f", {result.replies} mail(s) queued" if result.replies else "")
        if move and raw is not None:
            self._file_away(raw, FOLDER_OF[result.outcome], moves)
        return result

    def _file_away(self, raw: RawMail, folder: str, moves: list[tuple[RawMail, str]] | None) -> None:
        """Move a mail whose outcome is committed: queued for the batch's
        move when ``moves`` is given, else now."""
        if moves is not None:
            moves.append((raw, folder))
            return
        self.source.move(raw, folder)
        self.crash("after_move", raw.raw)

    def _quarantine(self, mail_id: int, raw: RawMail | None, reason: str, mlog: Any, move: bool,
                    moves: list[tuple[RawMail, str]] | None = None) -> None:
        now = self._now()
        try:
            with self._tx() as tx:
                tx.set_mail_outcome(mail_id, "quarantined", now=now, reason=reason[:500])
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            raise
        mlog.warning("quarantined: %s", reason)
        if move and raw is not None:
            self._file_away(raw, QUARANTINE, moves)

    def _process(self, raw_bytes: bytes, mail_id: int, content_hash: str) -> _Result:
        mail = parse_message(raw_bytes)
        if mail.error:
            raise _Quarantine(f"not readable as a mail: {mail.error}"[:300])
        now = self._now()
        with self._tx() as tx:
            result = self._unit(tx, mail, raw_bytes, mail_id, content_hash, now)
            tx.set_mail_outcome(mail_id, result.outcome, now=now, reason=result.reason,
                                ticket_id=result.ticket_id)
        return result

    # ---------------------------------------------------------------- thread

    def _find_thread(self, tx: Any, mail: ParsedMail) -> Any:
        """The ticket this mail refers to: In-Reply-To, then References
        newest first (RFC 5322 §3.6.4), against every Message-ID we received
        or sent; else our subject tag."""
        ids = [mail.in_reply_to, *reversed(mail.references)]
        ticket = tx.ticket_by_message_ids([i for i in ids if i])
        if ticket is None:
            m = self._tag.search(mail.subject or "")
            if m:
                ticket = tx.ticket_by_number(f"{self.settings.ticket_prefix}-{m.group(1)}")
        return ticket

    def _state_of(self, tx: Any, ticket: Any) -> TicketState:
        flags = tx.events(ticket.id, types=["facts_flags"])
        f = flags[-1].data if flags else {}
        return TicketState(
            number=ticket.number, status=ticket.status, cas=ticket.cas, application=ticket.application,
            criticity=ticket.criticity, fields=dict(ticket.fields), ask_counts=dict(ticket.ask_counts),
            is_request=bool(f.get("is_request", False)), immediate=bool(f.get("immediate", False)),
            failure_reported=bool(f.get("failure_reported", True)),
            created_at=ticket.created_at, last_question_at=ticket.last_question_at,
            writer=ticket.writer_addr, flagged_incomplete=ticket.flagged_incomplete,
        )

    # ---------------------------------------------------------------- decide

    def _unit(self, tx: Any, mail: ParsedMail, raw_bytes: bytes, mail_id: int, content_hash: str,
              now: dt.datetime) -> _Result:
        ticket = self._find_thread(tx, mail)
        how = "new"
        if ticket is not None:
            participants = {p.address for p in tx.participants(ticket.id)}
            how = thread_decision(mail.from_addr, ticket.status, participants, ticket.writer_addr)
        state = self._state_of(tx, ticket) if ticket is not None and how in ("continue", "reopen") else None
        judged = mail
        if how in ("new_linked", "new_after_closed"):
            # Policy §8: a stranger quoting a ticket, or an answer to a closed
            # one, starts a new ticket; judge it as the new mail it is, not as
            # a reply (a reply alone has no case of its own).
            judged = replace(mail, in_reply_to="", references=(), subject=clean_subject(mail.subject))
        verdict = self.engine.triage(judged, context=facts_of(state) if state is not None else None)

        if verdict.kind == "bounce":
            return self._bounce(tx, mail, raw_bytes, mail_id, now)
        if verdict.kind == "autoreply":
            if ticket is not None:
                # An out-of-office joins its thread's history; it answers nothing.
                self._record_message(tx, ticket.id, mail, mail_id, now)
                tx.add_event(ticket.id, "autoreply", at=now, actor=mail.from_addr or "unknown",
                             data={"mail_id": mail_id, "reason": verdict.reason[:200]})
                return _Result("ignored", ticket.id, "automatic reply", action="record_only")
            return _Result("ignored", None, "automatic reply", action="ignore")
        if verdict.kind == "noise":
            return _Result("ignored", None, f"noise: {verdict.reason[:200]}" if verdict.reason else "noise",
                           action="ignore")

        linked = None
        if state is not None:
            decision = decide_followup(state, verdict, self.rulebook, self.settings.dialogue, now)
        else:
            decision = decide_new(verdict, self.rulebook, self.settings.dialogue, now, writer=mail.from_addr)
            if ticket is not None:
                linked = ticket.id   # a stranger quoting it, or an answer to a closed ticket
        return self._apply(tx, decision, verdict, mail, mail_id, content_hash, now,
                           ticket=ticket if state is not None else None, linked=linked)

    def _apply(self, tx: Any, decision: Decision, verdict: Verdict, mail: ParsedMail, mail_id: int,
               content_hash: str, now: dt.datetime, *, ticket: Any, linked: int | None) -> _Result:
        record = None
        if decision.state is not None:
            record = self._save_state(tx, decision, verdict, ticket, now, mail=mail, linked=linked)
            self._participants(tx, record.id, mail, now)
            self._record_message(tx, record.id, mail, mail_id, now)
            tx.add_event(record.id, "mail_in", at=now, actor=mail.from_addr or "unknown",
                         data={"mail_id": mail_id, "message_id": mail.message_id or None,
                               "kind": verdict.kind, "action": decision.action})
            for etype, data in decision.events:
                tx.add_event(record.id, etype, at=now, data=_jsonable(data))
        elif linked is not None:
            # A non-participant's follow-up with nothing to file: staff see it
            # in the history of the ticket it quotes.
            tx.add_event(linked, "message_from_non_participant", at=now, actor=mail.from_addr or "unknown",
                         data={"mail_id": mail_id, "message_id": mail.message_id or None})

        replies = 0
        if decision.reply is not None:
            target = reply_address(mail)
            recent = tx.reply_times_to(target, since=now - dt.timedelta(hours=1)) if target else []
            allowed, why = may_reply(mail, verdict, set(self.settings.own_addresses), recent, now,
                                     self.settings.replies_per_hour)
            if allowed and target:
                replies += self._queue_reply(
                    tx, decision, ticket_record=record, to_addr=target, to_name=mail.from_name,
                    subject=mail.subject, in_reply_to=mail.message_id, references=mail.references,
                    cause=f"mail:{mail_id}", seed=content_hash, now=now, mail_id=mail_id)
            else:
                mail_logger(log, mail.message_id).info("no reply: %s", why)
                if record is not None:
                    tx.add_event(record.id, "reply_suppressed", at=now, data={"reason": why[:300]})
        if decision.notify_staff and record is not None:
            replies += self._queue_staff_alert(tx, record, cause=f"mail:{mail_id}", seed=content_hash, now=now)
        return _Result("processed", record.id if record is not None else None,
                       decision.reason[:300] or None, replies, decision.action)

    # ---------------------------------------------------------------- store

    def _save_state(self, tx: Any, decision: Decision, verdict: Verdict | None, ticket: Any,
                    now: dt.datetime, *, mail: ParsedMail | None, linked: int | None) -> Any:
        state = decision.state
        assert state is not None
        values: dict[str, Any] = dict(  # noqa: C408 (column names read better as keywords)
            status=state.status, kind="incident", cas=state.cas, application=state.application,
            criticity=state.criticity, fields=dict(state.fields), missing=list(decision.missing),
            ask_counts=dict(state.ask_counts), last_question_at=state.last_question_at,
            flagged_incomplete=state.flagged_incomplete,
            deadline=deadline(state.criticity, ticket.created_at if ticket is not None else now,
                              self.settings.deadlines, self.settings.timezone),
            title=make_title(state.cas, state.application, state.fields,
                             mail.subject if mail is not None else (ticket.thread_subject if ticket else ""),
                             state.is_request, text=mail.new_text if mail is not None else ""),
        )
        if state.status in FILED_STATUSES and (ticket is None or ticket.filed_at is None):
            values["filed_at"] = now
        flags = {"is_request": state.is_request, "immediate": state.immediate,
                 "failure_reported": state.failure_reported}
        if ticket is None:
            assert mail is not None
            # the sender's domain first, else the sign-off ("ARM – CRRA 31"): the
            # last lines and the signature, not a site the body merely names
            sign_off = "\n".join([line for line in mail.new_text.strip().splitlines()[-3:]
                                  if len(line.split()) <= 6] + [mail.signature])
            site = self.settings.sites.resolve(mail.from_addr, sign_off) \
                if self.settings.sites is not None else None
            if site is not None:
                values.update(site_code=site.code, site_name=site.name)
            record = tx.create_ticket(
                now=now, writer_addr=mail.from_addr, writer_name=clean_header_text(mail.from_name, 200),
                thread_subject=clean_subject(mail.subject), linked_ticket_id=linked, **values)
            tx.add_event(record.id, "facts_flags", at=now, data=flags)
            if linked is not None:
                tx.add_event(linked, "linked_ticket", at=now, data={"ticket": record.number})
        else:
            if not mail:   # scheduler: keep the title as it was
                values.pop("title")
            record = tx.update_ticket(ticket.id, now=now, **values)
            last = tx.events(ticket.id, types=["facts_flags"])
            if not last or last[-1].data != flags:
                tx.add_event(ticket.id, "facts_flags", at=now, data=flags)
        return record

    def _participants(self, tx: Any, ticket_id: int, mail: ParsedMail, now: dt.datetime) -> None:
        own = self.settings.own_addresses
        for role, addresses in (("from", (mail.from_addr,)), ("to", mail.to), ("cc", mail.cc)):
            for address in addresses:
                address = (address or "").strip().lower()
                if address and address not in own and "@" in address:
                    tx.add_participant(ticket_id, address, role, now=now)

    def _record_message(self, tx: Any, ticket_id: int, mail: ParsedMail, mail_id: int, now: dt.datetime) -> None:
        row = tx.add_message(
            ticket_id, direction="in", at=now, message_id=mail.message_id or None,
            in_reply_to=mail.in_reply_to or None, references=mail.references, sender=mail.from_addr,
            subject=mail.subject[:1000], body_text=mail.body_text, new_text=mail.new_text, mail_id=mail_id)
        for att in mail.attachments:
            tx.add_attachment(ticket_id, filename=att.filename, content_type=att.content_type, now=now,
                              content=att.content, size=att.size, message_row_id=row.id)

    # ---------------------------------------------------------------- outbox rows

    def _queue_reply(self, tx: Any, decision: Decision, *, ticket_record: Any, to_addr: str, to_name: str,
                     subject: str, in_reply_to: str, references: Iterable[str], cause: str, seed: str,
                     now: dt.datetime, mail_id: int | None, purpose: str = "reply") -> int:
        assert decision.reply is not None
        message_id = make_message_id(self.settings.message_id_domain, f"{seed}:{purpose}")
        number = ticket_record.number if ticket_record is not None else None
        msg = render_reply(decision.reply, number, to_addr, to_name, subject, in_reply_to or "",
                           tuple(references or ()), self.rulebook, self.settings.bot_address, message_id, now,
                           from_name=self.settings.from_name)
        row, created = tx.enqueue_outbox(
            cause=cause, purpose=purpose, message_id=message_id, to_addr=to_addr, raw=msg.as_bytes(),
            now=now, subject=str(msg["Subject"]), ticket_id=ticket_record.id if ticket_record else None,
            mail_id=mail_id)
        if not created:
            return 0
        if ticket_record is not None:
            tx.add_message(ticket_record.id, direction="out", at=now, message_id=message_id,
                           in_reply_to=in_reply_to or None, references=tuple(references or ()),
                           sender=self.settings.bot_address, subject=str(msg["Subject"]),
                           body_text=msg.get_content(), new_text="", outbox_id=row.id)
            tx.add_event(ticket_record.id, "reply_queued", at=now,
                         data={"template": decision.reply.template, "ask": list(decision.reply.ask),
                               "outbox_id": row.id, "message_id": message_id})
        return 1

    def _queue_staff_alert(self, tx: Any, record: Any, *, cause: str, seed: str, now: dt.datetime) -> int:
        """Criticity 1: a short, masked alert to ``[staff] alert_to``."""
        to = tuple(self.settings.staff_alert_to)
        if not to:
            return 0
        message_id = make_message_id(self.settings.message_id_domain, f"{seed}:staff_alert")
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.settings.bot_address
        msg["To"] = ", ".join(to)
        title = clean_header_text(mask_text(record.title, emails=True), 100)
        msg["Subject"] = f"[{record.number}] Criticité 1 : {title}"
        msg["Date"] = email.utils.format_datetime(now)
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["X-Loop"] = self.settings.bot_address
        msg["X-Mailbot-Ticket"] = record.number
        deadline = record.deadline.strftime("%Y-%m-%d %H:%M UTC") if record.deadline else "-"
        lines = [
            (f"Ticket {record.number} ouvert en criticité 1 (cas {record.cas or '-'}"
             f"{', ' + record.application if record.application else ''})."),
            f"Titre : {title}",
            f"Échéance : {deadline}",
            "",
            "Éléments donnés :",
            *(f"- {k} : {mask_text(_short(v), emails=True)}" for k, v in record.fields.items()),
            "",
            f"Manquants : {', '.join(record.missing) or 'aucun'}",
        ]
        msg.set_content("\n".join(lines) + "\n", charset="utf-8")
        _row, created = tx.enqueue_outbox(
            cause=cause, purpose="staff_alert", message_id=message_id, to_addr=to[0], raw=msg.as_bytes(),
            now=now, subject=str(msg["Subject"]), ticket_id=record.id)
        if created:
            tx.add_event(record.id, "staff_alerted", at=now, data={"to": len(to)})
        return 1 if created else 0

    # ---------------------------------------------------------------- bounces

    def _bounce(self, tx: Any, mail: ParsedMail, raw_bytes: bytes, mail_id: int, now: dt.datetime) -> _Result:
        """A DSN: find which of our mails it returns and flag its ticket.
        Only ``Action: failed`` (or a bounce with no DSN part at all, qmail /
        Exim style) marks the reply undeliverable; ``delayed`` is a warning."""
        own_id = (mail.message_id or "").strip()
        candidates: list[str] = [mail.in_reply_to, *reversed(mail.references)]
        candidates += [m.decode("ascii", "replace") for m in _RETURNED_IDS.findall(raw_bytes[:2_000_000])]
        row = None
        for mid in candidates:
            if mid and mid.strip() != own_id:
                row = tx.outbox_by_message_id(mid)
                if row is not None:
                    break
        if row is None:
            return _Result("ignored", None, "bounce of no mail of ours", action="ignore")
        delayed = bool(_DSN_DELAYED.search(raw_bytes)) and not _DSN_FAILED.search(raw_bytes)
        if delayed:
            if row.ticket_id is not None:
                tx.add_event(row.ticket_id, "delivery_delayed", at=now, data={"outbox_id": row.id})
            return _Result("ignored", row.ticket_id, "delivery delayed (warning)", action="record_only")
        tx.mark_outbox_failed(row.id, now=now, error="bounced")
        if row.ticket_id is not None:
            tx.update_ticket(row.ticket_id, now=now, reply_undeliverable=True)
            tx.add_event(row.ticket_id, "reply_undeliverable", at=now,
                         data={"outbox_id": row.id, "purpose": row.purpose, "mail_id": mail_id})
        return _Result("ignored", row.ticket_id, "bounce: our reply was not delivered", action="record_only")

    # ================================================================ outbox

    def send_outbox(self) -> int:
        """Send the due outbox rows; returns how many were accepted.

        Each row is leased (status ``sending``) and committed before SMTP, and
        marked ``sent`` after the server accepted it. A crash in between
        leaves the lease to expire and the same bytes (same Message-ID) to go
        again: the RFC 1047 window, the only duplicate possible.
        """
        sent = 0
        with self._send_lock:
            while True:
                now = self._now()
                try:
                    with self._tx() as tx:
                        rows = tx.claim_outbox(now, limit=self.settings.outbox_batch,
                                               lease=self.settings.outbox_lease)
                except Exception as exc:
                    if self._is_store_error(exc):
                        raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
                    raise
                if not rows:
                    return sent
                relay_down = False
                all_ok = True
                for row in rows:
                    if relay_down:
                        self._retry_later(row, "relay unavailable: not tried")
                        all_ok = False
                        continue
                    ok, relay_down = self._send_row(row)
                    sent += ok
                    all_ok = all_ok and bool(ok)
                if not all_ok or len(rows) < self.settings.outbox_batch:
                    return sent

    def _send_row(self, row: Any) -> tuple[int, bool]:
        """(1 if sent else 0, relay looks down)."""
        mlog = mail_logger(log, row.message_id)
        msg = email.message_from_bytes(row.raw, _class=EmailMessage, policy=email.policy.default)
        self.crash("after_outbox_commit_before_send", row.raw)
        try:
            self.sender.send(msg)
        except TransientDeliveryError as exc:
            mlog.warning("outbox #%d: not sent, will retry: %s", row.id, type(exc).__name__)
            self._retry_later(row, f"{type(exc).__name__} {exc.code or ''}".strip())
            return 0, exc.code is None   # no SMTP reply at all: connection refused, timeout
        except PermanentDeliveryError as exc:
            now = self._now()
            with self._tx() as tx:
                tx.mark_outbox_failed(row.id, now=now, error=f"{type(exc).__name__} {exc.code or ''}".strip())
                self._flag_undeliverable(tx, row, now, f"refused by the relay ({exc.code})")
            mlog.error("outbox #%d: refused for good (%s)", row.id, exc.code)
            return 0, False
        self.crash("after_send_before_mark", row.raw)
        now = self._now()
        with self._tx() as tx:
            tx.mark_outbox_sent(row.id, now=now)
            if row.ticket_id is not None:
                tx.add_event(row.ticket_id, "reply_sent", at=now, data={"outbox_id": row.id,
                                                                        "purpose": row.purpose})
        mlog.info("outbox #%d sent (%s)", row.id, row.purpose)
        return 1, False

    def _retry_later(self, row: Any, error: str) -> None:
        now = self._now()
        with self._tx() as tx:
            after = tx.schedule_outbox_retry(row.id, now=now, error=error[:200])
            if after.status == "failed":
                self._flag_undeliverable(tx, row, now, "gave up after retries")
                log.error("outbox #%d: gave up after %d attempts", row.id, after.attempts)

    def _flag_undeliverable(self, tx: Any, row: Any, now: dt.datetime, why: str) -> None:
        if row.ticket_id is None or row.purpose == "staff_alert":
            return
        tx.update_ticket(row.ticket_id, now=now, reply_undeliverable=True)
        tx.add_event(row.ticket_id, "reply_undeliverable", at=now,
                     data={"outbox_id": row.id, "purpose": row.purpose, "reason": why})

    # ================================================================ scheduler jobs

    def run_reminders(self) -> int:
        """Second requests for tickets waiting for an answer (and filing of
        those that have nothing missing any more). Returns tickets changed."""
        return self._scheduled(lambda d: d.action != "file_incomplete")

    def run_incomplete_timeouts(self) -> int:
        """File as incomplete (flagged) the tickets asked twice without an
        answer, or waiting longer than ``incomplete_after``."""
        return self._scheduled(lambda d: d.action == "file_incomplete")

    def _scheduled(self, wanted: Callable[[Decision], bool]) -> int:
        now = self._now()
        try:
            with self._tx(readonly=True) as tx:
                ids = [t.id for t in tx.list_tickets(status=WAITING)]
        except Exception as exc:
            if self._is_store_error(exc):
                raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
            raise
        changed = 0
        for ticket_id in ids:
            try:
                with self._tx() as tx:
                    ticket = tx.ticket(ticket_id, for_update=True)
                    if ticket.status != WAITING:
                        continue
                    state = self._state_of(tx, ticket)
                    decision = decide_reminder(state, self.rulebook, self.settings.dialogue, now)
                    if decision is None or not wanted(decision):
                        continue
                    self._apply_scheduled(tx, ticket, decision, now)
                    changed += 1
            except Exception as exc:
                if self._is_store_error(exc):
                    raise TransientError(f"store unavailable: {type(exc).__name__}") from exc
                log.exception("ticket #%d: scheduled check failed", ticket_id)
        return changed

    def _apply_scheduled(self, tx: Any, ticket: Any, decision: Decision, now: dt.datetime) -> None:
        record = self._save_state(tx, decision, None, ticket, now, mail=None, linked=None)
        for etype, data in decision.events:
            tx.add_event(record.id, etype, at=now, data=_jsonable(data))
        if decision.reply is not None and record.writer_addr:
            round_ = decision.reply.context.get("round", 0)
            purpose = {"reminder": "reminder", "filed_incomplete": "filed_incomplete"}.get(
                decision.reply.template, decision.reply.template)
            cause = f"ticket:{record.id}:{purpose}:{round_}"
            messages = tx.messages(record.id)
            last = messages[-1].message_id if messages else None
            refs = tuple(m.message_id for m in messages if m.message_id)
            self._queue_reply(tx, decision, ticket_record=record, to_addr=record.writer_addr,
                              to_name=record.writer_name, subject=record.thread_subject,
                              in_reply_to=last or "", references=refs, cause=cause, seed=cause, now=now,
                              mail_id=None, purpose=purpose)
        if decision.notify_staff:
            self._queue_staff_alert(tx, record, cause=f"ticket:{record.id}:{decision.action}",
                                    seed=f"ticket:{record.id}:{decision.action}", now=now)


# ----------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return clean_header_text(text, 120)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
