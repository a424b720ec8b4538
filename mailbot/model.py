"""Value types shared by every layer.

Pure: standard library only. Everything here is a frozen dataclass or a plain
enum, so a value can be passed around, compared in tests and serialised
without touching I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attachment:
    """One attached (or inline) part of a mail."""

    filename: str
    content_type: str
    size: int
    inline: bool = False
    content: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def is_image(self) -> bool:
        return self.content_type.lower().startswith("image/")


@dataclass(frozen=True)
class QuotedPart:
    """A forwarded or quoted message found inside the body.

    ``date`` is that part's own date when its header block says it (Outlook
    "Envoyé :", Thunderbird "Date :", message/rfc822), so relative phrases in
    it resolve against the right day.
    """

    text: str
    date: dt.datetime | None = None
    sender: str = ""
    subject: str = ""
    forwarded: bool = True  # False for a quoted reply (our own question, usually)


@dataclass(frozen=True)
class ParsedMail:
    """A mail, normalised. ``error`` is set (and the rest may be empty) when
    the bytes could not be read as a mail at all; it is a value, not an
    exception, so the caller decides (quarantine)."""

    message_id: str = ""
    subject: str = ""
    from_addr: str = ""          # lower-cased addr-spec, "" when absent/unparseable
    from_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    reply_to: str = ""
    date: dt.datetime | None = None   # aware; None when absent or unparseable
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    # Lower-cased header name -> all its values (decoded, unfolded, truncated).
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    content_type: str = "text/plain"   # of the top-level part
    mime_types: tuple[str, ...] = ()   # every leaf's content type, in order
    body_text: str = ""        # the whole readable body (plain, or HTML as text)
    new_text: str = ""         # what the sender wrote now: no quotes, signature, disclaimer
    signature: str = ""
    quoted: tuple[QuotedPart, ...] = ()      # quoted replies and forwarded mails
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    size: int = 0
    error: str | None = None

    def header(self, name: str) -> str:
        """First value of a header, '' when absent."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    @property
    def forwarded(self) -> tuple[QuotedPart, ...]:
        return tuple(q for q in self.quoted if q.forwarded)


@dataclass(frozen=True)
class Hit:
    """One rule that fired: its id (``file#entry``) and the words it matched."""

    rule: str
    words: str = ""
    decides: str = ""   # what it contributed to: "kind", "cas", "application", "field:browser", ...

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "words": self.words, "decides": self.decides}


KINDS = ("incident", "followup", "autoreply", "bounce", "noise")
CASES = ("A", "B", "C", "D")
APPLICATIONS = ("portail", "bandeau", "nice", "statistiques", "selfcare")


@dataclass(frozen=True)
class Verdict:
    """What the triage decided for one mail (policy §7), with its trace."""

    kind: str
    cas: str | None = None
    application: str | None = None
    criticity: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    optional_missing: tuple[str, ...] = ()   # "if possible" fields not given (policy §6)
    is_request: bool = False
    immediate: bool = False          # "now" was said (routing (de)activation)
    failure_reported: bool = False   # a failure is reported (not only a request)
    trace: tuple[Hit, ...] = ()
    reason: str = ""   # for non-incidents and errors: why, in plain words

    def as_json(self) -> dict[str, Any]:
        """The policy §7 contract (keys always present, null when no value)."""
        return {
            "kind": self.kind,
            "cas": self.cas,
            "application": self.application,
            "criticity": self.criticity,
            "fields": dict(self.fields),
            "missing": sorted(self.missing),
        }
