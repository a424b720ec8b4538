"""Read the ``rules/`` folder into a ``Rulebook`` (the file I/O edge of rules).

Only this module touches the file system for rules; ``rulebook.py`` stays pure.
"""

from __future__ import annotations

from pathlib import Path

from mailbot.errors import RuleFileError
from mailbot.rulebook import Rulebook, parse_rulebook

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


def read_rule_sources(folder: Path) -> dict[str, str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise RuleFileError(str(folder), "", "", "rules folder not found")
    sources = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".toml", ".txt"):
            rel = path.relative_to(folder).as_posix()
            try:
                sources[rel] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise RuleFileError(rel, "", "", f"not UTF-8 text: {exc}") from None
    return sources


def load_rulebook(folder: Path | str = DEFAULT_RULES_DIR) -> Rulebook:
    return parse_rulebook(read_rule_sources(Path(folder)))
