"""Masking of patient identifiers, phone numbers, addresses and secrets in free text.

Pure: standard library only (``re``), no I/O, no clock. Used by the log
redaction filter (``mailbot.logsetup``) and by anything that shows mail text
outside the ticket store (the staff digest, alerts). The ticket store keeps
the original text; only what leaves it is masked (reliability notes §3.8).

Example::

    >>> mask_text("Patient né le 12/03/1980, NIR 2 53 07 2B 073 004 70, tél 06 12 34 56 78")
    'Patient né le [DATE_NAISSANCE], NIR [NIR], tél [TEL]'
    >>> mask_email_local_parts("écrire à jean.dupont@chu-exemple.fr")
    'écrire à ***@chu-exemple.fr'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NIR_MASK = "[NIR]"
PHONE_MASK = "[TEL]"
BIRTH_DATE_MASK = "[DATE_NAISSANCE]"
SECRET_MASK = "***"

#: Secrets shorter than this are not masked: replacing every occurrence of a
#: two-letter string would blank ordinary words in every log line.
MIN_SECRET_LENGTH = 4

# --- NIR (French social security number, INSEE definition c1409) ------------
#
# 15 characters: sex (1 digit), year (2), month (2), département (2, or 2A/2B
# for Corsica), commune (3), order (3), key (2). People write it grouped with
# spaces or dots ("1 84 12 76 451 089 46", "1.84.12.76.451.089.46") and the
# grouping varies for overseas départements (3-digit département, 2-digit
# commune), so the candidate is "15 significant characters with optional single
# separators between them", bounded by non-alphanumerics. The lookahead makes
# every start position a candidate, so a failing candidate cannot hide a valid
# one that overlaps it (``re.finditer`` alone would skip past it).
_NIR_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z])(?=([1-478](?:[ .]?[0-9ABab]){14})(?![0-9A-Za-z]))"
)
_SEPARATORS = re.compile(r"[ .]")


def nir_key(first13: str) -> int:
    """The control key of a NIR: ``97 - (N mod 97)``.

    ``first13`` is the 13 characters before the key. For Corsica the
    département ``2A`` counts as ``19`` and ``2B`` as ``18`` (the same rule as
    python-stdnum's ``stdnum.fr.nir``).

    >>> nir_key("253072B073004")
    70
    """
    digits = first13.upper()
    if digits[5:7] == "2A":
        digits = digits[:5] + "19" + digits[7:]
    elif digits[5:7] == "2B":
        digits = digits[:5] + "18" + digits[7:]
    return 97 - int(digits) % 97


def is_valid_nir(text: str) -> bool:
    """True when ``text`` (separators allowed) is a 15-character NIR whose key checks."""
    compact = _SEPARATORS.sub("", text).upper()
    if len(compact) != 15 or compact[0] not in "123478":
        return False
    department = compact[5:7]
    others = compact[:5] + compact[7:]
    if not others.isdigit() or not (department.isdigit() or department in ("2A", "2B")):
        return False
    return nir_key(compact[:13]) == int(compact[13:])


def mask_nir(text: str) -> str:
    """Replace every NIR whose key checks by ``[NIR]``; other numbers are left alone."""
    spans: list[tuple[int, int]] = []
    last_end = -1
    for match in _NIR_CANDIDATE.finditer(text):
        start, end = match.start(1), match.end(1)
        if start < last_end:
            continue
        if is_valid_nir(match.group(1)):
            spans.append((start, end))
            last_end = end
    if not spans:
        return text
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start])
        out.append(NIR_MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


# --- French phone numbers ----------------------------------------------------
#
# National form 0X XX XX XX XX (ARCEP numbering plan: 0 + 9 digits, first digit
# 1-9), international +33 X ... or 0033 X ..., sometimes written "+33 (0)6 ...".
# Separators: space, dot or hyphen between pairs.
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+|00)33[ .-]?(?:\(0\)[ .-]?)?|0)[1-9](?:[ .-]?\d{2}){4}(?!\d)"
)


def mask_phone_numbers(text: str) -> str:
    """Replace French phone numbers by ``[TEL]``."""
    return _PHONE.sub(PHONE_MASK, text)


# --- Dates of birth ----------------------------------------------------------
#
# Only dates introduced by a birth cue are masked: "né le", "née le",
# "né(e) le", "DDN", "date de naissance", "D.N.". Other dates (the incident
# date, "depuis le 12/03") are what the staff need to read.
_MONTHS = (
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|"
    "septembre|octobre|novembre|décembre|decembre"
)
_BIRTH_DATE = re.compile(
    r"(?P<cue>\b(?:n[ée]e?(?:\s*\(e\))?\s+le|DDN|date\s+de\s+naissance|D\.N\.)\s*:?\s*)"
    r"(?P<date>\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}"
    rf"|\d{{1,2}}(?:er)?\s+(?:{_MONTHS})\s+\d{{4}})",
    re.IGNORECASE,
)


def mask_birth_dates(text: str) -> str:
    """Replace a date that follows "né le", "née le", "DDN"... by ``[DATE_NAISSANCE]``."""
    return _BIRTH_DATE.sub(lambda m: m.group("cue") + BIRTH_DATE_MASK, text)


# --- E-mail addresses --------------------------------------------------------
#
# RFC 5322 dot-atom local part; the domain is kept (it tells which hospital
# wrote, which the operator needs) and the local part (a person's name) goes.
_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]+@(?P<domain>[\w-]+(?:\.[\w-]+)*)"
)


def mask_email_local_parts(text: str) -> str:
    """Replace the local part of each e-mail address by ``***``, keeping the domain."""
    return _EMAIL.sub(lambda m: f"{SECRET_MASK}@{m.group('domain')}", text)


# --- Secrets -------------------------------------------------------------------


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret by ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    return text


def mask_text(text: str, *, emails: bool = False, secrets: Iterable[str] = ()) -> str:
    """Apply every mask: secrets, dates of birth, NIR, phone numbers, and
    (when ``emails``) the local part of e-mail addresses.

    Secrets go first, so that a password made of digits is replaced whole
    before the phone or NIR masks cut it up.
    """
    text = mask_secrets(text, secrets)
    text = mask_birth_dates(text)
    text = mask_nir(text)
    text = mask_phone_numbers(text)
    if emails:
        text = mask_email_local_parts(text)
    return text
