"""Field values (policy §5) from a ``Reading``, for the case already decided.

Pure. Each extractor returns a value (normalised as §5 says) and the hit
that gave it, so ``mailbot explain`` can show the words. Values come only
from what the mail says: nothing is guessed, nothing defaulted.
"""

from __future__ import annotations

import re
from typing import Any

from mailbot.classify import Case, state_of
from mailbot.model import Hit, ParsedMail
from mailbot.reading import Reading, SignalHit

_BROWSERS = {
    "firefox": "firefox", "ff": "firefox", "mozilla": "firefox",
    "chrome": "chrome", "chromium": "chrome",
    "edge": "edge", "msedge": "edge",
    "safari": "safari",
}
_BROWSER_RE = re.compile(r"\b(firefox|ff|mozilla|google\s+chrome|chrome|chromium|microsoft\s+edge|edge|safari)\b", re.I)
_VERSION_AFTER = re.compile(
    r"^[\s:,(]*(?:esr\s*)?(?:\(?\s*(?:version|v\.?|vers\.?)\s*:?\s*)?(\d{2,3}(?:\.\d+){0,3}(?:\s?esr)?)\b", re.I)
_VERSION_BARE = re.compile(r"\b(?:version|vers\.)\s*:?\s*(\d{2,3}(?:\.\d+){0,3}(?:\s?esr)?)\b", re.I)
_STRONG_TOTAL = re.compile(r"inop[ée]rant|inutilisable|totalement|complètement|compl[eè]tement|totally|completely|"
                           r"ne se lance|gris\b|blanche|plus rien|rien ne|aucun bouton|fig[ée]|gel[ée]|plant[ée]|"
                           r"frozen|\bHS\b|hors service", re.I)
_LINES_RE = re.compile(r"(?<![\d.,:/h])(116\s?117|116\s?000|15|112|114|18|17|119|115)(?!\d|[.,]\d|[:/h%])")
_ERROR_QUOTED = re.compile(r"[«“\"]\s*([^«»“”\"\n]{3,160}?)\s*[»”\"]")
_ERROR_CODE = re.compile(
    r"\b((?:erreur|error|err\.?)\s*:?\s*\d{3}\b[^.,;\n()«»\"]{0,60}|"
    r"(?:SIP\s*)?\d{3}\s+(?:Bad Gateway|Forbidden|Not Found|Request Entity Too Large|Service Unavailable|"
    r"Internal Server Error|Gateway Time-?out|Unauthorized|Request Timeout)|"
    r"Internal Server Error|Service Unavailable|Bad Gateway)", re.I)
_STATUS_NOT_ERROR = re.compile(r"^(connexion en cours|chargement|loading|registering|connecting)", re.I)
_WORD_NUMBERS = {"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7,
                 "huit": 8, "neuf": 9, "dix": 10, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
                 "six_": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_N = r"(\d{1,3}|un|une|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|two|three|four|five|seven|eight|nine|ten)"
_PEOPLE = (r"(?:ARMs?|PARMs?|utilisateurs?|users?|agents?|opérateurs?|operators?|régulateurs?|"
           r"médecins?(?:\s+régulateurs?)?|doctors?|personnes?|people|collègues?(?:\s+cadres?)?|stagiaires?|"
           r"cadres?|superviseurs?|assistant(?:e)?s?|infirmi[eè]re?s?|secrétaires?|formateurs?|trainees?|"
           r"regulation operators?|physicians?)")
_COUNT = re.compile(r"(?<![\w/])" + _N + r"(?=\s+(?:de\s+nos\s+|of\s+(?:our|the)\s+)?" + _PEOPLE + r")", re.I)
_HEADCOUNT = re.compile(
    r"(?P<chain>(?<![\w/:.])" + _N + r"\s+(?:de\s+nos\s+|of\s+(?:our|the)\s+)?" + _PEOPLE + r"\b(?:\s+\w+){0,3}?"
    r"(?:\s*(?:,|et|and|\+)\s*" + _N + r"\s+" + _PEOPLE + r"\b)*)"
    r"(?P<me>\s*(?:,|et|and|\+)\s*(?:moi(?:-même)?|me|myself)\b)?", re.I)
_OF_US = re.compile(r"\b" + _N + r"\s+(?:of us|d'entre nous)\b|\b(?:on est|nous sommes|we are)\s+" + _N + r"\b(?!\s*h)", re.I)
_ME_AND = [
    (re.compile(r"\bmoi et mes\s+" + _N + r"\s+collègues", re.I), 1),
    (re.compile(r"\bmes\s+" + _N + r"\s+collègues[^.]{0,30}\b(?:et moi|aussi|ont le même|ont la même)", re.I), 1),
    (re.compile(r"\b(?:ma|mon)\s+(?:collègue|voisine?|binôme)(?:\s+\w+)?\s+et moi\b|"
                r"\bmoi et (?:ma|mon)\s+(?:collègue|voisine?|binôme)\b|\bmy colleague and I\b|"
                r"\bme and (?:one|a|my) (?:colleague|co-worker)\b", re.I), "2"),
]


def _num(word: str) -> int | None:
    w = word.lower()
    if w.isdigit():
        return int(w)
    return _WORD_NUMBERS.get(w)


class _TextOnly:
    """A Reading whose hits leave out attachment names: a file name says which
    application a mail is about, never a field's value (policy §6)."""

    def __init__(self, reading: Reading) -> None:
        self._r = reading
        self._attachments = {i for i, p in enumerate(reading.parts) if p.name == "attachments"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)

    def of(self, *signals: str) -> list[SignalHit]:
        return [h for h in self._r.of(*signals) if h.part not in self._attachments]

    def has(self, *signals: str) -> bool:
        return bool(self.of(*signals))

    def in_clause(self, clause: int, *signals: str) -> list[SignalHit]:
        return [h for h in self.of(*signals) if h.clause == clause]

    def in_sentence(self, sentence: int, *signals: str) -> list[SignalHit]:
        return [h for h in self.of(*signals) if h.sentence == sentence]


class Extractor:
    def __init__(self, reading: Reading, case: Case, mail: ParsedMail, answering: bool = False) -> None:
        self.answering = answering   # an answer in a thread, to our questions
        self.r = _TextOnly(reading)
        self.case = case
        self.mail = mail
        self.states = case.states
        self.fields: dict[str, Any] = {}
        self.trace: list[Hit] = []

    # -- helpers
    def _set(self, name: str, value: Any, hit: SignalHit | None = None, words: str = "") -> None:
        if value is None or value == [] or name in self.fields:
            return
        self.fields[name] = value
        self.trace.append(Hit(hit.signal if hit else f"extract#{name}", words or (hit.text if hit else str(value)),
                              f"field:{name}"))

    def _not_working(self, hit: SignalHit) -> bool:
        return state_of(hit, self.r, self.states) != "working"

    def _text(self) -> str:
        return self.r.text

    # -- extractors
    def run(self) -> dict[str, Any]:
        cas, app = self.case.cas, self.case.application
        if cas == "A":
            self.lines_and_reception()
            self.otn()
            self.impact()
        if cas in ("B", "D", None):
            self.impact()
        if cas != "A":
            self.environment()
        if cas in ("B", "D") or cas is None:
            self.browser()
            self.auth()
            self.reproducibility()
            self.device()
        if cas == "B":
            self.features(app)
            if app == "bandeau":
                self.bandeau_state()
                self.phone_state()
                if self.fields.get("bandeau_state") == "total":
                    # the whole bar is down: its functions are not the question
                    self.fields.pop("features", None)
            if app == "selfcare":
                self.selfcare()
        if cas == "C":
            self.equipment()
        if cas != "A":
            self.error_message()
        self.screenshots()
        return self.fields

    def lines_and_reception(self) -> None:
        rec = [h for h in self.r.of("calls.reception-lost", "calls.reception-partial")]
        sentences = {h.sentence for h in rec}
        lines: list[str] = []
        candidates = sentences | {h.sentence for h in self.r.of("calls.call")}
        if self.answering:   # "Le 15 seulement." answers our question
            candidates |= set(self.r.token_sentence)
        for s in sorted(candidates):
            stext = self.r.sentence_text(s)
            # a line said to work is not impacted: "le 15 fonctionne normalement"
            for clause in sorted({self.r.token_clause[i] for i in range(*self.r.sentence_span(s))}):
                ctext = self.r.clause_text(clause)
                working = self.states.get(clause) == "working" or re.search(
                    r"n'est pas touch|pas touch|not affected|fonctionne|marche|OK\b", ctext, re.I)
                failing = self.r.in_clause(clause, "calls.reception-lost", "calls.reception-partial", "state.failure")
                if working and not failing:
                    continue
                short_answer = self.answering and len(stext.split()) <= 6
                if s not in sentences and not failing and not short_answer and not re.search(
                        r"lignes?|ligne\(s\)|numéros?|lines?|réception|plus d'appels|aucun appel", stext, re.I):
                    continue
                for m in _LINES_RE.finditer(ctext):
                    if re.search(r"(?:SAMU|CRRA|poste|position|table|salle|pos\.)\s*$", ctext[:m.start()], re.I):
                        continue
                    if re.search(r"^\s*(?:h|min|mn|s\b|secondes|minutes|%|ans|jours|novembre|nov|/)", ctext[m.end():], re.I):
                        continue
                    v = re.sub(r"\s", "", m.group(1))
                    if v not in lines:
                        lines.append(v)
        if lines:
            self._set("impacted_lines", lines, words=", ".join(lines))
        partial = [h for h in rec if h.signal == "calls.reception-partial"]
        if partial:
            self._set("reception", "partielle", partial[0])
        elif rec:
            self._set("reception", "nulle", rec[0])

    def otn(self) -> None:
        hits = self.r.of("fields.otn")
        if not hits:
            return
        h = hits[0]
        text = self._text()
        line_end = text.find("\n", h.end_char)
        line = text[h.start_char: line_end if line_end != -1 else len(text)]
        # "Tests Pack OTN : <results>" or "Pack OTN run at 07:05:\n- 15 : ...\n- 112 : ..."
        m = re.match(r"[^:]{0,60}:\s*(.+)", line)
        value = (m.group(1) if m else line).strip()
        # one sentence: "2 KO sur 6. Le 116 117 n'est pas touché" stops at the full stop
        value = re.split(r"(?<=[^\d\s])\.\s+(?=[A-ZÀ-Ý])|(?<=\d)\.\s+(?=[A-ZÀ-Ý])", value)[0]
        if not value or len(value) < 4:
            nxt = text[line_end + 1:].split("\n\n")[0].strip() if line_end != -1 else ""
            items = [re.sub(r"^[-•*]\s*", "", x).strip() for x in nxt.split("\n") if x.strip().startswith(("-", "•", "*"))]
            value = " ; ".join(items)
        if value and not re.match(r"^(non|aucun|pas fait|not done)\b", value, re.I):
            self._set("otn_tests", value.rstrip(". "), h)

    def impact(self) -> None:
        r = self.r
        cas = self.case.cas
        explicit = re.search(r"impact\s*:\s*(total|partiel|unitaire|inconnu)", self._text(), re.I)
        if explicit:
            self._set("impact_scope", explicit.group(1).lower(), words=explicit.group(0))
        total = r.of("impact.total")
        partial = r.of("impact.partial")
        unitary = [h for h in r.of("impact.unitary") if not self._negated(h) and not self._and_others(h)]
        unknown = r.of("impact.unknown")
        others_fine = [h for h in r.of("impact.others-fine")
                       if state_of(h, r, self.states) == "working"]
        # an answer that opens with "Je ne sais pas" answers the impact question
        first_sentence = min((h.sentence for h in r.hits), default=-1)
        if unknown and self.answering and unknown[0].sentence == first_sentence:
            self._set("impact_scope", "inconnu", unknown[0])
        if unknown and any(u.sentence == x.sentence for u in unknown
                           for x in r.of("impact.partial", "impact.others-fine", "impact.total")) or \
                (unknown and re.search(r"(?:impact|combien|touchés?)[^\n]{0,40}(?:ne sais pas|sait pas|not sure)",
                                       self._text(), re.I)):
            self._set("impact_scope", "inconnu", unknown[0])
        if cas == "A":
            # only the impact words of §9 count for cas A
            strong = [h for h in total if re.search(r"salle|postes|SAMU", h.text, re.I)]
            if strong:
                self._set("impact_scope", "total", strong[0])
            return
        users = self.users()
        if total:
            self._set("impact_scope", "total", total[0])
        if unitary:
            self._set("impact_scope", "unitaire", unitary[0])
        if users is not None and users >= 2:
            self._set("impact_scope", "partiel", words=f"{users} users")
        if partial:
            self._set("impact_scope", "partiel", partial[0])
        if others_fine:
            self._set("impact_scope", "unitaire", others_fine[0])
        if users == 1:
            self._set("impact_scope", "unitaire", words="1 user")

    def _negated(self, h: SignalHit) -> bool:
        """ "ce n'est pas que moi", "not only me" """
        before = self.r.doc[max(0, h.start - 2): h.start]
        if any(t.norm_ in ("pas", "not", "no", "sans", "aucun", "without") for t in before):
            return True
        # "ce n'est plus seulement moi" (but "il n'y a plus que moi" is alone)
        return h.text.lower().startswith(("seulement", "uniquement", "only")) and \
            any(t.norm_ in ("plus", "longer") for t in before)

    def _and_others(self, h: SignalHit) -> bool:
        """ "just me and one colleague", "que moi et ma voisine" """
        after = self.r.doc[h.end: h.end + 1]
        return any(t.norm_ in ("et", "and", "+") for t in after)

    def users(self) -> int | None:
        """users_impacted: a head count said in the mail ("3 ARM et un médecin" = 4,
        "les 12 stagiaires et moi-même" = 13, "only me" = 1). Posts and
        positions are not users."""
        text = self._text()
        for rx, add in _ME_AND:
            m = rx.search(text)
            if m:
                n = 2 if add == "2" else (_num(m.group(1)) or 0) + add
                self._set("users_impacted", n, words=m.group(0))
                return n
        m = _OF_US.search(text)
        n = _num(m.group(1) or m.group(2)) if m else None
        if n:
            self._set("users_impacted", n, words=m.group(0))
            return n
        for m in _HEADCOUNT.finditer(text):
            before = text[max(0, m.start() - 30): m.start()].lower()
            after = text[m.end(): m.end() + 40].lower()
            # arrivals and new staff are a request's subject, not people affected
            if re.search(r"nouvel|arriv|recrut|accueil", before + after):
                continue
            total = sum(_num(x) or 0 for x in _COUNT.findall(m.group("chain")))
            if m.group("me"):
                total += 1
            if 0 < total <= 500:
                self._set("users_impacted", total, words=m.group(0))
                return total
        only = [h for h in self.r.of("impact.only-me") if not self._negated(h) and not self._and_others(h)]
        if only:
            self._set("users_impacted", 1, only[0])
            return 1
        return None

    def browser(self) -> None:
        text = self._text()
        cands = []
        for m in _BROWSER_RE.finditer(text):
            name = _BROWSERS[m.group(1).lower().split()[-1]]
            tok = self.r.doc.char_span(m.start(), m.end(), alignment_mode="expand")
            clause = self.r.token_clause[tok.start] if tok is not None and len(tok) else -1
            working = clause >= 0 and self.states.get(clause) == "working"
            cands.append((working, m, name))
        if not cands:
            self._bare_version()
            return
        failing = [c for c in cands if not c[0]] or cands
        working_m, m, name = failing[0]
        self._set("browser", name, words=m.group(0))
        # version right after the name ("Firefox 115.3.1esr", "Chrome (version 131.0.6778.86)", "Firefox ESR 115.14")
        for _, mm, nm in failing:
            if nm != name:
                continue
            after = text[mm.end(): mm.end() + 40]
            v = _VERSION_AFTER.match(after)
            if v:
                self._set("browser_version", re.sub(r"\s", "", v.group(1)), words=mm.group(0) + after[:v.end()])
                return
        self._bare_version()

    def _bare_version(self) -> None:
        """ "Version 131.0.6778.86" with no browser name (an answer to our
        question, or a checklist line): a browser's version has a major
        number of two or three digits; "Portail 4.12" does not."""
        text = self._text()
        for m in _VERSION_BARE.finditer(text):
            before = text[max(0, m.start() - 25): m.start()].lower()
            if re.search(r"portail|bandeau|nice|selfcare|logiciel|application|windows|v\.?\s*$", before):
                continue
            if 40 <= int(m.group(1).split(".")[0].rstrip("esr ")) <= 250:
                self._set("browser_version", re.sub(r"\s", "", m.group(1)), words=m.group(0).strip())
                return

    def auth(self) -> None:
        r = self.r
        cps = [h for h in r.of("fields.cps")]
        otp = r.of("fields.otp")
        if cps:
            self._set("auth_mode", "cps", cps[0])
            return
        if not otp:
            # "SMS with the one-time code", "code reçu par mail" are caught by otp
            return
        channels = r.of("fields.sms", "fields.mail")
        with_channel = [o for o in otp if any(x.sentence == o.sentence for x in channels)]
        h = with_channel[0] if with_channel else otp[0]
        window = [x for x in channels if x.sentence == h.sentence]
        if h.text.lower() in ("code",) and not window and not re.search(r"connect|login|auth|identif", r.sentence_text(h.sentence), re.I):
            return
        if window:
            kind = "otp_sms" if window[0].signal == "fields.sms" else "otp_mail"
            self._set("auth_mode", kind, h, words=f"{h.text} … {window[0].text}")
        else:
            self._set("auth_mode", "otp", h)

    def environment(self) -> None:
        r = self.r
        train = [h for h in r.of("fields.training")
                 if not re.search(r"formatrice|formateur|CESU\b", h.text, re.I)]
        prod = r.of("fields.production")
        if train:
            # "sur l'environnement de FORMATION (pas la prod)"
            self._set("environment", "formation", train[0])
        elif prod:
            self._set("environment", "production", prod[0])

    def reproducibility(self) -> None:
        rnd = self.r.of("fields.random")
        sysm = self.r.of("fields.systematic")
        if rnd:
            self._set("reproducibility", "aleatoire", rnd[0])
        elif sysm:
            self._set("reproducibility", "systematique", sysm[0])

    def device(self) -> None:
        for sig, value in (("fields.tablet", "tablette"), ("fields.smartphone", "smartphone"), ("fields.pc", "pc")):
            hits = [h for h in self.r.of(sig) if self.r.parts[h.part].name != "attachments"]
            if hits:
                self._set("device_type", value, hits[0])
                return

    def features(self, app: str | None) -> None:
        if not app:
            return
        # "connexion par carte CPS" is how one logs in, not a broken function
        auth_clauses = {h.clause for h in self.r.of("fields.cps", "fields.otp", "fields.sms", "fields.mail")}
        hits = [h for h in self.r.of(f"features.{app}") if self._not_working(h)
                and self.r.parts[h.part].name != "attachments"
                and not (h.clause in auth_clauses and h.text.lower().startswith(("connexion", "carte", "login", "se connect")))]
        if app == "selfcare":
            # Selfcare's functions are named by what fails, not by the routing asked for
            hits = [h for h in hits if self.states.get(h.clause) == "failing"]
        # "export CSV" and "export" at one place: keep the longer words
        hits = [h for h in hits if not any(o is not h and o.start <= h.start and h.end <= o.end
                                           and (o.end - o.start) > (h.end - h.start) for o in hits)]
        values: list[str] = []
        for h in hits:
            v = h.text
            if v.lower() not in [x.lower() for x in values]:
                values.append(v)
        if values:
            self._set("features", values, hits[0], words=", ".join(values))

    def bandeau_state(self) -> None:
        """total when the Bandeau itself is said to be down; partiel when some
        of its functions fail (or the rest is said to work)."""
        r = self.r
        explicit = re.search(r"(?:[ée]tat du bandeau|bandeau_state)\s*:\s*(total|partiel)", self._text(), re.I)
        if explicit:
            self._set("bandeau_state", explicit.group(1).lower(), words=explicit.group(0))
            return
        name_sentences = {h.sentence for h in r.of("apps.bandeau")}
        name_clauses = {h.clause for h in r.of("apps.bandeau")}
        function_clauses = {h.clause for h in r.of("features.bandeau")}
        # a whole-bar word about the Bandeau itself, not about one of its buttons
        tot = [h for h in r.of("fields.bandeau-total") if self._not_working(h)
               and h.clause not in function_clauses
               and (h.clause in name_clauses or h.sentence in name_sentences)]
        strong = [h for h in tot if _STRONG_TOTAL.search(h.text)]
        part = r.of("fields.bandeau-partial")
        if strong:
            self._set("bandeau_state", "total", strong[0])
        elif part or self.fields.get("features"):
            self._set("bandeau_state", "partiel", part[0] if part else None, words="a function of the Bandeau")
        elif tot:
            self._set("bandeau_state", "total", tot[0])

    def phone_state(self) -> None:
        for h in self.r.of("equipment.sisamu"):
            for sig, value in (("fields.phone-reboot", "redemarrage"), ("fields.phone-off", "arrete"),
                               ("fields.phone-ok", "ras")):
                near = [x for x in self.r.of(sig) if x.sentence == h.sentence and not self._negated(x)]
                if near:
                    self._set("phone_state", value, near[0], words=f"{h.text} … {near[0].text}")
                    return
            if self.states.get(h.clause) == "working":
                self._set("phone_state", "ras", h, words=f"{h.text} … works")
                return

    def selfcare(self) -> None:
        r = self.r
        part = r.of("fields.selfcare-partial")
        tot = r.of("fields.selfcare-total")
        failing = [h for h in r.of("state.failure")]
        if tot and not part:
            self._set("selfcare_state", "total", tot[0])
        elif failing and (part or "working" in self.states.values()):
            # "seul l'enregistrement échoue", "la consultation des règles marche"
            self._set("selfcare_state", "partiel", part[0] if part else None, words="the rest works")
        elif tot:
            self._set("selfcare_state", "total", tot[0])
        actions = {"fields.action-deactivate": "desactivation", "fields.action-activate": "activation",
                   "fields.action-add": "ajout", "fields.action-modify": "modification",
                   "fields.action-delete": "suppression"}
        # the first action named is the one asked for ("ajouter une règle ... en cas de débordement")
        hits = [h for h in r.of(*actions) if r.parts[h.part].name != "attachments"]
        if hits:
            # a longer phrase at the same place wins ("désactiver" over "activer")
            first = min(hits, key=lambda h: (h.start, -(h.end - h.start)))
            self._set("requested_action", actions[first.signal], first)
        names = r.of("fields.routing")
        if names:
            self._set("routing_name", names[0].text, names[0])
        else:
            m = re.search(r"(?:routage|débordement|rule|règle)\s*[«\"“]\s*([^»\"”]{3,60}?)\s*[»\"”]", self._text(), re.I)
            if m:
                self._set("routing_name", m.group(1), words=m.group(0))

    def equipment(self) -> None:
        hits = [h for h in self.r.of("equipment.sisamu") if self._not_working(h)]
        if not hits:
            return
        body_hits = [x for x in hits if self.r.parts[x.part].name != "subject"]
        hits = body_hits or hits
        first_sentence = hits[0].sentence
        h = max((x for x in hits if x.sentence == first_sentence), key=lambda x: (x.end - x.start, -x.start))
        text = self._text()
        tail = text[h.end_char: h.end_char + 80]
        m = re.match(r"((?:\s+(?:SI-Samu|du|de la|de l'|des|de|at|of|on|à la)\s+[\w'-]+(?:\s+\d+)?"
                     r"(?:\s+(?:de|du|de la)\s+[\w'-]+)?)*(?:\s*\([^)]{0,40}\))?)", tail)
        value = (text[h.start_char: h.end_char] + (m.group(1) if m else "")).strip()
        value = re.sub(r"^(?:le|la|les|l'|the)\s*", "", value, flags=re.I)
        # include a qualifier before: "deux téléphones fixes", "The SI-Samu desk phone"
        before = text[max(0, h.start_char - 25): h.start_char]
        q = re.search(r"(?:\b(?:deux|trois|\d+|le|la|the)\s+(?:SI-Samu\s+)?)$", before, re.I)
        if q and not q.group(0).lower().strip() in ("le", "la", "the"):
            value = q.group(0).strip() + " " + value
        self._set("equipment", value, h)

    def error_message(self) -> None:
        text = self._text()
        for m in _ERROR_QUOTED.finditer(text):
            value = m.group(1).strip()
            ctx = text[max(0, m.start() - 60): m.start()].lower()
            if _STATUS_NOT_ERROR.match(value) or re.fullmatch(r"[A-Z0-9_]+", value):
                continue
            if re.search(r"erreur|error|message|affiche|renvoie|obtiens|answers|shows|with|avec|get|indique|"
                         r"bloqué sur|reste sur|on a|ai|:\s*$", ctx) and len(value.split()) >= 1:
                # a quoted name is a button, a tab or a table, not an error text
                if re.search(r"(bouton|button|clique|click|statut|status|onglet|tab|tableau|menu|rapport|champ|"
                             r"page|module|fenêtre|dossier|règle|routage|débordement|profil|lien|link)\s*$", ctx):
                    continue
                self._set("error_message", value, words=m.group(0))
                return
        m = _ERROR_CODE.search(text)
        if m:
            self._set("error_message", m.group(1).strip(" -–:"), words=m.group(0))

    def screenshots(self) -> None:
        images = [a for a in self.mail.attachments if a.is_image]
        if images:
            self._set("screenshots", True, words=images[0].filename)
            return
        refused = self.r.of("fields.screenshot-refused")
        given = [h for h in self.r.of("fields.screenshot-given")
                 if not any(x.sentence == h.sentence for x in refused)]
        if given and not refused:
            self._set("screenshots", True, given[0])


def extract_fields(reading: Reading, case: Case, mail: ParsedMail,
                   answering: bool = False) -> tuple[dict[str, Any], list[Hit]]:
    ex = Extractor(reading, case, mail, answering)
    fields = ex.run()
    return fields, ex.trace
