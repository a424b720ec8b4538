"""Dev harness: measure `start_time` extraction (mailbot.when) on the
labelled corpora. Not shipped logic; it reads files, so it lives in tools/.

Each labelled incident/followup is read with the standard library's
``email`` package (policy.default). The body is cut the way the real parser
will hand it over: the sender's new text, then each *forwarded* part with its
own date (Outlook "De : / Envoyé :" block, Thunderbird "Message transféré"
block, attached message/rfc822). Quoted replies ("> " lines, "... a écrit :",
"wrote:", and "De :" blocks of a reply) are dropped. HTML is stripped
crudely. ``find_start_time`` runs on the new text (subject as fallback),
then on each forwarded part against that part's date; the first answer wins.

Usage: python tools/eval_start_time.py [CORPUS ...] [--conversations] [-q]
CORPUS defaults to dev and dev2 (folders of ../shared/corpus).
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.utils
import html
import json
import re
import sys
import time
import tomllib
from email import policy
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbot.when import PARIS, DateRules, find_start_time, fold, load_date_rules

CORPUS = ROOT / ".." / "shared" / "corpus"

FWD_MARK = re.compile(
    r"^[ \t]*-{2,}\s*(?:message transf[ée]r[ée]|forwarded message|message d'origine|original message)\s*-{2,}[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
OUTLOOK_HDR = re.compile(r"^[ \t]*(?:De|From)\s?:.*\n(?:[ \t]*\S[^\n]*\n){0,2}?[ \t]*(?:Envoy[ée]|Sent|Date)\s?:", re.IGNORECASE | re.MULTILINE)
REPLY_HDR = re.compile(r"^.*(?:a [ée]crit|wrote)\s*:\s*$", re.IGNORECASE | re.MULTILINE)
HDR_LINE = re.compile(r"^[ \t]*(?:De|From|Envoy[ée]|Sent|Date|[ÀA]|To|Pour|Cc|Objet|Subject|Sujet)\s?:[^\n]*\n?", re.IGNORECASE)


def html_to_text(s: str) -> str:
    s = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", s)
    s = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h\d)>", "\n", s)
    s = re.sub(r"(?i)</t[dh]>", "   ", s)
    s = re.sub(r"<[^>]+>", " ", s)
    return html.unescape(s)


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain", "html"))
    if part is None:
        return ""
    try:
        txt = part.get_content()
    except Exception:  # noqa: BLE001 - harness: a broken charset gives no text
        return ""
    return html_to_text(txt) if part.get_content_type() == "text/html" else txt


def parse_header_date(block: str, rules: DateRules) -> dt.datetime | None:
    for line in block.splitlines():
        m = re.match(r"\s*(?:Envoy[ée]|Sent|Date)\s?:\s*(.+)", line, re.IGNORECASE)
        if not m:
            continue
        val = m.group(1).strip()
        try:
            d = email.utils.parsedate_to_datetime(val)
            if d is not None:
                return d if d.tzinfo else d.replace(tzinfo=PARIS)
        except (TypeError, ValueError):
            pass
        # Outlook's localised form: "lundi 9 novembre 2026 21:47"
        f = fold(val)
        mm = re.search(r"(\d{1,2})\s+([a-z]+)\.?\s+(\d{4})\D+(\d{1,2})[:h](\d{2})", f)
        if mm and mm.group(2) in rules.months:
            return dt.datetime(int(mm[3]), rules.months[mm[2]], int(mm[1]), int(mm[4]), int(mm[5]), tzinfo=PARIS)
    return None


def split_parts(text: str, subject: str, date: dt.datetime, rules: DateRules):
    """-> (new_text, [(forwarded_text, date, subject)])."""
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith(">"))
    is_fwd = bool(re.match(r"\s*(?:tr|fw|fwd|wg)\s*:", subject, re.IGNORECASE))
    cuts = []
    for rx in (FWD_MARK, OUTLOOK_HDR, REPLY_HDR):
        m = rx.search(text)
        if m:
            cuts.append((m.start(), rx))
    m = re.search(r"^[ \t]*_{10,}[ \t]*$", text, re.MULTILINE)
    if m:
        cuts.append((m.start(), OUTLOOK_HDR))
    if not cuts:
        return text, []
    pos, rx = min(cuts, key=lambda c: c[0])
    new, rest = text[:pos], text[pos:]
    if rx is REPLY_HDR:
        return new, []
    forwarded = rx is FWD_MARK and re.search(r"transf|forward", rest[:80], re.IGNORECASE) or is_fwd
    if not forwarded:
        return new, []
    # Drop the separator line(s) and the header block, keep the date.
    lines = rest.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (not lines[i].strip() or FWD_MARK.match(lines[i]) or re.match(r"\s*_{10,}\s*$", lines[i])):
        i += 1
    hdr_start = i
    while i < len(lines) and (HDR_LINE.match(lines[i]) or (lines[i].strip() and i > hdr_start and HDR_LINE.match(lines[i - 1]) and ":" not in lines[i][:20] and False)):
        i += 1
    header = "".join(lines[hdr_start:i])
    fdate = parse_header_date(header, rules) or date
    fsubj = ""
    ms = re.search(r"^\s*(?:Objet|Subject|Sujet)\s?:\s*(.*)$", header, re.IGNORECASE | re.MULTILINE)
    if ms:
        fsubj = ms.group(1).strip()
    inner_new, inner_fwd = split_parts("".join(lines[i:]), fsubj, fdate, rules)
    return new, [(inner_new, fdate, fsubj)] + inner_fwd


def extract(msg: EmailMessage, rules: DateRules):
    subject = str(msg.get("Subject", "") or "")
    date = msg["Date"].datetime if msg["Date"] is not None else None
    new, fwd = split_parts(body_text(msg), subject, date, rules)
    for part in msg.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_content()
            idate = inner["Date"].datetime if inner["Date"] is not None else date
            fwd.append((body_text(inner), idate, str(inner.get("Subject", "") or "")))
    return subject, date, new, fwd


def run_one(msg: EmailMessage, rules: DateRules):
    """-> (StartTime or None, seconds spent in find_start_time)."""
    subject, date, new, fwd = extract(msg, rules)
    if date is None:
        return None, 0.0
    t0 = time.perf_counter()
    found = find_start_time(new, date, rules, subject=subject)
    for text, fdate, fsubj in fwd:
        if found is not None:
            break
        found = find_start_time(text, fdate, rules, subject=fsubj)
    return found, time.perf_counter() - t0


def load_items(name: str, conversations: bool):
    folder = CORPUS / name
    items = []
    for line in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        lab = json.loads(line)
        if lab["kind"] in ("incident", "followup"):
            items.append((lab["file"], lab["kind"], lab["fields"].get("start_time"), lab.get("ambiguous", False), lab.get("note", "")))
    if conversations:
        for cf in sorted((folder / "conversations").glob("*.json")):
            conv = json.loads(cf.read_text(encoding="utf-8"))
            fl = conv.get("first_labels")
            if fl and fl.get("kind", "incident") in ("incident", "followup"):
                items.append((conv["first"], fl.get("kind", "incident"), fl["fields"].get("start_time"), False, fl.get("note", "")))
    return folder, items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpora", nargs="*", default=["dev", "dev2"])
    ap.add_argument("--conversations", action="store_true", help="also score the first mail of each conversation")
    ap.add_argument("-q", "--quiet", action="store_true", help="figures only, no misses")
    args = ap.parse_args(argv)

    if not CORPUS.is_dir():
        print(f"corpus not found: {CORPUS}", file=sys.stderr)
        return 2
    rules = load_date_rules(tomllib.loads((ROOT / "rules" / "dates.toml").read_text(encoding="utf-8")), "dates.toml")
    worst = 1.0
    total_calls, total_time = 0, 0.0
    for name in args.corpora:
        folder, items = load_items(name, args.conversations)
        stats = {"incident": [0, 0], "followup": [0, 0]}
        tp = fp = fn = 0
        misses = []
        for file, kind, want, ambiguous, note in items:
            msg = email.message_from_bytes((folder / file).read_bytes(), policy=policy.default)
            got, spent = run_one(msg, rules)
            total_time += spent
            total_calls += 1
            value = got.value if got else None
            if ambiguous:
                continue
            stats[kind][1] += 1
            if value == want:
                stats[kind][0] += 1
            else:
                misses.append((file, kind, want, got, note))
            if value and want:
                tp += 1
            elif value and not want:
                fp += 1
            elif want and not value:
                fn += 1
        ok = sum(s[0] for s in stats.values())
        n = sum(s[1] for s in stats.values())
        acc = ok / n if n else 1.0
        worst = min(worst, acc)
        prec = tp / (tp + fp) if tp + fp else 1.0
        rec = tp / (tp + fn) if tp + fn else 1.0
        print(f"{name}: exact {ok}/{n} = {acc:.3f}  (incident {stats['incident'][0]}/{stats['incident'][1]},"
              f" followup {stats['followup'][0]}/{stats['followup'][1]})  presence P={prec:.3f} R={rec:.3f}")
        if not args.quiet:
            for file, kind, want, got, note in misses:
                print(f"  MISS {file} [{kind}] want={want} got={got.value if got else None}"
                      f" words={got.words if got else ''!r} rule={got.rule if got else ''}")
                print(f"       note: {note[:160]}")
    if total_calls:
        print(f"time: {1000 * total_time / total_calls:.3f} ms per mail in find_start_time (target < 0.2)")
    return 0 if worst >= 0.93 else 1


if __name__ == "__main__":
    raise SystemExit(main())
