"""Benchmark of the mailbox loop against a real Dovecot and a real SMTP server (figures, not a test).

1. APPENDs N mails (default 2,000: the dev corpus cycled, each made unique)
   to a fresh IMAP inbox of a Dovecot started for the run.
2. Raw IMAP fetch rate: the same mails fetched with ``ImapSource.fetch_new``
   (BODY.PEEK[], nothing else), in this run, as the reference.
3. End to end: ``Service.drain`` until INBOX is empty (fetch, parse, triage,
   store, replies queued, MOVE to "Traité"), SQLite under a temp folder:
   mails/s and peak RSS of this process.
4. Reply delay with IDLE: a ``mailbot run`` daemon (IMAP IDLE on) is
   started; mails are APPENDed one at a time and the delay until the reply
   reaches the SMTP server is measured (median and p95 over 50 mails).

Targets: >= 200 mails/s end to end, peak RSS <= 500 MB, p95 delay <= 2 s.

    .venv/bin/python bench/loop.py [--mails N] [--latency-mails M]

Needs Dovecot (``dovecot-imapd``) installed; uses the integration tests'
server helpers.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration import conftest as servers

SUPPORT = "support@si-samu.test"


def start_dovecot(tmp: Path) -> tuple[object, servers.DovecotServer]:
    binary = servers._which("dovecot")
    if binary is None:
        sys.exit("Dovecot is not installed: " + servers.INSTALL_HINT)
    process, port, _tls, config_path, log_path = servers._start_dovecot(binary, tmp, None)
    if not servers.wait_for_port(port, process=process):
        sys.exit("Dovecot did not start")
    server = servers.DovecotServer(port=port, tls_port=None, password=servers._PASSWORD, ca_file=None,
                                   config_path=config_path, log_path=log_path, doveadm=servers._which("doveadm"))
    return process, server


def unique(raw: bytes, n: int) -> bytes:
    """The corpus mail with its own Message-ID (so that no two are the same mail)."""
    new_id = b"<bench-%d@bench.si-samu.test>" % n
    raw, count = re.subn(rb"(?im)^message-id:[^\r\n]*(\r?\n[ \t][^\r\n]*)*", b"Message-ID: " + new_id, raw, count=1)
    return raw if count else b"Message-ID: " + new_id + b"\r\n" + raw


def append_all(dovecot, account: str, raws: list[bytes]) -> float:
    started = time.perf_counter()
    with dovecot.client(account) as client:
        for raw in raws:
            client.append("INBOX", raw)
    return time.perf_counter() - started


def corpus() -> tuple[list[bytes], list[bytes]]:
    folder = ROOT.parent / "shared" / "corpus" / "dev" / "messages"
    if not folder.is_dir():
        folder = ROOT / "samples"
    files = sorted(folder.glob("*.eml"))
    raws = [p.read_bytes() for p in files]
    answered = []
    labels = folder.parent / "labels.jsonl"
    if labels.exists():
        import json

        kinds = {json.loads(line)["file"].split("/")[-1]: json.loads(line)
                 for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()}
        answered = [p.read_bytes() for p in files
                    if kinds.get(p.name, {}).get("kind") == "incident" and kinds[p.name].get("cas") in "ABCD"]
    return raws, answered or raws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--latency-mails", type=int, default=50)
    args = ap.parse_args()

    import datetime as dt

    from mailbot.adapters.imap import ImapSource
    from mailbot.adapters.smtp import SmtpSender
    from mailbot.adapters.store import Store
    from mailbot.app import STORE_ERRORS
    from mailbot.rulefiles import load_rulebook
    from mailbot.service import Service, ServiceSettings
    from mailbot.triage import Engine

    tmp = Path(tempfile.mkdtemp(prefix="mailbot-bench-"))
    tmp.chmod(0o755)
    process, dovecot = start_dovecot(tmp)
    smtp = servers.SmtpTestServer()
    smtp.start()
    daemon = None
    try:
        raws, answered = corpus()
        mails = [unique(raws[i % len(raws)], i) for i in range(args.mails)]
        account = dovecot.new_user()
        append_s = append_all(dovecot, account, mails)
        imap = dovecot.settings(account, batch_size=100, timeout=60.0)
        print(f"corpus            {len(raws)} distinct mails, cycled to {len(mails)} (made unique)")
        print(f"append            {len(mails) / append_s:.0f} mails/s (IMAP APPEND, setup)")

        source = ImapSource(imap)
        started = time.perf_counter()
        fetched = sum(1 for _ in source.fetch_new())
        fetch_s = time.perf_counter() - started
        source.close()
        print(f"imap_fetch_raw    {fetched / fetch_s:.0f} mails/s ({fetched} mails, BODY.PEEK[] only)")

        engine = Engine(load_rulebook(), own_addresses=(SUPPORT,))
        store = Store.open(f"sqlite:///{tmp / 'var' / 'mailbot.db'}")
        settings = ServiceSettings(bot_address=SUPPORT, own_addresses=frozenset({SUPPORT}),
                                   message_id_domain="si-samu.test", source_name="imap:bench",
                                   replies_per_hour=100_000, poll_batch=400)
        service = Service(engine, store, ImapSource(imap), SmtpSender(smtp.settings()), settings,
                          lambda: dt.datetime.now(dt.UTC), crash=lambda *a: None,
                          store_errors=STORE_ERRORS)
        started = time.perf_counter()
        report = service.drain()
        loop_s = time.perf_counter() - started
        left = len(dovecot.read_folder(account, "INBOX"))
        service.source.close()
        with store.read() as tx:
            counts = tx.mail_counts()
            queued = sum(tx.outbox_counts().values())
        store.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        done = report.processed + report.ignored + report.quarantined
        print(f"end_to_end        {done / loop_s:.0f} mails/s   (target >= 200; fetch, parse, triage, store, "
              f"replies queued, MOVE)")
        print(f"                  {done} mails in {loop_s:.1f} s: {counts}; {queued} replies queued; "
              f"{left} left in INBOX")
        print(f"peak_rss          {rss:.0f} MB   (target <= 500 MB)")

        # --- reply delay with IDLE, through the real daemon --------------------
        account = dovecot.new_user()
        config = tmp / "config.toml"
        config.write_text(f"""
[mailbox]
kind = "imap"
[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
username = "{account}"
password_env = "MAILBOT_BENCH_IMAP_PASSWORD"
idle = true
[smtp]
kind = "smtp"
host = "127.0.0.1"
port = {smtp.port}
security = "none"
timeout_seconds = 5
[bot]
address = "{SUPPORT}"
[database]
url = "sqlite:///{tmp / 'daemon.db'}"
[poll]
interval_seconds = 60
[outbox]
interval_seconds = 30
[dialogue]
replies_per_sender_per_hour = 100000
[logging]
file = "{tmp / 'daemon.log'}"
level = "WARNING"
""", encoding="utf-8")
        env = {**os.environ, "MAILBOT_BENCH_IMAP_PASSWORD": dovecot.password, "PYTHONPATH": str(ROOT)}
        daemon = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--config", str(config)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delays = []
        base = 1_000_000
        for i in range(args.latency_mails + 1):
            raw = unique(answered[i % len(answered)], base + i)
            before = len(smtp.received)
            sent_at = time.perf_counter()
            dovecot.append(account, raw)
            deadline = sent_at + (60 if i == 0 else 15)   # the first waits for the daemon to start
            while len(smtp.received) == before and time.perf_counter() < deadline:
                time.sleep(0.005)
            if len(smtp.received) == before:
                print(f"  mail {i}: no reply within the deadline")
                continue
            if i > 0:   # mail 0 only warms the daemon up
                delays.append(time.perf_counter() - sent_at)
        if delays:
            delays.sort()
            p95 = delays[min(len(delays) - 1, round(0.95 * len(delays)) - 1)]
            print(f"idle_reply_delay  median {statistics.median(delays):.3f} s, p95 {p95:.3f} s, "
                  f"max {delays[-1]:.3f} s over {len(delays)} mails   (target p95 <= 2 s)")
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        smtp.stop()
        servers._stop_dovecot(process, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
