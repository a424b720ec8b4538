"""The embedded-default demo: the whole behaviour in a minute, no server.

An edge module (files, the app): it seeds a local Maildir under
``var/demo`` with the sample mails of ``samples/`` (one of them starts a
conversation), runs one full cycle (``mailbot run --once``), answers the
bot's question as the writer would (quoting the bot's reply), runs a second
cycle, and prints the tickets, their states, the replies sent and the staff
digest. SQLite under ``var/demo``; replies go to a local Maildir.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
import os
import shutil
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUPPORT = "support@si-samu.test"
# The writer's scripted answer to the bot's question on the Bandeau sample.
ANSWER = ("Bonjour,\n\nC'est sous Chrome 131.0.6778.86, on se connecte avec le code OTP reçu par SMS. "
          "Seulement mon poste, les collègues n'ont pas le souci. Le téléphone fixe marche normalement.\n\n"
          "Sophie")

CONFIG = """# Demo configuration (written by `mailbot demo`; paths are relative to this file)
[mailbox]
kind = "maildir"
path = "mail/inbox"

[smtp]
kind = "maildir"
path = "mail/outbox"

[bot]
address = "{support}"
message_id_domain = "si-samu.test"

[database]
url = "sqlite:///{db}"

[staff]
digest_to = ["n1-support@si-samu.test"]
alert_to = ["astreinte@si-samu.test"]

[rules]
path = "{rules}"

[logging]
level = "WARNING"
"""


def _answer_to(reply: email.message.Message) -> bytes:
    """The writer's answer, as a mail client writes it: new text on top,
    the bot's reply quoted below an Outlook header block."""
    body = reply.get_body(("plain",)) if isinstance(reply, EmailMessage) else None
    ours = body.get_content() if body is not None else ""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = reply["To"]
    msg["To"] = SUPPORT
    msg["Subject"] = f"RE: {reply['Subject']}"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="ch-exemple.test")
    msg["In-Reply-To"] = reply["Message-ID"]
    msg["References"] = reply["Message-ID"]
    msg.set_content(f"{ANSWER}\n\n________________________________\nDe : {reply['From']}\n"
                    f"Envoyé : {reply['Date']}\nÀ : {reply['To']}\nObjet : {reply['Subject']}\n\n{ours}")
    return msg.as_bytes()


def run_demo(echo: Callable[[str], None] = print, *, folder: Path | None = None) -> int:
    from mailbot.app import build_app, run
    from mailbot.config import load_config
    from mailbot.digest import build_digest, render_digest

    base = folder or REPO / "var" / "demo"
    shutil.rmtree(base, ignore_errors=True)
    (base / "mail").mkdir(parents=True)
    config = base / "config.toml"
    config.write_text(CONFIG.format(support=SUPPORT, db=(base / "mailbot.db").as_posix(),
                                    rules=(REPO / "rules").as_posix()), encoding="utf-8")
    settings = load_config(config, os.environ)
    inbox = mailbox.Maildir(base / "mail" / "inbox", create=True)
    samples = sorted((REPO / "samples").glob("*.eml"))
    for path in samples:
        inbox.add(path.read_bytes())
    outbox = mailbox.Maildir(base / "mail" / "outbox", create=True)

    def cycle(title: str) -> None:
        app = build_app(settings, once=True)
        try:
            failed = run(app, once=True)
        finally:
            app.close()
        echo(f"== {title}" + (f" (jobs failed: {', '.join(failed)})" if failed else ""))

    echo(f"Seeded {len(samples)} sample mails into {inbox._path}")  # noqa: SLF001 (display only)
    cycle("mailbot run --once: first cycle")
    seen = set(outbox.keys())
    waiting = [outbox[k] for k in seen
               if "bandeau" in str(outbox[k]["Subject"]).lower() and outbox[k]["To"] and "?" in _text(outbox[k])]
    if waiting:
        reply = email.message_from_bytes(bytes(waiting[0]), policy=email.policy.default)
        inbox.add(_answer_to(reply))
        echo(f"The writer answers the bot's question ({reply['Subject']}).")
        cycle("mailbot run --once: second cycle")

    app = build_app(settings, once=True)
    try:
        now = app.service.clock()
        with app.store.read() as tx:
            tickets = tx.list_tickets()
            echo("\nTickets")
            for t in tickets:
                missing = ", ".join(t.missing) or "-"
                echo(f"  {t.number}  {t.status:<26} cas {t.cas or '-'} {t.application or '':<12} "
                     f"crit {t.criticity or '-'}  site {t.site_code or '?'}  {t.title}")
                echo(f"  {'':<12}missing: {missing}")
            digest = build_digest(tickets, now=now, since=None, tz=settings.staff.zone)
        echo("\nReplies sent (local Maildir outbox)")
        for key in sorted(outbox.keys(), key=lambda k: str(outbox[k]["Date"])):
            m = email.message_from_bytes(bytes(outbox[key]), policy=email.policy.default)
            echo(f"  To: {m['To']}\n  Subject: {m['Subject']}")
            echo("    " + "\n    ".join(_text(m).strip().splitlines()[:8]))
            echo("")
        subject, text, _html = render_digest(digest)
        echo("Staff digest (the plain-text part; `mailbot digest` sends it as HTML + text)")
        echo(text)
    finally:
        app.close()
    echo(f"\nEverything is under {base} (mail/inbox, mail/outbox, mailbot.db).")
    return 0


def _text(message: email.message.Message) -> str:
    msg = email.message_from_bytes(bytes(message), policy=email.policy.default)
    body = msg.get_body(("plain",))
    return body.get_content() if body is not None else ""
