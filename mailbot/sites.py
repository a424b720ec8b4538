"""Sites: which SAMU / hospital a mail comes from (``rules/sites.toml``).

Role: give each ticket the site trigram the desk uses in its backlog
(``VAL``, ``ORV``...) and the site's name, from the sender's mail domain or,
failing that, from words of the signature ("CRRA 31", "SAMU 74", "CH de
Valmont"). An unknown site stays visible as unknown: :func:`resolve_site`
returns ``None`` and the digest shows "?" / "site inconnu" (issue 4 item 1).

The file is data that support staff edit; its format is documented at the top
of ``rules/sites.toml``. Every error is a :class:`mailbot.errors.RuleFileError`
naming the file, the entry and the key.

Import rule: pure core for :func:`parse_sites` and :func:`resolve_site`
(standard library ``tomllib``, ``unicodedata``, :mod:`mailbot.errors`); only
:func:`load_sites` reads a file, the way :mod:`mailbot.rulefiles` does for
the other rules.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mailbot.errors import RuleFileError

__all__ = [
    "SITES_FILE", "UNKNOWN_CODE", "UNKNOWN_NAME", "Site", "SiteEntry", "Sites",
    "load_sites", "parse_sites", "resolve_site", "site_label",
]

SITES_FILE = "sites.toml"
SITE_KEYS = ("name", "domains", "words")
#: What lists and digests show for a ticket whose site is not known.
UNKNOWN_CODE = "?"
UNKNOWN_NAME = "site inconnu"

_CODE = re.compile(r"^[A-Z]{3}$")
# A DNS name (RFC 1035 labels; IDNs written in their A-label/punycode form).
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")
_MAX_WORDS_TEXT = 20_000   # a signature is short; never scan a whole forwarded thread


@dataclass(frozen=True)
class Site:
    """A resolved site: trigram and name."""

    code: str
    name: str


@dataclass(frozen=True)
class SiteEntry:
    """One ``[CODE]`` table of ``sites.toml``."""

    code: str
    name: str
    domains: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @property
    def site(self) -> Site:
        return Site(self.code, self.name)


def _fold(text: str) -> str:
    """Lower case, no accents, every run of non-alphanumerics one space,
    letters and digits split ("SAMU31" -> "samu 31"), so that "CH de Brécy",
    "ch de brecy" and "CH-de-Brecy" compare equal."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


@dataclass(frozen=True)
class Sites(Mapping[str, SiteEntry]):
    """The sites in file order, looked up by code."""

    entries: tuple[SiteEntry, ...] = ()

    def __getitem__(self, code: str) -> SiteEntry:
        for entry in self.entries:
            if entry.code == code:
                return entry
        raise KeyError(code)

    def __iter__(self) -> Iterator[str]:
        return (e.code for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def resolve(self, from_addr: str | None, text: str | None = "") -> Site | None:
        return resolve_site(from_addr, text, self)

    def name_of(self, code: str | None) -> str | None:
        entry = self.get(code) if code else None
        return entry.name if entry is not None else None


def resolve_site(from_addr: str | None, text: str | None, sites: Sites) -> Site | None:
    """The site of a mail, or ``None`` when it cannot be told.

    1. The sender's domain: an entry's domain matches itself and every
       subdomain (``ch-valmont.test`` covers ``dsi.ch-valmont.test``); the
       longest matching domain wins.
    2. Otherwise the ``words`` of the entries in ``text`` (pass what the
       person wrote: new text and signature, not the quoted thread). Matching
       ignores case, accents and punctuation, on whole words. When several
       sites are named, the one named LAST wins: signatures come at the end,
       and a mention such as "renvoi vers le SAMU 73" usually comes earlier.
    """
    domain = (from_addr or "").strip().lower().rpartition("@")[2].rstrip(".>")
    if domain:
        best: tuple[int, SiteEntry] | None = None
        for entry in sites.entries:
            for d in entry.domains:
                if (domain == d or domain.endswith("." + d)) and (best is None or len(d) > best[0]):
                    best = (len(d), entry)
        if best is not None:
            return best[1].site
    folded = f" {_fold((text or '')[:_MAX_WORDS_TEXT])} "
    if not folded.strip():
        return None
    found: tuple[int, int, SiteEntry] | None = None
    for entry in sites.entries:
        for word in entry.words:
            needle = f" {_fold(word)} "
            pos = folded.rfind(needle)
            if pos < 0:
                continue
            key = (pos + len(needle), len(needle))   # last-ending, then longest
            if found is None or key > found[:2]:
                found = (*key, entry)
    return found[2].site if found is not None else None


def site_label(code: str | None, name: str | None = None) -> str:
    """``"VAL – CH de Valmont"``, or ``"? – site inconnu"``."""
    if not code:
        return f"{UNKNOWN_CODE} – {UNKNOWN_NAME}"
    return f"{code} – {name}" if name else code


# ----------------------------------------------------------------------------
# reading and checking the file

def _suggest(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


def _strings(source: str, code: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleFileError(source, code, key, 'must be a list of texts in quotes, e.g. ["a", "b"]')
    out = tuple(v.strip() for v in value)
    if any(not v for v in out):
        raise RuleFileError(source, code, key, "holds an empty text")
    return out


def parse_sites(text: str, source: str = SITES_FILE) -> Sites:
    """Validate the text of ``sites.toml``; raises ``RuleFileError``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column; a code written twice lands here too.
        raise RuleFileError(source, "", "", f"not valid TOML: {exc}") from None
    entries: list[SiteEntry] = []
    domain_owner: dict[str, str] = {}
    word_owner: dict[str, str] = {}
    for code, table in doc.items():
        if not _CODE.match(code):
            raise RuleFileError(source, code, "", "a site code is exactly 3 capital letters, e.g. [VAL]")
        if not isinstance(table, dict):
            raise RuleFileError(source, code, "", f"must be a table: write [{code}] on its own line, then its keys")
        for key in table:
            if key not in SITE_KEYS:
                raise RuleFileError(source, code, key, "unknown key" + _suggest(key, SITE_KEYS))
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RuleFileError(source, code, "name", 'needs a name in quotes, e.g. name = "CH de Valmont"')
        domains = tuple(d.lower().rstrip(".") for d in _strings(source, code, "domains", table.get("domains", [])))
        words = _strings(source, code, "words", table.get("words", []))
        if not domains and not words:
            raise RuleFileError(source, code, "domains", "give at least one mail domain or one signature word")
        for d in domains:
            if "@" in d or not _DOMAIN.match(d):
                raise RuleFileError(source, code, "domains",
                                    f"{d!r} is not a mail domain (write the part after @, e.g. ch-valmont.fr)")
            if d in domain_owner:
                raise RuleFileError(source, code, "domains", f"{d!r} is already the domain of [{domain_owner[d]}]")
            domain_owner[d] = code
        for w in words:
            folded = _fold(w)
            if not folded:
                raise RuleFileError(source, code, "words", f"{w!r} has no letter or digit")
            if folded in word_owner and word_owner[folded] != code:
                raise RuleFileError(source, code, "words",
                                    f"{w!r} already names [{word_owner[folded]}]: a signature word must name one site")
            word_owner[folded] = code
        entries.append(SiteEntry(code, name.strip(), domains, words))
    return Sites(tuple(entries))


def load_sites(folder: Path | str) -> Sites:
    """Read ``<folder>/sites.toml``; an absent file gives no site (every
    ticket then shows "site inconnu")."""
    path = Path(folder) / SITES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Sites()
    except UnicodeDecodeError as exc:
        raise RuleFileError(SITES_FILE, "", "", f"not UTF-8 text: {exc}") from None
    return parse_sites(text, SITES_FILE)
