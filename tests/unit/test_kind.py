"""Kind of mail (policy §1): headers first, then wording."""

from __future__ import annotations

import pytest

from mailbot.parsing import parse_message


def _mail(headers: str, body: str = "Bonjour,\nle portail ne s'affiche plus depuis 9h.\n") -> bytes:
    base = ("From: Agent <agent@ch-exemple.test>\nTo: support@si-samu.test\n"
            "Date: Mon, 16 Nov 2026 10:00:00 +0100\nMessage-ID: <k1@ch-exemple.test>\n")
    return (base + headers + "Content-Type: text/plain; charset=utf-8\n\n" + body).encode()


@pytest.mark.parametrize("headers,kind", [
    ("Subject: portail\n", "incident"),
    ("Subject: Réponse automatique : portail\nAuto-Submitted: auto-replied\n", "autoreply"),
    ("Subject: x\nX-Autoreply: yes\n", "autoreply"),
    ("Subject: x\nPrecedence: bulk\n", "noise"),
    ("Subject: x\nList-Id: <arm.listes.test>\n", "noise"),
    ("Subject: x\nList-Unsubscribe: <mailto:u@listes.test>\n", "noise"),
    ("Subject: Auto-Submitted no\nAuto-Submitted: no\n", "incident"),
])
def test_headers_decide(engine, headers, kind):
    assert engine.triage(parse_message(_mail(headers))).kind == kind


def test_out_of_office_without_header(engine):
    raw = _mail("Subject: Re: [SAMU-000012] portail\nIn-Reply-To: <r1@si-samu.test>\n",
                "Bonjour,\nJe suis absent du bureau jusqu'au 30 novembre, sans accès à ma messagerie.\n")
    assert engine.triage(parse_message(raw)).kind == "autoreply"


def test_resolution_notice_is_a_followup(engine):
    raw = _mail("Subject: réécoute\n", "Rebonjour, c'est revenu, vous pouvez fermer le ticket. Merci\n")
    v = engine.triage(parse_message(raw))
    assert v.kind == "followup" and v.cas is None and v.missing == ()


def test_answer_to_our_ticket_is_a_followup(engine):
    raw = _mail("Subject: RE: [SAMU-000123] Portail : informations manquantes\nIn-Reply-To: <r2@si-samu.test>\n",
                "Firefox 128, carte CPS.\n")
    v = engine.triage(parse_message(raw))
    assert v.kind == "followup" and v.fields["browser"] == "firefox" and v.fields["auth_mode"] == "cps"


def test_own_address_is_never_an_incident(engine):
    from mailbot.triage import Engine

    own = Engine(engine.rulebook, own_addresses=("agent@ch-exemple.test",))
    assert own.triage(parse_message(_mail("Subject: portail\n"))).kind == "noise"


def test_not_a_mail_has_a_reason(engine):
    v = engine.triage(parse_message(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)))
    assert v.kind == "noise" and v.reason.startswith("not an RFC 5322 message")


@pytest.mark.parametrize("name,kind", [
    ("flanker__bounce__mailbox-full.eml", "bounce"),
    ("sisimai__lhost-postfix-01.eml", "bounce"),
    ("sisimai__rfc3834-01.eml", "autoreply"),
    ("flanker__complaints__yahoo.eml", "noise"),
])
def test_wild_robots(triage_file, name, kind):
    from tests.conftest import shared_or_skip

    assert triage_file(shared_or_skip("corpus", "wild", name)).kind == kind
