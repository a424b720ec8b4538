"""The conversation with the person who wrote: what to do with each mail of a ticket.

Role: a small, explicit state machine over a ticket's facts (policy §2 "bot's
answer", §6 mandatory fields, §8 threading; issue 3 item 3). It decides; the
service carries the decision out (store, outbox). Every function takes plain
values (a ``Verdict`` from the triage engine, a ``TicketState`` read from the
store, the ``Rulebook``, ``Settings`` and ``now``) and returns a ``Decision``.

States of a ticket (``TicketState.status``, the desk's French names)::

    (new mail) ──cas D──────────────────────────────► no ticket, redirect to the local IT
       │
       ├─ complete, or cas A / C, or criticity 1 ───► "à traiter"   (filed; still asks what is missing)
       └─ mandatory fields missing ─────────────────► "en attente d'informations" (asks)
    "en attente d'informations"
       ├─ answer completes it, or criticity becomes 1 ► "à traiter"
       ├─ each missing field asked at most max_asks times; then, or after
       │  incomplete_after since creation ───────────► "incomplet" (flagged for staff)
       └─ no answer for reminder_after ───────────────► second request (reminder)
    "résolu" + an answer ─────────────────────────────► reopened ("à traiter")
    "clos"   + an answer ─────────────────────────────► a new ticket, linked (``thread_decision``)

A field given is never asked again (it is no longer missing); "if possible"
fields are asked once, in the first request only; criticity is recomputed from
the merged facts with :mod:`mailbot.policy` (it may go down as well as up).

Import rule: pure core. Standard library, :mod:`mailbot.model`,
:mod:`mailbot.policy`, :mod:`mailbot.rulebook`. No I/O, no clock (``now`` is
passed in), no store.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from mailbot.model import Verdict
from mailbot.policy import Facts, criticity, required_fields
from mailbot.rulebook import Rulebook

__all__ = [
    "ACTIONS",
    "FILED_STATUSES",
    "Decision",
    "ReplyPlan",
    "Settings",
    "TicketState",
    "deadline_for",
    "decide_followup",
    "decide_new",
    "decide_reminder",
    "facts_of",
    "merge_fields",
    "missing_of",
    "thread_decision",
]

# Ticket statuses (the desk's vocabulary, mailbot.adapters.store_schema).
WAITING = "en attente d'informations"
TO_HANDLE = "à traiter"
INCOMPLETE = "incomplet"
RESOLVED = "résolu"
CLOSED = "clos"
#: Statuses of a ticket staff already have in hand (filed).
FILED_STATUSES = (TO_HANDLE, "nouveau", "pris en charge", "escaladé", INCOMPLETE)

ACTIONS = ("file", "ask", "file_and_ask", "file_incomplete", "redirect_local_it",
           "update", "reopen", "record_only", "ignore")

#: Time to handle a ticket, from its creation (policy §4).
DEADLINES = {1: dt.timedelta(hours=24), 2: dt.timedelta(hours=72), 3: dt.timedelta(days=5)}


@dataclass(frozen=True)
class TicketState:
    """What the dialogue needs of a ticket. ``fields`` holds every fact given
    in the thread; ``ask_counts`` how many times each field was asked."""

    number: str | None
    status: str
    cas: str | None
    application: str | None
    criticity: int | None
    fields: dict[str, Any]
    ask_counts: dict[str, int]
    is_request: bool
    immediate: bool
    failure_reported: bool
    created_at: dt.datetime
    last_question_at: dt.datetime | None
    writer: str
    flagged_incomplete: bool = False


@dataclass(frozen=True)
class Settings:
    max_asks: int = 2                                        # each missing field asked at most this often
    incomplete_after: dt.timedelta = dt.timedelta(days=3)    # from creation: filed as incomplete
    reminder_after: dt.timedelta = dt.timedelta(hours=24)    # unanswered question: second request


@dataclass(frozen=True)
class ReplyPlan:
    """What to send back; :func:`mailbot.compose.render_reply` turns it into a mail.

    ``template`` names ``rules/templates/<template>.txt``; ``ask`` and
    ``ask_optional`` are field names (their questions come from
    ``rules/fields.toml``); ``context`` holds plain values for the template
    (``cas``, ``application``, ``criticity``, ``round``, ``checklist_fields``).
    """

    template: str
    ask: tuple[str, ...] = ()
    ask_optional: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of one mail (or of one scheduler run) for a ticket.

    ``state`` is the ticket after this mail (None: no ticket). ``events`` are
    the history entries to append, in order. ``missing`` is the sorted list of
    mandatory fields still missing (to store with the ticket); ``reason`` says
    in plain words why (for the log).
    """

    action: str
    state: TicketState | None
    reply: ReplyPlan | None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    notify_staff: bool = False
    missing: tuple[str, ...] = ()
    reason: str = ""


# ----------------------------------------------------------------------------
# helpers the service may use too

def facts_of(state: TicketState) -> Facts:
    """The ticket's facts as :mod:`mailbot.policy` and ``Engine.triage(context=…)`` take them."""
    return Facts(state.cas, state.application, dict(state.fields), is_request=state.is_request,
                 immediate=state.immediate, failure_reported=state.failure_reported)


def missing_of(state: TicketState, rulebook: Rulebook) -> tuple[list[str], list[str]]:
    """(mandatory fields not given, "if possible" fields not given) — policy §6."""
    return required_fields(rulebook, facts_of(state))


def deadline_for(level: int | None, created_at: dt.datetime) -> dt.datetime | None:
    """Policy §4: the deadline runs from the ticket's creation."""
    delay = DEADLINES.get(level) if level is not None else None
    return created_at + delay if delay else None


def _norm(value: Any) -> str:
    text = unicodedata.normalize("NFKD", str(value).casefold())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def merge_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, Any, Any]]]:
    """New values override old ones; lists are united (order kept, duplicates
    compared without case or accents). Returns (merged, [(field, old, new)])."""
    merged = dict(old)
    changes: list[tuple[str, Any, Any]] = []
    for name, value in new.items():
        if value is None or value == [] or value == "":
            continue
        before = merged.get(name)
        if name == "start_time" and _vaguer(value, before):
            continue
        if isinstance(before, list) and isinstance(value, list):
            seen = {_norm(v) for v in before}
            after = list(before) + [v for v in value if _norm(v) not in seen]
        elif isinstance(value, list):
            after = list(value)
        else:
            after = value
        if after != before:
            merged[name] = after
            changes.append((name, before, after))
    return merged, changes


def _vaguer(new: Any, old: Any) -> bool:
    """A date-only start ("ce soir", "this afternoon": 2026-11-19) restating
    the day of a known start time (2026-11-19T20:05) adds nothing: keep the
    precise one. Another day, or an hour, replaces it."""
    return (isinstance(new, str) and isinstance(old, str) and len(new) == 10 and len(old) > 10
            and old.startswith(new))


def _is_resolution(verdict: Verdict) -> bool:
    return any(h.rule == "kind.resolved" for h in verdict.trace)


def _should_file_now(cas: str | None, level: int | None, missing: list[str]) -> bool:
    """Cas A and C are filed at once (the writer is told to telephone); so is
    any criticity 1; a cas B otherwise when nothing mandatory is missing."""
    return cas in ("A", "C") or level == 1 or not missing or cas not in ("A", "B", "C")


def _checklist(rulebook: Rulebook, state: TicketState) -> tuple[str, ...]:
    """Cas A: what the writer should give on the phone — the A checklist
    (start time, lines, reception, OTN tests) minus what the mail gave."""
    if state.cas != "A":
        return ()
    mset = rulebook.mandatory.get("A")
    return tuple(f for f in (mset.mandatory + mset.optional) if f not in state.fields) if mset else ()


def _field_order(rulebook: Rulebook, state: TicketState) -> list[str]:
    key = state.cas if state.cas != "B" else f"B.{state.application}"
    mset = rulebook.mandatory.get(key or "")
    if mset is None:
        return []
    return [*mset.mandatory, *(c[0] for c in mset.conditional), *mset.optional]


def _ordered(rulebook: Rulebook, state: TicketState, names: list[str]) -> list[str]:
    """Questions in the order of rules/mandatory.toml (start time first…),
    not alphabetical: it reads like a person asking."""
    order = {f: i for i, f in enumerate(_field_order(rulebook, state))}
    return sorted(names, key=lambda f: (order.get(f, len(order)), f))


def _context(state: TicketState, rulebook: Rulebook, round_: int = 0, **extra: Any) -> dict[str, Any]:
    ctx = {"cas": state.cas, "application": state.application, "criticity": state.criticity,
           "round": round_, "checklist_fields": _checklist(rulebook, state)}
    ctx.update(extra)
    return ctx


def _status_event(old: str | None, new: str) -> tuple[str, dict[str, Any]]:
    return ("status_change", {"old": old, "new": new})


def _ask(state: TicketState, rulebook: Rulebook, missing: list[str], optional: list[str],
         settings: Settings, now: dt.datetime) -> tuple[TicketState, tuple[str, ...], tuple[str, ...], int]:
    """The fields to ask now (each at most ``max_asks`` times; "if possible"
    ones only in the first request) and the state with the counts updated."""
    first_request = state.last_question_at is None and not any(state.ask_counts.values())
    ask = tuple(_ordered(rulebook, state, [f for f in missing if state.ask_counts.get(f, 0) < settings.max_asks]))
    ask_optional = tuple(_ordered(rulebook, state, [f for f in optional if state.ask_counts.get(f, 0) == 0])) \
        if first_request and ask else ()
    if not ask:
        return state, (), (), 0
    counts = dict(state.ask_counts)
    for f in ask + ask_optional:
        counts[f] = counts.get(f, 0) + 1
    round_ = max(counts[f] for f in ask)
    return replace(state, ask_counts=counts, last_question_at=now), ask, ask_optional, round_


def _question_event(ask: tuple[str, ...], optional: tuple[str, ...], round_: int) -> tuple[str, dict[str, Any]]:
    return ("question", {"fields": list(ask), "optional": list(optional), "round": round_})


# ----------------------------------------------------------------------------
# a new mail (no ticket in its thread)

def decide_new(verdict: Verdict, rulebook: Rulebook, settings: Settings, now: dt.datetime,
               writer: str = "") -> Decision:
    """A mail that continues no ticket: open one, ask, or redirect (policy §2).
    ``writer`` is the sender's address (kept in the state for threading)."""
    if verdict.kind in ("autoreply", "bounce", "noise"):
        return Decision("ignore", None, None, reason=f"{verdict.kind}: never answered")
    if verdict.kind == "followup":
        # A reply or a "c'est revenu" whose thread we do not know: nothing to
        # file (it has no case of its own) and nothing to ask; a human looks.
        return Decision("record_only", None, None,
                        reason="follow-up without a known ticket: kept for a human")
    if verdict.cas == "D":
        plan = ReplyPlan("redirect_local_it", context={"cas": "D", "application": None, "criticity": None,
                                                       "round": 0, "checklist_fields": ()})
        return Decision("redirect_local_it", None, plan,
                        reason="outside SI-Samu (cas D): redirected to the local IT service")

    state = TicketState(
        number=None, status=WAITING, cas=verdict.cas, application=verdict.application,
        criticity=verdict.criticity, fields=dict(verdict.fields), ask_counts={},
        is_request=verdict.is_request, immediate=verdict.immediate,
        failure_reported=verdict.failure_reported, created_at=now, last_question_at=None,
        writer=writer.strip().lower(),
    )
    missing, optional = missing_of(state, rulebook)
    level = state.criticity
    file_now = _should_file_now(state.cas, level, missing)
    status = TO_HANDLE if file_now else WAITING
    state = replace(state, status=status)
    events: list[tuple[str, dict[str, Any]]] = [
        ("created", {"cas": state.cas, "application": state.application, "criticity": level,
                     "fields": sorted(state.fields), "missing": missing}),
        _status_event(None, status),
    ]
    state, ask, ask_optional, round_ = _ask(state, rulebook, missing, optional, settings, now)
    if ask:
        events.append(_question_event(ask, ask_optional, round_))
    notify = level == 1

    if state.cas == "A":
        action = "file_and_ask" if ask else "file"
        plan = ReplyPlan("call_hotline_a", ask, ask_optional, _context(state, rulebook, round_))
        why = "cas A: filed at once, told to telephone the hotline"
    elif state.cas == "C":
        action = "file_and_ask" if ask else "file"
        plan = ReplyPlan("call_hotline_c", ask, ask_optional, _context(state, rulebook, round_))
        why = "cas C: filed at once, told to telephone the hotline"
    elif file_now and ask:
        action = "file_and_ask"
        plan = ReplyPlan("ask_missing", ask, ask_optional, _context(state, rulebook, round_, filed=True))
        why = "criticity 1: filed at once and the missing fields asked"
    elif file_now:
        action = "file"
        plan = ReplyPlan("filed_ack", context=_context(state, rulebook))
        why = "complete: filed"
    else:
        action = "ask"
        plan = ReplyPlan("ask_missing", ask, ask_optional, _context(state, rulebook, round_, filed=False))
        why = "mandatory fields missing: asked"
    return Decision(action, state, plan, tuple(events), notify, tuple(missing), why)


# ----------------------------------------------------------------------------
# a mail in the thread of a ticket

def decide_followup(state: TicketState, verdict: Verdict, rulebook: Rulebook, settings: Settings,
                    now: dt.datetime) -> Decision:
    """An answer in the ticket's thread (its verdict triaged with
    ``context=facts_of(state)``): merge, recompute, file or ask again."""
    missing_before, _ = missing_of(state, rulebook)
    if verdict.kind == "autoreply":
        # An out-of-office joins the thread's history; it answers nothing.
        return Decision("record_only", state, None, (("autoreply", {"reason": verdict.reason}),),
                        missing=tuple(missing_before), reason="automatic reply: recorded, not answered")
    if verdict.kind == "bounce":
        return Decision("record_only", state, None, (("bounce", {"reason": verdict.reason}),),
                        missing=tuple(missing_before),
                        reason="bounce: recorded (our reply was not delivered), not answered")
    if verdict.kind not in ("incident", "followup"):
        return Decision("ignore", state, None, missing=tuple(missing_before),
                        reason=f"{verdict.kind}: never answered")
    if state.status == CLOSED:
        # thread_decision() sends an answer to a closed ticket to a new ticket;
        # if it still comes here, keep it in the history and change nothing.
        return Decision("record_only", state, None, (("message_on_closed", {}),),
                        missing=tuple(missing_before), reason="ticket closed: recorded only")

    events: list[tuple[str, dict[str, Any]]] = []
    merged, changes = merge_fields(state.fields, verdict.fields)
    for name, old, new in changes:
        events.append(("field_change", {"field": name, "old": old, "new": new}))
    new = replace(
        state, fields=merged,
        immediate=state.immediate or verdict.immediate,
        failure_reported=state.failure_reported or verdict.failure_reported,
    )
    level, why_level = criticity(rulebook, facts_of(new))
    notify = False
    if level != state.criticity:
        events.append(("criticity_change", {"old": state.criticity, "new": level,
                                            "rule": why_level.rule if why_level else None}))
        new = replace(new, criticity=level)
        notify = level == 1
    missing, optional = missing_of(new, rulebook)

    # The ticket was resolved: an answer reopens it (policy §8).
    if state.status == RESOLVED:
        new = replace(new, status=TO_HANDLE)
        events.append(_status_event(state.status, TO_HANDLE))
        return Decision("reopen", new, None, tuple(events), notify or level == 1, tuple(missing),
                        "answer to a resolved ticket: reopened")

    # "Merci, c'est revenu": recorded, nothing asked; staff confirm and close.
    if _is_resolution(verdict):
        words = next((h.words for h in verdict.trace if h.rule == "kind.resolved"), "")
        events.append(("resolution_reported", {"words": words}))
        if state.status == WAITING:
            new = replace(new, status=TO_HANDLE)
            events.append(_status_event(state.status, TO_HANDLE))
        action = "update" if changes else "record_only"
        return Decision(action, new, None, tuple(events), notify, tuple(missing),
                        "the writer says it works again: recorded, nothing asked")

    waiting = state.status == WAITING
    if not missing:
        if state.flagged_incomplete or state.status == INCOMPLETE:
            new = replace(new, flagged_incomplete=False)
            events.append(("completed", {}))
        if waiting or state.status == INCOMPLETE:
            new = replace(new, status=TO_HANDLE)
            events.append(_status_event(state.status, TO_HANDLE))
        if waiting:
            plan = ReplyPlan("filed_ack", context=_context(new, rulebook))
            return Decision("file", new, plan, tuple(events), notify, (), "answer completes the ticket: filed")
        return Decision("update", new, None, tuple(events), notify, (), "ticket updated, nothing missing")

    if state.status == INCOMPLETE:
        # Already filed as incomplete: staff have it; facts are kept, no more questions.
        return Decision("update", new, None, tuple(events), notify, tuple(missing),
                        "incomplete ticket updated; no more questions")

    # Still missing something: time is up, or every missing field was asked enough?
    asked_out = all(new.ask_counts.get(f, 0) >= settings.max_asks for f in missing)
    timed_out = now - state.created_at >= settings.incomplete_after
    if waiting and (asked_out or timed_out):
        if _should_file_now(new.cas, new.criticity, missing):
            pass  # criticity became 1: filed below as file_and_ask (or flagged)
        else:
            return _file_incomplete(new, rulebook, events, notify, missing,
                                    "asked twice without an answer" if asked_out else "no answer in time")

    file_now = waiting and _should_file_now(new.cas, new.criticity, missing)
    if file_now:
        new = replace(new, status=TO_HANDLE)
        events.append(_status_event(state.status, TO_HANDLE))
    new, ask, _, round_ = _ask(new, rulebook, missing, [], settings, now)
    if not ask:
        # Filed already (cas A/C, criticity 1) and asked enough: staff see the flag.
        if not new.flagged_incomplete:
            new = replace(new, flagged_incomplete=True)
            events.append(("flagged_incomplete", {"missing": missing}))
        action = "file" if file_now else "update"
        return Decision(action, new, None, tuple(events), notify or (file_now and level == 1),
                        tuple(missing), "filed; missing fields already asked enough")
    events.append(_question_event(ask, (), round_))
    template = {"A": "call_hotline_a", "C": "call_hotline_c"}.get(new.cas or "", "ask_missing") \
        if file_now else "ask_missing"
    plan = ReplyPlan(template, ask, (), _context(new, rulebook, round_, filed=new.status != WAITING))
    if file_now:
        return Decision("file_and_ask", new, plan, tuple(events), notify or level == 1, tuple(missing),
                        "criticity 1 now: filed at once and still asked")
    return Decision("ask", new, plan, tuple(events), notify, tuple(missing),
                    "still missing: asked again")


def _file_incomplete(state: TicketState, rulebook: Rulebook, events: list[tuple[str, dict[str, Any]]],
                     notify: bool, missing: list[str], why: str) -> Decision:
    new = replace(state, status=INCOMPLETE, flagged_incomplete=True)
    events = [*events, _status_event(state.status, INCOMPLETE),
              ("flagged_incomplete", {"missing": list(missing), "reason": why})]
    plan = ReplyPlan("filed_incomplete", context=_context(new, rulebook, missing_fields=tuple(missing)))
    return Decision("file_incomplete", new, plan, tuple(events), notify, tuple(missing),
                    f"filed as incomplete: {why}")


# ----------------------------------------------------------------------------
# the scheduler: second request, incomplete timeout

def decide_reminder(state: TicketState, rulebook: Rulebook, settings: Settings,
                    now: dt.datetime) -> Decision | None:
    """For a ticket waiting for an answer: send the second request after
    ``reminder_after`` without an answer; file it as incomplete after the
    second unanswered request or ``incomplete_after`` since creation.
    None: nothing to do now."""
    if state.status != WAITING:
        return None
    missing, _ = missing_of(state, rulebook)
    if not missing:
        new = replace(state, status=TO_HANDLE)
        return Decision("file", new, ReplyPlan("filed_ack", context=_context(new, rulebook)),
                        (_status_event(state.status, TO_HANDLE),), state.criticity == 1, (),
                        "nothing missing any more: filed")
    if now - state.created_at >= settings.incomplete_after:
        return _file_incomplete(state, rulebook, [], False, missing, "no answer in time")
    since = now - (state.last_question_at or state.created_at)
    if since < settings.reminder_after:
        return None
    new, ask, _, round_ = _ask(state, rulebook, missing, [], settings, now)
    if not ask:
        return _file_incomplete(state, rulebook, [], False, missing, "asked twice without an answer")
    plan = ReplyPlan("reminder", ask, (), _context(new, rulebook, round_, filed=False))
    return Decision("ask", new, plan, (_question_event(ask, (), round_),), False, tuple(missing),
                    "no answer: second request")


# ----------------------------------------------------------------------------
# threading (policy §8)

def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower()


def thread_decision(sender: str, ticket_status: str | None, participants: set[str], writer: str) -> str:
    """Which ticket a mail that refers to one belongs to (policy §8).

    ``ticket_status`` is the status of the ticket the mail refers to (subject
    tag, In-Reply-To/References), None when it refers to none. A participant
    is an address seen in the thread's From/To/Cc, or any address of the
    writer's mail domain (a colleague of the same site). Returns "new" (no
    ticket), "new_linked" (a stranger quoting a ticket: new ticket linked to
    it), "reopen" (answer to a resolved ticket), "new_after_closed" (answer to
    a closed ticket: new ticket linked to it), or "continue".
    """
    if ticket_status is None:
        return "new"
    who = sender.strip().lower()
    known = {p.strip().lower() for p in participants} | ({writer.strip().lower()} if writer else set())
    same_site = bool(who) and "@" in who and bool(writer) and _domain(who) == _domain(writer)
    if not who or (who not in known and not same_site):
        return "new_linked"
    if ticket_status == CLOSED:
        return "new_after_closed"
    if ticket_status == RESOLVED:
        return "reopen"
    return "continue"
