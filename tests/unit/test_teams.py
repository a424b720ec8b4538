"""rules/teams.toml: the escalation targets, validated with errors naming file, entry and key."""

from __future__ import annotations

import pytest

from mailbot.errors import RuleFileError
from mailbot.rulefiles import DEFAULT_RULES_DIR, load_rulebook
from mailbot.teams import Teams, UnknownTeam, load_teams, parse_teams


def test_shipped_teams_load_with_the_desk_targets():
    teams = load_teams(DEFAULT_RULES_DIR)
    assert {"n2-reseau", "n3-reseau", "applications-metier"} <= set(teams.ids)
    assert teams["n2-reseau"].name == "N2 réseau"
    assert teams.get_team("Applications-Metier").name == "Applications métier"


def test_teams_file_does_not_disturb_the_rulebook():
    # rules/ is read as a whole by load_rulebook: teams.toml must not be taken for another rule file.
    load_rulebook(DEFAULT_RULES_DIR)


def test_a_team_with_an_address_and_an_about():
    teams = parse_teams('[n2-reseau]\nname = "N2  réseau"\naddress = "N2@Exemple.fr"\nabout = "Liens"\n')
    team = teams["n2-reseau"]
    assert (team.name, team.address, team.about) == ("N2 réseau", "n2@exemple.fr", "Liens")


def test_unknown_team_lists_the_valid_ids_and_suggests_one():
    teams = parse_teams('[n2-reseau]\nname = "N2"\n[n3-reseau]\nname = "N3"\n')
    with pytest.raises(UnknownTeam) as info:
        teams.get_team("n2-resau")
    message = str(info.value)
    assert "'n2-resau'" in message and "n2-reseau, n3-reseau" in message and "did you mean 'n2-reseau'" in message


def test_no_teams_file_means_no_team_and_says_so(tmp_path):
    teams = load_teams(tmp_path)
    assert len(teams) == 0
    with pytest.raises(UnknownTeam, match="defines no team"):
        teams.get_team("n2-reseau")


@pytest.mark.parametrize(
    ("text", "entry", "key", "words"),
    [
        ('[n2]\nname = "N2"\nadress = "a@b.fr"\n', "n2", "adress", "did you mean 'address'"),
        ('[n2]\nabout = "x"\n', "n2", "name", "needs the team's name"),
        ('[n2]\nname = ""\n', "n2", "name", "needs the team's name"),
        ('[n2]\nname = "N2"\naddress = "pas une adresse"\n', "n2", "address", "plain e-mail address"),
        ('[n2]\nname = "N2"\naddress = "a@b.fr, c@d.fr"\n', "n2", "address", "plain e-mail address"),
        ('[N2_Reseau]\nname = "N2"\n', "N2_Reseau", "", "lower-case"),
        ('n2 = "N2"\n', "n2", "", "[table]"),
        ('[n2]\nname = "N2"\nabout = 3\n', "n2", "about", "quoted string"),
    ],
)
def test_errors_name_the_file_the_entry_and_the_key(text, entry, key, words):
    with pytest.raises(RuleFileError) as info:
        parse_teams(text)
    err = info.value
    assert (err.source, err.entry, err.key) == ("teams.toml", entry, key)
    assert words in str(err)


def test_toml_syntax_error_names_the_file():
    with pytest.raises(RuleFileError, match=r"^teams\.toml: TOML syntax"):
        parse_teams('[n2\nname = "N2"\n')


def test_teams_keep_the_file_order():
    teams = parse_teams('[z]\nname = "Z"\n[a]\nname = "A"\n')
    assert isinstance(teams, Teams) and list(teams) == ["z", "a"]
