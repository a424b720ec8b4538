"""Scoring verdicts against labels (``mailbot eval``).

Pure: compares dicts. Figures (policy-level, as the issue defines them):
accuracy of kind, cas, application and criticity; field F1 on presence and
on normalised value; exact-match rate of ``missing``; *false complete* (a
mail with mandatory fields missing for which nothing is reported missing)
and *over-ask* (a field reported missing that the labels say is given).
Labels marked ``"ambiguous": true`` are left out.

Free-text fields (features, error_message, otn_tests, equipment) count as the
same value when their words overlap enough (the labels quote the mail; the
exact cut of a quotation is not a fact).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

FREE_TEXT = {"features", "error_message", "otn_tests", "equipment", "routing_name"}


def _words(v: Any) -> set[str]:
    text = " ".join(v) if isinstance(v, list) else str(v)
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return {w for w in re.findall(r"\w+", text) if len(w) > 1}


def same_value(name: str, got: Any, want: Any) -> bool:
    if name in FREE_TEXT:
        a, b = _words(got), _words(want)
        if not a or not b:
            return a == b
        return len(a & b) / min(len(a), len(b)) >= 0.5
    if isinstance(want, list) and isinstance(got, list):
        return sorted(map(str, got)) == sorted(map(str, want))
    return got == want


@dataclass
class Score:
    n: int = 0
    kind: int = 0
    cas: int = 0
    application: int = 0
    criticity: int = 0
    missing_exact: int = 0
    false_complete: int = 0
    over_ask: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    value_ok: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, name: str, got: dict[str, Any], want: dict[str, Any]) -> None:
        self.n += 1
        for key in ("kind", "cas", "application", "criticity"):
            if got.get(key) == want.get(key):
                setattr(self, key, getattr(self, key) + 1)
            else:
                self.misses.append(f"{name}: {key} {got.get(key)!r} (want {want.get(key)!r})")
        gf, wf = got.get("fields") or {}, want.get("fields") or {}
        for k in sorted(set(gf) | set(wf)):
            if k in gf and k in wf:
                self.tp += 1
                if same_value(k, gf[k], wf[k]):
                    self.value_ok += 1
                else:
                    self.misses.append(f"{name}: field {k} = {gf[k]!r} (want {wf[k]!r})")
            elif k in gf:
                self.fp += 1
                self.misses.append(f"{name}: field {k} = {gf[k]!r} not in labels")
            else:
                self.fn += 1
                self.misses.append(f"{name}: field {k} not found (want {wf[k]!r})")
        gm, wm = sorted(got.get("missing") or []), sorted(want.get("missing") or [])
        if gm == wm:
            self.missing_exact += 1
        else:
            self.misses.append(f"{name}: missing {gm} (want {wm})")
        if wm and not gm:
            self.false_complete += 1
        if set(gm) & set(wf):
            self.over_ask += 1

    def figures(self) -> dict[str, float | int]:
        n = max(self.n, 1)
        p = self.tp / max(self.tp + self.fp, 1)
        r = self.tp / max(self.tp + self.fn, 1)
        f1 = 2 * p * r / max(p + r, 1e-9)
        vp = self.value_ok / max(self.tp + self.fp, 1)
        vr = self.value_ok / max(self.tp + self.fn, 1)
        vf1 = 2 * vp * vr / max(vp + vr, 1e-9)
        return {
            "mails": self.n,
            "kind": round(self.kind / n, 3),
            "cas": round(self.cas / n, 3),
            "application": round(self.application / n, 3),
            "criticity": round(self.criticity / n, 3),
            "field_f1_presence": round(f1, 3),
            "field_f1_value": round(vf1, 3),
            "missing_exact": round(self.missing_exact / n, 3),
            "false_complete": self.false_complete,
            "over_ask": self.over_ask,
        }
