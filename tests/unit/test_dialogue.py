"""The dialogue state machine, with hand-written verdicts and tickets (no mail, no engine)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from mailbot.dialogue import (
    Settings,
    TicketState,
    deadline_for,
    decide_followup,
    decide_new,
    decide_reminder,
    merge_fields,
    thread_decision,
)
from mailbot.model import Hit, Verdict
from mailbot.rulefiles import load_rulebook

PARIS = dt.timezone(dt.timedelta(hours=1))
T0 = dt.datetime(2026, 11, 17, 14, 5, tzinfo=PARIS)
S = Settings()


@pytest.fixture(scope="module")
def rb():
    return load_rulebook()


def portail(fields=None, missing=(), criticity=2, **kw) -> Verdict:
    return Verdict(kind="incident", cas="B", application="portail", criticity=criticity,
                   fields=dict(fields or {}), missing=tuple(missing), failure_reported=True, **kw)


def answer(fields=None, trace=()) -> Verdict:
    return Verdict(kind="followup", fields=dict(fields or {}), trace=tuple(trace))


PORTAIL_COMPLETE = {"start_time": "2026-11-17T13:00:00", "features": ["main courante"], "impact_scope": "partiel",
                    "browser": "firefox", "browser_version": "128.5.0esr", "auth_mode": "cps",
                    "environment": "production"}


def waiting_ticket(rb, fields, asked=1, created=T0, last=T0) -> TicketState:
    state = decide_new(portail(fields), rb, S, created, writer="lea@ch-a.test").state
    counts = {f: asked for f in state.ask_counts}
    return replace(state, number="SAMU-000007", ask_counts=counts, last_question_at=last)


# --- a new mail -------------------------------------------------------------

def test_cas_a_is_filed_at_once_with_a_call_now_reply_and_a_staff_alert(rb):
    v = Verdict(kind="incident", cas="A", criticity=1, fields={"reception": "nulle"}, failure_reported=True)
    d = decide_new(v, rb, S, T0, writer="Arm@Ch-A.test")
    assert d.action == "file_and_ask"
    assert d.state.status == "à traiter" and d.state.criticity == 1
    assert d.notify_staff is True
    assert d.reply.template == "call_hotline_a"
    # What to give on the phone: the A checklist minus what the mail said.
    assert d.reply.context["checklist_fields"] == ("start_time", "impacted_lines", "otn_tests")
    assert d.reply.ask == ("start_time", "impacted_lines")
    assert d.state.writer == "arm@ch-a.test"
    assert ("status_change", {"old": None, "new": "à traiter"}) in d.events


def test_cas_c_complete_is_filed_and_told_to_telephone_without_questions(rb):
    v = Verdict(kind="incident", cas="C", criticity=2,
                fields={"equipment": "téléphone fixe du poste 6", "start_time": "2026-11-18T21:00:00"})
    d = decide_new(v, rb, S, T0)
    assert (d.action, d.state.status, d.reply.template, d.reply.ask) == ("file", "à traiter", "call_hotline_c", ())
    assert d.notify_staff is False


def test_cas_c_with_missing_fields_is_filed_and_asked(rb):
    v = Verdict(kind="incident", cas="C", criticity=2, fields={"equipment": "téléphone fixe"})
    d = decide_new(v, rb, S, T0)
    assert d.action == "file_and_ask" and d.state.status == "à traiter"
    assert d.reply.template == "call_hotline_c" and d.reply.ask == ("start_time",)


def test_cas_d_opens_no_ticket_and_redirects_to_the_local_it(rb):
    d = decide_new(Verdict(kind="incident", cas="D", fields={"start_time": "2026-11-17"}), rb, S, T0)
    assert d.action == "redirect_local_it" and d.state is None
    assert d.reply.template == "redirect_local_it" and d.reply.ask == ()


def test_cas_b_complete_is_filed_with_an_acknowledgement(rb):
    d = decide_new(portail(PORTAIL_COMPLETE), rb, S, T0)
    assert d.action == "file" and d.state.status == "à traiter"
    assert d.reply.template == "filed_ack" and d.reply.context["criticity"] == 2
    assert d.missing == () and d.state.ask_counts == {}


def test_cas_b_missing_fields_waits_and_asks_mandatory_then_if_possible_ones(rb):
    d = decide_new(portail({"features": ["main courante"], "start_time": "2026-11-17T13:00:00"}), rb, S, T0)
    assert d.action == "ask" and d.state.status == "en attente d'informations"
    # In the order of rules/mandatory.toml, not alphabetical.
    assert d.reply.ask == ("impact_scope", "browser", "browser_version", "auth_mode", "environment")
    assert d.reply.ask_optional == ("reproducibility", "device_type", "users_impacted", "screenshots")
    assert d.state.last_question_at == T0
    assert all(c == 1 for c in d.state.ask_counts.values())
    assert d.missing == ("auth_mode", "browser", "browser_version", "environment", "impact_scope")
    assert ("question", {"fields": list(d.reply.ask), "optional": list(d.reply.ask_optional), "round": 1}) in d.events


def test_cas_b_criticity_1_is_filed_at_once_and_asked(rb):
    v = Verdict(kind="incident", cas="B", application="bandeau", criticity=1,
                fields={"impact_scope": "total", "start_time": "2026-11-13T09:00:00"}, failure_reported=True)
    d = decide_new(v, rb, S, T0)
    assert d.action == "file_and_ask" and d.state.status == "à traiter" and d.notify_staff
    assert d.reply.template == "ask_missing" and d.reply.context["filed"] is True
    assert "bandeau_state" in d.reply.ask


def test_a_request_gets_no_diagnostic_checklist(rb):
    v = Verdict(kind="incident", cas="B", application="portail", criticity=3, is_request=True,
                failure_reported=False, fields={})
    d = decide_new(v, rb, S, T0)
    assert d.action == "file" and d.reply.ask == () and d.reply.template == "filed_ack"


@pytest.mark.parametrize("kind", ["autoreply", "bounce", "noise"])
def test_robots_and_noise_are_never_answered(rb, kind):
    d = decide_new(Verdict(kind=kind), rb, S, T0)
    assert d.action == "ignore" and d.reply is None and d.state is None


def test_a_followup_without_a_known_ticket_is_kept_for_a_human(rb):
    d = decide_new(answer({"browser": "chrome"}), rb, S, T0)
    assert d.action == "record_only" and d.reply is None and d.state is None


# --- answers ---------------------------------------------------------------

def test_answer_completing_the_ticket_files_it(rb):
    state = waiting_ticket(rb, {"features": ["main courante"], "start_time": "2026-11-17T13:00:00"})
    v = answer({"impact_scope": "partiel", "browser": "firefox", "browser_version": "128.5.0esr",
                "auth_mode": "otp_mail", "environment": "production", "features": ["Main courante", "connexion"]})
    d = decide_followup(state, v, rb, S, T0 + dt.timedelta(hours=1))
    assert d.action == "file" and d.state.status == "à traiter" and d.missing == ()
    assert d.reply.template == "filed_ack"
    assert d.state.fields["features"] == ["main courante", "connexion"]   # united, no duplicate
    changed = {e[1]["field"] for e in d.events if e[0] == "field_change"}
    assert changed == {"impact_scope", "browser", "browser_version", "auth_mode", "environment", "features"}
    assert ("status_change", {"old": "en attente d'informations", "new": "à traiter"}) in d.events


def test_partial_answer_asks_only_what_is_still_missing_and_never_the_if_possible_ones(rb):
    state = waiting_ticket(rb, {"features": ["main courante"], "start_time": "2026-11-17T13:00:00"})
    d = decide_followup(state, answer({"browser": "chrome"}), rb, S, T0 + dt.timedelta(hours=1))
    assert d.action == "ask" and d.state.status == "en attente d'informations"
    assert "browser" not in d.reply.ask
    assert d.reply.ask == ("impact_scope", "browser_version", "auth_mode", "environment")
    assert d.reply.ask_optional == ()
    assert d.reply.context["round"] == 2
    assert d.state.ask_counts["impact_scope"] == 2


def test_field_asked_twice_and_still_not_given_files_the_ticket_as_incomplete(rb):
    state = waiting_ticket(rb, {"features": ["main courante"], "start_time": "2026-11-17T13:00:00"}, asked=2)
    d = decide_followup(state, answer({"browser": "chrome"}), rb, S, T0 + dt.timedelta(hours=2))
    assert d.action == "file_incomplete"
    assert d.state.status == "incomplet" and d.state.flagged_incomplete
    assert d.reply.template == "filed_incomplete" and d.reply.ask == ()
    assert "browser" not in d.reply.context["missing_fields"]
    assert any(e[0] == "flagged_incomplete" for e in d.events)


def test_answer_after_three_days_still_incomplete_is_filed_as_incomplete(rb):
    state = waiting_ticket(rb, {"features": ["main courante"]})
    d = decide_followup(state, answer({"browser": "chrome"}), rb, S, T0 + dt.timedelta(days=3, minutes=1))
    assert d.action == "file_incomplete" and d.state.flagged_incomplete


def test_impact_becoming_total_raises_criticity_files_at_once_and_alerts(rb):
    state = waiting_ticket(rb, {"features": ["main courante"], "start_time": "2026-11-17T13:00:00",
                                "impact_scope": "unitaire"})
    assert state.criticity == 2  # the verdict's; policy would say 3, but the value comes from the triage
    d = decide_followup(state, answer({"impact_scope": "total"}), rb, S, T0 + dt.timedelta(hours=1))
    assert d.state.criticity == 1 and d.notify_staff
    assert ("criticity_change", {"old": 2, "new": 1, "rule": "criticity.toml#impact-total"}) in d.events
    assert d.action == "file_and_ask" and d.state.status == "à traiter"
    assert "impact_scope" not in d.reply.ask


def test_impact_becoming_unitary_lowers_criticity(rb):
    state = waiting_ticket(rb, {"features": ["main courante"], "start_time": "2026-11-17T13:00:00"})
    d = decide_followup(state, answer({"impact_scope": "unitaire"}), rb, S, T0 + dt.timedelta(hours=1))
    assert d.state.criticity == 3 and not d.notify_staff
    assert any(e[0] == "criticity_change" and (e[1]["old"], e[1]["new"]) == (2, 3) for e in d.events)


def test_newly_mandatory_field_is_asked_even_after_two_rounds(rb):
    v = Verdict(kind="incident", cas="B", application="selfcare", criticity=2, failure_reported=True,
                fields={"start_time": "2026-11-12T09:00:00", "selfcare_state": "partiel"})
    state = decide_new(v, rb, S, T0).state
    state = replace(state, ask_counts={"requested_action": 2})
    d = decide_followup(state, answer({"requested_action": "desactivation"}), rb, S, T0 + dt.timedelta(hours=1))
    assert d.reply.ask == ("routing_name",) and d.action == "ask"


def test_resolution_notice_is_recorded_without_questions(rb):
    state = waiting_ticket(rb, {"features": ["main courante"]})
    v = answer({}, trace=(Hit("kind.resolved", "c'est revenu", "kind"),))
    d = decide_followup(state, v, rb, S, T0 + dt.timedelta(hours=1))
    assert d.action == "record_only" and d.reply is None
    assert ("resolution_reported", {"words": "c'est revenu"}) in d.events
    assert d.state.status == "à traiter"   # no reminder will chase a writer who says it works


def test_out_of_office_joins_the_history_without_a_reply(rb):
    state = waiting_ticket(rb, {"features": ["main courante"]})
    d = decide_followup(state, Verdict(kind="autoreply", reason="absence"), rb, S, T0)
    assert d.action == "record_only" and d.reply is None and d.state == state
    assert d.events[0][0] == "autoreply"
    assert decide_followup(state, Verdict(kind="bounce"), rb, S, T0).action == "record_only"
    assert decide_followup(state, Verdict(kind="noise"), rb, S, T0).action == "ignore"


def test_answer_to_a_resolved_ticket_reopens_it(rb):
    state = replace(waiting_ticket(rb, PORTAIL_COMPLETE), status="résolu")
    d = decide_followup(state, answer({"error_message": "ça recommence"}), rb, S, T0)
    assert d.action == "reopen" and d.state.status == "à traiter" and d.reply is None


def test_answer_completing_a_filed_ticket_updates_it_silently(rb):
    v = Verdict(kind="incident", cas="A", criticity=1, fields={"reception": "nulle"})
    state = decide_new(v, rb, S, T0).state
    d = decide_followup(state, answer({"start_time": "2026-11-17T13:50:00", "impacted_lines": ["15"]}),
                        rb, S, T0 + dt.timedelta(minutes=30))
    assert d.action == "update" and d.reply is None and d.state.status == "à traiter" and d.missing == ()


# --- the scheduler ----------------------------------------------------------

def test_reminder_after_24_hours_without_answer(rb):
    state = waiting_ticket(rb, {"features": ["main courante"]})
    assert decide_reminder(state, rb, S, T0 + dt.timedelta(hours=23)) is None
    d = decide_reminder(state, rb, S, T0 + dt.timedelta(hours=24))
    assert d.action == "ask" and d.reply.template == "reminder" and d.reply.ask_optional == ()
    assert all(d.state.ask_counts[f] == 2 for f in d.reply.ask)
    # Second request unanswered for another day: filed as incomplete.
    later = T0 + dt.timedelta(hours=48)
    d2 = decide_reminder(d.state, rb, S, later)
    assert d2.action == "file_incomplete" and d2.state.status == "incomplet" and d2.state.flagged_incomplete


def test_incomplete_after_three_days_even_with_questions_left(rb):
    state = waiting_ticket(rb, {"features": ["main courante"]}, last=T0 + dt.timedelta(days=2, hours=12))
    d = decide_reminder(state, rb, S, T0 + dt.timedelta(days=3))
    assert d.action == "file_incomplete"


def test_reminder_does_nothing_for_filed_tickets(rb):
    state = replace(waiting_ticket(rb, {"features": ["main courante"]}), status="à traiter")
    assert decide_reminder(state, rb, S, T0 + dt.timedelta(days=10)) is None


# --- threading and merging --------------------------------------------------

@pytest.mark.parametrize("sender,status,expected", [
    ("lea@ch-a.test", "en attente d'informations", "continue"),
    ("colleague@ch-a.test", "à traiter", "continue"),           # same site
    ("cc-person@other.test", "à traiter", "continue"),          # seen in Cc
    ("stranger@elsewhere.test", "à traiter", "new_linked"),
    ("lea@ch-a.test", "résolu", "reopen"),
    ("lea@ch-a.test", "clos", "new_after_closed"),
    ("stranger@elsewhere.test", "clos", "new_linked"),
    ("lea@ch-a.test", None, "new"),
])
def test_thread_decision(sender, status, expected):
    assert thread_decision(sender, status, {"support@si-samu.test", "CC-Person@other.test"}, "lea@ch-a.test") == expected


def test_merge_new_values_override_lists_unite_and_vaguer_start_keeps_the_hour():
    merged, changes = merge_fields(
        {"browser": "firefox", "features": ["main courante"], "start_time": "2026-11-19T20:05:00"},
        {"browser": "chrome", "features": ["Main Courante", "export"], "start_time": "2026-11-19"})
    assert merged == {"browser": "chrome", "features": ["main courante", "export"],
                      "start_time": "2026-11-19T20:05:00"}
    assert {c[0] for c in changes} == {"browser", "features"}
    merged, _ = merge_fields({"start_time": "2026-11-19T20:05:00"}, {"start_time": "2026-11-18"})
    assert merged["start_time"] == "2026-11-18"


def test_deadline_runs_from_creation():
    assert deadline_for(1, T0) == T0 + dt.timedelta(hours=24)
    assert deadline_for(3, T0) == T0 + dt.timedelta(days=5)
    assert deadline_for(None, T0) is None
