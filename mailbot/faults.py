"""Fault injection for the crash tests: a test hook, a no-op in normal use.

Role: the service calls :func:`crash_point` at each named step of its unit of
work (reliability §1.5, "crash-point table"). When the environment variable
``MAILBOT_CRASH_AT`` equals the name of the step, the process sends itself
``SIGKILL`` there -- the same as ``kill -9`` from outside, at a known place:
no ``finally`` block, no ``atexit``, no flush runs, exactly what a power cut or
the OOM killer leaves behind. The fault tests (``tests/integration/
test_faults.py``) run ``mailbot run --once`` with it set, then run again
without it and check that every mail ended in exactly one outcome, one ticket
effect and at most one reply. The pattern is Mailman's ``test_switchboard``:
make a named step fail and look where the message ended up.

``MAILBOT_CRASH_MARKER`` (optional) narrows it to the mails or outgoing
messages whose raw bytes contain that text: a "poison" mail that kills the
bot every time it is read, while the other mails of the batch are fine.

Names used by :mod:`mailbot.service`: ``after_fetch``, ``after_commit``,
``after_move`` (incoming mail), ``after_outbox_commit_before_send``,
``after_send_before_mark`` (outbox).

Never set these variables in production. Without them this module does
nothing but read two environment variables.

Import rule: standard library only (``os``, ``signal``).
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "ENV_CRASH_AT", "ENV_CRASH_MARKER", "crash_point"]

ENV_CRASH_AT = "MAILBOT_CRASH_AT"
ENV_CRASH_MARKER = "MAILBOT_CRASH_MARKER"

#: The named steps of the service's unit of work.
CRASH_POINTS = ("after_fetch", "after_commit", "after_move",
                "after_outbox_commit_before_send", "after_send_before_mark")


def crash_point(name: str, raw: bytes | None = None) -> None:
    """Test hook: ``SIGKILL`` this process if ``MAILBOT_CRASH_AT == name``
    (and, when ``MAILBOT_CRASH_MARKER`` is set, ``raw`` contains it).
    A no-op otherwise."""
    if os.environ.get(ENV_CRASH_AT) != name:
        return
    marker = os.environ.get(ENV_CRASH_MARKER)
    if marker and (raw is None or marker.encode("utf-8") not in raw):
        return
    os.kill(os.getpid(), signal.SIGKILL)
