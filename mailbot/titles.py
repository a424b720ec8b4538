"""Ticket titles: the short *intitulé* the desk reads in its backlog.

Role: build, from what the triage found (case, application, fields) and the
mail's subject, a title like the ones technicians write in EasyVista::

    Réception appels – 15, 116117 sans appel (réception nulle)
    Portail – main courante : ne s'affiche plus
    Bandeau – bouton Transférer (partiel)
    Téléphone fixe SI-Samu – poste 4
    Selfcare – demande d'activation DEBORD_X

and never the raw "RE: TR: urgent". The subject is only used for its
symptom words ("ne s'affiche plus", "lent", "erreur 500") or, last resort,
cleaned of reply prefixes, tags and shouting. At most :data:`MAX_LENGTH`
characters; always passed through :func:`mailbot.masking.mask_text` (titles
show in lists, digests, alerts and exports: no patient data, no address).

Import rule: pure core. Standard library, :mod:`mailbot.masking`,
:mod:`mailbot.compose` (subject cleaning). No I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mailbot.compose import clean_header_text, clean_subject
from mailbot.masking import mask_text

__all__ = ["APP_LABELS", "MAX_LENGTH", "make_title", "symptom_of"]

MAX_LENGTH = 90
SEP = " – "

APP_LABELS = {
    "portail": "Portail",
    "bandeau": "Bandeau",
    "nice": "Nice (enregistrements)",
    "statistiques": "Statistiques",
    "selfcare": "Selfcare",
}

_ACTIONS = {
    "ajout": "demande d'ajout de routage",
    "modification": "demande de modification de routage",
    "suppression": "demande de suppression de routage",
    "activation": "demande d'activation",
    "desactivation": "demande de désactivation",
}

# Symptom words of the field (policy §9 style), French and the English met in
# the corpora, mapped to the desk's wording. The first that matches wins, so
# specific phrases come before general ones.
_SYMPTOMS: tuple[tuple[str, str], ...] = (
    (r"ne s'affiche(?:nt)? (?:plus|pas)|n'affiche(?:nt)? plus|page blanche|page vide|not (?:loading|displaying)",
     "ne s'affiche plus"),
    (r"ne s'ouvre(?:nt)? (?:plus|pas)|won't open", "ne s'ouvre plus"),
    (r"ne se lance(?:nt)? (?:plus|pas)", "ne se lance plus"),
    (r"ne s'enregistre(?:nt)? (?:plus|pas)", "ne s'enregistre plus"),
    (r"red[ée]marre(?:nt)? en boucle|reboot(?:ing)?(?: loop)?|red[ée]marrage", "redémarre en boucle"),
    (r"(?:pas|plus|sans) de tonalit[ée]|sans tonalit[ée]|no dial tone", "sans tonalité"),
    (r"pas de service|no service", "« pas de service »"),
    (r"pas de son|son hach[ée]|inaudible", "son absent ou haché"),
    (r"(?:erreur|error|http)\s*(\d{3})\b", "erreur {0}"),
    (r"\b(50[0-4])\b", "erreur {0}"),
    (r"inaccessible|injoignable|unreachable|impossible d'acc[ée]der|plus d'acc[èe]s", "inaccessible"),
    (r"(?:tr[èe]s |super )?lent(?:e|s|es)?\b|lenteurs?|slow", "lenteurs"),
    (r"fig[ée]e?s?|se fige(?:nt)?|gel[ée]e?s?|frozen|freez", "figé"),
    (r"bloqu[ée]e?s?|stuck", "bloqué"),
    (r"plant(?:e|é|ent)\b|crash", "plante"),
    (r"vide\b|empty", "vide"),
    (r"doublons?|en double|duplicate", "doublons"),
    (r"inutilisable|unusable", "inutilisable"),
    (r"al[ée]atoire|intermittent", "aléatoire"),
    (r"ne (?:fonctionne(?:nt)?|marche(?:nt)?) (?:plus|pas)|hors service|\bhs\b|\bko\b|\bdown\b|fail(?:s|ing|ed)?\b",
     "ne fonctionne plus"),
    (r"en erreur|erreur|error", "en erreur"),
    (r"impossible|cannot|can't", "impossible"),
)
_SYMPTOM_RES = tuple((re.compile(p, re.IGNORECASE), label) for p, label in _SYMPTOMS)

# Words that say nothing about the problem: "URGENT !!!", "[SAMU 74]",
# "Incident", "pb", "souci" (what "RE: TR: urgent" leaves once cleaned).
_NOISE = re.compile(
    r"\[[^\]]{0,40}\]|\b(?:urgent|urgence|important|incident|d[ée]claration d'incident|probl[èe]me|pb|"
    r"souci|soucis|help|svp|s\.v\.p\.|merci|fyi|info)\b|[!?]{2,}|!",
    re.IGNORECASE,
)
_POST = re.compile(r"\b(?:poste|position|desk|table|pos\.?)\s*(?:de\s+|n°\s*|no\.?\s*|#\s*)?([A-Za-z]*\s*\d{1,3}|superviseur|supervisor|formateur|régulateur\s*\d*)",
                   re.IGNORECASE)


def symptom_of(*texts: str) -> str:
    """The first symptom word found in ``texts`` (in order), '' if none."""
    for text in texts:
        if not text:
            continue
        for pattern, label in _SYMPTOM_RES:
            match = pattern.search(text)
            if match:
                return label.format(*match.groups())
    return ""


def _short(value: Any, limit: int = 40) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value or "")
    text = clean_header_text(text, limit=400)
    if len(text) > limit:
        cut = text[:limit - 1]
        if " " in cut[limit // 2:]:
            cut = cut[:cut.rfind(" ")]
        text = cut.rstrip(" ,;:–-") + "…"
    return text


def _features(fields: Mapping[str, Any], limit: int = 2) -> str:
    features = fields.get("features")
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, (list, tuple)) or not features:
        return ""
    shown = [_short(f, 36) for f in features[:limit] if str(f).strip()]
    more = " …" if len(features) > limit else ""
    return ", ".join(shown) + more


def _subject_words(subject: str) -> str:
    """The subject without Re:/TR:, ticket tags, shouting and empty words."""
    text = clean_subject(subject)
    text = _NOISE.sub(" ", text)
    text = " ".join(text.split()).strip(" -–:/+,.;")
    if len(re.sub(r"[^\w]", "", text)) < 3:
        return ""
    if text.isupper():   # "PORTAIL HS" -> "Portail hs" reads calmer in a list
        text = text.capitalize()
    return text


def _impact_suffix(fields: Mapping[str, Any]) -> str:
    parts = []
    if fields.get("impact_scope") == "total":
        parts.append("tout le SAMU")
    if fields.get("environment") == "formation":
        parts.append("formation")
    return f" ({', '.join(parts)})" if parts else ""


def _title_a(fields: Mapping[str, Any]) -> str:
    lines = fields.get("impacted_lines")
    lines_text = ", ".join(str(x) for x in lines) if isinstance(lines, (list, tuple)) and lines else ""
    reception = fields.get("reception")
    if reception == "nulle":
        what = f"{lines_text} sans appel" if lines_text else "plus aucun appel"
        return f"Réception appels{SEP}{what} (réception nulle)"
    if reception == "partielle":
        what = f"{lines_text} perturbé{'s' if ',' in lines_text else ''}" if lines_text else "appels perturbés"
        return f"Réception appels{SEP}{what} (réception partielle)"
    return f"Réception appels{SEP}{lines_text or 'lignes à préciser'}"


def _post_of(*texts: str) -> str:
    """"poste 4" from "téléphone fixe du poste 4" / "desk phone at position 4"."""
    for text in texts:
        match = _POST.search(text or "")
        if match:
            return f"poste {' '.join(match.group(1).split())}"
    return ""


def _title_c(fields: Mapping[str, Any], symptom: str, is_request: bool, subject_words: str) -> str:
    equipment = str(fields.get("equipment") or "")
    low = equipment.lower()
    phone = any(w in low for w in ("téléphone", "telephone", "phone", "combiné", "poste téléphonique", "tel fixe"))
    if is_request:
        return f"Matériel SI-Samu{SEP}demande : {_short(equipment or subject_words or 'équipement', 50)}"
    if phone:
        where = _post_of(equipment, subject_words)
        head = "Téléphone fixe SI-Samu"
        tail = " : ".join(p for p in (where, symptom) if p)
        return f"{head}{SEP}{tail}" if tail else head
    what = _short(equipment, 50) if equipment else (subject_words or "équipement")
    return f"Matériel SI-Samu{SEP}{what}" + (f" : {symptom}" if symptom else "")


def _title_b(application: str | None, fields: Mapping[str, Any], symptom: str, is_request: bool,
             subject_words: str) -> str:
    app = APP_LABELS.get(application or "", "Application SI-Samu")
    if application == "selfcare":
        action = fields.get("requested_action")
        if action and (is_request or action in ("activation", "desactivation")):
            routing = _short(fields.get("routing_name") or "", 40)
            return f"{app}{SEP}{_ACTIONS.get(action, 'demande')}" + (f" {routing}" if routing else "")
    if application == "bandeau":
        state = fields.get("bandeau_state")
        if state == "total":
            where = "" if fields.get("impact_scope") == "total" else _post_of(subject_words)
            return f"{app}{SEP}totalement inopérant" + (f", {where}" if where else "") + _impact_suffix(fields)
        features = _features(fields)
        if features:
            body = features + (f" : {symptom}" if symptom and symptom != "ne fonctionne plus" else "")
            return f"{app}{SEP}{body}" + (" (partiel)" if state == "partiel" else _impact_suffix(fields))
    if is_request:
        what = _features(fields) or subject_words or "demande"
        if not what.lower().startswith(("demande", "droit", "création", "creation", "ouverture", "question")):
            what = f"demande : {what}"
        return f"{app}{SEP}{what}"
    features = _features(fields)
    if features and symptom:
        body = f"{features} : {symptom}"
    elif features:
        body = features
    elif symptom:
        body = symptom
    elif fields.get("error_message"):
        body = f"« {_short(fields['error_message'], 40)} »"
    else:
        body = subject_words or "incident"
    return f"{app}{SEP}{body}" + _impact_suffix(fields)


def _fit(title: str, limit: int) -> str:
    title = " ".join(title.split())
    if len(title) <= limit:
        return title
    cut = title[:limit - 1]
    space = cut.rfind(" ")
    if space > limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:–-(") + "…"


def make_title(cas: str | None, application: str | None, fields: Mapping[str, Any] | None,
               subject: str | None, is_request: bool = False, *, text: str = "",
               limit: int = MAX_LENGTH) -> str:
    """The ticket's title (≤ ``limit`` characters, masked).

    ``text``: optionally what the writer wrote (new text of the first mail);
    only searched for a symptom word when the subject has none.
    """
    fields = dict(fields or {})
    subject_words = _subject_words(subject or "")
    symptom = symptom_of(clean_subject(subject or ""), (text or "")[:400])
    if cas == "A":
        title = _title_a(fields)
    elif cas == "B":
        title = _title_b(application, fields, symptom, is_request, subject_words)
    elif cas == "C":
        title = _title_c(fields, symptom, is_request, subject_words)
    elif cas == "D":
        title = f"Hors SI-Samu{SEP}{subject_words or symptom or 'demande pour l’informatique locale'}"
    else:
        title = subject_words or "Demande à qualifier"
    # Mask before fitting (a cut NIR would no longer be recognised), then
    # again after (the cut may not create one, but be sure).
    title = mask_text(clean_header_text(title, limit=400), emails=True)
    return mask_text(_fit(title, limit), emails=True)
