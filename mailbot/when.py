"""When did the incident begin? Finds `start_time` (triage policy §5).

Pure core module: standard library only (``re``, ``datetime``, ``zoneinfo``,
``unicodedata``); no I/O, no clock. The caller reads ``rules/dates.toml``
with ``tomllib``, hands the dict to :func:`load_date_rules`, and passes the
mail's ``Date`` as ``ref``. Every value is resolved in Europe/Paris local
time, whatever offset the Date header carries (phones and some webmails send
``+0000``; "7h40" in the text is still Paris time).

How it works:

1. The text is folded (lower case, accents removed, typographic apostrophes
   made plain) *character for character*, so offsets in the folded text are
   offsets in the original and ``StartTime.words`` can quote the mail.
2. One compiled regex finds the *atoms*: an explicit date ("16/11",
   "lundi 16 novembre", "2026-11-16"), a weekday, a day word ("hier"), a part
   of the day ("ce matin"), a time ("14h10", "8 h 30", "08:05", "4pm",
   "midi") or a duration ("depuis 10 minutes", "il y a une heure").
3. Neighbouring atoms joined by small words ("à", "vers", "around", ",")
   make one *expression* ("depuis samedi 14/11 vers 8h").
4. Each expression is resolved against ``ref`` and scored by the words
   around it: a checklist heading ("Date et heure de début :") beats a start
   word before it ("depuis", "since"), which beats a failure verb after it
   ("vers 14h le bandeau a planté"), then a bare deictic phrase ("ce matin
   vers 7h"), then a full date and time with no cue. A bare time a few words
   after a day ("ce matin, à la relève de 7h") takes that day. A recovery word ("c'est revenu vers 15h"), a planned or
   requested date, a test or phone-call time, or a date in the future
   disqualifies it. A bare time or date with nothing saying it is the start
   ("hotline appelée à 6h30", "le 16 novembre") is not taken.
5. The best score wins; on a tie, the first in the text. The subject is only
   read when the body says nothing.

A date with no time of day gives a date-only value ("2026-11-16"); when the
text says nothing about when it began, the answer is ``None`` (the mail's
own date is never used as a default).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.errors import RuleFileError

PARIS = ZoneInfo("Europe/Paris")

__all__ = ["DateRules", "StartTime", "find_start_time", "fold", "load_date_rules"]


# --------------------------------------------------------------------------
# Text folding


_FOLD_MAP = {
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'",
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ",
    "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2014": "-",
    "\u0153": "o",  # œ keeps one char to preserve offsets ("cœur" is not a date word)
}


def _fold_char(c: str) -> str:
    if c in _FOLD_MAP:
        return _FOLD_MAP[c]
    low = c.lower()
    if len(low) != 1:
        low = c
    return unicodedata.normalize("NFD", low)[0]


# One-to-one table for Latin scripts and punctuation: str.translate runs in C.
_FOLD_TABLE = {i: _fold_char(chr(i)) for i in range(0x250)}
_FOLD_TABLE.update({ord(k): v for k, v in _FOLD_MAP.items()})


def fold(text: str) -> str:
    """Lower-case, strip accents and unify apostrophes, keeping the length
    (one character in, one character out), so offsets stay valid."""
    return text.translate(_FOLD_TABLE)


# --------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class StartTime:
    """The start of the incident: ``value`` is ISO local time
    ("2026-11-16T09:40:00") or a date ("2026-11-16"); ``words`` the words of
    the mail it comes from; ``rule`` the rule that chose it (for traces)."""

    value: str
    words: str
    rule: str


@dataclass(frozen=True)
class _Part:
    name: str
    hour: int | None
    pm: bool
    night: bool


@dataclass(frozen=True)
class DateRules:
    """Compiled vocabulary of ``rules/dates.toml``. Build with
    :func:`load_date_rules`; immutable, safe to share."""

    source: str
    months: dict[str, int]
    weekdays: dict[str, int]
    weekday_next: frozenset[str]
    day_words: dict[str, int]
    parts: dict[str, _Part]            # folded word -> part
    standalone_parts: dict[str, _Part]
    det_this: frozenset[str]
    det_last: frozenset[str]
    time_words: dict[str, tuple[int, int]]
    duration_units: list[tuple[re.Pattern[str], int, bool]]
    duration_numbers: dict[str, int]
    start_gap_words: int
    recovery_window_words: int
    other_window_words: int
    clock_skew: dt.timedelta
    atom_re: re.Pattern[str] = field(repr=False)
    label_re: re.Pattern[str] = field(repr=False)
    start_re: re.Pattern[str] = field(repr=False)
    recovery_re: re.Pattern[str] = field(repr=False)
    other_re: re.Pattern[str] = field(repr=False)
    header_after_re: re.Pattern[str] = field(repr=False)
    start_after_re: re.Pattern[str] = field(repr=False)
    contrast_re: re.Pattern[str] = field(repr=False)
    # First word of a phrase -> the second words that may follow it (None in
    # the set: the phrase may be that word alone). Number words must be
    # followed by a unit. Lets the scanner skip the common "a", "la", "il"...
    triggers: dict[str, frozenset[str | None]] = field(repr=False, default_factory=dict)
    unit_starts: tuple[str, ...] = field(repr=False, default=())


_CUE_KEYS = ("labels", "start", "start_after", "recovery", "contrast", "other", "header_after")

_SECTIONS = {
    "months", "weekdays", "weekday_modifiers", "day_words", "parts_of_day",
    "part_determiners", "time_words", "durations", "cues", "limits",
}


def _phrase_re(phrase: str) -> str:
    """Regex (no groups) for one vocabulary phrase, folded; words separated by
    any spacing; trailing ``*`` = any word continuing the prefix."""
    p = fold(phrase.strip())
    star = p.endswith("*")
    if star:
        p = p[:-1]
    parts = [re.escape(w) for w in p.split()]
    body = r"\s+".join(parts)
    # Word boundaries only where the phrase starts/ends with a word character
    # (so "sent:" and "date :" still match).
    pre = r"(?<![\w])" if p[:1].isalnum() else ""
    if star:
        post = r"[\w'-]*"
    else:
        post = r"(?![\w])" if p[-1:].isalnum() else ""
    return pre + body + post


def _alt(phrases: Iterable[str]) -> str:
    """Alternation of phrases, longest first so "avant-hier" beats "hier"."""
    uniq = sorted({p for p in phrases}, key=lambda s: (-len(s), s))
    return "(?:" + "|".join(_phrase_re(p) for p in uniq) + ")" if uniq else "(?!)"


def _err(source: str, entry: str, key: str, msg: str) -> RuleFileError:
    return RuleFileError(source, entry, key, msg)


def _words_list(doc: dict, source: str, entry: str, key: str, required: bool = True) -> list[str]:
    val = doc.get(key)
    if val is None:
        if required:
            raise _err(source, entry, key, "missing list of words")
        return []
    if not isinstance(val, list):
        raise _err(source, entry, key, f"expected a list of strings, got {type(val).__name__}")
    out = []
    for i, w in enumerate(val):
        if not isinstance(w, str) or not w.strip() or w.strip() == "*":
            raise _err(source, entry, key, f"item {i + 1} must be a non-empty string, got {w!r}")
        out.append(w)
    return out


def _int_table(doc: dict, source: str, entry: str, lo: int, hi: int) -> dict[str, int]:
    val = doc.get(entry)
    if not isinstance(val, dict) or not val:
        raise _err(source, entry, "", "missing or empty table")
    out: dict[str, int] = {}
    for k, v in val.items():
        if not k.strip():
            raise _err(source, entry, k, "empty word")
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise _err(source, entry, k, f"expected an integer from {lo} to {hi}, got {v!r}")
        out[fold(k.strip())] = v
    return out


def load_date_rules(doc: dict[str, Any], source: str = "dates.toml") -> DateRules:
    """Validate the parsed ``dates.toml`` and compile it.

    Raises :class:`mailbot.errors.RuleFileError` naming the file, the entry
    and the key of the first mistake.
    """
    if not isinstance(doc, dict):
        raise _err(source, "", "", "expected a TOML table")
    for k in doc:
        if k not in _SECTIONS:
            raise _err(source, k, "", f"unknown section; expected one of {sorted(_SECTIONS)}")

    months = _int_table(doc, source, "months", 1, 12)
    weekdays = _int_table(doc, source, "weekdays", 1, 7)
    day_words = _int_table(doc, source, "day_words", -7, 7)

    wm = doc.get("weekday_modifiers", {})
    if not isinstance(wm, dict):
        raise _err(source, "weekday_modifiers", "", "expected a table")
    for k in wm:
        if k not in ("past", "next"):
            raise _err(source, "weekday_modifiers", k, "unknown key; expected 'past' or 'next'")
    wm_past = _words_list(wm, source, "weekday_modifiers", "past", required=False)
    wm_next = _words_list(wm, source, "weekday_modifiers", "next", required=False)

    pod = doc.get("parts_of_day")
    if not isinstance(pod, dict) or not pod:
        raise _err(source, "parts_of_day", "", "missing or empty table")
    parts: dict[str, _Part] = {}
    standalone: dict[str, _Part] = {}
    for name, spec in pod.items():
        entry = f"parts_of_day.{name}"
        if not isinstance(spec, dict):
            raise _err(source, entry, "", "expected a table")
        for k in spec:
            if k not in ("words", "standalone", "hour", "pm", "night"):
                raise _err(source, entry, k, "unknown key; expected words, standalone, hour, pm, night")
        hour = spec.get("hour")
        if hour is not None and (not isinstance(hour, int) or isinstance(hour, bool) or not 0 <= hour <= 23):
            raise _err(source, entry, "hour", f"expected an hour from 0 to 23, got {hour!r}")
        for flag in ("pm", "night"):
            if flag in spec and not isinstance(spec[flag], bool):
                raise _err(source, entry, flag, "expected true or false")
        part = _Part(name, hour, bool(spec.get("pm", False)), bool(spec.get("night", False)))
        ws = _words_list(spec, source, entry, "words", required=False)
        ss = _words_list(spec, source, entry, "standalone", required=False)
        if not ws and not ss:
            raise _err(source, entry, "words", "give at least one word (words or standalone)")
        for w in ws:
            parts[fold(w.strip())] = part
        for w in ss:
            standalone[fold(w.strip())] = part

    dets = doc.get("part_determiners", {})
    if not isinstance(dets, dict):
        raise _err(source, "part_determiners", "", "expected a table")
    for k in dets:
        if k not in ("this", "last"):
            raise _err(source, "part_determiners", k, "unknown key; expected 'this' or 'last'")
    det_this = _words_list(dets, source, "part_determiners", "this")
    det_last = _words_list(dets, source, "part_determiners", "last", required=False)

    tw = doc.get("time_words", {})
    if not isinstance(tw, dict):
        raise _err(source, "time_words", "", "expected a table")
    time_words: dict[str, tuple[int, int]] = {}
    for k, v in tw.items():
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v) if isinstance(v, str) else None
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise _err(source, "time_words", k, f"expected \"HH:MM\", got {v!r}")
        time_words[fold(k.strip())] = (int(m[1]), int(m[2]))

    dur = doc.get("durations")
    if not isinstance(dur, dict):
        raise _err(source, "durations", "", "missing table")
    for k in dur:
        if k not in ("before", "after", "units", "numbers"):
            raise _err(source, "durations", k, "unknown key; expected before, after, units, numbers")
    dur_before = _words_list(dur, source, "durations", "before")
    dur_after = _words_list(dur, source, "durations", "after", required=False)
    units_doc = dur.get("units")
    if not isinstance(units_doc, dict) or not units_doc:
        raise _err(source, "durations.units", "", "missing or empty table")
    units: list[tuple[re.Pattern[str], int, bool]] = []
    for k, v in units_doc.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise _err(source, "durations.units", k, f"expected a positive number of minutes, got {v!r}")
        needs_number = not (" " in k.strip() or "demi" in fold(k))
        units.append((re.compile(_phrase_re(k) + r"\Z"), v, needs_number))
    numbers = _int_table(dur, source, "numbers", 1, 1000) if "numbers" in dur else {}

    cues = doc.get("cues")
    if not isinstance(cues, dict):
        raise _err(source, "cues", "", "missing table")
    for k in cues:
        if k not in _CUE_KEYS:
            raise _err(source, "cues", k, f"unknown key; expected one of {', '.join(_CUE_KEYS)}")
    labels = _words_list(cues, source, "cues", "labels")
    start = _words_list(cues, source, "cues", "start")
    recovery = _words_list(cues, source, "cues", "recovery", required=False)
    other = _words_list(cues, source, "cues", "other", required=False)
    header_after = _words_list(cues, source, "cues", "header_after", required=False)
    start_after = _words_list(cues, source, "cues", "start_after", required=False)
    contrast = _words_list(cues, source, "cues", "contrast", required=False)

    lim = doc.get("limits", {})
    if not isinstance(lim, dict):
        raise _err(source, "limits", "", "expected a table")
    lim_keys = {"start_gap_words": 8, "recovery_window_words": 10,
                "other_window_words": 5, "clock_skew_minutes": 10}
    for k, v in lim.items():
        if k not in lim_keys:
            raise _err(source, "limits", k, f"unknown key; expected one of {sorted(lim_keys)}")
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 120:
            raise _err(source, "limits", k, f"expected an integer from 0 to 120, got {v!r}")
    limits = {**lim_keys, **lim}

    atom_re = _build_atom_re(months, weekdays, wm_past, wm_next, day_words, parts,
                             standalone, det_this, det_last, time_words,
                             dur_before, dur_after, list(units_doc), numbers)
    # Headings: the date follows right after, maybe past ":" / "-" / "le" /
    # "on" and table padding (an HTML table row "Début | 04/11/2026").
    label_re = re.compile(r"(?:^|(?<=[\W_]))" + _alt(labels)
                          + r"[\s:\-=>|*]*(?:(?:le|du|on|the|at)\s+)?\Z", re.DOTALL)

    phrases = [*months, *weekdays, *wm_past, *wm_next, *day_words, *parts, *standalone,
               *det_this, *det_last, *time_words, *dur_before, "premier"]
    follow: dict[str, set[str | None]] = {}
    for p in phrases:
        toks = re.findall(r"\w+", fold(p))
        if toks:
            follow.setdefault(toks[0], set()).add(toks[1] if len(toks) > 1 else None)
    unit_starts = tuple(sorted({re.findall(r"\w+", fold(u))[0] for u in units_doc}))
    for n in numbers:
        toks = re.findall(r"\w+", n)
        follow.setdefault(toks[0], set()).update(
            [toks[1]] if len(toks) > 1 else ["#unit"])
    for w in ("le", "du"):  # day-only "le 12"
        follow.setdefault(w, set()).add("#digit")
    triggers = {k: frozenset(v) for k, v in follow.items()}

    return DateRules(
        triggers=triggers,
        unit_starts=unit_starts,
        source=source,
        months=months,
        weekdays=weekdays,
        weekday_next=frozenset(fold(w) for w in wm_next),
        day_words=day_words,
        parts=parts,
        standalone_parts=standalone,
        det_this=frozenset(fold(w) for w in det_this),
        det_last=frozenset(fold(w) for w in det_last),
        time_words=time_words,
        duration_units=units,
        duration_numbers=numbers,
        start_gap_words=limits["start_gap_words"],
        recovery_window_words=limits["recovery_window_words"],
        other_window_words=limits["other_window_words"],
        clock_skew=dt.timedelta(minutes=limits["clock_skew_minutes"]),
        atom_re=atom_re,
        label_re=label_re,
        start_re=re.compile(_alt(start)),
        recovery_re=re.compile(_alt(recovery)),
        other_re=re.compile(_alt(other)),
        header_after_re=re.compile(_alt(header_after)),
        start_after_re=re.compile(_alt(start_after)),
        contrast_re=re.compile(_alt(contrast)),
    )


def _build_atom_re(months, weekdays, wm_past, wm_next, day_words, parts, standalone,
                   det_this, det_last, time_words, dur_before, dur_after, unit_words,
                   numbers) -> re.Pattern[str]:
    month = _alt(months)
    wday = _alt(weekdays)
    wmod = _alt(list(wm_past) + list(wm_next))
    dets = _alt(list(det_this) + list(det_last))
    partw = _alt(parts)
    sole = _alt(standalone)
    tword = _alt(time_words)
    numw = _alt(numbers) if numbers else "(?!)"
    unit = _alt(unit_words)
    hm_suffix = r"(?:\s*(?P<half>et\s+demie?|et\s+quart|and\s+a\s+half))?"
    ampm = r"(?P<ampm>a\.?\s?m\b\.?|p\.?\s?m\b\.?)"
    pod_suffix = (r"(?:\s+(?P<podsfx>du\s+matin|du\s+soir|de\s+l'apres-midi|de\s+l'apres\s+midi"
                  r"|in\s+the\s+morning|in\s+the\s+evening|in\s+the\s+afternoon))?")
    alts = [
        # 2026-11-16 (ISO, maybe followed by T09:40 handled as a time atom)
        r"(?P<iso>(?<![\d/.-])(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})(?![\d/-]))",
        # 16/11, 16/11/2026, 16/11/26, 16.11.2026, 16-11-2026
        (r"(?P<num>(?<![\w/.,:-])(?P<nd>\d{1,2})(?:/(?P<nm>\d{1,2})(?:/(?P<ny>\d{4}|\d{2}))?"
         r"|(?P<sep>[.-])(?P<nm2>\d{1,2})(?P=sep)(?P<ny2>\d{4}))(?![\d/]|[.,]\d))"),
        # lundi 16 novembre 2026, le 1er novembre, 3 nov.
        r"(?P<txt>(?<![\w])(?P<td>\d{1,2}|1er|premier)(?:er|st|nd|rd|th)?(?:\s+of)?\s+(?P<tm>"
        + month + r")\.?(?:\s+(?P<ty>\d{4}))?(?![\w]))",
        # "depuis le 12": a day of the current or previous month (only taken
        # after a start word, and never 15/17/18 without a time: those are lines)
        r"(?P<donly>(?<![\w])(?:le|du)\s+(?P<dod>\d{1,2}|1er)(?!\s*(?:h\b|heures?|:|/|\.\d|\d|%|[a-z])))",
        # Nov 18, November 18th, 2026
        r"(?P<etxt>(?<![\w])(?P<etm>" + month + r")\.?\s+(?P<etd>\d{1,2})(?:st|nd|rd|th)?"
        r"(?:,?\s+(?P<ety>\d{4}))?(?![\w:]))",
        # durations: "depuis 10 minutes", "il y a une heure", "20 minutes ago"
        r"(?P<dur>(?P<durpre>" + _alt(dur_before) + r")\s+(?:(?:environ|about|around|quasiment|presque|plus\s+de|over)\s+)?"
        r"(?P<durn>\d{1,3}|" + numw + r")?\s*(?P<duru>" + unit + r"))",
        r"(?P<dura>(?<![\w])(?P<duran>\d{1,3}|" + numw + r")\s*(?P<durau>" + unit + r")\s+"
        + _alt(dur_after) + r")",
        # times: 14h10, 8h, 8 h 30, 14 heures 30, 08:05, 4pm, 6:15am, at 7.40
        r"(?P<hh>(?<![\w.,:/-])(?P<hhh>\d{1,2})\s?(?:h|heures?|\s?o'clock)(?:\s?(?P<hhm>\d{2})(?!\d))?(?![a-z])"
        + hm_suffix + pod_suffix + r")",
        r"(?P<col>(?<![\w.,:/-])(?P<colh>\d{1,2}):(?P<colm>\d{2})(?::\d{2})?(?!\d|:\d)\s?(?:"
        + ampm.replace("ampm", "campm") + r")?)",
        r"(?P<ap>(?<![\w.,:/-])(?P<aph>\d{1,2})\s?" + ampm + r")",
        r"(?P<dot>(?:(?<=\bat\s)|(?<=\baround\s)|(?<=\bvers\s)|(?<=\babout\s))(?P<doth>\d{1,2})\.(?P<dotm>\d{2})(?![\d.]))",
        r"(?P<tword>(?<![\w-])" + tword + r"(?![\w-]))",
        # ce matin, cette nuit, last night, lundi matin (part after a weekday
        # is found as a bare part and joined), tonight, at lunchtime
        r"(?P<pod>(?<![\w-])(?:(?P<det>" + dets + r")\s+)?(?P<podw>" + partw + r")(?![\w-]))",
        r"(?P<sole>(?<![\w-])" + sole + r"(?![\w-]))",
        # weekdays: "lundi", "lundi dernier", "last Monday", "jeudi prochain"
        r"(?P<wd>(?<![\w])(?:(?P<wpre>" + wmod + r")\s+)?(?P<wdn>" + wday + r")\.?"
        r"(?:\s+(?P<wpost>" + wmod + r"))?(?![\w]))",
        r"(?P<dw>(?<![\w-])" + _alt(day_words) + r"(?![\w-]))",
    ]
    return re.compile("|".join(alts))


# --------------------------------------------------------------------------
# Atoms and expressions


@dataclass
class _Expr:
    start: int
    end: int
    date: dt.date | None = None          # explicit calendar date
    day_only: dt.date | None = None      # "le 12": day of month, month guessed
    weekday: int | None = None
    weekday_next: bool = False
    day_offset: int | None = None
    part: _Part | None = None
    part_det: str | None = None           # "this" | "last" | None (after a day) | "sole"
    time: tuple[int, int] | None = None
    pm_hint: bool | None = None           # am/pm said with the time
    duration: int | None = None           # minutes
    duration_cued: bool = False           # "depuis 10 minutes" (a state) vs "il y a 10 minutes" (an event)
    kinds: list[str] = field(default_factory=list)

    def slot_free(self, kind: str) -> bool:
        groups = {
            "date": ("date", "dayonly"), "dayonly": ("date", "dayonly"), "weekday": ("weekday", "day"), "day": ("day", "weekday"),
            "part": ("part",), "time": ("time",), "duration": ("duration",),
        }
        if "duration" in self.kinds or kind == "duration":
            return False
        return not any(k in self.kinds for k in groups[kind])


_TOKEN_RE = re.compile(r"\w+")

# Emergency numbers that read like days: "depuis le 15" is the line.
_LINE_NUMBERS = frozenset({15, 17, 18})

# Prefixes after which a number of "heures" is a clock time ("depuis 14 heures").
_CLOCK_PREFIX_RE = re.compile(r"depuis|since|a\s+partir\s+de|from")

_CONNECTOR_RE = re.compile(
    r"[\s,()\-:]*(?:(?:a|vers|aux\s+alentours\s+de|autour\s+de|environ|le|du|de|at|around|about|"
    r"approx\.?|approximately|on|the|of|pile|precises?|t|en|in|dans\s+la|dans\s+l'|des|from)"
    r"(?![\w])[\s,()\-:]*){0,3}",
)


def _year_for(month: int, day: int, ref_date: dt.date) -> dt.date | None:
    """A day and month with no year: the occurrence nearest the mail's day."""
    best = None
    for y in (ref_date.year - 1, ref_date.year, ref_date.year + 1):
        try:
            d = dt.date(y, month, day)
        except ValueError:
            continue
        if best is None or abs((d - ref_date).days) < abs((best - ref_date).days):
            best = d
    return best


def _make_date(y: int | None, m: int, d: int, ref_date: dt.date) -> dt.date | None:
    if y is None:
        return _year_for(m, d, ref_date)
    if y < 100:
        y += 2000
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _atom(m: re.Match[str], rules: DateRules, ref_date: dt.date) -> tuple[str, dict] | None:
    """Classify one regex match as (kind, values); None when not a date."""
    g = m.groupdict()
    if g["iso"]:
        d = _make_date(int(g["iy"]), int(g["im"]), int(g["id"]), ref_date)
        return ("date", {"date": d}) if d else None
    if g["num"]:
        day = int(g["nd"])
        mon = int(g["nm"] or g["nm2"])
        yr = g["ny"] or g["ny2"]
        if mon > 12 and day <= 12:       # US order (11/18/2026) from English clients
            day, mon = mon, day
        d = _make_date(int(yr) if yr else None, mon, day, ref_date) if 1 <= mon <= 12 else None
        return ("date", {"date": d}) if d else None
    if g["txt"]:
        td = g["td"]
        day = 1 if td in ("1er", "premier") else int(td)
        mon = rules.months[_norm_ws(g["tm"])]
        d = _make_date(int(g["ty"]) if g["ty"] else None, mon, day, ref_date)
        return ("date", {"date": d}) if d else None
    if g["donly"]:
        day = 1 if g["dod"] == "1er" else int(g["dod"])
        if not 1 <= day <= 31:
            return None
        d = ref_date.replace(day=1)
        if day > ref_date.day:
            d = (d - dt.timedelta(days=1)).replace(day=1)
        try:
            return ("dayonly", {"day_only": d.replace(day=day)})
        except ValueError:
            return None
    if g["etxt"]:
        mon = rules.months[_norm_ws(g["etm"])]
        d = _make_date(int(g["ety"]) if g["ety"] else None, mon, int(g["etd"]), ref_date)
        return ("date", {"date": d}) if d else None
    if g["dur"] or g["dura"]:
        n_txt = g["durn"] if g["dur"] else g["duran"]
        u_txt = _norm_ws(g["duru"] if g["dur"] else g["durau"])
        unit = None
        for pat, minutes, needs in rules.duration_units:
            if pat.match(u_txt):
                unit = (minutes, needs)
                break
        if unit is None:
            return None
        if n_txt is None:
            if unit[1]:
                return None
            n = 1
        elif n_txt.isdigit():
            n = int(n_txt)
        else:
            n = rules.duration_numbers.get(_norm_ws(n_txt), 0)
        if n <= 0:
            return None
        return ("duration", {"duration": n * unit[0]})
    if g["hh"]:
        h = int(g["hhh"])
        mi = int(g["hhm"]) if g["hhm"] else 0
        if g["half"]:
            mi = 15 if "quart" in g["half"] else 30
        if h > 23 or mi > 59:
            return None
        pm = None
        if g["podsfx"]:
            pm = not ("matin" in g["podsfx"] or "morning" in g["podsfx"])
        return ("time", {"time": (h, mi), "pm_hint": pm})
    if g["col"]:
        h, mi = int(g["colh"]), int(g["colm"])
        if h > 23 or mi > 59:
            return None
        pm = None
        if g["campm"]:
            pm = g["campm"].startswith("p")
        return ("time", {"time": (h, mi), "pm_hint": pm})
    if g["ap"]:
        h = int(g["aph"])
        if not 1 <= h <= 12:
            return None
        return ("time", {"time": (h, 0), "pm_hint": g["ampm"].startswith("p")})
    if g["dot"]:
        h, mi = int(g["doth"]), int(g["dotm"])
        if h > 23 or mi > 59:
            return None
        return ("time", {"time": (h, mi), "pm_hint": None})
    if g["tword"]:
        return ("time", {"time": rules.time_words[_norm_ws(g["tword"])], "pm_hint": None})
    if g["pod"]:
        det = g["det"]
        det_kind = None
        if det:
            det_kind = "last" if _norm_ws(det) in rules.det_last else "this"
        word = _norm_ws(g["podw"])
        if det_kind is None and word in rules.standalone_parts:
            return ("part", {"part": rules.standalone_parts[word], "part_det": "sole"})
        return ("part", {"part": rules.parts[word], "part_det": det_kind})
    if g["sole"]:
        return ("part", {"part": rules.standalone_parts[_norm_ws(g["sole"])], "part_det": "sole"})
    if g["wd"]:
        mods = {_norm_ws(x) for x in (g["wpre"], g["wpost"]) if x}
        return ("weekday", {"weekday": rules.weekdays[_norm_ws(g["wdn"])],
                            "weekday_next": bool(mods & rules.weekday_next)})
    if g["dw"]:
        return ("day", {"day_offset": rules.day_words[_norm_ws(g["dw"])]})
    return None


def _norm_ws(s: str) -> str:
    return " ".join(s.split())


def _expressions(ft: str, rules: DateRules, ref_date: dt.date) -> list[_Expr]:
    exprs: list[_Expr] = []
    cur: _Expr | None = None
    pos = 0
    triggers = rules.triggers
    # Try the big regex only where an atom can begin (a digit or the first
    # word of a vocabulary phrase): ten times faster than re.search over
    # every position of the text.
    for tok in _TOKEN_RE.finditer(ft):
        t0 = tok.start()
        if t0 < pos:
            continue
        word = tok[0]
        if not word[0].isdigit():
            nexts = triggers.get(word)
            if nexts is None:
                continue
            if None not in nexts:
                nm = _TOKEN_RE.search(ft, tok.end())
                nxt = nm[0] if nm else ""
                if nxt not in nexts and not ("#unit" in nexts and nxt.startswith(rules.unit_starts)) \
                        and not ("#digit" in nexts and nxt[:1].isdigit()):
                    continue
        m = rules.atom_re.match(ft, t0)
        if m is None:
            continue
        pos = m.end()
        if m["dur"] and m["durn"] and m["durn"].isdigit() and _CLOCK_PREFIX_RE.fullmatch(m["durpre"]):
            # "depuis 9 heures (15)" is a time of day, not nine hours: read
            # the number again as a time.
            m2 = rules.atom_re.match(ft, m.start("durn"))
            if m2 is not None and m2["hh"]:
                m, pos = m2, m2.end()
        a = _atom(m, rules, ref_date)
        if a is None:
            continue
        kind, vals = a
        if kind == "duration":
            vals["duration_cued"] = bool(rules.start_re.fullmatch(_norm_ws(m["durpre"] or "")))
        if cur is not None and cur.slot_free(kind) and _CONNECTOR_RE.fullmatch(ft, cur.end, m.start()):
            pass
        else:
            cur = _Expr(m.start(), m.end())
            exprs.append(cur)
        cur.end = m.end()
        cur.kinds.append(kind)
        for k, v in vals.items():
            setattr(cur, k, v)
    return exprs


# --------------------------------------------------------------------------
# Resolution


def _resolve(e: _Expr, refl: dt.datetime, rules: DateRules) -> tuple[dt.date, tuple[int, int] | None] | None:
    """(date, time or None) in Paris local time, or None when unresolvable."""
    today = refl.date()
    if e.duration is not None:
        start = refl.replace(second=0, microsecond=0) - dt.timedelta(minutes=e.duration)
        if e.duration >= 1440:
            return start.date(), None
        return start.date(), (start.hour, start.minute)

    time = e.time
    part = e.part
    if time is None and part is not None and part.hour is not None:
        time = (part.hour, 0)
    if time is not None:
        h, mi = time
        pm = e.pm_hint
        if pm is None and part is not None and part.pm and h < 12 and not (part.night):
            pm = True
        if pm is True and h < 12:
            h += 12
        elif pm is False and h == 12:
            h = 0
        time = (h, mi)

    date: dt.date | None = None
    if e.date is not None:
        date = e.date
    elif e.day_only is not None:
        if e.time is None and e.day_only.day in _LINE_NUMBERS:
            return None
        date = e.day_only
    elif e.weekday is not None:
        back = (today.isoweekday() - e.weekday) % 7 or 7
        date = today - dt.timedelta(days=back)
        if e.weekday_next:
            date = today + dt.timedelta(days=(e.weekday - today.isoweekday()) % 7 or 7)
    elif e.day_offset is not None:
        date = today + dt.timedelta(days=e.day_offset)
    elif part is not None and e.part_det is not None:
        if part.night:
            # "cette nuit" / "last night": the night that ended this morning;
            # in a mail written in the evening, the night now starting.
            morning = today if refl.hour < 18 else today + dt.timedelta(days=1)
            if time is None:
                date = min(morning, today)
            else:
                date = morning if time[0] < 12 else morning - dt.timedelta(days=1)
        elif e.part_det == "last":
            date = today - dt.timedelta(days=1)
        else:
            date = today
    elif part is not None:
        date = today  # "depuis le début de l'après-midi": scored only with a start word
    if part is not None and part.night and date is not None and e.day_offset is not None and time is not None and time[0] < 12:
        date = date + dt.timedelta(days=1)  # "hier dans la nuit vers 2h"

    if date is None:
        if time is None:
            return None
        # A time alone is on the mail's day, unless later than the mail:
        # then the day before ("depuis 23h" in a mail sent at 00:20).
        date = today
        t = dt.datetime.combine(today, dt.time(*time))
        if t > refl.replace(tzinfo=None) + rules.clock_skew:
            date = today - dt.timedelta(days=1)
    return date, time


# --------------------------------------------------------------------------
# Scoring


_BOUNDARY_RE = re.compile(r"[.!?;…](?=\s|$)|\n\s*\n|\n(?=\s*[-*•\d])")
_WORD_RE = re.compile(r"\w+(?:[.,'/:-]\w+)*")  # "4.12", "l'heure", "16/11" are one word


def _last_words_start(s: str, n: int) -> int:
    """Offset in s where its last n words begin."""
    if n <= 0:
        return len(s)
    starts = [m.start() for m in _WORD_RE.finditer(s)]
    return starts[-n] if len(starts) >= n else 0


def _sentence_start(ft: str, pos: int, floor: int) -> int:
    start = floor
    for m in _BOUNDARY_RE.finditer(ft, floor, pos):
        start = m.end()
    return start


def _score(ft: str, e: _Expr, prev_end: int, rules: DateRules) -> tuple[float, str] | None:
    """Score of an expression as the start of the problem, with the rule
    name; None when disqualified."""
    # Quoted-reply header on the same line ("Le 12 nov. à 09:14, X a écrit :").
    line_end = ft.find("\n", e.end)
    line_end = len(ft) if line_end < 0 else line_end
    if rules.header_after_re.search(ft, e.end, min(line_end, e.end + 120)):
        return None

    sent = _sentence_start(ft, e.start, max(0, e.start - 400))
    before = ft[sent:e.start]
    # Recovery words shortly before in the sentence disqualify, unless a
    # "mais"/"but" comes after them ("c'était revenu, mais depuis 9h ...").
    rec_zone = before[_last_words_start(before, rules.recovery_window_words):]
    for cm in rules.contrast_re.finditer(rec_zone):
        rec_zone = rec_zone[cm.end():]
    if rules.recovery_re.search(rec_zone):
        return None

    # Checklist heading right before the date (may sit on the previous line
    # of a table or form).
    head_from = max(prev_end, e.start - 80)
    if rules.label_re.search(ft[head_from:e.start]):
        return 3.0, "label"

    near_from = max(sent, prev_end)
    near = ft[near_from:e.start]
    cue_zone_start = _last_words_start(near, rules.start_gap_words)
    cue = None
    for cm in rules.start_re.finditer(near, cue_zone_start):
        cue = cm
    after_cue = near[cue.end():] if cue else near
    other_zone = after_cue[_last_words_start(after_cue, rules.other_window_words):]
    if not e.duration_cued and rules.other_re.search(other_zone):
        return None

    if e.duration is not None:
        return 2.0, "duration"
    if cue is not None:
        return 2.0, "start-cue"
    # A date with no word of its own: a failure verb right after it in the
    # same sentence ("Vers 14h le bandeau a planté", "At 9:10 calls stopped").
    sent_end = _sentence_end(ft, e.end)
    after = ft[e.end:sent_end]
    after = after[:_first_words_end(after, rules.start_gap_words)]
    sm = rules.start_after_re.search(after)
    if sm and not rules.other_re.search(after, 0, sm.start()):
        return 1.5, "start-cue-after"
    if e.day_only is not None and e.date is None:
        return None  # "le 12" alone is too vague without a start word
    deictic = e.day_offset is not None or (e.part is not None and e.part_det is not None)
    if deictic:
        return (1.0 if e.time is not None else 0.8), "deictic"
    if e.time is not None and (e.date is not None or e.weekday is not None or e.day_only is not None):
        return 0.5, "explicit-date-time"
    return None


def _sentence_end(ft: str, pos: int) -> int:
    m = _BOUNDARY_RE.search(ft, pos, pos + 300)
    return m.start() if m else min(len(ft), pos + 300)


def _first_words_end(s: str, n: int) -> int:
    """Offset in s where its first n words end."""
    end = 0
    for i, m in enumerate(_WORD_RE.finditer(s)):
        if i >= n:
            break
        end = m.end()
    return end


def _anchor(ft: str, prev: _Expr | None, e: _Expr, rules: DateRules) -> _Expr | None:
    """When ``e`` is a bare time and ``prev`` a day with no time a few words
    before it in the same sentence, give ``e`` that day; returns ``prev``."""
    if prev is None or e.kinds != ["time"] or prev.time is not None or prev.duration is not None:
        return None
    if prev.date is None and prev.weekday is None and prev.day_offset is None \
            and prev.day_only is None and (prev.part is None or prev.part_det is None):
        return None
    gap = ft[prev.end:e.start]
    if _BOUNDARY_RE.search(gap) or len(_WORD_RE.findall(gap)) > 6 or rules.other_re.search(gap) \
            or rules.contrast_re.search(gap):
        return None
    for name in ("date", "day_only", "weekday", "weekday_next", "day_offset", "part", "part_det"):
        setattr(e, name, getattr(prev, name))
    e.kinds = prev.kinds + e.kinds
    return prev


def _format(date: dt.date, time: tuple[int, int] | None) -> str:
    if time is None:
        return date.isoformat()
    return f"{date.isoformat()}T{time[0]:02d}:{time[1]:02d}:00"


def _best(text: str, refl: dt.datetime, rules: DateRules) -> StartTime | None:
    ft = fold(text)
    best: tuple[float, int, StartTime] | None = None
    prev_end = 0
    prev: _Expr | None = None
    prev_score: float | None = None
    for e in _expressions(ft, rules, refl.date()):
        anchor = _anchor(ft, prev, e, rules) if prev_score is not None else None
        scored = _score(ft, e, prev_end, rules)
        if anchor is not None and scored is not None:
            # "ce matin, à la prise de poste de 7h": the day comes from the
            # phrase just before, and so does the start word.
            scored = (max(scored[0], (prev_score or 0.0) + 0.1), scored[1] + "+anchor")
            e.start = prev.start
        prev_end = e.end
        prev, prev_score = e, (scored[0] if scored else None)
        if scored is None:
            continue
        res = _resolve(e, refl, rules)
        if res is None:
            continue
        date, time = res
        # A start time is in the past: a coming date is planned or requested.
        if time is None:
            if date > refl.date():
                continue
        elif dt.datetime.combine(date, dt.time(*time)) > refl.replace(tzinfo=None) + rules.clock_skew:
            continue
        score, rule = scored
        if rule == "explicit-date-time" and (refl.date() - date).days > 31:
            continue  # a dated line of some old log or header, not this incident
        if best is None or score > best[0]:
            best = (score, e.start, StartTime(_format(date, time), text[e.start:e.end].strip(), rule))
    return best[2] if best else None


def find_start_time(text: str, ref: dt.datetime, rules: DateRules, subject: str = "") -> StartTime | None:
    """When the problem described in ``text`` began, or None.

    ``ref`` is the Date of the mail (or of the forwarded part the text comes
    from); naive values are taken as Paris time. The subject is read only
    when the text gives nothing.
    """
    if ref.tzinfo is None:
        ref = ref.replace(tzinfo=PARIS)
    refl = ref.astimezone(PARIS)
    found = _best(text or "", refl, rules)
    if found is None and subject:
        found = _best(subject, refl, rules)
    return found
