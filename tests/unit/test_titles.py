"""Ticket titles: informative, short, masked, never the raw "RE: TR: urgent"."""

from __future__ import annotations

import pytest

from mailbot.titles import MAX_LENGTH, make_title, symptom_of


@pytest.mark.parametrize("cas, app, fields, subject, is_request, expected", [
    ("A", None, {"impacted_lines": ["15", "116117"], "reception": "nulle"}, "RE: TR: urgent", False,
     "Réception appels – 15, 116117 sans appel (réception nulle)"),
    ("A", None, {"impacted_lines": ["15"], "reception": "partielle"}, "appels qui coupent", False,
     "Réception appels – 15 perturbé (réception partielle)"),
    ("A", None, {"reception": "nulle"}, "URGENT !!!", False,
     "Réception appels – plus aucun appel (réception nulle)"),
    ("B", "portail", {"features": ["main courante"]}, "RE: la main courante ne s'affiche plus", False,
     "Portail – main courante : ne s'affiche plus"),
    ("B", "bandeau", {"features": ["bouton Transférer"], "bandeau_state": "partiel"},
     "bandeau - transfert ne marche plus", False, "Bandeau – bouton Transférer (partiel)"),
    ("B", "bandeau", {"bandeau_state": "total", "impact_scope": "total"}, "BANDEAU HS", False,
     "Bandeau – totalement inopérant (tout le SAMU)"),
    ("C", None, {"equipment": "téléphone fixe du poste 4"}, "TR: urgent", False,
     "Téléphone fixe SI-Samu – poste 4"),
    ("C", None, {"equipment": "SI-Samu desk phone at regulation position 6"}, "desk phone rebooting", False,
     "Téléphone fixe SI-Samu – poste 6 : redémarre en boucle"),
    ("B", "selfcare", {"requested_action": "activation", "routing_name": "DEBORD_X"}, "URGENT", True,
     "Selfcare – demande d'activation DEBORD_X"),
    ("B", "selfcare", {"requested_action": "ajout"}, "Selfcare - ajout d'un routage", True,
     "Selfcare – demande d'ajout de routage"),
    ("B", "statistiques", {"features": ["export CSV"]}, "Export CSV vide", False,
     "Statistiques – export CSV : vide"),
    ("B", "portail", {"features": ["module patients"], "environment": "formation"},
     "Env. formation – module patients inaccessible", False,
     "Portail – module patients : inaccessible (formation)"),
    ("B", "selfcare", {"error_message": "503 Service Unavailable"}, "Selfcare inaccessible", False,
     "Selfcare – inaccessible"),
    ("B", "portail", {}, "RE: TR: urgent", False, "Portail – incident"),
    ("D", None, {}, "RE: casque qui grésille", False, "Hors SI-Samu – casque qui grésille"),
    (None, None, {}, "RE: TR: URGENT !!!", False, "Demande à qualifier"),
    (None, None, {}, "RE: TR: pb portail", False, "portail"),
])
def test_titles_like_the_desk_writes(cas, app, fields, subject, is_request, expected):
    assert make_title(cas, app, fields, subject, is_request) == expected


def test_never_the_raw_reply_chain():
    title = make_title("B", "nice", {"features": ["réécoute"]}, "RE: TR: RE: urgent", False)
    assert not title.lower().startswith(("re:", "tr:"))
    assert "urgent" not in title.lower()
    assert title == "Nice (enregistrements) – réécoute"


def test_symptom_from_the_body_when_the_subject_has_none():
    title = make_title("B", "portail", {"features": ["main courante"]}, "TR: souci", False,
                       text="Bonjour, la main courante reste figée depuis 8h.")
    assert title == "Portail – main courante : figé"


def test_length_is_capped_on_a_word():
    fields = {"features": ["une fonction au nom vraiment très long du portail SI-Samu",
                           "une deuxième fonction au nom tout aussi long"]}
    title = make_title("B", "portail", fields, "ne s'affiche plus", False)
    assert len(title) <= MAX_LENGTH
    assert title.endswith("…")


def test_patient_data_never_in_a_title():
    subject = "Patient né le 03/04/1987 NIR 2 53 07 2B 073 004 70 rappeler au 06 12 34 56 78"
    fields = {"features": ["fiche de M. X né le 03/04/1987"], "error_message": "NIR 253072B07300470"}
    for cas, app in (("B", "portail"), ("D", None), (None, None), ("B", "statistiques")):
        title = make_title(cas, app, fields if cas == "B" else {}, subject, False)
        assert "1987" not in title and "073 004" not in title and "06 12" not in title, title


def test_symptom_vocabulary():
    assert symptom_of("Selfcare unreachable (502)") == "erreur 502"
    assert symptom_of("Nice très lent") == "lenteurs"
    assert symptom_of("rien de spécial") == ""
