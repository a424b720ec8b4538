"""Case (A–D), application and request-or-failure, from a ``Reading``.

Pure. Implements policy §2–§3 on top of the signals of ``rules/signals``:

- *states*: a clause that says something works ("le 15 fonctionne
  normalement", "Firefox marche") neutralises the things it names; a
  clause that says something fails makes them the problem;
- cas A: calls no longer reach the room (a reception-lost / partial phrase
  next to call words, in a clause that does not say calls arrive);
- cas D override: the writer corrects the first impression ("en fait c'est
  le PC", "la session Windows ne s'ouvre pas", "tout internet est coupé");
- then the first of B (an application that fails or is asked for),
  C (SI-Samu hardware) and D (local IT) that applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailbot.model import APPLICATIONS, Hit
from mailbot.reading import Reading, SignalHit

APP_SIGNALS = {app: (f"apps.{app}", f"apps.{app}-feature") for app in APPLICATIONS}
LOCAL_SIGNALS = ("equipment.local", "equipment.pc", "equipment.headset", "equipment.network",
                 "equipment.local-software")
_SELF_SUFFICIENT = re.compile(r"appel|call|sonn|joignable|présent|present|réception|plateforme", re.I)
_SOFT_FAILURES = {"pas accès", "pas d'accès", "plus accès", "n'apparaît pas", "no access",
                  "question", "problème", "souci", "soucis", "pb", "issue", "problem"}


@dataclass
class Case:
    cas: str | None
    application: str | None
    is_request: bool
    trace: list[Hit] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)   # clause -> working/failing/neutral


def clause_states(reading: Reading) -> dict[int, str]:
    """working / failing / neutral for each clause that has a state word."""
    failing_tokens: set[int] = set()
    states: dict[int, str] = {}
    idioms = [(h.start, h.end) for h in reading.of("state.idiom")]

    def idiom(h: SignalHit) -> bool:   # "la marche à suivre" says nothing works
        return any(s <= h.start and h.end <= e for s, e in idioms)

    working = [h for h in reading.of("state.working") if not idiom(h)]
    for h in reading.of("state.failure", "calls.reception-lost"):
        if idiom(h):
            continue
        # "n'ont pas le problème" says it works, though it holds "problème"
        if any(w.start <= h.start and h.end <= w.end and (w.end - w.start) > (h.end - h.start) for w in working):
            continue
        failing_tokens.update(range(h.start, h.end))
        states[h.clause] = "failing"
    for h in working:
        if failing_tokens.intersection(range(h.start, h.end)):
            continue
        # "ne marche pas", "n'arrivent pas": a negation just before.
        before = reading.doc[max(h.start - 3, 0): h.start]
        if any(t.norm_ in ("ne", "n", "pas", "plus", "not", "no") for t in before) and \
                reading.token_clause[max(h.start - 1, 0)] == h.clause:
            states[h.clause] = "failing"
            continue
        if states.get(h.clause) != "failing":
            states[h.clause] = "working"
        else:
            # both in one clause: the later word wins ("ça plantait, ça marche")
            last_fail = max((f.start for f in reading.in_clause(h.clause, "state.failure")), default=-1)
            if h.start > last_fail:
                states[h.clause] = "working"
    return states


def state_of(hit: SignalHit, reading: Reading, states: dict[int, str]) -> str:
    s = states.get(hit.clause)
    if s:
        return s
    # no state word in the clause: failing if the sentence says something
    # fails ("le téléphone du poste 3, écran noir"); "works" is only ever
    # read in the thing's own clause.
    if _sentence_fails(reading, hit.sentence, states):
        return "failing"
    return "neutral"


def reception_hits(reading: Reading, states: dict[int, str]) -> list[SignalHit]:
    """Hits saying calls do not reach the room, with call words nearby."""
    out = []
    for h in reading.of("calls.reception-lost", "calls.reception-partial", "calls.reception-problem"):
        if states.get(h.clause) == "working" and not _has_failure_in_clause(reading, h.clause):
            continue
        clause_text = reading.clause_text(h.clause).lower()
        # "le bandeau n'affiche plus aucun appel": a display, not reception
        if "affich" in clause_text and reading.in_clause(h.clause, "apps.bandeau", "apps.bandeau-feature"):
            continue
        # "on n'arrive plus à réécouter": "cannot", not calls arriving
        nxt = reading.doc[h.end].norm_ if h.end < len(reading.doc) else ""
        if nxt in ("a", "à") and "arriv" in h.text.lower():
            continue
        # "je ne reçois plus les messages": reception of calls needs call words
        if h.signal in ("calls.reception-lost", "calls.reception-problem") and not _SELF_SUFFICIENT.search(h.text) and \
                not reading.in_sentence(h.sentence, "calls.call", "calls.line"):
            continue
        # personal distribution ("ne me sont plus distribués") is the Bandeau status
        if h.signal == "calls.reception-partial" or h.text.lower() in ("aucun appel", "no call", "no calls"):
            if not reading.in_sentence(h.sentence, "calls.call", "calls.reception-lost") or \
                    (h.signal == "calls.reception-partial" and
                     not reading.in_sentence(h.sentence, "calls.call")):
                continue
        out.append(h)
    return out


def _has_failure_in_clause(reading: Reading, clause: int) -> bool:
    return bool(reading.in_clause(clause, "state.failure", "calls.reception-lost"))


def classify_case(reading: Reading, weights: dict[str, float]) -> Case:
    states = clause_states(reading)
    trace: list[Hit] = []

    # ---- cas A: calls no longer reach the room
    reception = reception_hits(reading, states)
    if reception:
        trace += [Hit(h.signal, h.text, "cas") for h in reception[:3]]
        return Case("A", None, False, trace, states)

    # ---- applications: names and functions that fail (or are neutral)
    local_spans = [(h.start, h.end) for h in reading.of(*LOCAL_SIGNALS, "equipment.sisamu",
                                                         "apps.not-an-application")]
    # "le portail d'entrée du parking": once a word is shown to name something
    # else, its bare uses elsewhere (the subject "Portail bloqué") mean that too
    hw_clauses = {h.clause for h in reading.of("equipment.sisamu")}
    shadowed = {t.norm_ for h in reading.of("apps.not-an-application") for t in reading.doc[h.start:h.end]}
    scores: dict[str, float] = {}
    first_pos: dict[str, int] = {}
    app_hits: dict[str, list[SignalHit]] = {}
    for app, sigs in APP_SIGNALS.items():
        for h in reading.of(*sigs):
            st = state_of(h, reading, states)
            if st == "working":
                continue
            # "le portail d'entrée du parking": a longer local name wins
            if any(s <= h.start and h.end <= e and (e - s) > (h.end - h.start) for s, e in local_spans):
                continue
            if h.end - h.start == 1 and reading.doc[h.start].norm_ in shadowed:
                continue
            # "quand on décroche le combiné": a function word next to the desk
            # phone is about the phone
            if h.signal.endswith("-feature") and h.clause in hw_clauses:
                continue
            # "le fichier Excel des statistiques": the head noun is the local thing
            if any(e <= h.start <= e + 2 and reading.doc[e].norm_ in ("de", "des", "du", "d")
                   for s, e in local_spans):
                continue
            w = weights.get(h.signal, 1.0)
            if st == "failing":
                w *= 1.5
            scores[app] = scores.get(app, 0) + w
            first_pos.setdefault(app, h.start)
            app_hits.setdefault(app, []).append(h)

    # ---- local IT (cas D) evidence
    # "écran", "logo" in a sentence about a desk phone belong to the phone
    hw_sentences = {h.sentence for h in reading.of("equipment.sisamu")}
    local_hits = [h for h in reading.of(*LOCAL_SIGNALS)
                  if state_of(h, reading, states) != "working" and h.sentence not in hw_sentences]
    not_ours = reading.of("state.not-ours")
    corrections = reading.of("state.correction")
    local_after_correction = [h for h in local_hits + not_ours
                              if any(c.start <= h.start and c.sentence >= h.sentence - 1 for c in corrections)]
    app_working = any(state_of(h, reading, states) == "working"
                      for app, sigs in APP_SIGNALS.items() for h in reading.of(*sigs))

    local_failing = [h for h in local_hits if state_of(h, reading, states) == "failing"]
    if not_ours or local_after_correction or (app_working and local_failing):
        cue = (not_ours or local_after_correction or local_failing)[0]
        trace.append(Hit(cue.signal, cue.text, "cas"))
        return Case("D", None, False, trace, states)

    request = is_request(reading, states)
    hw_hits = [h for h in reading.of("equipment.sisamu")
               if state_of(h, reading, states) != "working"
               and (request or _sentence_fails(reading, h.sentence, states))]

    # an application said to work, and never said to fail, is not the problem
    # ("the CTI bar works normally, so the ARM uses the softphone")
    for app in list(scores):
        names = reading.of(APP_SIGNALS[app][0])
        said_to_work = any(state_of(h, reading, states) == "working" for h in names)
        said_to_fail = any(states.get(h.clause) == "failing"
                           for h in app_hits[app] + reading.of(f"features.{app}"))
        something_else_fails = any(v == "failing" for v in states.values())
        if said_to_work and not said_to_fail and something_else_fails:
            del scores[app]
    # the subject names a local device and the application only by a function word
    subject_local = [h for h in local_failing if reading.parts[h.part].name == "subject"]
    for app in list(scores):
        if subject_local and not any(h.signal == APP_SIGNALS[app][0] for h in app_hits[app]):
            del scores[app]

    if scores:
        # portail as a bare word is weaker than a named other application
        app = max(scores, key=lambda a: (scores[a], -first_pos[a]))
        # "Portail des statistiques" contains "portail": prefer the longer name
        if app == "portail" and "statistiques" in scores and reading.of("apps.statistiques"):
            stats_names = reading.of("apps.statistiques")
            port_names = [h for h in reading.of("apps.portail")
                          if not any(s.start <= h.start < s.end for s in stats_names)]
            if not port_names and not reading.of("apps.portail-feature"):
                app = "statistiques"
        only_local_fail = local_hits and all(state_of(h, reading, states) != "failing" for h in app_hits[app]) \
            and any(state_of(h, reading, states) == "failing" for h in local_hits)
        if only_local_fail and not request:
            trace.append(Hit(local_hits[0].signal, local_hits[0].text, "cas"))
            return Case("D", None, False, trace, states)
        trace += [Hit(h.signal, h.text, "application") for h in app_hits[app][:3]]
        return Case("B", app, request, trace, states)

    if hw_hits:
        trace += [Hit(h.signal, h.text, "cas") for h in hw_hits[:2]]
        return Case("C", None, request, trace, states)

    if local_hits:
        trace.append(Hit(local_hits[0].signal, local_hits[0].text, "cas"))
    else:
        trace.append(Hit("default#no-si-samu-cue", "", "cas"))
    return Case("D", None, False, trace, states)


def _sentence_fails(reading: Reading, sentence: int, states: dict[int, str]) -> bool:
    clauses = {h.clause for h in reading.hits if h.sentence == sentence}
    return any(states.get(c) == "failing" for c in clauses)


def is_request(reading: Reading, states: dict[int, str]) -> bool:
    """A request rather than a failure (policy §4 row 6, §6)."""
    requests = reading.of("state.request")
    questions = reading.of("state.question")
    if not requests and not questions:
        return False
    req_sentences = {h.sentence for h in requests + questions}
    hard_failures = [h for h in reading.of("state.failure")
                     if h.text.lower() not in _SOFT_FAILURES and h.sentence not in req_sentences]
    if requests:
        return not hard_failures
    # a question with no failure at all (statistics questions)
    return not [h for h in reading.of("state.failure") if h.text.lower() not in _SOFT_FAILURES]
