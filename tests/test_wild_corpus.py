"""Every mail of the shared corpora through the parser.

* ``wild/``: odd real-world mails from other projects' test suites. Each must
  give a clear value (readable text, or an ``error`` saying why not), never an
  exception, within a loose time bound (a safety net, not a benchmark).
* ``dev/`` and ``dev2/``: the labelled mails. Incidents keep a non-empty
  ``new_text``; our own questions quoted back never leak into it.

The corpora live next to the repository (``../shared``); the tests skip with
a reason when it is absent.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from mailbot.model import ParsedMail
from mailbot.parsing import parse_message

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CORPUS = SHARED / "corpus"
WILD = CORPUS / "wild"

pytestmark = pytest.mark.corpus


def _wild_files() -> list[Path]:
    if not WILD.is_dir():
        return []
    return sorted(p for p in WILD.iterdir() if p.is_file() and p.suffix in {".eml", ".txt", ".msg"})


def _labelled(folder: str) -> list[tuple[Path, dict]]:
    labels = CORPUS / folder / "labels.jsonl"
    if not labels.is_file():
        return []
    out = []
    for line in labels.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            out.append((CORPUS / folder / entry["file"], entry))
    return out


needs_wild = pytest.mark.skipif(not _wild_files(), reason=f"wild corpus not found at {WILD}")
needs_dev = pytest.mark.skipif(not _labelled("dev"), reason=f"labelled corpus not found under {CORPUS}")


def _readable(text: str) -> bool:
    if not text.strip() or "\x00" in text:
        return False
    bad = text.count("\ufffd") + sum(1 for c in text if ord(c) < 32 and c not in "\n\t")
    return bad <= max(2, len(text) // 50)


@needs_wild
@pytest.mark.parametrize("path", _wild_files(), ids=lambda p: p.name)
def test_wild_mail_gives_a_clear_result(path: Path):
    raw = path.read_bytes()
    start = time.perf_counter()
    mail = parse_message(raw)
    elapsed = time.perf_counter() - start
    assert isinstance(mail, ParsedMail)
    assert elapsed < 2.0, f"{path.name} took {elapsed:.2f} s"
    if mail.error is not None:
        assert mail.error.strip()
        return
    assert mail.size == len(raw)
    # Readable text, or an honestly empty body explained by a MIME defect
    # (those few samples have no text at all: they exercise the parser).
    if mail.body_text:
        assert _readable(mail.body_text), mail.body_text[:200]
        # no raw MIME structure where the text should be (a boundary line
        # followed by part headers at the top means the MIME was not read)
        assert not re.match(r"\s*--\S+\s*\n\s*Content-Type:", mail.body_text, re.IGNORECASE)
    else:
        assert any(d.startswith("mime:") for d in mail.defects) or mail.attachments or not raw.strip()
    assert mail.date is None or mail.date.tzinfo is not None
    assert "\n" not in mail.subject and "\r" not in mail.subject


@needs_wild
def test_outlook_msg_file_is_not_a_mail():
    mail = parse_message((WILD / "mail-parser__mail_outlook_1.msg").read_bytes())
    assert mail.error is not None and mail.error.startswith("not an RFC 5322 message")


@needs_wild
@pytest.mark.parametrize("name", ["flanker__long-header.eml", "flanker__enclosed-endless.eml"])
def test_pathological_wild_mails_are_fast(name: str):
    raw = (WILD / name).read_bytes()
    parse_message(raw)  # warm caches
    start = time.perf_counter()
    mail = parse_message(raw)
    elapsed = time.perf_counter() - start
    assert mail.error is None and mail.body_text
    assert elapsed < 1.0, f"{name}: {elapsed * 1000:.0f} ms (aim: < 300 ms)"
    assert any(d.startswith("limit:") for d in mail.defects)


@needs_wild
def test_spam_with_an_unused_boundary_reads_its_real_parts():
    mail = parse_message((WILD / "mail-parser__mail_malformed_3.eml").read_bytes())
    assert "mime: boundary recovered from the body" in mail.defects
    assert "Content-Type:" not in mail.body_text


@needs_dev
@pytest.mark.parametrize("folder", ["dev", "dev2"])
def test_labelled_incidents_keep_their_new_text(folder: str):
    for path, label in _labelled(folder):
        mail = parse_message(path.read_bytes())
        assert mail.error is None, (path.name, mail.error)
        assert mail.from_addr and mail.date is not None, path.name
        if label["kind"] == "incident":
            assert mail.new_text.strip(), f"{folder}/{path.name}: empty new_text"
            # the greeting or the first words of the mail are kept
            assert mail.new_text.split()[0] in mail.body_text


@needs_dev
@pytest.mark.parametrize("folder", ["dev", "dev2"])
def test_quoted_bot_questions_never_in_new_text(folder: str):
    """Replies quoting the bot's own message: the quote is a QuotedPart
    (forwarded=False), none of its lines is in new_text."""
    seen = 0
    for path, _label in _labelled(folder):
        mail = parse_message(path.read_bytes())
        for part in mail.quoted:
            if "support@si-samu.test" in part.sender or "Le support SI-Samu" in part.text:
                seen += 1
                assert part.forwarded is False, path.name
                for line in part.text.splitlines():
                    if len(line.strip()) > 25:
                        assert line.strip() not in mail.new_text, (path.name, line)
    assert seen >= 1


@needs_dev
def test_dev_039_quoted_examples_not_in_new_text():
    mail = parse_message((CORPUS / "dev" / "messages" / "039.eml").read_bytes())
    assert "Chrome version 130.0.6723.92" in mail.new_text
    assert "Firefox 115" not in mail.new_text and "OTP mail" not in mail.new_text
    (question,) = mail.quoted
    assert question.forwarded is False and "OTP mail" in question.text
    assert question.date is not None and (question.date.day, question.date.hour) == (4, 7)


@needs_dev
def test_forwarded_incidents_carry_their_own_date():
    expected = {"dev/messages/012.eml": (10, 13, 41), "dev/messages/046.eml": (12, 8, 50),
                "dev/messages/066.eml": (20, 11, 51), "dev2/messages/041.eml": (9, 21, 47)}
    for rel, (day, hour, minute) in expected.items():
        mail = parse_message((CORPUS / rel).read_bytes())
        fwd = mail.forwarded
        assert fwd, rel
        assert (fwd[0].date.day, fwd[0].date.hour, fwd[0].date.minute) == (day, hour, minute), rel
        assert len(fwd[0].text) > 40, rel


@needs_dev
def test_parsing_throughput_on_the_dev_corpora(capsys):
    raws = [p.read_bytes() for folder in ("dev", "dev2") for p, _ in _labelled(folder)]
    for raw in raws:
        parse_message(raw)
    start = time.perf_counter()
    for raw in raws:
        parse_message(raw)
    elapsed = time.perf_counter() - start
    rate = len(raws) / elapsed
    with capsys.disabled():
        print(f"\nparse_message: {len(raws)} mails, {elapsed / len(raws) * 1000:.2f} ms/mail, {rate:.0f} mails/s")
    assert rate > 150  # loose: ~1,900 mails/s on one core here
