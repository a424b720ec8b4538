"""Loop prevention: who the bot must never answer (RFC 3834, reliability §2)."""

from __future__ import annotations

import datetime as dt

import pytest

from mailbot.loops import is_robot_address, is_valid_address, may_reply, reply_address
from mailbot.model import ParsedMail, Verdict

NOW = dt.datetime(2026, 11, 17, 14, 0, tzinfo=dt.timezone.utc)
OWN = {"support@si-samu.test", "bot-bounces@si-samu.test"}
INCIDENT = Verdict(kind="incident", cas="B", application="portail", criticity=2)


def mail(from_addr="lea.martin@ch-a.test", headers=None, **kw) -> ParsedMail:
    hs = {k.lower(): (v,) for k, v in (headers or {}).items()}
    return ParsedMail(message_id="<m1@ch-a.test>", subject="Portail bloqué", from_addr=from_addr,
                      from_name="Léa Martin", headers=hs, **kw)


def ask(m, verdict=INCIDENT, recent=()):
    return may_reply(m, verdict, OWN, list(recent), NOW)


def test_an_ordinary_mail_may_be_answered():
    ok, why = ask(mail())
    assert ok and "lea.martin@ch-a.test" in why


@pytest.mark.parametrize("headers,words", [
    ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted"),
    ({"Auto-Submitted": "auto-generated"}, "Auto-Submitted"),
    ({"Auto-Submitted": "auto-notified"}, "Auto-Submitted"),
    ({"X-Autoreply": "yes"}, "x-autoreply"),
    ({"Precedence": "auto_reply"}, "auto_reply"),
    ({"Precedence": "bulk"}, "bulk"),
    ({"Precedence": "list"}, "list"),
    ({"List-Id": "<samu.lists.test>"}, "List"),
    ({"List-Unsubscribe": "<mailto:u@x.test>"}, "List"),
    ({"Return-Path": "<>"}, "null return path"),
    ({"X-Mailbot-Ticket": "SAMU-000001"}, "X-Mailbot-Ticket"),
    ({"X-Loop": "support@si-samu.test"}, "X-Loop"),
    ({"X-Auto-Response-Suppress": "All"}, "X-Auto-Response-Suppress"),
    ({"X-Auto-Response-Suppress": "OOF, AutoReply"}, "X-Auto-Response-Suppress"),
])
def test_robot_headers_mean_no_reply(headers, words):
    ok, why = ask(mail(headers=headers))
    assert not ok and words.lower() in why.lower()


def test_auto_submitted_no_is_a_person():
    assert ask(mail(headers={"Auto-Submitted": "no"}))[0]


def test_x_auto_response_suppress_for_receipts_only_does_not_block():
    assert ask(mail(headers={"X-Auto-Response-Suppress": "DR, RN, NRN"}))[0]


@pytest.mark.parametrize("address", [
    "noreply@ch-a.test", "no-reply@ch-a.test", "no-reply+tickets@ch-a.test", "NoReply.Portail@ch-a.test",
    "mailer-daemon@ch-a.test", "MAILER-DAEMON@ch-a.test", "postmaster@ch-a.test", "ne-pas-repondre@ch-a.test",
])
def test_robot_addresses_are_never_answered(address):
    assert is_robot_address(address)
    ok, why = ask(mail(from_addr=address.lower()))
    assert not ok and "robot" in why


def test_our_own_address_is_never_answered():
    ok, why = ask(mail(from_addr="support@si-samu.test"))
    assert not ok and "loop" in why
    ok, why = ask(mail(reply_to="support@si-samu.test"))
    assert not ok and "loop" in why


@pytest.mark.parametrize("kind", ["autoreply", "bounce", "noise"])
def test_verdicts_of_robots_mean_no_reply(kind):
    assert not ask(mail(), verdict=Verdict(kind=kind))[0]


def test_delivery_reports_mean_no_reply():
    m = mail(content_type="multipart/report", mime_types=("text/plain", "message/delivery-status"))
    ok, why = ask(m)
    assert not ok and "report" in why


def test_unreadable_or_addressless_mail_gets_no_reply():
    assert not ask(mail(error="not a mail"))[0]
    ok, why = ask(mail(from_addr=""))
    assert not ok and "From" in why
    ok, why = ask(mail(from_addr='"a b"@x.test'))
    assert not ok and "revalidation" in why


def test_reply_goes_to_reply_to_when_present():
    m = mail(reply_to="secretariat@ch-a.test")
    assert reply_address(m) == "secretariat@ch-a.test"
    assert reply_address(mail()) == "lea.martin@ch-a.test"
    assert reply_address(mail(reply_to="bad address@x")) is None
    assert reply_address(mail(from_addr="lea@hôpital.test")) == "lea@xn--hpital-ixa.test"


def test_rate_limit_per_sender_in_the_last_hour():
    five_recent = [NOW - dt.timedelta(minutes=m) for m in (1, 10, 20, 30, 50)]
    ok, why = ask(mail(), recent=five_recent)
    assert not ok and "rate limited" in why
    older = [NOW - dt.timedelta(minutes=m) for m in (1, 10, 20, 30, 61)]
    assert ask(mail(), recent=older)[0]
    assert may_reply(mail(), INCIDENT, OWN, five_recent, NOW, max_per_hour=10)[0]


@pytest.mark.parametrize("address,valid", [
    ("lea.martin@ch-a.test", True),
    ("a+tag@sub.ch-a.test", True),
    ("élodie@ch-a.test", False),            # no quoted / non-ASCII local parts on our envelope
    ("lea@hôpital.test", True),             # IDNA domain
    ("lea@ch-a", False),
    ("lea@-bad.test", False),
    ("a..b@x.test", False),
    ("a@b@x.test", False),
    ("lea@x.test\r\nRCPT TO:<evil@x>", False),
    ("", False),
])
def test_address_revalidation(address, valid):
    assert is_valid_address(address) is valid
