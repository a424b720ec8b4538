"""Triage of hand-written mails (not from the dev corpora), one phenomenon each."""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES

MAIL = FIXTURES / "mail" / "incidents"

CASES = [
    # file, kind, cas, application, criticity, fields that must be there (subset), missing
    ("a_no_calls.eml", "incident", "A", None, 1,
     {"start_time": "2026-11-10T02:50:00", "impacted_lines": ["15", "116117"], "reception": "nulle"}, []),
    ("b_portail_partial.eml", "incident", "B", "portail", 2,
     {"start_time": "2026-11-11T08:15:00", "impact_scope": "partiel", "users_impacted": 3, "browser": "chrome",
      "browser_version": "131", "auth_mode": "cps", "environment": "production"}, []),
    ("b_nice_negation.eml", "incident", "B", "nice", 3,
     {"browser": "firefox", "browser_version": "128.5.0esr", "impact_scope": "unitaire",
      "reproducibility": "systematique", "start_time": "2026-11-11T15:00:00"}, []),
    ("c_desk_phone.eml", "incident", "C", None, 2, {"start_time": "2026-11-13T09:30:00"}, []),
    ("d_headset.eml", "incident", "D", None, None, {}, []),
    ("d_windows_correction.eml", "incident", "D", None, None, {}, []),
    ("selfcare_request.eml", "incident", "B", "selfcare", 3, {"requested_action": "ajout"}, []),
    ("english_bandeau_total.eml", "incident", "B", "bandeau", 1,
     {"bandeau_state": "total", "impact_scope": "total", "browser": "edge", "auth_mode": "otp_sms",
      "start_time": "2026-11-17T08:30:00"}, []),
    ("ooo_no_header.eml", "autoreply", None, None, None, {}, []),
    ("a_one_line_other_works.eml", "incident", "A", None, 1,
     {"impacted_lines": ["15"], "reception": "nulle", "start_time": "2026-11-18T21:45:00"}, []),
    ("b_portail_slow_everyone.eml", "incident", "B", "portail", 1,
     {"impact_scope": "total", "auth_mode": "cps", "environment": "production", "browser_version": "128.3.1esr"},
     ["features"]),
    ("b_nice_unknown_impact.eml", "incident", "B", "nice", 2,
     {"impact_scope": "inconnu", "browser": "edge", "browser_version": "130.0.2849.68",
      "error_message": "Fichier introuvable", "reproducibility": "systematique"}, ["start_time"]),
    ("b_stats_rights_request.eml", "incident", "B", "statistiques", 3, {}, []),
    ("b_bandeau_others_fine.eml", "incident", "B", "bandeau", 3,
     {"impact_scope": "unitaire", "auth_mode": "otp_sms", "phone_state": "ras", "bandeau_state": "partiel"}, []),
    ("b_selfcare_deactivate_now.eml", "incident", "B", "selfcare", 1,
     {"requested_action": "desactivation", "routing_name": "DEBORD_JOUR_SAMU12"}, []),
    ("a_ringing_in_void.eml", "incident", "A", None, 1,
     {"impacted_lines": ["116117"], "reception": "nulle", "start_time": "2026-11-20T05:40:00"}, []),
    ("a_english_whole_room.eml", "incident", "A", None, 1, {"impacted_lines": ["15", "112"], "reception": "nulle"}, []),
    ("b_bandeau_frozen_room.eml", "incident", "B", "bandeau", 1,
     {"bandeau_state": "total", "impact_scope": "total", "phone_state": "ras", "browser": "chrome"}, ["auth_mode"]),
    ("d_pc_wont_boot.eml", "incident", "D", None, None, {"device_type": "pc"}, []),
    ("c_dect_base.eml", "incident", "C", None, 2, {"start_time": "2026-11-20T13:20:00"}, []),
    ("d_wifi_tablets.eml", "incident", "D", None, None, {}, []),
    ("b_bandeau_status_one_post.eml", "incident", "B", "bandeau", 3,
     {"impact_scope": "unitaire", "bandeau_state": "partiel", "phone_state": "ras", "auth_mode": "otp_mail",
      "browser_version": "115.17.0esr"}, []),
    ("b_nice_english_only_my_workstation.eml", "incident", "B", "nice", 3,
     {"impact_scope": "unitaire", "reproducibility": "systematique", "browser_version": "131.0.2903.70"}, []),
    ("d_headset_no_calls_for_me.eml", "incident", "D", None, None, {}, []),
    ("c_new_phone_request.eml", "incident", "C", None, 3, {}, []),
    ("d_screen_correction.eml", "incident", "D", None, None, {}, []),
    ("a_third_dropped.eml", "incident", "A", None, 1,
     {"impacted_lines": ["15"], "reception": "partielle", "otn_tests": "2 KO sur 6"}, []),
    ("followup_answers_alone.eml", "followup", None, None, None,
     {"browser": "chrome", "browser_version": "131", "auth_mode": "cps", "impact_scope": "total"}, []),
    ("b_stats_english_two_users.eml", "incident", "B", "statistiques", 2,
     {"users_impacted": 2, "impact_scope": "partiel", "start_time": "2026-11-18T15:00:00"}, []),
]


@pytest.mark.parametrize("name,kind,cas,app,crit,fields,missing", CASES, ids=[c[0] for c in CASES])
def test_verdict(triage_file, name, kind, cas, app, crit, fields, missing):
    v = triage_file(MAIL / name).as_json()
    assert (v["kind"], v["cas"], v["application"], v["criticity"]) == (kind, cas, app, crit)
    for key, value in fields.items():
        assert v["fields"].get(key) == value, key
    assert v["missing"] == missing


def test_negated_browser_is_not_the_failing_one(triage_file):
    v = triage_file(MAIL / "b_nice_negation.eml")
    assert v.fields["browser"] == "firefox"   # "sous Chrome la réécoute marche"


def test_working_line_is_not_impacted(triage_file):
    v = triage_file(MAIL / "a_no_calls.eml")
    assert "112" not in v.fields["impacted_lines"]   # "Le 112 fonctionne normalement"


def test_request_gets_no_diagnostic_checklist(triage_file):
    v = triage_file(MAIL / "selfcare_request.eml")
    assert v.is_request and "start_time" not in v.fields and v.missing == ()


def test_every_verdict_is_explained(triage_file):
    v = triage_file(MAIL / "a_no_calls.eml")
    rules = {h.rule for h in v.trace}
    assert any(r.startswith("calls.reception") for r in rules)
    assert any(r.startswith("criticity.toml#") for r in rules)


def test_missing_fields_are_asked(engine):
    from mailbot.parsing import parse_message

    raw = ("From: a@b.test\nTo: support@si-samu.test\nSubject: portail\nDate: Mon, 16 Nov 2026 10:00:00 +0100\n"
           "Message-ID: <m1@b.test>\nContent-Type: text/plain; charset=utf-8\n\n"
           "Bonjour, la main courante du portail ne s'affiche plus depuis 9h.\n").encode()
    v = engine.triage(parse_message(raw))
    assert v.cas == "B" and v.application == "portail" and v.criticity == 2
    assert set(v.missing) == {"auth_mode", "browser", "browser_version", "environment", "impact_scope"}
