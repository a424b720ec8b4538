"""Acceptance (issue 4 item 4): patient identifiers never leave the store.

500 generated mails (deterministic) carry valid NIRs (Corsica 2A/2B included,
grouped with spaces or dots, or compact), dates of birth ("né le",
"née le", "DDN :") and French phone numbers in their subject and body. Each
goes through the real parser and triage engine, becomes a ticket (store on
SQLite) with a title from :mod:`mailbot.titles`, is logged through the
configured :mod:`mailbot.logsetup` handler, and appears in a digest and an
alert. None of the identifiers may show in titles, digests (text and HTML),
alerts or logs. A 13+2 digit number whose key does NOT check is no NIR and
must come through unmasked.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from mailbot.adapters.store import Store
from mailbot.config import load_config
from mailbot.deadlines import deadline
from mailbot.digest import build_digest, build_digest_message, render_alert
from mailbot.logsetup import QUIET_LOGGERS, configure_logging, mail_logger
from mailbot.parsing import parse_message
from mailbot.rulefiles import DEFAULT_RULES_DIR
from mailbot.sites import load_sites
from mailbot.titles import make_title

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 16, 6, 30, tzinfo=UTC)
N_MAILS = 500
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")
DOMAINS = ("ch-valmont.test", "samu31.chu-exemple.test", "chr-orval.test", "ch-brecy.test", "gmail.test")
#: Problem sentences of the field (cases A, B, C), so tickets of every kind are made.
PROBLEMS = (
    ("plus aucun appel sur le 15 depuis 14h10", "Plus d'appels"),
    ("la main courante du portail ne s'affiche plus depuis 8h, sous Firefox 115", "main courante"),
    ("le bandeau est bloqué en connexion sur mon poste", "bandeau bloqué"),
    ("la réécoute dans Nice ne marche plus", "réécoute Nice"),
    ("le téléphone fixe du poste 3 redémarre en boucle depuis 9h", "téléphone poste 3"),
    ("impossible d'ouvrir la fiche patient dans le portail, erreur 500", "fiche patient"),
)


def nir_key(first13: str) -> int:
    # INSEE: 97 - (N mod 97); Corsica 2A -> 19, 2B -> 18 in the number.
    n = first13.replace("2A", "19").replace("2B", "18")
    return 97 - int(n) % 97


def make_nir(rng: random.Random) -> str:
    sex = rng.choice("12")
    year = f"{rng.randint(0, 99):02d}"
    month = f"{rng.randint(1, 12):02d}"
    dept = rng.choice(["2A", "2B", f"{rng.randint(1, 95):02d}"])
    if dept == "20":
        dept = "21"
    commune = f"{rng.randint(1, 999):03d}"
    order = f"{rng.randint(1, 999):03d}"
    first13 = sex + year + month + dept + commune + order
    return first13 + f"{nir_key(first13):02d}"


def written_nir(nir: str, rng: random.Random) -> str:
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:15]]
    style = rng.choice(("space", "dot", "compact"))
    return {"space": " ".join(groups), "dot": ".".join(groups), "compact": nir}[style]


def make_birth(rng: random.Random) -> tuple[str, str]:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1930, 2015)
    style = rng.randrange(4)
    if style == 0:
        date = f"{day:02d}/{month:02d}/{year}"
        return f"né le {date}", date
    if style == 1:
        date = f"{day} {MONTHS[month - 1]} {year}"
        return f"née le {date}", date
    if style == 2:
        date = f"{day:02d}.{month:02d}.{year}"
        return f"DDN : {date}", date
    date = f"{day:02d}-{month:02d}-{year}"
    return f"date de naissance : {date}", date


def make_phone(rng: random.Random) -> str:
    first = rng.choice("1234567")
    pairs = [f"{rng.randint(0, 99):02d}" for _ in range(4)]
    style = rng.randrange(4)
    if style == 0:
        return f"0{first} " + " ".join(pairs)
    if style == 1:
        return f"0{first}." + ".".join(pairs)
    if style == 2:
        return f"+33 {first} " + " ".join(pairs)
    return f"0{first}" + "".join(pairs)


def make_mail(i: int, rng: random.Random) -> tuple[bytes, list[str], str]:
    nir = written_nir(make_nir(rng), rng)
    birth_phrase, birth = make_birth(rng)
    phone = make_phone(rng)
    problem, subject_words = PROBLEMS[rng.randrange(len(PROBLEMS))]
    name = rng.choice(("Mme Durand", "M. Petit", "le patient", "la patiente"))
    where = rng.choice(("subject", "body", "both"))
    msg = EmailMessage()
    msg["From"] = f"ARM {i} <arm{i}@{rng.choice(DOMAINS)}>"
    msg["To"] = "support@si-samu.test"
    subject = f"RE: {subject_words}"
    if where in ("subject", "both"):
        subject += f" - dossier {name} {birth_phrase} NIR {nir} tel {phone}"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(NOW - dt.timedelta(minutes=i))
    msg["Message-ID"] = f"<acc{i}@ch-valmont.test>"
    body = f"Bonjour,\n\n{problem}.\n"
    if where in ("body", "both"):
        body += (f"C'est arrivé pendant le dossier de {name}, {birth_phrase}, "
                 f"NIR {nir}, joignable au {phone}.\n")
    body += "\nMerci,\nARM – CRRA 31\n"
    msg.set_content(body)
    return msg.as_bytes(), [nir, birth, phone], f"tél {phone}, {birth_phrase}, NIR {nir}"


def _forms(identifier: str) -> set[str]:
    """The identifier as written and compact (no spaces, dots, dashes)."""
    compact = re.sub(r"[ .\-+]", "", identifier)
    return {identifier, compact} if len(compact) >= 8 else {identifier}


@pytest.fixture
def log_buffer(tmp_path):
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in QUIET_LOGGERS})
    config = tmp_path / "config.toml"
    config.write_text('[logging]\nlevel = "DEBUG"\nfile = "mailbot.log"\n', encoding="utf-8")
    handler = configure_logging(load_config(config, {}))
    yield tmp_path / "mailbot.log"
    root.removeHandler(handler)
    handler.close()
    root.setLevel(saved[0])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_no_identifier_leaves_the_store(engine, tmp_path, log_buffer):
    rng = random.Random(20261116)
    sites = load_sites(DEFAULT_RULES_DIR)
    log = logging.getLogger("mailbot.acceptance")
    store = Store.open(f"sqlite:///{tmp_path}/mailbot.db")
    identifiers: list[str] = []
    titles: list[str] = []
    alerts: list[str] = []
    cases = set()
    with store.transaction() as tx:
        for i in range(N_MAILS):
            raw, ids, quoted = make_mail(i, rng)
            identifiers += ids
            mail = parse_message(raw)
            verdict = engine.triage(mail)
            cases.add(verdict.cas)
            mlog = mail_logger(log, mail.message_id)
            mlog.info("mail from %s subject %r: %s", mail.from_addr, mail.subject, mail.new_text)
            mlog.warning("triage %s/%s fields=%s", verdict.cas, verdict.application, verdict.fields)
            title = make_title(verdict.cas, verdict.application, verdict.fields, mail.subject,
                               verdict.is_request, text=mail.new_text)
            titles.append(title)
            site = sites.resolve(mail.from_addr, mail.new_text + "\n" + mail.signature)
            created = mail.date or NOW
            fields = dict(verdict.fields)
            # What a mail says reaches the staff views through the fields too
            # (an error message quoted with the patient's file open, say).
            fields["error_message"] = quoted if i % 2 else mail.new_text[:300]
            level = verdict.criticity or rng.choice((1, 2, 3))
            t = tx.create_ticket(
                now=created, status=rng.choice(("à traiter", "en attente d'informations", "incomplet")),
                kind=verdict.kind, cas=verdict.cas, application=verdict.application, criticity=level,
                title=title, site_code=site.code if site else None, site_name=site.name if site else None,
                writer_addr=mail.from_addr, writer_name=mail.from_name, thread_subject=mail.subject,
                fields=fields, deadline=deadline(level, created), flagged_incomplete=(i % 7 == 0),
                last_question_at=created,
            )
            tx.add_message(t.id, direction="in", at=created, sender=mail.from_addr, subject=mail.subject,
                           body_text=mail.body_text, new_text=mail.new_text)
            alert = render_alert(t, now=NOW, from_addr="mailbot@si-samu.test", to_addrs=["astreinte@si-samu.test"])
            alerts.append(alert.as_string())
            if i == 0:
                first = tx.messages(t.id)[0]
                # the store keeps the originals
                assert all(x in first.body_text or x in first.subject for x in ids)
        tickets = tx.list_tickets()
    store.close()
    assert {"A", "B", "C"} <= cases

    digest = build_digest(tickets, now=NOW, since=NOW - dt.timedelta(days=2))
    message = build_digest_message(digest, from_addr="mailbot@si-samu.test", to_addrs=["desk@si-samu.test"])
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert len(digest.incomplete) > 0 and digest.new_total == N_MAILS
    for handler in logging.getLogger().handlers:
        handler.flush()
    logs = log_buffer.read_text(encoding="utf-8")
    assert logs.count("\n") >= 2 * N_MAILS

    outputs = {"titles": "\n".join(titles), "digest text": text, "digest html": html,
               "alerts": "\n".join(alerts), "logs": logs}
    # The compact check needs compact outputs too (a NIR could be rebuilt from its groups).
    compact = {name: re.sub(r"[ .\-+]", "", value) for name, value in outputs.items()}
    leaks = []
    for identifier in identifiers:
        for form in _forms(identifier):
            for name, output in outputs.items():
                haystack = compact[name] if form == re.sub(r"[ .\-+]", "", form) and form != identifier \
                    else output
                if form in haystack:
                    leaks.append((name, identifier))
    assert leaks == [], f"{len(leaks)} identifiers leaked, e.g. {leaks[:5]}"
    assert "[NIR]" in text and "[TEL]" in text and "[DATE_NAISSANCE]" in text


def test_a_number_failing_the_nir_key_is_not_masked_as_a_nir(tmp_path, log_buffer):
    rng = random.Random(7)
    nir = make_nir(rng)
    wrong = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"     # same 13 digits, key off by one
    assert wrong != nir
    shown = " ".join([wrong[0], wrong[1:3], wrong[3:5], wrong[5:7], wrong[7:10], wrong[10:13], wrong[13:]])

    class Ticket:
        id, number, status, criticity, cas, application = 1, "SAMU-000001", "à traiter", 1, "B", "portail"
        title = make_title("B", "portail", {"features": [f"dossier {shown}"]}, "", False)
        site_code, site_name, assignee, team = "VAL", "CH de Valmont", None, None
        created_at = updated_at = NOW - dt.timedelta(hours=1)
        deadline, last_question_at, flagged_incomplete, missing = NOW + dt.timedelta(hours=23), None, False, ()
        fields = {"error_message": f"référence {shown}"}  # noqa: RUF012 -- a read-only stand-in

    digest = build_digest([Ticket()], now=NOW, since=None)
    message = build_digest_message(digest, from_addr="mailbot@si-samu.test", to_addrs=["desk@si-samu.test"])
    text = message.get_body(("plain",)).get_content()
    alert = render_alert(Ticket(), now=NOW, from_addr="mailbot@si-samu.test", to_addrs=["a@si-samu.test"])
    logging.getLogger("mailbot.acceptance").info("référence %s", shown)
    logs = log_buffer.read_text(encoding="utf-8")
    for output in (text, alert.get_content(), logs, Ticket.title):
        assert "[NIR]" not in output
    assert shown in text and shown in alert.get_content() and shown in logs
