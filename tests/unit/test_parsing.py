"""Raw bytes -> ParsedMail (mailbot.parsing), on hand-written fixtures and
synthetic hostile inputs."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from mailbot.model import ParsedMail
from mailbot.parsing import Limits, decode_bytes, decode_header_value, parse_message
from mailbot.quotes import PARIS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def parse_fixture(name: str) -> ParsedMail:
    mail = parse_message((FIXTURES / name).read_bytes())
    assert mail.error is None, mail.error
    return mail


# --------------------------------------------------------------------------
# Mail clients
# --------------------------------------------------------------------------


def test_outlook_reply_fr_separates_answer_signature_disclaimer_and_quoted_question():
    mail = parse_fixture("clients/outlook_reply_fr.eml")
    assert mail.subject == "RE: [SI-Samu] INC-0050001 - Portail : informations complémentaires"
    assert mail.from_addr == "g.lenoir@ch-fictif.test"
    assert mail.from_name == "Grégoire Lenoir"
    assert mail.message_id == "<AM0PR01MB0001@EXCH01.ch-fictif.test>"
    assert mail.in_reply_to == "<inc-0050001.1@si-samu.test>"
    assert mail.references == ("<inc-0050001.1@si-samu.test>",)
    assert mail.date == dt.datetime(2026, 11, 16, 9, 20, 11, tzinfo=PARIS)
    assert mail.new_text == (
        "Bonjour,\n\nC'est sous Edge 131, connexion avec la carte CPS. Toute la salle est touchée."
    )
    assert "Cordialement," in mail.signature and "confidentiels" in mail.signature
    (question,) = mail.quoted
    assert question.forwarded is False
    assert question.sender == "Support SI-Samu <support@si-samu.test>"
    assert question.date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert "Firefox 115" in question.text and "Firefox 115" not in mail.new_text
    # body_text keeps everything
    assert "Firefox 115" in mail.body_text and "confidentiels" in mail.body_text


def test_outlook_forward_block_windows_1252_keeps_its_own_date():
    mail = parse_fixture("clients/outlook_forward_fr.eml")
    assert mail.new_text == "Pour traitement.\n\nClaire"
    (fwd,) = mail.forwarded
    assert fwd.sender == "Paul Martin <paul.martin@ch-fictif.test>"
    assert fwd.subject == "Bandeau KO poste 4"
    assert fwd.date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert "impossible de décrocher" in fwd.text  # cp1252 é decoded


def test_thunderbird_reply_flowed_with_inline_answer_and_sig_delimiter():
    mail = parse_fixture("clients/thunderbird_reply.eml")
    # format=flowed soft breaks are joined; the answer under the quote is new text
    assert mail.new_text == (
        "Bonjour,\n\nC'est systématique, à chaque lecture. Nous sommes trois ARM à avoir le souci."
    )
    assert mail.signature.endswith("Julie Moreau\nARM - SAMU Fictif")
    (question,) = mail.quoted
    assert question.forwarded is False
    assert question.date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert "combien d'utilisateurs sont touchés" in question.text
    assert "OTP mail" not in mail.new_text


def test_gmail_reply_le_a_ecrit_wrapped():
    mail = parse_fixture("clients/gmail_reply_fr.eml")
    assert mail.mime_types == ("text/plain", "text/html")
    assert mail.new_text == "Bonjour,\n\nFirefox 128.5.0esr, et c'est en production."
    (question,) = mail.quoted
    assert question.sender == "Support SI-Samu <support@si-samu.test>"
    assert "Chrome 130" in question.text and "Chrome 130" not in mail.new_text


def test_iphone_signature_removed():
    mail = parse_fixture("clients/iphone_signature.eml")
    assert mail.new_text == "Bandeau HS sur tous les postes depuis 21h, on décroche sur les fixes.\n\nSophie"
    assert mail.signature == "Envoyé de mon iPhone"


def test_thunderbird_forward_marker():
    mail = parse_fixture("clients/thunderbird_forward.eml")
    assert mail.new_text == "Je vous fais suivre."
    (fwd,) = mail.forwarded
    assert fwd.subject == "116117 muet"
    assert fwd.sender == "Régulation <regulation@samu-fictif.test>"
    assert fwd.date == dt.datetime(2026, 11, 20, 11, 2, 17, tzinfo=PARIS)
    assert "plus aucun appel n'arrive sur le 116 117" in fwd.text


# --------------------------------------------------------------------------
# Charsets and encoded words
# --------------------------------------------------------------------------


def test_latin1_bytes_labelled_utf8_are_recovered():
    mail = parse_fixture("encodings/latin1_declared_utf8.eml")
    assert mail.subject == "Problème d'accès au portail"
    assert "même après redémarrage. € prévoir" in mail.body_text
    assert "\ufffd" not in mail.body_text
    assert any("Windows-1252" in d for d in mail.defects)


def test_utf8_bytes_labelled_latin1_and_raw_8bit_subject():
    mail = parse_fixture("encodings/utf8_declared_latin1.eml")
    assert mail.subject == "Réécoute impossible"        # bare Latin-1 bytes in the header
    assert mail.from_name == "Renée Fauré"               # RFC 2047 windows-1252 word
    assert "La réécoute ne démarre plus" in mail.body_text   # not "rÃ©Ã©coute"


def test_unknown_charsets_fall_back_without_loss():
    mail = parse_fixture("encodings/unknown_charset.eml")
    assert mail.subject == "café et été"
    assert mail.body_text == "Le téléphone du poste 2 ne sonne plus."


def test_rfc2047_split_character_and_rfc2231_filenames():
    mail = parse_fixture("encodings/rfc2047_2231_names.eml")
    assert mail.subject == "Capture d'écran du bandeau"
    assert mail.from_name == "Léa Bernard"
    names = [(a.filename, a.content_type, a.inline) for a in mail.attachments]
    assert names == [
        ("capture écran bandeau.png", "image/png", False),
        ("fiche déclaration.pdf", "application/pdf", False),
    ]
    png = mail.attachments[0]
    assert png.is_image and png.size == 70 and png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("data", "label", "expected"),
    [
        ("Problème".encode(), "us-ascii", "Problème"),
        ("Problème".encode("cp1252"), "utf-8", "Problème"),
        ("“urgent” € défaut".encode("cp1252"), "iso-8859-1", "“urgent” € défaut"),
        ("스티해".encode("cp949"), "ks_c_5601-1987", "스티해"),
        ("すみません".encode("iso2022_jp"), "iso-2022-jp", "すみません"),
        (b"caf\xe9", None, "café"),
        (b"\x81", "windows-1252", "\x81"),
    ],
)
def test_decode_bytes_fallback_chain(data, label, expected):
    assert decode_bytes(data, label)[0] == expected


def test_decode_header_value_strips_injection_and_bidi():
    assert decode_header_value("=?UTF-8?Q?a=0D=0ABcc:_evil@example.test?=") == "a  Bcc: evil@example.test"
    assert decode_header_value("facture\u202efdp.exe") == "facturefdp.exe"
    assert decode_header_value("=?utf-8?q?instantan?=\r\n =?utf-8?q?=C3=A9e?=") == "instantanée"


# --------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------


def test_html_only_mail_with_a_table_becomes_label_value_lines():
    mail = parse_fixture("structure/html_only_table.eml")
    assert mail.content_type == "text/html"
    assert "Début de l'incident : 18/11/2026 à 03h40" in mail.new_text
    assert "Lignes concernées : 15 et 116 117" in mail.new_text
    assert "<td>" not in mail.body_text and "MsoNormal" not in mail.body_text
    assert mail.signature == "Cordialement\nCécile Dumas"


def test_message_rfc822_attachment_is_a_forwarded_part_with_its_date():
    mail = parse_fixture("structure/message_rfc822.eml")
    assert mail.new_text == "Urgent, voir le message joint."
    (att,) = mail.attachments
    assert (att.filename, att.content_type) == ("routage.eml", "message/rfc822")
    assert att.size > 200
    (fwd,) = mail.forwarded
    assert fwd.sender == "Dr Antoine Mercier <a.mercier@samu-fictif.test>"
    assert fwd.subject == "Activation routage de secours"
    assert fwd.date == dt.datetime(2026, 11, 20, 11, 51, 3, tzinfo=PARIS)
    assert "SECOURS_FICTIF" in fwd.text


def test_inline_cid_image_is_an_inline_attachment():
    mail = parse_fixture("structure/inline_cid_image.eml")
    (img,) = mail.attachments
    assert img.filename == "image001.png" and img.inline is True and img.is_image
    assert mail.body_text.startswith("Capture :")  # text/plain preferred over HTML


def test_english_disclaimer_and_ipad_tagline_removed():
    mail = parse_fixture("structure/disclaimer_en.eml")
    assert mail.new_text == "Hi,\n\nThe dashboards in the Statistics portal have not loaded since Monday. Five of us tried."
    assert "intended recipient" in mail.signature and "Sent from my iPad" in mail.signature


def test_declared_boundary_never_used_is_recovered():
    mail = parse_fixture("malformed/boundary_unused.eml")
    assert mail.new_text == "Texte lisible de l'offre."
    assert "mime: boundary recovered from the body" in mail.defects


def test_headers_only_mail_parses_with_empty_body():
    mail = parse_fixture("malformed/headers_only.eml")
    assert mail.subject == "Portail KO" and mail.body_text == "" and mail.date is None
    assert mail.message_id == ""


def test_empty_plain_part_falls_back_to_html():
    raw = (
        b"From: a@ch-fictif.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>Le portail est <b>KO</b></p>\r\n--b--\r\n"
    )
    assert parse_message(raw).body_text == "Le portail est KO"


def test_headers_dates_and_addresses():
    raw = (
        b"From: \"admin@si-samu.test\" <Attacker@Evil.test>\r\n"
        b"To: A <a@x.test>, b@x.test\r\nCc: c@x.test\r\nReply-To: <Back@X.test>\r\n"
        b"Date: Mon, 16 Nov 2026 08:12:00\r\n"          # no zone: Paris assumed
        b"X-Custom: =?utf-8?q?valeur_=C3=A9?=\r\nX-Custom: deux\r\n"
        b"Subject: s\r\n\r\nbody\r\n"
    )
    mail = parse_message(raw)
    assert mail.from_addr == "attacker@evil.test"
    assert any("display name is another address" in d for d in mail.defects)
    assert mail.to == ("a@x.test", "b@x.test") and mail.cc == ("c@x.test",)
    assert mail.reply_to == "back@x.test"
    assert mail.date == dt.datetime(2026, 11, 16, 8, 12, tzinfo=PARIS)
    assert mail.headers["x-custom"] == ("valeur é", "deux")
    assert mail.header("X-Custom") == "valeur é"


@pytest.mark.parametrize("date", [b"Mon, 32 Foo 99999 25:61:61 +9999", b"Tue, 03 Nov 2026 27:00:00 +0100", b"demain"])
def test_unparseable_dates_are_none(date):
    mail = parse_message(b"From: a@x.test\r\nDate: " + date + b"\r\n\r\nx\r\n")
    assert mail.error is None and mail.date is None


# --------------------------------------------------------------------------
# Not a mail, limits
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \r\n\r\n", "blank"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "OLE"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (bytes(range(256)) * 20, "binary"),
        (b"Bonjour, ceci n'est pas un mail\nmais du texte.\n", "header"),
    ],
)
def test_not_a_mail_gives_an_error_value(raw, reason):
    mail = parse_message(raw)
    assert mail.error is not None and mail.error.startswith("not an RFC 5322 message")
    assert reason.lower() in mail.error.lower()


def test_wrong_input_types_never_raise():
    assert parse_message(None).error  # type: ignore[arg-type]
    assert parse_message("From: a@x.test\n\nhello").body_text == "hello"  # type: ignore[arg-type]
    assert parse_message(bytearray(b"From: a@x.test\n\nhello")).body_text == "hello"


def _nested(depth: int) -> bytes:
    parts = [b"From: a@x.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"]
    for i in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    parts.append(b"Content-Type: text/plain\r\n\r\nhello deep\r\n")
    for i in reversed(range(depth)):
        parts.append(b"--b%d--\r\n" % i)
    return b"".join(parts)


@pytest.mark.parametrize("depth", [200, 1500])
def test_deep_mime_nesting_gives_a_value_quickly(depth):
    start = time.perf_counter()
    mail = parse_message(_nested(depth))
    elapsed = time.perf_counter() - start
    assert mail.error is None and mail.subject == "deep"
    assert any(d.startswith("limit:depth") for d in mail.defects)
    assert elapsed < 1.0


def test_nesting_within_the_limit_is_read():
    mail = parse_message(_nested(5))
    assert mail.body_text == "hello deep" and not mail.defects


def test_twenty_thousand_headers():
    raw = b"".join(b"X-H%d: v\r\n" % i for i in range(20000)) + b"From: late@x.test\r\nSubject: many\r\n\r\nbody\r\n"
    start = time.perf_counter()
    mail = parse_message(raw)
    assert time.perf_counter() - start < 1.0
    assert mail.from_addr == "late@x.test" and mail.body_text == "body"
    assert len(mail.headers) <= Limits().max_headers
    assert any(d.startswith("limit:headers") for d in mail.defects)


def test_huge_encoded_subject_is_cut_before_decoding():
    word = b"=?utf-8?q?=C3=A9t=C3=A9?= "
    raw = b"From: a@x.test\r\nSubject: " + word * 20000 + b"\r\n\r\nx\r\n"
    start = time.perf_counter()
    mail = parse_message(raw)
    assert time.perf_counter() - start < 0.5
    assert mail.subject.startswith("étéété") and len(mail.subject) <= Limits().max_header_value
    assert any(d.startswith("limit:header-length") for d in mail.defects)


def test_many_parts_are_capped():
    body = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(3000))
    raw = b'From: a@x.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + b"--b--\r\n"
    mail = parse_message(raw, Limits(max_parts=50))
    assert mail.error is None and mail.body_text.startswith("part 0")
    assert any(d.startswith("limit:parts") for d in mail.defects)


def test_oversized_message_is_an_error_with_headers():
    raw = b"From: big@x.test\r\nSubject: gros\r\nMessage-ID: <big@x.test>\r\n\r\n" + b"A" * 5000
    mail = parse_message(raw, Limits(max_bytes=1000))
    assert mail.error.startswith("message too large")
    assert (mail.from_addr, mail.subject, mail.message_id) == ("big@x.test", "gros", "<big@x.test>")


def test_attachment_content_kept_only_under_the_cap():
    import base64

    blob = base64.encodebytes(b"\x00" * 4096)
    raw = (
        b'From: a@x.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nvoir PJ\r\n--b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--b--\r\n"
    )
    kept = parse_message(raw).attachments[0]
    dropped = parse_message(raw, Limits(keep_file_bytes=1024)).attachments[0]
    assert kept.size == dropped.size == 4096
    assert kept.content is not None and dropped.content is None


def test_typical_mail_parses_in_well_under_two_milliseconds():
    raw = (FIXTURES / "clients" / "outlook_reply_fr.eml").read_bytes()
    parse_message(raw)
    start = time.perf_counter()
    for _ in range(50):
        parse_message(raw)
    assert (time.perf_counter() - start) / 50 < 0.01  # loose bound for slow CI; ~0.5 ms here


def test_time_budget_spent_still_gives_a_value():
    raw = (FIXTURES / "structure" / "html_only_table.eml").read_bytes()
    mail = parse_message(raw, Limits(time_budget=0.0))
    assert mail.error is None and mail.subject == "Incident reception des appels"
    assert any(d.startswith("limit:time") for d in mail.defects)


def test_absurdly_nested_html_falls_back_to_stripped_text():
    html = "<div>" * 5000 + "Portail KO" + "</div>" * 5000
    raw = b"From: a@x.test\r\nContent-Type: text/html\r\n\r\n" + html.encode()
    start = time.perf_counter()
    mail = parse_message(raw)
    assert time.perf_counter() - start < 2.0
    assert mail.error is None and "Portail KO" in mail.body_text
