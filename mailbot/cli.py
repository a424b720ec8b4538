"""Command line: ``mailbot triage|explain|eval|check-rules|demo|...``.

An adapter at the edge: reads files, prints. The judging is in the core.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from mailbot.errors import RuleFileError
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
@click.option("--samples", default=str(Path(__file__).resolve().parent.parent / "samples"), show_default=True,
              type=click.Path(exists=True, file_okay=False), help="Folder of sample .eml files.")
@click.option("--rules", default=str(DEFAULT_RULES_DIR), show_default=True)
def demo(samples: str, rules: str) -> None:
    """Triage the sample mails shipped in the repository and print a table."""
    engine = _engine(rules)
    files = sorted(Path(samples).glob("*.eml"))
    click.echo(f"{'mail':<28} {'kind':<9} {'cas':<3} {'application':<12} {'crit':<4} missing")
    click.echo("-" * 100)
    for path in files:
        mail = _parse_file(path)
        v = engine.triage(mail)
        click.echo(f"{path.name:<28} {v.kind:<9} {v.cas or '-':<3} {v.application or '-':<12} "
                   f"{v.criticity or '-'!s:<4} {', '.join(v.missing) or '-'}")
        click.echo(f"{'':<28} subject: {mail.subject[:70]}")
        if v.fields:
            click.echo(f"{'':<28} fields:  " + "; ".join(f"{k}={v.fields[k]}" for k in v.fields)[:140])
    click.echo(f"\n{len(files)} mails triaged with the rules in {rules}")


if __name__ == "__main__":
    main()
