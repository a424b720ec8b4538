"""Composition root: settings -> adapters, store, triage engine, service, scheduler jobs.

Role: the one place that knows every concrete piece. :func:`build_app` turns
validated :class:`mailbot.config.Settings` into a running :class:`App`:

* the mail source: a local Maildir (the embedded default), IMAP
  (:class:`ImapSource`, password or XOAUTH2 token source from the
  configuration), or nothing (``[mailbox] kind = "stdin"``: mail comes from
  ``mailbot ingest``);
* the sender: SMTP (:class:`SmtpSender`, TLS as configured) or a local
  Maildir (the demo's "sent" box);
* the store: ``Store.open`` on ``[database]`` (SQLite under ``var/`` by
  default), with the outbox back-off of ``[outbox]``;
* the engine (rules folder of ``[rules]``), the :class:`Service` and the
  :class:`Jobs` the scheduler runs.

``mailbot run`` = :func:`run` (the daemon: APScheduler with a poll job that
waits with IMAP IDLE between polls, so that a new mail is handled within
seconds); ``mailbot run --once`` = one full cycle (drain the inbox, send the
outbox, reminders, timeouts).

Import rule: adapter level -- may import every module of the package.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mailbot import faults
from mailbot.adapters.imap import ImapSettings, ImapSource
from mailbot.adapters.maildir import MaildirSender, MaildirSource
from mailbot.adapters.scheduler import Jobs, run_scheduler
from mailbot.adapters.smtp import SmtpSender, SmtpSettings
from mailbot.adapters.store import RetryPolicy, Store
from mailbot.compose import make_message_id
from mailbot.config import Settings
from mailbot.digest import build_digest, build_digest_message
from mailbot.dialogue import Settings as DialogueSettings
from mailbot.loops import is_valid_address
from mailbot.ports import MailSender, MailSource, RawMail
from mailbot.rulefiles import load_rulebook
from mailbot.sites import load_sites
from mailbot.service import PollReport, Service, ServiceSettings, TransientError
from mailbot.triage import Engine

__all__ = ["STORE_ERRORS", "App", "NoSource", "TransientError", "build_app", "run", "service_settings"]

log = logging.getLogger(__name__)

#: What "the database is unavailable" looks like through SQLAlchemy: server
#: down, connection lost, SQLite file locked past the busy timeout.
STORE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.OperationalError, sa.exc.InterfaceError)

#: How long one IDLE wait lasts before the poll loop looks at the stop flag
#: again (SIGTERM is then honoured within this delay).
IDLE_SLICE_SECONDS = 5.0


class NoSource:
    """``MailSource`` with no mailbox (``[mailbox] kind = "stdin"``): mail
    arrives through ``mailbot ingest``; the daemon only runs the other jobs."""

    def fetch_new(self, limit: int | None = None) -> Iterator[RawMail]:
        return iter(())

    def move(self, mail: RawMail, folder: str) -> None:
        raise RuntimeError("no mailbox to move mail in")

    def move_many(self, mails: Sequence[RawMail], folder: str) -> None:
        if mails:
            raise RuntimeError("no mailbox to move mail in")

    def wait_for_new(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        pass


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class App:
    settings: Settings
    store: Store
    engine: Engine
    source: MailSource
    sender: MailSender
    service: Service
    jobs: Jobs
    stop: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            self.store.close()


def _reply_from(address: str) -> str:
    """Our From address as a reply can carry it. The configuration's default
    ``mailbot@localhost`` has a one-label domain, which the reply composer
    (rightly) refuses for a real mail; for the local demo we answer as
    ``mailbot@localhost.localdomain`` instead (RFC 6761 reserves both)."""
    if is_valid_address(address):
        return address
    local, _, domain = address.rpartition("@")
    if domain.lower() == "localhost":
        fixed = f"{local}@localhost.localdomain"
        log.warning("[bot] address %r has no dotted domain: replies are sent from %r", address, fixed)
        return fixed
    return address


def service_settings(settings: Settings, source_name: str) -> ServiceSettings:
    bot, dia = settings.bot, settings.dialogue
    address = _reply_from(bot.address)
    return ServiceSettings(
        bot_address=address,
        from_name=bot.from_name,
        own_addresses=frozenset({*bot.all_addresses, address.lower()}),
        message_id_domain=bot.message_id_domain,
        ticket_prefix=bot.ticket_prefix,
        source_name=source_name,
        max_attempts=settings.poll.max_attempts,
        poll_batch=max(settings.imap.batch_size * 4, 100),
        replies_per_hour=dia.replies_per_sender_per_hour,
        dialogue=DialogueSettings(
            max_asks=dia.max_asks,
            incomplete_after=dt.timedelta(days=dia.incomplete_after_days),
            reminder_after=dt.timedelta(hours=dia.reminder_after_hours),
        ),
        staff_alert_to=tuple(settings.staff.alert_to),
        # Reliability §1.5 rule 8: a row stuck in "sending" for more than
        # twice the SMTP timeout belongs to a dead worker and is sent again.
        outbox_lease=dt.timedelta(seconds=2 * settings.smtp.timeout_seconds),
        deadlines=settings.staff.deadlines,
        timezone=settings.staff.zone,
        sites=load_sites(settings.rules.path),
    )


def _source(settings: Settings) -> tuple[MailSource, str]:
    mb = settings.mailbox
    folders = mb.folders.as_mapping()
    if mb.kind == "maildir":
        return MaildirSource(mb.path, folders=folders, poll_interval=1.0), f"maildir:{mb.path}"
    if mb.kind == "stdin":
        return NoSource(), "stdin"
    imap = settings.imap
    password = imap.password.reveal() if imap.password is not None else None
    source = ImapSource(ImapSettings(
        host=imap.host, username=imap.username, password=password, port=imap.effective_port,
        security=imap.security, ca_file=str(imap.ca_file) if imap.ca_file else None,
        oauth2_token=imap.token_source(), inbox=imap.inbox, folders=folders,
        batch_size=imap.batch_size, timeout=imap.timeout_seconds,
        poll_interval=min(settings.poll.interval_seconds, 30.0),
    ))
    return source, f"imap:{imap.username}@{imap.host}"


def _sender(settings: Settings) -> MailSender:
    smtp = settings.smtp
    if smtp.kind == "maildir":
        return MaildirSender(smtp.path)
    return SmtpSender(SmtpSettings(
        host=smtp.host, port=smtp.effective_port, security=smtp.security, username=smtp.username,
        password=smtp.password.reveal() if smtp.password is not None else None,
        ca_file=str(smtp.ca_file) if smtp.ca_file else None, timeout=smtp.timeout_seconds,
        envelope_from=settings.bot.address,
    ))


def digest_job(app: "App", *, since: dt.datetime | None = None, to: tuple[str, ...] = ()) -> int:
    """Queue the staff digest (sent by the outbox job): new tickets since the
    last digest, overdue and due soon, waiting, incomplete, counts."""
    settings, now = app.settings, app.service.clock()
    to = to or tuple(settings.staff.digest_to)
    if not to:
        log.info("digest: no [staff] digest_to configured, nothing sent")
        return 0
    with app.store.transaction() as tx:
        last = [e for e in tx.events(None, types=["digest_sent"])] if hasattr(tx, "events") else []
        if since is None:
            since = last[-1].at if last else now - dt.timedelta(days=1)
        tickets = tx.list_tickets()
        digest = build_digest(tickets, now=now, since=since, tz=settings.staff.zone)
        domain = settings.bot.message_id_domain or "localhost.localdomain"
        message_id = make_message_id(domain, f"digest:{now.isoformat()}:{','.join(to)}")
        msg = build_digest_message(digest, from_addr=_reply_from(settings.bot.address), to_addrs=to,
                                   message_id=message_id)
        tx.enqueue_outbox(cause=f"digest:{now.isoformat()}", purpose="digest", message_id=message_id,
                          to_addr=", ".join(to), raw=bytes(msg), now=now, subject=str(msg["Subject"]))
        tx.add_event(None, "digest_sent", at=now, data={"to": list(to), "since": since.isoformat()})
    return 1


def build_app(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = _utc_now,
    crash: Callable[..., None] = faults.crash_point,
    engine: Engine | None = None,
    source: MailSource | None = None,
    sender: MailSender | None = None,
    once: bool = False,
) -> App:
    """Every piece, from the settings (``engine``/``source``/``sender`` may be
    given, e.g. a shared engine in tests or no mailbox for ``ingest``).
    ``once``: the poll job drains the inbox and returns (``run --once``);
    otherwise, with IMAP IDLE, it loops and waits for new mail."""
    out = settings.outbox
    store = Store.open(
        settings.database.dsn.reveal(),
        ticket_prefix=settings.bot.ticket_prefix,
        retry=RetryPolicy(
            base=dt.timedelta(seconds=out.first_retry_seconds),
            cap=dt.timedelta(seconds=out.max_retry_seconds),
            max_age=dt.timedelta(hours=out.give_up_after_hours),
        ),
    )
    try:
        if engine is None:
            engine = Engine(load_rulebook(settings.rules.path), own_addresses=tuple(sorted(settings.bot.all_addresses)))
        if source is None:
            source, source_name = _source(settings)
        else:
            source_name = f"{settings.mailbox.kind}:custom"
        if sender is None:
            sender = _sender(settings)
    except BaseException:
        store.close()
        raise
    service = Service(engine, store, source, sender, service_settings(settings, source_name), clock,
                      crash=crash, store_errors=STORE_ERRORS)
    app = App(settings, store, engine, source, sender, service, Jobs(
        poll=lambda: None, send_outbox=service.send_outbox, reminders=service.run_reminders,
        incomplete_timeouts=service.run_incomplete_timeouts))
    app.jobs = Jobs(poll=_poll_job(app, once), send_outbox=service.send_outbox,
                    reminders=service.run_reminders, incomplete_timeouts=service.run_incomplete_timeouts,
                    digest=lambda: digest_job(app))
    return app


def _poll_job(app: App, once: bool) -> Callable[[], Any]:
    service, source, settings = app.service, app.source, app.settings
    use_idle = settings.mailbox.kind == "imap" and settings.imap.idle

    def poll_once_cycle() -> PollReport:
        report = service.drain(app.stop)
        log.info("poll: %d fetched, %d processed, %d ignored, %d quarantined, %d filed again, %d replies queued",
                 report.fetched, report.processed, report.ignored, report.quarantined,
                 report.already_done, report.replies_queued)
        return report

    if once or not use_idle:
        return poll_once_cycle

    def poll_loop() -> None:
        # One long-running job (max_instances=1): drain, send what was
        # queued at once (a reply within seconds), then IDLE until new mail.
        while not app.stop.is_set():
            report = service.drain(app.stop)
            if report.progressed:
                log.info("poll: %d processed, %d ignored, %d quarantined, %d filed again",
                         report.processed, report.ignored, report.quarantined, report.already_done)
            if report.replies_queued:
                service.send_outbox()
            if app.stop.is_set():
                break
            source.wait_for_new(IDLE_SLICE_SECONDS)

    return poll_loop


def run(app: App, *, once: bool = False) -> tuple[str, ...]:
    """Run the daemon (until SIGTERM/SIGINT) or one cycle; returns the names
    of the jobs that failed (see ``run_scheduler``). Build ``app`` with the
    same ``once``."""
    return run_scheduler(app.jobs, app.settings, once=once, stop=app.stop)
