"""Escalation targets: ``rules/teams.toml`` read into validated ``Team`` entries.

Role: the teams a technician may escalate a ticket to (N2/N3 réseau,
applications métier...), kept as data that support staff edit, like the
other rule files. Each ``[id]`` table has a ``name``, an optional ``about``
and an optional ``address`` that is notified at each escalation. Every error
is a :class:`mailbot.errors.RuleFileError` naming the file, the entry and the
key, with a close match suggested for a misspelt key.

Import rule: pure core for :func:`parse_teams` (standard library
``tomllib``, :mod:`mailbot.errors`, :mod:`mailbot.loops`); only
:func:`load_teams` reads a file, the way :mod:`mailbot.rulefiles` does for
the other rules.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mailbot.errors import RuleFileError
from mailbot.loops import is_valid_address

__all__ = ["TEAMS_FILE", "Team", "Teams", "UnknownTeam", "load_teams", "parse_teams"]

TEAMS_FILE = "teams.toml"
TEAM_KEYS = ("name", "about", "address")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    about: str = ""
    address: str | None = None


class UnknownTeam(LookupError):
    """No team with that id; the message lists the valid ids."""

    def __init__(self, team_id: str, known: tuple[str, ...]) -> None:
        self.team_id = team_id
        self.known = known
        close = difflib.get_close_matches(team_id, list(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(known) if known else f"none: {TEAMS_FILE} defines no team"
        super().__init__(f"unknown team {team_id!r}{hint}; valid ids: {listed}")


@dataclass(frozen=True)
class Teams(Mapping[str, Team]):
    """The teams in file order, looked up by id."""

    teams: tuple[Team, ...] = ()

    def __getitem__(self, team_id: str) -> Team:
        for team in self.teams:
            if team.id == team_id:
                return team
        raise KeyError(team_id)

    def __iter__(self) -> Iterator[str]:
        return (t.id for t in self.teams)

    def __len__(self) -> int:
        return len(self.teams)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.teams)

    def get_team(self, team_id: str) -> Team:
        """The team, or :class:`UnknownTeam` listing the valid ids."""
        key = (team_id or "").strip().lower()
        if key in self:
            return self[key]
        raise UnknownTeam(team_id, self.ids)


def _suggest(word: str) -> str:
    close = difflib.get_close_matches(word, list(TEAM_KEYS), n=1)
    return f" — did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(TEAM_KEYS)}"


def parse_teams(text: str, source: str = TEAMS_FILE) -> Teams:
    """Validate the TOML text of ``teams.toml``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(source, "", "", f"TOML syntax: {exc}") from None
    out = []
    for team_id, table in doc.items():
        if not isinstance(table, dict):
            raise RuleFileError(source, team_id, "", "each team must be a [table] of keys (name, about, address)")
        if not _ID.match(team_id):
            raise RuleFileError(source, team_id, "", "an id is lower-case letters, digits and dashes (e.g. n2-reseau)")
        unknown = sorted(set(table) - set(TEAM_KEYS))
        if unknown:
            raise RuleFileError(source, team_id, unknown[0], "unknown key" + _suggest(unknown[0]))
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RuleFileError(source, team_id, "name", "needs the team's name in quotes")
        about = table.get("about", "")
        if not isinstance(about, str):
            raise RuleFileError(source, team_id, "about", "must be a quoted string")
        address = table.get("address")
        if address is not None:
            # The address goes into the To header of the escalation mail.
            if not isinstance(address, str) or not is_valid_address(address.strip()):
                raise RuleFileError(source, team_id, "address", "must be one plain e-mail address, e.g. equipe@exemple.fr")
            address = address.strip().lower()
        out.append(Team(team_id, " ".join(name.split()), about.strip(), address))
    return Teams(tuple(out))


def load_teams(folder: Path | str) -> Teams:
    """``teams.toml`` of a rules folder; no file gives no team (escalation
    then fails with a message saying the file defines none)."""
    path = Path(folder) / TEAMS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Teams()
    except UnicodeDecodeError as exc:
        raise RuleFileError(TEAMS_FILE, "", "", f"not UTF-8 text: {exc}") from None
    return parse_teams(text, TEAMS_FILE)
