"""The triage engine: a parsed mail -> a ``Verdict`` (policy §1–§7).

Pure: no I/O. ``Engine`` is built once from a ``Rulebook`` (the language
pipeline and the matchers are compiled then) and judges any number of
mails. Only the sender's new text, the subject, forwarded mails and
attachment names are read: quoted replies (usually our own question) never
count as facts.
"""

from __future__ import annotations

import datetime as dt

from mailbot.classify import Case, classify_case, clause_states
from mailbot.extract import extract_fields
from mailbot.kind import detect_kind
from mailbot.model import Hit, ParsedMail, Verdict
from mailbot.nlp import build_nlp
from mailbot.policy import Facts, criticity, required_fields
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
    def read(self, mail: ParsedMail, *, with_subject: bool = True) -> Reading:
        parts: list[tuple[str, str, dt.datetime | None]] = []
        if with_subject:
            parts.append(("subject", _clean_subject(mail.subject), mail.date))
        parts.append(("body", mail.new_text[:_MAX_TEXT], mail.date))
        for q in mail.forwarded:
            parts.append(("forward", q.text[:_MAX_TEXT], q.date or mail.date))
        names = " ; ".join(_name_words(a.filename) for a in mail.attachments if a.filename)
        if names:
            parts.append(("attachments", names, mail.date))
        return self.reader.read(parts)

    def triage(self, mail: ParsedMail, context: Facts | None = None) -> Verdict:
        """Judge one mail. ``context`` is the thread's ticket when the mail
        answers one: its fields are then read for that case and application
        (an answer "Chrome 130, carte CPS" has no case of its own)."""
        if mail.error:
            return Verdict(kind="noise", reason=mail.error, trace=(Hit("parse#error", mail.error, "kind"),))
        reading = self.read(mail)
        kind, kind_trace = detect_kind(mail, reading, self.own_addresses)
        if kind not in ("incident", "followup"):
            return Verdict(kind=kind, trace=tuple(kind_trace))
        if context is not None and context.cas is not None:
            # An answer in a thread: its subject repeats the first mail's
            # ("RE: [SAMU-000123] téléphone poste 6"), so only its text counts.
            reading = self.read(mail, with_subject=False)
            case = Case(context.cas, context.application, context.is_request,
                        [Hit("thread#context", f"{context.cas} {context.application or ''}".strip(), "cas")],
                        clause_states(reading))
        else:
            case = classify_case(reading, self.weights)
        fields, field_trace = extract_fields(reading, case, mail, answering=context is not None)
        start = self._start_time(mail, reading)
        if start is not None and not case.is_request:
            fields = {"start_time": start.value, **fields}
            field_trace.insert(0, Hit(f"dates#{start.rule}", start.words, "field:start_time"))
        if case.cas == "D" and kind == "incident":
            fields = {k: v for k, v in fields.items()
                      if k in ("start_time", "error_message", "device_type", "impact_scope", "users_impacted")}
        if kind == "followup" or context is not None:
            return Verdict(kind="followup", fields=fields, trace=tuple(kind_trace + field_trace),
                           is_request=case.is_request and context is None,
                           immediate=reading.has("state.immediate"),
                           failure_reported=reading.has("state.failure"))
        facts = Facts(case.cas, case.application, fields, is_request=case.is_request,
                      immediate=reading.has("state.immediate"),
                      failure_reported=reading.has("state.failure"))
        level, why = criticity(self.rulebook, facts)
        crit_trace = [why] if why else []
        missing, optional = required_fields(self.rulebook, facts)
        return Verdict(kind="incident", cas=case.cas, application=case.application, criticity=level,
                       fields=fields, missing=tuple(missing), optional_missing=tuple(optional),
                       is_request=case.is_request, immediate=facts.immediate,
                       failure_reported=facts.failure_reported,
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


def _clean_subject(subject: str) -> str:
    import re
    s = re.sub(r"^\s*((re|tr|fw|fwd|réf|aw|wg)\s*:\s*)+", "", subject, flags=re.I)
    return s[:500]


def _name_words(filename: str) -> str:
    import re
    stem = filename.rsplit(".", 1)[0]
    return re.sub(r"[_\-.]+", " ", stem)
