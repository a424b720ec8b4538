"""HTML mail bodies as plain text (pure; part of the parsing layer).

Role: turn the ``text/html`` part of a mail into readable lines for the quote
splitter and the triage, with a real HTML renderer (inscriptis, on lxml), not
a tag-stripping regex:

* tables become one line per row; a two-cell row (Outlook's "label | value"
  grids, e.g. ``Début de l'incident | 04/11/2026 à 03h40``) becomes
  ``label : value`` so that field extraction reads it like a typed form,
  wider rows keep their cells separated by `` | ``;
* ``<blockquote>`` (Gmail ``gmail_quote``, Thunderbird ``type=cite``, Apple
  Mail) is rendered with ``> `` prefixes, one per nesting level, so the quote
  splitter sees the same shape as in a text/plain reply;
* ``<style>``/``<script>``/``<head>`` produce nothing; images and link
  targets are not shown (a mail's HTML is never fetched or rendered).

Import rule: standard library, ``inscriptis`` and ``lxml`` only (no I/O).
"""

from __future__ import annotations

import html as _html
import re

from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from lxml import etree
from lxml.html import document_fromstring

__all__ = ["HtmlConversionError", "html_to_text"]

# A character that never occurs in mail text, used by inscriptis between the
# cells of a table row; rows are rebuilt from it afterwards.
_CELL = "\u241f"
_CONFIG = ParserConfig(
    css=CSS_PROFILES["strict"],
    display_images=False,
    display_links=False,
    annotation_rules={"blockquote": ["quote"]},
    table_cell_separator=_CELL,
)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_TAG = re.compile(r"<[^>]{0,2000}>")
_SCRIPTS = re.compile(r"(?is)<(style|script|head)\b.*?</\1\s*>")
_BLANKS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0\u2007\u202f]+")


class HtmlConversionError(ValueError):
    """The HTML could not be rendered by inscriptis (the caller falls back)."""


def html_to_text(markup: str) -> str:
    """Render ``markup`` as plain text (see module docstring).

    Raises :class:`HtmlConversionError` when lxml/inscriptis cannot render it
    (e.g. absurd nesting); :func:`strip_tags` is the caller's fallback.
    """
    markup = _XML_DECL.sub("", markup, count=1).strip()
    if not markup:
        return ""
    try:
        tree = document_fromstring(markup)
    except (etree.ParserError, ValueError) as exc:
        try:
            tree = document_fromstring("<pre>" + _html.escape(markup) + "</pre>")
        except (etree.ParserError, ValueError):
            raise HtmlConversionError(str(exc)) from exc
    try:
        engine = Inscriptis(tree, _CONFIG)
        text = engine.get_text()
        quotes = [(a.start, a.end) for a in engine.get_annotations()]
    except RecursionError as exc:  # pathological nesting: thousands of <div>
        raise HtmlConversionError("HTML nested too deeply") from exc
    except Exception as exc:
        raise HtmlConversionError(f"{type(exc).__name__}: {exc}") from exc
    text = _mark_quotes(text, quotes)
    return _tidy(text)


def strip_tags(markup: str) -> str:
    """Last-resort HTML to text, used only when :func:`html_to_text` fails."""
    text = _SCRIPTS.sub(" ", markup)
    text = re.sub(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", "\n", text)
    text = _html.unescape(_TAG.sub(" ", text))
    return _tidy(text)


def _mark_quotes(text: str, spans: list[tuple[int, int]]) -> str:
    """Prefix every line inside ``<blockquote>`` spans with ``>`` per level."""
    out: list[str] = []
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        depth = sum(1 for a, b in spans if a < end and b > start) if line.strip() else 0
        if depth == 0 and not line.strip():
            # A blank line inside a quote stays quoted (keeps the block whole).
            depth = sum(1 for a, b in spans if a <= start < b)
        out.append(("> " * depth + line.strip()) if depth else _literal(line))
    return "\n".join(out)


def _literal(line: str) -> str:
    """A text line that begins with ">" but is not inside a <blockquote>
    (a "&gt;&gt; Commander" button): a zero-width space in front keeps the
    quote splitter from taking it for a quoted line."""
    return "\u200b" + line.lstrip() if line.lstrip().startswith(">") else line


def _row(line: str) -> str:
    cells = [c.strip() for c in line.split(_CELL)]
    cells = [c for c in cells if c]
    if len(cells) == 2:
        return f"{cells[0]} : {cells[1]}"
    return " | ".join(cells)


def _tidy(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        if _CELL in line:
            line = _row(line)
        line = _SPACES.sub(" ", line).rstrip()
        if line.lstrip().startswith(">"):
            line = line.lstrip()
        lines.append(line)
    text = "\n".join(lines).strip("\n")
    return _BLANKS.sub("\n\n", text)
