"""The daemon's clock: runs the poll, outbox, reminder, timeout and digest jobs.

Adapter: the only module that imports APScheduler (3.x). The jobs are plain
callables built by the service layer; this module knows nothing of mail.

* ``poll`` every ``[poll] interval_seconds``, ``send_outbox`` every
  ``[outbox] interval_seconds``, ``reminders`` and ``incomplete_timeouts``
  every ``[dialogue] check_interval_seconds``, all first run at start;
  ``digest`` at each of ``[staff] digest_times`` in ``[staff] timezone``.
* Every job has ``max_instances=1`` and ``coalesce=True``: a poll that
  outlasts its interval is not started a second time beside itself, and runs
  missed meanwhile collapse into one.
* Jobs run in a small thread pool, so a long poll does not hold back the
  outbox. Each job must therefore be safe to run beside the others (each
  opens its own database session).
* A job that raises is logged with its traceback (in the log, never on
  standard output) and runs again at its next time; the others go on.
* SIGTERM or SIGINT: no new job is started, the running ones finish
  (``shutdown(wait=True)``), then :func:`run_scheduler` returns. The
  optional ``stop`` event is set at once, so a poll job can stop between two
  mails instead of draining its whole batch.

Why a BackgroundScheduler and a main-thread wait loop rather than
BlockingScheduler: the shutdown must not be called from inside the signal
handler. A handler runs in the main thread between two bytecodes, possibly
while that thread holds a ``threading`` lock the shutdown needs (the
scheduler's wake-up ``Event``, the executor's queue), which deadlocks. Here
the handler only sets a flag; the main thread sees it and shuts down.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from mailbot.config import Settings

log = logging.getLogger(__name__)

Job = Callable[[], Any]

#: One thread per job (each has max_instances=1): no job waits behind another.
WORKERS = 5

#: How often the main thread looks at the stop flag, in seconds.
_TICK = 0.2

#: A digest more than this late (machine asleep, daemon down) is skipped.
_DIGEST_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class Jobs:
    """What the scheduler runs. Each callable takes no argument; its result is ignored."""

    poll: Job
    send_outbox: Job
    reminders: Job
    incomplete_timeouts: Job
    digest: Job | None = None

    def cycle(self) -> list[tuple[str, Job]]:
        """The jobs of one full cycle, in order (``mailbot run --once``)."""
        return [
            ("poll", self.poll),
            ("send_outbox", self.send_outbox),
            ("reminders", self.reminders),
            ("incomplete_timeouts", self.incomplete_timeouts),
        ]


class _Guard:
    """Runs one job, logging (not raising) what it raises, and remembering failures."""

    def __init__(self, name: str, job: Job, failures: set[str], lock: threading.Lock) -> None:
        self.name, self.job, self.failures, self.lock = name, job, failures, lock

    def __call__(self) -> bool:
        started = time.monotonic()
        try:
            self.job()
        except Exception:
            # logging.exception: the traceback goes to the log handlers
            # (stderr or the log file, through the redaction filter).
            log.exception("job %s failed after %.1f s", self.name, time.monotonic() - started)
            with self.lock:
                self.failures.add(self.name)
            return False
        log.debug("job %s done in %.2f s", self.name, time.monotonic() - started)
        return True


def run_scheduler(
    jobs: Jobs,
    settings: Settings,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
) -> tuple[str, ...]:
    """Run the jobs until SIGTERM/SIGINT (or ``stop`` is set), or one cycle if ``once``.

    Returns the names of the jobs that raised at least once (empty: all
    went well), so ``mailbot run --once`` can exit non-zero after a failure.

    ``once=True`` runs poll, send_outbox, reminders, incomplete_timeouts in
    that order, in the calling thread, each even if an earlier one raised;
    the digest is not part of a cycle.
    """
    failures: set[str] = set()
    lock = threading.Lock()
    if once:
        for name, job in jobs.cycle():
            _Guard(name, job, failures, lock)()
        return tuple(name for name, _ in jobs.cycle() if name in failures)

    stop = stop if stop is not None else threading.Event()
    scheduler = build_scheduler(jobs, settings, failures, lock)

    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a list append: no lock, no logging, no I/O (see module docstring).
        received.append(signum)

    previous = _install_handlers(on_signal)
    quiet = _QuietSkips()
    apscheduler_log = logging.getLogger("apscheduler.scheduler")
    apscheduler_log.addFilter(quiet)
    try:
        scheduler.start()
        log.info(
            "scheduler started: poll every %gs, outbox every %gs, checks every %gs, digest at %s",
            settings.poll.interval_seconds,
            settings.outbox.interval_seconds,
            settings.dialogue.check_interval_seconds,
            ", ".join(settings.staff.digest_times) if jobs.digest is not None else "never",
        )
        while not received and not stop.is_set():
            time.sleep(_TICK)
        why = signal.Signals(received[0]).name if received else "stop requested"
        log.info("%s: no new job starts; waiting for the running ones to finish", why)
        stop.set()
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")
    finally:
        apscheduler_log.removeFilter(quiet)
        _restore_handlers(previous)
    return tuple(sorted(failures))


def build_scheduler(
    jobs: Jobs, settings: Settings, failures: set[str], lock: threading.Lock
) -> BackgroundScheduler:
    """The scheduler with every job added, not started.

    Job ids: ``poll``, ``send_outbox``, ``reminders``, ``incomplete_timeouts``
    and ``digest-HH:MM`` per digest time. A job that raises adds its name to
    ``failures`` (under ``lock``).
    """
    zone = settings.staff.zone
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=WORKERS)},
        # misfire_grace_time None: a job that is late because the pool was busy
        # still runs (once, thanks to coalesce) instead of being skipped.
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        timezone=zone,
    )
    now = datetime.now(zone)
    periodic = [
        ("poll", jobs.poll, settings.poll.interval_seconds),
        ("send_outbox", jobs.send_outbox, settings.outbox.interval_seconds),
        ("reminders", jobs.reminders, settings.dialogue.check_interval_seconds),
        ("incomplete_timeouts", jobs.incomplete_timeouts, settings.dialogue.check_interval_seconds),
    ]
    for name, job, seconds in periodic:
        scheduler.add_job(
            _Guard(name, job, failures, lock),
            IntervalTrigger(seconds=seconds, timezone=zone),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            next_run_time=now,
        )
    if jobs.digest is not None:
        for at in settings.staff.digest_times:
            hour, minute = (int(part) for part in at.split(":"))
            scheduler.add_job(
                _Guard("digest", jobs.digest, failures, lock),
                CronTrigger(hour=hour, minute=minute, timezone=zone),
                id=f"digest-{at}",
                name=f"digest {at}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=_DIGEST_GRACE_SECONDS,
            )
    return scheduler


class _QuietSkips(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances" warning.

    With ``max_instances=1`` a poll outlasting its interval (a big backlog,
    an IDLE wait) is skipped by design, and APScheduler would warn at every
    interval meanwhile.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def _install_handlers(handler: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    # signal.signal only works in the main thread; elsewhere (an embedding
    # test, a thread of a larger program) the caller stops us with ``stop``.
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, old in previous.items():
        signal.signal(signum, old if old is not None else signal.SIG_DFL)
