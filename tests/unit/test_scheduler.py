"""The daemon's scheduler (mailbot.adapters.scheduler): cycle order, failures, SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mailbot.adapters.scheduler import Jobs, run_scheduler
from mailbot.config import load_config

REPO = Path(__file__).resolve().parents[2]


def noop() -> None:
    return None


def fast_settings(tmp_path: Path, seconds: float = 0.1):
    config = tmp_path / "config.toml"
    config.write_text(
        f"[poll]\ninterval_seconds = {seconds}\n[outbox]\ninterval_seconds = {seconds}\n"
        f"[dialogue]\ncheck_interval_seconds = {seconds}\n"
    )
    return load_config(config, {})


def test_once_runs_each_job_once_in_order():
    calls: list[str] = []
    jobs = Jobs(
        poll=lambda: calls.append("poll"),
        send_outbox=lambda: calls.append("send_outbox"),
        reminders=lambda: calls.append("reminders"),
        incomplete_timeouts=lambda: calls.append("incomplete_timeouts"),
        digest=lambda: calls.append("digest"),
    )
    assert run_scheduler(jobs, load_config(None, {}), once=True) == ()
    assert calls == ["poll", "send_outbox", "reminders", "incomplete_timeouts"]


def test_once_goes_on_after_a_failing_job_and_names_it(caplog, capsys):
    calls: list[str] = []

    def poll():
        calls.append("poll")
        raise RuntimeError("IMAP went away")

    jobs = Jobs(poll=poll, send_outbox=lambda: calls.append("send_outbox"),
                reminders=lambda: calls.append("reminders"),
                incomplete_timeouts=lambda: calls.append("incomplete_timeouts"))
    with caplog.at_level(logging.ERROR, logger="mailbot.adapters.scheduler"):
        failed = run_scheduler(jobs, load_config(None, {}), once=True)
    assert failed == ("poll",)
    assert calls == ["poll", "send_outbox", "reminders", "incomplete_timeouts"]
    [record] = [r for r in caplog.records if "job poll failed" in r.getMessage()]
    assert record.exc_info is not None and "IMAP went away" in caplog.text
    assert capsys.readouterr().out == ""


def test_daemon_keeps_running_the_other_jobs_and_retries_the_failing_one(tmp_path, capsys):
    counts = {"poll": 0, "send_outbox": 0, "reminders": 0, "incomplete_timeouts": 0}
    stop = threading.Event()

    def counting(name, fail=False):
        def job():
            counts[name] += 1
            if all(n >= 3 for n in counts.values()):
                stop.set()
            if fail:
                raise RuntimeError(f"{name} broke")
        return job

    jobs = Jobs(poll=counting("poll", fail=True), send_outbox=counting("send_outbox"),
                reminders=counting("reminders"), incomplete_timeouts=counting("incomplete_timeouts"))
    timer = threading.Timer(8, stop.set)  # safety net: the test fails below rather than hangs
    timer.start()
    try:
        failed = run_scheduler(jobs, fast_settings(tmp_path), stop=stop)
    finally:
        timer.cancel()
    assert all(n >= 3 for n in counts.values()), counts
    assert failed == ("poll",)
    assert capsys.readouterr().out == ""


def test_a_slow_job_never_runs_twice_at_once(tmp_path):
    running, overlaps, runs = [0], [0], [0]
    lock = threading.Lock()
    stop = threading.Event()

    def slow_poll():
        with lock:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        time.sleep(0.5)  # five poll intervals
        with lock:
            running[0] -= 1
            runs[0] += 1
            if runs[0] >= 2:
                stop.set()

    timer = threading.Timer(8, stop.set)
    timer.start()
    try:
        run_scheduler(Jobs(poll=slow_poll, send_outbox=noop, reminders=noop, incomplete_timeouts=noop),
                      fast_settings(tmp_path), stop=stop)
    finally:
        timer.cancel()
    assert runs[0] >= 2 and overlaps[0] == 1


DAEMON = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from mailbot.adapters.scheduler import Jobs, run_scheduler
    from mailbot.config import load_config
    from mailbot.logsetup import configure_logging

    marks = Path(sys.argv[1])
    settings = load_config(None, {})
    configure_logging(settings)

    def slow_poll():
        with open(marks / "poll.log", "a") as f:
            f.write("started\\n")
        time.sleep(2)
        with open(marks / "poll.log", "a") as f:
            f.write("finished\\n")

    def noop():
        pass

    run_scheduler(Jobs(poll=slow_poll, send_outbox=noop, reminders=noop, incomplete_timeouts=noop), settings)
    (marks / "exited").write_text("clean")
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_slow_job_lets_it_finish_then_exits_cleanly(tmp_path, signum):
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        log = tmp_path / "poll.log"
        while not (log.exists() and "started" in log.read_text()):
            assert time.monotonic() < deadline, "the poll job never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert log.read_text() == "started\nfinished\n"  # finished, and not started again
    assert (tmp_path / "exited").read_text() == "clean"
    assert out == ""
    assert f"{signal.Signals(signum).name}: no new job starts" in err and "scheduler stopped" in err


def test_digest_runs_at_the_configured_times_in_the_configured_zone(tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from mailbot.adapters.scheduler import build_scheduler

    config = tmp_path / "config.toml"
    config.write_text('[staff]\ndigest_times = ["07:30", "13:30"]\ntimezone = "Europe/Paris"\n')
    jobs = Jobs(poll=noop, send_outbox=noop, reminders=noop, incomplete_timeouts=noop, digest=noop)
    scheduler = build_scheduler(jobs, load_config(config, {}), set(), threading.Lock())
    ids = {job.id for job in scheduler.get_jobs()}
    assert ids == {"poll", "send_outbox", "reminders", "incomplete_timeouts", "digest-07:30", "digest-13:30"}
    paris = ZoneInfo("Europe/Paris")
    # 08:00 in Paris on a summer day is 06:00 UTC: the next digests are 13:30 and the next day's 07:30, Paris time.
    after = datetime(2024, 7, 1, 8, 0, tzinfo=paris)
    fire = sorted(job.trigger.get_next_fire_time(None, after) for job in scheduler.get_jobs()
                  if job.id.startswith("digest"))
    assert fire == [datetime(2024, 7, 1, 13, 30, tzinfo=paris), datetime(2024, 7, 2, 7, 30, tzinfo=paris)]
    without = build_scheduler(Jobs(poll=noop, send_outbox=noop, reminders=noop, incomplete_timeouts=noop),
                              load_config(config, {}), set(), threading.Lock())
    assert not any(job.id.startswith("digest") for job in without.get_jobs())
