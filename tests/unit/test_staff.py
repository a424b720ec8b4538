"""Staff actions on tickets (mailbot.staff) and ``mailbot tickets`` (mailbot.cli_staff).

The API tests run on SQLite, and on PostgreSQL when ``MAILBOT_TEST_PG_URL``
is set (a fresh schema per test); the CLI tests on a SQLite file named in a
tmp configuration.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import sys
import types
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mailbot.adapters.store import Store
from mailbot.cli_staff import tickets
from mailbot.compose import make_message_id
from mailbot.dialogue import deadline_for, thread_decision
from mailbot.rulefiles import load_rulebook
from mailbot.staff import DeskSettings, StaffActionError, StaffDesk, list_tickets, reopen_in, show
from mailbot.teams import load_teams, parse_teams

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
LATER = T0 + dt.timedelta(hours=1)
BOT = "support@si-samu.test"
DOMAIN = "si-samu.test"
WRITER = "jean.dupont@ch-valmont.test"
NIR = "2 53 07 2B 073 004 70"          # a valid NIR (Corsica, key checks)
TEAMS = parse_teams("""
[n2-reseau]
name = "N2 réseau"
address = "n2-reseau@si-samu.test"
[applications-metier]
name = "Applications métier"
""")


@pytest.fixture(scope="module")
def rulebook():
    return load_rulebook()


PG_URL = os.environ.get("MAILBOT_TEST_PG_URL")


@pytest.fixture(params=[
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not PG_URL, reason="MAILBOT_TEST_PG_URL not set: PostgreSQL variant skipped")]),
])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store.open(f"sqlite:///{tmp_path / 'var' / 'mailbot.db'}")
        yield s
        s.close()
        return
    schema = f"mailbot_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    s = Store.open(url.render_as_string(hide_password=False))
    try:
        yield s
    finally:
        s.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def desk(store, rulebook):
    return StaffDesk(store, rulebook, TEAMS, DeskSettings(BOT, "Support SI-Samu", DOMAIN), clock=lambda: LATER)


def make_ticket(store, *, status="à traiter", criticity=2, created=T0, writer=WRITER, **values):
    """A ticket as the mailbox loop leaves it: one incoming message in its thread."""
    values = {"title": "B/portail – main courante", "writer_name": "Jean Dupont", "cas": "B",
              "application": "portail", "thread_subject": "Portail - main courante", "site_code": "VAL",
              "site_name": "CH Valmont", **values}
    with store.transaction() as tx:
        t = tx.create_ticket(now=created, status=status, writer_addr=writer, criticity=criticity,
                             deadline=deadline_for(criticity, created), **values)
        tx.add_message(t.id, direction="in", at=created, message_id=f"<in-{t.id}@ch-valmont.test>",
                       sender=writer, subject=values["thread_subject"], body_text="Le portail ne répond plus.")
        tx.add_participant(t.id, writer, "from", now=created)
    return t


def outbox(store) -> list:
    with store.read() as tx:
        return tx.due_outbox(dt.datetime(2100, 1, 1, tzinfo=UTC))


def events(store, ticket, type_=None) -> list:
    with store.read() as tx:
        found = tx.events(ticket.id)
    return [e for e in found if type_ is None or e.type == type_]


def parsed(row) -> EmailMessage:
    return email.message_from_bytes(row.raw, _class=EmailMessage, policy=email.policy.default)


def text_of(row) -> str:
    """The body as the writer reads it (CRLF on the wire, RFC 5322)."""
    return parsed(row).get_content().replace("\r\n", "\n")


# ----------------------------------------------------------------------------- take

def test_take_sets_the_person_in_charge_and_mails_the_writer_in_the_thread(store, desk):
    t = make_ticket(store)
    got = desk.take(t.number, "Alice Martin", LATER)
    assert (got.status, got.assignee, got.taken_at) == ("pris en charge", "Alice Martin", LATER)
    [event] = events(store, t, "taken")
    assert (event.actor, event.at, event.data["old"], event.data["new"]) == ("Alice Martin", LATER, "à traiter",
                                                                              "pris en charge")
    [row] = outbox(store)
    assert (row.to_addr, row.purpose, row.cause, row.ticket_id) == (WRITER, "taken", f"event:{event.id}", t.id)
    msg = parsed(row)
    assert msg["Message-ID"] == make_message_id(DOMAIN, f"event:{event.id}:taken") == row.message_id
    assert msg["In-Reply-To"] == f"<in-{t.id}@ch-valmont.test>"
    assert f"<in-{t.id}@ch-valmont.test>" in msg["References"]
    assert msg["Subject"] == f"[{t.number}] Portail - main courante"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"].addresses[0].addr_spec == WRITER
    body = text_of(row)
    assert f"Votre demande {t.number} est prise en charge par Alice Martin" in body
    assert body.startswith("Bonjour Jean Dupont,")
    assert "{{" not in body and "{#" not in body
    # The mail is part of the thread: the writer's answer to it finds the ticket.
    with store.read() as tx:
        assert tx.ticket_by_message_ids([row.message_id]).id == t.id
        assert tx.messages(t.id)[-1].direction == "out"


def test_take_by_the_same_person_twice_is_refused_and_a_takeover_mails_again(store, desk):
    t = make_ticket(store)
    desk.take(t, "Alice Martin", LATER)
    with pytest.raises(StaffActionError, match="Alice Martin already has it in charge"):
        desk.take(t, "Alice Martin", LATER)
    got = desk.take(t, "Bruno Petit", LATER + dt.timedelta(hours=1))
    assert got.assignee == "Bruno Petit" and got.taken_at == LATER   # first taking in charge kept
    rows = outbox(store)
    assert len(rows) == 2 and "prise en charge par Bruno Petit" in text_of(rows[1])
    # Threaded on the previous mail of ours, the newest of the thread.
    assert parsed(rows[1])["In-Reply-To"] == rows[0].message_id


def test_take_without_a_usable_writer_address_records_why_and_queues_nothing(store, desk):
    t = make_ticket(store, writer="pas-une-adresse")
    assert desk.take(t, "Alice Martin", LATER).status == "pris en charge"
    assert outbox(store) == []
    assert events(store, t, "reply_suppressed")[0].data["purpose"] == "taken"


# ----------------------------------------------------------------------------- assign, escalate, note

def test_assign_changes_the_person_not_the_status_and_sends_nothing(store, desk):
    t = make_ticket(store)
    got = desk.assign(t.number, "Bruno Petit", "Chef de salle", LATER)
    assert (got.status, got.assignee) == ("à traiter", "Bruno Petit")
    [event] = events(store, t, "assigned")
    assert (event.actor, event.data["assignee"]) == ("Chef de salle", "Bruno Petit")
    assert outbox(store) == []


def test_escalate_to_a_team_without_address(store, desk):
    t = make_ticket(store)
    got = desk.escalate(t, "applications-metier", "Alice Martin", LATER, note="éditeur à relancer")
    assert (got.status, got.team) == ("escaladé", "applications-metier")
    [event] = events(store, t, "escalated")
    assert event.actor == "Alice Martin"
    assert event.data["team_name"] == "Applications métier" and event.data["note"] == "éditeur à relancer"
    assert outbox(store) == []


def test_escalate_notifies_the_team_address_never_the_writer_and_masks_patient_data(store, desk):
    t = make_ticket(store, title=f"B/portail – dossier NIR {NIR}")
    desk.escalate(t, "n2-reseau", "Alice Martin", LATER, note=f"patient {NIR}, tél 06 12 34 56 78")
    [row] = outbox(store)
    assert row.to_addr == "n2-reseau@si-samu.test" and row.purpose == "escalation"
    assert WRITER not in row.raw.decode("ascii", "replace")
    text = text_of(row) + str(parsed(row)["Subject"])
    assert "N2 réseau" in text and "[NIR]" in text and "[TEL]" in text
    assert "073 004" not in text and "06 12 34" not in text
    assert parsed(row)["Auto-Submitted"] == "auto-generated"


def test_unknown_team_is_a_clear_error_listing_the_valid_ids(store, desk):
    t = make_ticket(store)
    with pytest.raises(StaffActionError) as info:
        desk.escalate(t, "n2-resau", "Alice Martin", LATER)
    assert "n2-reseau, applications-metier" in str(info.value)
    assert events(store, t, "escalated") == []


def test_escalating_twice_to_the_same_team_is_refused(store, desk):
    t = make_ticket(store)
    desk.escalate(t, "applications-metier", "Alice Martin", LATER)
    with pytest.raises(StaffActionError, match="already escalated"):
        desk.escalate(t, "applications-metier", "Alice Martin", LATER)


def test_a_note_is_history_only_never_mailed(store, desk):
    t = make_ticket(store)
    got = desk.note(t, "Rappeler M. Dupont après 14 h", "Alice Martin", LATER)
    assert got.status == "à traiter" and got.updated_at == LATER
    [event] = events(store, t, "note")
    assert (event.actor, event.data["text"]) == ("Alice Martin", "Rappeler M. Dupont après 14 h")
    assert outbox(store) == []
    with store.read() as tx:
        assert [m.direction for m in tx.messages(t.id)] == ["in"]


def test_empty_names_and_texts_are_refused(store, desk):
    t = make_ticket(store)
    with pytest.raises(StaffActionError, match="name is empty"):
        desk.take(t, "  ", LATER)
    with pytest.raises(StaffActionError, match="note text is empty"):
        desk.note(t, "\n ", "Alice", LATER)
    with pytest.raises(StaffActionError, match="resolution text is empty"):
        desk.resolve(t, "", "Alice", LATER)
    with pytest.raises(StaffActionError, match="no ticket"):
        desk.take("SAMU-999999", "Alice", LATER)


# ----------------------------------------------------------------------------- resolve, close, reopen

def test_resolve_mails_the_resolution_text_to_the_writer(store, desk):
    t = make_ticket(store)
    desk.take(t, "Alice Martin", LATER)
    at = LATER + dt.timedelta(hours=2)
    got = desk.resolve(t, "Le cache du navigateur a été vidé.\nLa main courante s'affiche de nouveau.",
                       "Alice Martin", at)
    assert (got.status, got.resolved_at) == ("résolu", at)
    [event] = events(store, t, "resolved")
    taken_row, resolved_row = outbox(store)
    assert (resolved_row.purpose, resolved_row.to_addr) == ("resolved", WRITER)
    msg = parsed(resolved_row)
    assert msg["Message-ID"] == make_message_id(DOMAIN, f"event:{event.id}:resolved")
    assert msg["In-Reply-To"] == taken_row.message_id
    body = text_of(resolved_row)
    assert f"Votre demande {t.number} est résolue" in body
    assert "Le cache du navigateur a été vidé.\nLa main courante s'affiche de nouveau." in body
    assert "Alice Martin" in body


def test_close_after_resolve_sends_nothing(store, desk):
    t = make_ticket(store)
    desk.resolve(t, "Réglé.", "Alice", LATER)
    got = desk.close(t, "Alice", LATER + dt.timedelta(days=1))
    assert (got.status, got.closed_at) == ("clos", LATER + dt.timedelta(days=1))
    assert [r.purpose for r in outbox(store)] == ["resolved"]
    assert events(store, t, "closed")[0].data == {"old": "résolu", "new": "clos"}


@pytest.mark.parametrize(
    ("status", "action", "words"),
    [
        ("clos", lambda d, t: d.resolve(t, "x", "Alice", LATER), "cannot resolve"),
        ("clos", lambda d, t: d.take(t, "Alice", LATER), "cannot take"),
        ("résolu", lambda d, t: d.take(t, "Alice", LATER), "reopen it first"),
        ("résolu", lambda d, t: d.resolve(t, "x", "Alice", LATER), "already resolved"),
        ("résolu", lambda d, t: d.escalate(t, "n2-reseau", "Alice", LATER), "cannot escalate"),
        ("clos", lambda d, t: d.close(t, "Alice", LATER), "already closed"),
        ("clos", lambda d, t: d.assign(t, "Bruno", "Alice", LATER), "cannot assign"),
        ("à traiter", lambda d, t: d.reopen(t, "Alice", LATER), "not resolved or closed"),
        ("pris en charge", lambda d, t: d.reopen(t, "Alice", LATER), "not resolved or closed"),
    ],
)
def test_forbidden_transitions_are_clear_errors_and_change_nothing(store, desk, status, action, words):
    t = make_ticket(store, status=status)
    with pytest.raises(StaffActionError) as info:
        action(desk, t)
    message = str(info.value)
    assert words in message and t.number in message and status in message
    with store.read() as tx:
        assert tx.ticket(t.id).status == status
        assert tx.events(t.id) == []
    assert outbox(store) == []


def test_a_note_on_a_closed_ticket_is_allowed(store, desk):
    t = make_ticket(store, status="clos")
    assert desk.note(t, "Doublon de SAMU-000001", "Alice", LATER).status == "clos"


def test_reopen_goes_back_to_the_technician_when_assigned(store, desk):
    t = make_ticket(store)
    desk.take(t, "Alice Martin", LATER)
    desk.resolve(t, "Réglé.", "Alice Martin", LATER)
    got = desk.reopen(t, "Alice Martin", LATER + dt.timedelta(hours=1), reason="toujours en panne")
    assert (got.status, got.assignee, got.resolved_at) == ("pris en charge", "Alice Martin", None)
    [event] = events(store, t, "reopened")
    assert event.data["old"] == "résolu" and event.data["reason"] == "toujours en panne"
    assert [r.purpose for r in outbox(store)] == ["taken", "resolved"]   # reopening mails nobody


def test_reopen_unassigned_and_closed_ticket_goes_to_a_traiter(store, desk):
    t = make_ticket(store, status="clos")
    got = desk.reopen(t, "Alice", LATER)
    assert (got.status, got.closed_at) == ("à traiter", None)


def test_the_writers_answer_to_a_resolved_ticket_reopens_it(store, desk):
    """What the mailbox loop does for ``thread_decision == "reopen"``."""
    t = make_ticket(store)
    desk.take(t, "Alice Martin", LATER)
    resolved = desk.resolve(t, "Réglé.", "Alice Martin", LATER)
    with store.read() as tx:
        participants = {p.address for p in tx.participants(t.id)}
    assert thread_decision(WRITER, resolved.status, participants, resolved.writer_addr) == "reopen"
    with store.transaction() as tx:
        got = reopen_in(tx, t.id, by=WRITER, now=LATER + dt.timedelta(hours=3), via="mail",
                        data={"mail_id": None})
    assert got.status == "pris en charge"
    [event] = events(store, t, "reopened")
    assert (event.actor, event.data["via"]) == (WRITER, "mail")


# ----------------------------------------------------------------------------- listing

def test_deadlines_per_criticity_and_overdue_with_a_fixed_clock(store, desk):
    one, two, three = (make_ticket(store, criticity=c) for c in (1, 2, 3))
    assert [t.deadline - T0 for t in (one, two, three)] == [dt.timedelta(hours=24), dt.timedelta(hours=72),
                                                            dt.timedelta(days=5)]
    done = make_ticket(store, criticity=1)
    desk.resolve(done, "Réglé.", "Alice", LATER)

    def overdue(hours):
        return [t.number for t in list_tickets(store, overdue=True, now=T0 + dt.timedelta(hours=hours))]

    assert overdue(23) == []
    assert overdue(25) == [one.number]          # the resolved criticity-1 ticket is not late
    assert overdue(73) == [one.number, two.number]
    assert overdue(121) == [one.number, two.number, three.number]
    with pytest.raises(ValueError):
        list_tickets(store, overdue=True)


def test_list_filters(store, desk):
    a = make_ticket(store, criticity=1, cas="A", application=None, site_code="VAL")
    b = make_ticket(store, criticity=2, site_code="NOR")
    w = make_ticket(store, status="en attente d'informations", criticity=3, site_code="val")
    desk.take(b, "Alice", LATER)

    def numbers(**f):
        return [t.number for t in list_tickets(store, **f)]

    assert numbers(status="pris en charge") == [b.number]
    assert numbers(criticity=1) == [a.number]
    assert numbers(cas="A") == [a.number]
    assert numbers(site="nor") == [b.number]
    assert numbers(waiting_for_writer=True) == [w.number]
    assert numbers(assignee="Alice") == [b.number]
    assert numbers(status=["à traiter", "pris en charge"], criticity=[1, 2]) == [a.number, b.number]
    with pytest.raises(StaffActionError, match="unknown status"):
        list_tickets(store, status="fermé")


def test_show_masks_patient_data_unless_originals_are_asked(store, desk):
    t = make_ticket(store)
    with store.transaction() as tx:
        tx.add_message(t.id, direction="in", at=LATER, message_id="<2@ch-valmont.test>", sender=WRITER,
                       subject="RE: Portail", body_text=f"Patient NIR {NIR}, né le 12/03/1980",
                       new_text=f"Patient NIR {NIR}")
    desk.note(t, f"rappeler au 06 12 34 56 78 pour {NIR}", "Alice", LATER)
    view = show(store, t.number)
    assert view.masked and len(view.participants) == 1 and len(view.messages) == 2
    shown = " ".join([view.messages[-1].body_text, view.messages[-1].new_text,
                      *(str(e.data) for e in view.events)])
    assert "073 004" not in shown and "12/03/1980" not in shown and "06 12 34" not in shown
    assert "[NIR]" in shown and "[DATE_NAISSANCE]" in shown and "[TEL]" in shown
    original = show(store, t.id, originals=True)
    assert NIR in original.messages[-1].body_text and not original.masked


# ----------------------------------------------------------------------------- CLI

@pytest.fixture
def cli(tmp_path):
    """Runs ``mailbot tickets …`` with a configuration on a tmp SQLite store."""
    db = tmp_path / "var" / "mailbot.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\naddress = "{BOT}"\n[database]\nurl = "sqlite:///{db}"\n'
                      '[staff]\ntimezone = "Europe/Paris"\n', encoding="utf-8")
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(tickets, [*args, "--config", str(config)], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    run.store = Store.open(f"sqlite:///{db}")
    yield run
    run.store.close()


def test_cli_list_shows_one_readable_line_per_ticket(cli):
    a = make_ticket(cli.store, criticity=1, site_code="VAL", title="A – réception des appels")
    make_ticket(cli.store, criticity=3, site_code="NOR", status="en attente d'informations")
    out = cli("list").output.splitlines()
    assert out[0].split()[:3] == ["ticket", "site", "status"]
    line = next(line for line in out if line.startswith(a.number))
    # 2026-11-04 08:00 UTC is 09:00 in Paris.
    for part in ("VAL", "à traiter", "1", "2026-11-04 09:00", "A – réception des appels"):
        assert part in line
    assert "2 ticket(s)" in out[-1]
    waiting = cli("list", "--waiting").output
    assert "NOR" in waiting and a.number not in waiting


def test_cli_list_overdue_at_a_fixed_time_and_json(cli):
    one = make_ticket(cli.store, criticity=1)
    two = make_ticket(cli.store, criticity=2)
    late = cli("list", "--overdue", "--at", "2026-11-04T10:00").output        # Paris time: 09:00 UTC
    assert one.number in late and two.number not in late and "1 overdue" in late
    data = json.loads(cli("list", "--json", "--criticity", "2").output)
    assert [d["number"] for d in data] == [two.number]
    assert data[0]["deadline"].startswith("2026-11-06T08:00")
    bad = cli("list", "--at", "demain", ok=False)
    assert bad.exit_code == 2 and "--at" in bad.output


def test_cli_actions_change_the_store_and_show_the_history(cli):
    t = make_ticket(cli.store)
    assert "taken in charge by Alice Martin" in cli("take", t.number, "--by", "Alice Martin").output
    cli("assign", t.number, "--to", "Bruno Petit", "--by", "Alice Martin")
    cli("escalate", "1", "--team", "n2-reseau", "--by", "Bruno Petit", "--note", "lien VPN coupé")
    cli("note", t.number, f"patient {NIR}", "--by", "Bruno Petit")
    cli("resolve", t.number, "Lien rétabli par l'opérateur.", "--by", "Bruno Petit")
    cli("close", t.number, "--by", "Bruno Petit")
    got = cli("reopen", t.number, "--by", "Bruno Petit", "--reason", "rechute").output
    assert "status « pris en charge »" in got
    with cli.store.read() as tx:
        ticket = tx.ticket(t.id)
        kinds = [e.type for e in tx.events(t.id)]
        purposes = [r.purpose for r in tx.due_outbox(dt.datetime(2100, 1, 1, tzinfo=UTC))]
    assert (ticket.status, ticket.assignee, ticket.team) == ("pris en charge", "Bruno Petit", "n2-reseau")
    assert [k for k in kinds if k != "reply_queued"] == ["taken", "assigned", "escalated", "note", "resolved",
                                                         "closed", "reopened"]
    assert purposes == ["taken", "resolved"]          # no team address in the shipped teams.toml
    shown = cli("show", t.number).output
    assert "escalated" in shown and "N2 réseau: lien VPN coupé" in shown and "[NIR]" in shown
    assert "073 004" not in shown
    assert NIR in cli("show", t.number, "--originals").output


def test_cli_errors_are_one_clear_line(cli):
    t = make_ticket(cli.store, status="clos")
    bad = cli("resolve", t.number, "x", "--by", "Alice", ok=False)
    assert bad.exit_code == 1 and "cannot resolve" in bad.output and "reopen it first" in bad.output
    bad = cli("escalate", t.number, "--team", "reseau", "--by", "Alice", ok=False)
    assert bad.exit_code == 1 and "n2-reseau, n3-reseau, applications-metier" in bad.output
    bad = cli("take", "SAMU-000042", "--by", "Alice", ok=False)
    assert bad.exit_code == 1 and "no ticket" in bad.output


def test_cli_export_uses_mailbot_export_when_present(cli, monkeypatch):
    make_ticket(cli.store)
    monkeypatch.setitem(sys.modules, "mailbot.export", None)     # absent: import fails
    bad = cli("export", "--format", "csv", ok=False)
    assert bad.exit_code == 1 and "export is not available" in bad.output

    seen = {}

    def export_tickets(tickets, events, fmt):
        seen.update(n=len(tickets), events=len(events), fmt=fmt)
        return "number\n" + "\n".join(t.number for t in tickets) + "\n"

    monkeypatch.setitem(sys.modules, "mailbot.export", types.SimpleNamespace(export_tickets=export_tickets))
    out = cli("export", "--format", "json").output
    assert out == "number\nSAMU-000001\n" and seen == {"n": 1, "events": 0, "fmt": "json"}


def test_cli_group_config_option(cli, tmp_path):
    make_ticket(cli.store)
    result = CliRunner().invoke(tickets, ["--config", str(tmp_path / "config.toml"), "list"])
    assert result.exit_code == 0 and "SAMU-000001" in result.output


def test_shipped_templates_and_teams_work_together(store, rulebook):
    desk = StaffDesk(store, rulebook, load_teams(Path(__file__).resolve().parents[2] / "rules"),
                     DeskSettings(BOT, "Support", DOMAIN))
    t = make_ticket(store)
    desk.take(t, "Alice", LATER)
    desk.escalate(t, "n3-reseau", "Alice", LATER)
    assert desk.show(t).ticket.team == "n3-reseau"
