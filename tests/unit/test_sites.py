"""Sites: sender domain or signature words -> trigram and name; sites.toml checks."""

from __future__ import annotations

import email
import email.policy
import json

import pytest

from mailbot.errors import RuleFileError
from mailbot.rulefiles import DEFAULT_RULES_DIR
from mailbot.sites import Site, load_sites, parse_sites, resolve_site, site_label
from tests.conftest import shared_or_skip

SAMPLE = """
[VAL]
name = "CH de Valmont"
domains = ["ch-valmont.test"]
words = ["CH de Valmont", "CRRA 74"]

[EXE]
name = "SAMU 31 – CHU Exemple"
domains = ["chu-exemple.test", "samu31.chu-exemple.test"]
words = ["SAMU 31", "CRRA 31"]

[BRE]
name = "CH de Brécy"
words = ["CH de Brécy"]
"""


@pytest.fixture(scope="module")
def sites():
    return parse_sites(SAMPLE)


def test_domain_and_subdomains(sites):
    assert resolve_site("thomas@ch-valmont.test", "", sites) == Site("VAL", "CH de Valmont")
    assert resolve_site("Nico@DSI.CH-Valmont.test", "", sites).code == "VAL"
    # the longest domain wins
    assert resolve_site("a@samu31.chu-exemple.test", "", sites).code == "EXE"
    # a look-alike domain is not a subdomain
    assert resolve_site("a@evil-ch-valmont.test", "", sites) is None


def test_domain_beats_signature_words(sites):
    assert resolve_site("a@ch-valmont.test", "Catherine – CRRA 31", sites).code == "VAL"


def test_signature_words_ignore_case_accents_and_spacing(sites):
    assert resolve_site("perso@gmail.test", "Merci\nGaëlle, ARM – ch de brecy", sites).code == "BRE"
    assert resolve_site("perso@gmail.test", "Catherine Fabre\nCadre – SAMU31", sites).code == "EXE"
    assert resolve_site("", "crra-74", sites).code == "VAL"


def test_words_are_whole_words(sites):
    assert resolve_site("x@gmail.test", "appelez le SAMU 310 ou le CRRA 745", sites) is None


def test_last_named_site_wins(sites):
    text = "Nous avons basculé vers le SAMU 31 voisin.\n--\nThomas, superviseur – CRRA 74"
    assert resolve_site("x@gmail.test", text, sites).code == "VAL"


def test_unknown_stays_visible(sites):
    assert resolve_site("x@gmail.test", "Bonjour, rien ici", sites) is None
    assert resolve_site(None, None, sites) is None
    assert site_label(None) == "? – site inconnu"
    assert site_label("VAL", "CH de Valmont") == "VAL – CH de Valmont"


@pytest.mark.parametrize("text, entry, key, words", [
    ('[VA]\nname = "x"\ndomains = ["a.test"]\n', "VA", "", "3 capital letters"),
    ('[VAL]\nnom = "x"\ndomains = ["a.test"]\n', "VAL", "nom", "did you mean 'name'"),
    ('[VAL]\ndomains = ["a.test"]\n', "VAL", "name", "needs a name"),
    ('[VAL]\nname = "x"\n', "VAL", "domains", "at least one"),
    ('[VAL]\nname = "x"\ndomains = ["jean@a.test"]\n', "VAL", "domains", "not a mail domain"),
    ('[VAL]\nname = "x"\ndomains = "a.test"\n', "VAL", "domains", "list of texts"),
    ('[VAL]\nname = "x"\ndomains = ["a.test"]\n[ORV]\nname = "y"\ndomains = ["A.test"]\n', "ORV", "domains",
     "already the domain of [VAL]"),
    ('[VAL]\nname = "x"\nwords = ["SAMU 31"]\n[ORV]\nname = "y"\nwords = ["samu31"]\n', "ORV", "words",
     "already names [VAL]"),
])
def test_errors_name_file_entry_and_key(text, entry, key, words):
    with pytest.raises(RuleFileError) as err:
        parse_sites(text)
    assert err.value.source == "sites.toml"
    assert err.value.entry == entry
    assert err.value.key == key
    assert words in str(err.value)


def test_toml_error_is_a_rule_file_error():
    with pytest.raises(RuleFileError, match=r"sites.toml.*not valid TOML.*line 1"):
        parse_sites("[VAL\nname = 1")


def test_shipped_file_loads_and_codes_are_trigrams():
    sites = load_sites(DEFAULT_RULES_DIR)
    assert len(sites) >= 50
    assert all(len(code) == 3 and code.isupper() for code in sites)
    assert sites.resolve("x@samu31.chu-exemple.test").code == "EXE"
    assert sites.resolve("x@ch-valmont.test").name == "CH de Valmont"


def test_absent_file_gives_no_site(tmp_path):
    assert len(load_sites(tmp_path)) == 0


def test_corpus_incident_senders_resolve():
    """Every hospital that writes an incident in the dev corpora has a site."""
    missing = set()
    for corpus in ("dev", "dev2"):
        folder = shared_or_skip("corpus", corpus)
        sites = load_sites(DEFAULT_RULES_DIR)
        for line in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines():
            label = json.loads(line)
            if label["kind"] != "incident":
                continue
            msg = email.message_from_bytes((folder / label["file"]).read_bytes(), policy=email.policy.default)
            sender = str(msg["From"].addresses[0].addr_spec).lower()
            domain = sender.rpartition("@")[2]
            if domain in ("telecom-astreinte.test", "infogerance-est.test", "integration.si-partenaire.test"):
                continue   # contractors writing for a site: no site of their own
            if sites.resolve(sender) is None:
                missing.add(domain)
    assert not missing, f"domains without a site in rules/sites.toml: {sorted(missing)}"
