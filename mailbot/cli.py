"""Command line: ``mailbot run|ingest|check-config|triage|explain|eval|check-rules|demo``.

An adapter at the edge: reads files and standard input, prints, sets the exit
status. The judging is in the core, the mailbox loop in :mod:`mailbot.service`
wired by :mod:`mailbot.app`.

Exit statuses of ``mailbot ingest`` follow sysexits(3), as MTAs expect from a
pipe transport (RT's rt-mailgate does the same): 0 the mail is recorded (a
bad mail too: it is quarantined, never bounced), 75 EX_TEMPFAIL the store or
the configuration is unusable right now -- the MTA keeps the mail and tries
again later.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from mailbot.errors import ConfigError, RuleFileError
from mailbot.rulefiles import DEFAULT_RULES_DIR, load_rulebook


def _engine(rules: str):
    from mailbot.triage import Engine

    try:
        return Engine(load_rulebook(Path(rules)))
    except RuleFileError as exc:
        raise click.ClickException(f"rule error: {exc}") from None


def _parse_file(path: Path):
    from mailbot.parsing import parse_message

    return parse_message(path.read_bytes())


@click.group()
@click.version_option(package_name="mailbot")
def main() -> None:
    """mailbot: e-mail intake for SI-Samu IT incident support."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line (policy §7).")
@click.option("--rules", default=str(DEFAULT_RULES_DIR), show_default=True, help="Rules folder.")
def triage(files: tuple[str, ...], as_json: bool, rules: str) -> None:
    """Triage mail files (.eml): kind, case, application, criticity, fields, missing."""
    engine = _engine(rules)
    for name in files:
        verdict = engine.triage(_parse_file(Path(name)))
        out = {"file": name, **verdict.as_json()}
        if as_json:
            click.echo(json.dumps(out, ensure_ascii=False))
        else:
            click.echo(_table_line(out))


def _table_line(v: dict) -> str:
    fields = ", ".join(f"{k}={v['fields'][k]}" for k in v["fields"])
    return (f"{v['file']}\n  {v['kind']:<9} cas={v['cas'] or '-'} app={v['application'] or '-'} "
            f"crit={v['criticity'] or '-'}\n  fields: {fields or '-'}\n  missing: {', '.join(v['missing']) or '-'}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", default=str(DEFAULT_RULES_DIR), show_default=True)
def explain(file: str, rules: str) -> None:
    """Print each verdict with the rules that fired and the words they matched."""
    engine = _engine(rules)
    mail = _parse_file(Path(file))
    verdict = engine.triage(mail)
    click.echo(_table_line({"file": file, **verdict.as_json()}))
    if mail.error:
        click.echo(f"  not read as a mail: {mail.error}")
    click.echo("  why:")
    for hit in verdict.trace:
        words = f' "{hit.words}"' if hit.words else ""
        click.echo(f"    {hit.decides:<24} {hit.rule}{words}")


@main.command("check-rules")
@click.argument("folder", default=str(DEFAULT_RULES_DIR), type=click.Path())
def check_rules(folder: str) -> None:
    """Validate the rule files; errors name file, entry and key."""
    try:
        book = load_rulebook(Path(folder))
    except RuleFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for w in book.warnings:
        click.echo(f"warning: {w}")
    from mailbot.compose import check_templates

    problems = check_templates(book)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"rules OK: {len(book.signals)} signals, {len(book.criticity)} criticity rules, "
               f"{len(book.mandatory)} mandatory sets, {len(book.questions)} questions")


@main.command("eval")
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option("--rules", default=str(DEFAULT_RULES_DIR), show_default=True)
@click.option("--quiet", is_flag=True, help="Figures only, no misses.")
def eval_(corpus: str, rules: str, quiet: bool) -> None:
    """Score the triage against a labelled corpus (labels.jsonl)."""
    from mailbot.evaluation import Score

    root = Path(corpus)
    engine = _engine(rules)
    score = Score()
    started = time.perf_counter()
    for line in (root / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        want = json.loads(line)
        if want.get("ambiguous"):
            continue
        got = engine.triage(_parse_file(root / want["file"])).as_json()
        score.add(want["file"], got, want)
    for key, value in score.figures().items():
        click.echo(f"{key:<20} {value}")
    click.echo(f"{'seconds':<20} {time.perf_counter() - started:.2f}")
    if not quiet:
        click.echo("misses:")
        for m in score.misses:
            click.echo(f"  {m}")


@main.command()
@click.option("--triage-only", is_flag=True, help="Only triage samples/*.eml and print a table.")
@click.option("--rules", default=str(DEFAULT_RULES_DIR), show_default=True)
def demo(triage_only: bool, rules: str) -> None:
    """The whole behaviour on the embedded default (local Maildir + SQLite under
    var/demo, no server): triage, questions, a scripted answer, tickets, digest."""
    samples = Path(__file__).resolve().parent.parent / "samples"
    if triage_only:
        engine = _engine(rules)
        click.echo(f"{'mail':<28} {'kind':<9} {'cas':<3} {'application':<12} {'crit':<4} missing")
        for path in sorted(samples.glob("*.eml")):
            v = engine.triage(_parse_file(path))
            click.echo(f"{path.name:<28} {v.kind:<9} {v.cas or '-':<3} {v.application or '-':<12} "
                       f"{v.criticity or '-'!s:<4} {', '.join(v.missing) or '-'}")
        return
    from mailbot.demo import run_demo

    sys.exit(run_demo(click.echo))


EX_OK = 0
EX_TEMPFAIL = 75   # sysexits(3): "try again later"; the MTA keeps the mail


def _settings(config: str | None):
    from mailbot.config import load_config

    return load_config(Path(config) if config else None, os.environ)


@main.command()
@click.option("--once", is_flag=True, help="One full cycle (poll until the inbox is empty, send the outbox, "
                                           "reminders, timeouts), then exit.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Configuration file (default: the embedded default, everything under var/).")
def run(once: bool, config: str | None) -> None:
    """Run the bot: the daemon (SIGTERM finishes the current mail, then exits), or one cycle."""
    from mailbot.app import build_app
    from mailbot.app import run as run_app
    from mailbot.logsetup import configure_logging

    try:
        settings = _settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(settings)
    try:
        app = build_app(settings, once=once)
    except RuleFileError as exc:
        raise click.ClickException(f"rule error: {exc}") from None
    try:
        failed = run_app(app, once=once)
    finally:
        app.close()
    if failed:
        click.echo(f"jobs failed: {', '.join(failed)} (see the log)", err=True)
        sys.exit(1)


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="Configuration file (default: the embedded default).")
def ingest(config: str | None) -> None:
    """Record one mail read from standard input (an MTA pipe transport).

    Exit 0 when recorded (an unreadable mail is quarantined, exit 0 too),
    75 (EX_TEMPFAIL) when the store or configuration is unusable: the MTA
    keeps the mail and tries again.
    """
    raw = sys.stdin.buffer.read()
    try:
        from mailbot.app import NoSource, TransientError, build_app
        from mailbot.logsetup import configure_logging

        settings = _settings(config)
        configure_logging(settings)
        app = build_app(settings, source=NoSource())
    except Exception as exc:  # noqa: BLE001 - any failure here must keep the mail in the MTA queue
        click.echo(f"mailbot ingest: cannot start ({type(exc).__name__}): {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    try:
        try:
            outcome = app.service.ingest(raw)
        except TransientError as exc:
            click.echo(f"mailbot ingest: store unavailable, try again later ({exc})", err=True)
            sys.exit(EX_TEMPFAIL)
        except Exception as exc:  # noqa: BLE001
            click.echo(f"mailbot ingest: failed ({type(exc).__name__}); try again later", err=True)
            sys.exit(EX_TEMPFAIL)
        try:
            # Best effort: a daemon (or the next ingest) sends what is left.
            app.service.send_outbox()
        except Exception as exc:  # noqa: BLE001
            click.echo(f"mailbot ingest: recorded; replies not sent yet ({type(exc).__name__})", err=True)
    finally:
        app.close()
    click.echo(outcome)
    sys.exit(EX_OK)


@main.command("check-config")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def check_config_cmd(file: str | None) -> None:
    """Check a configuration file (default: the embedded default); one problem a line."""
    from mailbot.config import check_config

    problems = check_config(Path(file) if file else None, os.environ)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"configuration OK: {file or 'embedded default'}")


@main.command()
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="Configuration file.")
@click.option("--since", default=None, help="ISO date-time; default: the last digest (or 24 h).")
@click.option("--to", "to", multiple=True, help="Recipient (default: [staff] digest_to).")
@click.option("--print", "to_stdout", is_flag=True, help="Print the plain-text digest instead of sending it.")
def digest(config: str | None, since: str | None, to: tuple[str, ...], to_stdout: bool) -> None:
    """The staff summary: new tickets by criticity, overdue, waiting, incomplete, counts."""
    import datetime as dt

    from mailbot.app import build_app, digest_job
    from mailbot.digest import build_digest, render_digest

    settings = _settings(config)
    app = build_app(settings, once=True)
    try:
        start = dt.datetime.fromisoformat(since) if since else None
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=settings.staff.zone)
        if to_stdout:
            now = app.service.clock()
            with app.store.read() as tx:
                d = build_digest(tx.list_tickets(), now=now, since=start or now - dt.timedelta(days=1),
                                 tz=settings.staff.zone)
            subject, text, _html = render_digest(d)
            click.echo(subject)
            click.echo(text)
            return
        queued = digest_job(app, since=start, to=to)
        sent = app.service.send_outbox() if queued else 0
        click.echo(f"digest queued: {queued}, mails sent: {sent}")
    finally:
        app.close()


from mailbot.cli_staff import tickets  # noqa: E402  (the staff commands, in their own module)

main.add_command(tickets)


if __name__ == "__main__":
    main()
