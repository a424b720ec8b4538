"""Separate what a sender wrote *now* from what a mail merely carries.

Role: given the readable body of a mail (plain text, or HTML already rendered
by :mod:`mailbot.htmltext`), split it into

* ``new_text``: the sender's own words, greeting and problem description kept;
* ``signature``: the closing formula and the signature block after it
  ("Cordialement," + name/title/phone), phone-client taglines ("Envoyé de mon
  iPhone", "Sent from my iPad", "Envoyé à partir de Outlook pour Android"),
  everything after an RFC 3676 ``-- `` delimiter, and confidentiality
  disclaimers (French and English);
* ``quoted``: the quoted replies and forwarded mails found in the body, each a
  :class:`~mailbot.model.QuotedPart` with its own sender, subject and date when
  its header block or attribution line says them.

The markers recognised are line-based, in the style of Mailgun's talon:

* ``>``-prefixed lines (RFC 3676 quoting; inline answers between quoted lines
  stay new text);
* attribution lines: Gmail/Apple/Thunderbird "Le <date>, <nom> a écrit :",
  "On <date>, <name> wrote:" (possibly wrapped over two or three lines);
* separators: Outlook "-----Message d'origine-----" / "-----Original
  Message-----", Thunderbird "-------- Original Message --------" and
  "-------- Message transféré --------", Gmail "---------- Forwarded message
  ---------", Apple Mail "Début du message réexpédié :" / "Begin forwarded
  message:", Outlook's "________________________________" rule;
* Outlook header blocks ("De : … Envoyé : … À : … Objet : …", English
  "From: … Sent: … To: … Subject: …") and Thunderbird forward headers
  ("Sujet : … Date : … De : … Pour : …"), with or without a separator above.

A part is *forwarded* when its marker says so (forward separators), or when the
marker is ambiguous (Outlook header block, "Original Message") and the mail
looks like a forward (subject "TR:"/"Fwd:", see ``forward_hint``); otherwise it
is a quoted reply (``forwarded=False``, usually our own question quoted back).
Parts nested inside a forwarded part are forwarded context too.

Dates in header blocks and attribution lines ("mercredi 4 novembre 2026
07:07", "lun. 16 nov. 2026 à 08:12", "16/11/2026 08:12", "Tuesday, November
3, 2026 11:49 AM", RFC 5322) are parsed by :func:`parse_loose_date`; a date
without an offset is Europe/Paris local time.

Import rule: pure — standard library and :mod:`mailbot.model` only; no I/O,
no clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from mailbot.model import QuotedPart

__all__ = [
    "PARIS",
    "BodySplit",
    "forward_hint_from_subject",
    "parse_loose_date",
    "split_body",
]

PARIS = ZoneInfo("Europe/Paris")

# Nested quoted/forwarded levels followed before the rest is kept as one part.
_MAX_NESTING = 12
# Lines examined when deciding whether a header block starts here.
_HEADER_LOOKAHEAD = 14


@dataclass(frozen=True)
class BodySplit:
    new_text: str
    signature: str
    quoted: tuple[QuotedPart, ...]


# --------------------------------------------------------------------------
# Subject prefixes
# --------------------------------------------------------------------------

_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(re|r[ée]f|r[ée]p|aw|sv|tr|fwd?|wg|rv|enc|i)\s*(?:\[\d+\])?\s*:",
    re.IGNORECASE,
)
_FORWARD_PREFIXES = {"tr", "fw", "fwd", "wg", "rv", "enc", "i"}


def forward_hint_from_subject(subject: str) -> bool | None:
    """True for "TR:"/"Fwd:"/"Fw:"/"WG:", False for "RE:"/"AW:"/"Réf :",
    None when the subject carries no such prefix (the first prefix decides:
    "RE: TR: x" is a reply)."""
    m = _SUBJECT_PREFIX.match(subject or "")
    if not m:
        return None
    return m.group(1).lower() in _FORWARD_PREFIXES


# --------------------------------------------------------------------------
# Loose dates (header blocks, attribution lines)
# --------------------------------------------------------------------------

_MONTHS = {
    # French
    "janvier": 1, "janv": 1, "février": 2, "fevrier": 2, "févr": 2, "fevr": 2,
    "fév": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4, "mai": 5, "juin": 6,
    "juillet": 7, "juil": 7, "août": 8, "aout": 8, "septembre": 9,
    "octobre": 10, "novembre": 11, "décembre": 12, "decembre": 12, "déc": 12,
    # English (and shared abbreviations)
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9, "october": 10,
    "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))
_DAY_MONTH_YEAR = re.compile(
    rf"\b(\d{{1,2}})(?:er|st|nd|rd|th)?\s+({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.IGNORECASE
)
_MONTH_DAY_YEAR = re.compile(
    rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE
)
_NUMERIC = re.compile(r"\b(\d{1,4})([/.-])(\d{1,2})\2(\d{2,4})\b")
_TIME = re.compile(
    r"(?<![\d:])(\d{1,2})\s*(?::|h)\s*(\d{2})(?::(\d{2}))?(?!\d)\s*([ap]\.?\s?m\.?)?",
    re.IGNORECASE,
)
_RFC5322_SHAPE = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}")
_AMPM = re.compile(r"\d\s*[ap]\.?\s?m\b", re.IGNORECASE)
_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{2}):?(\d{2})\b")


def parse_loose_date(text: str, *, month_first: bool = False) -> dt.datetime | None:
    """Parse a human or RFC 5322 date as found in quoted header blocks.

    Returns an aware datetime: with the written UTC offset when there is one,
    else Europe/Paris local time. ``month_first`` reads ``11/3/2026`` as
    November 3 (US clients writing in English); otherwise day first, the
    French order. None when no date is recognisable.
    """
    text = (text or "").strip()
    if not text or len(text) > 300:
        return None
    value = None
    # The stdlib's RFC 5322 reader is lenient and would ignore "PM".
    if _RFC5322_SHAPE.search(text) and not _AMPM.search(text):
        try:
            value = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            value = None
    if value is not None and value.year >= 1970:
        return value if value.tzinfo else value.replace(tzinfo=PARIS)

    date = None
    rest_at = 0
    m = _DAY_MONTH_YEAR.search(text)
    if m:
        date = _mkdate(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)))
        rest_at = m.end()
    if date is None:
        m = _MONTH_DAY_YEAR.search(text)
        if m:
            date = _mkdate(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)))
            rest_at = m.end()
    if date is None:
        m = _NUMERIC.search(text)
        if m:
            a, c = m.group(1), m.group(4)
            if len(a) == 4:  # ISO 2026-11-16
                date = _mkdate(int(a), int(m.group(3)), int(c))
            else:
                year = int(c) + (2000 if len(c) == 2 else 0)
                first, second = int(a), int(m.group(3))
                if month_first and first <= 12:
                    date = _mkdate(year, first, second)
                if date is None:
                    date = _mkdate(year, second, first)
            rest_at = m.end()
    if date is None:
        return None
    hour = minute = second = 0
    tail = text[rest_at:]
    t = _TIME.search(tail)
    if t:
        hour, minute, second = int(t.group(1)), int(t.group(2)), int(t.group(3) or 0)
        ampm = (t.group(4) or "").lower().replace(".", "").replace(" ", "")
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        if hour > 23 or minute > 59 or second > 59:
            hour = minute = second = 0
        tail = tail[t.end():]
    tz: dt.tzinfo = PARIS
    o = _OFFSET.search(tail)
    if o and t:
        minutes = int(o.group(2)) * 60 + int(o.group(3))
        if minutes <= 14 * 60:
            sign = -1 if o.group(1) == "-" else 1
            tz = dt.timezone(dt.timedelta(minutes=sign * minutes))
    return dt.datetime(date.year, date.month, date.day, hour, minute, second, tzinfo=tz)


def _mkdate(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day) if 1970 <= year <= 2200 else None
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Markers
# --------------------------------------------------------------------------

# Separator lines. The value says whether the marker itself tells a forward
# (True), a reply (False) or nothing (None: decided by the subject hint).
_SEPARATORS: list[tuple[re.Pattern[str], bool | None]] = [
    # Thunderbird, Gmail, Roundcube, Zimbra, Apple Mail forwards
    (re.compile(r"^-{2,}\s*(message transf[ée]r[ée]|forwarded message|mensaje reenviado|weitergeleitete nachricht)\s*-{2,}$", re.IGNORECASE), True),
    (re.compile(r"^(d[ée]but du message r[ée]exp[ée]di[ée]|begin forwarded message)\s*:?$", re.IGNORECASE), True),
    (re.compile(r"^-{2,}\s*(message d'origine|original message|message original|ursprüngliche nachricht|mensaje original)\s*-{2,}$", re.IGNORECASE), None),
    # Outlook's horizontal rule above a header block (only counts when a
    # header block follows: checked by the caller).
    (re.compile(r"^_{10,}$"), None),
]
_RULE_ONLY = re.compile(r"^_{10,}$")

# Header block field names: Outlook FR/EN/DE, Thunderbird FR forward, Gmail.
_FIELD = re.compile(
    r"^\s*\*?\s*(de|from|von|exp[ée]diteur|envoy[ée](?: le)?|sent|gesendet|date|datum|"
    r"[àa]|to|pour|an|destinataire|cc|cci|bcc|objet|subject|sujet|betreff|"
    r"r[ée]pondre [àa]|reply-to|importance)\s*\*?\s*:\s*(.*)$",
    re.IGNORECASE,
)
_SENDER_FIELDS = {"de", "from", "von", "expéditeur", "expediteur"}
_DATE_FIELDS = {"envoyé", "envoye", "envoyé le", "envoye le", "sent", "gesendet", "date", "datum"}
_SUBJECT_FIELDS = {"objet", "subject", "sujet", "betreff"}
_RECIPIENT_FIELDS = {"à", "a", "to", "cc", "cci", "bcc", "pour", "an", "destinataire"}

# Attribution lines ("Le …, X a écrit :", "On …, X wrote:").
_ATTRIBUTION_END = re.compile(r"(a\s+[ée]crit|wrote|schrieb|escribi[óo])\s*:?\s*$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^\s*(le|on|am|el)\s", re.IGNORECASE)


def _is_quote_line(line: str) -> bool:
    return line.lstrip().startswith(">")


def _next_nonblank(lines: list[str], i: int, limit: int = 3) -> int | None:
    j = i
    while j < len(lines) and j - i <= limit:
        if lines[j].strip():
            return j
        j += 1
    return None


def _header_block(lines: list[str], i: int) -> tuple[int, dict[str, str]] | None:
    """A header block starting at line i: (index after it, fields) or None.

    Blank lines between fields are tolerated (HTML renderings put each field
    in its own paragraph). A block needs at least three fields, a sender and
    a date or subject, to tell it from prose such as "De : 8h à 10h".
    """
    fields: dict[str, str] = {}
    j = i
    last_field_end = i
    count = 0
    while j < len(lines) and j - i < _HEADER_LOOKAHEAD:
        line = lines[j]
        if not line.strip():
            j += 1
            continue
        m = _FIELD.match(line)
        if not m:
            break
        name = m.group(1).lower()
        value = m.group(2).strip()
        # Outlook wraps long To/Cc lists ("a <a@x>; b <b@x>;") onto the
        # following lines, without a field name.
        k = j + 1
        if name in _RECIPIENT_FIELDS:
            while (
                k < len(lines) and k - j < 4 and lines[k].strip()
                and not _FIELD.match(lines[k]) and value.rstrip().endswith(";")
            ):
                value += " " + lines[k].strip()
                k += 1
        fields.setdefault(name, value)
        count += 1
        j = k
        last_field_end = j
    if count < 3:
        return None
    names = set(fields)
    if not (names & _SENDER_FIELDS) or not (names & (_DATE_FIELDS | _SUBJECT_FIELDS)):
        return None
    if i < len(lines) and _FIELD.match(lines[i]) is None:
        return None
    return last_field_end, fields


def _attribution(lines: list[str], i: int) -> tuple[int, str] | None:
    """An attribution line (possibly wrapped over up to 3 lines) at line i:
    (index after it, the joined text) or None."""
    first = lines[i].strip()
    if not first or _is_quote_line(first) or len(first) > 400:
        return None
    joined = first
    for extra in range(3):
        if _ATTRIBUTION_END.search(joined) and len(joined) <= 400:
            end = i + extra + 1
            starts_well = _ATTRIBUTION_START.match(joined) is not None
            nxt = _next_nonblank(lines, end)
            followed_by_quote = nxt is not None and _is_quote_line(lines[nxt])
            has_who = "@" in joined or re.search(r"\d", joined) is not None
            if (starts_well and has_who) or followed_by_quote:
                return end, joined
            return None
        if i + extra + 1 >= len(lines):
            break
        nxt_line = lines[i + extra + 1].strip()
        if not nxt_line or _is_quote_line(nxt_line):
            break
        if not _ATTRIBUTION_START.match(first):
            break  # only "Le …"/"On …" attributions are wrapped by clients
        joined += " " + nxt_line
    return None


def _separator(lines: list[str], i: int) -> tuple[int, bool | None] | None:
    line = lines[i].strip()
    if not line or len(line) > 80:
        return None
    for pattern, forwarded in _SEPARATORS:
        if pattern.match(line):
            if _RULE_ONLY.match(line):
                nxt = _next_nonblank(lines, i + 1)
                if nxt is None or _header_block(lines, nxt) is None:
                    return None
            return i + 1, forwarded
    return None


_ATTR_WHO = re.compile(r"(?:,|\bà\s+\d{1,2}[:h]\d{2}\s*,?)\s*([^,]*?)\s*(?:a\s+[ée]crit|wrote|schrieb)", re.IGNORECASE)


def _attribution_meta(text: str) -> tuple[dt.datetime | None, str]:
    english = re.search(r"\bwrote\b", text, re.IGNORECASE) is not None
    date = parse_loose_date(text, month_first=english)
    who = ""
    m = re.search(r"([^,]*<[^>]+@[^>]+>|[\w.+-]+@[\w.-]+)\s*(?:a\s+[ée]crit|wrote|schrieb)", text, re.IGNORECASE)
    if m:
        who = m.group(1).strip()
    else:
        m = _ATTR_WHO.search(text)
        if m:
            who = m.group(1).strip()
    return date, who


# --------------------------------------------------------------------------
# Signatures and disclaimers
# --------------------------------------------------------------------------

_CLOSING = re.compile(
    r"^(?:(?:bien|tr[èe]s|tr[èe]s bien)\s+)?cordialement|"
    r"^(?:bien\s+)?(?:[àa]\s+vous|confraternellement|amicalement|sinc[èe]rement)|"
    r"^(?:meilleures|sinc[èe]res|mes)?\s*salutations(?:\s+distingu[ée]es)?|"
    r"^bonne\s+(?:journ[ée]e|soir[ée]e|fin\s+de\s+journ[ée]e|nuit|garde|continuation|semaine)(?:\s+[àa]\s+vous)?|"
    r"^(?:merci|mercii+|thanks|thank\s+you|many\s+thanks)(?:\s+(?:beaucoup|d'avance|par\s+avance|[àa]\s+vous|encore|pour\s+votre\s+aide|for\s+your\s+help|in\s+advance|a\s+lot))*|"
    r"^en\s+vous\s+remerciant(?:\s+(?:par\s+avance|d'avance|de\s+votre\s+aide))?|"
    r"^dans\s+l'attente\s+de\s+(?:votre|vos)\s+(?:retour|r[ée]ponse)s?|"
    r"^(?:best|kind|warm|warmest)?\s*regards|^rgds|^cheers|^sincerely|^yours(?:\s+sincerely)?|"
    r"^bav|^bàv|^a\+|^@\+|^cdlt|^cdt|^slts",
    re.IGNORECASE,
)
_CLOSING_TAIL = re.compile(r"^[\s,.!;:)\-]*$")

_MOBILE = re.compile(
    r"^(?:envoy[ée]|envoye)\s+(?:de|depuis|à partir de|a partir de|avec)\s+(?:mon|ma|l'|un|une|outlook|yahoo|gmail|courrier)|"
    r"^sent\s+(?:from|with|via)\s+|^get\s+outlook\s+for|^t[ée]l[ée]chargez\s+outlook|"
    r"^obtenir\s+outlook\s+pour",
    re.IGNORECASE,
)

_DISCLAIMER_CUES = re.compile(
    r"confidenti|destinataires?\b|intended\s+(?:solely|only|recipient|for)|if\s+you\s+are\s+not|"
    r"strictement\s+interdit|strictly\s+prohibited|interdite?s?\b|prohibited|"
    r"par\s+erreur|in\s+error|by\s+mistake|notify\s+the\s+sender|avertir\s+l'exp[ée]diteur|"
    r"informer\s+(?:imm[ée]diatement\s+)?l'exp[ée]diteur|en\s+aviser|"
    r"d[ée]truire|supprimer|delete|effacer|"
    r"secret\s+(?:m[ée]dical|professionnel)|privileged|"
    r"d[ée]cline\s+toute\s+responsabilit|n'accepte\s+aucune\s+responsabilit|"
    r"accepts?\s+no\s+liability|ne\s+saurait\s+[êe]tre\s+tenu|"
    r"pensez\s+[àa]\s+l'environnement|avant\s+d'imprimer|before\s+printing|"
    r"virus",
    re.IGNORECASE,
)
_DISCLAIMER_HEAD = re.compile(
    r"^\W*(avertissement|disclaimer|confidentialit[ée]|confidentiality|ce\s+(?:message|courriel|mail|e-mail)|"
    r"le\s+pr[ée]sent\s+(?:message|courriel)|this\s+(?:e-?mail|message)|the\s+information\s+contained)",
    re.IGNORECASE,
)
_RULE_LINE = re.compile(r"^\s*[-_=*~]{5,}\s*$")


def _is_disclaimer(paragraph: str) -> bool:
    if len(paragraph) < 60:
        return False
    cues = {m.group(0).lower()[:8] for m in _DISCLAIMER_CUES.finditer(paragraph)}
    if len(cues) >= 3:
        return True
    return len(cues) >= 2 and _DISCLAIMER_HEAD.match(paragraph) is not None


def _paragraphs(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of blank-line separated paragraphs."""
    out = []
    i = 0
    n = len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < n and lines[j].strip():
            j += 1
        out.append((i, j))
        i = j
    return out


def _signature_like(line: str) -> bool:
    """A name, a title, a service, a phone number: short, not a sentence."""
    s = line.strip()
    if len(s) > 80 or len(s.split()) > 12:
        return False
    if re.match(r"^(p\.?\s?s\.?|nb|n\.b\.)\b", s, re.IGNORECASE):
        return False
    return not (len(s) > 30 and s[-1] in ".?!:;")


def _strip_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split unquoted lines into (new text lines, signature lines)."""
    keep = [True] * len(lines)
    sig = [False] * len(lines)
    first_content = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first_content is None:
        return [], []

    # 1. Disclaimers, with the dashed rules framing them.
    paras = _paragraphs(lines)
    for a, b in paras:
        block = lines[a:b]
        body = [line for line in block if not _RULE_LINE.match(line)]
        if a == first_content and len(paras) == 1:
            continue  # never the whole mail
        if body and _is_disclaimer(" ".join(line.strip() for line in body)):
            for k in range(a, b):
                keep[k], sig[k] = False, True
            # a rule line just above (after a blank) belongs to it
            k = a - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            if k >= 0 and _RULE_LINE.match(lines[k]):
                keep[k], sig[k] = False, True

    # 2. Phone/webmail taglines, wherever they are (they are one line).
    for k, line in enumerate(lines):
        s = line.strip()
        if s and len(s) < 90 and _MOBILE.match(s):
            keep[k], sig[k] = False, True

    # 3. RFC 3676 "-- " delimiter: the rest is signature (editors often
    #    strip the trailing space, so a bare "--" counts too).
    for k, line in enumerate(lines):
        if keep[k] and line.rstrip() in ("--", "-- ") and k > first_content:
            for m in range(k, len(lines)):
                if keep[m]:
                    keep[m], sig[m] = False, True
            break

    # 4. Closing formula + the short block after it (name, title, phone).
    #    The last closing line whose next line looks like a signature (or
    #    that ends the mail) wins; a "Merci." followed by facts is not one.
    candidates = []
    for k, line in enumerate(lines):
        if not keep[k] or k == first_content:
            continue
        s = line.strip()
        closing = _CLOSING.match(s)
        if closing and len(s) <= 60 and _CLOSING_TAIL.match(s[closing.end():]):
            candidates.append(k)
    for k in reversed(candidates):
        after = [q for q in range(k + 1, len(lines)) if keep[q] and lines[q].strip()]
        if after and not _signature_like(lines[after[0]]):
            continue
        keep[k], sig[k] = False, True
        taken = 0
        q = k + 1
        while q < len(lines):
            if not keep[q]:
                q += 1
                continue
            end = q
            while end < len(lines) and lines[end].strip():
                end += 1
            block = [line for line in lines[q:end] if line.strip()]
            if block and (taken + len(block) > 10 or not all(_signature_like(b) for b in block)):
                break  # a P.S. or a forgotten detail: stays new text
            for r in range(q, end):
                if keep[r]:
                    keep[r], sig[r] = False, True
            taken += len(block)
            q = end + 1 if end > q else q + 1
        break

    new = [line for k, line in enumerate(lines) if keep[k]]
    signature = [line for k, line in enumerate(lines) if sig[k]]
    return new, signature


# --------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------


def _clean(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _dequote(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        s = line.lstrip()
        if s.startswith(">"):
            s = s[1:]
            s = s.removeprefix(" ")
            out.append(s)
        else:
            out.append(line)
    return out


def split_body(
    text: str,
    *,
    forward_hint: bool | None = None,
    inside_forward: bool = False,
    _depth: int = 0,
) -> BodySplit:
    """Split a mail body into new text, signature and quoted parts.

    ``forward_hint`` comes from the subject ("TR:"/"Fwd:" → True, "RE:" →
    False, see :func:`forward_hint_from_subject`; None: unknown, an
    ambiguous Outlook header block then counts as forwarded).
    ``inside_forward`` marks every part found as forwarded context.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    own: list[str] = []
    quoted: list[QuotedPart] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            own.append(line)
            i += 1
            continue

        # ">" quoted run (no attribution line above it).
        if _is_quote_line(line):
            j = i
            while j < n and (_is_quote_line(lines[j]) or (not lines[j].strip() and j + 1 < n and _is_quote_line(lines[j + 1]))):
                j += 1
            quoted.extend(_quoted_run(lines[i:j], None, "", forward_hint, inside_forward, _depth))
            i = j
            continue

        if _depth < _MAX_NESTING:
            att = _attribution(lines, i)
            if att is not None:
                end, attribution = att
                date, who = _attribution_meta(attribution)
                nxt = _next_nonblank(lines, end)
                if nxt is not None and _is_quote_line(lines[nxt]):
                    j = nxt
                    while j < n and (_is_quote_line(lines[j]) or (not lines[j].strip() and j + 1 < n and _is_quote_line(lines[j + 1]))):
                        j += 1
                    quoted.extend(_quoted_run(lines[nxt:j], date, who, forward_hint, inside_forward, _depth))
                    i = j
                    continue
                # Top-posted reply with an unprefixed quote: the rest is quoted.
                forwarded = inside_forward or forward_hint is True
                quoted.extend(_rest_part(lines[end:], date, who, "", forwarded, _depth))
                break

            sep = _separator(lines, i)
            header_at = i
            marker_forward: bool | None = None
            if sep is not None:
                header_at, marker_forward = sep
                nxt = _next_nonblank(lines, header_at)
                header_at = nxt if nxt is not None else header_at
            block = _header_block(lines, header_at) if header_at < n else None
            if sep is not None or block is not None:
                if marker_forward is None:
                    marker_forward = forward_hint if forward_hint is not None else True
                forwarded = inside_forward or marker_forward
                if block is not None:
                    end, fields = block
                    sender = _first(fields, _SENDER_FIELDS)
                    subject = _first(fields, _SUBJECT_FIELDS)
                    raw_date = _first(fields, _DATE_FIELDS)
                    english = any(k in fields for k in ("sent", "from", "subject"))
                    date = parse_loose_date(raw_date, month_first=english) if raw_date else None
                    quoted.extend(_rest_part(lines[end:], date, sender, subject, forwarded, _depth))
                else:
                    quoted.extend(_rest_part(lines[header_at:], None, "", "", forwarded, _depth))
                break

        own.append(line)
        i += 1

    new_lines, sig_lines = _strip_signature(own)
    return BodySplit(_clean(new_lines), _clean(sig_lines), tuple(quoted))


def _first(fields: dict[str, str], names: set[str]) -> str:
    for name, value in fields.items():
        if name in names:
            return value
    return ""


def _rest_part(
    lines: list[str], date: dt.datetime | None, sender: str, subject: str,
    forwarded: bool, depth: int,
) -> list[QuotedPart]:
    """Everything below a header block/separator: one part, plus the parts
    quoted inside it (a forwarded chain), in reading order."""
    # Whatever is nested inside a quoted reply is older conversation, never
    # new facts: a block below a reply stays a reply quote.
    inner = split_body("\n".join(lines), forward_hint=forwarded,
                       inside_forward=forwarded, _depth=depth + 1)
    part = QuotedPart(text=inner.new_text, date=date, sender=sender, subject=subject,
                      forwarded=forwarded)
    return [part, *inner.quoted]


def _quoted_run(
    lines: list[str], date: dt.datetime | None, sender: str,
    forward_hint: bool | None, inside_forward: bool, depth: int,
) -> list[QuotedPart]:
    forwarded = inside_forward or forward_hint is True
    inner_text = "\n".join(_dequote(lines))
    if depth + 1 >= _MAX_NESTING:
        return [QuotedPart(text=_clean(inner_text.split("\n")), date=date, sender=sender, forwarded=forwarded)]
    inner = split_body(inner_text, forward_hint=forward_hint, inside_forward=forwarded, _depth=depth + 1)
    if not inner.new_text and date is None and not sender:
        return list(inner.quoted)
    part = QuotedPart(text=inner.new_text, date=date, sender=sender, forwarded=forwarded)
    return [part, *inner.quoted]
