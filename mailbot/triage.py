"""The triage engine: a parsed mail -> a ``Verdict`` (policy §1–§7).

Pure: no I/O. ``Engine`` is built once from a ``Rulebook`` (the language
pipeline and the matchers are compiled then) and judges any number of
mails. Only the sender's new text, the subject, forwarded mails and
attachment names are read: quoted replies (usually our own question) never
count as facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailbot.classify import classify_case
from mailbot.extract import extract_fields
from mailbot.kind import detect_kind
from mailbot.model import Hit, ParsedMail, Verdict
from mailbot.nlp import build_nlp
from mailbot.reading import Reader, Reading
from mailbot.rulebook import Rulebook
from mailbot.when import find_start_time, load_date_rules

_MAX_TEXT = 20_000   # characters read per part: facts are at the top of a mail


class Engine:
    """Compiled rules + language pipeline. Thread-compatible, not thread-safe."""

    def __init__(self, rulebook: Rulebook, own_addresses: tuple[str, ...] = ()) -> None:
        self.rulebook = rulebook
        self.nlp = build_nlp()
        self.reader = Reader(self.nlp, rulebook)
        self.date_rules = load_date_rules(rulebook.dates)
        self.weights = {sid: s.weight for sid, s in rulebook.signals.items()}
        self.own_addresses = tuple(a.lower() for a in own_addresses)

    # ------------------------------------------------------------------
    def read(self, mail: ParsedMail) -> Reading:
        parts: list[tuple[str, str, dt.datetime | None]] = [("subject", _clean_subject(mail.subject), mail.date)]
        parts.append(("body", mail.new_text[:_MAX_TEXT], mail.date))
        for q in mail.forwarded:
            parts.append(("forward", q.text[:_MAX_TEXT], q.date or mail.date))
        names = " ; ".join(_name_words(a.filename) for a in mail.attachments if a.filename)
        if names:
            parts.append(("attachments", names, mail.date))
        return self.reader.read(parts)

    def triage(self, mail: ParsedMail) -> Verdict:
        if mail.error:
            return Verdict(kind="noise", reason=mail.error, trace=(Hit("parse#error", mail.error, "kind"),))
        reading = self.read(mail)
        kind, kind_trace = detect_kind(mail, reading, self.own_addresses)
        if kind not in ("incident", "followup"):
            return Verdict(kind=kind, trace=tuple(kind_trace))
        case = classify_case(reading, self.weights)
        fields, field_trace = extract_fields(reading, case, mail)
        start = self._start_time(mail, reading)
        if start is not None and not case.is_request:
            fields = {"start_time": start.value, **fields}
            field_trace.insert(0, Hit(f"dates#{start.rule}", start.words, "field:start_time"))
        if case.cas == "D":
            fields = {k: v for k, v in fields.items()
                      if k in ("start_time", "error_message", "device_type", "impact_scope", "users_impacted")}
        if kind == "followup":
            return Verdict(kind="followup", fields=fields, trace=tuple(kind_trace + field_trace))
        criticity, crit_trace = self.criticity(case.cas, case.application, case.is_request, fields, reading)
        missing, optional = self.missing(case.cas, case.application, case.is_request, fields, reading)
        return Verdict(kind="incident", cas=case.cas, application=case.application, criticity=criticity,
                       fields=fields, missing=tuple(missing), optional_missing=tuple(optional),
                       is_request=case.is_request,
                       trace=tuple(kind_trace + case.trace + field_trace + crit_trace))

    # ------------------------------------------------------------------
    def _start_time(self, mail: ParsedMail, reading: Reading):
        ref = mail.date or dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        found = find_start_time(mail.new_text[:_MAX_TEXT], ref, self.date_rules, subject=mail.subject)
        if found is None:
            for q in mail.forwarded:
                found = find_start_time(q.text[:_MAX_TEXT], q.date or ref, self.date_rules, subject=q.subject)
                if found is not None:
                    break
        return found

    def is_immediate_routing(self, app: str | None, fields: dict[str, Any], reading: Reading) -> bool:
        return (app == "selfcare" and fields.get("requested_action") in ("activation", "desactivation")
                and reading.has("state.immediate"))

    def criticity(self, cas: str | None, app: str | None, is_request: bool, fields: dict[str, Any],
                  reading: Reading) -> tuple[int | None, list[Hit]]:
        """Policy §4, in the order of ``rules/criticity.toml``."""
        if cas not in ("A", "B", "C"):
            return None, []
        conditions = {
            "cas_a": cas == "A",
            "environment_formation": fields.get("environment") == "formation",
            "selfcare_immediate": self.is_immediate_routing(app, fields, reading),
            "bandeau_total": app == "bandeau" and fields.get("bandeau_state") == "total",
            "impact_total": fields.get("impact_scope") == "total",
            "request": is_request,
            "unitary": cas == "B" and fields.get("impact_scope") == "unitaire",
            "otherwise": True,
        }
        for rule in self.rulebook.criticity:
            if conditions[rule.when]:
                return rule.level, [Hit(f"criticity.toml#{rule.id}", rule.about, "criticity")]
        return 2, []

    def missing(self, cas: str | None, app: str | None, is_request: bool, fields: dict[str, Any],
                reading: Reading) -> tuple[list[str], list[str]]:
        """Policy §6: mandatory fields not given, and "if possible" ones."""
        if cas not in ("A", "B", "C"):
            return [], []
        key = cas if cas != "B" else f"B.{app}"
        immediate = self.is_immediate_routing(app, fields, reading) and not reading.has("state.failure")
        if is_request or immediate:
            mset = self.rulebook.request_mandatory.get(key)
            if mset is None:
                return [], []
        else:
            mset = self.rulebook.mandatory.get(key)
            if mset is None:
                return [], []
        required = list(mset.mandatory)
        for field_, if_field, values in mset.conditional:
            if fields.get(if_field) in values:
                required.append(field_)
        missing = sorted({f for f in required if f not in fields})
        optional = sorted({f for f in mset.optional if f not in fields})
        return missing, optional


def _clean_subject(subject: str) -> str:
    import re
    s = re.sub(r"^\s*((re|tr|fw|fwd|réf|aw|wg)\s*:\s*)+", "", subject, flags=re.I)
    return s[:500]


def _name_words(filename: str) -> str:
    import re
    stem = filename.rsplit(".", 1)[0]
    return re.sub(r"[_\-.]+", " ", stem)
