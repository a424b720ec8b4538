"""Rule files (TOML texts) -> a validated, immutable ``Rulebook``.

Pure: takes ``{file name: TOML text}`` and does no file I/O (``load_rulebook``
in ``mailbot.rulefiles`` reads a folder). Every error names the file, the
entry and the key (``RuleFileError``), so ``mailbot check-rules`` can point a
support technician at the line to fix.

Layout of ``rules/`` (see ``rules/README.md`` for staff):

- ``signals/*.toml``: named lists of words. Each table is one *signal*;
  its id is ``<file stem>.<table name>`` (``apps.portail``). Keys:
  ``about`` (what it means, shown by ``mailbot explain``), ``phrases``
  (matched on lemmas: inflection, accents and case do not matter),
  ``patterns`` (advanced: spaCy token patterns), ``regex`` (matched on the
  raw text, case-insensitive), ``weight`` (default 1).
- ``criticity.toml``: the ordered precedence of policy §4.
- ``mandatory.toml``: the mandatory and "if possible" fields of policy §6.
- ``fields.toml``: each field's question, as the bot asks it.
- ``dates.toml``: vocabulary for start times (read by ``mailbot.when``).
- ``templates/*.txt``: reply templates.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from mailbot.errors import RuleFileError

SIGNAL_KEYS = {"about", "phrases", "patterns", "regex", "weight"}

# The signal ids the engine reads. A rule file may add more (they show in
# traces), but these must exist, so a deleted table is caught at load time.
REQUIRED_SIGNALS = (
    "apps.portail", "apps.portail-feature", "apps.bandeau", "apps.bandeau-feature",
    "apps.nice", "apps.nice-feature", "apps.statistiques", "apps.statistiques-feature",
    "apps.selfcare", "apps.selfcare-feature",
    "equipment.sisamu", "equipment.local", "equipment.local-software",
    "equipment.network", "equipment.headset", "equipment.pc",
    "calls.reception-lost", "calls.reception-partial", "calls.reception-problem", "calls.call", "calls.line",
    "state.failure", "state.working", "state.negation", "state.idiom", "state.correction",
    "state.not-ours", "state.request", "state.question", "state.immediate",
    "impact.total", "impact.partial", "impact.unitary", "impact.unknown",
    "impact.only-me", "impact.others-fine",
    "fields.production", "fields.training", "fields.systematic", "fields.random",
    "fields.pc", "fields.tablet", "fields.smartphone",
    "fields.cps", "fields.otp", "fields.sms", "fields.mail",
    "fields.screenshot-given", "fields.screenshot-refused",
    "fields.bandeau-total", "fields.bandeau-partial",
    "fields.phone-reboot", "fields.phone-off", "fields.phone-ok",
    "fields.selfcare-total", "fields.selfcare-partial",
    "fields.action-add", "fields.action-modify", "fields.action-delete",
    "fields.action-activate", "fields.action-deactivate", "fields.routing",
    "fields.otn", "fields.error-cue",
    "kind.out-of-office", "kind.auto-ack", "kind.resolved", "kind.spam",
    "features.portail", "features.bandeau", "features.nice", "features.statistiques", "features.selfcare",
    "apps.not-an-application",
)

FIELD_NAMES = (
    "start_time", "impacted_lines", "reception", "otn_tests", "features",
    "impact_scope", "users_impacted", "reproducibility", "device_type", "browser",
    "browser_version", "auth_mode", "environment", "error_message", "bandeau_state",
    "phone_state", "selfcare_state", "requested_action", "routing_name", "equipment",
    "screenshots",
)

CRITICITY_CONDITIONS = (
    "cas_a", "environment_formation", "selfcare_immediate", "bandeau_total",
    "impact_total", "request", "unitary", "otherwise",
)


@dataclass(frozen=True)
class Signal:
    id: str
    about: str
    phrases: tuple[str, ...] = ()
    patterns: tuple[tuple[dict[str, Any], ...], ...] = ()
    regex: tuple[re.Pattern[str], ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class CriticityRule:
    id: str
    when: str
    level: int
    about: str = ""


@dataclass(frozen=True)
class MandatorySet:
    key: str                         # "A", "B.portail", "C", ...
    mandatory: tuple[str, ...]
    optional: tuple[str, ...] = ()
    conditional: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (field, if_field, if_values)


@dataclass(frozen=True)
class Rulebook:
    signals: dict[str, Signal]
    criticity: tuple[CriticityRule, ...]
    mandatory: dict[str, MandatorySet]
    request_mandatory: dict[str, MandatorySet]
    questions: dict[str, str]
    dates: dict[str, Any]
    templates: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _toml(source: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(source, "", "", f"TOML syntax: {exc}") from None


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""


def _str_list(source: str, entry: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleFileError(source, entry, key, "must be a list of quoted strings")
    for v in value:
        if not v.strip():
            raise RuleFileError(source, entry, key, "contains an empty string")
    return tuple(value)


def parse_signals(source: str, text: str) -> list[Signal]:
    stem = source.rsplit("/", 1)[-1].removesuffix(".toml")
    doc = _toml(source, text)
    out = []
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise RuleFileError(source, name, "", "each entry must be a [table] of keys")
        unknown = set(table) - SIGNAL_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise RuleFileError(source, name, key, "unknown key" + _suggest(key, sorted(SIGNAL_KEYS)))
        if not any(k in table for k in ("phrases", "patterns", "regex")):
            raise RuleFileError(source, name, "phrases", "an entry needs phrases, patterns or regex")
        phrases = _str_list(source, name, "phrases", table.get("phrases", []))
        regexes = []
        for i, rx in enumerate(_str_list(source, name, "regex", table.get("regex", []))):
            try:
                regexes.append(re.compile(rx, re.IGNORECASE))
            except re.error as exc:
                raise RuleFileError(source, name, f"regex[{i}]", f"bad regular expression: {exc}") from None
        patterns = table.get("patterns", [])
        if not isinstance(patterns, list) or not all(
            isinstance(p, list) and p and all(isinstance(t, dict) for t in p) for p in patterns
        ):
            raise RuleFileError(source, name, "patterns", "must be a list of token lists, e.g. [[{NORM = \"bandeau\"}]]")
        weight = table.get("weight", 1)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise RuleFileError(source, name, "weight", "must be a positive number")
        about = table.get("about", "")
        if not isinstance(about, str):
            raise RuleFileError(source, name, "about", "must be a quoted string")
        out.append(Signal(f"{stem}.{name}", about, phrases, tuple(tuple(p) for p in patterns),
                          tuple(regexes), float(weight)))
    return out


def parse_criticity(source: str, text: str) -> tuple[CriticityRule, ...]:
    doc = _toml(source, text)
    rules = doc.get("rule")
    if not isinstance(rules, list) or not rules:
        raise RuleFileError(source, "", "rule", "needs [[rule]] entries, in precedence order")
    out = []
    for i, r in enumerate(rules):
        entry = str(r.get("id", f"rule #{i + 1}"))
        unknown = set(r) - {"id", "when", "level", "about"}
        if unknown:
            raise RuleFileError(source, entry, sorted(unknown)[0], "unknown key")
        when = r.get("when")
        if when not in CRITICITY_CONDITIONS:
            raise RuleFileError(source, entry, "when", f"unknown condition {when!r}; one of "
                                + ", ".join(CRITICITY_CONDITIONS) + _suggest(str(when), CRITICITY_CONDITIONS))
        level = r.get("level")
        if level not in (1, 2, 3):
            raise RuleFileError(source, entry, "level", "must be 1, 2 or 3")
        out.append(CriticityRule(entry, when, level, str(r.get("about", ""))))
    if out[-1].when != "otherwise":
        raise RuleFileError(source, out[-1].id, "when", "the last rule must be 'otherwise'")
    return tuple(out)


def _parse_sets(source: str, doc: dict[str, Any], section: str) -> dict[str, MandatorySet]:
    out = {}
    for key, table in doc.get(section, {}).items():
        entry = f"{section}.{key}"
        if not isinstance(table, dict):
            raise RuleFileError(source, entry, "", "must be a table")
        unknown = set(table) - {"mandatory", "optional", "when"}
        if unknown:
            raise RuleFileError(source, entry, sorted(unknown)[0], "unknown key")
        fields_ = {}
        for k in ("mandatory", "optional"):
            fields_[k] = _str_list(source, entry, k, table.get(k, []))
            for f in fields_[k]:
                if f not in FIELD_NAMES:
                    raise RuleFileError(source, entry, k, f"unknown field {f!r}" + _suggest(f, FIELD_NAMES))
        conditional = []
        for i, c in enumerate(table.get("when", [])):
            try:
                fld, if_field, values = c["add"], c["if"], tuple(c["in"])
            except (KeyError, TypeError):
                raise RuleFileError(source, entry, f"when[{i}]", "needs add, if and in") from None
            for f in (fld, if_field):
                if f not in FIELD_NAMES:
                    raise RuleFileError(source, entry, f"when[{i}]", f"unknown field {f!r}" + _suggest(f, FIELD_NAMES))
            conditional.append((fld, if_field, values))
        out[key] = MandatorySet(key, fields_["mandatory"], fields_["optional"], tuple(conditional))
    return out


def parse_rulebook(sources: dict[str, str], *, strict: bool = True) -> Rulebook:
    """Validate and compile every rule file. ``sources`` maps a path relative
    to ``rules/`` (``signals/apps.toml``) to its text."""
    signals: dict[str, Signal] = {}
    warnings = []
    criticity: tuple[CriticityRule, ...] = ()
    mandatory: dict[str, MandatorySet] = {}
    request_mandatory: dict[str, MandatorySet] = {}
    questions: dict[str, str] = {}
    dates: dict[str, Any] = {}
    templates: dict[str, str] = {}
    for source in sorted(sources):
        text = sources[source]
        if source.startswith("signals/") and source.endswith(".toml"):
            for sig in parse_signals(source, text):
                if sig.id in signals:
                    raise RuleFileError(source, sig.id.split(".", 1)[1], "", "defined twice")
                signals[sig.id] = sig
                seen_phrases: set[str] = set()
                for p in sig.phrases:
                    if p.lower() in seen_phrases:
                        warnings.append(f"{source}: phrase {p!r} is twice in {sig.id}")
                    seen_phrases.add(p.lower())
        elif source == "criticity.toml":
            criticity = parse_criticity(source, text)
        elif source == "mandatory.toml":
            doc = _toml(source, text)
            unknown = set(doc) - {"failure", "request"}
            if unknown:
                raise RuleFileError(source, sorted(unknown)[0], "", "unknown section; use [failure.X] or [request.X]")
            mandatory = _parse_sets(source, doc, "failure")
            request_mandatory = _parse_sets(source, doc, "request")
        elif source == "fields.toml":
            doc = _toml(source, text)
            for name, table in doc.items():
                if name not in FIELD_NAMES:
                    raise RuleFileError(source, name, "", "unknown field" + _suggest(name, FIELD_NAMES))
                q = table.get("question") if isinstance(table, dict) else None
                if not isinstance(q, str) or not q.strip():
                    raise RuleFileError(source, name, "question", "needs a question in quotes")
                questions[name] = q.strip()
        elif source == "dates.toml":
            dates = _toml(source, text)
        elif source.startswith("templates/"):
            templates[source.removeprefix("templates/").removesuffix(".txt")] = text
    if strict:
        for sid in REQUIRED_SIGNALS:
            if sid not in signals:
                raise RuleFileError(sid.split(".")[0] + ".toml", sid.split(".", 1)[1], "",
                                    "this signal is required by the engine and is missing"
                                    + _suggest(sid, list(signals)))
        if not criticity:
            raise RuleFileError("criticity.toml", "", "", "file missing")
        for key in ("A", "B.portail", "B.bandeau", "B.nice", "B.statistiques", "B.selfcare", "C"):
            if key not in mandatory:
                raise RuleFileError("mandatory.toml", f"failure.{key}", "", "missing mandatory set")
        asked = {f for m in mandatory.values() for f in m.mandatory + m.optional}
        for f in sorted(asked - set(questions)):
            raise RuleFileError("fields.toml", f, "question", "a mandatory field has no question")
    return Rulebook(signals, criticity, mandatory, request_mandatory, questions, dates,
                    templates, tuple(warnings))
