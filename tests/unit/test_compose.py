"""Replies: text from the templates, headers of an automatic responder, no header injection."""

from __future__ import annotations

import datetime as dt
import email
from dataclasses import replace
from email.policy import default

import pytest

from mailbot.compose import (
    DEFAULT_SUBJECT,
    check_templates,
    clean_header_text,
    clean_subject,
    is_valid_message_id,
    make_message_id,
    render_reply,
)
from mailbot.dialogue import ReplyPlan
from mailbot.errors import RuleFileError
from mailbot.loops import may_reply
from mailbot.model import Verdict
from mailbot.parsing import parse_message
from mailbot.rulefiles import load_rulebook

NOW = dt.datetime(2026, 11, 17, 14, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
ASK = ReplyPlan("ask_missing", ask=("start_time", "browser"), ask_optional=("screenshots", "device_type"),
                context={"cas": "B", "application": "nice", "criticity": 2, "round": 1, "filed": False})


@pytest.fixture(scope="module")
def rb():
    return load_rulebook()


def reply(rb, plan=ASK, **kw):
    args = dict(ticket_number="SAMU-000123", to_addr="rachid.benali@ch-montclar.test", to_name="Rachid Benali",
                original_subject="RE: TR: [SAMU 48] pb réécoute", in_reply_to="<c758@ch-montclar.test>",
                references=("<root@ch-montclar.test>",), rulebook=rb, from_addr="support@si-samu.test",
                message_id=make_message_id("si-samu.test", "mail-42:ask"), now=NOW)
    args.update(kw)
    return render_reply(plan, **args)


def reparsed(msg):
    return email.message_from_bytes(msg.as_bytes(), policy=default)


def test_reply_carries_the_headers_of_an_automatic_responder(rb):
    m = reparsed(reply(rb))
    assert m["Subject"] == "[SAMU-000123] [SAMU 48] pb réécoute"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["X-Auto-Response-Suppress"] == "All"
    assert m["X-Mailbot-Ticket"] == "SAMU-000123"
    assert m["In-Reply-To"] == "<c758@ch-montclar.test>"
    assert m["References"].split() == ["<root@ch-montclar.test>", "<c758@ch-montclar.test>"]
    assert m["Message-ID"] == make_message_id("si-samu.test", "mail-42:ask")
    assert m["Date"] == "Tue, 17 Nov 2026 14:05:00 +0100"
    assert m["To"].addresses[0].addr_spec == "rachid.benali@ch-montclar.test"
    assert m["From"].addresses[0].addr_spec == "support@si-samu.test"


def test_body_asks_each_missing_field_as_a_plain_question_then_the_if_possible_ones(rb):
    body = reparsed(reply(rb)).get_content()
    lines = body.splitlines()
    assert lines[0] == "Bonjour Rachid Benali,"
    start = lines.index("- " + rb.questions["start_time"])
    assert lines[start + 1] == "- " + rb.questions["browser"]
    possibly = lines.index("Si possible :")
    assert possibly > start + 1
    # The "Si possible :" prefix of fields.toml is not repeated under the heading.
    assert lines[possibly + 1] == "- Pouvez-vous joindre une capture d'écran ?"
    assert "SAMU-000123" in body


def test_no_optional_heading_without_optional_questions(rb):
    body = reparsed(reply(rb, plan=replace(ASK, ask_optional=()))).get_content()
    assert "Si possible" not in body and "Bonjour Rachid Benali," in body


@pytest.mark.parametrize("template,expect", [
    ("call_hotline_a", "TÉLÉPHONEZ MAINTENANT"),
    ("call_hotline_c", "téléphoner à la hotline"),
    ("redirect_local_it", "service informatique (DSI)"),
    ("filed_ack", "sera traitée sous 48 à 72 heures"),
    ("reminder", "pas encore reçu de réponse"),
    ("filed_incomplete", "sans toutes les informations"),
])
def test_every_template_renders(rb, template, expect):
    plan = ReplyPlan(template, ask=("start_time",), context={"cas": "B", "criticity": 2, "round": 2,
                                                             "checklist_fields": ("impacted_lines",),
                                                             "missing_fields": ("browser",)})
    body = reparsed(reply(rb, plan=plan)).get_content()
    assert expect in body
    assert "{{" not in body and "{%" not in body and "{#" not in body


def test_cas_a_reply_lists_what_to_give_on_the_phone(rb):
    plan = ReplyPlan("call_hotline_a", ask=("impacted_lines",), context={
        "cas": "A", "criticity": 1, "checklist_fields": ("impacted_lines", "otn_tests")})
    body = reparsed(reply(rb, plan=plan)).get_content()
    assert rb.questions["impacted_lines"] in body
    assert "Quels sont les résultats des appels de test du Pack OTN ?" in body
    assert rb.questions["start_time"] not in body


def test_no_ticket_no_tag(rb):
    m = reparsed(reply(rb, plan=ReplyPlan("redirect_local_it"), ticket_number=None, original_subject=""))
    assert m["Subject"] == f"Re: {DEFAULT_SUBJECT}"
    assert m["X-Mailbot-Ticket"] is None


@pytest.mark.parametrize("subject,expected", [
    ("RE: TR: Fwd: pb réécoute", "pb réécoute"),
    ("RE: [SAMU-000004] RE: pb réécoute", "pb réécoute"),
    ("AW: WG: Re[2]: Bandeau bloqué", "Bandeau bloqué"),
    ("  ", ""),
    ("x" * 300, "x" * 119 + "…"),
])
def test_clean_subject(subject, expected):
    assert clean_subject(subject) == expected


def test_crlf_in_subject_and_name_cannot_inject_headers(rb):
    # What a decoded "=?UTF-8?Q?=0D=0ABcc:_evil@example.com?=" subject becomes (reliability §3.1).
    m = reply(rb, original_subject="Hello\r\nBcc: evil@example.com", to_name="Eve\nBcc: evil@example.com\u2028x")
    raw = m.as_bytes()
    parsed = email.message_from_bytes(raw, policy=default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "[SAMU-000123] Hello Bcc: evil@example.com"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["rachid.benali@ch-montclar.test"]
    assert b"\nBcc:" not in raw


def test_bad_message_ids_from_the_incoming_mail_are_dropped(rb):
    m = reparsed(reply(rb, in_reply_to="<a b@c>\r\nBcc: x@y", references=("junk", "<ok@x.test>", "<x@y>\nX: 1")))
    assert m["In-Reply-To"] is None
    assert m["References"] == "<ok@x.test>"


def test_references_are_capped_keeping_the_root(rb):
    refs = tuple(f"<r{i}@x.test>" for i in range(40))
    ids = reparsed(reply(rb, references=refs))["References"].split()
    assert len(ids) == 20 and ids[0] == "<r0@x.test>" and ids[-1] == "<c758@ch-montclar.test>"


@pytest.mark.parametrize("kw", [
    {"to_addr": "evil@example.com\r\nBcc: x@y"},
    {"to_addr": "a@b@c"},
    {"to_addr": ""},
    {"message_id": "no-brackets@x"},
    {"now": dt.datetime(2026, 11, 17, 14, 5)},
    {"ticket_number": "SAMU 1\nX: y"},
])
def test_unusable_values_are_refused(rb, kw):
    with pytest.raises(ValueError):
        reply(rb, **kw)


def test_message_id_is_deterministic_and_valid():
    a = make_message_id("si-samu.test", "mail-42:ask")
    assert a == make_message_id("si-samu.test", "mail-42:ask")
    assert a != make_message_id("si-samu.test", "mail-42:ack")
    assert is_valid_message_id(a) and a.endswith("@si-samu.test>")
    with pytest.raises(ValueError):
        make_message_id("bad domain", "x")


def test_clean_header_text_removes_controls_and_bidi():
    assert clean_header_text("a\x00b\u202ec\r\nd\te") == "a b c d e"


def test_our_reply_parses_back_and_is_never_answered(rb):
    raw = reply(rb).as_bytes()
    mail = parse_message(raw)
    assert mail.subject == "[SAMU-000123] [SAMU 48] pb réécoute"
    assert mail.from_addr == "support@si-samu.test" and mail.in_reply_to == "<c758@ch-montclar.test>"
    ok, why = may_reply(mail, Verdict(kind="incident"), set(), [], NOW)
    assert not ok and "X-Mailbot-Ticket" in why


def test_shipped_templates_are_valid(rb):
    assert check_templates(rb) == []


def test_check_templates_names_the_file_and_the_placeholder(rb):
    templates = dict(rb.templates)
    templates["filed_ack"] = "{{ greeting }}\nVotre ticket {{ tiket }}.\n"
    templates["reminder"] = "Bonjour\n{% if round %}\nsans fin\n"
    del templates["redirect_local_it"]
    problems = check_templates(replace(rb, templates=templates))
    text = [str(p) for p in problems]
    typo = next(p for p in problems if p.source == "templates/filed_ack.txt")
    assert typo.key == "tiket" and "did you mean 'ticket'" in typo.message
    assert any(p.source == "templates/reminder.txt" and "syntax" in p.message for p in problems)
    assert any("templates/redirect_local_it.txt" in t and "missing" in t for t in text)


def test_a_broken_template_is_an_operator_error_at_render(rb):
    broken = replace(rb, templates={**rb.templates, "ask_missing": "{{ nope }}"})
    with pytest.raises(RuleFileError, match="ask_missing"):
        reply(broken)


def test_templates_cannot_reach_python_objects(rb):
    evil = replace(rb, templates={**rb.templates,
                                  "ask_missing": "{{ greeting.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(RuleFileError):
        reply(evil)
