"""start_time extraction (mailbot.when): one table row per phrasing family.

Each row: the text of a mail, the mail's Date (aware, any offset), and the
start_time the support desk expects (None when the mail does not say when
the problem began).
"""

from __future__ import annotations

import copy
import datetime as dt
import time
import tomllib
from pathlib import Path

import pytest

from mailbot.errors import RuleFileError
from mailbot.when import StartTime, find_start_time, load_date_rules

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "dates.toml"
DOC = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
RULES = load_date_rules(DOC, "dates.toml")

MON = "2026-11-16T10:00:00+01:00"   # Monday 16 Nov 2026, 10:00 Paris
WED = "2026-11-18T09:41:08+01:00"   # Wednesday 18 Nov 2026


def start(text: str, ref: str = MON, subject: str = "") -> str | None:
    found = find_start_time(text, dt.datetime.fromisoformat(ref), RULES, subject=subject)
    return found.value if found else None


CASES = [
    # --- explicit dates and times -----------------------------------------
    ("checklist heading", "- Date et heure de début : 03/11/2026, 08h05\n- Impact : partiel", MON, "2026-11-03T08:05:00"),
    ("table cell heading", "Début de l'incident       04/11/2026 à 03h40\nLignes 15", MON, "2026-11-04T03:40:00"),
    ("heading then 'le'", "Début le 13/11 à 9h50. Tests OTN faits.", MON, "2026-11-13T09:50:00"),
    ("ISO date and time", "Début : 2026-11-16 09:40", MON, "2026-11-16T09:40:00"),
    ("event verb, dd/mm à HHhMM", "Le bandeau s'est figé le 16/11 à 9h40 sur tous les postes.", MON, "2026-11-16T09:40:00"),
    ("weekday + day + month + vers", "Depuis lundi 16 novembre vers 7h40 la main courante est vide.", WED, "2026-11-16T07:40:00"),
    ("weekday + dd/mm + vers", "Depuis samedi 14/11 vers 8h, l'export est vide.", MON, "2026-11-14T08:00:00"),
    ("textual date, date only", "Depuis le 3 novembre, aucune donnée.", MON, "2026-11-03"),
    ("numeric date, date only", "Depuis le 03/11, l'export CSV est vide.", MON, "2026-11-03"),
    ("date in October, year inferred", "Les doublons apparaissent à partir du 14/10 ; avant, c'est cohérent.", MON, "2026-10-14"),
    ("started + textual date", "It started on Monday 16 November.", WED, "2026-11-16"),
    ("panne constatée", "Panne constatée le 18/11 à 3h10 par l'équipe de nuit.", WED, "2026-11-18T03:10:00"),
    ("a commencé", "Ça a commencé le 17/11 vers 13h30, sur tous les appels.", WED, "2026-11-17T13:30:00"),
    ("US order from an English client", "Outlook stopped syncing since 11/15/2026.", MON, "2026-11-15"),
    # --- times of the mail's day -------------------------------------------
    ("HhMM", "Plus aucun appel sur le 15 depuis 9h10.", MON, "2026-11-16T09:10:00"),
    ("H h", "depuis 8h le portail est lent", MON, "2026-11-16T08:00:00"),
    ("H h MM with spaces", "depuis 8 h 30 plus de réécoute", MON, "2026-11-16T08:30:00"),
    ("HH:MM", "the phone has been rebooting since 07:30: it shows the logo", MON, "2026-11-16T07:30:00"),
    ("HH heures MM", "Coupure depuis 9 heures 15 sur le 112.", MON, "2026-11-16T09:15:00"),
    ("et demie", "depuis 8h et demie on n'a plus la main courante", MON, "2026-11-16T08:30:00"),
    ("midi", "Depuis midi pile, la fiche ne s'enregistre plus.", "2026-11-16T13:40:00+01:00", "2026-11-16T12:00:00"),
    ("ce midi = 12:00", "Le bandeau affiche des caractères bizarres depuis ce midi.", "2026-11-16T16:00:00+01:00", "2026-11-16T12:00:00"),
    ("ce midi vers HHhMM", "l'écran est fendu depuis qu'il est tombé ce midi vers 12h30", "2026-11-16T16:00:00+01:00", "2026-11-16T12:30:00"),
    ("after a few words", "Impossible d'accéder au portail depuis la relève de 19h.", "2026-11-16T19:45:00+01:00", "2026-11-16T19:00:00"),
    ("English am/pm", "Selfcare has been unreachable since 1:10pm.", "2026-11-16T13:45:00+01:00", "2026-11-16T13:10:00"),
    ("English h am", "We can't log in since 6:15am. They were logged in before 6.", MON, "2026-11-16T06:15:00"),
    ("English 'at 7.40'", "It froze this morning at 7.40 on every desk.", MON, "2026-11-16T07:40:00"),
    # --- relative phrases ---------------------------------------------------
    ("ce matin vers", "Ce matin vers 7h40 le combiné est tombé.", MON, "2026-11-16T07:40:00"),
    ("depuis ce matin + hour", "depuis ce matin 8h une partie des appels coupe", MON, "2026-11-16T08:00:00"),
    ("hour then ce matin", "Selfcare est inaccessible depuis 8h ce matin.", MON, "2026-11-16T08:00:00"),
    ("ce matin, no hour: date only", "L'imprimante n'imprime plus rien depuis ce matin.", MON, "2026-11-16"),
    ("cet après-midi, no hour", "Mon casque grésille depuis cet après-midi.", "2026-11-16T16:40:00+01:00", "2026-11-16"),
    ("tantôt (regional)", "La réécoute plante depuis ce tantôt.", "2026-11-16T16:40:00+01:00", "2026-11-16"),
    ("cette nuit, no hour", "Depuis cette nuit, plus rien dans Nice.", MON, "2026-11-16"),
    ("cette nuit vers 2h", "Depuis cette nuit vers 2h, les enregistrements n'apparaissent plus.", MON, "2026-11-16T02:00:00"),
    ("cette nuit à partir de", "Cette nuit, à partir de 2h15, la mise en attente ne marchait plus.", MON, "2026-11-16T02:15:00"),
    ("hier + hour", "depuis hier 22h le fixe n'a plus de tonalité", MON, "2026-11-15T22:00:00"),
    ("hier vers", "Depuis hier vers 22h je ne peux plus réécouter.", MON, "2026-11-15T22:00:00"),
    ("hier soir vers 23h", "Hier soir vers 23h le 112 a cessé d'arriver.", MON, "2026-11-15T23:00:00"),
    ("hier soir + 11h = 23h", "Depuis hier soir 11h plus d'appels du 112.", MON, "2026-11-15T23:00:00"),
    ("hour then hier", "Depuis 23h30 hier, des appels fantômes.", "2026-11-16T00:47:00+01:00", "2026-11-15T23:30:00"),
    ("avant-hier", "Le portail rame depuis avant-hier.", MON, "2026-11-14"),
    ("depuis N minutes", "Plus aucun appel depuis 10 minutes !", "2026-11-16T10:00:30+01:00", "2026-11-16T09:50:00"),
    ("il y a une heure", "Le bandeau a planté il y a une heure.", MON, "2026-11-16T09:00:00"),
    ("une demi-heure", "plus d'appels depuis une demi-heure", MON, "2026-11-16T09:30:00"),
    ("N days ago: date only", "Export broken, it started 2 days ago.", MON, "2026-11-14"),
    ("English since this morning hour", "no incoming calls on line 15 since 7:40 this morning.", MON, "2026-11-16T07:40:00"),
    ("yesterday evening around 10pm", "It failed yesterday evening around 10pm.", MON, "2026-11-15T22:00:00"),
    ("started yesterday around 4pm", "Started yesterday around 4pm. It's only me.", MON, "2026-11-15T16:00:00"),
    ("since yesterday HH:MM", "the map stays blank since yesterday 17:20.", MON, "2026-11-15T17:20:00"),
    ("at lunchtime: date only", "The desk phone shows No service since lunchtime.", "2026-11-16T14:27:00+01:00", "2026-11-16"),
    ("last night + date + hour", "Since the CTI update last night (15 Nov, around 23:00), 3 positions fail.", MON, "2026-11-15T23:00:00"),
    ("last night around 2am", "It went down last night around 2am.", MON, "2026-11-16T02:00:00"),
    ("deictic without start word", "The workstation died this morning around 9:00.", MON, "2026-11-16T09:00:00"),
    ("deictic date only, no start word", "impossible d'ouvrir ma session windows ce matin, mdp expiré", MON, "2026-11-16"),
    ("failure verb after the time", "Vers 14h le bandeau a planté sur tous les postes.", "2026-11-16T16:00:00+01:00", "2026-11-16T14:00:00"),
    ("English verb after the time", "At 9:10 the calls on line 15 stopped.", MON, "2026-11-16T09:10:00"),
    ("day of month only, after depuis", "Depuis le 12, l'export est vide.", MON, "2026-11-12"),
    ("'depuis le 15' is the line, not a day", "Les appels transférés depuis le 15 n'arrivent plus.", MON, None),
    ("time a few words after the day", "Ce matin, à la prise de poste de 7h, le bandeau ne se lançait plus.", MON, "2026-11-16T07:00:00"),
    ("generic part of day after depuis", "Ça rame depuis le début de l'après-midi.", "2026-11-16T16:00:00+01:00", "2026-11-16"),
    ("la nuit dernière", "Plus d'enregistrements depuis la nuit dernière.", MON, "2026-11-16"),
    ("o'clock", "No calls since 9 o'clock.", MON, "2026-11-16T09:00:00"),
    ("range: entre", "Entre 8h et 8h20 plus aucun appel n'est arrivé.", MON, "2026-11-16T08:00:00"),
    ("8h du soir", "Depuis hier 10h du soir le 116 117 est muet.", MON, "2026-11-15T22:00:00"),
    # --- weekdays: most recent past such day --------------------------------
    ("depuis lundi", "Depuis lundi la recherche ne renvoie rien.", WED, "2026-11-16"),
    ("depuis lundi + hour", "Depuis lundi 9h environ, la recherche ne renvoie rien.", WED, "2026-11-16T09:00:00"),
    ("same weekday = a week ago", "Depuis mercredi, l'export plante.", WED, "2026-11-11"),
    ("jeudi dernier, a few words after depuis", "Depuis le passage du Portail en version 4.12 jeudi dernier, ça fige.", MON, "2026-11-12"),
    ("vendredi après-midi", "Ça ne marche plus depuis vendredi après-midi.", MON, "2026-11-13"),
    ("since Wednesday 23:30", "Calls drop since Wednesday 23:30.", MON, "2026-11-11T23:30:00"),
    ("Since Monday (English)", "Since Monday none of the operators can export.", WED, "2026-11-16"),
    # --- +0000 dates, midnight and DST --------------------------------------
    ("+0000 crossing midnight", "plus d'appels 15 ni 112 depuis 0h15 svp rappelez", "2026-11-15T23:40:00+00:00", "2026-11-16T00:15:00"),
    ("+0000: 'hier' is the Paris day before", "Depuis hier 22h le fixe est muet.", "2026-11-15T23:40:00+00:00", "2026-11-15T22:00:00"),
    ("+0000: hour is Paris time", "depuis ce matin 7h40 les appels coupent", "2026-11-06T08:02:19+00:00", "2026-11-06T07:40:00"),
    ("hour later than the mail = day before", "Plus d'appels depuis 23h.", "2026-11-16T00:20:00+01:00", "2026-11-15T23:00:00"),
    ("DST day, summer time", "depuis 9h le portail est KO", "2026-03-29T08:30:00+00:00", "2026-03-29T09:00:00"),
    ("summer, +0000 morning", "Ce matin vers 7h le combiné est tombé.", "2026-07-01T05:30:00+00:00", "2026-07-01T07:00:00"),
    ("summer, minutes back across DST offset", "Plus d'appels depuis 20 minutes.", "2026-07-01T05:30:00+00:00", "2026-07-01T07:10:00"),
    # --- several times: the start wins --------------------------------------
    ("start beats test and hotline", "Depuis 1h30 les appels n'arrivent qu'une fois sur deux.\nPack OTN passé à 1h55.\nHotline appelée à 2h05.", "2026-11-16T02:15:00+01:00", "2026-11-16T01:30:00"),
    ("hotline time before the start", "Je confirme l'incident signalé à la hotline à 02h45 : depuis 02h35, plus aucun appel.", "2026-11-16T02:58:00+01:00", "2026-11-16T02:35:00"),
    ("start beats recovery", "Le portail ne marchait plus depuis 8h10. Il est revenu à 9h.", MON, "2026-11-16T08:10:00"),
    ("recovered staffing, then the failure", "nos effectifs sont au complet depuis 16h. On essaie depuis 16h30 de le faire, en vain.", "2026-11-16T16:58:00+01:00", "2026-11-16T16:30:00"),
    ("cued start beats uncued context", "Jeudi dernier, une famille a réclamé. Ça ne marche plus depuis vendredi après-midi.", MON, "2026-11-13"),
    ("schedule change is not a start", "Je voulais passer le début de 22h à 21h30, mais depuis 15h le bouton renvoie une erreur.", "2026-11-16T17:05:00+01:00", "2026-11-16T15:00:00"),
    ("forwarder's received time is not a start", "Je vous transfère le mail d'une ARM reçu hier soir.", MON, None),
    ("planned meeting is not a start", "Selfcare KO depuis 8h ce matin. On voulait relire nos règles avant la réunion de jeudi prochain.", MON, "2026-11-16T08:00:00"),
    # --- disqualified: recovery, planned, requested -------------------------
    ("recovery only", "le bandeau est revenu tout seul vers 15h, vous pouvez clôturer.", "2026-11-16T15:20:00+01:00", None),
    ("rétabli depuis", "Le 15 est rétabli depuis 10h, merci.", "2026-11-16T10:30:00+01:00", None),
    ("works again since", "It works again since this morning, you can close it.", MON, None),
    ("back since 3pm", "The Bandeau is back since 3pm, thanks.", "2026-11-16T16:00:00+01:00", None),
    ("refonctionne depuis ce midi", "C'est revenu, la réécoute refonctionne depuis que l'informatique est passée ce midi.", "2026-11-16T14:00:00+01:00", None),
    ("recovery then relapse", "C'était revenu hier, mais depuis 9h ça replante.", MON, "2026-11-16T09:00:00"),
    ("reparti depuis", "C'est reparti depuis 10h, merci.", "2026-11-16T10:30:00+01:00", None),
    ("hotline time after a bare time", "À 6h30 la hotline a été appelée.", MON, None),
    ("planned date", "La bascule est prévue le 20/11 à 8h.", MON, None),
    ("planned change from next Monday", "À partir de lundi prochain (23/11), le CRRA voisin change de numéro.", "2026-11-17T10:02:00+01:00", None),
    ("requested for tomorrow", "Merci de l'activer demain à 8h.", MON, None),
    ("requested future deletion", "Pourriez-vous le supprimer à partir du 2 janvier ?", "2026-11-19T15:55:00+01:00", None),
    ("planned works in December", "Travaux programmés du 24 au 26 décembre, de 22h à 6h.", MON, None),
    ("arrival date of a new colleague", "Mme Fontaine nous rejoint le 23 novembre, merci de lui créer un compte.", MON, None),
    ("past arrival date", "Elle a pris ses fonctions au CRRA le 2 novembre.", MON, None),
    ("until", "Je suis de garde jusqu'à demain 8h30.", MON, None),
    ("quoted-reply header", "Le 12/11/2026 à 09:14, Support SI-Samu a écrit :", MON, None),
    # --- nothing said --------------------------------------------------------
    ("no date at all", "Bonjour, le portail ne marche pas sur mon poste. Merci.", MON, None),
    ("phone call time only", "Hotline appelée à 6h30, on nous a demandé de tracer par mail.", MON, None),
    ("test time only", "Test Pack OTN fait à 6h15 : KO.", MON, None),
    ("versions are not dates", "Firefox 115.3.1esr, Portail 4.12, Edge 131.0.2903.51, SIP 403.", MON, None),
    ("phone number is not a time", "Rappelez-moi au 01 99 00 41 12 svp.", MON, None),
]


@pytest.mark.parametrize("text, ref, want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_start_time(text: str, ref: str, want: str | None) -> None:
    assert start(text, ref) == want


def test_subject_is_read_when_the_body_says_nothing() -> None:
    assert start("Voir ci-dessous.", MON, subject="Plus d'appels 114 depuis 9h48") == "2026-11-16T09:48:00"


def test_body_wins_over_subject() -> None:
    assert start("Depuis cette nuit vers 2h, plus rien.", MON, subject="Plus rien depuis 3h") == "2026-11-16T02:00:00"


def test_result_quotes_the_mail_and_names_the_rule() -> None:
    found = find_start_time("Bonjour,\nDepuis 14h10 plus aucun appel.", dt.datetime.fromisoformat("2026-11-16T14:18:00+01:00"), RULES)
    assert found == StartTime("2026-11-16T14:10:00", "14h10", "start-cue")


def test_accents_and_case_do_not_matter() -> None:
    assert start("DEPUIS HIER SOIR 23H PLUS D'APPELS", MON) == "2026-11-15T23:00:00"
    assert start("depuis cet apres-midi le casque gresille", "2026-11-16T16:00:00+01:00") == "2026-11-16"


def test_naive_ref_is_paris_time() -> None:
    found = find_start_time("depuis 9h10", dt.datetime(2026, 11, 16, 10, 0), RULES)
    assert found is not None and found.value == "2026-11-16T09:10:00"


def test_staff_can_add_a_word() -> None:
    doc = copy.deepcopy(DOC)
    doc["cues"]["start"].append("en rade")
    doc["parts_of_day"]["matin"]["words"].append("aube")
    rules = load_date_rules(doc)
    ref = dt.datetime.fromisoformat(MON)
    assert find_start_time("Le 15 est en rade 9h05.", ref, RULES) is None
    assert find_start_time("Le 15 est en rade 9h05.", ref, rules).value == "2026-11-16T09:05:00"
    assert find_start_time("Plus rien depuis cette aube.", ref, rules).value == "2026-11-16"


@pytest.mark.parametrize(
    "mutate, entry, key",
    [
        (lambda d: d["months"].__setitem__("brumaire", 13), "months", "brumaire"),
        (lambda d: d["cues"].__setitem__("start", "depuis"), "cues", "start"),
        (lambda d: d["cues"]["recovery"].append(""), "cues", "recovery"),
        (lambda d: d["parts_of_day"]["midi"].__setitem__("hour", 25), "parts_of_day.midi", "hour"),
        (lambda d: d["parts_of_day"]["soir"].__setitem__("colour", "red"), "parts_of_day.soir", "colour"),
        (lambda d: d["time_words"].__setitem__("minuit", "24h"), "time_words", "minuit"),
        (lambda d: d["limits"].__setitem__("start_gap_words", -1), "limits", "start_gap_words"),
        (lambda d: d.__setitem__("moths", {}), "moths", ""),
        (lambda d: d.pop("weekdays"), "weekdays", ""),
    ],
)
def test_bad_rule_file_names_entry_and_key(mutate, entry: str, key: str) -> None:
    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(RuleFileError) as info:
        load_date_rules(doc, "dates.toml")
    err = info.value
    assert (err.source, err.entry, err.key) == ("dates.toml", entry, key)
    assert "dates.toml" in str(err) and entry in str(err) and key in str(err)


def test_fast_enough() -> None:
    text = ("Bonjour,\n\nDepuis 7h40 le bandeau de communication ne se lance plus du tout sur mon poste "
            "(ARM 4) : une fenêtre blanche s'ouvre puis plus rien. Hotline appelée à 8h02.\n"
            "J'utilise Chrome (version 131.0.6778.86) et je me connecte avec ma e-CPS.\n" * 3)
    ref = dt.datetime.fromisoformat(MON)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        find_start_time(text, ref, RULES)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 0.002  # target 0.2 ms; generous bound for slow CI machines
