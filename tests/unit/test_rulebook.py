"""Rule files: the shipped ones load; a mistake is reported with file, entry and key."""

from __future__ import annotations

import pytest

from mailbot.errors import RuleFileError
from mailbot.rulebook import parse_rulebook
from mailbot.rulefiles import DEFAULT_RULES_DIR, read_rule_sources


def test_shipped_rules_validate():
    book = parse_rulebook(read_rule_sources(DEFAULT_RULES_DIR))
    assert "apps.portail" in book.signals
    assert [r.when for r in book.criticity][0] == "cas_a"
    assert book.mandatory["A"].mandatory == ("start_time", "impacted_lines", "reception")


def _sources(**changes):
    sources = read_rule_sources(DEFAULT_RULES_DIR)
    sources.update(changes)
    return sources


def test_unknown_key_names_file_entry_and_key():
    text = read_rule_sources(DEFAULT_RULES_DIR)["signals/apps.toml"] + '\n[extra]\nphrase = ["x"]\n'
    with pytest.raises(RuleFileError) as err:
        parse_rulebook(_sources(**{"signals/apps.toml": text}))
    assert (err.value.source, err.value.entry, err.value.key) == ("signals/apps.toml", "extra", "phrase")
    assert "did you mean 'phrases'" in str(err.value)


def test_bad_regex_is_reported():
    text = read_rule_sources(DEFAULT_RULES_DIR)["signals/apps.toml"] + "\n[broken]\nregex = ['(unclosed']\n"
    with pytest.raises(RuleFileError) as err:
        parse_rulebook(_sources(**{"signals/apps.toml": text}))
    assert err.value.entry == "broken" and err.value.key == "regex[0]"


def test_unknown_field_in_mandatory_set_suggests():
    text = '[failure.A]\nmandatory = ["start_tme"]\n'
    with pytest.raises(RuleFileError) as err:
        parse_rulebook(_sources(**{"mandatory.toml": text}))
    assert "start_time" in str(err.value) and err.value.source == "mandatory.toml"


def test_deleted_required_signal_is_caught():
    sources = _sources()
    text = sources["signals/state.toml"].replace("[working]", "[workin]")
    with pytest.raises(RuleFileError) as err:
        parse_rulebook(_sources(**{"signals/state.toml": text}))
    assert "working" in str(err.value)


def test_toml_syntax_error_has_line():
    with pytest.raises(RuleFileError) as err:
        parse_rulebook(_sources(**{"criticity.toml": "[[rule]\nid = 1"}))
    assert "line 1" in str(err.value)


def test_criticity_order_is_data():
    """Staff can change a level: the engine follows the file, not code."""
    text = read_rule_sources(DEFAULT_RULES_DIR)["criticity.toml"].replace(
        'when = "unitary"\nlevel = 3', 'when = "unitary"\nlevel = 2')
    book = parse_rulebook(_sources(**{"criticity.toml": text}))
    assert [r.level for r in book.criticity if r.when == "unitary"] == [2]
