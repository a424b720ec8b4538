"""The core (parsing, triage, extraction) imports no network, database or scheduler library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mailbot"
CORE = ["model", "errors", "parsing", "quotes", "htmltext", "nlp", "rulebook", "reading", "kind", "policy", "masking", "dialogue", "compose", "loops",
        "classify", "extract", "when", "triage", "evaluation"]
FORBIDDEN = {"imapclient", "aiosmtplib", "aiosmtpd", "apscheduler", "sqlalchemy", "alembic", "psycopg",
             "sqlite3", "socket", "ssl", "smtplib", "imaplib", "asyncio", "http", "urllib", "requests",
             "mailbot.adapters", "mailbot.cli", "mailbot.rulefiles"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_modules_exist():
    missing = [m for m in CORE if not (PACKAGE / f"{m}.py").exists()]
    assert not missing


def test_core_imports_no_io_library():
    bad = {}
    for module in CORE:
        for name in _imports(PACKAGE / f"{module}.py"):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                bad.setdefault(module, []).append(name)
    assert bad == {}


def test_core_never_reads_the_clock():
    for module in CORE:
        text = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        assert "datetime.now(" not in text and ".now()" not in text, module
