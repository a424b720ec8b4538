"""Ticket rules of the triage policy that depend only on a ticket's facts.

Pure. Criticity (§4, in the order of ``rules/criticity.toml``) and the
mandatory / "if possible" fields (§6) are computed from the case, the
application, the fields and two flags, so the dialogue can recompute them
when a follow-up brings new facts, exactly as the triage computed them for
the first mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailbot.model import Hit
from mailbot.rulebook import Rulebook


@dataclass(frozen=True)
class Facts:
    cas: str | None
    application: str | None
    fields: dict[str, Any]
    is_request: bool = False       # a request rather than a failure (§4 row 6)
    immediate: bool = False        # "activate/deactivate now" was said
    failure_reported: bool = True  # a failure of the tool is reported too


def is_immediate_routing(facts: Facts) -> bool:
    return (facts.application == "selfcare" and facts.immediate
            and facts.fields.get("requested_action") in ("activation", "desactivation"))


def criticity(rulebook: Rulebook, facts: Facts) -> tuple[int | None, Hit | None]:
    """Policy §4: the first rule of criticity.toml whose condition holds."""
    cas, app, fields = facts.cas, facts.application, facts.fields
    if cas not in ("A", "B", "C"):
        return None, None
    conditions = {
        "cas_a": cas == "A",
        "environment_formation": fields.get("environment") == "formation",
        "selfcare_immediate": is_immediate_routing(facts),
        "bandeau_total": app == "bandeau" and fields.get("bandeau_state") == "total",
        "impact_total": fields.get("impact_scope") == "total",
        "request": facts.is_request,
        "unitary": cas == "B" and fields.get("impact_scope") == "unitaire",
        "otherwise": True,
    }
    for rule in rulebook.criticity:
        if conditions[rule.when]:
            return rule.level, Hit(f"criticity.toml#{rule.id}", rule.about, "criticity")
    return 2, None


def required_fields(rulebook: Rulebook, facts: Facts) -> tuple[list[str], list[str]]:
    """Policy §6: (mandatory fields not given, "if possible" fields not given)."""
    cas, app, fields = facts.cas, facts.application, facts.fields
    if cas not in ("A", "B", "C"):
        return [], []
    key = cas if cas != "B" else f"B.{app}"
    as_request = facts.is_request or (is_immediate_routing(facts) and not facts.failure_reported)
    mset = (rulebook.request_mandatory if as_request else rulebook.mandatory).get(key)
    if mset is None:
        return [], []
    required = list(mset.mandatory)
    for field_, if_field, values in mset.conditional:
        if fields.get(if_field) in values:
            required.append(field_)
    missing = sorted({f for f in required if f not in fields})
    optional = sorted({f for f in mset.optional if f not in fields})
    return missing, optional
