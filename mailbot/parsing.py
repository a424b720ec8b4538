"""Raw RFC 5322 bytes -> :class:`mailbot.model.ParsedMail` (the parsing layer).

Role: the only place that reads a mail's bytes. ``parse_message(raw)`` never
raises: a mail that cannot be read at all comes back as
``ParsedMail(error="…")`` (the caller quarantines it), a mail that is merely
odd comes back parsed, with what went wrong listed in ``defects``.

How the work is shared between libraries (measured on the dev corpora,
CPython 3.11, one core; see the report numbers in ``tests/test_wild_corpus.py``):

* MIME tree: the standard library's ``email`` parser with the ``compat32``
  policy (0.08 ms for a typical mail). ``policy.default`` costs 8x more and
  decodes some headers in quadratic time (210 KB encoded Subject: 340 ms), and
  ``mailparser.parse_from_bytes`` builds the same compat32 tree and then
  decodes every header twice (0.38 ms a mail, and it logs a warning for each
  part it does not know). So the tree is built once, here, and decoded by
  this module: charset recovery needs the raw bytes anyway.
* Addresses and the Date: mail-parser's hardened helpers, which the stdlib
  lacks: ``mailparser.utils.get_addresses`` (recovers display names that are
  themselves addresses, refuses ambiguous angle-addrs and Mailsploit-style
  encoded words, and says why) and ``mailparser.dates.parse_mail_date``
  (RFC 5322 §3.3/§4.3 date with diagnostics such as a wrong weekday or an
  impossible hour). Their diagnostics become ``defects``.
* HTML bodies: :mod:`mailbot.htmltext` (inscriptis).
* Quoted replies, forwards, signatures, disclaimers: :mod:`mailbot.quotes`.

Limits (:class:`Limits`): a message over ``max_bytes`` is not parsed: it
returns ``error="message too large…"`` with only its header fields filled
(so it can be logged and quarantined). Every other limit keeps what fits and
records a ``limit:…`` defect: header fields past ``max_headers`` are ignored,
header values are cut to ``max_header_length`` *before* decoding, MIME parts
past ``max_parts`` are skipped, multiparts nested deeper than ``max_depth``
are read as opaque leaves (they are rewritten before the stdlib parser can
recurse into them), text past ``max_text_chars`` is cut, and once
``time_budget`` seconds are spent the remaining optional work (further parts,
HTML rendering, forwarded messages) is skipped. The time budget is checked
between steps, it does not interrupt one: run the parser in a worker process
with a hard timeout for that (reliability §3.9).

Import rule: pure core. Standard library, ``mailparser`` (this is the only
module that imports it), :mod:`mailbot.model`, :mod:`mailbot.quotes`,
:mod:`mailbot.htmltext`. No I/O, no clock other than a monotonic stopwatch
for the time budget.
"""

from __future__ import annotations

import binascii
import codecs
import datetime as dt
import email.utils
import itertools
import re
import time
import unicodedata
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from mailbot.htmltext import HtmlConversionError, html_to_text, strip_tags
from mailbot.model import Attachment, ParsedMail, QuotedPart
from mailbot.quotes import PARIS, forward_hint_from_subject, split_body

__all__ = ["Limits", "decode_bytes", "decode_header_value", "parse_message"]


@dataclass(frozen=True)
class Limits:
    """Resource bounds for one mail (defaults from reliability §3.9)."""

    max_bytes: int = 25 * 1024 * 1024       # over it: error, headers only
    max_parts: int = 500                     # MIME parts walked
    max_depth: int = 20                      # multipart nesting followed
    max_headers: int = 1000                  # header fields kept in ``headers``
    max_header_length: int = 16 * 1024       # one raw header, cut before decoding
    max_header_value: int = 2000             # one decoded value kept in ``headers``
    max_addresses: int = 500                 # per To/Cc field
    max_references: int = 100                # newest ids kept from References
    max_text_chars: int = 200_000            # body_text
    max_html_chars: int = 2_000_000          # HTML rendered at most
    max_forwarded_messages: int = 10         # message/rfc822 parts read as mails
    keep_image_bytes: int = 10 * 1024 * 1024  # Attachment.content kept for images up to this
    keep_file_bytes: int = 1024 * 1024       # … and for other files up to this
    time_budget: float = 2.0                 # seconds, checked between steps


# --------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------

# Labels mail clients write that Python does not know, or knows as a subset.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",   # Outlook's name for Korean: Windows cp949
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "gb2312": "gb18030",         # GB2312/GBK labels carry GBK/GB18030 bytes
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",      # WHATWG: Latin-1 labels carry Windows-1252
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}
# Labels that say "I don't know": decode by sniffing.
_NO_CHARSET = {"", "unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined", "charset", "none"}
# 7-bit encodings: ASCII-looking bytes that still need their codec.
_SEVEN_BIT = {"utf-7", "iso2022_jp", "iso2022_kr", "iso2022_jp_2", "hz", "iso2022_jp_1", "iso2022_jp_ext"}
_SINGLE_BYTE_LATIN = {"cp1252", "iso8859-15", "iso8859-1"}


def _latin1_fill(err: UnicodeDecodeError) -> tuple[str, int]:
    """cp1252 leaves 0x81, 0x8D, 0x8F, 0x90, 0x9D undefined: keep them as
    their Latin-1 code points instead of failing."""
    chunk = err.object[err.start:err.end]
    return "".join(chr(b) for b in chunk), err.end


codecs.register_error("mailbot-latin1", _latin1_fill)  # type: ignore[arg-type]


def _codec(label: str | None) -> str | None:
    """Normalised Python codec name for a MIME charset label, None if none/unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*fr
    if name in _NO_CHARSET:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return ""  # a label, but not one we can decode


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str | None]:
    """Decode mail text bytes whatever the label says.

    Returns (text, defect or None). Order: 7-bit codecs as declared; pure
    ASCII as is; valid UTF-8 whenever it is valid (a Latin-1 label on UTF-8
    bytes is a common client bug, while Latin-1 French is never valid UTF-8
    by chance); the declared codec; else Windows-1252 (Latin-1 for its holes).
    """
    codec = _codec(declared)
    if codec in _SEVEN_BIT:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            return data.decode(codec, "replace"), f"charset: bytes invalid for {declared!r}"
    if data.isascii():
        return data.decode("ascii"), None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if codec in (None, "utf-8"):
            return text, None
        return text, f"charset: declared {declared!r} but the bytes are UTF-8"
    if codec == "utf-8":
        # Damaged UTF-8 (a cut multibyte sequence) vs Latin-1 bytes wrongly
        # labelled UTF-8: count the well-formed sequences.
        replaced = data.decode("utf-8", "replace")
        bad = replaced.count("\ufffd")
        good = len(_UTF8_MULTIBYTE.findall(data))
        if good >= 2 * bad:
            return replaced, "charset: invalid UTF-8 sequences replaced"
        return data.decode("cp1252", "mailbot-latin1"), (
            "charset: declared 'utf-8' but the bytes are Windows-1252/Latin-1"
        )
    if codec:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            if codec in _SINGLE_BYTE_LATIN:
                return data.decode("cp1252", "mailbot-latin1"), None
            return data.decode(codec, "replace"), f"charset: bytes invalid for {declared!r}"
    defect: str | None
    if codec == "":
        defect = f"charset: unknown charset {declared!r}"
    else:
        defect = None if declared is None else f"charset: {declared!r} gives no charset"
    return data.decode("cp1252", "mailbot-latin1"), defect


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?]{0,4000}?)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BIDI = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_SURROGATES = re.compile(r"[\udc80-\udcff]")


def _recover_8bit(text: str) -> str:
    """The compat32 parser keeps raw 8-bit header bytes as surrogate escapes
    (RFC 6532 UTF-8 headers, or bare Latin-1 from old clients): decode them."""
    if not _SURROGATES.search(text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    return decode_bytes(data, None)[0]


def _decode_word(charset: str, enc: str, payload: str) -> bytes:
    if enc in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            return payload.encode("ascii", "replace")
    # RFC 2047 §4.2 Q encoding: "_" is a space, =XX an octet.
    raw = payload.replace("_", " ").encode("utf-8", "surrogateescape")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def decode_header_value(value: str) -> str:
    """Unfold and decode one header value (RFC 5322 §2.2.3 unfolding,
    RFC 2047 encoded words, raw 8-bit recovered). Control characters,
    including CR/LF smuggled inside encoded words, become spaces; bidi
    overrides and zero-width characters are removed."""
    value = _FOLD.sub("", value)
    if "=?" not in value:
        out = _recover_8bit(value)
    else:
        pieces: list[str] = []
        pending: bytearray = bytearray()
        pending_cs: str | None = None
        pos = 0

        def flush() -> None:
            nonlocal pending, pending_cs
            if pending:
                pieces.append(decode_bytes(bytes(pending), pending_cs)[0])
            pending = bytearray()
            pending_cs = None

        for m in _ENCODED_WORD.finditer(value):
            between = value[pos:m.start()]
            # RFC 2047 §6.2: whitespace between adjacent encoded words is dropped.
            if between and not (between.isspace() and (pending or pieces and pos > 0)):
                flush()
                pieces.append(_recover_8bit(between))
            charset = m.group(1)
            data = _decode_word(charset, m.group(2), m.group(3))
            if pending and charset.lower() != (pending_cs or "").lower():
                flush()
            pending_cs = charset
            pending += data
            pos = m.end()
        flush()
        pieces.append(_recover_8bit(value[pos:]))
        out = "".join(pieces)
    out = _CONTROL.sub(" ", out.replace("\t", " "))
    out = _BIDI.sub("", out)
    return out.strip()


def _msg_ids(value: str) -> list[str]:
    ids = re.findall(r"<[^<>\s]{1,250}>", value)
    if not ids:
        token = value.strip()
        if token and " " not in token and "@" in token and len(token) <= 250:
            ids = [f"<{token.strip('<>')}>"]
    return ids


def _format_sender(name: str, addr: str) -> str:
    if name and addr:
        return f"{name} <{addr}>"
    return addr or name


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------

_MAGIC = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Outlook .msg / OLE compound file"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"%PDF", "a PDF file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip data"),
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
]
_HEADER_LINE = re.compile(rb"^(?:From |>From |[!-9;-~]{1,200}[ \t]*:)")
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def _not_a_mail(raw: bytes) -> str | None:
    head = raw[:4096]
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not an RFC 5322 message: {what}"
    if not head.strip():
        return "not an RFC 5322 message: blank input"
    if len(_BINARY.findall(head)) > max(8, len(head) // 50):
        return "not an RFC 5322 message: binary data"
    for line in head.splitlines():
        if line.strip():
            if not _HEADER_LINE.match(line):
                return "not an RFC 5322 message: the first line is not a header field"
            break
    return None


# --------------------------------------------------------------------------
# Structure bounds applied to the raw bytes before the stdlib parser
# --------------------------------------------------------------------------

_BOUNDARY_DECL = re.compile(rb"(?i)boundary\s*=")
_BOUNDARY_VALUE = re.compile(rb'(?i)boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')


def _bound_nesting(raw: bytes, limits: Limits, defects: list[str]) -> bytes:
    """Retype multiparts nested deeper than ``max_depth`` as opaque leaves.

    The stdlib feed parser recurses once per nesting level (1,000 levels:
    RecursionError). Only mails declaring more boundaries than the depth
    limit are scanned; the nesting is followed with the boundary lines.
    """
    if sum(1 for _ in itertools.islice(_BOUNDARY_DECL.finditer(raw), limits.max_depth + 1)) <= limits.max_depth:
        return raw
    lines = raw.split(b"\n")
    stack: list[bytes] = []
    too_deep: list[int] = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        low = line[:40].lower()
        if low.startswith(b"content-type:"):
            j = i + 1
            block = line
            while j < n and lines[j][:1] in (b" ", b"\t"):
                block += lines[j]
                j += 1
            if b"multipart/" in block.lower():
                m = _BOUNDARY_VALUE.search(block)
                if m:
                    stack.append(m.group(1) or m.group(2))
                    if len(stack) > limits.max_depth:
                        too_deep.append(i)
            i = j
            continue
        if line.startswith(b"--"):
            token = line[2:].rstrip()
            closing = token.endswith(b"--") and token[:-2] in stack
            name = token[:-2] if closing else token
            if name in stack:
                while stack and stack[-1] != name:
                    stack.pop()
                if closing and stack:
                    stack.pop()
        i += 1
    if not too_deep:
        return raw
    for idx in too_deep:
        lines[idx] = re.sub(rb"(?i)multipart/", b"application/x-mailbot-too-deep-", lines[idx], count=1)
    defects.append(f"limit:depth: MIME nested deeper than {limits.max_depth} levels, inner parts not read")
    return b"\n".join(lines)


def _bound_parts(raw: bytes, limits: Limits, defects: list[str]) -> bytes:
    """Cut a message with far too many boundary lines (thousands of parts)
    so the stdlib parser does not build them all."""
    keep = 2 * limits.max_parts
    if raw.count(b"\n--") <= 4 * limits.max_parts:
        return raw
    pos = -1
    for _ in range(keep):
        pos = raw.find(b"\n--", pos + 1)
        if pos < 0:
            return raw
    defects.append(f"limit:parts: more than {keep} MIME boundary lines, the rest not read")
    return raw[:pos + 1]


# --------------------------------------------------------------------------
# Walking the MIME tree
# --------------------------------------------------------------------------

# Machine parts of reports: listed in mime_types, not as attachments.
_REPORT_TYPES = {
    "message/delivery-status", "message/disposition-notification",
    "message/feedback-report", "text/rfc822-headers", "message/external-body",
    "message/global-delivery-status", "message/global-headers",
    "message/global-disposition-notification",
}
_PLACEHOLDER = re.compile(
    r"(this is a multi-?part message in mime format|your (e-?mail|mail) (client|program|reader) does not support|"
    r"(ce|le) message est au format html|to view this (e-?mail|message).{0,40}(html|browser)|"
    r"affich\w+ (ce|le) message.{0,40}navigateur)",
    re.IGNORECASE,
)


@dataclass
class _Ctx:
    limits: Limits
    start: float
    defects: list[str] = field(default_factory=list)
    parts_seen: int = 0
    out_of_time: bool = False
    forwarded_read: int = 0

    def time_left(self) -> bool:
        if not self.out_of_time and time.perf_counter() - self.start > self.limits.time_budget:
            self.out_of_time = True
            self.defects.append(f"limit:time: over {self.limits.time_budget:g} s, remaining work skipped")
        return not self.out_of_time

    def defect(self, text: str) -> None:
        if text not in self.defects and len(self.defects) < 200:
            self.defects.append(text)


@dataclass
class _Tree:
    mime_types: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    forwarded: list[QuotedPart] = field(default_factory=list)


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:  # noqa: BLE001 - a garbled header must not stop the walk
        return "application/octet-stream"
    return ctype if len(ctype) <= 100 else "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        value = part.get_param(name, header=header)
    except Exception:  # noqa: BLE001
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = email.utils.collapse_rfc2231_value(value)
    return value if isinstance(value, str) else None


def _filename(part: Message, ctx: _Ctx) -> str:
    name = _param(part, "filename", "content-disposition") or _param(part, "name")
    if not name:
        return ""
    if len(name) > ctx.limits.max_header_length:
        name = name[: ctx.limits.max_header_length]
    # RFC 2231 values arrive decoded; Outlook's RFC 2047 words inside the
    # quoted filename ("=?utf-8?B?…?=", not allowed there but universal) and
    # raw 8-bit names are decoded here.
    decoded = decode_header_value(name)
    clean = _BIDI.sub("", decoded)
    if clean != decoded:
        ctx.defect("attachment: bidi/zero-width characters removed from a file name")
    # A file name is never a path (RFC 2183 §2.3): keep the last component.
    clean = re.split(r"[\\/]", clean)[-1].strip().strip(".") or clean.strip()
    return clean[:255]


def _payload_bytes(part: Message, ctx: _Ctx) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:  # noqa: BLE001 - broken CTE, uuencode …
        ctx.defect(f"mime: payload not decodable ({type(exc).__name__})")
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return data


def _ctype_params(part: Message) -> dict[str, str]:
    try:
        params = part.get_params() or []
    except Exception:  # noqa: BLE001
        return {}
    out = {}
    for key, value in params[1:]:
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        out[str(key).lower()] = value if isinstance(value, str) else ""
    return out


def _part_text(part: Message, ctx: _Ctx) -> str:
    data = _payload_bytes(part, ctx)
    params = _ctype_params(part)
    text, defect = decode_bytes(data, params.get("charset"))
    if defect:
        ctx.defect(defect)
    if params.get("format", "").lower() == "flowed":
        text = _unflow(text, params.get("delsp", "").lower() == "yes")
    return text


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft line breaks (a line ending in a
    space), within the same quote depth; "-- " is never joined."""
    out: list[str] = []
    buf = ""
    buf_depth = -1
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content.removeprefix(" ")  # space-stuffing
        if buf and depth != buf_depth:
            out.append(">" * buf_depth + (" " if buf_depth else "") + buf)
            buf = ""
        soft = content.endswith(" ") and content != "-- "
        if soft:
            buf += content[:-1] if delsp else content
            buf_depth = depth
            continue
        buf += content
        out.append(">" * depth + (" " if depth else "") + buf)
        buf = ""
        buf_depth = -1
    if buf:
        out.append(">" * max(buf_depth, 0) + (" " if buf_depth > 0 else "") + buf)
    return "\n".join(out)


def _walk(root: Message, depth0: int, ctx: _Ctx, tree: _Tree) -> None:
    """Depth-first, iterative walk of ``root`` (no recursion on the tree)."""
    limits = ctx.limits
    stack: list[tuple[Message, int, str]] = [(root, depth0, "")]
    while stack:
        part, depth, parent = stack.pop()
        ctx.parts_seen += 1
        if ctx.parts_seen > limits.max_parts:
            ctx.defect(f"limit:parts: more than {limits.max_parts} MIME parts, the rest not read")
            return
        if ctx.parts_seen % 50 == 0 and not ctx.time_left():
            return
        ctype = _content_type(part)
        for d in getattr(part, "defects", ()) or ():
            ctx.defect(f"mime: {type(d).__name__}")
        payload = part.get_payload()
        if ctype.startswith("message/"):
            tree.mime_types.append(ctype)
            if (
                ctype in ("message/rfc822", "message/global", "message/news")
                and isinstance(payload, list) and payload and isinstance(payload[0], Message)
            ):
                # In a delivery report (RFC 3462) the enclosed message is the
                # one that bounced, usually ours: quoted, not forwarded.
                _forwarded_message(part, payload[0], depth, ctx, tree, forwarded=parent != "multipart/report")
            continue
        if isinstance(payload, list):
            if depth >= limits.max_depth:
                ctx.defect(f"limit:depth: MIME nested deeper than {limits.max_depth} levels, inner parts not read")
                continue
            stack.extend((p, depth + 1, ctype) for p in reversed(payload) if isinstance(p, Message))
            continue
        tree.mime_types.append(ctype)
        _leaf(part, ctype, ctx, tree, parent == "multipart/related", depth)


_DELIMITER_LINE = re.compile(r"^--(\S{1,70})[ \t\r]*$", re.MULTILINE)


def _reparse_with_found_boundary(part: Message, ctype: str, depth: int, ctx: _Ctx, tree: _Tree) -> bool:
    payload = part.get_payload()
    if not isinstance(payload, str):
        return False
    m = _DELIMITER_LINE.search(payload)
    if not m:
        return False
    boundary = m.group(1)
    boundary = boundary.removesuffix("--")
    head = f'Content-Type: {ctype}; boundary="{boundary}"\n\n'.encode()
    body = payload.encode("utf-8", "surrogateescape")
    sub = BytesParser(policy=compat32).parsebytes(head + body)
    children = sub.get_payload()
    if not isinstance(children, list) or not children:
        return False
    ctx.defect("mime: boundary recovered from the body")
    _walk(sub, depth + 1, ctx, tree)
    return True


def _leaf(part: Message, ctype: str, ctx: _Ctx, tree: _Tree, in_related: bool = False, depth: int = 0) -> None:
    limits = ctx.limits
    try:
        disposition = part.get_content_disposition()
    except Exception:  # noqa: BLE001
        disposition = None
    filename = _filename(part, ctx)
    if ctype.startswith("multipart/"):
        # No boundary parameter, or one never used (spam kits and broken
        # generators declare one boundary and use another): look for the
        # delimiter actually used and re-read the body with it; failing
        # that, the body is read as plain text.
        ctx.defect("mime: multipart without usable boundary")
        if depth < ctx.limits.max_depth and _reparse_with_found_boundary(part, ctype, depth, ctx, tree):
            return
        tree.plain.append(_part_text(part, ctx))
        return
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        text = _part_text(part, ctx)
        (tree.plain if ctype == "text/plain" else tree.html).append(text)
        return
    if ctype in _REPORT_TYPES and not filename:
        return
    content = _payload_bytes(part, ctx)
    size = len(content)
    content_id = (part.get("content-id") or "").strip()
    if not isinstance(content_id, str):
        content_id = ""
    if not filename and content_id:
        # Outlook's inline images often have no name: show the cid.
        filename = content_id.strip("<>")[:255]
    # Inline (cid:) images: Outlook marks them "attachment" but puts them in
    # multipart/related with a Content-ID the HTML refers to (RFC 2387).
    inline = disposition == "inline" or (bool(content_id) and (disposition is None or in_related))
    is_image = ctype.startswith("image/")
    keep = size <= (limits.keep_image_bytes if is_image else limits.keep_file_bytes)
    tree.attachments.append(
        Attachment(filename=filename, content_type=ctype, size=size, inline=inline,
                   content=content if keep else None)
    )


def _forwarded_message(
    part: Message, inner: Message, depth: int, ctx: _Ctx, tree: _Tree, forwarded: bool = True
) -> None:
    """A message/rfc822 part: an attachment, and a QuotedPart (forwarded,
    except the returned message of a bounce)."""
    limits = ctx.limits
    index = _raw_index(inner)
    subject = decode_header_value(_first_raw(inner, "subject", limits, index))[: limits.max_header_value]
    filename = _filename(part, ctx) or ((subject[:120] or "message") + ".eml")
    try:
        content = inner.as_bytes(policy=compat32) if ctx.time_left() else b""
    except Exception:  # noqa: BLE001 - a broken inner message is still listed
        content = b""
    size = len(content)
    tree.attachments.append(
        Attachment(filename=filename, content_type="message/rfc822", size=size,
                   inline=part.get_content_disposition() == "inline",
                   content=content if size <= limits.keep_file_bytes else None)
    )
    if ctx.forwarded_read >= limits.max_forwarded_messages or depth >= limits.max_depth or not ctx.time_left():
        ctx.defect("limit:forwarded: a message/rfc822 part was not read")
        return
    ctx.forwarded_read += 1
    sub = _Tree()
    _walk(inner, depth + 1, ctx, sub)
    text = _body_text(sub, ctx)
    split = split_body(text, inside_forward=forwarded, forward_hint=None if forwarded else False)
    sender = ""
    from_raw = _first_raw(inner, "from", limits, index)
    if from_raw:
        addrs = _addresses(from_raw, ctx, "forwarded from")
        if addrs:
            sender = _format_sender(*addrs[0])
    tree.forwarded.append(
        QuotedPart(text=split.new_text, date=_parse_date(_first_raw(inner, "date", limits, index), ctx, "forwarded date"),
                   sender=sender, subject=subject, forwarded=forwarded)
    )
    tree.forwarded.extend(split.quoted)
    tree.attachments.extend(sub.attachments)
    tree.forwarded.extend(sub.forwarded)


def _usable(text: str) -> bool:
    s = text.strip()
    if not s:
        return False
    if s.count("\ufffd") > max(3, len(s) // 20):
        return False
    return not (len(s) < 300 and _PLACEHOLDER.search(s))


def _body_text(tree: _Tree, ctx: _Ctx) -> str:
    """Plain text when usable, else the HTML rendered as text."""
    plain = "\n\n".join(t.strip("\n") for t in tree.plain if t.strip())
    if _usable(plain) or not tree.html:
        return plain
    rendered = []
    for markup in tree.html:
        if not ctx.time_left():
            break
        if len(markup) > ctx.limits.max_html_chars:
            ctx.defect(f"limit:html: HTML part over {ctx.limits.max_html_chars} characters, cut")
            markup = markup[: ctx.limits.max_html_chars]
        try:
            text = html_to_text(markup)
        except HtmlConversionError as exc:
            ctx.defect(f"html: not renderable ({exc}); tags stripped")
            text = strip_tags(markup)
        if not text.strip():
            # libxml2 silently drops what lies deeper than 256 elements.
            stripped = strip_tags(markup)
            if stripped.strip():
                ctx.defect("html: rendered nothing; tags stripped")
                text = stripped
        rendered.append(text)
    html = "\n\n".join(t for t in rendered if t.strip())
    return html if html.strip() else plain


# --------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------


def _raw_index(msg: Message) -> dict[str, list[str]]:
    """Lower-cased name -> raw values, in one pass (``Message.get_all`` is a
    linear scan per call: quadratic over 20,000 header fields)."""
    index: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        index.setdefault(str(name).strip().lower(), []).append(value if isinstance(value, str) else str(value))
    return index


def _first_raw(msg: Message, name: str, limits: Limits, index: dict[str, list[str]] | None = None) -> str:
    values = (index if index is not None else _raw_index(msg)).get(name)
    return values[0][: limits.max_header_length] if values else ""


def _addresses(raw: str, ctx: _Ctx, what: str, strict: bool = True) -> list[tuple[str, str]]:
    """(display name, lower-case addr-spec) pairs. ``strict``: mail-parser's
    hardened parser (From, Reply-To: who we may answer); otherwise the
    stdlib's, 4x cheaper, for the informational To/Cc lists."""
    value = _recover_8bit(_FOLD.sub("", raw))
    problems: list[dict] = []
    try:
        if strict:
            pairs = get_addresses(value, defects=problems, decode_names=True)
        else:
            pairs = email.utils.getaddresses([value])
    except Exception as exc:  # noqa: BLE001 - third-party parser on hostile input
        ctx.defect(f"address: {what} not parsable ({type(exc).__name__})")
        pairs = email.utils.getaddresses([value])
    for p in problems[:5]:
        ctx.defect(f"address: {what}: {p.get('reason', 'invalid')}")
    out = []
    for name, addr in pairs:
        if not addr or "@" not in addr:
            continue
        name = decode_header_value(name) if name else ""
        out.append((name, addr.strip().lower()))
    return out


_HAS_ZONE = re.compile(r"(?:[+-]\d{2}:?\d{2}|\b[A-Za-z]{1,5})\s*(?:\([^)]*\))?\s*$")


def _parse_date(raw: str, ctx: _Ctx, what: str = "date") -> dt.datetime | None:
    """RFC 5322 Date (mail-parser's strict reader, then the stdlib's lenient
    one); aware, in Europe/Paris; a date without zone is Paris time."""
    raw = _recover_8bit(_FOLD.sub("", raw)).strip()
    if not raw:
        return None
    try:
        result = parse_mail_date(raw)
    except Exception:  # noqa: BLE001
        result = None
    if result is not None and result.value is not None:
        for reason in result.reasons:
            ctx.defect(f"{what}: {reason}")
        return result.value.astimezone(PARIS)
    try:
        parts = email.utils.parsedate_tz(raw)
    except Exception:  # noqa: BLE001
        parts = None
    if parts is not None:
        try:
            naive = dt.datetime(*parts[:6])
        except (ValueError, OverflowError, TypeError):
            naive = None
        if naive is not None and 1970 <= naive.year <= 2200:
            # parsedate_tz reports offset 0 when the zone is simply missing.
            if parts[9] is None or not _HAS_ZONE.search(raw):
                ctx.defect(f"{what}: no time zone, Europe/Paris assumed")
                return naive.replace(tzinfo=PARIS)
            return naive.replace(tzinfo=dt.timezone(dt.timedelta(seconds=parts[9]))).astimezone(PARIS)
    ctx.defect(f"{what}: unparseable")
    return None


def _read_headers(msg: Message, ctx: _Ctx) -> dict[str, tuple[str, ...]]:
    limits = ctx.limits
    headers: dict[str, list[str]] = {}
    items = list(msg.raw_items())
    if len(items) > limits.max_headers:
        ctx.defect(f"limit:headers: {len(items)} header fields, first {limits.max_headers} kept")
    long_seen = False
    for name, value in itertools.islice(items, limits.max_headers):
        if not isinstance(value, str):
            value = str(value)
        if len(value) > limits.max_header_length:
            value = value[: limits.max_header_length]
            if not long_seen:
                ctx.defect(f"limit:header-length: a header over {limits.max_header_length} bytes was cut")
                long_seen = True
        key = _recover_8bit(name).strip().lower()[:100]
        headers.setdefault(key, []).append(decode_header_value(value)[: limits.max_header_value])
    return {k: tuple(v) for k, v in headers.items()}


def _headers_only(raw: bytes) -> Message:
    end = re.search(rb"\r?\n\r?\n", raw[: 1024 * 1024])
    block = raw[: end.end()] if end else raw[: 1024 * 1024]
    return BytesParser(policy=compat32).parsebytes(block, headersonly=True)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def parse_message(raw: bytes, limits: Limits = Limits()) -> ParsedMail:
    """Parse one mail; never raises (see the module docstring for limits)."""
    start = time.perf_counter()
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        elif isinstance(raw, (bytearray, memoryview)):
            raw = bytes(raw)
        elif not isinstance(raw, bytes):
            return ParsedMail(error=f"not an RFC 5322 message: {type(raw).__name__} given, bytes expected")
        return _parse(raw, limits, start)
    except Exception as exc:  # noqa: BLE001 - last resort: a value, never an exception
        return ParsedMail(
            size=len(raw) if isinstance(raw, (bytes, bytearray)) else 0,
            error=f"parser failure: {type(exc).__name__}: {str(exc)[:200]}",
        )


def _parse(raw: bytes, limits: Limits, start: float) -> ParsedMail:
    size = len(raw)
    if not raw:
        return ParsedMail(error="not an RFC 5322 message: empty input")
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM written by a Windows editor
        raw = raw[3:]
    reason = _not_a_mail(raw)
    if reason:
        return ParsedMail(size=size, error=reason)
    ctx = _Ctx(limits=limits, start=start)
    if size > limits.max_bytes:
        msg = _headers_only(raw)
        fields = _header_fields(msg, ctx)
        return ParsedMail(
            **fields, size=size, defects=tuple(ctx.defects),
            error=f"message too large: {size} bytes (limit {limits.max_bytes})",
        )

    raw = _bound_nesting(raw, limits, ctx.defects)
    raw = _bound_parts(raw, limits, ctx.defects)
    try:
        msg = BytesParser(policy=compat32).parsebytes(raw)
    except RecursionError:
        # Not expected after _bound_nesting; keep the headers and say why.
        msg = _headers_only(raw)
        ctx.defect("limit:depth: MIME structure too deep to parse, body not read")
        msg.set_payload("")

    fields = _header_fields(msg, ctx)
    tree = _Tree()
    _walk(msg, 0, ctx, tree)
    body = _body_text(tree, ctx)
    body = unicodedata.normalize("NFC", body.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))
    body = body.rstrip().lstrip("\n")
    if len(body) > limits.max_text_chars:
        ctx.defect(f"limit:text: body over {limits.max_text_chars} characters, cut")
        body = body[: limits.max_text_chars]

    new_text = signature = ""
    quoted: tuple[QuotedPart, ...] = ()
    if body and ctx.time_left():
        hint = forward_hint_from_subject(fields["subject"])
        if hint is None and fields["in_reply_to"]:
            hint = False
        split = split_body(body, forward_hint=hint)
        new_text, signature, quoted = split.new_text, split.signature, split.quoted
    elif body:
        new_text = body
    quoted = quoted + tuple(tree.forwarded)

    try:
        content_type = msg.get_content_type()
    except Exception:  # noqa: BLE001
        content_type = "text/plain"
    return ParsedMail(
        **fields,
        content_type=content_type,
        mime_types=tuple(tree.mime_types),
        body_text=body,
        new_text=new_text,
        signature=signature,
        quoted=quoted,
        attachments=tuple(tree.attachments),
        defects=tuple(ctx.defects),
        size=size,
    )


def _header_fields(msg: Message, ctx: _Ctx) -> dict:
    limits = ctx.limits
    headers = _read_headers(msg, ctx)
    index = _raw_index(msg)

    def raw(name: str) -> str:
        return _first_raw(msg, name, limits, index)

    from_raw = raw("from")
    from_addr = from_name = ""
    if from_raw:
        pairs = _addresses(from_raw, ctx, "from")
        if pairs:
            from_name, from_addr = pairs[0]
            if len(pairs) > 1:
                ctx.defect("address: several mailboxes in From, the first kept")
            if "@" in from_name and from_name.strip("<> \"'").lower() != from_addr:
                ctx.defect("address: From display name is another address")
        else:
            ctx.defect("address: From has no valid address")
    else:
        ctx.defect("address: no From")
    if len(index.get("from", ())) > 1:
        ctx.defect("address: several From fields, the first kept")

    def addr_list(name: str) -> tuple[str, ...]:
        values = index.get(name, [])
        out: list[str] = []
        for value in values[:5]:
            out.extend(a for _, a in _addresses(str(value)[: limits.max_header_length], ctx, name, strict=False))
        if len(out) > limits.max_addresses:
            ctx.defect(f"limit:addresses: {name} has over {limits.max_addresses} addresses")
            out = out[: limits.max_addresses]
        return tuple(out)

    reply_to = ""
    rt = raw("reply-to")
    if rt:
        pairs = _addresses(rt, ctx, "reply-to")
        reply_to = pairs[0][1] if pairs else ""

    mid = _msg_ids(_FOLD.sub("", raw("message-id")))
    irt = _msg_ids(_FOLD.sub("", raw("in-reply-to")))
    refs = _msg_ids(_FOLD.sub("", raw("references")))
    if len(refs) > limits.max_references:
        ctx.defect(f"limit:references: {len(refs)} ids, newest {limits.max_references} kept")
        refs = refs[-limits.max_references:]
    subject = decode_header_value(raw("subject"))[: limits.max_header_value]
    return {
        "message_id": mid[0] if mid else "",
        "subject": subject,
        "from_addr": from_addr,
        "from_name": from_name,
        "to": addr_list("to"),
        "cc": addr_list("cc"),
        "reply_to": reply_to,
        "date": _parse_date(raw("date"), ctx),
        "in_reply_to": irt[0] if irt else "",
        "references": tuple(refs),
        "headers": headers,
    }
