"""Reading a mail's text: tokens, sentences, clauses, and where each signal fires.

Pure: works on strings with a spaCy ``Language`` built by ``mailbot.nlp``.

The mail is read as a sequence of *parts* (the subject, the sender's new
text, each forwarded mail, the attachment names), joined into one spaCy Doc
so that one matcher pass finds every signal. Each hit knows its part, its
sentence and its clause (a sentence cut at commas, colons and contrast words
such as "mais", "alors que", "but"): "Sous Firefox ça marche, c'est sous Edge
118 que ça plante" has Firefox and "marche" in one clause, Edge and "plante"
in the other.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc

from mailbot.rulebook import Rulebook

_SENTENCE_END = {".", "!", "?", ";", "…", "•", "·", "●", "▪", "→"}
_CLAUSE_END = {",", ":", "-", "–", "—"}


@dataclass(frozen=True)
class Part:
    name: str          # "subject", "body", "forward", "attachments"
    start: int         # char offsets in the joined text
    end: int
    date: dt.datetime | None = None


@dataclass(frozen=True)
class SignalHit:
    signal: str
    start: int         # token index
    end: int
    start_char: int
    end_char: int
    text: str
    sentence: int
    clause: int
    part: int


@dataclass
class Reading:
    doc: Doc
    parts: list[Part]
    hits: list[SignalHit]
    token_sentence: list[int]
    token_clause: list[int]
    by_signal: dict[str, list[SignalHit]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.doc.text

    def of(self, *signals: str) -> list[SignalHit]:
        out: list[SignalHit] = []
        for s in signals:
            out.extend(self.by_signal.get(s, ()))
        return sorted(out, key=lambda h: h.start)

    def has(self, *signals: str) -> bool:
        return any(self.by_signal.get(s) for s in signals)

    def in_clause(self, clause: int, *signals: str) -> list[SignalHit]:
        return [h for h in self.of(*signals) if h.clause == clause]

    def in_sentence(self, sentence: int, *signals: str) -> list[SignalHit]:
        return [h for h in self.of(*signals) if h.sentence == sentence]

    def clause_text(self, clause: int) -> str:
        toks = [t for t in self.doc if self.token_clause[t.i] == clause]
        if not toks:
            return ""
        return self.doc.text[toks[0].idx: toks[-1].idx + len(toks[-1])]

    def sentence_text(self, sentence: int) -> str:
        toks = [t for t in self.doc if self.token_sentence[t.i] == sentence]
        if not toks:
            return ""
        return self.doc.text[toks[0].idx: toks[-1].idx + len(toks[-1])]

    def sentence_span(self, sentence: int) -> tuple[int, int]:
        toks = [t.i for t in self.doc if self.token_sentence[t.i] == sentence]
        return (toks[0], toks[-1] + 1) if toks else (0, 0)

    def part_of_char(self, char: int) -> int:
        starts = [p.start for p in self.parts]
        return max(0, bisect_right(starts, char) - 1)


class Reader:
    """Compiled matchers for one rulebook. Build once, read many mails."""

    def __init__(self, nlp: Language, rulebook: Rulebook) -> None:
        from mailbot.nlp import normaliser

        self.nlp = nlp
        self.rulebook = rulebook
        self.phrase_matcher = PhraseMatcher(nlp.vocab, attr="NORM")
        self.matcher = Matcher(nlp.vocab, validate=True)
        self.regexes = []
        norm = normaliser(nlp)
        vocabulary: set[str] = set()
        for sig in rulebook.signals.values():
            if sig.phrases:
                docs = list(nlp.pipe(sig.phrases))
                for d in docs:
                    vocabulary.update(t.norm_ for t in d)
                self.phrase_matcher.add(sig.id, docs)
            if sig.patterns:
                self.matcher.add(sig.id, [list(p) for p in sig.patterns])
            for rx in sig.regex:
                self.regexes.append((sig.id, rx))
        # Typos in mails are mapped onto words the rules know; the cached
        # norms of the rule phrases themselves stay as they were.
        norm.learn(vocabulary)
        nlp.get_pipe("mailbot_norm").forget()

    def read(self, parts: list[tuple[str, str, dt.datetime | None]]) -> Reading:
        chunks, meta, offset = [], [], 0
        for name, text, date in parts:
            text = text.strip()
            if not text:
                continue
            chunks.append(text)
            meta.append(Part(name, offset, offset + len(text), date))
            offset += len(text) + 2
        joined = "\n\n".join(chunks)
        doc = self.nlp(joined)
        sentence, clause = _segment(doc, [p.start for p in meta])
        raw: list[tuple[str, int, int]] = []
        for match_id, start, end in self.phrase_matcher(doc):
            raw.append((self.nlp.vocab.strings[match_id], start, end))
        for match_id, start, end in (self.matcher(doc) if len(self.matcher) else ()):
            raw.append((self.nlp.vocab.strings[match_id], start, end))
        for sid, rx in self.regexes:
            for m in rx.finditer(joined):
                span = doc.char_span(m.start(), m.end(), alignment_mode="expand")
                if span is not None and len(span):
                    raw.append((sid, span.start, span.end))
        hits = []
        seen = set()
        starts = [p.start for p in meta]
        for sid, start, end in sorted(raw, key=lambda r: (r[1], -r[2])):
            if (sid, start, end) in seen:
                continue
            seen.add((sid, start, end))
            span = doc[start:end]
            hits.append(SignalHit(sid, start, end, span.start_char, span.end_char, span.text,
                                  sentence[start], clause[start],
                                  max(0, bisect_right(starts, span.start_char) - 1)))
        by_signal: dict[str, list[SignalHit]] = defaultdict(list)
        for h in hits:
            by_signal[h.signal].append(h)
        return Reading(doc, meta, hits, sentence, clause, dict(by_signal))


def _segment(doc: Doc, part_starts: list[int]) -> tuple[list[int], list[int]]:
    """Sentence and clause index of each token."""
    sentence, clause = [], []
    s = c = 0
    part_set = set(part_starts)
    prev_break = False
    for tok in doc:
        text = tok.text
        if tok.idx in part_set and tok.i:
            s += 1
            c += 1
        elif prev_break == "s":
            s += 1
            c += 1
        elif prev_break == "c":
            c += 1
        sentence.append(s)
        clause.append(c)
        if tok.is_space and "\n" in text:
            prev_break = "s"
        elif text in _SENTENCE_END or (tok.whitespace_ == "" and False):
            prev_break = "s"
        elif text in _CLAUSE_END or "\n" in tok.whitespace_:
            prev_break = "s" if "\n" in tok.whitespace_ else "c"
        elif tok.norm_ in ("mais", "but", "alors", "sauf", "whereas", "however", "cependant",
                           "tandis", "pourtant", "revanche", "contre", "although"):
            # The contrast word opens the next clause: re-label it.
            c += 1
            clause[-1] = c
            prev_break = False
        else:
            prev_break = False
    return sentence, clause
