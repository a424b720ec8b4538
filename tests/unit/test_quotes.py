"""Quote, forward, signature and disclaimer splitting (mailbot.quotes)."""

from __future__ import annotations

import datetime as dt

import pytest

from mailbot.quotes import (
    PARIS,
    forward_hint_from_subject,
    parse_loose_date,
    split_body,
)

BOT_QUESTION = (
    "Bonjour,\n\nMerci de nous préciser :\n"
    "- la version exacte du navigateur (par ex. Firefox 115.3.1esr, Chrome 130) ;\n"
    "- le mode d'authentification utilisé (OTP mail, OTP SMS ou carte CPS).\n\n"
    "Cordialement,\nLe support SI-Samu"
)


def test_outlook_message_d_origine_block_is_a_quoted_reply_with_its_date():
    body = (
        "Bonjour,\n\nChrome 130 sur tous les postes, carte CPS.\n\nBenoît\n\n"
        "-----Message d'origine-----\n"
        "De : Support SI-Samu <support@si-samu.test>\n"
        "Envoyé : mercredi 4 novembre 2026 07:07\n"
        "À : Benoît Roux <b.roux@chr-orval.test>\n"
        "Objet : [SI-Samu] INC-0048140 - Bandeau\n\n" + BOT_QUESTION
    )
    split = split_body(body, forward_hint=False)
    assert "Chrome 130 sur tous les postes" in split.new_text
    assert "Firefox 115" not in split.new_text and "OTP mail" not in split.new_text
    (part,) = split.quoted
    assert part.forwarded is False
    assert part.sender == "Support SI-Samu <support@si-samu.test>"
    assert part.subject == "[SI-Samu] INC-0048140 - Bandeau"
    assert part.date == dt.datetime(2026, 11, 4, 7, 7, tzinfo=PARIS)
    assert "OTP mail" in part.text


def test_outlook_header_block_without_separator_in_a_forward_is_forwarded():
    body = (
        "Pour info et action svp.\n\nMarc\n\n"
        "De : Équipe de nuit <nuit@samu-fictif.test>\n"
        "Envoyé : jeudi 12 novembre 2026 06:15\n"
        "À : Marc <marc@samu-fictif.test>\n"
        "Objet : appels qui coupent\n\n"
        "Depuis 5h50 la moitié des appels du 15 coupent au décroché.\n"
    )
    split = split_body(body, forward_hint=forward_hint_from_subject("TR: appels qui coupent"))
    assert split.new_text.startswith("Pour info et action svp.")
    assert "5h50" not in split.new_text
    (part,) = split.quoted
    assert part.forwarded is True
    assert part.date == dt.datetime(2026, 11, 12, 6, 15, tzinfo=PARIS)
    assert "5h50" in part.text


def test_english_outlook_block_and_us_date():
    body = (
        "Works again, thanks.\n\n"
        "From: Support SI-Samu <support@si-samu.test>\n"
        "Sent: Tuesday, November 3, 2026 11:49 AM\n"
        "To: Tom <tom@hospital-fictif.test>\n"
        "Subject: [SI-Samu] export\n\nWhich browser?\n"
    )
    split = split_body(body, forward_hint=False)
    assert split.new_text == "Works again, thanks."
    assert split.quoted[0].date == dt.datetime(2026, 11, 3, 11, 49, tzinfo=PARIS)


def test_gmail_attribution_wrapped_over_two_lines():
    body = (
        "Bonjour,\n\nFirefox 128.5.0esr.\n\n"
        "Le lun. 16 nov. 2026 à 08:12, Support SI-Samu <support@si-samu.test> a\n"
        "écrit :\n\n> Merci de préciser la version (par ex. Chrome 130).\n> Le support\n"
    )
    split = split_body(body)
    assert split.new_text == "Bonjour,\n\nFirefox 128.5.0esr."
    (part,) = split.quoted
    assert part.forwarded is False
    assert part.sender == "Support SI-Samu <support@si-samu.test>"
    assert part.date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert "Chrome 130" in part.text


def test_english_on_wrote_attribution():
    body = "It works again.\n\nOn Tue, 3 Nov 2026 at 11:49, Support <support@si-samu.test> wrote:\n> Which browser?\n"
    split = split_body(body)
    assert split.new_text == "It works again."
    assert split.quoted[0].date == dt.datetime(2026, 11, 3, 11, 49, tzinfo=PARIS)


def test_inline_answers_between_quoted_lines_stay_new_text():
    body = (
        "Le 16/11/2026 à 08:12, Support SI-Samu a écrit :\n"
        "> - la version du navigateur (par ex. Firefox 115)\n"
        "Edge 131\n"
        "> - le mode d'authentification (OTP mail, OTP SMS ou carte CPS)\n"
        "carte CPS\n"
    )
    split = split_body(body)
    assert "Edge 131" in split.new_text and "carte CPS" in split.new_text
    assert "Firefox 115" not in split.new_text and "OTP mail" not in split.new_text
    assert all(not q.forwarded for q in split.quoted)


def test_thunderbird_forward_separator_with_its_own_date():
    body = (
        "Je vous fais suivre.\nNathan\n\n\n-------- Message transféré --------\n"
        "Sujet : \t116117 muet\nDate : \tFri, 20 Nov 2026 11:02:17 +0100\n"
        "De : \tRégulation <reg@samu-fictif.test>\nPour : \tNathan <n@samu-fictif.test>\n\n\n\n"
        "depuis 10h40 plus aucun appel n'arrive sur le 116 117.\n"
    )
    split = split_body(body, forward_hint=True)
    assert split.new_text == "Je vous fais suivre.\nNathan"
    (part,) = split.quoted
    assert part.forwarded is True
    assert part.subject == "116117 muet"
    assert part.date.utcoffset() == dt.timedelta(hours=1)
    assert part.date.hour == 11 and part.date.minute == 2


def test_gmail_forwarded_message_marker_and_nested_reply_chain():
    body = (
        "Voir ci-dessous.\n\n---------- Forwarded message ---------\n"
        "De : Alice <alice@ch-fictif.test>\nDate: lun. 16 nov. 2026 à 08:12\n"
        "Subject: Portail\nTo: Bob <bob@ch-fictif.test>\n\n"
        "Le portail est KO depuis 8h.\n\n"
        "Le dim. 15 nov. 2026 à 20:00, Bob <bob@ch-fictif.test> a écrit :\n> Tout va bien ?\n"
    )
    split = split_body(body)
    assert split.new_text == "Voir ci-dessous."
    assert [q.forwarded for q in split.quoted] == [True, True]
    assert "KO depuis 8h" in split.quoted[0].text
    assert split.quoted[0].date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert split.quoted[1].text == "Tout va bien ?"


def test_signature_after_closing_formula_is_removed_but_facts_before_kept():
    body = (
        "Bonjour,\n\nLe bandeau est figé depuis 8h sur 3 postes.\n\n"
        "Cordialement,\n\nThomas Lefebvre\nSuperviseur de salle – CRRA 74\nTél. : 01 99 00 41 12\n"
    )
    split = split_body(body)
    assert split.new_text == "Bonjour,\n\nLe bandeau est figé depuis 8h sur 3 postes."
    assert split.signature.startswith("Cordialement,")
    assert "01 99 00 41 12" in split.signature


def test_merci_followed_by_facts_is_not_a_signature():
    body = "Bonjour,\n\nMerci.\nLe portail plante depuis 8h, toute la salle est touchée.\nFirefox 115.\n"
    split = split_body(body)
    assert "Le portail plante depuis 8h" in split.new_text
    assert "Firefox 115." in split.new_text


def test_postscript_after_the_signature_stays_new_text():
    body = "Bonjour,\n\nLe fixe du poste 3 redémarre.\n\nMerci,\nPaul\n\nPS : le poste 5 aussi depuis 10h.\n"
    split = split_body(body)
    assert "PS : le poste 5 aussi depuis 10h." in split.new_text
    assert split.signature == "Merci,\nPaul"


@pytest.mark.parametrize(
    "tagline",
    ["Envoyé de mon iPhone", "Sent from my iPad", "Envoyé à partir de Outlook pour Android", "Get Outlook for iOS"],
)
def test_phone_taglines_are_signature(tagline):
    split = split_body(f"Bandeau HS poste 2, je passe sur le 5\n\n{tagline}\n")
    assert split.new_text == "Bandeau HS poste 2, je passe sur le 5"
    assert split.signature == tagline


def test_rfc3676_signature_delimiter():
    split = split_body("Réécoute KO depuis 15h.\n\n-- \nJulie\nARM\n")
    assert split.new_text == "Réécoute KO depuis 15h."
    assert split.signature.endswith("Julie\nARM")


def test_french_and_english_disclaimers_removed():
    body = (
        "Bonjour,\n\nSelfcare affiche « Accès refusé » depuis 10h15.\n\nDr R. Lefort\n\n"
        "-----------------------------------------\n"
        "AVERTISSEMENT : ce courriel et les documents qui y sont joints peuvent contenir des informations "
        "couvertes par le secret médical. Si vous n'êtes pas le destinataire de ce message, vous êtes prié "
        "de le supprimer et d'en informer immédiatement l'expéditeur.\n\n"
        "This e-mail is confidential; if you are not the intended recipient, please notify the sender and delete it.\n"
    )
    split = split_body(body)
    assert "Accès refusé" in split.new_text
    assert "Dr R. Lefort" in split.new_text
    assert "secret médical" not in split.new_text
    assert "intended recipient" not in split.new_text
    assert "secret médical" in split.signature


def test_a_mail_that_is_only_prose_about_confidentiality_is_kept():
    body = "Bonjour, le document confidentiel destiné aux destinataires de la direction est interdit d'accès."
    assert split_body(body).new_text == body


def test_prose_starting_with_de_is_not_a_header_block():
    body = "De : 8h à 10h le portail est lent.\nÀ : partir de 10h il ne répond plus.\nMerci de regarder."
    split = split_body(body)
    assert split.quoted == ()
    assert "le portail est lent" in split.new_text


def test_forward_hint_from_subject():
    assert forward_hint_from_subject("TR: Portail KO") is True
    assert forward_hint_from_subject("Fwd: pb") is True
    assert forward_hint_from_subject("RE : [SI-Samu] INC-1") is False
    assert forward_hint_from_subject("RE: TR: x") is False
    assert forward_hint_from_subject("Portail KO") is None


@pytest.mark.parametrize(
    ("text", "month_first", "expected"),
    [
        ("mercredi 4 novembre 2026 07:07", False, dt.datetime(2026, 11, 4, 7, 7, tzinfo=PARIS)),
        ("lundi 16 novembre 2026 08:12", False, dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)),
        ("16/11/2026 08:12", False, dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)),
        ("lun. 16 nov. 2026 à 8h12", False, dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)),
        ("1er décembre 2026", False, dt.datetime(2026, 12, 1, tzinfo=PARIS)),
        ("Tuesday, November 3, 2026 11:49 PM", True, dt.datetime(2026, 11, 3, 23, 49, tzinfo=PARIS)),
        ("11/3/2026 11:49 AM", True, dt.datetime(2026, 11, 3, 11, 49, tzinfo=PARIS)),
        ("2026-11-16 08:12", False, dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)),
    ],
)
def test_parse_loose_date(text, month_first, expected):
    assert parse_loose_date(text, month_first=month_first) == expected


def test_parse_loose_date_rfc5322_keeps_offset_and_rejects_junk():
    value = parse_loose_date("Thu, 12 Nov 2026 08:50:12 +0000")
    assert value == dt.datetime(2026, 11, 12, 8, 50, 12, tzinfo=dt.UTC)
    assert parse_loose_date("pas une date") is None
    assert parse_loose_date("31/02/2026") is None


def test_outlook_wrapped_recipient_list_inside_header_block():
    body = (
        "Voir dessous.\n\n"
        "De : Alice <alice@ch-fictif.test>\n"
        "Envoyé : mardi 17 novembre 2026 09:00\n"
        "À : Bob <bob@ch-fictif.test>; Carole <carole@ch-fictif.test>;\n"
        "Denis <denis@ch-fictif.test>\n"
        "Cc : Eve <eve@ch-fictif.test>\n"
        "Objet : Nice lent\n\n"
        "La réécoute met une minute à démarrer.\n"
    )
    split = split_body(body, forward_hint=True)
    (part,) = split.quoted
    assert part.subject == "Nice lent"
    assert part.text == "La réécoute met une minute à démarrer."
